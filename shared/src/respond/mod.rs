//! Respond's logic: a chat request checked, the decision how to answer (the model, a stored Q&A
//! answer, the fallback, or the passages themselves), the grounded prompt, citations, the
//! conversation records, the OpenAI-compatible shapes and the analytics over conversations.

pub mod analytics;
pub mod citations;
pub mod conversation;
pub mod echo;
pub mod openai;
pub mod prompt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ApiError;
use crate::auth::records::ProjectSettings;
pub use citations::{Citation, Method};
pub use prompt::{Budget, Passage, Prompt, Role, Turn};

/// The longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;
/// The longest end-user id a client may send.
pub const MAX_USER_CHARS: usize = 128;
/// The most passages an answer is grounded in.
pub const MAX_TOP_K: u32 = 20;

fn bad(field: &str, problem: &str) -> ApiError {
    ApiError::BadRequest(format!("`{field}` {problem}"))
}

/// A checked `POST /v1/projects/:project/chat` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub message: String,
    pub conversation: Option<String>,
    pub stream: bool,
    /// Passed to retrieval as the search route's `filter`, which checks it.
    pub filter: Option<Value>,
    pub top_k: Option<u32>,
    /// The end user's id (a widget's anonymous visitor, or the team's own user id).
    pub user: Option<String>,
}

fn only_fields(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(bad(
            unknown,
            &format!("is not a known field; known: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Checks a message's text: not blank, not too long.
pub fn check_message(text: &str, field: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(bad(
            field,
            &format!("has {chars} characters; the most is {MAX_MESSAGE_CHARS}"),
        ));
    }
    Ok(())
}

/// Checks an end-user id: 1 to 128 printable characters.
pub fn check_user(user: &str, field: &str) -> Result<(), ApiError> {
    if user.is_empty()
        || user.chars().count() > MAX_USER_CHARS
        || user.chars().any(|c| c.is_control())
    {
        return Err(bad(
            field,
            &format!("must be 1 to {MAX_USER_CHARS} printable characters"),
        ));
    }
    Ok(())
}

/// Checks an id the API hands out (conversations, messages): short, URL-safe.
pub fn check_id(id: &str, field: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(field, "is not an id this API hands out"));
    }
    Ok(())
}

pub(crate) fn top_k(value: Option<&Value>, field: &str) -> Result<Option<u32>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|k| (1..=u64::from(MAX_TOP_K)).contains(k))
            .map(|k| Some(k as u32))
            .ok_or_else(|| bad(field, &format!("must be an integer from 1 to {MAX_TOP_K}"))),
    }
}

impl ChatRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        only_fields(
            object,
            &[
                "message",
                "conversation",
                "stream",
                "filter",
                "top_k",
                "user",
            ],
        )?;
        let message = match object.get("message") {
            Some(Value::String(m)) => m.clone(),
            Some(_) => return Err(bad("message", "must be a string")),
            None => return Err(bad("message", "is required")),
        };
        check_message(&message, "message")?;
        let conversation = match object.get("conversation") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => {
                check_id(id, "conversation")?;
                Some(id.clone())
            }
            Some(_) => return Err(bad("conversation", "must be a string")),
        };
        let stream = match object.get("stream") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("stream", "must be true or false")),
        };
        let filter = match object.get("filter") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(bad("filter", "must be an object")),
        };
        let user = match object.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => {
                check_user(u, "user")?;
                Some(u.clone())
            }
            Some(_) => return Err(bad("user", "must be a string")),
        };
        Ok(Self {
            message,
            conversation,
            stream,
            filter,
            top_k: top_k(object.get("top_k"), "top_k")?,
            user,
        })
    }
}

/// The search request retrieval runs for an answer.
pub fn retrieval_request(query: &str, top_k: u32, filter: Option<&Value>) -> Value {
    let mut request = serde_json::json!({"query": query, "top_k": top_k, "per_document": 2});
    if let Some(filter) = filter {
        request["filter"] = filter.clone();
    }
    request
}

