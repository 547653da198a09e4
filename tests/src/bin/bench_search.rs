//! Benchmarks search (`scripts/bench-search`): end-to-end latency over HTTP with an API key, hybrid,
//! top 10, SciFact's 300 test queries (embedded for real each time) against the project
//! `scripts/eval-scifact` left in its data directory, at concurrency 1 and 8. Prints p50 and p99 of the
//! whole request as the client saw it and of each `Server-Timing` part (auth, embed, store, total).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tests::accounts::OPERATOR;
use tests::{Options, start, workspace_root};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `auth;dur=1.2, embed;dur=3.4, ...` as name to milliseconds.
fn server_timing(header: &str) -> BTreeMap<String, f64> {
    header
        .split(',')
        .filter_map(|part| {
            let (name, dur) = part.trim().split_once(";dur=")?;
            Some((name.to_string(), dur.parse().ok()?))
        })
        .collect()
}

async fn run() -> anyhow::Result<()> {
    let data_dir = std::env::args().nth(1).map_or_else(
        || workspace_root().join("target/eval-scifact"),
        PathBuf::from,
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("eval-scifact.json")).context(
            "run scripts/eval-scifact first: it leaves the SciFact project this measures",
        )?,
    )?;
    let project = state["project"].as_str().unwrap_or_default().to_string();
    let key = state["key"].as_str().unwrap_or_default().to_string();
    let options = Options {
        env: BTreeMap::from([(
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        )]),
        data_dir: Some(data_dir.clone()),
        request_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options).await?;
    let addr = host.addr;
    let (queries, _) = tests::scifact::queries()?;
    let queries: Arc<Vec<String>> = Arc::new(queries.into_iter().map(|(_, t)| t).collect());
    let path = Arc::new(format!("/v1/projects/{project}/search"));
    let key = Arc::new(key);
    // Warm-up: every query once (first instantiations, the store's pages in memory).
    for q in queries.iter().take(50) {
        let body = json!({"query": q, "mode": "hybrid", "top_k": 10});
        tests::accounts::call(addr, "POST", &path, Some(&key), Some(body)).await;
    }
    println!(
        "SciFact project {project}: {} queries per run, hybrid, top 10, API key over HTTP",
        queries.len()
    );
    for concurrency in [1usize, 8] {
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..concurrency {
            let (queries, path, key) = (queries.clone(), path.clone(), key.clone());
            workers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                for q in queries.iter().skip(w).step_by(concurrency) {
                    let body = json!({"query": q, "mode": "hybrid", "top_k": 10});
                    let t = Instant::now();
                    let reply =
                        tests::accounts::call(addr, "POST", &path, Some(&key), Some(body)).await;
                    let client_ms = t.elapsed().as_secs_f64() * 1000.0;
                    if reply.status != 200 {
                        // Counted and reported, not timed: a failed search is not a fast one.
                        samples.push((f64::NAN, BTreeMap::new()));
                        continue;
                    }
                    let timing = reply
                        .headers
                        .get("server-timing")
                        .and_then(|v| v.to_str().ok())
                        .map(server_timing)
                        .unwrap_or_default();
                    samples.push((client_ms, timing));
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for worker in workers {
            samples.extend(worker.await?);
        }
        let failed = samples.iter().filter(|s| s.0.is_nan()).count();
        samples.retain(|s| !s.0.is_nan());
        let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
        let mut client: Vec<f64> = samples.iter().map(|s| s.0).collect();
        client.sort_by(f64::total_cmp);
        print!(
            "concurrency {concurrency}: {rate:.1} searches/s, {failed} failed; client p50 {:.1} ms p99 {:.1} ms",
            percentile(&client, 0.5),
            percentile(&client, 0.99)
        );
        for part in ["auth", "embed", "store", "total"] {
            let mut values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.1.get(part).copied())
                .collect();
            values.sort_by(f64::total_cmp);
            print!(
                "; {part} p50 {:.1} p99 {:.1}",
                percentile(&values, 0.5),
                percentile(&values, 0.99)
            );
        }
        println!();
    }
    host.stop().await;
    Ok(())
}
