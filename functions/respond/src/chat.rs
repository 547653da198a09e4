//! One answer, from a question to the events a client reads: retrieval through `retrieve`, the
//! decision (`shared::respond::plan`), the model streamed through as it decodes, citations, and the
//! turn written to the conversation. The chat route and the OpenAI-compatible route both run this
//! and differ only in how they encode the events.

use std::time::Instant;

use bytes::Bytes;
use futures::Stream;
use guest::couch::Couch;
use guest::vars::variable;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::ApiError;
use shared::respond::conversation::{
    Channel, Conversation, Message, Timings, Usage, conversation_doc_id, message_id,
};
use shared::respond::prompt::{self, Budget};
use shared::respond::{
    Citation, CompletionStream, Method, Passage, Plan, Role, Source, Streamed, Turn,
    completion_request, extractive, plan, retrieval_request,
};

use crate::consumer::edgerag::platform::retrieve;
use crate::llm::{Failure, Llm};

/// The database conversations are kept in.
pub const DATABASE: &str = guest::couch::RESPOND_DATABASE;

pub async fn couch() -> Result<Couch, ApiError> {
    Ok(Couch::new(
        &variable("docstore_url").await?,
        &variable("docstore_user").await?,
        &variable("docstore_password").await?,
        DATABASE,
    ))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

/// A new id: creation time first (ids sort by age), then randomness.
pub fn new_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:011x}{random}", now_ms())
}

/// What a client asked, however it asked it.
pub struct Asked {
    pub project: String,
    pub principal: guest::Principal,
    pub question: String,
    /// A conversation to continue.
    pub conversation: Option<String>,
    pub user: Option<String>,
    pub top_k: Option<u32>,
    pub filter: Option<Value>,
    pub channel: Channel,
    /// System text the client sent (OpenAI clients), after the project's.
    pub system: Option<String>,
    /// History the client sent (OpenAI clients); otherwise the conversation's.
    pub history: Option<Vec<Turn>>,
    pub stream: bool,
}

/// What happened, for the client.
pub enum Event {
    /// Text of the answer, as it arrives.
    Delta(String),
    /// The answer is whole and saved.
    End(Box<Outcome>),
    /// It failed part way.
    Failed(ApiError),
}

/// The finished answer.
pub struct Outcome {
    pub conversation: String,
    pub message: String,
    pub text: String,
    pub citations: Vec<Citation>,
    pub method: Method,
    pub source: Source,
    pub unanswered: bool,
    pub usage: Usage,
    pub timings: Timings,
    pub degraded: Option<String>,
}

impl Outcome {
    /// The fields both routes show.
    pub fn json(&self) -> Value {
        let mut body = json!({
            "conversation": self.conversation,
            "message": self.message,
            "unanswered": self.unanswered,
            "source": self.source,
            "citations": self.citations,
            "citation_method": self.method,
            "usage": self.usage,
            "timings": self.timings,
        });
        if let Some(why) = &self.degraded {
            body["degraded"] = json!(why);
        }
        body
    }
}

/// How the answer will be produced, decided before the reply starts.
enum Answer {
    /// Known already (fallback, Q&A, extractive, or a whole model answer).
    Ready {
        text: String,
        passages: Vec<Passage>,
        source: Source,
        usage: Usage,
    },
    /// The model's stream, open.
    Streaming {
        response: spin_sdk::http::Response,
        passages: Vec<Passage>,
    },
}

/// An answer under way: retrieval done, the model (if any) answering.
pub struct Started {
    couch: Couch,
    conversation: Conversation,
    rev: Option<String>,
    question: String,
    answer: Answer,
    degraded: Option<String>,
    retrieve_ms: f64,
    started: Instant,
}

impl Started {
    /// The conversation's id and the id the answer will have.
    pub fn ids(&self) -> (String, String) {
        (
            self.conversation.id.clone(),
            message_id(&self.conversation.id, self.conversation.messages.len() + 1),
        )
    }
}

