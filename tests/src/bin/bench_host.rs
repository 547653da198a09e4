//! Benchmarks the host (run it with `scripts/bench-host`):
//!
//! 1. instantiation time per request with the pooling allocator (p50, p99), in-process;
//! 2. a no-op route (`GET /v1/search/health`) through the real `edgerag` process against the same
//!    handler (`shared`'s health reply) served natively by hyper, in the same run, over loopback,
//!    at concurrency 1 and 16, each for a bounded time;
//! 3. `edgerag up` start-up time with a cold and a warm compilation cache, and resident memory idle
//!    and under load;
//! 4. with an external load generator (wrk, bounded runs), in the same run: a no-op component on
//!    edgerag against the same `.wasm` on `wasmtime serve` (a fresh instance per request) and against
//!    native hyper in its own process; the probe through WASI 0.2 (spin-sdk 5) against WASI 0.3
//!    (spin-sdk 7); and a route that calls another component through `*.spin.internal` against the
//!    same route calling it over loopback HTTP. CPU per request is the server process's CPU time
//!    over the requests it served.
//!
//! `bench-host serve-native <addr>` is the native peer's process.

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
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, addr] = args.as_slice()
        && mode == "serve-native"
    {
        return serve_native_process(addr.parse()?);
    }
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
    runtime.block_on(peers(&edgerag))?;
    Ok(())
}

/// The native peer in a process of its own, so the load generator and the server do not share one.
fn serve_native_process(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|_request: http::Request<_>| async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    })
}

const WRK_SECONDS: u64 = 5;

/// One wrk run's numbers, and the CPU the server spent on them.
#[derive(Debug)]
struct WrkResult {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_request: f64,
}

/// Runs wrk against `url` at `connections`, reading the server's CPU time around the run.
fn wrk(url: &str, connections: usize, server_pid: u32) -> anyhow::Result<WrkResult> {
    let threads = connections.min(2).to_string();
    let warm = Command::new("wrk")
        .args(["-t1", "-c1", "-d1s", url])
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    if !warm.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&warm.stderr));
    }
    let cpu_before = cpu_ticks(server_pid)?;
    let output = Command::new("wrk")
        .args([
            "-t",
            &threads,
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{WRK_SECONDS}s"),
            "--latency",
            url,
        ])
        .output()?;
    let cpu_after = cpu_ticks(server_pid)?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if text.contains("Non-2xx") {
        bail!("{url} answered errors under load:\n{text}");
    }
    let field = |prefix: &str| -> anyhow::Result<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's output:\n{text}"))
    };
    let rate: f64 = field("Requests/sec:")?.parse()?;
    let requests: f64 = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no request count in wrk's output")?;
    let ticks_per_second = 100.0;
    let cpu_us = (cpu_after - cpu_before) as f64 / ticks_per_second * 1e6;
    Ok(WrkResult {
        rate,
        p50_us: wrk_duration_us(field("50%")?)?,
        p99_us: wrk_duration_us(field("99%")?)?,
        cpu_us_per_request: cpu_us / requests.max(1.0),
    })
}

/// wrk prints `123.45us`, `1.20ms` or `1.00s`.
fn wrk_duration_us(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration `{text}`");
    };
    Ok(number.parse::<f64>()? * scale)
}

/// User plus system CPU time of a process, in clock ticks (1/100 s here).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11).context("short stat")?.parse()?;
    let stime: u64 = fields.get(12).context("short stat")?.parse()?;
    Ok(utime + stime)
}

