//! The `/metrics` endpoint: a minimal HTTP/1 server on hyper, enough for Prometheus and curl.
//!
//! `GET /metrics` (and `HEAD`) answers the scrape; any other path is 404 and any other method
//! 405. Connections are capped and must send their request head within a deadline, so a client
//! that opens many or stalls cannot tie the agent up; there is nothing to authenticate, as the
//! numbers are the same any `status` shows, so bind it where only your Prometheus reaches.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::scrape::{self, Sources};

/// Scrapers served at once; more are closed as they connect.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request head this soon.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the accept loop rests after a failed accept (out of file descriptors, say), so
/// that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {source}; is another process using that port, or is the address not this machine's? (--metrics-addr)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the metrics address; returns the listener and the address it got (port 0 asks the OS
/// for one).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), MetricsError> {
    let error = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// Serves `/metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, sources: Sources, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Arc::new(sources);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "the metrics endpoint cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("too many metrics connections; closing a new one");
            continue;
        };
        let sources = sources.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(answer(&sources, &request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "a metrics connection ended with an error");
                    }
                }
            }
        });
    }
}

/// The answer to one HTTP request.
async fn answer(sources: &Sources, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            response
                .headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    match scrape::scrape(sources).await {
        Ok(text) => {
            let body = if head {
                Bytes::new()
            } else {
                Bytes::from(text)
            };
            let mut response = Response::new(Full::new(body));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(scrape::CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            tracing::warn!(%error, "cannot encode the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
