//! Benchmarks website sources (run it with `scripts/bench-crawl [PAGES]`), through the real host
//! serving the project's spin.toml with the embedded stores and model, in-process, over loopback:
//!
//! 1. a generated site of PAGES pages (default 500, about 3 chunks each) on loopback, crawled as a
//!    `website` source: pages/min from the source's creation to its job's end;
//! 2. in the same run, the embedding server alone on the same chunk texts, sent in the shape the
//!    crawl sends them (32 pages a step, batches of 32 texts, 4 in flight), and as the server does best: the embedder-bound rate;
//! 3. a re-sync with nothing changed: its time against the first crawl's, and the embedding calls
//!    it made (counted by a proxy in front of the model, which also counts texts);
//! 4. a re-sync with 5% of the pages changed: the texts re-embedded, against those pages' chunks.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tests::accounts::{OPERATOR, Owner, call};
use tests::site::{self, Resource};
use tests::{Options, start, temp_dir, workspace_root};

/// Pages a crawl step fetches and embeds together (ingest's STEP_PAGES).
const STEP_PAGES: usize = 32;

fn main() -> anyhow::Result<()> {
    // The host's log, as `edgerag up` writes it, when EDGERAG_LOG asks for it.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("EDGERAG_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// Counts what passes through to the model: requests and texts.
#[derive(Debug, Default)]
struct Counter {
    requests: AtomicUsize,
    texts: AtomicUsize,
}

/// A proxy for `/v1/embeddings` in front of the embedding model, counting requests and texts.
async fn counting_proxy(
    model: SocketAddr,
    key: String,
    counter: Arc<Counter>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let key = key.clone();
            let counter = counter.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let key = key.clone();
                    let counter = counter.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await?.to_bytes();
                        let texts = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["input"].as_array().map(Vec::len))
                            .unwrap_or(1);
                        counter.requests.fetch_add(1, Ordering::SeqCst);
                        counter.texts.fetch_add(texts, Ordering::SeqCst);
                        let target = model;
                        let forward = http::Request::builder()
                            .method("POST")
                            .uri(path)
                            .header("host", target.to_string())
                            .header("authorization", format!("Bearer {}", key.trim()))
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .expect("a valid request");
                        let response = tests::send_request(target, forward)
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let (parts, body) = response.into_parts();
                        let bytes = body.collect().await?.to_bytes();
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                            http::Response::from_parts(parts, Full::new(bytes)),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// The texts ingest embeds for a page, cut as ingest cuts it.
fn page_texts(html: &[u8]) -> anyhow::Result<Vec<String>> {
    let text = String::from_utf8_lossy(html);
    let extracted = shared::ingest::extract::html(&text);
    let title = extracted.title.clone().unwrap_or_default();
    let chunks = shared::ingest::chunk::chunk(
        &extracted,
        &title,
        &shared::ingest::chunk::ChunkConfig::default(),
    )?;
    Ok(chunks.iter().map(|c| c.embed_text()).collect())
}

/// The embedding server alone on `pages`' texts, `step` pages' texts together in batches of 32
/// with 4 in flight, one step after another (the crawl's shape, or with `step` = all pages the
/// server's best). Returns the seconds taken.
async fn embed_alone(
    model: SocketAddr,
    key: &str,
    pages: &[Vec<String>],
    step: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for step in pages.chunks(step) {
        tests::embed_as_ingest_does(model, key, &step.concat()).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn wait(addr: SocketAddr, key: &str, project: &str, job: &str) -> anyhow::Result<Value> {
    loop {
        let reply = call(
            addr,
            "GET",
            &format!("/v1/projects/{project}/jobs/{job}"),
            Some(key),
            None,
        )
        .await;
        let body = reply.json();
        if body["status"] != "running" {
            anyhow::ensure!(body["status"] == "done", "the sync ended {body}");
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn resync(addr: SocketAddr, key: &str, project: &str) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources/bench/sync"),
        Some(key),
        None,
    )
    .await;
    anyhow::ensure!(reply.status == 202, "sync: {}", reply.text());
    let job = reply.json()["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let done = wait(addr, key, project, &job).await?;
    Ok((started.elapsed().as_secs_f64(), done))
}

async fn run() -> anyhow::Result<()> {
    let pages: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("PAGES is a number")?
        .unwrap_or(500);
    let site = site::start().await;
    site::generate(&site, pages, 8, 420);
    let data_dir = temp_dir("bench-crawl");
    // The embedded model, started here so the proxy can stand between it and ingest.
    let models_key = "bench-crawl-models-key-0123456789".to_string();
    let server = models::start(models::Config {
        dir: tests::models_dir(),
        addr: "127.0.0.1:0".parse()?,
        api_key: models_key.clone().into(),
        which: models::Which {
            embeddings: true,
            chat: false,
            preload: true,
        },
    })
    .await?;
    let models = server.addr;
    let counter = Arc::new(Counter::default());
    let proxy = counting_proxy(models, models_key.clone(), counter.clone()).await?;
    let env = BTreeMap::from([
        (
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        ),
        (
            "SPIN_VARIABLE_AUTH_KEY_PER_MINUTE".to_string(),
            "100000000".to_string(),
        ),
        (
            "SPIN_VARIABLE_CRAWL_ALLOWED_ORIGIN".to_string(),
            site.origin(),
        ),
        (
            "SPIN_VARIABLE_EMBEDDINGS_URL".to_string(),
            format!("http://{proxy}"),
        ),
        (
            "SPIN_VARIABLE_EMBEDDINGS_API_KEY".to_string(),
            "added-by-the-proxy".to_string(),
        ),
    ]);
    let options = Options {
        env,
        data_dir: Some(data_dir.clone()),
        request_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options).await?;
    let addr = host.addr;
    let owner = Owner::new(addr, "bench-crawl@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();

    // The chunk texts of every page, and the model warmed up (its first request loads it).
    let bodies: Vec<Vec<u8>> = {
        let state = site.state.lock().unwrap();
        state
            .resources
            .iter()
            .filter(|(path, _)| path.as_str() == "/" || path.starts_with("/docs/"))
            .map(|(_, r)| r.body.clone())
            .collect()
    };
    let texts: Vec<Vec<String>> = bodies
        .iter()
        .map(|b| page_texts(b))
        .collect::<Result<_, _>>()?;
    let chunks: usize = texts.iter().map(Vec::len).sum();
    embed_alone(models, &models_key, &[vec!["warm up".to_string()]], 1).await?;

    counter.requests.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let reply = call(addr, "POST", &format!("/v1/projects/{project}/sources"), Some(&key), Some(json!({
        "id": "bench", "kind": "website", "url": site.url("/"), "max_pages": pages, "max_depth": 6,
    }))).await;
    anyhow::ensure!(reply.status == 201, "create: {}", reply.text());
    let job = reply.json()["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = wait(addr, &key, &project, &job).await?;
    let crawl_s = started.elapsed().as_secs_f64();
    let first_calls = counter.requests.load(Ordering::SeqCst);
    let shaped_s = embed_alone(models, &models_key, &texts, STEP_PAGES).await?;
    let best_s = embed_alone(models, &models_key, &texts, pages).await?;
    let crawl_rate = pages as f64 / crawl_s * 60.0;
    let shaped_rate = pages as f64 / shaped_s * 60.0;
    let best_rate = pages as f64 / best_s * 60.0;
    println!(
        "site: {pages} pages, {chunks} chunks ({:.1} a page)",
        chunks as f64 / pages as f64
    );
    println!(
        "first crawl: {crawl_s:.1} s, {crawl_rate:.0} pages/min, {first_calls} embedding requests; summary {}",
        first["summary"]
    );
    println!(
        "embedder alone, all chunks in batches of 32, 4 in flight: {best_s:.1} s, {best_rate:.0} pages/min"
    );
    println!(
        "embedder alone, in the crawl's shape ({STEP_PAGES} pages a step): {shaped_s:.1} s, {shaped_rate:.0} pages/min"
    );
    println!(
        "crawl / embedder-bound rate: {:.1}% (target >= 90%); against the crawl's own shape {:.1}%",
        crawl_rate / best_rate * 100.0,
        crawl_rate / shaped_rate * 100.0
    );

    counter.requests.store(0, Ordering::SeqCst);
    counter.texts.store(0, Ordering::SeqCst);
    let (same_s, same) = resync(addr, &key, &project).await?;
    println!(
        "re-sync, nothing changed: {same_s:.1} s = {:.1}% of the first crawl (target <= 10%), {} embedding requests (target 0); summary {}",
        same_s / crawl_s * 100.0,
        counter.requests.load(Ordering::SeqCst),
        same["summary"]
    );

    let changed: Vec<usize> = (0..pages).step_by(20).collect();
    let mut changed_chunks = 0;
    for i in &changed {
        let path = if *i == 0 {
            "/".to_string()
        } else {
            format!("/docs/page-{i}")
        };
        let old = site.state.lock().unwrap().resources[&path].body.clone();
        let new = String::from_utf8_lossy(&old).replace(
            "<h2>Details</h2>",
            "<h2>Details, revised</h2><p>This page was revised for the benchmark.</p>",
        );
        changed_chunks += page_texts(new.as_bytes())?.len();
        site.put(&path, Resource::html(new));
    }
    counter.requests.store(0, Ordering::SeqCst);
    counter.texts.store(0, Ordering::SeqCst);
    let (some_s, some) = resync(addr, &key, &project).await?;
    println!(
        "re-sync, {} pages ({:.0}%) changed: {some_s:.1} s, {} texts embedded in {} requests (those pages have {changed_chunks} chunks); summary {}",
        changed.len(),
        changed.len() as f64 / pages as f64 * 100.0,
        counter.texts.load(Ordering::SeqCst),
        counter.requests.load(Ordering::SeqCst),
        some["summary"]
    );
    host.stop().await;
    server.stop().await;
    Ok(())
}
