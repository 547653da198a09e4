//! Benchmarks search (`scripts/bench-search`): end-to-end latency over HTTP with an API key, hybrid,
//! top 10, SciFact's 300 test queries (embedded for real each time), at concurrency 1 and 8. Prints p50
//! and p99 of the whole request as the client saw it and of each `Server-Timing` part (auth, embed,
//! store, total).
//!
//! Two data sets: the project `scripts/eval-scifact` left in its data directory (SciFact's 12,820 real
//! chunks), or `--chunks N`: a fresh project holding N chunks. Beyond a small real upload (which makes
//! the collection as ingest does), those are written straight through the vector store's Qdrant API in
//! ingest's schema: SciFact's chunk texts over and over (so the keyword postings have a real shape),
//! each with its real sparse vector and a synthetic dense vector, clustered as bench-vectors makes them
//! (embedding N chunks would take hours here). With `--chunks`, Chroma answers the same text queries
//! over the same vectors with the same project filter in the same run
//! (tests/python/bench_search_chroma.py).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use shared::ingest::chunk::{ChunkConfig, chunk, hex_sha256};
use shared::ingest::{extract, sparse};
use tests::accounts::{OPERATOR, Owner};
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

/// What to measure: the eval-scifact project in a data directory, or N synthetic chunks.
enum DataSet {
    Existing(PathBuf),
    Synthetic { chunks: usize, chroma: bool },
}

fn data_set() -> anyhow::Result<DataSet> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--chunks") {
        Some(i) => Ok(DataSet::Synthetic {
            chunks: args
                .get(i + 1)
                .and_then(|n| n.parse().ok())
                .context("--chunks wants a number")?,
            chroma: !args.iter().any(|a| a == "--no-chroma"),
        }),
        None => Ok(DataSet::Existing(args.first().map_or_else(
            || workspace_root().join("target/eval-scifact"),
            PathBuf::from,
        ))),
    }
}

fn host_options(data_dir: &Path) -> Options {
    Options {
        env: BTreeMap::from([
            (
                "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
                OPERATOR.to_string(),
            ),
            // The key's per-minute limit (600) is not what this measures.
            (
                "SPIN_VARIABLE_AUTH_KEY_PER_MINUTE".to_string(),
                "1000000".to_string(),
            ),
        ]),
        data_dir: Some(data_dir.to_path_buf()),
        request_timeout: Duration::from_secs(60),
        ..Options::default()
    }
}