/// Loads the conversation to continue, or starts one. Another project's, an expired one, or (for a
/// widget's visitor) another visitor's is not found.
async fn conversation(
    couch: &Couch,
    asked: &Asked,
) -> Result<(Conversation, Option<String>), ApiError> {
    let Some(id) = &asked.conversation else {
        let conversation = Conversation::new(
            &new_id(),
            &asked.project,
            asked.user.clone(),
            asked.channel,
            now_ms(),
        );
        return Ok((conversation, None));
    };
    let missing = || ApiError::NotFound(format!("conversation {id} was not found"));
    let doc = couch
        .get(&conversation_doc_id(&asked.project, id))
        .await?
        .ok_or_else(missing)?;
    let rev = doc["_rev"].as_str().map(str::to_string);
    let conversation: Conversation = serde_json::from_value(doc)
        .map_err(|e| ApiError::Internal(format!("unreadable conversation {id}: {e}")))?;
    if conversation.project != asked.project
        || conversation.expired(asked.principal.settings.retention_days, now_ms())
        || (asked.principal.kind == "widget_key" && conversation.user != asked.user)
    {
        return Err(missing());
    }
    Ok((conversation, rev))
}

/// Retrieval, through search's own code.
async fn retrieve_passages(
    asked: &Asked,
    history: &[Turn],
) -> Result<(Vec<Passage>, Option<String>), ApiError> {
    let settings = &asked.principal.settings;
    let query = prompt::retrieval_query(history, &asked.question);
    let top_k = asked.top_k.unwrap_or(settings.top_k);
    let request = retrieval_request(&query, top_k, asked.filter.as_ref());
    let reply = retrieve::search(asked.principal.authorization.clone(), request.to_string())
        .await
        .map_err(guest::api_error)?;
    let reply: Value = serde_json::from_str(&reply)
        .map_err(|e| ApiError::Internal(format!("retrieve answered something not JSON: {e}")))?;
    let passages = reply["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .enumerate()
                .map(|(i, hit)| Passage::from_hit(hit, i + 1))
                .collect()
        })
        .unwrap_or_default();
    let degraded = reply["degraded"].as_str().map(str::to_string);
    Ok((passages, degraded))
}

fn nonce() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Retrieves, decides and, for the model, sends the prompt: everything that can still be answered
/// as an HTTP error happens here, before the reply starts.
pub async fn start(asked: Asked) -> Result<Started, ApiError> {
    let started = Instant::now();
    let couch = couch().await?;
    let (conversation, rev) = conversation(&couch, &asked).await?;
    conversation.check_room()?;
    let history = asked
        .history
        .clone()
        .unwrap_or_else(|| conversation.turns());
    let retrieve_started = Instant::now();
    let (passages, mut degraded) = retrieve_passages(&asked, &history).await?;
    let retrieve_ms = ms(retrieve_started);
    let settings = &asked.principal.settings;
    let llm = Llm::from_variables().await?;
    let ready = |text: String, passages: Vec<Passage>, source| Answer::Ready {
        text,
        passages,
        source,
        usage: Usage::default(),
    };
    let extractive_answer = |passages: &[Passage]| {
        let (text, used) = extractive(passages);
        ready(text, used, Source::Extractive)
    };
    let answer = match plan(&passages, settings, llm.is_some()) {
        Plan::Fallback => ready(settings.fallback.clone(), Vec::new(), Source::Fallback),
        Plan::Qa(pair) => ready(
            pair.answer.clone().unwrap_or_default(),
            vec![*pair],
            Source::Qa,
        ),
        Plan::Extractive => extractive_answer(&passages),
        Plan::Model => {
            let llm = llm.expect("the plan is the model only when one is configured");
            let system = match &asked.system {
                Some(extra) => format!("{}\n\n{extra}", settings.system_prompt),
                None => settings.system_prompt.clone(),
            };
            let model = settings.model.clone().unwrap_or_else(|| llm.model.clone());
            let nonce = nonce();
            let mut window = settings.context_tokens as usize;
            let mut outcome = None;
            // A prompt the model finds too long (the estimate was short) is rebuilt once, smaller.
            for _ in 0..2 {
                let budget = Budget::new(window, settings.max_tokens as usize);
                let built = prompt::build(
                    &system,
                    &history,
                    &passages,
                    &asked.question,
                    budget,
                    &nonce,
                );
                let body = completion_request(&model, &built, settings, asked.stream);
                let sent = if asked.stream {
                    llm.send(&body).await.map(|response| Answer::Streaming {
                        response,
                        passages: built.passages.clone(),
                    })
                } else {
                    llm.complete(&body)
                        .await
                        .map(|(text, (prompt_tokens, completion_tokens))| Answer::Ready {
                            text: shared::respond::echo::scrub(&text),
                            passages: built.passages.clone(),
                            source: Source::Model,
                            usage: Usage {
                                prompt_tokens,
                                completion_tokens,
                            },
                        })
                };
                match sent {
                    Ok(answer) => {
                        outcome = Some(answer);
                        break;
                    }
                    Err(Failure::TooLong) => window = window * 2 / 3,
                    Err(Failure::Unavailable(detail)) => {
                        eprintln!("respond: {detail}");
                        degraded = Some(
                            "the chat model is unavailable; this answer quotes the best passages"
                                .into(),
                        );
                        break;
                    }
                }
            }
            match outcome {
                Some(answer) => answer,
                None => {
                    if degraded.is_none() {
                        degraded = Some(
                            "the question and passages do not fit the chat model's window; this answer quotes the best passages"
                                .into(),
                        );
                    }
                    extractive_answer(&passages)
                }
            }
        }
    };
    Ok(Started {
        couch,
        conversation,
        rev,
        question: asked.question,
        answer,
        degraded,
        retrieve_ms,
        started,
    })
}

