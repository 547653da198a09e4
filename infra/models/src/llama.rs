//! A llama decoder (SmolLM2) with its linear layers on the `matmul` crate's 16-bit integer kernel,
//! for CPUs with AVX-512 VNNI.
//!
//! It computes what candle's `quantized_llama` computes (RMS norm, rotary embeddings on adjacent
//! pairs as GGUF llama files expect, causal grouped-query attention, SwiGLU), on plain row-major
//! slices. The products are most of a prompt's time: candle's 8-bit kernels needed SmolLM2's
//! 576-wide layers padded to 768 and quantised activations on a slow scalar path, while the integer
//! kernel takes the layers as they are. Attention runs per head and run of queries on candle's
//! worker threads, compiled for AVX2 through `pulp`, with each key-value head's keys transposed so
//! that scores come a vector of keys at a time. The weights are read from the GGUF file's Q4_1
//! values, whose 16 levels per block the kernel's 16-bit weights hold with room to spare. The output
//! head stays a candle Q8_0 product: it runs on one row, where reading fewer weight bytes counts.

use std::sync::Mutex;

use anyhow::Context as _;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{Device, Module as _, Tensor};
use matmul::{Kernel, Weights};

/// A linear layer split by outputs into one part per worker thread, so that a single row (a decode
/// step) keeps every core busy too.
struct Linear {
    parts: Vec<Weights>,
    outputs: usize,
}

impl Linear {
    /// `weight`: `outputs` rows of `inputs`, row-major.
    fn new(weight: &[f32], outputs: usize, inputs: usize) -> Self {
        let threads = candle_core::utils::get_num_threads().max(1);
        let share = outputs.div_ceil(threads).next_multiple_of(64);
        let parts = weight
            .chunks(share * inputs)
            .map(|rows| Weights::quantize(rows, rows.len() / inputs, inputs))
            .collect();
        Self { parts, outputs }
    }

    /// `x · wᵀ` for the `rows` rows of `values`. A few rows (a decode step) run one part per
    /// worker; more (a prompt) run in groups of rows per worker, each group quantised by its
    /// worker, so nothing runs on one core while the other waits.
    fn forward(&self, kernel: Kernel, values: &[f32], rows: usize) -> Vec<f32> {
        let inputs = values.len() / rows.max(1);
        let threads = candle_core::utils::get_num_threads().max(1);
        let mut out = vec![0f32; rows * self.outputs];
        // Every part has the same inputs, so the same activation levels.
        let first = &self.parts[0];
        if rows < threads * matmul::TILE_ROWS {
            let (words, scales) = kernel.quantize_rows(first, values);
            let products: Vec<Mutex<Vec<f32>>> = self
                .parts
                .iter()
                .map(|part| Mutex::new(vec![0f32; rows * part.outputs()]))
                .collect();
            candle_core::utils::barrier_pool().execute_chunked(self.parts.len(), |range| {
                for index in range {
                    let mut product = products[index].lock().unwrap_or_else(|e| e.into_inner());
                    kernel.product(&self.parts[index], &words, &scales, &mut product);
                }
            });
            let products = products
                .into_iter()
                .map(|p| p.into_inner().unwrap_or_else(|e| e.into_inner()));
            self.gather(products, &mut out);
            return out;
        }
        let group = rows.div_ceil(threads).next_multiple_of(matmul::TILE_ROWS);
        let tasks: Vec<Mutex<(&[f32], &mut [f32])>> = values
            .chunks(group * inputs)
            .zip(out.chunks_mut(group * self.outputs))
            .map(Mutex::new)
            .collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            for task in &tasks[range] {
                let mut task = task.lock().unwrap_or_else(|e| e.into_inner());
                let (input, out) = &mut *task;
                let count = input.len() / inputs;
                let (words, scales) = kernel.quantize_rows(first, input);
                let products = self.parts.iter().map(|part| {
                    let mut product = vec![0f32; count * part.outputs()];
                    kernel.product(part, &words, &scales, &mut product);
                    product
                });
                self.gather(products, out);
            }
        });
        drop(tasks);
        out
    }

    /// Writes the parts' products (each rows × its outputs) side by side into `out`.
    fn gather(&self, products: impl Iterator<Item = Vec<f32>>, out: &mut [f32]) {
        let mut start = 0;
        for (part, product) in self.parts.iter().zip(products) {
            let width = part.outputs();
            for (values, out) in product
                .chunks_exact(width)
                .zip(out.chunks_exact_mut(self.outputs))
            {
                out[start..start + width].copy_from_slice(values);
            }
            start += width;
        }
    }
}

