//! kinesalite (the Kinesis stand-in, run with Node) on a loopback port. Its CLI binds every
//! interface, so a few lines of Node start it on 127.0.0.1 only. Fails loudly when it cannot
//! be started.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use dynashift::aws::{sdk_config, AwsSettings};

pub struct Kinesalite {
    child: Child,
    pub port: u16,
    /// LevelDB directory when the data must survive a restart.
    path: Option<PathBuf>,
}

/// Where `scripts/test.sh` installs kinesalite (override with `DYNASHIFT_NODE_MODULES`).
fn node_modules() -> PathBuf {
    if let Ok(dir) = std::env::var("DYNASHIFT_NODE_MODULES") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/dynashift/node/node_modules")
}

impl Kinesalite {
    pub fn start() -> Kinesalite {
        Kinesalite::spawn(super::listening_socket(0), None)
    }

    /// A server keeping its data in `path`, so that it can be stopped and started again.
    pub fn start_persistent(path: &std::path::Path) -> Kinesalite {
        Kinesalite::spawn(super::listening_socket(0), Some(path.to_path_buf()))
    }

    /// Stops the server (its port stays reserved for `restart`).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on the same port and data.
    pub fn restart(&mut self) {
        *self = Kinesalite::spawn(super::listening_socket(self.port), self.path.clone());
    }

    /// Starts kinesalite serving `listener`, which it takes over as file descriptor 3.
    fn spawn(listener: std::net::TcpListener, path: Option<PathBuf>) -> Kinesalite {
        let port = listener.local_addr().expect("port").port();
        let modules = node_modules();
        assert!(
            modules.join("kinesalite").exists(),
            "kinesalite not found in {}: run scripts/test.sh (it installs it with npm)",
            modules.display()
        );
        let path_option =
            path.as_ref().map_or(String::new(), |p| format!("path: {:?}, ", p.display().to_string()));
        let script = format!(
            "require('kinesalite')({{{path_option}createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, \
             shardLimit: 100}}).listen({{fd: 3}}, function (err) {{ if (err) {{ console.error(err); \
             process.exit(1); }} }});"
        );
        let mut command = Command::new("node");
        command
            .arg("-e")
            .arg(script)
            .env("NODE_PATH", &modules)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        super::pass_as_fd3(&mut command, &listener);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start node for kinesalite: {e}"));
        drop(listener);
        let mut server = Kinesalite { child, port, path };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("kinesalite exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "kinesalite did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kinesis stream on kinesalite, driven through the AWS SDK.
pub struct KinesisStream {
    pub name: String,
    pub rt: tokio::runtime::Runtime,
    pub client: aws_sdk_kinesis::Client,
}

impl KinesisStream {
    pub fn new(kinesalite: &Kinesalite, name: &str) -> KinesisStream {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(kinesalite.endpoint()),
            profile: None,
            max_attempts: Some(3),
        };
        let config = rt.block_on(sdk_config(&settings));
        KinesisStream { name: name.to_string(), rt, client: aws_sdk_kinesis::Client::new(&config) }
    }

    pub fn create(&self, shards: i32) {
        self.rt
            .block_on(self.client.create_stream().stream_name(&self.name).shard_count(shards).send())
            .unwrap();
        self.wait_active();
    }

    pub fn wait_active(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .rt
                .block_on(self.client.describe_stream_summary().stream_name(&self.name).send())
                .unwrap();
            if out.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
                return;
            }
            assert!(Instant::now() < deadline, "stream did not become active");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Puts `lines`, the n-th (counting from `first`) with partition key `pk-n`.
    pub fn put(&self, lines: &[String], first: usize) {
        let keyed: Vec<(String, String)> =
            lines.iter().enumerate().map(|(i, l)| (format!("pk-{}", first + i), l.clone())).collect();
        self.put_keyed(&keyed);
    }

    /// Puts (partition key, data) records in order.
    pub fn put_keyed(&self, records: &[(String, String)]) {
        for chunk in records.chunks(400) {
            let entries = chunk
                .iter()
                .map(|(key, data)| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(data.as_bytes()))
                        .partition_key(key)
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            let out = self
                .rt
                .block_on(self.client.put_records().stream_name(&self.name).set_records(Some(entries)).send())
                .unwrap();
            assert_eq!(out.failed_record_count(), Some(0));
        }
    }

    /// (id, starting hash key, ending hash key) of the open shards.
    pub fn open_shards(&self) -> Vec<(String, u128, u128)> {
        let out = self.rt.block_on(self.client.list_shards().stream_name(&self.name).send()).unwrap();
        out.shards()
            .iter()
            .filter(|s| s.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_none()))
            .map(|s| {
                let r = s.hash_key_range().unwrap();
                (
                    s.shard_id().to_string(),
                    r.starting_hash_key().parse().unwrap(),
                    r.ending_hash_key().parse().unwrap(),
                )
            })
            .collect()
    }
}
