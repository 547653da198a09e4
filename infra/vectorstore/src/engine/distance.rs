use serde_json::Value;

use crate::error::{Result, VecError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
    Manhattan,
}

impl Distance {
    pub(super) fn parse(value: &Value) -> Result<Self> {
        match value.as_str() {
            Some("Cosine") => Ok(Distance::Cosine),
            Some("Dot") => Ok(Distance::Dot),
            Some("Euclid") => Ok(Distance::Euclid),
            Some("Manhattan") => Ok(Distance::Manhattan),
            _ => Err(VecError::bad_request(
                "Format error in JSON body: distance must be one of Cosine, Dot, Euclid, Manhattan",
            )),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
            Distance::Manhattan => "Manhattan",
        }
    }

    /// Whether a larger score is a better match (the similarities); the distances are better small.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Distance::Cosine | Distance::Dot)
    }

    pub(super) fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot(a, b),
            Distance::Euclid => squared_l2(a, b).sqrt(),
            Distance::Manhattan => l1(a, b),
        }
    }
}

/// Dot product, with the widest SIMD this CPU has (the portable build only assumes SSE2).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::<DotKernel>(a, b)
}

pub(super) fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    simd::<SquaredL2Kernel>(a, b)
}

/// The Manhattan distance, the sum of the coordinates' absolute differences.
pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
    simd::<L1Kernel>(a, b)
}

/// `query . codes`, for a vector stored as 8-bit codes (see [`Rough::rank`]).
pub(super) fn dot_codes(query: &[f32], codes: &[u8]) -> f32 {
    simd::<CodesKernel>(query, codes)
}

/// A loop over two slices that the compiler vectorises for whatever instruction set it is
/// compiled for; [`simd`] compiles it for the best one this CPU has, detected once.
pub(super) trait Kernel {
    type Item;
    fn run(a: &[f32], b: &[Self::Item]) -> f32;
}

pub(super) struct DotKernel;
pub(super) struct SquaredL2Kernel;
pub(super) struct L1Kernel;
pub(super) struct CodesKernel;

impl Kernel for DotKernel {
    type Item = f32;
    #[inline(always)]
    fn run(a: &[f32], b: &[f32]) -> f32 {
        dot_portable(a, b)
    }
}

impl Kernel for SquaredL2Kernel {
    type Item = f32;
    #[inline(always)]
    fn run(a: &[f32], b: &[f32]) -> f32 {
        squared_l2_portable(a, b)
    }
}

impl Kernel for L1Kernel {
    type Item = f32;
    #[inline(always)]
    fn run(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |x, y| (x - y).abs())
    }
}

impl Kernel for CodesKernel {
    type Item = u8;
    #[inline(always)]
    fn run(a: &[f32], b: &[u8]) -> f32 {
        dot_codes_portable(a, b)
    }
}

pub(super) struct Vectorised<'a, K: Kernel>(&'a [f32], &'a [K::Item]);

impl<K: Kernel> pulp::WithSimd for Vectorised<'_, K> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f32 {
        K::run(self.0, self.1)
    }
}

pub(super) fn simd<K: Kernel>(a: &[f32], b: &[K::Item]) -> f32 {
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(Vectorised::<K>(a, b))
}

/// Sums `term(a[i], b[i])` in sixteen independent accumulators, which the compiler turns into SIMD.
#[inline(always)]
pub(super) fn sum_terms<T: Copy>(a: &[f32], b: &[T], term: impl Fn(f32, T) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = a.len() / 16 * 16;
    for (x, y) in a[..chunks]
        .chunks_exact(16)
        .zip(b[..chunks].chunks_exact(16))
    {
        for i in 0..16 {
            acc[i] += term(x[i], y[i]);
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| term(*x, *y))
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub(super) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| x * y)
}

#[inline(always)]
pub(super) fn squared_l2_portable(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| (x - y) * (x - y))
}

#[inline(always)]
pub(super) fn dot_codes_portable(query: &[f32], codes: &[u8]) -> f32 {
    sum_terms(query, codes, |x, c| x * f32::from(c as i8))
}

pub(super) fn normalize(vector: &mut [f32]) {
    let norm = dot(vector, vector).sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}
