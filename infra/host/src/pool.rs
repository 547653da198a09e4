//! Outbound plain-HTTP requests to hosts a manifest names (the stores and models a function
//! reaches on every request) over kept-alive connections shared by every instance.
//!
//! A component instance lives for one request, so a connection per outbound request is what
//! wasi-http's default sender makes: a TCP handshake and a fresh connection task on both sides
//! each time, several times per request of ours. One pool for the process reuses them. Requests
//! that set their own timeouts, and HTTPS, keep the default sender, whose timeouts are exact.

use std::sync::LazyLock;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// How long an idle connection is kept for the next request.
const IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per host (a function's requests in flight to one store, with room).
const IDLE_PER_HOST: usize = 64;

static CLIENT: LazyLock<Client<HttpConnector, WasiBody>> = LazyLock::new(|| {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        .build(connector)
});

/// Whether `request` goes through the pool: plain HTTP, no timeouts of its own.
pub fn takes(request: &http::Request<WasiBody>, options: Option<&RequestOptions>) -> bool {
    let timed = options.is_some_and(|o| {
        o.connect_timeout.is_some()
            || o.first_byte_timeout.is_some()
            || o.between_bytes_timeout.is_some()
    });
    request.uri().scheme() == Some(&http::uri::Scheme::HTTP) && !timed
}

/// Sends `request` on a pooled connection.
pub async fn send(request: http::Request<WasiBody>) -> Result<http::Response<WasiBody>, Error> {
    let response = CLIENT.request(request).await.map_err(|error| {
        if error.is_connect() {
            let kind = std::error::Error::source(&error)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map_or(std::io::ErrorKind::ConnectionRefused, std::io::Error::kind);
            Error::Connect(std::io::Error::new(kind, error.to_string()))
        } else {
            Error::InternalError(Some(format!("{error:#}")))
        }
    })?;
    Ok(response.map(|body| body.map_err(Error::from).boxed_unsync()))
}