async fn run() -> anyhow::Result<()> {
    let (queries, _) = tests::scifact::queries()?;
    let queries: Vec<String> = queries.into_iter().map(|(_, t)| t).collect();
    match data_set()? {
        DataSet::Existing(data_dir) => {
            let (project, key) = tests::scifact::saved_project(&data_dir)?;
            let host = start(&workspace_root().join("spin.toml"), host_options(&data_dir)).await?;
            println!(
                "SciFact project {project}: {} queries per run, hybrid, top 10, API key over HTTP",
                queries.len()
            );
            measure(host.addr, &project, &key, &queries).await?;
            host.stop().await;
        }
        DataSet::Synthetic { chunks, chroma } => {
            let data_dir = tests::temp_dir(&format!("bench-search-{chunks}"));
            let host = start(&workspace_root().join("spin.toml"), host_options(&data_dir)).await?;
            let owner = Owner::new(host.addr, "bench@example.com").await;
            let key = owner.key(host.addr, &["ingest", "search"]).await;
            let store = Store {
                addr: service(&host, "vectorstore")?,
                key: secret(&data_dir, "vectorstore")?,
            };
            let seed = seed_upload(host.addr, &owner.project, &key, &data_dir).await?;
            let texts = scifact_chunks()?;
            let started = Instant::now();
            let vectors = write_synthetic(&store, &owner.project, &texts, chunks).await?;
            println!(
                "{chunks} synthetic chunks written in {:.1} s (plus {seed} real ones uploaded); \
                 {} queries per run, hybrid, top 10, API key over HTTP",
                started.elapsed().as_secs_f64(),
                queries.len()
            );
            measure(host.addr, &owner.project, &key, &queries).await?;
            let models = Models {
                addr: service(&host, "models")?,
                key: secret(&data_dir, "models")?,
            };
            store_breakdown(&store, &models, &owner.project, &queries).await?;
            if chroma {
                chroma_peer(&data_dir, &owner.project, &texts, &vectors, &models)?;
            }
            host.stop().await;
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
    Ok(())
}

fn service(host: &host::RunningHost, name: &str) -> anyhow::Result<SocketAddr> {
    host.services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.addr)
        .with_context(|| format!("no embedded {name}"))
}

fn secret(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    Ok(
        std::fs::read_to_string(data_dir.join("secrets").join(name))?
            .trim()
            .to_string(),
    )
}

/// The vector store and its key.
struct Store {
    addr: SocketAddr,
    key: String,
}

/// The embedding model server and its key.
struct Models {
    addr: SocketAddr,
    key: String,
}

/// Where the store's part of a search goes: each signal's candidate query alone (as search sends
/// it: the project's live chunks, the default number of candidates, the light ranking payload), timed
/// by the store itself (`time`) and by the client.
async fn store_breakdown(
    store: &Store,
    models: &Models,
    project: &str,
    queries: &[String],
) -> anyhow::Result<()> {
    let bearer = format!("Bearer {}", models.key);
    let filter = json!({"must": [{"key": "project", "match": {"value": project}},
                                  {"key": "live", "match": {"value": true}}]});
    let mut dense = Vec::new();
    for q in queries {
        let embedded = tests::scifact::send_json(
            models.addr,
            "POST",
            "/v1/embeddings",
            ("authorization", &bearer),
            &json!({"model": "all-MiniLM-L6-v2", "input": [q]}),
        )
        .await?;
        dense.push(embedded["data"][0]["embedding"].clone());
    }
    let payload = ["document", "version", "chunk_id", "ordinal", "sha256"];
    let limit = shared::search::Fusion::default().candidates;
    for using in ["dense", "keyword"] {
        let (mut server, mut client) = (Vec::new(), Vec::new());
        for (q, vector) in queries.iter().zip(&dense) {
            let query = match using {
                "dense" => vector.clone(),
                _ => json!(sparse::query_vector(q)),
            };
            let body = json!({"query": query, "using": using, "filter": filter, "limit": limit,
                              "with_payload": payload});
            let t = Instant::now();
            let reply = tests::scifact::send_json(
                store.addr,
                "POST",
                "/collections/edgerag_chunks/points/query",
                ("api-key", &store.key),
                &body,
            )
            .await?;
            client.push(t.elapsed().as_secs_f64() * 1000.0);
            server.push(reply["time"].as_f64().unwrap_or_default() * 1000.0);
        }
        server.sort_by(f64::total_cmp);
        client.sort_by(f64::total_cmp);
        println!(
            "vector store alone, {using} candidates ({limit}, project's live chunks): store time p50 {:.2} p99 {:.2} ms; client p50 {:.2} p99 {:.2} ms",
            percentile(&server, 0.5),
            percentile(&server, 0.99),
            percentile(&client, 0.5),
            percentile(&client, 0.99)
        );
    }
    Ok(())
}

/// Uploads SciFact's first abstracts through ingest, so the collection is made as ingest makes it.
async fn seed_upload(
    addr: SocketAddr,
    project: &str,
    key: &str,
    data_dir: &Path,
) -> anyhow::Result<u64> {
    let corpus = std::fs::read_to_string(tests::scifact::root().join("corpus.jsonl"))?;
    let path = data_dir.join("seed.jsonl");
    let first: Vec<&str> = corpus.lines().take(20).collect();
    std::fs::write(&path, first.join("\n"))?;
    let summary = host::bulk::run(host::bulk::Options {
        url: format!("http://{addr}"),
        project: project.to_string(),
        api_key: key.trim_start_matches("Bearer ").to_string(),
        paths: vec![path],
        concurrency: 1,
        tags: Vec::new(),
        batch: 8,
    })
    .await?;
    if !summary.failed.is_empty() {
        anyhow::bail!("the seed upload failed: {:?}", summary.failed);
    }
    Ok(summary.chunks)
}

/// A synthetic chunk's text: a SciFact chunk's title and passage.
struct Text {
    title: String,
    text: String,
    embedded: String,
}

/// SciFact's abstracts cut as ingest cuts them (default chunking).
fn scifact_chunks() -> anyhow::Result<Vec<Text>> {
    let corpus = std::fs::read_to_string(tests::scifact::root().join("corpus.jsonl"))?;
    let mut out = Vec::new();
    for line in corpus.lines() {
        let doc: Value = serde_json::from_str(line)?;
        let title = doc["title"].as_str().unwrap_or_default();
        let extracted = extract::plain(doc["text"].as_str().unwrap_or_default());
        if extracted.is_empty() {
            continue;
        }
        for c in chunk(&extracted, title, &ChunkConfig::default())? {
            out.push(Text {
                title: title.to_string(),
                embedded: c.embed_text(),
                text: c.text,
            });
        }
    }
    Ok(out)
}

/// A small deterministic generator (SplitMix64) for the random dense vectors.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A standard normal value (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// A unit vector near one of `centres` (clustered, as embeddings are: what bench-vectors uses).
    fn clustered(&mut self, centres: &[Vec<f32>]) -> Vec<f32> {
        let centre = &centres[(self.next() % centres.len() as u64) as usize];
        let mut v: Vec<f32> = centre.iter().map(|c| c + 0.35 * self.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

/// Chunks per synthetic document.
const PER_DOCUMENT: usize = 3;

/// Writes `n` live chunks of `project` in ingest's payload schema; returns their dense vectors.
async fn write_synthetic(
    store: &Store,
    project: &str,
    texts: &[Text],
    n: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut random = Random(42);
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| {
            (0..models::embed::DIMENSIONS)
                .map(|_| random.normal())
                .collect()
        })
        .collect();
    let mut vectors = Vec::with_capacity(n);
    let indexed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let mut batch = Vec::new();
    for i in 0..n {
        let t = &texts[i % texts.len()];
        let (document, ordinal) = (format!("syn-{}", i / PER_DOCUMENT), i % PER_DOCUMENT);
        let dense = random.clustered(&centres);
        batch.push(json!({
            "id": i as u64 + 1,
            "vector": {"dense": dense, "keyword": sparse::document_vector(&t.embedded)},
            "payload": {
                "project": project, "document": document, "version": 1, "live": true,
                "kind": "document", "ordinal": ordinal,
                "chunk_id": format!("{project}:{document}:1:{ordinal}"),
                "text": t.text, "title": t.title, "source_uri": null, "tags": [],
                "metadata": {}, "heading_path": [], "start": 0, "end": t.text.len(),
                "page": null, "sha256": hex_sha256(&t.text), "answer": null,
                "content_type": "text/plain", "indexed_at": indexed_at,
            },
        }));
        vectors.push(dense);
        if batch.len() == 1000 || i + 1 == n {
            tests::scifact::send_json(
                store.addr,
                "PUT",
                "/collections/edgerag_chunks/points?wait=true",
                ("api-key", &store.key),
                &json!({"points": std::mem::take(&mut batch)}),
            )
            .await?;
        }
    }
    Ok(vectors)
}

/// Runs the peer: Chroma, given the same vectors, texts and project, answering the same queries.
fn chroma_peer(
    data_dir: &Path,
    project: &str,
    texts: &[Text],
    vectors: &[Vec<f32>],
    models: &Models,
) -> anyhow::Result<()> {
    let vectors_path = data_dir.join("vectors.f32");
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&vectors_path, bytes)?;
    let texts_path = data_dir.join("texts.jsonl");
    let lines: Vec<String> = (0..vectors.len())
        .map(|i| json!(texts[i % texts.len()].text).to_string())
        .collect();
    std::fs::write(&texts_path, lines.join("\n"))?;
    let python = workspace_root().join("target/bench-venv/bin/python");
    let status = std::process::Command::new(&python)
        .arg(workspace_root().join("tests/python/bench_search_chroma.py"))
        .args(["--vectors", &vectors_path.to_string_lossy()])
        .args(["--texts", &texts_path.to_string_lossy()])
        .args([
            "--queries",
            &tests::scifact::root()
                .join("queries.jsonl")
                .to_string_lossy(),
        ])
        .args(["--project", project])
        .args(["--models", &format!("http://{}", models.addr)])
        .args(["--chroma-dir", &data_dir.join("chroma").to_string_lossy()])
        .env("EDGERAG_MODELS_KEY", &models.key)
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !status.success() {
        anyhow::bail!("the Chroma peer failed");
    }
    Ok(())
}

/// Every query once as warm-up, then timed runs at concurrency 1 and 8.
async fn measure(
    addr: SocketAddr,
    project: &str,
    key: &str,
    queries: &[String],
) -> anyhow::Result<()> {
    let queries = Arc::new(queries.to_vec());
    let path = Arc::new(format!("/v1/projects/{project}/search"));
    let key = Arc::new(key.to_string());
    // Warm-up: first instantiations, the store's pages in memory.
    for q in queries.iter().take(50) {
        let body = json!({"query": q, "mode": "hybrid", "top_k": 10});
        tests::accounts::call(addr, "POST", &path, Some(&key), Some(body)).await;
    }
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
                        let why = format!("{} {}", reply.status, reply.text());
                        samples.push((f64::NAN, BTreeMap::from([(why, 0.0)])));
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
        if let Some(first) = samples.iter().find(|s| s.0.is_nan()) {
            let why: String = first.1.keys().next().cloned().unwrap_or_default();
            println!(
                "first failure: {}",
                why.chars().take(300).collect::<String>()
            );
        }
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
    Ok(())
}
