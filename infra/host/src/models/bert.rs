//! all-MiniLM-L6-v2's encoder with its linear layers in 8-bit integers, for CPUs with int8 dot
//! product instructions (AVX-512 VNNI or AVX-VNNI).
//!
//! candle's repacked int8 kernels multiply a block of activation rows per weight load and run
//! several times faster than its f32 matrix product on such CPUs. They take weights as Q8_0 (a scale
//! per 32 values) and quantise each activation row to 8 bits with one scale per 256 values, and they
//! need the inner dimension to be a multiple of 256. Done naively that moves the vectors too far from
//! sentence-transformers' (cosine 0.995 on the reference sentences, where 0.999 is required),
//! because BERT's hidden state has a few outlier channels (30x the typical magnitude) that take most
//! of each 256-value block's range. Two exact rewrites of the products bring it back:
//!
//! - Outlier channel splitting. Widening 384 inputs to 512 leaves 128 free slots. At load, a
//!   calibration pass in f32 records each input channel's largest magnitude; the largest channels are
//!   then split into copies, each carrying an equal share of the value, with the weight column
//!   repeated for each copy. The sum is unchanged and the block's range shrinks to that of ordinary
//!   channels.
//! - A second pass for the rounding error. For the products that feed the attention scores (query,
//!   key, value) and the feed-forward output, the kernel also multiplies what its own rounding of the
//!   input left out (computed here exactly as candle rounds), in the same call as extra rows.
//!
//! The residual stream, the layer norms and the attention stay in f32. Between the products the
//! encoder works on plain row-major slices (bias, residual and layer norm in one pass per row;
//! attention per text and head over the real keys only), on candle's own worker threads, so no
//! step runs on one core while the other waits.

use std::sync::Mutex;

use anyhow::Context as _;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module as _, Tensor};
use candle_transformers::models::bert::Config;

/// The inner dimensions candle's repacked kernels accept are multiples of this, and it quantises
/// activations with one scale per this many values.
const KERNEL_BLOCK: usize = 256;

/// Rows per task when the kernel inputs are laid out in parallel.
const ROWS_PER_TASK: usize = 8;

/// A linear layer: f32 while the model calibrates, then 8-bit.
enum Linear {
    Float {
        weight: Tensor,
        bias: Option<Vec<f32>>,
        input: Input,
        /// The largest magnitude seen on each input channel.
        seen: Mutex<Vec<f32>>,
        /// Whether the quantised layer adds the rounding-error pass.
        residual: bool,
    },
    Int8(Int8Linear),
}

/// A Q8_0 product over a rearranged input: kernel input `s` is input channel `sources[s]` times
/// `factors[s]`; kernel inputs past `sources.len()` are zero.
struct Int8Linear {
    weight: QMatMul,
    bias: Option<Vec<f32>>,
    input: Input,
    sources: Vec<usize>,
    factors: Vec<f32>,
    /// Kernel inputs per row (a multiple of [`KERNEL_BLOCK`]).
    width: usize,
    residual: bool,
}

/// What a layer does to its input on the way in.
#[derive(Clone)]
enum Input {
    AsIs,
    /// Adds a bias (the previous product's, left out there) and applies GELU, as BERT's feed-forward
    /// block does between its two products. The 8-bit layer does this while it lays out the input.
    BiasGelu(Vec<f32>),
}

impl Input {
    /// Applies the transform to one row of `inputs`, writing `out[c] = f(row[c]) * factors[c]`.
    fn apply(&self, row: &[f32], factors: &[f32], out: &mut [f32]) {
        match self {
            Self::AsIs => {
                for ((slot, &value), &factor) in out.iter_mut().zip(row).zip(factors) {
                    *slot = value * factor;
                }
            }
            Self::BiasGelu(bias) => {
                for (((slot, &value), &bias), &factor) in
                    out.iter_mut().zip(row).zip(bias).zip(factors)
                {
                    *slot = gelu(value + bias) * factor;
                }
            }
        }
    }
}

impl Linear {
    fn new(
        weight: Tensor,
        bias: Option<Vec<f32>>,
        input: Input,
        residual: bool,
    ) -> anyhow::Result<Self> {
        let inputs = weight.dim(1)?;
        Ok(Self::Float {
            weight,
            bias,
            input,
            seen: Mutex::new(vec![0.0; inputs]),
            residual,
        })
    }

