//! A project's chat analytics over its conversations: per interval, conversations, questions,
//! the unanswered rate, feedback and answer times; over the window, the top questions and the most
//! cited documents.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::Role;
use super::conversation::{Conversation, Rating, parse_time};
use crate::ApiError;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// The most intervals one request may ask for.
pub const MAX_INTERVALS: u64 = 1_000;
/// How many top questions and documents are listed.
pub const TOP: usize = 10;

/// The window and interval of an analytics request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
    pub interval: u64,
}

impl Window {
    /// From `?from=&to=&interval=` (hour, day or week); the last 30 days by day when left out.
    pub fn from_query(query: &str, now: u64) -> Result<Self, ApiError> {
        let (mut from, mut to, mut interval) = (None, None, DAY);
        for (name, value) in crate::request::query_pairs(query)? {
            match name.as_str() {
                "from" => from = Some(parse_time(&value, "from")?),
                "to" => to = Some(parse_time(&value, "to")?),
                "interval" => {
                    interval = match value.as_str() {
                        "hour" => HOUR,
                        "day" => DAY,
                        "week" => 7 * DAY,
                        _ => {
                            return Err(ApiError::BadRequest(
                                "`interval` is hour, day or week".into(),
                            ));
                        }
                    }
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "`{other}` is not a known query parameter (from, to, interval)"
                    )));
                }
            }
        }
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to.saturating_sub(30 * DAY));
        if from >= to {
            return Err(ApiError::BadRequest("`from` must be before `to`".into()));
        }
        if (to - from).div_ceil(interval) > MAX_INTERVALS {
            return Err(ApiError::BadRequest(format!(
                "the window holds more than {MAX_INTERVALS} intervals; widen `interval`"
            )));
        }
        Ok(Self { from, to, interval })
    }

    fn bucket(&self, at: u64) -> Option<u64> {
        (self.from..self.to)
            .contains(&at)
            .then(|| (at - self.from) / self.interval)
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// A question as the top list counts it: lowercased, punctuation dropped, spaces collapsed.
pub fn normalise_question(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default)]
struct Bucket {
    conversations: u64,
    questions: u64,
    answers: u64,
    unanswered: u64,
    up: u64,
    down: u64,
    first_token: Vec<f64>,
    total: Vec<f64>,
}

impl Bucket {
    fn json(mut self, start: u64) -> Value {
        self.first_token.sort_by(f64::total_cmp);
        self.total.sort_by(f64::total_cmp);
        let rate = (self.answers > 0).then(|| self.unanswered as f64 / self.answers as f64);
        json!({
            "start": start,
            "conversations": self.conversations,
            "messages": self.questions,
            "answers": self.answers,
            "unanswered": self.unanswered,
            "unanswered_rate": rate,
            "feedback": {"up": self.up, "down": self.down},
            "first_token_ms": {"p50": percentile(&self.first_token, 50.0), "p95": percentile(&self.first_token, 95.0)},
            "total_ms": {"p50": percentile(&self.total, 50.0), "p95": percentile(&self.total, 95.0)},
        })
    }
}

