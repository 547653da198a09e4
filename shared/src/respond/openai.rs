//! OpenAI's chat completions shapes, so that OpenAI clients, LangChain and chat UIs talk to a
//! project unchanged: `model` names the project, `messages` carry the history, the last message is
//! the question. Citations travel in extra fields that OpenAI clients ignore.

use serde_json::{Value, json};

use super::{Role, Turn, check_message, check_user};
use crate::ApiError;

/// The most messages one request carries.
pub const MAX_MESSAGES: usize = 200;

/// A checked `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The project, when named.
    pub model: Option<String>,
    /// Earlier turns, oldest first.
    pub history: Vec<Turn>,
    /// The client's own system messages, joined.
    pub system: Option<String>,
    pub question: String,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
    pub top_k: Option<u32>,
    pub filter: Option<Value>,
}

/// OpenAI request fields that are accepted and have no effect here (the project's settings decide).
const IGNORED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "metadata",
    "store",
    "parallel_tool_calls",
    "service_tier",
];

fn bad(field: &str, problem: &str) -> ApiError {
    ApiError::BadRequest(format!("`{field}` {problem}"))
}

/// A message's content: a string, or OpenAI's list of text parts.
fn content(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(
                |part| match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => Ok(text.to_string()),
                    _ => Err(bad(field, "may hold only text parts")),
                },
            )
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join("")),
        _ => Err(bad(field, "must be a string or a list of text parts")),
    }
}

impl CompletionRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        const KNOWN: &[&str] = &[
            "model",
            "messages",
            "stream",
            "stream_options",
            "user",
            "top_k",
            "filter",
        ];
        if let Some(unknown) = object
            .keys()
            .find(|k| !KNOWN.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
        {
            return Err(bad(
                unknown,
                "is not supported here (tools and function calls are not offered)",
            ));
        }
        let model = match object.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) if m.is_empty() => None,
            Some(Value::String(m)) => Some(m.clone()),
            Some(_) => return Err(bad("model", "must be a string (the project)")),
        };
        let messages = object
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("messages", "is required: a list of messages"))?;
        if messages.is_empty() || messages.len() > MAX_MESSAGES {
            return Err(bad(
                "messages",
                &format!("must hold 1 to {MAX_MESSAGES} messages"),
            ));
        }
        let mut system = Vec::new();
        let mut turns = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let field = format!("messages[{i}]");
            let role = match message["role"].as_str() {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                _ => {
                    return Err(bad(
                        &format!("{field}.role"),
                        "must be system, developer, user or assistant",
                    ));
                }
            };
            let text = content(&message["content"], &format!("{field}.content"))?;
            if text.chars().count() > 4 * super::MAX_MESSAGE_CHARS {
                return Err(bad(&format!("{field}.content"), "is too long"));
            }
            match role {
                Role::System => system.push(text),
                _ => turns.push(Turn {
                    role,
                    content: text,
                }),
            }
        }
        let last = turns
            .pop()
            .filter(|t| t.role == Role::User)
            .ok_or_else(|| bad("messages", "must end with a user message"))?;
        check_message(
            &last.content,
            &format!("messages[{}].content", messages.len() - 1),
        )?;
        let stream = match object.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("stream", "must be true or false")),
        };
        let include_usage = object
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let user = match object.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => {
                check_user(u, "user")?;
                Some(u.clone())
            }
            Some(_) => return Err(bad("user", "must be a string")),
        };
        let filter = match object.get("filter") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(bad("filter", "must be an object")),
        };
        Ok(Self {
            model,
            history: turns,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            question: last.content,
            stream,
            include_usage,
            user,
            top_k: super::top_k(object.get("top_k"), "top_k")?,
            filter,
        })
    }
}

/// One streamed chunk in OpenAI's shape.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// `data: ...` lines as OpenAI streams them.
pub fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The whole completion in OpenAI's shape.
pub fn completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    usage: (u64, u64),
    extra: Value,
) -> Value {
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": usage_json(usage),
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

pub fn usage_json((prompt, completion): (u64, u64)) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_bodies_are_read_as_openai_clients_send_them() {
        let request = CompletionRequest::from_json(&json!({
            "model": "p1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [{"type": "text", "text": "Refunds?"}]},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.3,
        }))
        .unwrap();
        assert_eq!(request.model.as_deref(), Some("p1"));
        assert_eq!(request.system.as_deref(), Some("Be brief."));
        assert_eq!(request.history.len(), 2);
        assert_eq!(request.question, "Refunds?");
        assert!(request.stream && request.include_usage);
    }

    #[test]
    fn openai_bad_bodies_name_the_field() {
        let check = |body: Value, expected: &str| {
            let error = CompletionRequest::from_json(&body).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        };
        check(json!({"model": "p"}), "`messages` is required");
        check(json!({"messages": []}), "`messages` must hold");
        check(
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            "must end with a user message",
        );
        check(
            json!({"messages": [{"role": "tool", "content": "a"}]}),
            "`messages[0].role`",
        );
        check(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "`messages[0].content` may hold only text",
        );
        check(
            json!({"messages": [{"role": "user", "content": "a"}], "tools": []}),
            "`tools` is not supported",
        );
        check(
            json!({"messages": [{"role": "user", "content": " "}]}),
            "must not be empty",
        );
    }

    #[test]
    fn completion_carries_extra_fields() {
        let body = completion("id1", 5, "p", "Hi [1]", (3, 2), json!({"citations": []}));
        assert_eq!(body["choices"][0]["message"]["content"], "Hi [1]");
        assert_eq!(body["usage"]["total_tokens"], 5);
        assert_eq!(body["citations"], json!([]));
    }
}
