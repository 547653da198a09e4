//! Conversations read, exported, deleted and rated, and the analytics over them. Retention is
//! enforced where conversations are read: one past its time is deleted and not shown.

use guest::couch::Couch;
use serde_json::{Value, json};
use shared::ApiError;
use shared::auth::records::ProjectSettings;
use shared::respond::analytics::{self, Window};
use shared::respond::conversation::{
    Conversation, Feedback, FeedbackRequest, MAX_PAGE, conversation_doc_id, conversation_prefix,
    parse_message_id, parse_time,
};
use shared::respond::{Role, check_id, check_user};

use crate::chat::{now_ms, save};

/// Rows read per store round trip while scanning.
const SCAN: usize = 100;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("conversation {id} was not found"))
}

fn read(doc: &Value) -> Option<Conversation> {
    serde_json::from_value(doc.clone()).ok()
}

/// Deletes conversations whose retention ran out (best effort: a failure leaves them for next time).
async fn purge(couch: &Couch, expired: Vec<Value>) {
    if expired.is_empty() {
        return;
    }
    let docs = expired
        .into_iter()
        .map(|doc| json!({"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": true}))
        .collect();
    if let Err(error) = couch.bulk(docs).await {
        eprintln!("respond: retention purge failed: {error:?}");
    }
}

/// One conversation and its revision; an expired one is deleted and not found.
pub async fn load(
    couch: &Couch,
    project: &str,
    id: &str,
    settings: &ProjectSettings,
) -> Result<(Conversation, String), ApiError> {
    check_id(id, "conversation")?;
    let doc = couch
        .get(&conversation_doc_id(project, id))
        .await?
        .ok_or_else(|| not_found(id))?;
    let conversation = read(&doc)
        .filter(|c| c.project == project)
        .ok_or_else(|| not_found(id))?;
    if conversation.expired(settings.retention_days, now_ms()) {
        purge(couch, vec![doc]).await;
        return Err(not_found(id));
    }
    let rev = doc["_rev"].as_str().unwrap_or_default().to_string();
    Ok((conversation, rev))
}

/// `GET .../conversations?user=&from=&to=&limit=&before=`: newest first.
pub async fn list(
    couch: &Couch,
    project: &str,
    query: &str,
    settings: &ProjectSettings,
) -> Result<Value, ApiError> {
    let (mut user, mut from, mut to, mut limit, mut before) = (None, None, None, 20, None);
    for (name, value) in shared::request::query_pairs(query)? {
        match name.as_str() {
            "user" => {
                check_user(&value, "user")?;
                user = Some(value);
            }
            "from" => from = Some(parse_time(&value, "from")?),
            "to" => to = Some(parse_time(&value, "to")?),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::BadRequest(format!("`limit` is 1 to {MAX_PAGE}")))?;
            }
            "before" => {
                check_id(&value, "before")?;
                before = Some(value);
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "`{other}` is not a known query parameter (user, from, to, limit, before)"
                )));
            }
        }
    }
    let prefix = conversation_prefix(project);
    let mut cursor = before.map(|id| conversation_doc_id(project, &id));
    let mut page = Vec::new();
    let mut more = false;
    let now = now_ms();
    'scan: loop {
        let rows = couch
            .prefix_descending(&prefix, cursor.as_deref(), SCAN)
            .await?;
        let mut expired = Vec::new();
        for row in &rows {
            cursor = row["id"].as_str().map(str::to_string);
            let Some(conversation) = read(&row["doc"]) else {
                continue;
            };
            if conversation.expired(settings.retention_days, now) {
                expired.push(row["doc"].clone());
                continue;
            }
            let fits = user
                .as_ref()
                .is_none_or(|u| conversation.user.as_ref() == Some(u))
                && from.is_none_or(|f| conversation.updated >= f)
                && to.is_none_or(|t| conversation.created < t);
            if fits {
                if page.len() == limit {
                    more = true;
                    purge(couch, expired).await;
                    break 'scan;
                }
                page.push(conversation.summary());
            }
        }
        purge(couch, expired).await;
        if rows.len() < SCAN {
            break;
        }
    }
    let next = if more {
        page.last().map(|c| c["id"].clone()).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(json!({"conversations": page, "next_before": next}))
}

