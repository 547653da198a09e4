//! Retrieval metrics as trec_eval (and so pytrec_eval and BEIR) defines them: nDCG@k with the grade as
//! the gain and a log2(rank + 1) discount, Recall@k over the documents graded 1 or more, and the
//! reciprocal rank of the first relevant document anywhere in the ranking.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// One query's judgements: document id to grade (0 = judged not relevant).
pub type Judgements = BTreeMap<String, i64>;

/// nDCG@k of `ranking` (document ids, best first; repeats count once, at their best rank).
pub fn ndcg(ranking: &[String], judged: &Judgements, k: usize) -> f64 {
    let gain = |grade: i64| if grade > 0 { grade as f64 } else { 0.0 };
    let discount = |position: usize| 1.0 / ((position + 2) as f64).log2();
    let dcg: f64 = distinct(ranking)
        .take(k)
        .enumerate()
        .map(|(i, doc)| gain(judged.get(doc).copied().unwrap_or(0)) * discount(i))
        .sum();
    let mut grades: Vec<i64> = judged.values().copied().filter(|g| *g > 0).collect();
    grades.sort_unstable_by(|a, b| b.cmp(a));
    let ideal: f64 = grades
        .into_iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| gain(g) * discount(i))
        .sum();
    if ideal > 0.0 { dcg / ideal } else { 0.0 }
}

/// Recall@k: the share of relevant documents (grade >= 1) found in the first `k`.
pub fn recall(ranking: &[String], judged: &Judgements, k: usize) -> f64 {
    let relevant = judged.values().filter(|g| **g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = distinct(ranking)
        .take(k)
        .filter(|doc| judged.get(*doc).is_some_and(|g| *g > 0))
        .count();
    found as f64 / relevant as f64
}

/// The reciprocal rank of the first relevant document, 0 when none is ranked.
pub fn reciprocal_rank(ranking: &[String], judged: &Judgements) -> f64 {
    distinct(ranking)
        .position(|doc| judged.get(doc).is_some_and(|g| *g > 0))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

fn distinct(ranking: &[String]) -> impl Iterator<Item = &String> {
    let mut seen = HashSet::new();
    ranking.iter().filter(move |doc| seen.insert(doc.as_str()))
}

/// A mode's metrics, averaged over the judged queries (a query with no ranking counts as 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    pub ndcg: f64,
    pub recall: f64,
    /// Recall at 100 (or at `k` when `k` is larger): how much a reranker or a larger top_k could find.
    pub recall_100: f64,
    pub mrr: f64,
    pub queries: usize,
}

/// One query's metrics at `k`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryScores {
    pub ndcg: f64,
    pub recall: f64,
    pub recall_100: f64,
    pub rr: f64,
}

/// Scores one query's ranking.
pub fn score_query(ranking: &[String], judged: &Judgements, k: usize) -> QueryScores {
    QueryScores {
        ndcg: ndcg(ranking, judged, k),
        recall: recall(ranking, judged, k),
        recall_100: recall(ranking, judged, k.max(100)),
        rr: reciprocal_rank(ranking, judged),
    }
}

/// The mean of per-query scores.
pub fn mean(scores: &[QueryScores]) -> Scores {
    let mut totals = Totals::default();
    for s in scores {
        totals.add(s);
    }
    totals.mean()
}

/// Running sums of per-query scores, kept between the steps of an evaluation job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub ndcg: f64,
    pub recall: f64,
    pub recall_100: f64,
    pub rr: f64,
    pub queries: usize,
}

impl Totals {
    pub fn add(&mut self, scores: &QueryScores) {
        self.ndcg += scores.ndcg;
        self.recall += scores.recall;
        self.recall_100 += scores.recall_100;
        self.rr += scores.rr;
        self.queries += 1;
    }

    /// The means so far, as [`mean`] gives them for the same queries.
    pub fn mean(&self) -> Scores {
        let n = self.queries.max(1) as f64;
        Scores {
            ndcg: self.ndcg / n,
            recall: self.recall / n,
            recall_100: self.recall_100 / n,
            mrr: self.rr / n,
            queries: self.queries,
        }
    }
}

