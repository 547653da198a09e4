use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;

use super::config::{DenseParams, Hnsw};
use super::distance::{Distance, dot_codes};
use crate::error::{Result, VecError};

/// Searches the graph can serve at once (usearch's thread contexts); more concurrent ones would fail.
const SEARCH_CONTEXTS: usize = 64;

/// A dense vector's storage and graph. Vectors live in `data` at `slot * size`.
///
/// For dot-product distances each vector is also kept as 8-bit codes: a quarter of the bytes, which
/// is what a scan over scattered candidates is bound by. A slot's row in `codes` holds its `size`
/// codes and then its scale (4 bytes, little-endian; 0 when the slot has no vector), so ranking one
/// candidate touches one stretch of memory. A scan ranks by the codes, then rescores the best few
/// with the full vectors.
pub(super) struct DenseIndex {
    pub(super) params: DenseParams,
    pub(super) data: Vec<f32>,
    pub(super) codes: Vec<u8>,
    pub(super) present: Vec<bool>,
    pub(super) graph: usearch::Index,
}

impl DenseIndex {
    pub(super) fn new(params: DenseParams, hnsw: Hnsw) -> Result<Self> {
        let options = usearch::IndexOptions {
            dimensions: params.size,
            // usearch has no Manhattan metric: its graph is built by Euclidean distance, and a
            // Manhattan search rescores the walk's whole candidate list (see `search_dense`).
            metric: match params.distance {
                Distance::Cosine | Distance::Dot => usearch::MetricKind::IP,
                Distance::Euclid | Distance::Manhattan => usearch::MetricKind::L2sq,
            },
            // The graph keeps its own copy of every vector; it only steers the walk (results are
            // rescored from `data`), so for unit-length vectors half precision is enough and
            // halves that copy. Dot and Euclid vectors may be too large for it.
            quantization: match params.distance {
                Distance::Cosine => usearch::ScalarKind::F16,
                Distance::Dot | Distance::Euclid | Distance::Manhattan => usearch::ScalarKind::F32,
            },
            connectivity: hnsw.m,
            expansion_add: hnsw.ef_construct,
            expansion_search: hnsw.ef_construct,
            multi: false,
        };
        let graph = usearch::Index::new(&options).map_err(not_created)?;
        Ok(Self {
            params,
            data: Vec::new(),
            codes: Vec::new(),
            present: Vec::new(),
            graph,
        })
    }

    pub(super) fn vector(&self, slot: u32) -> Option<&[f32]> {
        let slot = slot as usize;
        if !self.present.get(slot).copied().unwrap_or(false) {
            return None;
        }
        Some(&self.data[slot * self.params.size..(slot + 1) * self.params.size])
    }

    pub(super) fn store(&mut self, slot: u32, vector: &[f32]) {
        let (slot, size) = (slot as usize, self.params.size);
        if self.present.len() <= slot {
            self.present.resize(slot + 1, false);
            self.data.resize((slot + 1) * size, 0.0);
        }
        self.data[slot * size..(slot + 1) * size].copy_from_slice(vector);
        self.present[slot] = true;
        if self.coded() {
            let row = self.code_row(slot as u32);
            if self.codes.len() < row.end {
                self.codes.resize(row.end, 0);
            }
            let largest = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
            let (codes, tail) = self.codes[row].split_at_mut(size);
            for (code, x) in codes.iter_mut().zip(vector) {
                *code = (x / scale).round().clamp(-127.0, 127.0) as i8 as u8;
            }
            tail.copy_from_slice(&scale.to_le_bytes());
        }
    }

    /// Where `slot`'s row (its codes, then its scale) lies in `codes`.
    pub(super) fn code_row(&self, slot: u32) -> std::ops::Range<usize> {
        let row = self.params.size + 4;
        slot as usize * row..(slot as usize + 1) * row
    }

    /// Whether vectors are also kept as codes: for the dot-product distances, whose score the codes
    /// approximate directly.
    pub(super) fn coded(&self) -> bool {
        matches!(self.params.distance, Distance::Cosine | Distance::Dot)
    }

    /// `slot`'s row of codes and scale, when this index is coded and the slot has a vector.
    pub(super) fn code_bytes(&self, slot: u32) -> Option<&[u8]> {
        let row = self.codes.get(self.code_row(slot))?;
        (self.present.get(slot as usize).copied() == Some(true)).then_some(row)
    }

    pub(super) fn remove(&mut self, slot: u32) {
        if let Some(p) = self.present.get_mut(slot as usize)
            && *p
        {
            *p = false;
            let _ = self.graph.remove(u64::from(slot));
            let row = self.code_row(slot);
            if let Some(scale) = self.codes.get_mut(row.end - 4..row.end) {
                scale.fill(0);
            }
        }
    }

