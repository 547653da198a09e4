//! A database of the document store over CouchDB's HTTP API (the embedded store, CouchDB, Cloudant,
//! pouchdb-server).

use serde_json::{Value, json};
use shared::ApiError;

use crate::outbound::{Answer, encode, send_json};

/// The database search keeps evaluations in.
pub const SEARCH_DATABASE: &str = "edgerag_search";
/// The database respond keeps conversations and visitors' rate counts in.
pub const RESPOND_DATABASE: &str = "edgerag_respond";

/// One CouchDB database reached with Basic auth.
#[derive(Clone)]
pub struct Couch {
    base: String,
    authorization: String,
}

impl std::fmt::Debug for Couch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Couch").field("base", &self.base).finish()
    }
}

fn unavailable(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("document store {what}: {detail}"))
}

impl Couch {
    pub fn new(url: &str, user: &str, password: &str, database: &str) -> Self {
        use base64::Engine;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self {
            base: format!("{}/{database}", url.trim_end_matches('/')),
            authorization: format!("Basic {credentials}"),
        }
    }

    /// Another database of the same document store, reached with the same credentials.
    pub fn sibling(&self, database: &str) -> Self {
        let url = self.base.rsplit_once('/').map_or("", |(url, _)| url);
        Self {
            base: format!("{url}/{database}"),
            authorization: self.authorization.clone(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ApiError> {
        let answer = send_json(
            method,
            &format!("{}{path}", self.base),
            &[("authorization", &self.authorization)],
            body,
        )
        .await
        .map_err(|e| unavailable(method, e))?;
        match answer.status {
            401 | 403 => Err(unavailable(
                method,
                format!("refused our credentials ({})", answer.status),
            )),
            s if s >= 500 => Err(unavailable(method, format!("answered {s}"))),
            _ => Ok(answer),
        }
    }

    fn no_database(answer: &Answer) -> bool {
        answer.status == 404
            && answer
                .json()
                .get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| r.contains("Database does not exist") || r == "no_db_file")
    }

    async fn create_database(&self) -> Result<(), ApiError> {
        let answer = self.call("PUT", "", None).await?;
        if answer.ok() || answer.status == 412 {
            Ok(())
        } else {
            Err(unavailable("create database", answer.status))
        }
    }

    /// A document, or `None`.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, ApiError> {
        let answer = self.call("GET", &format!("/{}", encode(id)), None).await?;
        match answer.status {
            404 => Ok(None),
            200 => Ok(Some(answer.json())),
            s => Err(unavailable("get", s)),
        }
    }

    /// Writes a document (with its `_rev` to update one); `Conflict` when someone else wrote it first.
    pub async fn put(&self, doc: &Value) -> Result<String, ApiError> {
        let id = doc.get("_id").and_then(Value::as_str).unwrap_or_default();
        let path = format!("/{}", encode(id));
        let mut answer = self.call("PUT", &path, Some(doc)).await?;
        if Self::no_database(&answer) {
            self.create_database().await?;
            answer = self.call("PUT", &path, Some(doc)).await?;
        }
        match answer.status {
            409 => Err(ApiError::Conflict(
                "the document changed while this request ran; retry".into(),
            )),
            200..=299 => Ok(answer
                .json()
                .get("rev")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()),
            s => Err(unavailable("put", s)),
        }
    }

    /// Writes many documents in one request (`_deleted: true` ones are deleted) and returns their
    /// new revisions in order; a conflict on any is `Conflict`, any other failure `Unavailable`.
    pub async fn bulk(&self, docs: Vec<Value>) -> Result<Vec<String>, ApiError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({"docs": docs});
        let mut answer = self.call("POST", "/_bulk_docs", Some(&body)).await?;
        if Self::no_database(&answer) {
            self.create_database().await?;
            answer = self.call("POST", "/_bulk_docs", Some(&body)).await?;
        }
        if !answer.ok() {
            return Err(unavailable("_bulk_docs", answer.status));
        }
        let rows = answer.json().as_array().cloned().unwrap_or_default();
        if rows
            .iter()
            .any(|r| r.get("error").and_then(Value::as_str) == Some("conflict"))
        {
            return Err(ApiError::Conflict(
                "a document changed while this request ran; retry".into(),
            ));
        }
        let failed = rows.iter().filter(|r| r.get("error").is_some()).count();
        if failed > 0 {
            return Err(unavailable("_bulk_docs", format!("{failed} writes failed")));
        }
        Ok(rows
            .iter()
            .map(|r| r["rev"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Several documents by id in one request, `None` for each that does not exist.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Value>>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self
            .call(
                "POST",
                "/_all_docs?include_docs=true",
                Some(&json!({"keys": ids})),
            )
            .await?;
        if Self::no_database(&answer) {
            return Ok(vec![None; ids.len()]);
        }
        if !answer.ok() {
            return Err(unavailable("_all_docs", answer.status));
        }
        let rows = answer.json()["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(ids
            .iter()
            .map(|id| {
                rows.iter()
                    .find(|row| row["key"].as_str() == Some(id))
                    .and_then(|row| row.get("doc"))
                    .filter(|doc| doc.is_object())
                    .cloned()
            })
            .collect())
    }

    /// Up to `limit` rows of ids starting with `prefix`, after `after`, with their documents when
    /// `docs`. Each row is `{id, value: {rev}, doc?}`.
    pub async fn prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        docs: bool,
    ) -> Result<Vec<Value>, ApiError> {
        // `_all_docs` orders ids by code point: `prefix\u{fff0}` bounds the range and `after\u{0}` is the
        // first id after `after`.
        let start = match after {
            Some(after) if after.starts_with(prefix) => format!("{after}\u{0}"),
            _ => prefix.to_string(),
        };
        let end = format!("{prefix}\u{fff0}");
        let path = format!(
            "/_all_docs?include_docs={docs}&startkey={}&endkey={}&limit={limit}",
            encode(&Value::String(start).to_string()),
            encode(&Value::String(end).to_string())
        );
        let answer = self.call("GET", &path, None).await?;
        if Self::no_database(&answer) {
            return Ok(Vec::new());
        }
        if !answer.ok() {
            return Err(unavailable("_all_docs", answer.status));
        }
        Ok(answer
            .json()
            .get("rows")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// [`Couch::prefix`] newest id first: up to `limit` rows of ids starting with `prefix` and
    /// sorting before `before` (all of them when `None`), with their documents.
    pub async fn prefix_descending(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, ApiError> {
        let start = match before {
            Some(before) if before.starts_with(prefix) => before.to_string(),
            _ => format!("{prefix}\u{fff0}"),
        };
        // `before` itself is the first row when it still exists: skip it.
        let skip = usize::from(before.is_some_and(|b| b.starts_with(prefix)));
        let path = format!(
            "/_all_docs?include_docs=true&descending=true&startkey={}&endkey={}&limit={limit}&skip={skip}",
            encode(&Value::String(start).to_string()),
            encode(&Value::String(prefix.to_string()).to_string())
        );
        let answer = self.call("GET", &path, None).await?;
        if Self::no_database(&answer) {
            return Ok(Vec::new());
        }
        if !answer.ok() {
            return Err(unavailable("_all_docs", answer.status));
        }
        Ok(answer
            .json()
            .get("rows")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Deletes every document whose id starts with `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ApiError> {
        let mut deleted = 0;
        loop {
            let rows = self.prefix(prefix, None, 500, false).await?;
            if rows.is_empty() {
                return Ok(deleted);
            }
            let docs: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "_id": row["id"],
                        "_rev": row["value"]["rev"],
                        "_deleted": true,
                    })
                })
                .collect();
            deleted += docs.len();
            self.bulk(docs).await?;
        }
    }
}