async fn wait_for(addr: SocketAddr, path: &str, child: &mut Child) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(mut connection) = Connection::open(addr).await
            && let Ok((200, _)) = connection.get(path).await
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited during start-up: {status}");
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{addr}{path} did not answer within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wasmtime serve` 48.0.8, if installed: $WASMTIME, then PATH.
fn wasmtime_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Some(path.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wasmtime"))
            .find(|candidate| candidate.exists())
    })
}

async fn peers(edgerag: &Path) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("edgerag-bench-peers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let edgerag_addr: SocketAddr = "127.0.0.1:38318".parse()?;
    let native_addr: SocketAddr = "127.0.0.1:38319".parse()?;
    let wasmtime_addr: SocketAddr = "127.0.0.1:38320".parse()?;
    let manifest = data_dir.join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n\
             [[trigger.http]]\nroute = \"/noop/...\"\ncomponent = \"noop\"\n\
             [[trigger.http]]\nroute = \"/p3/...\"\ncomponent = \"p3\"\n\
             [[trigger.http]]\nroute = \"/p2/...\"\ncomponent = \"p2\"\n\
             [[trigger.http]]\nroute = \"/caller/...\"\ncomponent = \"caller\"\n\
             [component.noop]\nsource = \"{noop}\"\n\
             [component.p3]\nsource = \"{p3}\"\n\
             [component.p2]\nsource = \"{p2}\"\n\
             [component.caller]\nsource = \"{p3}\"\n\
             allowed_outbound_hosts = [\"http://p3.spin.internal\", \"http://{edgerag_addr}\"]\n",
            noop = wasm_path("noop").display(),
            p3 = wasm_path("probe").display(),
            p2 = wasm_path("probe_p2").display(),
        ),
    )?;
    let mut host = Command::new(edgerag)
        .args(["up", "-f"])
        .arg(&manifest)
        .arg("--listen")
        .arg(edgerag_addr.to_string())
        .arg("--data-dir")
        .arg(data_dir.join("data"))
        .arg("--models-dir")
        .arg(tests::models_dir())
        .arg("--lazy-models")
        .env("EDGERAG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start edgerag")?;
    wait_for(edgerag_addr, "/noop/", &mut host).await?;
    let mut native = Command::new(std::env::current_exe()?)
        .args(["serve-native", &native_addr.to_string()])
        .spawn()?;
    wait_for(native_addr, "/", &mut native).await?;
    let mut wasmtime = match wasmtime_binary() {
        Some(binary) => {
            let mut child = Command::new(binary)
                .args([
                    "serve",
                    "-Wcomponent-model-async=y",
                    "-Sp3=y,cli=y",
                    "--max-instance-reuse-count",
                    "1",
                    "--max-instance-concurrent-reuse-count",
                    "1",
                    "--addr",
                    &wasmtime_addr.to_string(),
                ])
                .arg(wasm_path("noop"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            match wait_for(wasmtime_addr, "/", &mut child).await {
                Ok(()) => Some(child),
                Err(error) => {
                    println!("(wasmtime serve did not start: {error:#})");
                    stop(child);
                    None
                }
            }
        }
        None => None,
    };

    println!(
        "## peers, WASI 0.2 and chaining: wrk, {WRK_SECONDS} s per run, keep-alive connections, same run"
    );
    println!("| server | route | connections | requests/s | p50 | p99 | CPU per request |");
    println!("|---|---|---|---|---|---|---|");
    let chained = "/caller/outbound?url=http://p3.spin.internal/p3/hello".to_string();
    let direct = format!("/caller/outbound?url=http://{edgerag_addr}/p3/hello");
    for connections in [1usize, 16] {
        let mut rows: Vec<(&str, String, WrkResult)> = Vec::new();
        let mut run = |name: &'static str, addr: SocketAddr, path: &str, pid: u32| {
            let result = wrk(&format!("http://{addr}{path}"), connections, pid)?;
            println!(
                "| {name} | `{path}` | {connections} | {:.0} | {:.0} us | {:.0} us | {:.0} us |",
                result.rate, result.p50_us, result.p99_us, result.cpu_us_per_request
            );
            rows.push((name, path.to_string(), result));
            anyhow::Ok(())
        };
        run("native hyper", native_addr, "/", native.id())?;
        run("edgerag, noop (0.3)", edgerag_addr, "/noop/", host.id())?;
        if let Some(child) = &wasmtime {
            run("wasmtime serve, noop (0.3)", wasmtime_addr, "/", child.id())?;
        }
        run("edgerag, probe 0.3", edgerag_addr, "/p3/hello", host.id())?;
        run("edgerag, probe 0.2", edgerag_addr, "/p2/hello", host.id())?;
        run("edgerag, chained", edgerag_addr, &chained, host.id())?;
        run("edgerag, over loopback", edgerag_addr, &direct, host.id())?;
        let get = |name: &str| rows.iter().find(|(n, _, _)| *n == name).map(|(_, _, r)| r);
        let ratio = |a: &str, b: &str| -> Option<String> {
            let (a_r, b_r) = (get(a)?, get(b)?);
            Some(format!(
                "{a} / {b}: {:.2}x p50, {:.2}x requests/s, {:.2}x CPU per request",
                a_r.p50_us / b_r.p50_us,
                a_r.rate / b_r.rate,
                a_r.cpu_us_per_request / b_r.cpu_us_per_request
            ))
        };
        println!();
        for line in [
            ratio("edgerag, noop (0.3)", "native hyper"),
            ratio("edgerag, noop (0.3)", "wasmtime serve, noop (0.3)"),
            ratio("edgerag, probe 0.2", "edgerag, probe 0.3"),
            ratio("edgerag, chained", "edgerag, over loopback"),
        ]
        .into_iter()
        .flatten()
        {
            println!("- c={connections}: {line}");
        }
        if let (Some(c), Some(d), Some(hop)) = (
            get("edgerag, chained"),
            get("edgerag, over loopback"),
            get("edgerag, probe 0.3"),
        ) {
            println!(
                "- c={connections}: the chained hop adds {:.0} us p50 to the caller ({:.0} us over loopback)",
                c.p50_us - hop.p50_us,
                d.p50_us - hop.p50_us
            );
        }
        println!();
    }
    if wasmtime.is_none() {
        println!(
            "(wasmtime serve not found: `cargo install wasmtime-cli --version 48.0.8 --locked`, then set WASMTIME or PATH)"
        );
    }
    stop(host);
    stop(native);
    if let Some(child) = wasmtime.take() {
        stop(child);
    }
    let _ = std::fs::remove_dir_all(&data_dir);
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