    /// Adds the given slots' stored vectors to the graph, on every core.
    pub(super) fn index(&self, slots: &[u32]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let needed = self.graph.size() + slots.len();
        if needed > self.graph.capacity() {
            let capacity = needed.max(self.graph.capacity() * 2).max(1024);
            // The graph serves one search per thread context: searches arrive on the server's blocking
            // threads, many more than the cores, and a search that finds no free context fails.
            self.graph
                .reserve_capacity_and_threads(capacity, threads.max(SEARCH_CONTEXTS))
                .map_err(|e| {
                    tracing::error!("vector store: cannot grow the index: {e}");
                    VecError::bad_request("Service internal error: cannot grow the vector index")
                })?;
        }
        let failed = std::sync::atomic::AtomicBool::new(false);
        let chunk = slots.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for part in slots.chunks(chunk) {
                let failed = &failed;
                scope.spawn(move || {
                    for &slot in part {
                        if let Some(v) = self.vector(slot)
                            && self.graph.add(u64::from(slot), v).is_err()
                        {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            return Err(VecError::bad_request(
                "Service internal error: the vector index refused a vector",
            ));
        }
        Ok(())
    }
}

fn not_created(error: impl std::fmt::Display) -> VecError {
    tracing::error!("vector store: cannot create an index: {error}");
    VecError::bad_request("Service internal error: cannot create the vector index")
}

/// The best candidates by code score, before they are rescored exactly.
pub(super) struct Rough {
    pub(super) top: TopK,
    /// How many candidates were ranked.
    pub(super) ranked: usize,
    /// The largest scale among them, which bounds how far a code score can be off.
    pub(super) largest: f32,
}

impl Rough {
    /// Ranks rows of codes and scale (see [`DenseIndex::codes`]), keeping the best `keep`.
    pub(super) fn rank<'a>(
        keep: usize,
        query: &[f32],
        rows: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> Self {
        let mut rough = Self {
            top: TopK::new(keep, true),
            ranked: 0,
            largest: 0.0,
        };
        for (slot, row) in rows {
            let (codes, tail) = row.split_at(query.len());
            let scale = f32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
            if scale > 0.0 {
                rough.top.push(slot, scale * dot_codes(query, codes));
                rough.ranked += 1;
                rough.largest = rough.largest.max(scale);
            }
        }
        rough
    }

    /// Ranks two parts, at once when `parallel`, the second on another thread: reading rows waits
    /// on memory more than it computes, and two threads keep twice as many reads in flight.
    pub(super) fn rank_parts<'a>(
        keep: usize,
        query: &[f32],
        first: impl Iterator<Item = (u32, &'a [u8])>,
        second: impl Iterator<Item = (u32, &'a [u8])> + Send,
        parallel: bool,
    ) -> Result<Self> {
        if !parallel {
            return Ok(Self::rank(keep, query, first.chain(second)));
        }
        let (mut mine, other) = std::thread::scope(|scope| {
            let other = scope.spawn(|| Self::rank(keep, query, second));
            (Self::rank(keep, query, first), other.join())
        });
        let other =
            other.map_err(|_| VecError::bad_request("Service internal error: search failed"))?;
        mine.top.absorb(other.top);
        mine.ranked += other.ranked;
        mine.largest = mine.largest.max(other.largest);
        Ok(mine)
    }

    /// Rescores the ranked slots exactly and keeps the best `want`; `None` when a candidate left
    /// out could still belong among them.
    ///
    /// A code is within half a step of its value, so a code score is within
    /// `0.5 * scale * sum |q|` of the exact one: the result is certain when nothing left out could
    /// reach the worst score kept (it may not be with many near-equal vectors).
    pub(super) fn settle(self, index: &DenseIndex, query: &[f32], want: usize) -> Option<TopK> {
        let cut = (self.ranked > self.top.k)
            .then(|| self.top.worst())
            .flatten();
        // A point in two of the tenants asked for was ranked twice.
        let mut slots: Vec<u32> = self.top.heap.into_iter().map(|e| e.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        let distance = index.params.distance;
        let mut top = TopK::new(want, distance.higher_is_better());
        for slot in slots {
            if let Some(v) = index.vector(slot) {
                top.push(slot, distance.score(query, v));
            }
        }
        let uncertain = cut.is_some_and(|cut| {
            let slack = 0.5 * self.largest * query.iter().map(|x| x.abs()).sum::<f32>();
            top.len() < want || top.worst().is_none_or(|worst| cut + slack * 1.001 >= worst)
        });
        (!uncertain).then_some(top)
    }
}

/// Keeps the best `k` scores seen.
pub(super) struct TopK {
    pub(super) k: usize,
    pub(super) higher_is_better: bool,
    pub(super) heap: BinaryHeap<Entry>,
}

/// Heap entry whose ordering puts the worst kept score on top.
pub(super) struct Entry {
    pub(super) key: f32,
    pub(super) slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `key` is "badness": the max-heap's top is the worst entry kept.
        self.key
            .total_cmp(&other.key)
            .then(self.slot.cmp(&other.slot))
    }
}

impl TopK {
    pub(super) fn new(k: usize, higher_is_better: bool) -> Self {
        Self {
            k,
            higher_is_better,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The worst score kept.
    pub(super) fn worst(&self) -> Option<f32> {
        let key = self.heap.peek()?.key;
        Some(if self.higher_is_better { -key } else { key })
    }

    pub(super) fn push(&mut self, slot: u32, score: f32) {
        let key = if self.higher_is_better { -score } else { score };
        self.push_key(slot, key);
    }

    /// Keeps the best of both.
    pub(super) fn absorb(&mut self, other: TopK) {
        for entry in other.heap {
            self.push_key(entry.slot, entry.key);
        }
    }

    pub(super) fn push_key(&mut self, slot: u32, key: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Entry { key, slot });
        } else if let Some(worst) = self.heap.peek()
            && key < worst.key
        {
            self.heap.pop();
            self.heap.push(Entry { key, slot });
        }
    }

    pub(super) fn finish(self, threshold: Option<f32>) -> Vec<(u32, f32)> {
        let higher = self.higher_is_better;
        let mut entries = self.heap.into_sorted_vec();
        let to_score = |key: f32| if higher { -key } else { key };
        if let Some(t) = threshold {
            entries.retain(|e| {
                let s = to_score(e.key);
                if higher { s >= t } else { s <= t }
            });
        }
        entries
            .into_iter()
            .map(|e| (e.slot, to_score(e.key)))
            .collect()
    }
}
