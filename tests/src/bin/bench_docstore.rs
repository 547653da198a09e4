//! Benchmarks the embedded document store against pouchdb-server in the same run (run it with
//! `scripts/bench-docstore`): bulk inserts of 100,000 documents, point reads, and `_find` on an indexed
//! field, both servers persisting to disk, over loopback HTTP from this process.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const DOCS: usize = 100_000;
const BATCH: usize = 1_000;
const GROUPS: usize = 1_000;
const READS: usize = 20_000;
const FINDS: usize = 2_000;
const CONCURRENCY: usize = 8;
const SECRET: &str = "bench-secret";

/// A keep-alive connection that speaks JSON with Basic auth.
struct Conn {
    connection: tests::Connection,
    addr: SocketAddr,
    authorization: Option<String>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            connection: tests::Connection::open(addr).await?,
            addr,
            authorization: Some(tests::basic_auth("admin", SECRET)),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let request =
            tests::json_request(self.addr, method, path, self.authorization.as_deref(), body)?;
        tests::read_json(self.connection.send(request).await?).await
    }
}

struct Results {
    bulk_docs_per_s: f64,
    read_rate: f64,
    read_p50: Duration,
    read_p99: Duration,
    find_rate: f64,
    find_p50: Duration,
    find_p99: Duration,
}

async fn run(addr: SocketAddr) -> anyhow::Result<Results> {
    let mut conn = Conn::open(addr).await?;
    let (status, body) = conn.call("PUT", "/bench", None).await?;
    if status != 201 {
        bail!("create database: {status} {body}");
    }

    let started = Instant::now();
    for batch in 0..DOCS / BATCH {
        let docs: Vec<Value> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                json!({
                    "_id": format!("doc{n:07}"),
                    "group": format!("g{:04}", n % GROUPS),
                    "n": n,
                    "title": format!("Document number {n}"),
                    "text": "A paragraph of ordinary length stands in for the content of a real chunk of a knowledge base article.",
                })
            })
            .collect();
        let (status, _) = conn
            .call("POST", "/bench/_bulk_docs", Some(&json!({"docs": docs})))
            .await?;
        if status != 201 {
            bail!("bulk insert: {status}");
        }
    }
    let bulk_docs_per_s = DOCS as f64 / started.elapsed().as_secs_f64();

    let (status, body) = conn
        .call(
            "POST",
            "/bench/_index",
            Some(&json!({"index": {"fields": ["group"]}, "name": "by-group"})),
        )
        .await?;
    if status != 200 {
        bail!("create index: {status} {body}");
    }
    // Warm the index (pouchdb builds it on first use).
    conn.call(
        "POST",
        "/bench/_find",
        Some(&json!({"selector": {"group": "g0000"}, "limit": 10})),
    )
    .await?;

    let (read_rate, read_p50, read_p99) = load(addr, READS, |i| {
        let n = (i * 7919) % DOCS;
        ("GET", format!("/bench/doc{n:07}"), None)
    })
    .await?;
    let (find_rate, find_p50, find_p99) = load(addr, FINDS, |i| {
        let group = (i * 31) % GROUPS;
        (
            "POST",
            "/bench/_find".to_string(),
            Some(json!({"selector": {"group": format!("g{group:04}")}, "limit": 10})),
        )
    })
    .await?;
    Ok(Results {
        bulk_docs_per_s,
        read_rate,
        read_p50,
        read_p99,
        find_rate,
        find_p50,
        find_p99,
    })
}

/// Sends `total` requests from `CONCURRENCY` keep-alive connections; every answer must be 200 and,
/// for `_find`, must carry documents.
async fn load(
    addr: SocketAddr,
    total: usize,
    request: impl Fn(usize) -> (&'static str, String, Option<Value>) + Send + Sync + Copy + 'static,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut samples = Vec::new();
            let mut i = worker;
            while i < total {
                let (method, path, body) = request(i);
                let sent = Instant::now();
                let (status, reply) = conn.call(method, &path, body.as_ref()).await?;
                samples.push(sent.elapsed());
                if status != 200 {
                    bail!("{method} {path}: {status} {reply}");
                }
                if method == "POST" && reply["docs"].as_array().is_none_or(Vec::is_empty) {
                    bail!("{path}: no documents: {reply}");
                }
                i += CONCURRENCY;
            }
            anyhow::Ok(samples)
        }));
    }
    let summary = tests::summarize(workers, started).await?;
    Ok((summary.rate, summary.p50, summary.p99))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let started = Instant::now();
    while tests::get(addr, "/").await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{addr} did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let scratch = std::env::temp_dir().join(format!("edgerag-bench-docstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("pouchdb"))?;

        let store = docstore::start(docstore::Config {
            dir: scratch.join("embedded"),
            addr: "127.0.0.1:0".parse()?,
            credentials: embedded::Credentials { user: "admin".into(), secret: SECRET.into() },
        })
        .await?;
        let ours = run(store.addr).await.context("embedded store")?;
        store.stop().await;

        let bin = tests::workspace_root().join("tests/pouchdb/node_modules/.bin/pouchdb-server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let _pouch = Killed(
            Command::new(&bin)
                .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
                .current_dir(scratch.join("pouchdb"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}: run scripts/install", bin.display()))?,
        );
        let pouch_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_ready(pouch_addr).await?;
        let mut setup = Conn::open(pouch_addr).await?;
        setup.authorization = None;
        setup.call("PUT", "/_config/admins/admin", Some(&json!(SECRET))).await?;
        let theirs = run(pouch_addr).await.context("pouchdb-server")?;

        println!("# document store: embedded (SQLite) vs pouchdb-server 4.2.0 (LevelDB), same run");
        println!(
            "{DOCS} documents in _bulk_docs batches of {BATCH}; {READS} point reads and {FINDS} _find on an indexed field ({} docs per value, limit 10) from {CONCURRENCY} keep-alive connections; both on disk",
            DOCS / GROUPS
        );
        println!("| measure | embedded | pouchdb-server | ratio |");
        println!("|---|---|---|---|");
        let row = |name: &str, a: f64, b: f64, unit: &str, higher_better: bool| {
            let ratio = if higher_better { a / b } else { b / a };
            println!("| {name} | {a:.0} {unit} | {b:.0} {unit} | {ratio:.1}x |");
        };
        row("bulk insert", ours.bulk_docs_per_s, theirs.bulk_docs_per_s, "docs/s", true);
        row("point read throughput", ours.read_rate, theirs.read_rate, "req/s", true);
        row("point read p50", micros(ours.read_p50), micros(theirs.read_p50), "us", false);
        row("point read p99", micros(ours.read_p99), micros(theirs.read_p99), "us", false);
        row("_find throughput", ours.find_rate, theirs.find_rate, "req/s", true);
        row("_find p50", micros(ours.find_p50), micros(theirs.find_p50), "us", false);
        row("_find p99", micros(ours.find_p99), micros(theirs.find_p99), "us", false);
        println!("(ratio: how many times better the embedded store is; above 1 favours it)");
        let _ = std::fs::remove_dir_all(&scratch);
        anyhow::Ok(())
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
