//! The embedding model over OpenAI's `/v1/embeddings` (the embedded model, OpenAI, or any compatible
//! server): texts in batches, several requests in flight, 429 and 503 retried after their
//! `Retry-After` or with backoff.

use std::time::Duration;

use serde_json::json;
use shared::ApiError;

use crate::outbound::send_json;

/// Texts per request.
pub const BATCH: usize = 32;
/// Requests in flight at once.
pub const IN_FLIGHT: usize = 4;
/// Tries per batch before giving up.
const ATTEMPTS: u32 = 5;

/// An OpenAI-compatible embeddings endpoint.
pub struct Embedder {
    url: String,
    authorization: String,
    model: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("url", &self.url)
            .field("model", &self.model)
            .finish()
    }
}

fn unavailable(detail: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("embedding model: {detail}"))
}

impl Embedder {
    /// Requests go to `origin` + `path` (`https://api.openai.com` + `/v1/embeddings`).
    pub fn new(origin: &str, path: &str, api_key: &str, model: &str) -> Self {
        Self {
            url: format!(
                "{}/{}",
                origin.trim_end_matches('/'),
                path.trim_start_matches('/')
            ),
            authorization: format!("Bearer {api_key}"),
            model: model.to_string(),
        }
    }

    /// The embedder the component's variables name (`embeddings_url`, `_path`, `_api_key`, `_model`).
    pub async fn from_variables() -> Result<Self, ApiError> {
        use crate::vars::{optional, variable};
        Ok(Self::new(
            &variable("embeddings_url").await?,
            &optional("embeddings_path", "/v1/embeddings").await,
            &variable("embeddings_api_key").await?,
            &optional("embeddings_model", "all-MiniLM-L6-v2").await,
        ))
    }

    /// One vector per text, in order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ApiError> {
        let mut vectors = Vec::with_capacity(texts.len());
        let batches: Vec<&[String]> = texts.chunks(BATCH).collect();
        for wave in batches.chunks(IN_FLIGHT) {
            let answers =
                futures::future::join_all(wave.iter().map(|batch| self.embed_batch(batch))).await;
            for answer in answers {
                vectors.extend(answer?);
            }
        }
        Ok(vectors)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ApiError> {
        let body = json!({"model": self.model, "input": texts});
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = send_json(
                "POST",
                &self.url,
                &[("authorization", &self.authorization)],
                Some(&body),
            )
            .await;
            let wait = match &answer {
                Ok(a) if a.ok() => return parse(&a.body, texts.len()),
                Ok(a) if a.status == 429 || a.status == 503 => a
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|s| Duration::from_secs_f64(s.clamp(0.0, 30.0)))
                    .unwrap_or(Duration::from_millis(200 << attempt)),
                Ok(a) => {
                    return Err(unavailable(format!("answered {} {}", a.status, a.json())));
                }
                Err(_) => Duration::from_millis(100 << attempt),
            };
            if attempt >= ATTEMPTS {
                return Err(match answer {
                    Ok(a) => unavailable(format!("still {} after {ATTEMPTS} tries", a.status)),
                    Err(error) => unavailable(error),
                });
            }
            spin_sdk::time::sleep(wait).await;
        }
    }
}

/// The vectors of an embeddings answer, in input order (the API gives each its `index`). Read
/// straight into f32s: the answer is mostly numbers, and a `Value` per number was a fifth of the
/// time spent on it.
fn parse(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        index: Option<usize>,
        embedding: Vec<f32>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| unavailable(format!("an answer that is not a list of embeddings: {e}")))?;
    let mut vectors = vec![Vec::new(); expected];
    let count = answer.data.len();
    for (position, item) in answer.data.into_iter().enumerate() {
        *vectors
            .get_mut(item.index.unwrap_or(position))
            .ok_or_else(|| unavailable("an `index` out of range"))? = item.embedding;
    }
    if vectors.iter().any(Vec::is_empty) {
        return Err(unavailable(format!("{count} vectors for {expected} texts")));
    }
    Ok(vectors)
}
