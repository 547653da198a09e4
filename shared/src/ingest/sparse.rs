//! Keyword (BM25-style) sparse vectors: the same analysis for chunks at ingest and for queries at
//! search, so a query term meets the chunk terms it should.
//!
//! Terms are Unicode words (UAX #29), lowercased and stemmed with the Snowball English stemmer. A
//! chunk's value for a term is BM25's saturated term frequency with length normalisation; the inverse
//! document frequency is left to the vector store (Qdrant's `idf` modifier), which knows the corpus.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

/// BM25's parameters for a chunk's term weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Length normalisation.
    pub b: f32,
    /// The length (in terms) a chunk is normalised against.
    pub average_terms: f32,
}

/// What ingest uses: bm25s's (and the reference pipeline's) k1 = 1.5 and b = 0.75, against about what
/// the default chunk size holds (120 terms). On SciFact, k1 = 1.5 gave keyword nDCG@10 0.6873 against
/// 0.6830 for Lucene's 1.2 (BENCHMARKS.md, "Keyword weights"; `target/release/keyword-variants`).
pub const BM25: Bm25 = Bm25 {
    k1: 1.5,
    b: 0.75,
    average_terms: 120.0,
};

/// A sparse vector as Qdrant takes it: sorted, distinct indices and their values.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// Words stemmed so far, in this thread: a batch's chunks repeat most of their words (the title in
/// every chunk, the overlaps), and stemming is the dearer half of the analysis. Bounded.
const STEM_CACHE: usize = 50_000;

thread_local! {
    static STEMS: std::cell::RefCell<std::collections::HashMap<String, String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The terms of `text`, in order: lowercased, stemmed words.
pub fn terms(text: &str) -> Vec<String> {
    let stemmer = stemmer();
    STEMS.with_borrow_mut(|stems| {
        if stems.len() > STEM_CACHE {
            stems.clear();
        }
        text.unicode_words()
            .filter_map(|word| {
                let word = word.to_lowercase();
                let term = match stems.get(&word) {
                    Some(term) => term.clone(),
                    None => {
                        let term = stemmer.stem(&word).into_owned();
                        stems.insert(word, term.clone());
                        term
                    }
                };
                (!term.is_empty()).then_some(term)
            })
            .collect()
    })
}

/// A term's dimension: FNV-1a of its UTF-8 bytes. Two terms may share one (about one pair in a
/// million at 100,000 distinct terms); that only blurs their two scores together.
pub fn term_index(term: &str) -> u32 {
    term.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// A chunk's sparse vector.
pub fn document_vector(text: &str) -> SparseVector {
    weighted(&terms(text), &BM25)
}

/// The sparse vector of a chunk's `terms` with BM25's saturated, length-normalised term frequencies.
pub fn weighted(terms: &[String], bm25: &Bm25) -> SparseVector {
    let length = terms.len() as f32;
    let mut counts: BTreeMap<u32, f32> = BTreeMap::new();
    for term in terms {
        *counts.entry(term_index(term)).or_default() += 1.0;
    }
    let Bm25 {
        k1,
        b,
        average_terms,
    } = *bm25;
    let norm = k1 * (1.0 - b + b * length / average_terms);
    let (indices, values) = counts
        .into_iter()
        .map(|(index, tf)| (index, tf * (k1 + 1.0) / (tf + norm)))
        .unzip();
    SparseVector { indices, values }
}

/// A query's sparse vector: each distinct term once, weight 1 (the store multiplies in its idf).
pub fn query_vector(text: &str) -> SparseVector {
    let mut indices: Vec<u32> = terms(text).iter().map(|t| term_index(t)).collect();
    indices.sort_unstable();
    indices.dedup();
    let values = vec![1.0; indices.len()];
    SparseVector { indices, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercased_stemmed_words() {
        assert_eq!(
            terms("Running runners RAN, the cats' café-2024!"),
            vec!["run", "runner", "ran", "the", "cat", "café", "2024"]
        );
        assert!(terms("  ... — !").is_empty());
    }

    #[test]
    fn query_terms_meet_the_document_terms_they_should() {
        let doc =
            document_vector("Vaccines reduce infections; vaccinated people were infected less.");
        let query = query_vector("does vaccination reduce infection");
        let shared: Vec<u32> = query
            .indices
            .iter()
            .filter(|i| doc.indices.contains(i))
            .copied()
            .collect();
        // reduce, infect(ion) and vaccin(ation) meet; "does" does not.
        assert_eq!(shared.len(), 3, "{query:?} {doc:?}");
    }

    #[test]
    fn values_saturate_with_frequency_and_shrink_with_length() {
        let once = document_vector("apple");
        let thrice = document_vector("apple apple apple");
        assert!(thrice.values[0] > once.values[0]);
        assert!(thrice.values[0] < 3.0 * once.values[0]);
        assert!(thrice.values[0] < BM25.k1 + 1.0);
        let long = document_vector(&format!("apple {}", "pear ".repeat(300)));
        let apple = long
            .indices
            .iter()
            .position(|&i| i == term_index("appl"))
            .unwrap();
        assert!(long.values[apple] < once.values[0]);
        assert!(once.indices.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(query_vector("apple Apples apple").indices.len(), 1);
    }
}
