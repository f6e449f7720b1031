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
    pub fn start() -> MotoServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'` (scripts/test.sh does)")
            });
        let mut server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
