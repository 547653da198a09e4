//! The stores and the model ingest writes to, built once per request from the component's variables.

use guest::couch::Couch;
use guest::embed::Embedder;
use guest::objects::Objects;
use guest::vars::{optional, variable};
use guest::vectors::Qdrant;
use shared::ApiError;
use shared::ingest::chunk::ChunkConfig;

/// The database ingest keeps document and chunk records in.
pub const DATABASE: &str = "edgerag_ingest";

/// Everything ingest talks to, and how it cuts documents.
pub struct Stores {
    pub couch: Couch,
    pub vectors: Qdrant,
    pub objects: Objects,
    pub embedder: Embedder,
    pub chunking: ChunkConfig,
    /// Versions whose records and files are kept (the live one included).
    pub keep_versions: usize,
    /// Documents of up to this many chunks are indexed within their request; larger ones by a job.
    pub inline_chunks: usize,
    /// Chunks a job's step indexes in one round.
    pub step_chunks: usize,
    /// How long a step keeps taking rounds (at least one): each step reads and cuts the whole
    /// document again, so a step of many rounds pays for that once.
    pub step_ms: usize,
    /// Most chunks one batch request may make.
    pub batch_chunks: usize,
}

async fn number(name: &str, default: usize) -> Result<usize, ApiError> {
    optional(name, &default.to_string())
        .await
        .parse()
        .map_err(|_| ApiError::Internal(format!("variable {name} is not a whole number")))
}

impl Stores {
    pub async fn load() -> Result<Self, ApiError> {
        let defaults = ChunkConfig::default();
        let chunking = ChunkConfig {
            max_tokens: number("chunk_max_tokens", defaults.max_tokens).await?,
            overlap_tokens: number("chunk_overlap_tokens", defaults.overlap_tokens).await?,
            max_chunks: number("max_chunks_per_document", defaults.max_chunks).await?,
        };
        chunking
            .validate()
            .map_err(|e| ApiError::Internal(format!("chunking variables: {e}")))?;
        Ok(Self {
            couch: Couch::new(
                &variable("docstore_url").await?,
                &variable("docstore_user").await?,
                &variable("docstore_password").await?,
                DATABASE,
            ),
            vectors: Qdrant::from_variables().await?,
            objects: Objects::new(
                &variable("objectstore_url").await?,
                &optional("objectstore_region", "us-east-1").await,
                &optional("objectstore_bucket", "edgerag").await,
                &variable("objectstore_access_key").await?,
                &variable("objectstore_secret_key").await?,
            )?,
            embedder: Embedder::from_variables().await?,
            chunking,
            keep_versions: number("keep_versions", 3).await?.max(1),
            inline_chunks: number("inline_chunks", 64).await?,
            step_chunks: number("job_step_chunks", 64).await?.max(1),
            step_ms: number("job_step_ms", 5000).await?,
            batch_chunks: number("batch_chunks", 256).await?.max(1),
        })
    }
}
