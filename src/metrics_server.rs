//! The opt-in monitoring listener (`--metrics ADDRESS`): `/metrics` in Prometheus' text
//! format, `/healthz` (the process answers) and `/readyz` (target reachable, positions
//! advancing, no lag alarm). It runs on a thread of its own and never blocks replication.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::metrics::metrics;

/// The listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {address}: {source}")]
pub struct ListenError {
    address: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds `address` and serves it until the process ends. Returns the bound address (port 0
/// picks a free one).
pub fn start(address: SocketAddr) -> Result<SocketAddr, ListenError> {
    let fail = |source| ListenError { address, source };
    let listener = std::net::TcpListener::bind(address).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the metrics listener stopped");
                        return;
                    }
                };
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        // Out of descriptors, say: wait rather than spin.
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(answer);
                        // Idle or slow clients are cut off, so they cannot hold descriptors
                        // the warehouse and the source need.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(std::time::Duration::from_secs(10))
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        })
        .map_err(fail)?;
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = crate::run::unix_now();
    let plain = "text/plain; charset=utf-8".to_string();
    let (status, body, kind) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, metrics().render(now), metrics().content_type()),
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), plain),
        "/readyz" => match metrics().health.not_ready(now) {
            None => (StatusCode::OK, "ready\n".to_string(), plain),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"), plain),
        },
        _ => (StatusCode::NOT_FOUND, "try /metrics, /healthz or /readyz\n".to_string(), plain),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(kind) = kind.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, kind);
    }
    Ok(response)
}