/// Writes a conversation (a new one, or over revision `rev`).
pub async fn save(
    couch: &Couch,
    conversation: &Conversation,
    rev: Option<&str>,
) -> Result<String, ApiError> {
    let mut doc = serde_json::to_value(conversation)
        .map_err(|e| ApiError::Internal(format!("conversation to JSON: {e}")))?;
    doc["_id"] = json!(conversation_doc_id(&conversation.project, &conversation.id));
    if let Some(rev) = rev {
        doc["_rev"] = json!(rev);
    }
    couch.put(&doc).await
}

/// An answer being read out.
struct Run {
    started: Started,
    reader: CompletionStream,
    text: String,
    usage: Usage,
    first_token_ms: Option<f64>,
    /// Keeps the prompt's delimiters out of what the model writes.
    scrub: shared::respond::echo::Scrub,
    sent_ready: bool,
    /// Whether the answer has ended: saved, or failed.
    over: bool,
}

impl Run {
    async fn next(&mut self) -> Option<Event> {
        if self.over {
            return None;
        }
        let Self {
            started,
            reader,
            text,
            first_token_ms,
            scrub,
            ..
        } = self;
        match &mut started.answer {
            Answer::Ready {
                text: ready, usage, ..
            } => {
                if !self.sent_ready {
                    self.sent_ready = true;
                    *text = ready.clone();
                    self.usage = *usage;
                    *first_token_ms = Some(ms(started.started));
                    return Some(Event::Delta(ready.clone()));
                }
            }
            Answer::Streaming { response, .. } => loop {
                let frame = if reader.done {
                    None
                } else {
                    response.body_mut().frame().await
                };
                match frame {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let mut delta = String::new();
                        for item in reader.feed(&data) {
                            match item {
                                Streamed::Text(piece) => delta.push_str(&piece),
                                Streamed::Error(message) => {
                                    eprintln!(
                                        "respond: the chat model failed mid-stream: {message}"
                                    );
                                    self.over = true;
                                    return Some(Event::Failed(ApiError::Unavailable(message)));
                                }
                            }
                        }
                        let delta = scrub.feed(&delta);
                        if !delta.is_empty() {
                            first_token_ms.get_or_insert_with(|| ms(started.started));
                            text.push_str(&delta);
                            return Some(Event::Delta(delta));
                        }
                    }
                    Some(Err(error)) => {
                        eprintln!("respond: the chat model's stream broke: {error:?}");
                        self.over = true;
                        return Some(Event::Failed(ApiError::Unavailable(
                            "the chat model's stream broke".into(),
                        )));
                    }
                    None => {
                        // What the filter held back at the end was not a delimiter.
                        let rest = scrub.finish();
                        if !rest.is_empty() {
                            reader.done = true;
                            first_token_ms.get_or_insert_with(|| ms(started.started));
                            text.push_str(&rest);
                            return Some(Event::Delta(rest));
                        }
                        self.usage = Usage {
                            prompt_tokens: reader.prompt_tokens.unwrap_or(0),
                            completion_tokens: reader.completion_tokens.unwrap_or(0),
                        };
                        break;
                    }
                }
            },
        }
        self.over = true;
        Some(self.finish(false).await)
    }

    /// The client left: stops reading the model (dropping its response ends the generation) and
    /// keeps the question and what was answered so far, marked interrupted (an answer that was
    /// whole before it was sent, a fallback or a stored answer, is kept whole). An answer that had
    /// already ended (saved, or failed) is left as it is.
    async fn leave(mut self) {
        if self.over {
            return;
        }
        self.over = true;
        let streamed = match &self.started.answer {
            Answer::Streaming { passages, .. } => Some(passages.clone()),
            Answer::Ready { text, usage, .. } => {
                self.text = text.clone();
                self.usage = *usage;
                None
            }
        };
        if let Some(passages) = &streamed {
            self.started.answer = Answer::Ready {
                text: self.text.clone(),
                passages: passages.clone(),
                source: Source::Model,
                usage: self.usage,
            };
        }
        if let Event::Failed(error) = self.finish(streamed.is_some()).await {
            eprintln!("respond: the interrupted answer could not be kept: {error}");
        }
    }

    /// Cites, saves the turn and reports the end.
    async fn finish(&mut self, interrupted: bool) -> Event {
        let started = &mut self.started;
        let (passages, source) = match &started.answer {
            Answer::Ready {
                passages, source, ..
            } => (passages.clone(), *source),
            Answer::Streaming { passages, .. } => (passages.clone(), Source::Model),
        };
        let (citations, method) = match source {
            Source::Model => shared::respond::citations::cite(&self.text, &passages),
            _ => (
                passages.iter().map(Citation::of).collect(),
                Method::Verbatim,
            ),
        };
        let timings = Timings {
            retrieve_ms: started.retrieve_ms,
            first_token_ms: self.first_token_ms,
            total_ms: ms(started.started),
        };
        let now = now_ms();
        let unanswered = source == Source::Fallback;
        let message = Message {
            id: String::new(),
            role: Role::Assistant,
            content: self.text.clone(),
            created: now,
            citations: citations.clone(),
            unanswered,
            source: Some(source),
            usage: Some(self.usage),
            timings: Some(timings),
            feedback: None,
            interrupted,
        };
        let id = started
            .conversation
            .add_turn(&started.question, message, now);
        if let Err(error) = save(
            &started.couch,
            &started.conversation,
            started.rev.as_deref(),
        )
        .await
        {
            return Event::Failed(error);
        }
        Event::End(Box::new(Outcome {
            conversation: started.conversation.id.clone(),
            message: id,
            text: self.text.clone(),
            citations,
            method,
            source,
            unanswered,
            usage: self.usage,
            timings,
            degraded: started.degraded.clone(),
        }))
    }
}

