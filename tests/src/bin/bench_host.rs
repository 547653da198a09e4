//! Benchmarks the host (run it with `scripts/bench-host`):
//!
//! 1. instantiation time per request with the pooling allocator (p50, p99), in-process;
//! 2. a no-op route (`GET /v1/search/health`) through the real `edgerag` process against the same
//!    handler (`shared`'s health reply) served natively by hyper, in the same run, over loopback,
//!    at concurrency 1 and 16, each for a bounded time;
//! 3. `edgerag up` start-up time with a cold and a warm compilation cache, and resident memory idle
//!    and under load.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use tests::{Connection, build_components, composed_path, wasm_path, workspace_root};
use wasmtime_wasi_http::handler::HandlerState;

const LOAD_SECONDS: u64 = 5;
const INSTANTIATIONS: usize = 20_000;

fn main() -> anyhow::Result<()> {
    if let Err(error) = build_components() {
        bail!("{error}");
    }
    let edgerag = workspace_root().join("target/release/edgerag");
    if !edgerag.exists() {
        bail!("{} is missing: run scripts/build first", edgerag.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    println!("# edgerag host benchmark");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!();

    runtime.block_on(instantiation())?;
    runtime.block_on(startup_and_load(&edgerag))?;
    Ok(())
}

async fn instantiation() -> anyhow::Result<()> {
    println!("## instantiation: fresh instances from the pooling allocator, {INSTANTIATIONS} each");
    println!("| component | pool slot keeps resident | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, path) in [
        ("auth (one component)", wasm_path("auth")),
        ("search composed with auth", composed_path("search")),
    ] {
        for keep in [0usize, 1 << 20] {
            let config = host::runtime::RuntimeConfig {
                keep_resident_bytes: keep,
                ..host::runtime::RuntimeConfig::default()
            };
            let engine = host::runtime::engine(&config)?;
            let component = host::runtime::ComponentRuntime::load(
                &engine,
                &config,
                name,
                &path,
                host::runtime::Grants::default(),
                host::runtime::ChainLink::default(),
            )?;
            let mut samples = Vec::with_capacity(INSTANTIATIONS);
            for _ in 0..1000 {
                drop(component.instantiate().await?);
            }
            for _ in 0..INSTANTIATIONS {
                let started = Instant::now();
                let instance = component.instantiate().await?;
                samples.push(started.elapsed());
                drop(instance);
            }
            samples.sort();
            println!(
                "| {name} | {} KiB | {:.1} us | {:.1} us |",
                keep >> 10,
                micros(tests::percentile(&samples, 0.50)),
                micros(tests::percentile(&samples, 0.99)),
            );
        }
    }
    println!();
    Ok(())
}

async fn startup_and_load(edgerag: &Path) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("edgerag-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let host_addr: SocketAddr = "127.0.0.1:38317".parse()?;

    println!(
        "## start-up (edgerag up with the project's spin.toml, until /v1/search/health answers)"
    );
    let (child, cold) = spawn_host(edgerag, &data_dir, host_addr).await?;
    stop(child);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (child, took) = spawn_host(edgerag, &data_dir, host_addr).await?;
        warm.push(took);
        stop(child);
    }
    warm.sort();
    println!(
        "cold cache {:.0} ms; warm cache median of 5 {:.0} ms (min {:.0}, max {:.0})",
        millis(cold),
        millis(warm[2]),
        millis(warm[0]),
        millis(warm[4])
    );
    println!();

    let (child, _) = spawn_host(edgerag, &data_dir, host_addr).await?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid)?;

    let native_addr = start_native().await?;
    println!(
        "## no-op route: GET /v1/search/health, {LOAD_SECONDS} s per run, keep-alive connections"
    );
    println!("| server | concurrency | requests/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    let mut peak_rss = idle_rss;
    for concurrency in [1usize, 16] {
        let native = load(native_addr, concurrency).await?;
        let (hosted, rss) = load_sampling_rss(host_addr, concurrency, pid).await?;
        peak_rss = peak_rss.max(rss);
        for (name, result) in [("native hyper", &native), ("edgerag host", &hosted)] {
            println!(
                "| {name} | {concurrency} | {:.0} | {:.0} us | {:.0} us |",
                result.rate,
                micros(result.p50),
                micros(result.p99)
            );
        }
        println!(
            "| ratio host/native | {concurrency} | {:.2}x throughput | {:.2}x p50 | {:.2}x p99 |",
            hosted.rate / native.rate,
            micros(hosted.p50) / micros(native.p50),
            micros(hosted.p99) / micros(native.p99)
        );
    }
    println!();
    println!("## resident memory of the edgerag process");
    println!(
        "idle {:.1} MiB; peak under load {:.1} MiB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

async fn spawn_host(
    edgerag: &Path,
    data_dir: &Path,
    addr: SocketAddr,
) -> anyhow::Result<(Child, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(edgerag)
        .current_dir(workspace_root())
        .arg("up")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--models-dir")
        .arg(tests::models_dir())
        .env("EDGERAG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start edgerag")?;
    loop {
        if let Ok(mut connection) = Connection::open(addr).await
            && let Ok((200, _)) = connection.get("/v1/search/health").await
        {
            return Ok((child, started.elapsed()));
        }
        if let Some(status) = child.try_wait()? {
            bail!("edgerag exited during start-up: {status}");
        }
        if started.elapsed() > Duration::from_secs(120) {
            stop(child);
            bail!("edgerag did not become ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The same handler the search function runs, served natively: `shared`'s health reply.
async fn start_native() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                let reply = if request.uri().path() == "/v1/search/health" {
                    shared::Reply::json(200, &shared::Service::Search.health())
                } else {
                    shared::Reply::error(&shared::ApiError::NotFound("no route".into()))
                };
                Ok::<_, std::convert::Infallible>(reply.into_http())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

#[derive(Debug)]
struct LoadResult {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `concurrency` keep-alive connections against `addr` for `LOAD_SECONDS`, each sending one
/// request at a time.
async fn load(addr: SocketAddr, concurrency: usize) -> anyhow::Result<LoadResult> {
    // Warm up connections and the server.
    let mut warm = Connection::open(addr).await?;
    for _ in 0..200 {
        warm.get("/v1/search/health").await?;
    }
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECONDS);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let (status, took) = connection.get("/v1/search/health").await?;
                if status != 200 {
                    bail!("status {status}");
                }
                samples.push(took);
            }
            anyhow::Ok(samples)
        }));
    }
    let summary = tests::summarize(workers, started).await?;
    Ok(LoadResult {
        rate: summary.rate,
        p50: summary.p50,
        p99: summary.p99,
    })
}

async fn load_sampling_rss(
    addr: SocketAddr,
    concurrency: usize,
    pid: u32,
) -> anyhow::Result<(LoadResult, u64)> {
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..(LOAD_SECONDS * 10 + 20) {
            if let Ok(rss) = rss_kib(pid) {
                peak = rss.max(peak);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let result = load(addr, concurrency).await?;
    sampler.abort();
    let peak = rss_kib(pid)?;
    Ok((result, peak.max(sampler.await.unwrap_or(0))))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
