//! The document store port over CouchDB's HTTP API (the embedded store, CouchDB, Cloudant or
//! pouchdb-server), through Spin's outbound HTTP.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use shared::auth::store::{DocumentStore, Mail, Mailer, StoreError};

/// The database auth keeps its records in.
pub const DATABASE: &str = "edgerag_auth";

/// Mango indexes `_find` uses: created with the database.
const INDEXES: &[&[&str]] = &[
    &["type", "user"],
    &["type", "org"],
    &["type", "project"],
    &["type", "created_by"],
    &["type", "actor"],
];

/// A CouchDB database reached over HTTP with Basic auth.
pub struct Couch {
    base: String,
    authorization: String,
}

impl std::fmt::Debug for Couch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Couch").field("base", &self.base).finish()
    }
}

struct Answer {
    status: u16,
    body: Value,
}

impl Couch {
    pub fn new(url: &str, user: &str, password: &str) -> Self {
        use base64::Engine;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self {
            base: format!("{}/{DATABASE}", url.trim_end_matches('/')),
            authorization: format!("Basic {credentials}"),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, StoreError> {
        let unavailable =
            |e: String| StoreError::Unavailable(format!("document store {method} {path}: {e}"));
        let (status, body) = send_json(
            method,
            &format!("{}{path}", self.base),
            Some(&self.authorization),
            body,
        )
        .await
        .map_err(unavailable)?;
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match status {
            409 => Err(StoreError::Conflict),
            401 | 403 => Err(unavailable(format!("refused our credentials ({status})"))),
            s if s >= 500 => Err(unavailable(format!("answered {s}"))),
            _ => Ok(Answer { status, body }),
        }
    }

    /// Creates the database and its indexes; a database that already exists is fine.
    async fn create_database(&self) -> Result<(), StoreError> {
        match self.call("PUT", "", None).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(error) => return Err(error),
        }
        for fields in INDEXES {
            let index =
                json!({"index": {"fields": fields}, "name": fields.join("-"), "type": "json"});
            self.call("POST", "/_index", Some(&index)).await?;
        }
        Ok(())
    }

    /// Whether a 404 means the database itself is missing (rather than one document).
    fn no_database(answer: &Answer) -> bool {
        answer.status == 404
            && answer
                .body
                .get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| r.contains("Database does not exist") || r == "no_db_file")
    }

    fn expect_ok(answer: Answer, what: &str) -> Result<Value, StoreError> {
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(StoreError::Unavailable(format!(
                "document store {what}: {} {}",
                answer.status, answer.body
            )))
        }
    }
}

/// A document id as one URL path segment.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value as a query parameter.
fn query_json(value: &Value) -> String {
    encode(&value.to_string())
}

impl DocumentStore for Couch {
    async fn get(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let answer = self.call("GET", &format!("/{}", encode(id)), None).await?;
        match answer.status {
            404 => Ok(None),
            _ => Self::expect_ok(answer, "get").map(Some),
        }
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Value>>, StoreError> {
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
        let body = Self::expect_ok(answer, "_all_docs")?;
        let rows = body
            .get("rows")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(ids
            .iter()
            .map(|id| {
                rows.iter()
                    .find(|row| row.get("key").and_then(Value::as_str) == Some(id))
                    .and_then(|row| row.get("doc"))
                    .filter(|doc| doc.is_object())
                    .cloned()
            })
            .collect())
    }

    async fn put(&self, doc: &Value) -> Result<String, StoreError> {
        let id = doc.get("_id").and_then(Value::as_str).unwrap_or_default();
        let path = format!("/{}", encode(id));
        let mut answer = self.call("PUT", &path, Some(doc)).await?;
        if Self::no_database(&answer) {
            self.create_database().await?;
            answer = self.call("PUT", &path, Some(doc)).await?;
        }
        let body = Self::expect_ok(answer, "put")?;
        body.get("rev")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| StoreError::Unavailable("document store put: no rev in answer".into()))
    }

    async fn delete(&self, id: &str, rev: &str) -> Result<(), StoreError> {
        let answer = self
            .call(
                "DELETE",
                &format!("/{}?rev={}", encode(id), encode(rev)),
                None,
            )
            .await?;
        match answer.status {
            404 => Ok(()),
            _ => Self::expect_ok(answer, "delete").map(|_| ()),
        }
    }

    async fn prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        // `_all_docs` orders ids by raw code points, so `prefix\u{fff0}` bounds the range and
        // `after\u{0}` is the first id after `after`.
        let start = match after {
            Some(after) if after.starts_with(prefix) => format!("{after}\u{0}"),
            _ => prefix.to_string(),
        };
        let end = format!("{prefix}\u{fff0}");
        let path = format!(
            "/_all_docs?include_docs=true&startkey={}&endkey={}&limit={limit}",
            query_json(&Value::String(start)),
            query_json(&Value::String(end))
        );
        let answer = self.call("GET", &path, None).await?;
        if Self::no_database(&answer) {
            return Ok(Vec::new());
        }
        let body = Self::expect_ok(answer, "_all_docs")?;
        Ok(body
            .get("rows")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("doc").filter(|d| d.is_object()).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn find(&self, selector: Value, limit: usize) -> Result<Vec<Value>, StoreError> {
        let answer = self
            .call(
                "POST",
                "/_find",
                Some(&json!({"selector": selector, "limit": limit})),
            )
            .await?;
        if Self::no_database(&answer) {
            return Ok(Vec::new());
        }
        let body = Self::expect_ok(answer, "_find")?;
        Ok(body
            .get("docs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

/// Mail through a JSON HTTP endpoint: `POST {to, subject, text}` with an optional bearer key.
#[derive(Debug)]
pub struct HttpMailer {
    pub url: String,
    pub api_key: String,
}

impl Mailer for HttpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), StoreError> {
        let body = serde_json::to_value(mail)
            .map_err(|e| StoreError::Unavailable(format!("mail endpoint: {e}")))?;
        let authorization = (!self.api_key.is_empty()).then(|| format!("Bearer {}", self.api_key));
        let (status, _) = send_json("POST", &self.url, authorization.as_deref(), Some(&body))
            .await
            .map_err(|e| StoreError::Unavailable(format!("mail endpoint: {e}")))?;
        match status {
            200..=299 => Ok(()),
            status => Err(StoreError::Unavailable(format!(
                "mail endpoint answered {status}"
            ))),
        }
    }
}

/// One outbound JSON request through Spin's HTTP client: the status and the whole body.
pub(crate) async fn send_json(
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Bytes), String> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("accept", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let bytes = match body {
        Some(value) => {
            request = request.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(value).map_err(|e| e.to_string())?)
        }
        None => Bytes::new(),
    };
    // Spin streams every outgoing body with an unknown length, which goes out chunked. A server that
    // answers a DELETE without reading its (empty) chunked body may close the connection under the
    // client's feet (seen as HttpProtocolError under load); a declared length avoids the body framing.
    let request = request
        .header("content-length", bytes.len())
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let response = spin_sdk::http::send(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((status, body))
}
