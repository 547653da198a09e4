//! Keyword (BM25) weights on SciFact, in memory: SciFact's abstracts cut as ingest cuts them, each
//! chunk's sparse vector made with shared's analysis under a grid of BM25 parameters, scored as the
//! vector store scores (dot product with Qdrant's idf) and ranked by the product's own ranking code
//! (documents by their best chunk), nDCG@10 and Recall@100 with shared's metrics. With the weights
//! ingest uses it reproduces the keyword numbers of `scripts/eval-scifact` (the real pipeline)
//! exactly, so a grid costs a minute rather than a re-ingest per point. Whole abstracts as single units
//! are scored too, for comparison. Prints each variant, then two-fold cross-validation (chosen on the
//! even-numbered queries and scored on the odd ones, and the other way round).
//!
//! Usage: target/release/keyword-variants

#![forbid(unsafe_code)]

use shared::ingest::sparse::{BM25, Bm25};
use shared::search::metrics::{self, Judgements};
use shared::search::{Fusion, Mode};
use tests::scifact::{self, Lists, Unit};

fn main() -> anyhow::Result<()> {
    let (queries, qrels) = scifact::queries()?;
    let judged: Vec<&Judgements> = queries.iter().map(|(id, _)| &qrels[id]).collect();
    println!("SciFact, {} queries; ingest uses {BM25:?}", queries.len());
    let mut rows = Vec::new();
    for unit in [Unit::Chunk, Unit::Abstract] {
        let units = scifact::units(unit)?;
        let average = units.iter().map(|u| u.3.len() as f32).sum::<f32>() / units.len() as f32;
        println!(
            "{unit:?}: {} units, {average:.1} terms on average",
            units.len()
        );
        for k1 in [0.9f32, 1.2, 1.5, 2.0] {
            for b in [0.4f32, 0.6, 0.75, 0.9] {
                for average_terms in [BM25.average_terms, average.round()] {
                    let bm25 = Bm25 {
                        k1,
                        b,
                        average_terms,
                    };
                    let lists: Vec<Lists> = scifact::keyword_lists(&units, &bm25, &queries, 200)
                        .into_iter()
                        .map(|keyword| Lists {
                            semantic: Vec::new(),
                            keyword,
                        })
                        .collect();
                    let scores =
                        scifact::scores(&lists, &judged, Mode::Keyword, &Fusion::default());
                    let half = |parity: usize| scifact::half_ndcg(&scores, parity);
                    let all = metrics::mean(&scores);
                    println!(
                        "{unit:?} k1 {k1:<4} b {b:<4} average {average_terms:<5}: nDCG@10 {:.4}  Recall@100 {:.4}  (even {:.4}, odd {:.4})",
                        all.ndcg,
                        all.recall_100,
                        half(0),
                        half(1)
                    );
                    rows.push((unit, bm25, half(0), half(1)));
                }
            }
        }
    }
    for unit in [Unit::Chunk, Unit::Abstract] {
        let of_unit: Vec<_> = rows.iter().filter(|r| r.0 == unit).collect();
        let best_on = |parity: usize| {
            of_unit
                .iter()
                .max_by(|a, b| {
                    let (x, y) = if parity == 0 { (a.2, b.2) } else { (a.3, b.3) };
                    x.total_cmp(&y)
                })
                .copied()
        };
        if let (Some(even), Some(odd)) = (best_on(0), best_on(1)) {
            println!(
                "{unit:?}: two-fold cross-validated nDCG@10 {:.4} ({:?} chosen on the even queries scores {:.4} on the odd; {:?} chosen on the odd scores {:.4} on the even)",
                (even.3 + odd.2) / 2.0,
                even.1,
                even.3,
                odd.1,
                odd.2
            );
        }
    }
    Ok(())
}
