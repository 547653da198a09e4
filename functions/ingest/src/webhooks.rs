//! Webhook endpoints: a system that changed tells edgerag so, signed.
//!
//! `POST .../webhooks` makes an endpoint and shows its secret once; the secret is derived from the
//! `webhook_key` variable and the endpoint's stored id and salt (`shared::ingest::webhook`), so it is
//! never stored. `POST /v1/hooks/:id` takes deliveries signed the Standard Webhooks way or GitHub's,
//! acts on them (a sync, an upsert, a delete), and remembers each delivery id for a day so that a
//! replay does nothing.

use serde_json::{Value, json};
use shared::ApiError;
use shared::ingest::document::{ContentType, Kind, validate_id};
use shared::ingest::webhook;

use crate::documents::{Documents, Mode, now_ms};
use crate::fetch;
use crate::input::NewDocument;
use crate::sources::{Sources, texts};

/// The events an endpoint may take.
pub const EVENTS: &[&str] = &[
    "source.sync",
    "document.upsert",
    "document.delete",
    "github.push",
];
/// How long a delivery id is remembered.
const REPLAY_MS: u64 = 24 * 3600 * 1000;

fn record_id(id: &str) -> String {
    format!("webhook:{id}")
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the platform provides randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

async fn server_key() -> Result<Vec<u8>, ApiError> {
    let key = guest::vars::variable("webhook_key").await?;
    if key.len() < 32 {
        return Err(ApiError::Internal(
            "variable webhook_key must be at least 32 characters".into(),
        ));
    }
    Ok(key.into_bytes())
}

fn public(record: &Value) -> Value {
    json!({
        "id": record["id"],
        "url": format!("/v1/hooks/{}", record["id"].as_str().unwrap_or_default()),
        "events": record["events"],
        "sources": record["sources"],
        "created_at": record["created_at"],
    })
}

/// A project's webhook endpoints.
pub struct Webhooks<'a, 'b> {
    pub documents: &'a Documents<'b>,
}

impl Webhooks<'_, '_> {
    fn couch(&self) -> &guest::couch::Couch {
        &self.documents.stores.couch
    }

    async fn load(&self, id: &str) -> Result<Value, ApiError> {
        self.couch()
            .get(&record_id(id))
            .await?
            .filter(|r| r["project"] == self.documents.project)
            .ok_or_else(|| ApiError::NotFound(format!("no webhook {id} in this project")))
    }

    /// `{events?, sources?}`: a new endpoint, its secret shown this once.
    pub async fn create(&self, body: &Value, origin: Option<&str>) -> Result<Value, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| bad("a webhook is a JSON object"))?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !["events", "sources"].contains(&k.as_str()))
        {
            return Err(bad(format!("unknown field `{unknown}`")));
        }
        let list = |name: &str| -> Result<Vec<String>, ApiError> {
            match &body[name] {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) if items.len() <= 50 => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(format!("`{name}` is a list of strings")))
                    })
                    .collect(),
                _ => Err(bad(format!("`{name}` is a list of at most 50 strings"))),
            }
        };
        let mut events = list("events")?;
        if events.is_empty() {
            events = EVENTS.iter().map(|e| e.to_string()).collect();
        }
        if let Some(unknown) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(bad(format!(
                "unknown event `{unknown}`; events are {}",
                EVENTS.join(", ")
            )));
        }
        let sources = list("sources")?;
        let owner = Sources {
            documents: self.documents,
        };
        for source in &sources {
            owner.get(source, None, 1).await?;
        }
        let id = format!("wh{}", random_hex(12));
        let salt = random_hex(16);
        let record = json!({
            "_id": record_id(&id),
            "type": "webhook",
            "id": id,
            "project": self.documents.project,
            "events": events,
            "sources": sources,
            "salt": salt,
            "created_at": now_ms(),
        });
        self.couch().put(&record).await?;
        let mut out = public(&record);
        if let Some(origin) = origin {
            out["url"] = json!(format!("{origin}/v1/hooks/{id}"));
        }
        out["secret"] = json!(webhook::secret(&server_key().await?, &id, &salt));
        Ok(out)
    }

    pub async fn list(&self) -> Result<Value, ApiError> {
        let rows = self.couch().prefix("webhook:", None, 100_000, true).await?;
        let hooks: Vec<Value> = rows
            .iter()
            .filter(|r| r["doc"]["project"] == self.documents.project)
            .map(|r| public(&r["doc"]))
            .collect();
        Ok(json!({"webhooks": hooks}))
    }

    pub async fn delete(&self, id: &str) -> Result<Value, ApiError> {
        let record = self.load(id).await?;
        self.couch()
            .bulk(vec![
                json!({"_id": record["_id"], "_rev": record["_rev"], "_deleted": true}),
            ])
            .await?;
        self.couch()
            .delete_prefix(&format!("delivery:{id}:"))
            .await?;
        Ok(json!({"deleted": id}))
    }
}

