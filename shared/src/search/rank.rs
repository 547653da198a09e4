//! From the vector store's two candidate lists (dense and keyword) to one page of hits: fusion,
//! documents scored by their best chunks, thresholds, de-duplication and grouping.
//!
//! Fusion works on documents, not chunks: a document's score on a signal is its best chunk's, so an
//! abstract whose words match in one chunk and whose meaning matches in another is credited with both.
//! Within a document, chunks are ordered by their own fused score.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::query::Mode;

/// How hybrid search combines its two signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: each list adds weight / (k + rank).
    Rrf,
    /// A convex combination of min-max normalised scores: w * semantic + (1 - w) * keyword.
    Convex,
}

/// Hybrid search's fusion and its parameters; a project may override any of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fusion {
    pub method: FusionMethod,
    /// RRF's k.
    pub rrf_k: f32,
    /// The semantic signal's weight, 0 to 1 (the keyword signal has 1 minus it).
    pub semantic_weight: f32,
    /// Chunks each signal brings as candidates.
    pub candidates: u32,
}

impl Default for Fusion {
    /// Chosen on SciFact (BENCHMARKS.md, "Search quality"): convex beat RRF at every k tried. 100
    /// candidates per signal ranked as well as 200 (hybrid nDCG@10 0.7284 against 0.7243, Recall@100
    /// 0.9577 both) at half the store's and the component's work ("Candidates per signal").
    fn default() -> Self {
        Self {
            method: FusionMethod::Convex,
            rrf_k: 60.0,
            semantic_weight: 0.5,
            candidates: 100,
        }
    }
}

impl Fusion {
    /// Checks a project's override.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.semantic_weight) {
            return Err("`settings.fusion.semantic_weight` is between 0 and 1".into());
        }
        if !(self.rrf_k.is_finite() && self.rrf_k >= 0.0 && self.rrf_k <= 1000.0) {
            return Err("`settings.fusion.rrf_k` is between 0 and 1000".into());
        }
        if !(10..=1000).contains(&self.candidates) {
            return Err("`settings.fusion.candidates` is between 10 and 1000".into());
        }
        Ok(())
    }
}

/// A signal's verdict on a chunk: its own score and its 1-based rank in that signal's list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Signal {
    pub score: f32,
    pub rank: u32,
}

/// A chunk either signal brought back.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The vector store's id of the chunk's point.
    pub point: Value,
    /// The chunk's id (`chunk_id` in the payload).
    pub chunk: String,
    pub document: String,
    pub sha256: String,
    pub text: String,
    pub payload: Value,
    pub semantic: Option<Signal>,
    pub keyword: Option<Signal>,
    /// The reranker's verdict, when one reranked the chunk.
    pub rerank: Option<Signal>,
}

/// A ranked chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub candidate: Candidate,
    /// What the hit is ranked by: the fused score (hybrid) or the one signal's score.
    pub score: f32,
    /// The document's score, which orders documents.
    pub document_score: f32,
}

/// Merges the vector store's hits (`{id, score, payload}`, best first) of the two signals into
/// candidates, each chunk once.
pub fn candidates(semantic: &[Value], keyword: &[Value]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (is_semantic, hits) in [(true, semantic), (false, keyword)] {
        for (i, hit) in hits.iter().enumerate() {
            let payload = &hit["payload"];
            let chunk = payload["chunk_id"]
                .as_str()
                .map_or_else(|| hit["id"].to_string(), str::to_string);
            let signal = Signal {
                score: hit["score"].as_f64().unwrap_or(0.0) as f32,
                rank: i as u32 + 1,
            };
            let at = *index.entry(chunk.clone()).or_insert_with(|| {
                out.push(Candidate {
                    point: hit["id"].clone(),
                    chunk,
                    document: payload["document"].as_str().unwrap_or_default().to_string(),
                    sha256: payload["sha256"].as_str().unwrap_or_default().to_string(),
                    text: payload["text"].as_str().unwrap_or_default().to_string(),
                    payload: payload.clone(),
                    semantic: None,
                    keyword: None,
                    rerank: None,
                });
                out.len() - 1
            });
            if is_semantic {
                out[at].semantic = Some(signal);
            } else {
                out[at].keyword = Some(signal);
            }
        }
    }
    out
}