    /// The product for `rows` rows of `x`, its bias added, then `residual` added and `norm` applied
    /// when given (BERT's "add and norm"), in one pass over the output.
    fn apply(
        &self,
        x: &[f32],
        rows: usize,
        residual: Option<&[f32]>,
        norm: Option<&Norm>,
    ) -> candle_core::Result<Vec<f32>> {
        let (product, passes, bias) = match self {
            Self::Float {
                weight,
                bias,
                input,
                seen,
                ..
            } => {
                let inputs = x.len() / rows.max(1);
                let mut transformed = vec![0f32; x.len()];
                let ones = vec![1f32; inputs];
                for (row, out) in x
                    .chunks_exact(inputs)
                    .zip(transformed.chunks_exact_mut(inputs))
                {
                    input.apply(row, &ones, out);
                }
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                for row in transformed.chunks_exact(inputs) {
                    for (seen, value) in seen.iter_mut().zip(row) {
                        *seen = seen.max(value.abs());
                    }
                }
                let x = Tensor::from_vec(transformed, (rows, inputs), &Device::Cpu)?;
                let product = x.matmul(&weight.t()?)?.flatten_all()?.to_vec1::<f32>()?;
                (product, 1, bias)
            }
            Self::Int8(linear) => {
                let (product, passes) = linear.product(x, rows)?;
                (product, passes, &linear.bias)
            }
        };
        Ok(finish(
            product,
            passes,
            rows,
            bias.as_deref(),
            residual,
            norm,
        ))
    }

    /// The 8-bit layer, its input split by what calibration saw.
    fn quantize(&self) -> anyhow::Result<Self> {
        let Self::Float {
            weight,
            bias,
            input,
            seen,
            residual,
        } = self
        else {
            anyhow::bail!("the layer is already quantised");
        };
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let width = seen.len().next_multiple_of(KERNEL_BLOCK);
        let (sources, factors) = split_channels(&seen, width);
        let index = Tensor::from_vec(
            sources.iter().map(|&s| s as u32).collect::<Vec<_>>(),
            sources.len(),
            &Device::Cpu,
        )?;
        let columns =
            weight
                .index_select(&index, 1)?
                .pad_with_zeros(1, 0, width - sources.len())?;
        Ok(Self::Int8(Int8Linear {
            weight: QMatMul::from_qtensor(QTensor::quantize(&columns, GgmlDType::Q8_0)?)?,
            bias: bias.clone(),
            input: input.clone(),
            sources,
            factors,
            width,
            residual: *residual,
        }))
    }
}

/// Spreads `width - seen.len()` extra kernel inputs over the channels with the largest magnitudes
/// (greedily, always to the channel whose share is largest), and returns each kernel input's source
/// channel and factor (one over the channel's number of copies).
fn split_channels(seen: &[f32], width: usize) -> (Vec<usize>, Vec<f32>) {
    let mut copies = vec![1usize; seen.len()];
    let mut sources: Vec<usize> = (0..seen.len()).collect();
    for _ in seen.len()..width {
        let Some(widest) = (0..seen.len())
            .filter(|&c| seen[c] > 0.0)
            .max_by(|&a, &b| (seen[a] / copies[a] as f32).total_cmp(&(seen[b] / copies[b] as f32)))
        else {
            break;
        };
        copies[widest] += 1;
        sources.push(widest);
    }
    let factors = sources.iter().map(|&c| 1.0 / copies[c] as f32).collect();
    (sources, factors)
}

/// One task of laying out kernel inputs: input rows, their kernel inputs, and where the rounding
/// error pass goes (for layers that have one).
type Rows<'a> = (&'a [f32], &'a mut [f32], Option<&'a mut [f32]>);

impl Int8Linear {
    /// Writes the kernel inputs for the rows `input` (each `inputs` wide) to `out` (each
    /// [`Int8Linear::width`] wide).
    fn lay_out(&self, inputs: usize, input: &[f32], out: &mut [f32]) {
        let factors = &self.factors[..inputs];
        for (row, out) in input
            .chunks_exact(inputs)
            .zip(out.chunks_exact_mut(self.width))
        {
            // Kernel input c < inputs is channel c (scaled down when it was split); the copies
            // follow. Separate loops keep the first part free of gathers, so it vectorises.
            let (own, copies) = out.split_at_mut(inputs);
            self.input.apply(row, factors, own);
            for (slot, &source) in copies.iter_mut().zip(&self.sources[inputs..]) {
                *slot = own[source];
            }
        }
    }

