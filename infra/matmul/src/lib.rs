//! Matrix products `x · wᵀ` in 16-bit integers with 32-bit sums, for the host's embedded models
//! on x86-64 CPUs with AVX-512 VNNI: weights with one scale per output, activations with one scale
//! per row.
//!
//! One `vpdpwssd` multiplies 32 pairs of 16-bit values and adds them into 16 lanes of 32 bits: half
//! the pairs of an 8-bit `vpdpbusd`, but with none of 8 bits' losses. A transformer's hidden state
//! has a few outlier channels 30 times the typical magnitude, which leave 8-bit activations a few
//! levels for everything else. Here each matrix splits the levels its 32-bit sums allow (fewer for
//! wider inputs) between weights and activations, so no sum can overflow, whatever the values.
//!
//! This is the workspace's one crate with `unsafe` code, all of it one kind: calling functions
//! compiled for CPU features the build does not assume (`#[target_feature]`). [`Kernel::detect`]
//! checks those features at run time and is the only way to get a [`Kernel`]; every call into
//! the compiled functions goes through one. Memory is reached only through slices and `bytemuck`
//! casts. The crate must not grow other unsafe code, and it knows nothing about models.

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Outputs per panel: four registers of 16 lanes.
const PANEL: usize = 64;

/// Rows the kernel multiplies per weight load: 6 rows × 4 registers of sums, 4 of weights and 1
/// of activations fit the 32 vector registers. Products over a multiple of this many rows waste
/// nothing.
pub const TILE_ROWS: usize = 6;

/// A panel's weights for one pair of inputs: for each of its 64 outputs the two weights side by
/// side, as four 512-bit registers hold them.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Block([i16; 2 * PANEL]);

/// What proves the CPU features were detected: nothing to carry on x86-64, and a value that
/// cannot exist elsewhere.
#[cfg(target_arch = "x86_64")]
type Proof = ();
#[cfg(not(target_arch = "x86_64"))]
type Proof = std::convert::Infallible;

/// The products on this CPU: exists only where the CPU has AVX-512 F, BW and VNNI.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    proof: Proof,
}

