//! A loopback TCP relay in front of a service that counts the requests naming a marker (an
//! `X-Amz-Target` such as `Kinesis_20131202.GetRecords`) in what clients send: the service's
//! own request count, measured where it receives them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct CountingProxy {
    pub port: u16,
    count: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Relays 127.0.0.1:<new port> to `upstream_port`, counting occurrences of `marker`.
    pub fn start(upstream_port: u16, marker: &'static str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let port = listener.local_addr().expect("the proxy's port").port();
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                let (client_in, server_out) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let counted = counted.clone();
                std::thread::spawn(move || relay(client_in, server_out, Some((marker.as_bytes(), counted))));
                std::thread::spawn(move || relay(server, client, None));
            }
        });
        CountingProxy { port, count }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests naming the marker so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, counting `marker` across read boundaries.
fn relay(mut from: TcpStream, mut to: TcpStream, mut counting: Option<(&[u8], Arc<AtomicU64>)>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((marker, count)) = counting.as_mut() {
            carry.extend_from_slice(&buf[..n]);
            let found = carry.windows(marker.len()).filter(|w| w == marker).count();
            count.fetch_add(found as u64, Ordering::SeqCst);
            // Keep a marker's length less one: a marker cut by the read is counted once whole.
            let keep = carry.len().min(marker.len() - 1);
            carry.drain(..carry.len() - keep);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