    /// The product for `rows` rows of `values`, without bias: `passes` stacked blocks of rows to
    /// be summed (two when the layer multiplies its rounding error too).
    fn product(&self, values: &[f32], rows: usize) -> candle_core::Result<(Vec<f32>, usize)> {
        let inputs = values.len() / rows.max(1);
        let passes = if self.residual { 2 } else { 1 };
        let width = self.width;
        let mut kernel_input = vec![0f32; passes * rows * width];
        let (first, second) = kernel_input.split_at_mut(rows * width);
        // Rows are laid out on candle's own worker threads (the thread that would otherwise wait
        // for the next product), a group of rows per task.
        let group = ROWS_PER_TASK;
        let mut seconds = second.chunks_mut(group * width);
        let tasks: Vec<Mutex<Rows>> = values
            .chunks(group * inputs)
            .zip(first.chunks_mut(group * width))
            .map(|(input, out)| Mutex::new((input, out, seconds.next())))
            .collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            for task in &tasks[range] {
                let mut task = task.lock().unwrap_or_else(|e| e.into_inner());
                let (input, out, error) = &mut *task;
                self.lay_out(inputs, input, out);
                if let Some(error) = error {
                    for (row, error) in out
                        .chunks_exact(KERNEL_BLOCK)
                        .zip(error.chunks_exact_mut(KERNEL_BLOCK))
                    {
                        rounding_error(row, error);
                    }
                }
            }
        });
        drop(tasks);
        let product = self.weight.forward(&Tensor::from_vec(
            kernel_input,
            (passes * rows, width),
            &Device::Cpu,
        )?)?;
        Ok((product.flatten_all()?.to_vec1::<f32>()?, passes))
    }
}

/// Sums the `passes` stacked blocks of `product` (rows × outputs each), adds `bias`, adds
/// `residual` and applies `norm`, each when given; row groups run on candle's worker threads.
fn finish(
    mut product: Vec<f32>,
    passes: usize,
    rows: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    norm: Option<&Norm>,
) -> Vec<f32> {
    if passes == 1 && bias.is_none() && residual.is_none() && norm.is_none() {
        return product;
    }
    let outputs = product.len() / (passes * rows).max(1);
    let (head, rest) = product.split_at_mut(rows * outputs);
    let extra = rest.chunks(rows * outputs).collect::<Vec<_>>();
    let group = ROWS_PER_TASK * outputs;
    let tasks: Vec<Mutex<(usize, &mut [f32])>> = head
        .chunks_mut(group)
        .enumerate()
        .map(|(i, rows)| Mutex::new((i * group, rows)))
        .collect();
    candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
        for task in &tasks[range] {
            let mut task = task.lock().unwrap_or_else(|e| e.into_inner());
            let (start, out) = &mut *task;
            let start = *start;
            for pass in &extra {
                for (o, &e) in out.iter_mut().zip(&pass[start..]) {
                    *o += e;
                }
            }
            for (r, row) in out.chunks_exact_mut(outputs).enumerate() {
                if let Some(bias) = bias {
                    row.iter_mut().zip(bias).for_each(|(o, &b)| *o += b);
                }
                if let Some(residual) = residual {
                    let at = start + r * outputs;
                    let residual = &residual[at..at + outputs];
                    row.iter_mut().zip(residual).for_each(|(o, &x)| *o += x);
                }
                if let Some(norm) = norm {
                    norm.apply(row);
                }
            }
        }
    });
    drop(tasks);
    product.truncate(rows * outputs);
    product
}

/// GELU with erf, as BERT uses it: x/2 (1 + erf(x/sqrt(2))). Written to vectorise: erf by
/// Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7) and exp by range reduction.
fn gelu(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs().min(6.0);
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf = (1.0 - poly * exp_negative(-z * z)).copysign(x);
    0.5 * x * (1.0 + erf)
}

/// e^x for x in [-36, 0], to about 2 units in the last place, without a libm call.
fn exp_negative(x: f32) -> f32 {
    // x = n ln 2 + r with |r| <= ln2 / 2; e^x = 2^n e^r.
    let n = (x * std::f32::consts::LOG2_E - 0.5) as i32;
    let r = x - n as f32 * 0.693_359_4 + n as f32 * 2.121_944_4e-4;
    let er = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    er * f32::from_bits(((n + 127).max(1) as u32) << 23)
}

