//! The HTTP front: route each request to its component, pass Spin's request headers, enforce the body
//! size and time limits, turn guest failures into JSON errors, log one line per request, serve metrics.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::router::{RouteMatch, Router};
use crate::runtime::{Dispatcher, RequestMeta};

type WasiBody = wasmtime_wasi_http::WasiBody;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
}

/// Everything a request needs: the route table and a dispatcher per component.
pub struct Frontend {
    pub router: Router,
    pub dispatchers: HashMap<String, Dispatcher>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// `https` when the listener speaks TLS; what `spin-full-url` starts with.
    pub scheme: &'static str,
    request_ids: AtomicU64,
    id_prefix: u32,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("router", &self.router)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Frontend {
    pub fn new(
        router: Router,
        dispatchers: HashMap<String, Dispatcher>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let id_prefix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or_default();
        Self {
            router,
            dispatchers,
            limits,
            metrics,
            scheme: "http",
            request_ids: AtomicU64::new(0),
            id_prefix,
        }
    }

    fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:08x}", self.id_prefix)
    }
}

/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` turns true; with `tls`, each one is a TLS connection.
pub async fn serve(
    listener: TcpListener,
    frontend: Arc<Frontend>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let frontend = frontend.clone();
        let local = stream.local_addr().ok();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let frontend = frontend.clone();
                async move { Ok::<_, Infallible>(handle(&frontend, request, client, local).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIME, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!("TLS handshake with {client} failed: {error}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake with {client} timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(error) = served {
                tracing::debug!("connection from {client} ended: {error}");
            }
        });
    }
}

async fn handle(
    frontend: &Frontend,
    request: Request<Incoming>,
    client: SocketAddr,
    local: Option<SocketAddr>,
) -> Response<WasiBody> {
    let started = Instant::now();
    let request_id = frontend.next_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_string();

    if path == "/metrics" && method == http::Method::GET {
        let response = text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            frontend.metrics.render(),
        );
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            "-",
            "-",
            response,
            started,
            None,
        );
    }

    let Some(route) = frontend.router.route(&path) else {
        let response = error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route matches {path}"),
            &request_id,
        );
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            "-",
            "-",
            response,
            started,
            None,
        );
    };
    let Some(dispatcher) = frontend.dispatchers.get(&route.component) else {
        let response = error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the route's component is not loaded",
            &request_id,
        );
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            &route.raw_route,
            &route.component,
            response,
            started,
            None,
        );
    };

    let limit = frontend.limits.max_body_bytes;
    let declared = declared_length(request.headers());
    if declared.is_some_and(|n| n > limit) {
        let mut response = too_large(limit, &request_id);
        if declared.is_some_and(|n| n <= DRAIN_LIMIT_BYTES) {
            tokio::spawn(drain(request.into_body()));
        } else {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            &route.raw_route,
            &route.component,
            response,
            started,
            None,
        );
    }

    let overflow = Arc::new(Overflow::default());
    let (parts, body) = request.into_parts();
    let body = LimitedBody::new(body, limit, overflow.clone());
    let request = prepare(
        parts,
        body.boxed_unsync(),
        &route,
        frontend.scheme,
        client,
        local,
    );
    let meta = Arc::new(RequestMeta::default());
    let (response, instantiation) = dispatch(
        frontend,
        dispatcher,
        request,
        meta,
        &overflow,
        &route,
        &request_id,
    )
    .await;
    finish(
        frontend,
        &request_id,
        &method,
        &path,
        &route.raw_route,
        &route.component,
        response,
        started,
        instantiation,
    )
}

/// Runs one request on a fresh instance within the request timeout, and turns what went wrong into
/// the host's JSON errors. Returns the response and the instance's instantiation time.
async fn dispatch<B>(
    frontend: &Frontend,
    dispatcher: &Dispatcher,
    request: Request<WasiBody>,
    meta: Arc<RequestMeta>,
    overflow: &Overflow<B>,
    route: &RouteMatch,
    request_id: &str,
) -> (Response<WasiBody>, Option<Duration>)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    let started = Instant::now();
    let limit = frontend.limits.max_body_bytes;
    let outcome = tokio::time::timeout(
        frontend.limits.request_timeout,
        dispatcher.handle(meta.clone(), request),
    )
    .await;
    let instantiation = match meta.instantiate_micros.load(Ordering::Relaxed) {
        0 => None,
        micros => Some(Duration::from_micros(micros)),
    };
    let response = match outcome {
        _ if overflow.exceeded.load(Ordering::Relaxed) => {
            if let Some(rest) = overflow.take_rest() {
                tokio::spawn(drain(rest));
            }
            too_large(limit, request_id)
        }
        // The component's response goes out as it made it: the host adds no header of its own.
        Ok(Ok(response)) => {
            meta.responded.store(true, Ordering::Relaxed);
            response
        }
        Ok(Err(_)) if started.elapsed() >= frontend.limits.request_timeout => {
            timed_out(frontend.limits.request_timeout, request_id)
        }
        Ok(Err(error)) => {
            tracing::error!(
                request_id = %request_id,
                component = %route.component,
                "component failed: {error:#}"
            );
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "component_failed",
                "the component failed while handling the request",
                request_id,
            )
        }
        Err(_elapsed) => timed_out(frontend.limits.request_timeout, request_id),
    };
    (response, instantiation)
}

/// How many chained requests deep one request from outside may go: a component that calls itself
/// (or a cycle of them) gets a 508 at this depth instead of running until the pool is exhausted.
pub const MAX_CHAIN_DEPTH: u32 = 8;

/// The client address a chained request reports, as Spin reports it.
const CHAINED_CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Serves a chained request (`http://<target>.spin.internal/...` from a component that may send it)
/// in-process, on a fresh instance of `target`, under the target's own routes and the host's limits.
/// It never touches the network.
pub(crate) async fn chained(
    frontend: &Frontend,
    target: &str,
    request: Request<WasiBody>,
    depth: u32,
) -> Response<WasiBody> {
    let started = Instant::now();
    let request_id = frontend.next_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = frontend.router.route_to(target, &path);
    let Some(dispatcher) = frontend.dispatchers.get(target) else {
        let response = error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no component `{target}` serves HTTP in this application"),
            &request_id,
        );
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            "-",
            target,
            response,
            started,
            None,
        );
    };
    if depth > MAX_CHAIN_DEPTH {
        let response = error_response(
            StatusCode::LOOP_DETECTED,
            "chain_too_deep",
            &format!(
                "more than {MAX_CHAIN_DEPTH} chained requests in a row; is a component calling itself?"
            ),
            &request_id,
        );
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            &route.raw_route,
            target,
            response,
            started,
            None,
        );
    }
    let limit = frontend.limits.max_body_bytes;
    let declared = declared_length(request.headers());
    if declared.is_some_and(|n| n > limit) {
        let response = too_large(limit, &request_id);
        return finish(
            frontend,
            &request_id,
            &method,
            &path,
            &route.raw_route,
            target,
            response,
            started,
            None,
        );
    }
    let overflow = Arc::new(Overflow::<WasiBody>::default());
    let (mut parts, body) = request.into_parts();
    // Neither the caller's Host nor its spin-* headers decide what the target sees.
    parts.headers.remove(http::header::HOST);
    let authority = parts.uri.authority().map(|a| a.to_string());
    if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        parts.headers.insert(http::header::HOST, authority);
    }
    let body = LimitedBody::new(body, limit, overflow.clone());
    let request = prepare(
        parts,
        body.boxed_unsync(),
        &route,
        "http",
        CHAINED_CLIENT,
        None,
    );
    let meta = Arc::new(RequestMeta {
        depth,
        ..RequestMeta::default()
    });
    let (response, instantiation) = dispatch(
        frontend,
        dispatcher,
        request,
        meta,
        &overflow,
        &route,
        &request_id,
    )
    .await;
    finish(
        frontend,
        &request_id,
        &method,
        &path,
        &route.raw_route,
        target,
        response,
        started,
        instantiation,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    frontend: &Frontend,
    request_id: &str,
    method: &http::Method,
    path: &str,
    route: &str,
    component: &str,
    response: Response<WasiBody>,
    started: Instant,
    instantiation: Option<Duration>,
) -> Response<WasiBody> {
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    frontend
        .metrics
        .record(component, status, elapsed, instantiation);
    tracing::info!(
        target: "edgerag::request",
        request_id,
        method = %method,
        path,
        route,
        component,
        status,
        duration_us = elapsed.as_micros() as u64,
        instantiate_us = instantiation.map(|d| d.as_micros() as u64),
    );
    response
}

