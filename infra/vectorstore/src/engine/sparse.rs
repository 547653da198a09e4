use std::collections::HashMap;

use super::points::SparseVector;

#[derive(Default)]
pub(super) struct SparseIndex {
    pub(super) idf: bool,
    pub(super) postings: HashMap<u32, Vec<(u32, f32)>>,
    pub(super) points: usize,
}

impl SparseIndex {
    pub(super) fn add(&mut self, slot: u32, vector: &SparseVector) {
        for (&i, &v) in vector.indices.iter().zip(&vector.values) {
            self.postings.entry(i).or_default().push((slot, v));
        }
        self.points += 1;
    }

    pub(super) fn remove(&mut self, slot: u32, vector: &SparseVector) {
        for i in &vector.indices {
            if let Some(list) = self.postings.get_mut(i) {
                list.retain(|(s, _)| *s != slot);
                if list.is_empty() {
                    self.postings.remove(i);
                }
            }
        }
        self.points = self.points.saturating_sub(1);
    }

    /// Qdrant's inverse document frequency for an index present in `n` of `total` points.
    pub(super) fn idf(n: usize, total: usize) -> f32 {
        let (n, total) = (n as f32, total as f32);
        (1.0 + (total - n + 0.5) / (n + 0.5)).ln()
    }
}

/// The values in both ascending lists, ascending.
pub(super) fn intersect_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}
