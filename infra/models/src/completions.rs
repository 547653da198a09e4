//! `POST /v1/chat/completions`: OpenAI's request shape checked and turned into the chat model's
//! messages and parameters, the answer whole or streamed as server-sent events.

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::mpsc as async_mpsc;

use crate::{
    ApiError, Body, CHAT_MODEL, DEFAULT_MAX_TOKENS, Server, chat, enqueue, failed, json_response,
    unknown_model,
};

#[derive(Deserialize)]
pub(crate) struct ChatRequest {
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

pub(crate) async fn completions(
    server: &Server,
    request: ChatRequest,
) -> Result<Response<Body>, ApiError> {
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