/// Writes to `error` what candle's 8-bit quantisation of the block `values` loses: it scales by
/// -127 over the signed value of largest magnitude (the first, on ties), rounds half away from
/// zero and clamps to [-128, 127] (candle's `BlockQ8K::from_float`).
fn rounding_error(values: &[f32], error: &mut [f32]) {
    let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        error.fill(0.0);
        return;
    }
    let signed = values
        .iter()
        .copied()
        .find(|v| v.abs() == largest)
        .unwrap_or(largest);
    let inverse = -127f32 / signed;
    let step = 1.0 / inverse;
    for (e, &v) in error.iter_mut().zip(values) {
        let scaled = inverse * v;
        // Round half away from zero without a libm call: truncate after adding a signed half.
        let rounded = (scaled + 0.5f32.copysign(scaled)) as i32;
        let q = rounded.clamp(-128, 127) as f32;
        *e = v - q * step;
    }
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// Layer norm of one row, in place.
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let variance = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
        let inverse = 1.0 / (variance + self.eps).sqrt();
        for ((x, &w), &b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *x = (*x - mean) * inverse * w + b;
        }
    }
}

struct Layer {
    /// Query, key and value in one product (3 × hidden outputs).
    qkv: Linear,
    output: Linear,
    attention_norm: Norm,
    up: Linear,
    down: Linear,
    output_norm: Norm,
}