/// The body length a request declares with `content-length`, if it declares a valid one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Builds the request the guest sees: an absolute URI, Spin's `spin-*` headers (any the sender set
/// are dropped first), and the body (already behind the size limit).
fn prepare(
    mut parts: http::request::Parts,
    body: WasiBody,
    route: &RouteMatch,
    scheme: &str,
    client: SocketAddr,
    local: Option<SocketAddr>,
) -> Request<WasiBody> {
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| local.map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let full_url = format!("{scheme}://{authority}{path_and_query}");
    if let Ok(uri) = full_url.parse() {
        parts.uri = uri;
    }

    let spoofed: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        parts.headers.remove(name);
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            parts.headers.insert(name, value);
        }
    };
    set("spin-full-url", &full_url);
    set("spin-path-info", &route.path_info);
    set("spin-matched-route", &route.raw_route);
    set("spin-raw-component-route", &route.raw_route);
    set("spin-component-route", &route.component_route);
    set("spin-base-path", "/");
    set("spin-client-addr", &client.to_string());
    for (name, value) in &route.params {
        set(&path_match_header(name), value);
    }
    Request::from_parts(parts, body)
}

/// The header a `:name` capture arrives in, named as Spin names it: lower case, `_` as `-`.
fn path_match_header(name: &str) -> String {
    format!(
        "spin-path-match-{}",
        name.to_ascii_lowercase().replace('_', "-")
    )
}

