//! The vector store over Qdrant's REST API (the embedded store or a Qdrant cluster): one collection
//! for every project's chunks, `project` a tenant index, dense vectors from the embedding model and
//! keyword vectors with Qdrant's `idf` modifier.

use serde_json::{Value, json};
use shared::ApiError;

use crate::outbound::{Answer, send_json};

/// The collection every project's chunks live in.
pub const COLLECTION: &str = "edgerag_chunks";
/// The named dense vector.
pub const DENSE: &str = "dense";
/// The named sparse (keyword) vector.
pub const KEYWORD: &str = "keyword";

/// Payload indexes the collection is created with: `project` as the tenant index.
const INDEXES: &[(&str, &str)] = &[
    ("document", "keyword"),
    ("version", "integer"),
    ("live", "bool"),
    ("tags", "keyword"),
    ("source", "keyword"),
    ("kind", "keyword"),
    ("indexed_at", "integer"),
];

/// A chunk's point as ingest writes it. Typed rather than a `Value` so that the dense vector is
/// written as the f32s it is (`0.1`, not the widened `0.10000000149011612`): half the bytes to
/// write, send and parse.
#[derive(Debug, serde::Serialize)]
pub struct Point<'a> {
    pub id: String,
    pub vector: PointVectors<'a>,
    pub payload: Value,
}

/// A point's two vectors, under the names the collection has ([`DENSE`], [`KEYWORD`]).
#[derive(Debug, serde::Serialize)]
pub struct PointVectors<'a> {
    pub dense: &'a [f32],
    pub keyword: &'a shared::ingest::sparse::SparseVector,
}

/// A Qdrant server reached with its API key.
pub struct Qdrant {
    base: String,
    api_key: String,
}

impl std::fmt::Debug for Qdrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qdrant").field("base", &self.base).finish()
    }
}

fn unavailable(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("vector store {what}: {detail}"))
}

impl Qdrant {
    pub fn new(url: &str, api_key: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
        }
    }

    /// The store the component's variables name (`vectorstore_url`, `vectorstore_api_key`).
    pub async fn from_variables() -> Result<Self, ApiError> {
        use crate::vars::variable;
        Ok(Self::new(
            &variable("vectorstore_url").await?,
            &variable("vectorstore_api_key").await?,
        ))
    }

    async fn call<B: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, ApiError> {
        let answer = send_json(
            method,
            &format!("{}/collections/{COLLECTION}{path}", self.base),
            &[("api-key", &self.api_key)],
            body,
        )
        .await
        .map_err(|e| unavailable(method, e))?;
        match answer.status {
            401 | 403 => Err(unavailable(
                method,
                format!("refused our key ({})", answer.status),
            )),
            s if s >= 500 => Err(unavailable(
                method,
                format!("answered {s}: {}", answer.json()),
            )),
            _ => Ok(answer),
        }
    }

    async fn expect<B: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<Value, ApiError> {
        let answer = self.call(method, path, Some(body)).await?;
        if answer.ok() {
            Ok(answer.json())
        } else {
            Err(unavailable(
                path,
                format!("{} {}", answer.status, answer.json()),
            ))
        }
    }

    /// Creates the collection and its indexes unless it exists; safe to race (a second creator's
    /// conflict is success).
    pub async fn ensure_collection(&self, dimension: usize) -> Result<(), ApiError> {
        if self.call::<Value>("GET", "", None).await?.status == 200 {
            return Ok(());
        }
        let config = json!({
            "vectors": {DENSE: {"size": dimension, "distance": "Cosine"}},
            "sparse_vectors": {KEYWORD: {"modifier": "idf"}},
        });
        let answer = self.call("PUT", "", Some(&config)).await?;
        if !answer.ok() && answer.status != 409 {
            return Err(unavailable(
                "create collection",
                format!("{} {}", answer.status, answer.json()),
            ));
        }
        let tenant = json!({"field_name": "project", "field_schema": {"type": "keyword", "is_tenant": true}});
        self.expect("PUT", "/index?wait=true", &tenant).await?;
        for (field, schema) in INDEXES {
            let index = json!({"field_name": field, "field_schema": schema});
            self.expect("PUT", "/index?wait=true", &index).await?;
        }
        Ok(())
    }

    /// Writes points, waiting until they are applied.
    pub async fn upsert(&self, points: &[Point<'_>]) -> Result<(), ApiError> {
        if points.is_empty() {
            return Ok(());
        }
        #[derive(serde::Serialize)]
        struct Upsert<'p, 'a> {
            points: &'p [Point<'a>],
        }
        self.expect("PUT", "/points?wait=true", &Upsert { points })
            .await
            .map(|_| ())
    }

    /// Runs update operations in order (`points/batch`).
    pub async fn batch(&self, body: &Value) -> Result<(), ApiError> {
        self.expect("POST", "/points/batch?wait=true", body)
            .await
            .map(|_| ())
    }

    /// Deletes every point matching `filter`; a missing collection holds nothing to delete.
    pub async fn delete(&self, filter: &Value) -> Result<(), ApiError> {
        let answer = self
            .call(
                "POST",
                "/points/delete?wait=true",
                Some(&json!({"filter": filter})),
            )
            .await?;
        match answer.status {
            404 => Ok(()),
            _ if answer.ok() => Ok(()),
            s => Err(unavailable("delete", format!("{s} {}", answer.json()))),
        }
    }

    /// Runs several queries (`points/query/batch`) and returns each one's points (`{id, score,
    /// payload}`), best first; a missing collection holds nothing, so every list is empty.
    pub async fn query_batch(&self, searches: &[Value]) -> Result<Vec<Vec<Value>>, ApiError> {
        let answer = self
            .call(
                "POST",
                "/points/query/batch",
                Some(&json!({"searches": searches})),
            )
            .await?;
        match answer.status {
            404 => Ok(vec![Vec::new(); searches.len()]),
            _ if answer.ok() => {
                let Value::Array(lists) = answer.json()["result"].take() else {
                    return Err(unavailable("query", "answered without a result list"));
                };
                Ok(lists
                    .into_iter()
                    .map(|mut list| match list["points"].take() {
                        Value::Array(points) => points,
                        _ => Vec::new(),
                    })
                    .collect())
            }
            s => Err(unavailable("query", format!("{s} {}", answer.json()))),
        }
    }

    /// The payloads (only `fields`) of the points `ids`, keyed by each id as JSON text; points that
    /// are gone are simply absent.
    pub async fn retrieve(
        &self,
        ids: &[Value],
        fields: &[&str],
    ) -> Result<std::collections::HashMap<String, Value>, ApiError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let body = json!({"ids": ids, "with_payload": fields, "with_vector": false});
        let answer = self.call("POST", "/points", Some(&body)).await?;
        match answer.status {
            404 => Ok(Default::default()),
            _ if answer.ok() => Ok(answer.json()["result"]
                .as_array()
                .map(|points| {
                    points
                        .iter()
                        .map(|p| (p["id"].to_string(), p["payload"].clone()))
                        .collect()
                })
                .unwrap_or_default()),
            s => Err(unavailable("retrieve", format!("{s} {}", answer.json()))),
        }
    }

    /// How many points match `filter` (exactly).
    pub async fn count(&self, filter: &Value) -> Result<u64, ApiError> {
        let answer = self
            .call(
                "POST",
                "/points/count",
                Some(&json!({"filter": filter, "exact": true})),
            )
            .await?;
        match answer.status {
            404 => Ok(0),
            _ if answer.ok() => Ok(answer.json()["result"]["count"].as_u64().unwrap_or(0)),
            s => Err(unavailable("count", s)),
        }
    }
}