/// `POST .../messages/:id/feedback`: on an answer, once per answer (a second replaces the first).
pub async fn feedback(
    couch: &Couch,
    project: &str,
    message: &str,
    body: &Value,
    settings: &ProjectSettings,
    widget: bool,
) -> Result<Value, ApiError> {
    let request = FeedbackRequest::from_json(body)?;
    if widget && request.user.is_none() {
        return Err(ApiError::BadRequest(
            "`user` is required with a widget key: the visitor's id".into(),
        ));
    }
    let missing = || ApiError::NotFound(format!("message {message} was not found"));
    let (conversation_id, index) = parse_message_id(message).ok_or_else(missing)?;
    let (mut conversation, rev) = load(couch, project, conversation_id, settings)
        .await
        .map_err(|_| missing())?;
    // A widget's visitor rates only their own conversation's answers.
    if widget && conversation.user != request.user {
        return Err(missing());
    }
    let now = now_ms();
    let answer = conversation
        .messages
        .get_mut(index)
        .filter(|m| m.role == Role::Assistant)
        .ok_or_else(missing)?;
    answer.feedback = Some(Feedback {
        rating: request.rating,
        comment: request.comment,
        at: now,
    });
    let shown = json!({"message": message, "feedback": answer.feedback});
    save(couch, &conversation, Some(&rev)).await?;
    Ok(shown)
}

/// `DELETE .../conversations/:id`.
pub async fn delete(
    couch: &Couch,
    project: &str,
    id: &str,
    settings: &ProjectSettings,
) -> Result<Value, ApiError> {
    let (conversation, rev) = load(couch, project, id, settings).await?;
    couch
        .bulk(vec![json!({
            "_id": conversation_doc_id(project, id),
            "_rev": rev,
            "_deleted": true,
        })])
        .await?;
    Ok(json!({"deleted": conversation.id, "messages": conversation.messages.len()}))
}

/// `GET .../analytics?from=&to=&interval=`.
pub async fn analytics(
    couch: &Couch,
    project: &str,
    query: &str,
    settings: &ProjectSettings,
) -> Result<Value, ApiError> {
    let now = now_ms();
    let window = Window::from_query(query, now)?;
    let prefix = conversation_prefix(project);
    let mut conversations = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let rows = couch
            .prefix_descending(&prefix, cursor.as_deref(), SCAN)
            .await?;
        for row in &rows {
            cursor = row["id"].as_str().map(str::to_string);
            if let Some(c) = read(&row["doc"])
                && !c.expired(settings.retention_days, now)
                && c.updated >= window.from
            {
                conversations.push(c);
            }
        }
        if rows.len() < SCAN {
            break;
        }
    }
    Ok(analytics::compute(&conversations, window))
}

/// Counts a widget visitor's message against the project's per-minute limit: one small document per
/// visitor holding the current minute and its count (a new minute starts again from zero, so the
/// documents do not pile up minute by minute), updated with its revision (a conflict re-reads and
/// retries).
pub async fn count_visitor(
    couch: &Couch,
    project: &str,
    visitor: &str,
    per_minute: u32,
) -> Result<(), ApiError> {
    let now = now_ms();
    let minute = now / 60_000;
    let id = format!("visitor:{project}:{}", guest::outbound::encode(visitor));
    for _ in 0..5 {
        let doc = couch.get(&id).await?;
        let count = doc
            .as_ref()
            .filter(|d| d["minute"].as_u64() == Some(minute))
            .and_then(|d| d["count"].as_u64())
            .unwrap_or(0);
        if count >= u64::from(per_minute) {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "this visitor sent {per_minute} messages this minute; wait a little"
                ),
                retry_after_secs: 60 - (now / 1000) % 60,
            });
        }
        let mut next =
            json!({"_id": id, "type": "visitor_count", "minute": minute, "count": count + 1});
        if let Some(rev) = doc.as_ref().and_then(|d| d["_rev"].as_str()) {
            next["_rev"] = json!(rev);
        }
        match couch.put(&next).await {
            Ok(_) => return Ok(()),
            Err(ApiError::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ApiError::TooManyRequests {
        message: "this visitor is sending too fast; wait a little".into(),
        retry_after_secs: 1,
    })
}