struct Layer {
    attention_norm: Vec<f32>,
    /// Query, key and value in one product.
    qkv: Linear,
    output: Linear,
    ffn_norm: Vec<f32>,
    /// SwiGLU's gate and up products in one.
    gate_up: Linear,
    down: Linear,
}

/// The model's shape.
#[derive(Clone, Copy, Debug)]
struct Shape {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    eps: f32,
}

/// One conversation's keys and values so far: per layer, a row of kv heads × head dim for each
/// position read.
#[derive(Default)]
pub struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

/// The decoder.
pub struct Llama {
    kernel: Kernel,
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    head: QMatMul,
    /// For each position and each pair of a head's dimensions, the rotation's cosine and sine.
    cos: Vec<f32>,
    sin: Vec<f32>,
    shape: Shape,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl Llama {
    /// Reads a llama GGUF file's tensors from `file` (described by `content`); rotary embeddings
    /// are precomputed for `context` positions.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        file: &mut R,
        kernel: Kernel,
        context: usize,
    ) -> anyhow::Result<Self> {
        let get = |key: &str| -> anyhow::Result<&gguf_file::Value> {
            content
                .metadata
                .get(key)
                .with_context(|| format!("the model has no {key}"))
        };
        let count = |key: &str| -> anyhow::Result<usize> { Ok(get(key)?.to_u32()? as usize) };
        let hidden = count("llama.embedding_length")?;
        let heads = count("llama.attention.head_count")?;
        let shape = Shape {
            hidden,
            heads,
            kv_heads: count("llama.attention.head_count_kv")?,
            head_dim: hidden / heads.max(1),
            intermediate: count("llama.feed_forward_length")?,
            eps: get("llama.attention.layer_norm_rms_epsilon")?.to_f32()?,
        };
        // Other architectures rotate other pairs of dimensions; this one is llama's convention.
        let architecture = get("general.architecture")?.to_string()?;
        anyhow::ensure!(
            architecture == "llama",
            "the model is a {architecture}, not a llama"
        );
        anyhow::ensure!(
            heads > 0
                && shape.kv_heads > 0
                && heads.is_multiple_of(shape.kv_heads)
                && hidden == heads * shape.head_dim,
            "the model's {heads} heads do not fit its width {hidden} and {} key-value heads",
            shape.kv_heads
        );
        let base = get("llama.rope.freq_base")
            .and_then(|v| Ok(v.to_f32()?))
            .unwrap_or(10_000.0);
        let read = |file: &mut R, name: &str| -> anyhow::Result<QTensor> {
            content
                .tensor(file, name, &Device::Cpu)
                .with_context(|| format!("the model has no {name}"))
        };
        let vector = |file: &mut R, name: &str| -> anyhow::Result<Vec<f32>> {
            Ok(read(file, name)?
                .dequantize(&Device::Cpu)?
                .to_vec1::<f32>()?)
        };
        // One product for several matrices with the same inputs, their outputs stacked.
        let linear = |file: &mut R, names: &[String]| -> anyhow::Result<Linear> {
            let (mut weight, mut outputs, mut inputs) = (Vec::new(), 0, 0);
            for name in names {
                let values = read(file, name)?.dequantize(&Device::Cpu)?;
                let (rows, columns) = values.dims2()?;
                weight.extend(values.flatten_all()?.to_vec1::<f32>()?);
                outputs += rows;
                inputs = columns;
            }
            Ok(Linear::new(&weight, outputs, inputs))
        };
        let blocks = count("llama.block_count")?;
        let mut layers = Vec::with_capacity(blocks);
        for block in 0..blocks {
            let name = |part: &str| format!("blk.{block}.{part}.weight");
            layers.push(Layer {
                attention_norm: vector(file, &name("attn_norm"))?,
                qkv: linear(file, &[name("attn_q"), name("attn_k"), name("attn_v")])?,
                output: linear(file, &[name("attn_output")])?,
                ffn_norm: vector(file, &name("ffn_norm"))?,
                gate_up: linear(file, &[name("ffn_gate"), name("ffn_up")])?,
                down: linear(file, &[name("ffn_down")])?,
            });
        }
        let embedded = read(file, "token_embd.weight")?;
        let embeddings = embedded.dequantize(&Device::Cpu)?;
        // Models that tie the head to the embeddings have no output matrix of their own.
        let head = if content.tensor_infos.contains_key("output.weight") {
            read(file, "output.weight")?
        } else {
            embedded
        };
        let head = match head.dtype() {
            GgmlDType::Q8_0 => head,
            _ => QTensor::quantize(&head.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?,
        };
        let (cos, sin) = rotations(shape.head_dim, base, context);
        Ok(Self {
            kernel,
            embeddings,
            layers,
            norm: vector(file, "output_norm.weight")?,
            head: QMatMul::from_qtensor(head)?,
            cos,
            sin,
            shape,
        })
    }

    /// An empty cache for a new conversation.
    pub fn cache(&self) -> Cache {
        Cache {
            keys: vec![Vec::new(); self.layers.len()],
            values: vec![Vec::new(); self.layers.len()],
        }
    }

    /// Reads `tokens` at `position` onwards into `cache` and returns the next-token logits
    /// (1 × vocabulary) after the last of them.
    pub fn forward(
        &self,
        tokens: &[u32],
        position: usize,
        cache: &mut Cache,
    ) -> candle_core::Result<Tensor> {
        let Shape {
            hidden,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            eps,
        } = self.shape;
        let kernel = self.kernel;
        let count = tokens.len();
        let kv = kv_heads * head_dim;
        if count == 0 || (position + count) * (head_dim / 2) > self.cos.len() {
            return Err(candle_core::Error::Msg(format!(
                "positions {position}..{} are outside the model's context",
                position + count
            )));
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self
            .embeddings
            .index_select(&ids, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let shape = Attention {
            heads,
            kv_heads,
            head_dim,
            position,
            count,
        };
        for (layer, (keys, values)) in self
            .layers
            .iter()
            .zip(cache.keys.iter_mut().zip(&mut cache.values))
        {
            let h = rms_norm(&x, hidden, &layer.attention_norm, eps);
            let mut qkv = layer.qkv.forward(kernel, &h, count);
            for (t, row) in qkv.chunks_exact_mut(hidden + 2 * kv).enumerate() {
                let at = (position + t) * (head_dim / 2);
                let (cos, sin) = (&self.cos[at..], &self.sin[at..]);
                for head in row[..hidden + kv].chunks_exact_mut(head_dim) {
                    rotate(head, cos, sin);
                }
                keys.extend_from_slice(&row[hidden..hidden + kv]);
                values.extend_from_slice(&row[hidden + kv..]);
            }
            let context = attention(&qkv, keys, values, shape);
            let attended = layer.output.forward(kernel, &context, count);
            x.iter_mut().zip(&attended).for_each(|(x, a)| *x += a);
            let h = rms_norm(&x, hidden, &layer.ffn_norm, eps);
            let gate_up = layer.gate_up.forward(kernel, &h, count);
            let mut inner = vec![0f32; count * intermediate];
            for (row, out) in gate_up
                .chunks_exact(2 * intermediate)
                .zip(inner.chunks_exact_mut(intermediate))
            {
                let (gate, up) = row.split_at(intermediate);
                for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                    *o = silu(g) * u;
                }
            }
            let down = layer.down.forward(kernel, &inner, count);
            x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
        }
        let last = rms_norm(&x[(count - 1) * hidden..], hidden, &self.norm, eps);
        self.head
            .forward(&Tensor::from_vec(last, (1, hidden), &Device::Cpu)?)
    }
}

/// RMS norm of each `width`-wide row of `x`, times `weight`.
fn rms_norm(x: &[f32], width: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(width) {
        let mean = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inverse = 1.0 / (mean + eps).sqrt();
        row.iter_mut()
            .zip(weight)
            .for_each(|(v, &w)| *v = *v * inverse * w);
    }
    out
}

/// Rotates each pair of dimensions (2i, 2i + 1) of one head by the angle whose cosine and sine are
/// `cos[i]` and `sin[i]` (GGUF llama files expect adjacent pairs).
fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

/// x · sigmoid(x), with the exponential of a non-positive number only.
#[inline]
fn silu(x: f32) -> f32 {
    let e = super::bert::exp_negative(-x.abs().min(80.0));
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * sigmoid
}

/// The shape of one attention step: `count` new tokens from `position` on.
#[derive(Clone, Copy, Debug)]
struct Attention {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    position: usize,
    count: usize,
}

/// Queries per attention task.
const QUERIES_PER_TASK: usize = 32;

/// Keys scored at once: two AVX2 registers.
const LANES: usize = 16;

/// Causal grouped-query attention of the new tokens' queries (in `qkv`, rows of queries, keys and
/// values) over every cached key and value (rows of kv heads × head dim, the new ones included).
/// Returns the context, one row of heads × head dim per new token. Tasks of a head and a run of
/// queries run on candle's worker threads, compiled for the CPU's vector instructions.
fn attention(qkv: &[f32], keys: &[f32], values: &[f32], shape: Attention) -> Vec<f32> {
    let Attention {
        heads,
        kv_heads,
        head_dim,
        position,
        count,
    } = shape;
    let hidden = heads * head_dim;
    let kv = kv_heads * head_dim;
    let stride = hidden + 2 * kv;
    let runs = count.div_ceil(QUERIES_PER_TASK);
    let mut context = vec![0f32; count * hidden];
    // Each key-value head's keys transposed (a row per dimension, padded with zero keys to a
    // whole number of lanes), so that scores come out a lane of keys at a time without sums across
    // lanes.
    let seen = keys.len() / kv;
    let width = seen.next_multiple_of(LANES);
    let transposed: Vec<Vec<f32>> = (0..kv_heads)
        .map(|group| {
            let mut columns = vec![0f32; head_dim * width];
            for (key, row) in keys.chunks_exact(kv).enumerate() {
                for (d, &value) in row[group * head_dim..][..head_dim].iter().enumerate() {
                    columns[d * width + key] = value;
                }
            }
            columns
        })
        .collect();
    let results: Vec<Mutex<Vec<f32>>> = (0..heads * runs).map(|_| Mutex::default()).collect();
    candle_core::utils::barrier_pool().execute_chunked(heads * runs, |range| {
        for task in range {
            let (head, run) = (task / runs, task % runs);
            let group = head / (heads / kv_heads);
            let queries = run * QUERIES_PER_TASK..((run + 1) * QUERIES_PER_TASK).min(count);
            let out = ARCH.dispatch(HeadTask {
                qkv,
                keys: &transposed[group],
                width,
                values,
                stride,
                kv,
                query_at: head * head_dim,
                key_at: group * head_dim,
                head_dim,
                position,
                queries,
            });
            *results[task].lock().unwrap_or_else(|e| e.into_inner()) = out;
        }
    });
    for (task, result) in results.into_iter().enumerate() {
        let (head, run) = (task / runs, task % runs);
        let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
        for (i, values) in result.chunks_exact(head_dim).enumerate() {
            let at = (run * QUERIES_PER_TASK + i) * hidden + head * head_dim;
            context[at..at + head_dim].copy_from_slice(values);
        }
    }
    context
}

static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);

/// One head's attention for a run of queries.
struct HeadTask<'a> {
    qkv: &'a [f32],
    /// The head's keys, transposed: `head_dim` rows of `width`.
    keys: &'a [f32],
    width: usize,
    values: &'a [f32],
    stride: usize,
    kv: usize,
    query_at: usize,
    key_at: usize,
    head_dim: usize,
    position: usize,
    queries: std::ops::Range<usize>,
}