/// The analytics of `conversations` over `window`.
pub fn compute(conversations: &[Conversation], window: Window) -> Value {
    let count = (window.to - window.from).div_ceil(window.interval);
    let mut buckets: BTreeMap<u64, Bucket> = (0..count).map(|i| (i, Bucket::default())).collect();
    let mut all = Bucket::default();
    let mut questions: HashMap<String, (u64, String)> = HashMap::new();
    let mut cited: HashMap<String, (u64, String)> = HashMap::new();
    for conversation in conversations {
        if let Some(b) = window.bucket(conversation.created) {
            buckets.entry(b).or_default().conversations += 1;
            all.conversations += 1;
        }
        for message in &conversation.messages {
            let Some(b) = window.bucket(message.created) else {
                continue;
            };
            let bucket = buckets.entry(b).or_default();
            match message.role {
                Role::User => {
                    bucket.questions += 1;
                    all.questions += 1;
                    let key = normalise_question(&message.content);
                    if !key.is_empty() {
                        let entry = questions
                            .entry(key)
                            .or_insert_with(|| (0, message.content.trim().to_string()));
                        entry.0 += 1;
                    }
                }
                Role::Assistant => {
                    for target in [&mut *bucket, &mut all] {
                        target.answers += 1;
                        target.unanswered += u64::from(message.unanswered);
                        match message.feedback.as_ref().map(|f| &f.rating) {
                            Some(Rating::Up) => target.up += 1,
                            Some(Rating::Down) => target.down += 1,
                            None => {}
                        }
                        if let Some(t) = &message.timings {
                            target.total.push(t.total_ms);
                            if let Some(first) = t.first_token_ms {
                                target.first_token.push(first);
                            }
                        }
                    }
                    for citation in &message.citations {
                        let entry = cited
                            .entry(citation.document.clone())
                            .or_insert_with(|| (0, citation.title.clone()));
                        entry.0 += 1;
                    }
                }
                Role::System => {}
            }
        }
    }
    let top = |map: HashMap<String, (u64, String)>| -> Vec<(String, u64, String)> {
        let mut list: Vec<(String, u64, String)> = map
            .into_iter()
            .map(|(k, (n, shown))| (k, n, shown))
            .collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        list.truncate(TOP);
        list
    };
    json!({
        "from": window.from,
        "to": window.to,
        "interval_ms": window.interval,
        "totals": all.json(window.from),
        "intervals": buckets
            .into_iter()
            .map(|(i, b)| b.json(window.from + i * window.interval))
            .collect::<Vec<_>>(),
        "top_questions": top(questions)
            .into_iter()
            .map(|(normalised, count, shown)| json!({"question": shown, "normalised": normalised, "count": count}))
            .collect::<Vec<_>>(),
        "most_cited_documents": top(cited)
            .into_iter()
            .map(|(document, count, title)| json!({"document": document, "title": title, "citations": count}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::conversation::{Channel, Feedback, Message, Timings};
    use super::super::{Citation, Source};
    use super::*;

    fn answer(unanswered: bool, total: f64, first: f64, document: Option<&str>) -> Message {
        Message {
            id: String::new(),
            role: Role::Assistant,
            content: "a".into(),
            created: 0,
            citations: document
                .map(|d| Citation {
                    number: 1,
                    chunk_id: format!("{d}:0"),
                    document: d.into(),
                    title: d.to_uppercase(),
                    source_uri: None,
                    heading_path: Vec::new(),
                    start: None,
                    end: None,
                    page: None,
                    sha256: String::new(),
                    snippet: String::new(),
                })
                .into_iter()
                .collect(),
            unanswered,
            source: Some(if unanswered {
                Source::Fallback
            } else {
                Source::Model
            }),
            usage: None,
            timings: Some(Timings {
                retrieve_ms: 1.0,
                first_token_ms: Some(first),
                total_ms: total,
            }),
            feedback: None,
            interrupted: false,
        }
    }

    #[test]
    fn known_conversations_give_known_numbers() {
        let mut a = Conversation::new("a", "p", None, Channel::Chat, 0);
        a.add_turn(
            "What is the refund window?",
            answer(false, 100.0, 10.0, Some("returns")),
            0,
        );
        a.add_turn(
            "what is the REFUND window",
            answer(true, 300.0, 30.0, None),
            HOUR,
        );
        a.messages[3].feedback = Some(Feedback {
            rating: Rating::Down,
            comment: None,
            at: HOUR,
        });
        let mut b = Conversation::new("b", "p", None, Channel::Widget, DAY + 5);
        b.add_turn(
            "Do you ship abroad?",
            answer(false, 200.0, 20.0, Some("returns")),
            DAY + 5,
        );
        b.messages[1].feedback = Some(Feedback {
            rating: Rating::Up,
            comment: None,
            at: DAY + 5,
        });
        // Outside the window: not counted.
        let mut c = Conversation::new("c", "p", None, Channel::Chat, 5 * DAY);
        c.add_turn("Late?", answer(false, 1.0, 1.0, Some("late")), 5 * DAY);
        let report = compute(
            &[a, b, c],
            Window {
                from: 0,
                to: 2 * DAY,
                interval: DAY,
            },
        );
        let totals = &report["totals"];
        assert_eq!(totals["conversations"], 2);
        assert_eq!(totals["messages"], 3);
        assert_eq!(totals["unanswered"], 1);
        assert!(
            (totals["unanswered_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
            "{report}"
        );
        assert_eq!(totals["feedback"], json!({"up": 1, "down": 1}));
        assert_eq!(totals["total_ms"], json!({"p50": 200.0, "p95": 300.0}));
        assert_eq!(totals["first_token_ms"], json!({"p50": 20.0, "p95": 30.0}));
        let days = report["intervals"].as_array().unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0]["messages"], 2);
        assert_eq!(days[1]["messages"], 1);
        assert_eq!(days[1]["start"], DAY);
        assert_eq!(
            report["top_questions"][0]["normalised"],
            "what is the refund window"
        );
        assert_eq!(report["top_questions"][0]["count"], 2);
        assert_eq!(report["most_cited_documents"][0]["document"], "returns");
        assert_eq!(report["most_cited_documents"][0]["citations"], 2);
        assert_eq!(report["most_cited_documents"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn window_checks() {
        let w = Window::from_query("from=2026-01-01&to=2026-01-03&interval=hour", 0).unwrap();
        assert_eq!(w.interval, HOUR);
        assert_eq!((w.to - w.from) / HOUR, 48);
        assert!(Window::from_query("interval=month", DAY * 40).is_err());
        assert!(Window::from_query("from=2026-01-02&to=2026-01-01", 0).is_err());
        assert!(Window::from_query("from=2000-01-01&to=2026-01-01&interval=hour", 0).is_err());
        assert!(Window::from_query("bogus=1", DAY * 40).is_err());
        let default = Window::from_query("", DAY * 40).unwrap();
        assert_eq!(default.to - default.from, 30 * DAY);
    }
}