impl Run {
    fn new(started: Started) -> Self {
        Self {
            started,
            reader: CompletionStream::default(),
            text: String::new(),
            usage: Usage::default(),
            first_token_ms: None,
            scrub: Default::default(),
            sent_ready: false,
            over: false,
        }
    }
}

/// The answer being read out, as a stream's state. A client that leaves mid-answer drops the stream,
/// and with it this: the model's response goes (which stops its generation) and the turn is kept
/// with what was answered by then, marked `interrupted`, by a task that outlives the stream (the
/// host keeps the instance running until that task ends).
struct Reading(Option<Run>);

impl Drop for Reading {
    fn drop(&mut self) {
        if let Some(run) = self.0.take()
            && !run.over
        {
            spin_sdk::wasip3::spawn(run.leave());
        }
    }
}

/// The answer's events: text as it arrives, then the end (after the turn is saved), or a failure.
pub fn events(started: Started) -> impl Stream<Item = Event> {
    futures::stream::unfold(Reading(Some(Run::new(started))), |mut reading| async move {
        let event = reading.0.as_mut()?.next().await;
        event.map(|event| (event, reading))
    })
}

/// Encodes events as bytes for the wire.
pub fn encode<S, F>(events: S, mut encode: F) -> impl Stream<Item = Bytes>
where
    S: Stream<Item = Event>,
    F: FnMut(Event) -> String,
{
    use futures::StreamExt;
    events.map(move |event| Bytes::from(encode(event)))
}

/// The whole answer, for `stream: false`.
pub async fn whole(started: Started) -> Result<Outcome, ApiError> {
    use futures::StreamExt;
    let mut events = std::pin::pin!(events(started));
    let mut text = String::new();
    while let Some(event) = events.next().await {
        match event {
            Event::Delta(piece) => text.push_str(&piece),
            Event::End(outcome) => return Ok(*outcome),
            Event::Failed(error) => return Err(error),
        }
    }
    Err(ApiError::Internal(format!(
        "the answer ended without its end ({} bytes)",
        text.len()
    )))
}