/// Averages the metrics at `k` over every query in `qrels`; `rankings` maps a query id to its
/// document ranking.
pub fn evaluate(
    rankings: &BTreeMap<String, Vec<String>>,
    qrels: &BTreeMap<String, Judgements>,
    k: usize,
) -> Scores {
    let empty = Vec::new();
    let per_query: Vec<QueryScores> = qrels
        .iter()
        .map(|(query, judged)| score_query(rankings.get(query).unwrap_or(&empty), judged, k))
        .collect();
    mean(&per_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i64)]) -> Judgements {
        pairs.iter().map(|(d, g)| ((*d).to_string(), *g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|d| (*d).to_string()).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// The expected values were computed by pytrec_eval (pytrec-eval-terrier 0.5, trec_eval's code)
    /// on the same qrels and runs (scores 100, 99, ... in ranking order) with the measures
    /// `ndcg_cut.3`, `ndcg_cut.10`, `recall.3`, `recall.10` and `recip_rank`.
    #[test]
    fn metrics_match_trec_eval_on_a_fixture() {
        let q1 = judged(&[("d1", 2), ("d3", 1), ("d7", 1)]);
        let r1 = ranking(&[
            "d3", "d2", "d1", "d4", "d5", "d6", "d8", "d9", "d10", "d11", "d7",
        ]);
        close(ndcg(&r1, &q1, 3), 0.638_787_886_479_597_9);
        close(ndcg(&r1, &q1, 10), 0.638_787_886_479_597_9);
        close(recall(&r1, &q1, 3), 2.0 / 3.0);
        close(recall(&r1, &q1, 10), 2.0 / 3.0);
        close(reciprocal_rank(&r1, &q1), 1.0);

        let q2 = judged(&[("d2", 1)]);
        let r2 = ranking(&["d4", "d5", "d6"]);
        close(ndcg(&r2, &q2, 10), 0.0);
        close(recall(&r2, &q2, 10), 0.0);
        close(reciprocal_rank(&r2, &q2), 0.0);

        let q3 = judged(&[("d5", 1), ("d6", 2), ("d9", 0)]);
        let r3 = ranking(&["d9", "d6", "d1", "d5"]);
        close(ndcg(&r3, &q3, 3), 0.479_624_933_136_262_9);
        close(ndcg(&r3, &q3, 10), 0.643_322_408_330_632_7);
        close(recall(&r3, &q3, 3), 0.5);
        close(recall(&r3, &q3, 10), 1.0);
        close(reciprocal_rank(&r3, &q3), 0.5);

        let qrels: BTreeMap<String, Judgements> = [("q1", q1), ("q2", q2), ("q3", q3)]
            .into_iter()
            .map(|(q, j)| (q.to_string(), j))
            .collect();
        let rankings: BTreeMap<String, Vec<String>> = [("q1", r1), ("q2", r2), ("q3", r3)]
            .into_iter()
            .map(|(q, r)| (q.to_string(), r))
            .collect();
        let scores = evaluate(&rankings, &qrels, 10);
        close(
            scores.ndcg,
            (0.638_787_886_479_597_9 + 0.643_322_408_330_632_7) / 3.0,
        );
        close(scores.mrr, 0.5);
        assert_eq!(scores.queries, 3);
    }

    #[test]
    fn a_repeated_document_counts_once_and_an_unranked_query_counts_zero() {
        let q = judged(&[("a", 1), ("b", 1)]);
        close(recall(&ranking(&["a", "a", "b"]), &q, 2), 1.0);
        let qrels: BTreeMap<String, Judgements> = [("q".to_string(), q)].into_iter().collect();
        let scores = evaluate(&BTreeMap::new(), &qrels, 10);
        close(scores.ndcg, 0.0);
        assert_eq!(scores.queries, 1);
    }

    #[test]
    fn totals_kept_over_steps_give_the_same_means() {
        let q = judged(&[("d1", 2), ("d3", 1)]);
        let scores: Vec<QueryScores> = [
            ranking(&["d1", "d2"]),
            ranking(&["d2", "d3", "d1"]),
            ranking(&[]),
            ranking(&["d3"]),
        ]
        .iter()
        .map(|r| score_query(r, &q, 2))
        .collect();
        // Two steps, the running sums carried between them as JSON.
        let mut totals = Totals::default();
        for s in &scores[..2] {
            totals.add(s);
        }
        let mut totals: Totals =
            serde_json::from_value(serde_json::to_value(totals).unwrap()).unwrap();
        for s in &scores[2..] {
            totals.add(s);
        }
        let (stepped, whole) = (totals.mean(), mean(&scores));
        assert_eq!(stepped.queries, 4);
        for (a, b) in [
            (stepped.ndcg, whole.ndcg),
            (stepped.recall, whole.recall),
            (stepped.recall_100, whole.recall_100),
            (stepped.mrr, whole.mrr),
        ] {
            close(a, b);
        }
        assert!(whole.ndcg > 0.0 && whole.ndcg < 1.0);
    }
}
