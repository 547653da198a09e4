//! Reranking: the fused best candidates scored again by a cross-encoder over the common `/rerank`
//! protocol (`{model, query, documents, top_n}` -> `{results: [{index, relevance_score}]}`, served by
//! Text Embeddings Inference, vLLM, Infinity, Jina and Cohere), which reads query and passage together
//! and so judges relevance better than either first-stage signal.

use serde_json::{Value, json};

use super::rank::{Ranked, Signal};

/// How many of the fused best candidates are reranked unless configured otherwise.
pub const DEFAULT_CANDIDATES: usize = 50;

/// The body of a rerank request for `documents` (passage texts, best fused first).
pub fn request(model: &str, query: &str, documents: &[&str]) -> Value {
    let mut body = json!({
        "query": query,
        "documents": documents,
        "top_n": documents.len(),
        "return_documents": false,
    });
    if !model.is_empty() {
        body["model"] = json!(model);
    }
    body
}

/// Each document's relevance from a rerank reply, by the request's order (`None` for a document
/// the reply left out). Also reads Text Embeddings Inference's own shape, `[{index, score}]`.
pub fn scores(reply: &Value, documents: usize) -> Result<Vec<Option<f32>>, String> {
    let results = reply
        .get("results")
        .and_then(Value::as_array)
        .or_else(|| reply.as_array())
        .ok_or("the reranker's reply has no `results` list")?;
    let mut scores = vec![None; documents];
    for result in results {
        let index = result["index"]
            .as_u64()
            .ok_or("a reranker result has no `index`")? as usize;
        let score = result["relevance_score"]
            .as_f64()
            .or_else(|| result["score"].as_f64())
            .filter(|s| s.is_finite())
            .ok_or("a reranker result has no `relevance_score`")?;
        let slot = scores
            .get_mut(index)
            .ok_or_else(|| format!("the reranker named document {index} of {documents}"))?;
        *slot = Some(score as f32);
    }
    Ok(scores)
}

/// Reorders the first `scores.len()` of `ranked` by their relevance (documents by their best chunk's,
/// as fusion orders them); those the reranker left unscored follow in fused order, then the rest.
/// Each reranked hit's score becomes its relevance, and its `rerank` signal says so.
pub fn apply(ranked: Vec<Ranked>, scores: &[Option<f32>]) -> Vec<Ranked> {
    let n = scores.len().min(ranked.len());
    let mut ranked = ranked;
    let rest = ranked.split_off(n);
    let (mut scored, unscored): (Vec<(Ranked, f32)>, Vec<Ranked>) = {
        let mut scored = Vec::new();
        let mut unscored = Vec::new();
        for (hit, score) in ranked.into_iter().zip(scores) {
            match score {
                Some(s) => scored.push((hit, *s)),
                None => unscored.push(hit),
            }
        }
        (scored, unscored)
    };
    // Rank by relevance first, to give each its rerank rank.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut best: std::collections::HashMap<String, f32> = std::collections::HashMap::new();
    for (i, (hit, score)) in scored.iter_mut().enumerate() {
        hit.candidate.rerank = Some(Signal {
            score: *score,
            rank: i as u32 + 1,
        });
        hit.score = *score;
        let entry = best
            .entry(hit.candidate.document.clone())
            .or_insert(f32::NEG_INFINITY);
        *entry = entry.max(*score);
    }
    let mut out: Vec<Ranked> = scored
        .into_iter()
        .map(|(mut hit, _)| {
            hit.document_score = best[&hit.candidate.document];
            hit
        })
        .collect();
    out.sort_by(|a, b| {
        b.document_score
            .total_cmp(&a.document_score)
            .then_with(|| a.candidate.document.cmp(&b.candidate.document))
            .then_with(|| b.score.total_cmp(&a.score))
    });
    out.extend(unscored);
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::rank::Candidate;

    fn ranked(chunk: &str, document: &str, score: f32) -> Ranked {
        Ranked {
            candidate: Candidate {
                point: json!(chunk),
                chunk: chunk.into(),
                document: document.into(),
                sha256: String::new(),
                text: chunk.into(),
                payload: Value::Null,
                semantic: None,
                keyword: None,
                rerank: None,
            },
            score,
            document_score: score,
        }
    }

    fn order(hits: &[Ranked]) -> Vec<&str> {
        hits.iter().map(|h| h.candidate.chunk.as_str()).collect()
    }

    #[test]
    fn relevance_reorders_the_reranked_head_and_keeps_the_tail() {
        let hits = vec![
            ranked("a1", "a", 0.9),
            ranked("b1", "b", 0.8),
            ranked("a2", "a", 0.7),
            ranked("c1", "c", 0.6),
            ranked("d1", "d", 0.5),
        ];
        // The first four reranked: b1 best, then c1; a1 unscored; d1 beyond the head.
        let out = apply(hits, &[None, Some(0.95), Some(0.1), Some(0.5)]);
        assert_eq!(order(&out), ["b1", "c1", "a2", "a1", "d1"]);
        assert_eq!(out[0].candidate.rerank.unwrap().rank, 1);
        assert_eq!(out[0].score, 0.95);
        assert!(out[3].candidate.rerank.is_none());
    }

    #[test]
    fn a_documents_chunks_stay_together_by_its_best() {
        let hits = vec![
            ranked("a1", "a", 0.9),
            ranked("b1", "b", 0.8),
            ranked("a2", "a", 0.7),
        ];
        let out = apply(hits, &[Some(0.2), Some(0.5), Some(0.6)]);
        // a's best (0.6) beats b's (0.5): a2 then a1, then b1.
        assert_eq!(order(&out), ["a2", "a1", "b1"]);
    }

    #[test]
    fn replies_in_both_shapes_are_read_and_bad_ones_refused() {
        let cohere = json!({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]});
        assert_eq!(
            scores(&cohere, 3).unwrap(),
            vec![Some(0.1), Some(0.9), None]
        );
        let tei = json!([{"index": 0, "score": 0.3}]);
        assert_eq!(scores(&tei, 1).unwrap(), vec![Some(0.3)]);
        assert!(
            scores(
                &json!({"results": [{"index": 5, "relevance_score": 1.0}]}),
                2
            )
            .is_err()
        );
        assert!(scores(&json!({"error": "x"}), 2).is_err());
        assert!(scores(&json!({"results": [{"index": 0}]}), 2).is_err());
        let body = request("bge-reranker", "q", &["x", "y"]);
        assert_eq!(body["top_n"], 2);
        assert_eq!(body["model"], "bge-reranker");
        assert!(request("", "q", &["x"]).get("model").is_none());
    }
}