/// Min-max bounds of one signal's scores over the candidates.
fn bounds(scores: impl Iterator<Item = f32>) -> (f32, f32) {
    scores.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
        (lo.min(s), hi.max(s))
    })
}

fn normalise(score: f32, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        (score - lo) / (hi - lo)
    } else {
        1.0
    }
}

/// A document's best chunk score on the semantic and the keyword signal.
type BestChunks = (Option<f32>, Option<f32>);

/// Ranks candidates for `mode`: documents by their fused best-chunk scores, each document's chunks
/// by their own. Returns every candidate, best first.
pub fn rank(candidates: Vec<Candidate>, mode: Mode, fusion: &Fusion) -> Vec<Ranked> {
    let w = fusion.semantic_weight;
    let sem_bounds = bounds(
        candidates
            .iter()
            .filter_map(|c| c.semantic.map(|s| s.score)),
    );
    let kw_bounds = bounds(candidates.iter().filter_map(|c| c.keyword.map(|s| s.score)));
    // Each chunk's score on each signal, as the fusion sees it (normalised for convex).
    let chunk_scores = |c: &Candidate| -> (Option<f32>, Option<f32>) {
        match (mode, fusion.method) {
            (Mode::Hybrid, FusionMethod::Convex) => (
                c.semantic.map(|s| normalise(s.score, sem_bounds)),
                c.keyword.map(|s| normalise(s.score, kw_bounds)),
            ),
            _ => (c.semantic.map(|s| s.score), c.keyword.map(|s| s.score)),
        }
    };
    // Per document: its best chunk on each signal.
    let mut best: HashMap<&str, BestChunks> = HashMap::new();
    for c in &candidates {
        let (s, k) = chunk_scores(c);
        let entry = best.entry(c.document.as_str()).or_default();
        entry.0 = max_option(entry.0, s);
        entry.1 = max_option(entry.1, k);
    }
    // RRF ranks documents within each signal by their best chunk.
    let rrf_rank = |pick: fn(&BestChunks) -> Option<f32>| {
        let mut scored: Vec<(&str, f32)> = best
            .iter()
            .filter_map(|(d, s)| pick(s).map(|v| (*d, v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        scored
            .into_iter()
            .enumerate()
            .map(|(i, (d, _))| (d.to_string(), i as f32 + 1.0))
            .collect::<HashMap<String, f32>>()
    };
    let (sem_ranks, kw_ranks) = if mode == Mode::Hybrid && fusion.method == FusionMethod::Rrf {
        (rrf_rank(|s| s.0), rrf_rank(|s| s.1))
    } else {
        (HashMap::new(), HashMap::new())
    };
    let combine = |semantic: Option<f32>, keyword: Option<f32>| -> f32 {
        match mode {
            Mode::Semantic => semantic.unwrap_or(f32::NEG_INFINITY),
            Mode::Keyword => keyword.unwrap_or(f32::NEG_INFINITY),
            Mode::Hybrid => w * semantic.unwrap_or(0.0) + (1.0 - w) * keyword.unwrap_or(0.0),
        }
    };
    let document_score = |document: &str| -> f32 {
        if mode == Mode::Hybrid && fusion.method == FusionMethod::Rrf {
            let part = |ranks: &HashMap<String, f32>, weight: f32| {
                ranks
                    .get(document)
                    .map_or(0.0, |r| weight / (fusion.rrf_k + r))
            };
            part(&sem_ranks, w) + part(&kw_ranks, 1.0 - w)
        } else {
            let (s, k) = best.get(document).copied().unwrap_or_default();
            combine(s, k)
        }
    };
    let mut ranked: Vec<Ranked> = candidates
        .iter()
        .map(|c| {
            let (s, k) = chunk_scores(c);
            let own = combine(s, k);
            let document_score = document_score(&c.document);
            let score = if mode == Mode::Hybrid && fusion.method == FusionMethod::Rrf {
                document_score
            } else {
                own
            };
            Ranked {
                candidate: c.clone(),
                score,
                document_score,
            }
        })
        .filter(|r| r.score.is_finite())
        .collect();
    ranked.sort_by(|a, b| {
        b.document_score
            .total_cmp(&a.document_score)
            .then_with(|| a.candidate.document.cmp(&b.candidate.document))
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| chunk_order(&a.candidate).cmp(&chunk_order(&b.candidate)))
    });
    ranked
}

fn chunk_order(c: &Candidate) -> u64 {
    c.payload["ordinal"].as_u64().unwrap_or(0)
}

fn max_option(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The documents of a ranking in order, each once: how an evaluation by document sees the hits.
pub fn documents(ranked: &[Ranked]) -> Vec<String> {
    let mut seen = HashSet::new();
    ranked
        .iter()
        .filter(|r| seen.insert(r.candidate.document.as_str()))
        .map(|r| r.candidate.document.clone())
        .collect()
}

/// Word 3-shingles of a text, for spotting near-identical chunks.
fn shingles(text: &str) -> HashSet<u64> {
    let words: Vec<String> = crate::ingest::sparse::terms(text);
    let hash = |parts: &[String]| {
        parts.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, w| {
            w.bytes()
                .chain(std::iter::once(0))
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        })
    };
    if words.len() < 3 {
        return std::iter::once(hash(&words)).collect();
    }
    words.windows(3).map(hash).collect()
}

/// Two chunks are near-identical when they share this share of their shingles (Jaccard).
pub const NEAR_DUPLICATE: f64 = 0.9;

/// The page: the best `top_k` hits at or above `threshold`, near-identical chunks dropped (the better
/// one kept) and at most `per_document` chunks of one document (0 = no limit).
pub fn page(
    ranked: Vec<Ranked>,
    top_k: usize,
    threshold: Option<f32>,
    per_document: u32,
) -> Vec<Ranked> {
    let mut kept: Vec<Ranked> = Vec::with_capacity(top_k);
    let mut kept_shingles: Vec<HashSet<u64>> = Vec::new();
    let mut hashes: HashSet<String> = HashSet::new();
    let mut per_doc: HashMap<String, u32> = HashMap::new();
    for hit in ranked {
        if kept.len() == top_k {
            break;
        }
        if threshold.is_some_and(|t| hit.score < t) {
            continue;
        }
        let count = per_doc.get(&hit.candidate.document).copied().unwrap_or(0);
        if per_document > 0 && count >= per_document {
            continue;
        }
        if !hit.candidate.sha256.is_empty() && hashes.contains(&hit.candidate.sha256) {
            continue;
        }
        let own = shingles(&hit.candidate.text);
        let near = kept_shingles.iter().any(|other| {
            let shared = own.intersection(other).count() as f64;
            let union = (own.len() + other.len()) as f64 - shared;
            union > 0.0 && shared / union >= NEAR_DUPLICATE
        });
        if near {
            continue;
        }
        hashes.insert(hit.candidate.sha256.clone());
        per_doc.insert(hit.candidate.document.clone(), count + 1);
        kept_shingles.push(own);
        kept.push(hit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hit(chunk: &str, document: &str, score: f32, text: &str) -> Value {
        json!({"id": chunk, "score": score, "payload": {
            "chunk_id": chunk, "document": document, "sha256": format!("h-{chunk}"), "text": text,
        }})
    }

    fn order(ranked: &[Ranked]) -> Vec<&str> {
        ranked.iter().map(|r| r.candidate.chunk.as_str()).collect()
    }

    #[test]
    fn candidates_merge_both_lists_with_their_own_ranks() {
        let sem = [hit("a1", "a", 0.9, "x"), hit("b1", "b", 0.8, "y")];
        let kw = [hit("b1", "b", 7.0, "y"), hit("c1", "c", 3.0, "z")];
        let c = candidates(&sem, &kw);
        assert_eq!(c.len(), 3);
        let b = c.iter().find(|c| c.chunk == "b1").unwrap();
        assert_eq!(
            b.semantic,
            Some(Signal {
                score: 0.8,
                rank: 2
            })
        );
        assert_eq!(
            b.keyword,
            Some(Signal {
                score: 7.0,
                rank: 1
            })
        );
    }

    #[test]
    fn single_signal_modes_rank_by_their_own_scores() {
        let sem = [hit("a1", "a", 0.9, "x"), hit("b1", "b", 0.8, "y")];
        let kw = [hit("b1", "b", 7.0, "y"), hit("c1", "c", 3.0, "z")];
        let fusion = Fusion::default();
        let semantic = rank(candidates(&sem, &kw), Mode::Semantic, &fusion);
        assert_eq!(order(&semantic), ["a1", "b1"]);
        let keyword = rank(candidates(&sem, &kw), Mode::Keyword, &fusion);
        assert_eq!(order(&keyword), ["b1", "c1"]);
        assert_eq!(keyword[0].score, 7.0);
    }

    #[test]
    fn convex_fusion_credits_a_document_with_its_best_chunk_on_each_signal() {
        // Document d matches by meaning in one chunk and by words in another; e matches only by
        // meaning, a little better than d. Fused by document, d wins.
        let sem = [
            hit("e1", "e", 0.90, "e one"),
            hit("d1", "d", 0.85, "d one"),
            hit("f1", "f", 0.10, "f one"),
        ];
        let kw = [hit("d2", "d", 9.0, "d two"), hit("f1", "f", 1.0, "f one")];
        let fusion = Fusion {
            semantic_weight: 0.5,
            ..Fusion::default()
        };
        let ranked = rank(candidates(&sem, &kw), Mode::Hybrid, &fusion);
        assert_eq!(documents(&ranked), ["d", "e", "f"]);
        // The document's score is semantic 0.94 (normalised 0.85) plus keyword 1.0, halved.
        let d = ranked.iter().find(|r| r.candidate.chunk == "d1").unwrap();
        assert!((d.document_score - (0.5 * (0.75 / 0.8) + 0.5)).abs() < 1e-5);
    }

    #[test]
    fn rrf_adds_weighted_reciprocal_document_ranks() {
        let sem = [hit("a1", "a", 0.9, "a"), hit("b1", "b", 0.8, "b")];
        let kw = [
            hit("b1", "b", 5.0, "b"),
            hit("a1", "a", 1.0, "a"),
            hit("c1", "c", 0.5, "c"),
        ];
        let fusion = Fusion {
            method: FusionMethod::Rrf,
            rrf_k: 60.0,
            semantic_weight: 0.5,
            candidates: 100,
        };
        let ranked = rank(candidates(&sem, &kw), Mode::Hybrid, &fusion);
        let score = |d: &str| {
            ranked
                .iter()
                .find(|r| r.candidate.document == d)
                .unwrap()
                .score
        };
        assert!((score("a") - (0.5 / 61.0 + 0.5 / 62.0)).abs() < 1e-7);
        assert!((score("c") - 0.5 / 63.0).abs() < 1e-7);
        assert_eq!(documents(&ranked)[2], "c");
    }

    #[test]
    fn the_page_keeps_the_threshold_drops_near_duplicates_and_groups_documents() {
        let text = "the refund policy allows returns within thirty days of purchase";
        let sem = [
            hit("a1", "a", 0.9, text),
            hit("a2", "a", 0.85, "shipping takes five days"),
            hit("a3", "a", 0.84, "gift cards are not refundable"),
            hit("a4", "a", 0.83, "contact support by email"),
            hit("b1", "b", 0.8, &format!("{text}.")),
            hit("c1", "c", 0.7, "warranty covers two years"),
            hit("d1", "d", 0.1, "unrelated"),
        ];
        let ranked = rank(candidates(&sem, &[]), Mode::Semantic, &Fusion::default());
        let page_of = |per_document, threshold| {
            page(ranked.clone(), 10, threshold, per_document)
                .iter()
                .map(|r| r.candidate.chunk.clone())
                .collect::<Vec<_>>()
        };
        // b1 is a1 with a full stop: dropped. At most 3 of a's chunks; d1 under the threshold.
        assert_eq!(page_of(3, Some(0.5)), ["a1", "a2", "a3", "c1"]);
        assert_eq!(page_of(0, Some(0.5)), ["a1", "a2", "a3", "a4", "c1"]);
        assert_eq!(page_of(1, None), ["a1", "c1", "d1"]);
        assert_eq!(page(ranked, 2, None, 0).len(), 2);
    }

    #[test]
    fn project_overrides_are_checked() {
        assert!(Fusion::default().check().is_ok());
        assert!(
            Fusion {
                semantic_weight: 1.5,
                ..Fusion::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Fusion {
                candidates: 5,
                ..Fusion::default()
            }
            .check()
            .is_err()
        );
        let parsed: Fusion = serde_json::from_value(json!({"method": "rrf", "rrf_k": 20})).unwrap();
        assert_eq!(
            (parsed.method, parsed.rrf_k, parsed.semantic_weight),
            (FusionMethod::Rrf, 20.0, 0.5)
        );
        assert!(serde_json::from_value::<Fusion>(json!({"weight": 1})).is_err());
    }
}