/// The encoder. [`Int8Bert::forward`] returns the last hidden state, as `BertModel::forward` does.
/// It is built in f32; [`Int8Bert::quantize`] turns it to 8 bits once calibration text has passed.
pub struct Int8Bert {
    words: Tensor,
    positions: Tensor,
    token_type: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

impl Int8Bert {
    /// Builds the (still f32) encoder from the safetensors `weights` of a BERT model described by
    /// `config`.
    pub fn load(weights: &[u8], config: &Config) -> anyhow::Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(weights, &Device::Cpu)?;
        let get = |name: &str| -> anyhow::Result<Tensor> {
            tensors
                .get(name)
                .with_context(|| format!("model.safetensors has no {name}"))?
                .to_dtype(DType::F32)
                .map_err(Into::into)
        };
        let eps = config.layer_norm_eps as f32;
        let norm = |prefix: &str| -> anyhow::Result<Norm> {
            Ok(Norm {
                weight: get(&format!("{prefix}.weight"))?.to_vec1()?,
                bias: get(&format!("{prefix}.bias"))?.to_vec1()?,
                eps,
            })
        };
        let linear = |prefix: &str, input: Input, residual: bool| -> anyhow::Result<Linear> {
            Linear::new(
                get(&format!("{prefix}.weight"))?,
                Some(get(&format!("{prefix}.bias"))?.to_vec1()?),
                input,
                residual,
            )
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let at = |part: &str| format!("encoder.layer.{layer}.{part}");
            let joined = |what: &str| -> anyhow::Result<Tensor> {
                let parts = ["query", "key", "value"]
                    .map(|p| get(&at(&format!("attention.self.{p}.{what}"))));
                let [q, k, v] = parts;
                Ok(Tensor::cat(&[q?, k?, v?], 0)?)
            };
            layers.push(Layer {
                qkv: Linear::new(
                    joined("weight")?,
                    Some(joined("bias")?.to_vec1()?),
                    Input::AsIs,
                    true,
                )?,
                output: linear(&at("attention.output.dense"), Input::AsIs, false)?,
                attention_norm: norm(&at("attention.output.LayerNorm"))?,
                // The intermediate bias and GELU are applied as the output product reads its input.
                up: Linear::new(
                    get(&at("intermediate.dense.weight"))?,
                    None,
                    Input::AsIs,
                    false,
                )?,
                down: linear(
                    &at("output.dense"),
                    Input::BiasGelu(get(&at("intermediate.dense.bias"))?.to_vec1()?),
                    true,
                )?,
                output_norm: norm(&at("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words: get("embeddings.word_embeddings.weight")?,
            positions: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?.narrow(0, 0, 1)?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads: config.num_attention_heads,
            hidden: config.hidden_size,
        })
    }

    /// Turns every linear layer to 8 bits, splitting the input channels calibration found largest.
    pub fn quantize(&mut self) -> anyhow::Result<()> {
        for layer in &mut self.layers {
            for linear in [
                &mut layer.qkv,
                &mut layer.output,
                &mut layer.up,
                &mut layer.down,
            ] {
                *linear = linear.quantize()?;
            }
        }
        Ok(())
    }

    /// The last hidden state (batch × tokens × hidden) for token `ids` (batch × tokens, u32) whose
    /// `mask` (batch × tokens, f32) is 1 for real tokens and 0 for padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        let (hidden, heads) = (self.hidden, self.heads);
        let head_dim = hidden / heads;
        let rows = batch * tokens;
        let words = self.words.index_select(&ids.flatten_all()?, 0)?;
        let positions = self.positions.narrow(0, 0, tokens)?.repeat((batch, 1))?;
        let embedded = (words + positions)?.broadcast_add(&self.token_type)?;
        let embedded = embedded.flatten_all()?.to_vec1::<f32>()?;
        let mut x = finish(embedded, 1, rows, None, None, Some(&self.embedding_norm));
        let mask = mask.flatten_all()?.to_vec1::<f32>()?;
        let shape = Heads {
            batch,
            tokens,
            heads,
            head_dim,
        };
        for layer in &self.layers {
            let qkv = layer.qkv.apply(&x, rows, None, None)?;
            let context = attention(&qkv, &mask, shape);
            x = layer
                .output
                .apply(&context, rows, Some(&x), Some(&layer.attention_norm))?;
            let inner = layer.up.apply(&x, rows, None, None)?;
            x = layer
                .down
                .apply(&inner, rows, Some(&x), Some(&layer.output_norm))?;
        }
        Tensor::from_vec(x, (batch, tokens, hidden), &Device::Cpu)
    }
}

/// The shape of a batch in multi-head attention.
#[derive(Clone, Copy, Debug)]
struct Heads {
    batch: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

/// Scaled dot-product attention over the rows of `qkv` (batch × tokens rows of query, key and
/// value, each heads × head_dim wide). Padding keys (`mask` 0) get no weight, which is what
/// transformers' large negative score comes to after the softmax. Each (text, head) pair is one
/// task on candle's worker threads; returns the context, batch × tokens rows of heads × head_dim.
fn attention(qkv: &[f32], mask: &[f32], shape: Heads) -> Vec<f32> {
    let Heads {
        batch,
        tokens,
        heads,
        head_dim,
    } = shape;
    let hidden = heads * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let results: Vec<Mutex<Vec<f32>>> = (0..batch * heads).map(|_| Mutex::default()).collect();
    candle_core::utils::barrier_pool().execute_chunked(batch * heads, |range| {
        let mut scores = vec![0f32; tokens];
        for task in range {
            let (text, head) = (task / heads, task % heads);
            let row = |token: usize, part: usize| {
                let start = (text * tokens + token) * 3 * hidden + part * hidden + head * head_dim;
                &qkv[start..start + head_dim]
            };
            // The real keys' rows and values for this head, contiguous.
            let mut keys = Vec::with_capacity(tokens * head_dim);
            let mut values = Vec::with_capacity(tokens * head_dim);
            for token in (0..tokens).filter(|&t| mask[text * tokens + t] != 0.0) {
                keys.extend_from_slice(row(token, 1));
                values.extend_from_slice(row(token, 2));
            }
            let real = keys.len() / head_dim;
            let mut out = vec![0f32; tokens * head_dim];
            for (query, out) in out.chunks_exact_mut(head_dim).enumerate() {
                let q = row(query, 0);
                let scores = &mut scores[..real];
                for (score, key) in scores.iter_mut().zip(keys.chunks_exact(head_dim)) {
                    *score = dot(q, key) * scale;
                }
                let largest = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                for score in scores.iter_mut() {
                    *score = exp_negative((*score - largest).max(-36.0));
                }
                let inverse = 1.0 / scores.iter().sum::<f32>();
                for (&weight, value) in scores.iter().zip(values.chunks_exact(head_dim)) {
                    let weight = weight * inverse;
                    for (o, &v) in out.iter_mut().zip(value) {
                        *o += weight * v;
                    }
                }
            }
            *results[task].lock().unwrap_or_else(|e| e.into_inner()) = out;
        }
    });
    let mut context = vec![0f32; batch * tokens * hidden];
    for (task, result) in results.into_iter().enumerate() {
        let (text, head) = (task / heads, task % heads);
        let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
        for (token, values) in result.chunks_exact(head_dim).enumerate() {
            let start = (text * tokens + token) * hidden + head * head_dim;
            context[start..start + head_dim].copy_from_slice(values);
        }
    }
    context
}

/// Dot product in eight lanes, so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += a[i] * b[i];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(a, b)| a * b)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlType as _;
    use candle_core::quantized::k_quants::BlockQ8K;

