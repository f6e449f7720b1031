//! moto server on a loopback port: real S3 (and DynamoDB, DynamoDB Streams) APIs for tests.
//! Fails loudly when it cannot be started.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    /// Starts moto's server application (what `moto_server` runs) on a socket bound here and
    /// handed over, so no other process can take its port meanwhile.
    pub fn start() -> MotoServer {
        let listener = super::listening_socket(0);
        let port = listener.local_addr().expect("port").port();
        let script = "import os, sys\n\
             os.environ.setdefault('MOTO_PORT', sys.argv[1])\n\
             from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
             from werkzeug.serving import make_server\n\
             app = DomainDispatcherApplication(create_backend_app)\n\
             make_server('127.0.0.1', int(sys.argv[1]), app, threaded=True, fd=3).serve_forever()\n";
        let mut command = Command::new("python3");
        command.args(["-c", script, &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        super::pass_as_fd3(&mut command, &listener);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start python3 for moto ({e})"));
        drop(listener);
        let mut server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto's server exited at start ({status}): is it installed for python3? \
                     `python3 -m pip install 'moto[server]'` (scripts/test.sh does)"
                );
            }
            assert!(Instant::now() < deadline, "moto_server did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a Redshift cluster `id` on the emulator (for `GetClusterCredentials`).
    pub fn create_redshift_cluster(&self, id: &str) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let sdk = rt.block_on(dynashift::aws::sdk_config(&self.aws_settings()));
        rt.block_on(
            aws_sdk_redshift::Client::new(&sdk)
                .create_cluster()
                .cluster_identifier(id)
                .node_type("ra3.xlplus")
                .master_username("admin")
                .master_user_password("Secret-123")
                .send(),
        )
        .expect("creating a cluster on moto");
    }

    /// AWS settings that reach this server, one attempt per call (an unimplemented call
    /// answers 500, which would otherwise be retried for seconds). The emulator accepts any
    /// credentials; these keep the SDK from looking further.
    pub fn aws_settings(&self) -> dynashift::aws::AwsSettings {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        dynashift::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint()),
            profile: None,
            max_attempts: Some(1),
        }
    }
}

/// Creates (through moto's IAM API, with boto3, which moto brings) a user named `user`, allowed every
/// DynamoDB, DynamoDB Streams, Kinesis, S3 and Redshift Data API action except `denied`, and
/// returns its access key id and secret.
const RESTRICTED_USER: &str = "import boto3, json, sys\n\
endpoint, user, denied = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n\
iam = boto3.client('iam', endpoint_url=endpoint, region_name='us-east-1',\n\
    aws_access_key_id='testing', aws_secret_access_key='testing')\n\
iam.create_user(UserName=user)\n\
allow = {'Effect': 'Allow', 'Action': ['dynamodb:*', 'kinesis:*', 's3:*', 'redshift-data:*'], 'Resource': '*'}\n\
deny = {'Effect': 'Deny', 'Action': denied, 'Resource': '*'}\n\
policy = {'Version': '2012-10-17', 'Statement': [allow, deny] if denied else [allow]}\n\
iam.put_user_policy(UserName=user, PolicyName='dynashift', PolicyDocument=json.dumps(policy))\n\
key = iam.create_access_key(UserName=user)['AccessKey']\n\
print(key['AccessKeyId'], key['SecretAccessKey'])\n";

impl MotoServer {
    /// A user named `user` allowed everything the product calls except the `denied` IAM actions: its
    /// access key id and secret. Takes effect once `enforce_iam` is called.
    pub fn restricted_user(&self, user: &str, denied: &[&str]) -> (String, String) {
        let denied = serde_json::to_string(denied).expect("denied actions as JSON");
        let out = Command::new("python3")
            .args(["-c", RESTRICTED_USER, &self.endpoint(), user, &denied])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 for moto's IAM ({e})"));
        assert!(
            out.status.success(),
            "creating the IAM user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (id, secret) = text.trim().split_once(' ').unwrap_or_else(|| panic!("no access key in `{text}`"));
        (id.to_string(), secret.to_string())
    }

    /// From now on every call must be signed by an IAM user's key and allowed by its policy
    /// (moto's IAM enforcement, switched on through its control API).
    pub fn enforce_iam(&self) {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request\n\
                 urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=b'0', method='POST', headers={'Content-Type': 'text/plain'})).read()\n",
                &self.endpoint(),
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 for moto's IAM ({e})"));
        assert!(out.status.success(), "enforcing IAM failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
