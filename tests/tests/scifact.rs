//! The search quality gate: SciFact's 5,183 abstracts through `edgerag ingest` into a fresh project on
//! the real host (embedded stores, embedded all-MiniLM-L6-v2), its 300 test queries through the
//! evaluation endpoint, and nDCG@10 of each mode held above floors a little under the reference
//! pipeline's numbers on this copy (BM25 0.686, MiniLM 0.645) and under edgerag's measured hybrid, so
//! that retrieval quality cannot regress unnoticed. Takes about 20 minutes on two cores, nearly all
//! of it embedding the corpus.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::accounts::{OPERATOR, Owner};
use tests::{Options, start, workspace_root};

const FLOORS: &[(&str, f64)] = &[("keyword", 0.66), ("semantic", 0.63), ("hybrid", 0.70)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scifact_ndcg_at_10_stays_above_the_floors() {
    if tests::reference_data("scifact", "the SciFact quality gate").is_none() {
        return;
    }
    let options = Options {
        env: BTreeMap::from([(
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        )]),
        request_timeout: Duration::from_secs(600),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options)
        .await
        .unwrap();
    let addr = host.addr;
    let owner = Owner::new(addr, "scifact@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let summary = tests::scifact::ingest(addr, &owner.project, &key)
        .await
        .unwrap();
    assert!(summary.failed.is_empty(), "{summary:?}");
    let evaluation = tests::scifact::evaluate(addr, &owner.project, &key)
        .await
        .unwrap();
    let mut failures = Vec::new();
    for (mode, floor) in FLOORS {
        let scores = &evaluation["results"][mode];
        let ndcg = scores["ndcg"].as_f64().unwrap();
        println!(
            "{mode}: nDCG@10 {ndcg:.4}, Recall@100 {:.4} (floor {floor})",
            scores["recall_100"]
        );
        assert_eq!(scores["queries"], 300, "{evaluation}");
        if ndcg < *floor {
            failures.push(format!("{mode} nDCG@10 {ndcg:.4} < {floor}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}: {evaluation}");
    host.stop().await;
}