    /// Deterministic values with a few outliers, like a BERT hidden state.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i % 97 == 5 { unit * 60.0 } else { unit * 3.0 }
            })
            .collect()
    }

    #[test]
    fn the_rounding_error_is_what_candles_quantisation_loses() {
        for seed in 0..20 {
            let block = values(seed, KERNEL_BLOCK);
            let mut quantised = [BlockQ8K::zeros()];
            BlockQ8K::from_float(&block, &mut quantised);
            let mut restored = vec![0f32; KERNEL_BLOCK];
            BlockQ8K::to_float(&quantised, &mut restored);
            let mut error = vec![1f32; KERNEL_BLOCK];
            rounding_error(&block, &mut error);
            let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for ((&v, &r), &e) in block.iter().zip(&restored).zip(&error) {
                assert!(
                    ((v - r) - e).abs() <= step * 1e-3,
                    "value {v}: candle lost {}, we computed {e}",
                    v - r
                );
                assert!(
                    e.abs() <= step * 0.5001,
                    "error {e} exceeds half a step {step}"
                );
            }
        }
        let mut error = vec![1f32; KERNEL_BLOCK];
        rounding_error(&[0.0; KERNEL_BLOCK], &mut error);
        assert!(error.iter().all(|&e| e == 0.0));
    }

    #[test]
    fn splitting_keeps_each_channel_whole_and_tames_the_largest() {
        let seen = [1.0, 30.0, 2.0, 12.0];
        let (sources, factors) = split_channels(&seen, 12);
        assert_eq!(sources.len(), 12);
        assert_eq!(&sources[..4], &[0, 1, 2, 3]);
        for channel in 0..seen.len() {
            let share: f32 = (0..sources.len())
                .filter(|&s| sources[s] == channel)
                .map(|s| factors[s])
                .sum();
            assert!(
                (share - 1.0).abs() < 1e-6,
                "channel {channel} sums to {share}"
            );
        }
        let largest_share = (0..sources.len())
            .map(|s| seen[sources[s]] * factors[s])
            .fold(0f32, f32::max);
        assert!(largest_share <= 5.0, "largest share {largest_share}");
        // A channel never seen gets no copies; there may be fewer copies than free slots.
        let (sources, _) = split_channels(&[0.0, 0.0], 8);
        assert_eq!(sources, vec![0, 1]);
    }

    /// The attention written here against the same computation in candle's ops, as the f32 BERT
    /// does it (large negative score on padding keys).
    #[test]
    fn attention_matches_candles_ops() {
        let shape = Heads {
            batch: 3,
            tokens: 7,
            heads: 4,
            head_dim: 8,
        };
        let hidden = shape.heads * shape.head_dim;
        let qkv = values(7, shape.batch * shape.tokens * 3 * hidden);
        let lengths = [7, 3, 5];
        let mask: Vec<f32> = (0..shape.batch * shape.tokens)
            .map(|i| f32::from(u8::from(i % shape.tokens < lengths[i / shape.tokens])))
            .collect();
        let got = attention(&qkv, &mask, shape);

        let reference = || -> candle_core::Result<Vec<f32>> {
            let (b, t, h, d) = (shape.batch, shape.tokens, shape.heads, shape.head_dim);
            let qkv = Tensor::from_vec(qkv.clone(), (b, t, 3, h, d), &Device::Cpu)?;
            let part = |i: usize| {
                qkv.narrow(2, i, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let mask = Tensor::from_vec(mask.clone(), (b, t), &Device::Cpu)?;
            let bias =
                ((mask.ones_like()? - mask)? * f64::from(f32::MIN))?.reshape((b, 1, 1, t))?;
            let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(&bias)?;
            let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
            probabilities
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b * t, h * d))?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let want = reference().unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "element {i}: {g} against {w}"
            );
        }
    }

    #[test]
    fn gelu_matches_candles_erf_gelu() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let want = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .gelu_erf()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (&x, &want) in xs.iter().zip(&want) {
            let got = gelu(x);
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x}) = {got}, want {want}"
            );
        }
    }
}