/// The page a `document.upsert` names by URL, fetched as a crawl fetches (public addresses only).
async fn fetch_page(
    text: &str,
) -> Result<(ContentType, Option<String>, Vec<u8>, String), ApiError> {
    let policy = fetch::Policy::load().await;
    let url = policy.check(text).map_err(bad)?;
    let headers = [("accept", crate::sources::PAGE_ACCEPT.to_string())];
    match fetch::fetch(&policy, &url, &headers, &fetch::Validators::default()).await {
        Ok(fetch::Fetched::Page {
            url,
            content_type,
            body,
            ..
        }) => {
            let format = ContentType::parse(&content_type)?;
            let charset = shared::ingest::text::charset(&content_type).map(str::to_string);
            Ok((format, charset, body.to_vec(), url.to_string()))
        }
        Ok(fetch::Fetched::Gone(status)) => {
            Err(ApiError::Unprocessable(format!("{url} answered {status}")))
        }
        Ok(fetch::Fetched::NotModified) => Err(ApiError::Internal("unexpected 304".into())),
        Err(error) => Err(ApiError::Unprocessable(format!("{url}: {error}"))),
    }
}

/// Removes every webhook endpoint of `project` and the deliveries it remembers (a purge); answers
/// how many records went.
pub async fn purge_project(couch: &guest::couch::Couch, project: &str) -> Result<usize, ApiError> {
    let rows = couch.prefix("webhook:", None, 100_000, true).await?;
    let hooks: Vec<&Value> = rows
        .iter()
        .map(|r| &r["doc"])
        .filter(|doc| doc["project"] == project)
        .collect();
    let mut removed = 0;
    for hook in &hooks {
        let id = hook["id"].as_str().unwrap_or_default();
        removed += couch.delete_prefix(&format!("delivery:{id}:")).await?;
    }
    if !hooks.is_empty() {
        couch
            .bulk(
                hooks
                    .iter()
                    .map(|doc| json!({"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": true}))
                    .collect(),
            )
            .await?;
        removed += hooks.len();
    }
    Ok(removed)
}

/// The webhook endpoint `id`, whichever project it is of (a delivery names no project).
pub async fn endpoint(couch: &guest::couch::Couch, id: &str) -> Result<Value, ApiError> {
    validate_id(id).map_err(|_| ApiError::NotFound("no such webhook".into()))?;
    couch
        .get(&record_id(id))
        .await?
        .ok_or_else(|| ApiError::NotFound("no such webhook".into()))
}

/// The headers a delivery is judged by.
#[derive(Debug, Default)]
pub struct Delivery {
    pub standard_id: Option<String>,
    pub standard_timestamp: Option<String>,
    pub standard_signature: Option<String>,
    pub github_signature: Option<String>,
    pub github_event: Option<String>,
    pub github_delivery: Option<String>,
}

