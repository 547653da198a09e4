//! Conversations as the document store keeps them: one document per conversation holding its
//! messages, so a turn is one read and one write. Ids carry the project, so another project's
//! conversation is simply not found.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::citations::Citation;
use super::{Role, Source, Turn};
use crate::ApiError;

/// The most messages (both sides) one conversation holds; past it a new conversation starts.
pub const MAX_MESSAGES: usize = 200;
/// Conversations one list page holds at most.
pub const MAX_PAGE: usize = 100;

pub fn conversation_doc_id(project: &str, conversation: &str) -> String {
    format!("conversation:{project}:{conversation}")
}

/// The document id prefix of a project's conversations.
pub fn conversation_prefix(project: &str) -> String {
    format!("conversation:{project}:")
}

/// A message id names its conversation: `{conversation}-{n}`.
pub fn message_id(conversation: &str, index: usize) -> String {
    format!("{conversation}-{index}")
}

/// The conversation and index a message id names.
pub fn parse_message_id(id: &str) -> Option<(&str, usize)> {
    let (conversation, index) = id.rsplit_once('-')?;
    Some((conversation, index.parse().ok()?))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub rating: Rating,
    pub comment: Option<String>,
    pub at: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Milliseconds an answer took: retrieval, to its first token, in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub retrieve_ms: f64,
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: Role,
    pub content: String,
    /// Milliseconds since the epoch.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
    /// The client left before the answer was whole: `content` is what had been answered by then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Which door a conversation came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Chat,
    Widget,
    Openai,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "conversation")]
pub struct Conversation {
    pub id: String,
    pub project: String,
    /// The end user it belongs to, when the client named one.
    pub user: Option<String>,
    pub channel: Channel,
    /// The first question, cut to a line.
    pub title: String,
    pub created: u64,
    pub updated: u64,
    pub messages: Vec<Message>,
}

impl Conversation {
    pub fn new(id: &str, project: &str, user: Option<String>, channel: Channel, now: u64) -> Self {
        Self {
            id: id.into(),
            project: project.into(),
            user,
            channel,
            title: String::new(),
            created: now,
            updated: now,
            messages: Vec::new(),
        }
    }

    /// The earlier turns as a prompt takes them.
    pub fn turns(&self) -> Vec<Turn> {
        self.messages
            .iter()
            .map(|m| Turn {
                role: m.role,
                content: m.content.clone(),
            })
            .collect()
    }

    /// Whether two more messages fit.
    pub fn check_room(&self) -> Result<(), ApiError> {
        if self.messages.len() + 2 > MAX_MESSAGES {
            return Err(ApiError::Conflict(format!(
                "the conversation holds its most messages ({MAX_MESSAGES}); start a new one"
            )));
        }
        Ok(())
    }

    /// Adds a question and its answer, both at `now`; returns the answer's message id.
    pub fn add_turn(&mut self, question: &str, mut answer: Message, now: u64) -> String {
        if self.title.is_empty() {
            self.title = crate::ingest::text::one_line(question)
                .chars()
                .take(120)
                .collect();
        }
        let question_id = message_id(&self.id, self.messages.len());
        self.messages.push(Message {
            id: question_id,
            role: Role::User,
            content: question.into(),
            created: now,
            citations: Vec::new(),
            unanswered: false,
            source: None,
            usage: None,
            timings: None,
            feedback: None,
            interrupted: false,
        });
        answer.id = message_id(&self.id, self.messages.len());
        answer.created = now;
        let id = answer.id.clone();
        self.messages.push(answer);
        self.updated = now;
        id
    }

    /// Whether retention has run out for it.
    pub fn expired(&self, retention_days: Option<u32>, now: u64) -> bool {
        retention_days.is_some_and(|days| self.updated + u64::from(days) * 86_400_000 < now)
    }

    /// The list view: no messages, their count.
    pub fn summary(&self) -> Value {
        let unanswered = self
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant && m.unanswered)
            .count();
        json!({
            "id": self.id,
            "user": self.user,
            "channel": self.channel,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "messages": self.messages.len(),
            "unanswered": unanswered,
        })
    }

    /// The whole conversation as the API shows it.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "user": self.user,
            "channel": self.channel,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "messages": self.messages,
        })
    }

    /// The conversation as Markdown: each question and answer, the answer's sources under it.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", escape_line(&self.title));
        for message in &self.messages {
            let when = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(message.created),
            );
            let who = match message.role {
                Role::User => "User",
                Role::Assistant => "Assistant",
                Role::System => "System",
            };
            out.push_str(&format!(
                "**{who}** ({when}):\n\n{}\n\n",
                message.content.trim()
            ));
            if message.interrupted {
                out.push_str("(The reader left before this answer was finished.)\n\n");
            }
            if !message.citations.is_empty() {
                out.push_str("Sources:\n\n");
                for c in &message.citations {
                    let place = c.source_uri.as_deref().unwrap_or(&c.document);
                    out.push_str(&format!(
                        "{}. {} ({place})\n",
                        c.number,
                        escape_line(&c.title)
                    ));
                }
                out.push('\n');
            }
            if let Some(feedback) = &message.feedback {
                let rating = match feedback.rating {
                    Rating::Up => "up",
                    Rating::Down => "down",
                };
                out.push_str(&format!("Feedback: {rating}"));
                if let Some(comment) = &feedback.comment {
                    out.push_str(&format!(" ({})", escape_line(comment)));
                }
                out.push_str("\n\n");
            }
        }
        out
    }
}