impl pulp::WithSimd for HeadTask<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let d = self.head_dim;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; self.queries.len() * d];
        let mut scores = Vec::new();
        for (query, out) in self.queries.clone().zip(out.chunks_exact_mut(d)) {
            let q = &self.qkv[query * self.stride + self.query_at..][..d];
            // Causal: the query at position p sees keys 0..=p.
            let seen = self.position + query + 1;
            // Plain loops: iterator adapters would be compiled outside this function, without
            // its vector instructions.
            scores.resize(seen.next_multiple_of(LANES), 0.0);
            for (lane, scores) in scores.chunks_exact_mut(LANES).enumerate() {
                let mut sums = [0f32; LANES];
                for (d, &q) in q.iter().enumerate() {
                    let keys = &self.keys[d * self.width + lane * LANES..][..LANES];
                    for (sum, &k) in sums.iter_mut().zip(keys) {
                        *sum = q.mul_add(k, *sum);
                    }
                }
                scores.copy_from_slice(&sums);
            }
            scores.truncate(seen);
            let mut largest = f32::NEG_INFINITY;
            for score in scores.iter_mut() {
                *score *= scale;
                largest = largest.max(*score);
            }
            for score in scores.iter_mut() {
                *score = super::bert::exp_negative((*score - largest).max(-36.0));
            }
            // Summed in lanes: one running sum would keep the loop above from vectorising.
            let mut totals = [0f32; LANES];
            for chunk in scores.chunks(LANES) {
                for (total, &score) in totals.iter_mut().zip(chunk) {
                    *total += score;
                }
            }
            let inverse = 1.0 / totals.iter().sum::<f32>();
            for (key, &weight) in scores.iter().enumerate() {
                let at = key * self.kv + self.key_at;
                let weight = weight * inverse;
                for (o, &v) in out.iter_mut().zip(&self.values[at..at + d]) {
                    *o = weight.mul_add(v, *o);
                }
            }
        }
        out
    }
}

/// Rotary embedding tables: for each of `positions` positions and each pair of a head's
/// dimensions, the cosine and sine of `position / base^(2i / head_dim)`.
fn rotations(head_dim: usize, base: f32, positions: usize) -> (Vec<f32>, Vec<f32>) {
    let frequencies: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let angles = || (0..positions).flat_map(|p| frequencies.iter().map(move |&f| p as f32 * f));
    (
        angles().map(f32::cos).collect(),
        angles().map(f32::sin).collect(),
    )
}