impl Passage {
    /// A search hit (the search route's JSON) as passage `number`.
    pub fn from_hit(hit: &Value, number: usize) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let document = &hit["document"];
        Self {
            number,
            chunk_id: text(&hit["chunk_id"]),
            document: text(&document["id"]),
            title: text(&document["title"]),
            source_uri: document["source_uri"].as_str().map(str::to_string),
            heading_path: hit["heading_path"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            start: hit["start"].as_u64(),
            end: hit["end"].as_u64(),
            page: hit["page"].as_u64(),
            sha256: text(&hit["sha256"]),
            text: text(&hit["text"]),
            similarity: hit["signals"]["semantic"]["score"]
                .as_f64()
                .map(|s| s as f32),
            answer: hit["answer"].as_str().map(str::to_string),
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The chat model, grounded in the passages.
    Model,
    /// A stored Q&A pair's answer, verbatim.
    Qa,
    /// The project's fallback text: no passage was close enough.
    Fallback,
    /// The best passages themselves (no chat model configured, or it is down).
    Extractive,
}

/// How to answer, decided before any model is called.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// No passage passes the threshold: the fallback text, marked unanswered.
    Fallback,
    /// A stored Q&A pair matches: its answer, citing it.
    Qa(Box<Passage>),
    /// Ground the model in the passages.
    Model,
    /// Quote the best passages.
    Extractive,
}

/// Whether `passages` hold something close enough to the question to answer from. The semantic
/// similarity of the best passage decides; when no passage has one (keyword search alone, with the
/// embedder down), any keyword match does.
pub fn answerable(passages: &[Passage], threshold: f32) -> bool {
    let best = passages
        .iter()
        .filter_map(|p| p.similarity)
        .fold(None, |best: Option<f32>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        });
    match best {
        Some(best) => best >= threshold,
        None => !passages.is_empty(),
    }
}

/// Decides how to answer from the retrieved passages.
pub fn plan(passages: &[Passage], settings: &ProjectSettings, model_configured: bool) -> Plan {
    if let Some(pair) = passages
        .iter()
        .find(|p| p.answer.is_some() && p.similarity.is_some_and(|s| s >= settings.qa_threshold))
    {
        return Plan::Qa(Box::new(Passage {
            number: 1,
            ..pair.clone()
        }));
    }
    if !answerable(passages, settings.answer_threshold) {
        return Plan::Fallback;
    }
    if model_configured {
        Plan::Model
    } else {
        Plan::Extractive
    }
}

/// Passages an extractive answer quotes.
pub const EXTRACTIVE_PASSAGES: usize = 2;

/// An answer made of the best passages themselves, each cited.
pub fn extractive(passages: &[Passage]) -> (String, Vec<Passage>) {
    let used: Vec<Passage> = passages
        .iter()
        .take(EXTRACTIVE_PASSAGES)
        .enumerate()
        .map(|(i, p)| Passage {
            number: i + 1,
            ..p.clone()
        })
        .collect();
    let text = used
        .iter()
        .map(|p| format!("{} [{}]", p.text.trim(), p.number))
        .collect::<Vec<_>>()
        .join("\n\n");
    (text, used)
}

/// One server-sent event.
pub fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// Reads the text deltas and usage out of an OpenAI-style streamed completion: each call takes the
/// bytes that arrived and returns the events complete so far.
#[derive(Debug, Default)]
pub struct CompletionStream {
    pending: Vec<u8>,
    pub done: bool,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub finish_reason: Option<String>,
}

/// What one streamed line said.
#[derive(Debug, Clone, PartialEq)]
pub enum Streamed {
    Text(String),
    /// The server reported an error inside the stream.
    Error(String),
}

impl CompletionStream {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Streamed> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(error) = chunk.get("error") {
                let message = error["message"].as_str().unwrap_or("the chat model failed");
                out.push(Streamed::Error(message.to_string()));
                continue;
            }
            if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                self.prompt_tokens = usage["prompt_tokens"].as_u64();
                self.completion_tokens = usage["completion_tokens"].as_u64();
            }
            let choice = &chunk["choices"][0];
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish_reason = Some(reason.to_string());
            }
            if let Some(text) = choice["delta"]["content"].as_str()
                && !text.is_empty()
            {
                out.push(Streamed::Text(text.to_string()));
            }
        }
        out
    }
}