/// How much of an oversize body the host still reads (and discards) after answering 413, and for
/// how long. A client that writes its whole body before reading the answer would otherwise see a
/// broken pipe instead of the 413; past these bounds the connection is closed.
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and discards what is left of a refused request body, within the drain bounds, so hyper can
/// deliver the early answer and keep the connection.
async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) {
    let read_rest = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_LIMIT_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read_rest).await;
}

/// What a [`LimitedBody`] leaves behind when it overflows: the flag, and the unread rest of the
/// body for [`drain`].
struct Overflow<B = Incoming> {
    exceeded: AtomicBool,
    rest: std::sync::Mutex<Option<B>>,
}

impl<B> Default for Overflow<B> {
    fn default() -> Self {
        Self {
            exceeded: AtomicBool::new(false),
            rest: std::sync::Mutex::new(None),
        }
    }
}

impl<B> Overflow<B> {
    fn take_rest(&self) -> Option<B> {
        self.rest.lock().ok().and_then(|mut rest| rest.take())
    }
}

/// A request body that fails (and flags it) once more than `limit` bytes have arrived, so a chunked
/// upload without a `content-length` is cut off too.
struct LimitedBody<B = Incoming> {
    inner: Option<B>,
    remaining: u64,
    limit: u64,
    overflow: Arc<Overflow<B>>,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, limit: u64, overflow: Arc<Overflow<B>>) -> Self {
        Self {
            inner: Some(inner),
            remaining: limit,
            limit,
            overflow,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                Some(this.limit),
            ))));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.overflow.exceeded.store(true, Ordering::Relaxed);
                    if let Ok(mut rest) = this.overflow.rest.lock() {
                        *rest = this.inner.take();
                    }
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        Some(this.limit),
                    ))));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

fn full_body(bytes: impl Into<Bytes>) -> WasiBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<WasiBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// A host-made error in the same JSON shape the functions use, with the request id to quote in a
/// bug report. It never carries internal details.
fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<WasiBody> {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "request_id": request_id }
    });
    let mut response = text_response(status, "application/json", body.to_string());
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn timed_out(limit: Duration, request_id: &str) -> Response<WasiBody> {
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        &format!(
            "the component did not answer within {} ms",
            limit.as_millis()
        ),
        request_id,
    )
}

fn too_large(limit: u64, request_id: &str) -> Response<WasiBody> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("request body is larger than the limit of {limit} bytes"),
        request_id,
    )
}

/// Asks the application to start the source syncs that are due, every `every`, as a client would:
/// `POST /v1/admin/sync-due` with the operator key, routed like any request (in-process, so it
/// works behind TLS and on any listen address). What `edgerag up --sync-interval` runs; on Spin a
/// cron trigger or a Kubernetes CronJob sends the same request.
pub async fn sync_ticker(
    frontend: std::sync::Weak<Frontend>,
    every: Duration,
    operator_key: String,
) {
    const PATH: &str = "/v1/admin/sync-due";
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(frontend) = frontend.upgrade() else {
            return;
        };
        let Some(route) = frontend.router.route(PATH) else {
            tracing::warn!("--sync-interval: no component serves {PATH}");
            return;
        };
        let request = Request::builder()
            .method("POST")
            .uri(format!("http://localhost{PATH}"))
            .header("authorization", format!("Bearer {operator_key}"))
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("a valid request");
        let response = chained(&frontend, &route.component, request, 1).await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let started = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["started"].as_array().map(Vec::len))
            .unwrap_or(0);
        if status.is_success() {
            tracing::info!(started, "sync-due: started the syncs that were due");
        } else {
            tracing::warn!(status = status.as_u16(), "sync-due failed");
        }
    }
}
