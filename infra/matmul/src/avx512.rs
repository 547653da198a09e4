//! The products compiled for AVX-512 F, BW and VNNI. Callers must have detected those features.

use std::arch::x86_64::{
    __m512, __m512i, _mm512_cvtepi32_ps, _mm512_dpwssd_epi32, _mm512_mul_ps, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_setzero_si512,
};

use crate::{Block, PANEL, TILE_ROWS, Weights};

/// Registers per panel.
const REGISTERS: usize = PANEL / 16;

/// Scales `row` so that its largest magnitude becomes `levels`, rounds it to 16-bit pairs in
/// `words` and returns the scale.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) fn quantize(levels: f32, row: &[f32], words: &mut [i32]) -> f32 {
    let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let halves: &mut [i16] = bytemuck::cast_slice_mut(words);
    if largest == 0.0 || !largest.is_finite() {
        halves.fill(0);
        return 0.0;
    }
    let inverse = levels / largest;
    let (own, rest) = halves.split_at_mut(row.len());
    for (half, &value) in own.iter_mut().zip(row) {
        *half = (value * inverse).round_ties_even() as i16;
    }
    rest.fill(0);
    largest / levels
}

/// `out = x · wᵀ`: the rows are regrouped into tiles (a tile's words for one input pair side by
/// side), then each panel of outputs runs over every tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) fn product(weights: &Weights, words: &[i32], scales: &[f32], out: &mut [f32]) {
    let pairs = weights.pairs;
    let outputs = weights.outputs;
    let rows = scales.len();
    let mut tiled = vec![[0i32; TILE_ROWS]; rows.div_ceil(TILE_ROWS) * pairs];
    for (tile, words) in tiled
        .chunks_exact_mut(pairs)
        .zip(words.chunks(TILE_ROWS * pairs))
    {
        for (r, row) in words.chunks_exact(pairs).enumerate() {
            for (slot, &word) in tile.iter_mut().zip(row) {
                slot[r] = word;
            }
        }
    }
    let panels = weights
        .blocks
        .chunks_exact(pairs)
        .zip(weights.scales.chunks_exact(PANEL));
    for (index, (panel, panel_scales)) in panels.enumerate() {
        let columns = index * PANEL..(index * PANEL + PANEL).min(outputs);
        let tiles = tiled
            .chunks_exact(pairs)
            .zip(scales.chunks(TILE_ROWS))
            .zip(out.chunks_mut(TILE_ROWS * outputs));
        for ((tile, scales), out) in tiles {
            let columns = columns.clone();
            // A last, shorter tile (a single row, when a model decodes) computes only its rows.
            match scales.len() {
                6 => store(
                    &sums::<6>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
                5 => store(
                    &sums::<5>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
                4 => store(
                    &sums::<4>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
                3 => store(
                    &sums::<3>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
                2 => store(
                    &sums::<2>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
                _ => store(
                    &sums::<1>(panel, tile),
                    scales,
                    panel_scales,
                    out,
                    outputs,
                    columns,
                ),
            }
        }
    }
}

/// The integer sums of one panel's outputs for the first `ROWS` rows of a tile, kept in registers
/// over the whole inner dimension.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn sums<const ROWS: usize>(
    panel: &[Block],
    tile: &[[i32; TILE_ROWS]],
) -> [[__m512i; REGISTERS]; ROWS] {
    let mut sums = [[_mm512_setzero_si512(); REGISTERS]; ROWS];
    for (block, words) in panel.iter().zip(tile) {
        let weights: [__m512i; REGISTERS] = bytemuck::cast(*block);
        for r in 0..ROWS {
            let activations = _mm512_set1_epi32(words[r]);
            for j in 0..REGISTERS {
                sums[r][j] = _mm512_dpwssd_epi32(sums[r][j], activations, weights[j]);
            }
        }
    }
    sums
}

/// Scales a tile's sums by each row's and each output's scale into `out`'s `columns`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn store(
    sums: &[[__m512i; REGISTERS]],
    scales: &[f32],
    panel_scales: &[f32],
    out: &mut [f32],
    outputs: usize,
    columns: std::ops::Range<usize>,
) {
    for ((sums, &scale), out) in sums.iter().zip(scales).zip(out.chunks_mut(outputs)) {
        let scale = _mm512_set1_ps(scale);
        let out = &mut out[columns.clone()];
        for ((sum, panel_scales), out) in sums
            .iter()
            .zip(panel_scales.chunks_exact(16))
            .zip(out.chunks_mut(16))
        {
            let panel_scales: [f32; 16] = panel_scales.try_into().unwrap_or_default();
            let panel_scales: __m512 = bytemuck::cast(panel_scales);
            let values =
                _mm512_mul_ps(_mm512_cvtepi32_ps(*sum), _mm512_mul_ps(panel_scales, scale));
            let values: [f32; 16] = bytemuck::cast(values);
            out.copy_from_slice(&values[..out.len()]);
        }
    }
}