impl Kernel {
    /// The kernel, when this CPU can run it.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Some(Self { proof: () });
        }
        None
    }

    /// Quantises one row of `weights.inputs()` activations into `words` (`weights.pairs()` long,
    /// two 16-bit values each) and returns the row's scale.
    #[allow(unsafe_code)]
    pub fn quantize(self, weights: &Weights, row: &[f32], words: &mut [i32]) -> f32 {
        assert_eq!(row.len(), weights.inputs, "row width");
        assert_eq!(words.len(), weights.pairs, "quantised row width");
        #[cfg(target_arch = "x86_64")]
        {
            let () = self.proof;
            // SAFETY: a Kernel exists only once `detect` found every feature `avx512::quantize`
            // is compiled for.
            unsafe { avx512::quantize(weights.levels, row, words) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.proof {}
    }

    /// Quantises every row of `rows` (each `weights.inputs()` wide): their words, then their
    /// scales, as [`Kernel::product`] takes them.
    pub fn quantize_rows(self, weights: &Weights, rows: &[f32]) -> (Vec<i32>, Vec<f32>) {
        let inputs = weights.inputs.max(1);
        let mut words = vec![0; rows.len() / inputs * weights.pairs];
        let scales = rows
            .chunks_exact(inputs)
            .zip(words.chunks_exact_mut(weights.pairs))
            .map(|(row, words)| self.quantize(weights, row, words))
            .collect();
        (words, scales)
    }

    /// `out = x · wᵀ` for the rows quantised into `words` (each `weights.pairs()` long) with
    /// `scales` (one per row); `out` holds `scales.len()` rows of `weights.outputs()`.
    #[allow(unsafe_code)]
    pub fn product(self, weights: &Weights, words: &[i32], scales: &[f32], out: &mut [f32]) {
        let rows = scales.len();
        assert_eq!(words.len(), rows * weights.pairs, "quantised rows");
        assert_eq!(out.len(), rows * weights.outputs, "output rows");
        #[cfg(target_arch = "x86_64")]
        {
            let () = self.proof;
            // SAFETY: as in `quantize`.
            unsafe { avx512::product(weights, words, scales, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.proof {}
    }
}

/// A weight matrix of `outputs` rows of `inputs` values, in 16 bits with one scale per output,
/// laid out for the kernel: panels of 64 outputs, each a run of [`Block`]s over the input pairs.
#[derive(Clone)]
// Only x86-64 has a kernel that reads the quantised values.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Weights {
    inputs: usize,
    outputs: usize,
    pairs: usize,
    blocks: Vec<Block>,
    /// One per output, padded to whole panels with zeros.
    scales: Vec<f32>,
    /// The largest activation magnitude after quantisation: with the weights' levels, as fine as
    /// 16 bits allow while `inputs` products at full range still fit in 32 bits.
    levels: f32,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("levels", &self.levels)
            .finish_non_exhaustive()
    }
}

impl Weights {
    /// Quantises `weight` (`outputs` rows of `inputs` values, row-major, finite): each output row
    /// is scaled so that its largest magnitude becomes the matrix's weight levels, then rounded.
    ///
    /// # Panics
    ///
    /// When the shape does not match `weight.len()`, or `inputs` is too large for the 32-bit sums.
    pub fn quantize(weight: &[f32], outputs: usize, inputs: usize) -> Self {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        let pairs = inputs.div_ceil(2);
        // The sums hold at most `inputs × weight levels × activation levels`. Activations get two
        // bits more than weights: a transformer's hidden state has outlier channels that span a
        // far wider range than any one output's weights do.
        let budget = i32::MAX as usize / (2 * pairs.max(1));
        let weight_levels = budget.div_euclid(4).isqrt().min(i16::MAX as usize / 4);
        let levels = (budget / weight_levels.max(1)).min(i16::MAX as usize);
        assert!(
            weight_levels >= 127,
            "{inputs} inputs leave too few levels for 32-bit sums"
        );
        let panels = outputs.div_ceil(PANEL);
        let mut blocks = vec![Block([0; 2 * PANEL]); panels * pairs];
        let mut scales = vec![0f32; panels * PANEL];
        for (output, row) in weight.chunks_exact(inputs.max(1)).enumerate() {
            let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            scales[output] = largest / weight_levels as f32;
            let inverse = if largest > 0.0 {
                weight_levels as f32 / largest
            } else {
                0.0
            };
            let (panel, lane) = (output / PANEL, output % PANEL);
            for (input, &value) in row.iter().enumerate() {
                blocks[panel * pairs + input / 2].0[lane * 2 + input % 2] =
                    (value * inverse).round() as i16;
            }
        }
        Self {
            inputs,
            outputs,
            pairs,
            blocks,
            scales,
            levels: levels as f32,
        }
    }

    /// Input values per row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Words per quantised activation row.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// The quantised weight of `output` for `input`, and the output's scale.
    #[cfg(test)]
    fn quantized(&self, output: usize, input: usize) -> (i16, f32) {
        let (panel, lane) = (output / PANEL, output % PANEL);
        (
            self.blocks[panel * self.pairs + input / 2].0[lane * 2 + input % 2],
            self.scales[output],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1), with a few channels 30 times larger, as in a
    /// transformer's hidden state.
    fn values(count: usize, seed: u64, width: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                if i % width.max(1) % 97 == 5 {
                    unit * 30.0
                } else {
                    unit
                }
            })
            .collect()
    }

    /// The kernel, or `None` (and a note that the test is skipped) on CPUs without it.
    fn kernel() -> Option<Kernel> {
        let kernel = Kernel::detect();
        if kernel.is_none() {
            eprintln!("skipped: this CPU lacks AVX-512 VNNI");
        }
        kernel
    }

    /// The kernel's integer sums are exact: every output equals the sum of the quantised
    /// products, scaled, for every tile height and for ragged shapes.
    #[test]
    fn products_are_the_exact_sums_of_the_quantised_values() {
        let Some(kernel) = kernel() else { return };
        // Row counts leave last tiles of every height: 1, 2, 3, 4, 5 and 6 rows.
        let shapes = [
            (13, 70, 7),
            (8, 128, 6),
            (9, 64, 12),
            (16, 64, 10),
            (6, 64, 384),
            (1, 1152, 384),
            (11, 384, 1536),
        ];
        for (rows, outputs, inputs) in shapes {
            let weights = Weights::quantize(&values(outputs * inputs, 1, inputs), outputs, inputs);
            let x = values(rows * inputs, 2, inputs);
            let (words, scales) = kernel.quantize_rows(&weights, &x);
            let mut out = vec![f32::NAN; rows * outputs];
            kernel.product(&weights, &words, &scales, &mut out);
            let halves: &[i16] = bytemuck::cast_slice(&words);
            for row in 0..rows {
                for output in 0..outputs {
                    let mut sum = 0i64;
                    let mut scale = 0.0;
                    for input in 0..inputs {
                        let (w, s) = weights.quantized(output, input);
                        scale = s;
                        sum += i64::from(w) * i64::from(halves[row * 2 * weights.pairs + input]);
                    }
                    let expected = sum as f64 * f64::from(scale) * f64::from(scales[row]);
                    let got = f64::from(out[row * outputs + output]);
                    assert!(
                        (got - expected).abs() <= 1e-6 * expected.abs().max(1e-3),
                        "{rows}x{outputs}x{inputs} at ({row}, {output}): {got} != {expected}"
                    );
                }
            }
        }
    }

    /// Against the f32 product, the error stays at the scale of the levels.
    #[test]
    fn products_stay_close_to_f32() {
        let Some(kernel) = kernel() else { return };
        let (rows, outputs, inputs) = (9, 130, 384);
        let w = values(outputs * inputs, 3, inputs);
        let x = values(rows * inputs, 4, inputs);
        let weights = Weights::quantize(&w, outputs, inputs);
        let (words, scales) = kernel.quantize_rows(&weights, &x);
        let mut out = vec![0.0; rows * outputs];
        kernel.product(&weights, &words, &scales, &mut out);
        let (mut error, mut norm) = (0f64, 0f64);
        for row in 0..rows {
            for output in 0..outputs {
                let exact: f64 = (0..inputs)
                    .map(|i| f64::from(x[row * inputs + i]) * f64::from(w[output * inputs + i]))
                    .sum();
                error += (f64::from(out[row * outputs + output]) - exact).powi(2);
                norm += exact * exact;
            }
        }
        let relative = (error / norm).sqrt();
        assert!(relative < 0.001, "relative error {relative}");
    }

    /// Every value at full range, over 2,047 inputs, must not overflow 32 bits.
    #[test]
    fn full_range_sums_do_not_overflow() {
        let Some(kernel) = kernel() else { return };
        let (outputs, inputs) = (16, 2047);
        let weights = Weights::quantize(&vec![-1.0; outputs * inputs], outputs, inputs);
        let (words, scales) = kernel.quantize_rows(&weights, &vec![1.0; inputs]);
        let mut out = vec![0.0; outputs];
        kernel.product(&weights, &words, &scales, &mut out);
        for value in out {
            assert!(
                (value + inputs as f32).abs() < 1e-3 * inputs as f32,
                "{value}"
            );
        }
    }

    #[test]
    fn zero_rows_give_zero() {
        let Some(kernel) = kernel() else { return };
        let weights = Weights::quantize(&values(64 * 8, 5, 8), 64, 8);
        let (words, scales) = kernel.quantize_rows(&weights, &[0.0; 8]);
        let mut out = vec![f32::NAN; 64];
        kernel.product(&weights, &words, &scales, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