/// Verifies and acts on a delivery to endpoint `hook` (already loaded); answers with the status.
pub async fn deliver(
    documents: &Documents<'_>,
    hook: &Value,
    delivery: &Delivery,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let id = hook["id"].as_str().unwrap_or_default();
    let secret = webhook::secret(
        &server_key().await?,
        id,
        hook["salt"].as_str().unwrap_or_default(),
    );
    let github = delivery.github_event.is_some() || delivery.github_signature.is_some();
    let now = now_ms();
    let checked = if github {
        webhook::verify_github(&secret, delivery.github_signature.as_deref(), body)
    } else {
        webhook::verify_standard(
            &secret,
            delivery.standard_id.as_deref(),
            delivery.standard_timestamp.as_deref(),
            delivery.standard_signature.as_deref(),
            body,
            now / 1000,
        )
    };
    checked.map_err(|why| ApiError::Unauthenticated(format!("webhook signature: {why}")))?;
    let delivery_id = if github {
        delivery.github_delivery.clone()
    } else {
        delivery.standard_id.clone()
    }
    .ok_or_else(|| bad("the delivery has no id (`webhook-id` or `X-GitHub-Delivery`)"))?;
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
    let (event, data) = if github {
        match delivery.github_event.as_deref() {
            Some("ping") => return Ok((200, json!({"pong": true}))),
            Some("push") => ("github.push".to_string(), payload.clone()),
            Some(other) => return Ok((200, json!({"ignored": other}))),
            None => return Err(bad("a GitHub delivery names its event in X-GitHub-Event")),
        }
    } else {
        let kind = payload["type"]
            .as_str()
            .ok_or_else(|| bad("the payload is {\"type\": ..., \"data\": {...}}"))?;
        (kind.to_string(), payload["data"].clone())
    };
    if !EVENTS.contains(&event.as_str()) {
        return Err(bad(format!(
            "unknown event `{event}`; events are {}",
            EVENTS.join(", ")
        )));
    }
    if !hook["events"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == event.as_str()))
    {
        return Err(bad(format!("this webhook does not take `{event}` events")));
    }
    // Remembered before acting: a replay racing the first delivery loses the write and does nothing.
    let mark = json!({"_id": format!("delivery:{id}:{}", shared::ingest::document::content_hash(delivery_id.as_bytes())), "at": now});
    match documents.stores.couch.put(&mark).await {
        Ok(_) => {}
        Err(ApiError::Conflict(_)) => {
            let seen = documents
                .stores
                .couch
                .get(mark["_id"].as_str().unwrap_or_default())
                .await?;
            let at = seen.as_ref().and_then(|s| s["at"].as_u64()).unwrap_or(0);
            if now < at + REPLAY_MS {
                return Ok((200, json!({"replayed": true, "delivery": delivery_id})));
            }
            let mut renewed = seen.unwrap_or_default();
            renewed["at"] = json!(now);
            documents.stores.couch.put(&renewed).await?;
        }
        Err(other) => return Err(other),
    }
    let sources = Sources { documents };
    match event.as_str() {
        "source.sync" => {
            let source = data["source"]
                .as_str()
                .ok_or_else(|| bad("source.sync names its `source` in `data`"))?;
            let listed = hook["sources"].as_array().cloned().unwrap_or_default();
            if !listed.is_empty() && !listed.iter().any(|s| s == source) {
                return Err(bad(format!("this webhook does not sync source {source}")));
            }
            Ok((202, json!({"job": sources.sync(source).await?})))
        }
        "github.push" => {
            // The branch a push went to, and the repository; each matching `github` source syncs
            // (its tree is compared blob by blob, so only what the push changed is fetched and
            // re-embedded, and files it removed are deleted). Listed sources of other kinds sync too.
            let branch = data["ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("refs/heads/"));
            let repository = data["repository"]["full_name"].as_str().unwrap_or_default();
            let listed: Vec<String> = texts(&hook["sources"]);
            let all = sources.list().await?;
            let mut jobs = Vec::new();
            for source in all["sources"].as_array().cloned().unwrap_or_default() {
                let id = source["id"].as_str().unwrap_or_default().to_string();
                let named = listed.contains(&id);
                let matches = if source["kind"] == "github" {
                    (named || listed.is_empty())
                        && source["repo"]
                            .as_str()
                            .is_some_and(|r| r.eq_ignore_ascii_case(repository))
                        && branch.is_some_and(|b| source["branch"] == b)
                } else {
                    named
                };
                if !matches {
                    continue;
                }
                match sources.sync(&id).await {
                    Ok(job) => jobs.push(job),
                    Err(ApiError::Conflict(message)) => {
                        jobs.push(json!({"source": id, "skipped": message}))
                    }
                    Err(other) => return Err(other),
                }
            }
            Ok((202, json!({"jobs": jobs})))
        }
        "document.upsert" => {
            let doc = data["id"]
                .as_str()
                .ok_or_else(|| bad("document.upsert names the document's `id`"))?;
            validate_id(doc)?;
            let title = match &data["title"] {
                Value::Null => None,
                Value::String(t) => Some(shared::ingest::document::validate_title(t)?),
                _ => return Err(bad("`title` is a string")),
            };
            let new = match (&data["text"], &data["url"]) {
                (Value::String(text), Value::Null) => NewDocument {
                    id: Some(doc.to_string()),
                    title,
                    content_type: ContentType::Text,
                    charset: None,
                    bytes: text.as_bytes().to_vec(),
                    tags: Vec::new(),
                    metadata: Default::default(),
                    source_uri: None,
                    kind: Kind::Document,
                    answer: None,
                },
                (Value::Null, Value::String(url)) => {
                    let (content_type, charset, bytes, url) = fetch_page(url).await?;
                    NewDocument {
                        id: Some(doc.to_string()),
                        title,
                        content_type,
                        charset,
                        bytes,
                        tags: Vec::new(),
                        metadata: Default::default(),
                        source_uri: Some(url),
                        kind: Kind::Document,
                        answer: None,
                    }
                }
                _ => {
                    return Err(bad(
                        "document.upsert carries the document's `text` or the `url` to read it from",
                    ));
                }
            };
            let (status, body) = documents.write(new, Mode::Upsert).await?;
            Ok((if status == 202 { 202 } else { 200 }, body))
        }
        "document.delete" => {
            let doc = data["id"]
                .as_str()
                .ok_or_else(|| bad("document.delete names the document's `id`"))?;
            validate_id(doc)?;
            match documents.delete(doc).await {
                Ok(body) => Ok((200, body)),
                Err(ApiError::NotFound(_)) => Ok((200, json!({"deleted": doc, "absent": true}))),
                Err(other) => Err(other),
            }
        }
        _ => unreachable!("checked against EVENTS"),
    }
}