/// The chat model's request for a prompt.
pub fn completion_request(
    model: &str,
    prompt: &Prompt,
    settings: &ProjectSettings,
    stream: bool,
) -> Value {
    let messages: Vec<Value> = prompt
        .messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role.name(), "content": m.content}))
        .collect();
    let mut request = serde_json::json!({
        "model": model,
        "messages": messages,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "stream": stream,
    });
    if stream {
        request["stream_options"] = serde_json::json!({"include_usage": true});
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passage(similarity: Option<f32>, answer: Option<&str>) -> Passage {
        Passage::from_hit(
            &json!({
                "chunk_id": "d:0", "text": "t", "document": {"id": "d", "title": "T"},
                "signals": {"semantic": similarity.map(|s| json!({"score": s, "rank": 1}))},
                "answer": answer,
            }),
            1,
        )
    }

    #[test]
    fn chat_request_checks_name_the_field() {
        let check = |body: Value, expected: &str| {
            let error = ChatRequest::from_json(&body).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        };
        check(json!({}), "`message` is required");
        check(json!({"message": "  "}), "`message` must not be empty");
        check(json!({"message": "x".repeat(4001)}), "`message` has 4001");
        check(json!({"message": 3}), "`message` must be a string");
        check(json!({"message": "hi", "top_k": 0}), "`top_k`");
        check(json!({"message": "hi", "top_k": 21}), "`top_k`");
        check(json!({"message": "hi", "stream": "yes"}), "`stream`");
        check(
            json!({"message": "hi", "conversation": "../x"}),
            "`conversation`",
        );
        check(json!({"message": "hi", "user": ""}), "`user`");
        check(json!({"message": "hi", "filter": []}), "`filter`");
        check(
            json!({"message": "hi", "temperature": 1}),
            "`temperature` is not a known",
        );
        let ok =
            ChatRequest::from_json(&json!({"message": "hi", "stream": false, "top_k": 3})).unwrap();
        assert!(!ok.stream);
        assert_eq!(ok.top_k, Some(3));
    }

    #[test]
    fn plan_cases() {
        let settings = ProjectSettings::default();
        let t = settings.answer_threshold;
        assert_eq!(plan(&[], &settings, true), Plan::Fallback);
        assert_eq!(
            plan(&[passage(Some(t - 0.01), None)], &settings, true),
            Plan::Fallback
        );
        assert_eq!(
            plan(&[passage(Some(t + 0.01), None)], &settings, true),
            Plan::Model
        );
        assert_eq!(
            plan(&[passage(Some(t + 0.01), None)], &settings, false),
            Plan::Extractive
        );
        // Keyword search alone (no similarity at all): a match is enough.
        assert_eq!(plan(&[passage(None, None)], &settings, true), Plan::Model);
        let qa = passage(Some(settings.qa_threshold + 0.01), Some("Yes, we do."));
        assert!(
            matches!(plan(&[qa], &settings, true), Plan::Qa(p) if p.answer.as_deref() == Some("Yes, we do."))
        );
        // A Q&A pair that is only near goes to the model like any passage.
        let near = passage(Some(settings.qa_threshold - 0.01), Some("Yes."));
        assert_eq!(plan(&[near], &settings, true), Plan::Model);
    }

    #[test]
    fn completion_stream_reads_split_lines() {
        let mut stream = CompletionStream::default();
        let all = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut texts = Vec::new();
        for piece in all.as_bytes().chunks(7) {
            texts.extend(stream.feed(piece));
        }
        assert_eq!(
            texts,
            vec![Streamed::Text("Hel".into()), Streamed::Text("lo".into())]
        );
        assert!(stream.done);
        assert_eq!(stream.prompt_tokens, Some(7));
        assert_eq!(stream.completion_tokens, Some(2));
        assert_eq!(stream.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn extractive_answers_quote_and_cite() {
        let a = Passage {
            text: "First.".into(),
            number: 4,
            ..passage(Some(0.9), None)
        };
        let b = Passage {
            text: "Second.".into(),
            number: 7,
            ..passage(Some(0.8), None)
        };
        let (text, used) = extractive(&[a.clone(), b, a]);
        assert_eq!(text, "First. [1]\n\nSecond. [2]");
        assert_eq!(used.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
    }
}