fn escape_line(text: &str) -> String {
    crate::ingest::text::one_line(text)
}

/// A checked feedback body.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRequest {
    pub rating: Rating,
    pub comment: Option<String>,
    /// The end user giving it (a widget's visitor must name themselves).
    pub user: Option<String>,
}

/// The longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;

impl FeedbackRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !["rating", "comment", "user"].contains(&k.as_str()))
        {
            return Err(ApiError::BadRequest(format!(
                "`{unknown}` is not a known field; known: rating, comment, user"
            )));
        }
        let rating = match object.get("rating").and_then(Value::as_str) {
            Some("up") => Rating::Up,
            Some("down") => Rating::Down,
            _ => {
                return Err(ApiError::BadRequest(
                    "`rating` is required: up or down".into(),
                ));
            }
        };
        let comment = match object.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if c.chars().count() <= MAX_COMMENT_CHARS => Some(c.clone()),
            Some(_) => {
                return Err(ApiError::BadRequest(format!(
                    "`comment` is a string of at most {MAX_COMMENT_CHARS} characters"
                )));
            }
        };
        let user = match object.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => {
                super::check_user(u, "user")?;
                Some(u.clone())
            }
            Some(_) => return Err(ApiError::BadRequest("`user` must be a string".into())),
        };
        Ok(Self {
            rating,
            comment,
            user,
        })
    }
}

/// Parses a date bound of a query: `YYYY-MM-DD` (midnight UTC), RFC 3339, or milliseconds since the
/// epoch.
pub fn parse_time(value: &str, field: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    let text = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_string()
    };
    humantime::parse_rfc3339(&text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{field}` must be a date (2026-12-01), an RFC 3339 time or epoch milliseconds"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Message {
        Message {
            id: String::new(),
            role: Role::Assistant,
            content: text.into(),
            created: 1_000,
            citations: Vec::new(),
            unanswered: false,
            source: Some(Source::Model),
            usage: None,
            timings: None,
            feedback: None,
            interrupted: false,
        }
    }

    #[test]
    fn turns_get_ids_that_name_their_conversation() {
        let mut c = Conversation::new("abc", "p1", None, Channel::Chat, 1_000);
        let id = c.add_turn("What is X?\nPlease.", answer("X is Y."), 2_000);
        assert_eq!(id, "abc-1");
        assert_eq!(parse_message_id(&id), Some(("abc", 1)));
        assert_eq!(parse_message_id("a-b-c-3"), Some(("a-b-c", 3)));
        assert_eq!(parse_message_id("nodash"), None);
        assert_eq!(c.title, "What is X? Please.");
        assert_eq!(c.turns().len(), 2);
        assert_eq!(c.updated, 2_000);
    }

    #[test]
    fn retention_expires_by_last_activity() {
        let c = Conversation::new("a", "p", None, Channel::Chat, 0);
        let day = 86_400_000;
        assert!(!c.expired(None, 1000 * day));
        assert!(!c.expired(Some(30), 30 * day));
        assert!(c.expired(Some(30), 30 * day + 1));
    }

    #[test]
    fn markdown_export_lists_sources_and_feedback() {
        let mut c = Conversation::new("a", "p", None, Channel::Chat, 0);
        let mut a = answer("Thirty days [1].");
        a.citations.push(Citation {
            number: 1,
            chunk_id: "d:0".into(),
            document: "d".into(),
            title: "Returns\npolicy".into(),
            source_uri: Some("https://example.com/returns".into()),
            heading_path: Vec::new(),
            start: Some(0),
            end: Some(10),
            page: None,
            sha256: String::new(),
            snippet: "…".into(),
        });
        a.feedback = Some(Feedback {
            rating: Rating::Up,
            comment: Some("helpful".into()),
            at: 5,
        });
        c.add_turn("Refund window?", a, 0);
        expect_test::expect![[r#"
            # Refund window?

            **User** (1970-01-01T00:00:00Z):

            Refund window?

            **Assistant** (1970-01-01T00:00:00Z):

            Thirty days [1].

            Sources:

            1. Returns policy (https://example.com/returns)

            Feedback: up (helpful)

        "#]]
        .assert_eq(&c.markdown());
    }

    #[test]
    fn an_interrupted_answer_says_so_in_json_and_markdown() {
        let mut c = Conversation::new("a", "p", None, Channel::Chat, 0);
        let mut a = answer("Refunds are paid within");
        a.interrupted = true;
        c.add_turn("Refunds?", a, 0);
        c.add_turn("And returns?", answer("Thirty days."), 0);
        let view = c.view();
        assert_eq!(view["messages"][1]["interrupted"], true);
        assert!(view["messages"][3].get("interrupted").is_none());
        let markdown = c.markdown();
        assert_eq!(
            markdown.matches("before this answer was finished").count(),
            1
        );
        assert!(markdown.contains("Refunds are paid within\n\n(The reader left"));
    }

    #[test]
    fn feedback_and_time_checks() {
        use serde_json::json;
        assert!(FeedbackRequest::from_json(&json!({"rating": "up"})).is_ok());
        for bad in [
            json!({}),
            json!({"rating": "meh"}),
            json!({"rating": "up", "stars": 5}),
            json!({"rating": "down", "comment": 3}),
        ] {
            assert!(FeedbackRequest::from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(parse_time("1970-01-02", "from").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z", "from").unwrap(), 1_000);
        assert_eq!(parse_time("42", "from").unwrap(), 42);
        assert!(parse_time("yesterday", "from").is_err());
    }
}
