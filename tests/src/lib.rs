//! Support for edgerag's end-to-end tests and benchmarks: builds the real `.wasm` components, starts the
//! real host on a loopback port, and speaks HTTP to it over real sockets.
//!
//! Nothing here fakes what edgerag ships; the only component that is not a product function is the
//! `probe` fixture, which exists to exercise the host.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod pouchdb;
pub mod qdrant_suite;
pub mod scifact;
pub mod site;
pub mod stores;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The workspace root (where spin.toml lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The environment variable naming the folder of reference data (SciFact, Spin's manifest fixtures,
/// Qdrant's schema and suite) that tests and benchmarks read but the repository does not hold.
pub const REFERENCE_DATA_VAR: &str = "EDGERAG_REFERENCE_DATA";
/// Set to `1` (`.ci/run` does) to make a missing reference folder a failure instead of a skip.
pub const REQUIRE_REFERENCE_DATA_VAR: &str = "EDGERAG_REQUIRE_REFERENCE_DATA";

/// The reference data folder: `$EDGERAG_REFERENCE_DATA`, or `../shared/data` beside the workspace.
pub fn reference_data_root() -> PathBuf {
    std::env::var_os(REFERENCE_DATA_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"))
}

/// The folder `name` of the reference data, or `None` (after a notice on stderr naming what is
/// skipped) when it is absent, so a clone made anywhere still passes its tests. Panics instead when
/// `EDGERAG_REQUIRE_REFERENCE_DATA=1`, so CI never skips silently.
pub fn reference_data(name: &str, skipped: &str) -> Option<PathBuf> {
    let path = reference_data_root().join(name);
    if path.is_dir() {
        return Some(path);
    }
    let required = std::env::var(REQUIRE_REFERENCE_DATA_VAR).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} is missing and {REQUIRE_REFERENCE_DATA_VAR}=1: point {REFERENCE_DATA_VAR} at the reference data",
        path.display()
    );
    // Straight to stderr, in one write so it stays one line beside the harness's output: the test
    // harness captures `eprintln!` of a passing test, and a skip must be seen.
    let notice = format!(
        "skipped: {skipped} ({} not found; set {REFERENCE_DATA_VAR} to the reference data folder)\n",
        path.display()
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
    None
}

/// Where the release `.wasm` of a workspace component lands.
pub fn wasm_path(crate_name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{crate_name}.wasm"))
}

/// Where a function composed with the auth component lands (what spin.toml serves).
pub fn composed_path(function: &str) -> PathBuf {
    workspace_root()
        .join("target/composed")
        .join(format!("{function}.wasm"))
}

/// Builds the four functions and the two probe fixtures for `wasm32-wasip2`, once per test process.
pub fn build_components() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
            ])
            .args([
                "-p", "auth", "-p", "ingest", "-p", "search", "-p", "respond", "-p", "probe", "-p",
                "probe-p2", "-p", "noop",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building the components failed: {status}"));
        }
        // As scripts/build does: auth into each, and the composed search into respond.
        let plugs = [
            ("ingest", vec![wasm_path("auth")]),
            ("search", vec![wasm_path("auth")]),
            ("respond", vec![wasm_path("auth"), composed_path("search")]),
        ];
        for (function, plugs) in plugs {
            compose::plug_files(&plugs, &wasm_path(function), &composed_path(function))
                .map_err(|e| format!("composing {function}: {e:#}"))?;
        }
        Ok(())
    })
}

/// The release `edgerag` binary, for tests that need a real process (to kill it, for instance).
/// scripts/test builds it first (scripts/build); building it from inside a test would rebuild the host
/// under a different environment every time.
pub fn edgerag_binary() -> Result<PathBuf, String> {
    let path = workspace_root().join("target/release/edgerag");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/build (scripts/test does)",
            path.display()
        ))
    }
}

/// Writes a manifest to a fresh directory and returns its path.
pub fn write_manifest(text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "edgerag-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// A fresh, empty directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgerag-{name}-{}-{}",
        std::process::id(),
        docstore::engine::new_id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs a script from tests/python with the virtual environment scripts/install made (it holds the
/// independent real clients: boto3, qdrant-client) and returns its standard output, or its output
/// and exit status as the error.
pub fn run_python(script: &str, args: &[&str]) -> Result<String, String> {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing; run scripts/install",
            python.display()
        ));
    }
    let output = std::process::Command::new(python)
        .arg(root.join("tests/python").join(script))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{script} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Where `scripts/install` unpacks the embedded models.
pub fn models_dir() -> PathBuf {
    workspace_root().join(".edgerag/models")
}

/// The probe fixture's path, for manifests.
pub fn probe_source() -> String {
    wasm_path("probe").display().to_string()
}

/// The WASI 0.2 probe fixture's path (spin-sdk 5), for manifests.
pub fn probe_p2_source() -> String {
    wasm_path("probe_p2").display().to_string()
}

/// Options for starting a host in tests.
#[derive(Debug, Clone)]
pub struct Options {
    pub env: BTreeMap<String, String>,
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    /// Start the embedded default services in a fresh data directory, as `edgerag up` does.
    pub embedded: bool,
    /// The data directory for the embedded services, when a test needs to read it (its secrets);
    /// `None` is a fresh one nobody else knows.
    pub data_dir: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<host::tls::TlsFiles>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            env: BTreeMap::new(),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 10 << 20,
            embedded: true,
            data_dir: None,
            tls: None,
        }
    }
}

/// Starts the real host in-process on an ephemeral loopback port.
pub async fn start(manifest: &Path, options: Options) -> anyhow::Result<host::RunningHost> {
    if let Err(error) = build_components() {
        bail!("{error}");
    }
    let mut config = host::UpConfig::new(manifest.to_path_buf(), "127.0.0.1:0".parse()?);
    let env = options.env;
    config.env = Arc::new(move |name| env.get(name).cloned());
    config.runtime.request_timeout = options.request_timeout;
    config.max_body_bytes = options.max_body_bytes;
    config.tls = options.tls;
    // Every test host compiles the same components: one compilation cache for all of them (as
    // `edgerag up` keeps one in its data directory) saves each start the compile.
    config.runtime.cache_dir = Some(workspace_root().join("target/wasmtime-cache"));
    if options.embedded {
        config.data_dir = Some(
            options
                .data_dir
                .unwrap_or_else(|| write_manifest("").with_file_name("data")),
        );
        // Loaded on first use, so that tests which never ask a model do not pay for loading it.
        config.models_dir = Some(models_dir());
    }
    host::start(config).await
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request on a new connection and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(body.into()))?;
    let response = send_request(addr, request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Sends a prepared request (headers and all) on a new connection and reads the whole answer.
pub async fn exchange(addr: SocketAddr, request: http::Request<String>) -> anyhow::Result<Reply> {
    let (mut parts, body) = request.into_parts();
    parts
        .headers
        .entry(http::header::HOST)
        .or_insert(addr.to_string().parse()?);
    let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let (parts, body) = send_request(addr, request).await?.into_parts();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    send(addr, "GET", path, Bytes::new()).await
}

/// Sends any request body on a new connection and returns the streaming response.
pub async fn send_request<B>(
    addr: SocketAddr,
    request: http::Request<B>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}

/// A keep-alive connection for sending many requests, as a load generator does.
#[derive(Debug)]
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: addr.to_string(),
        })
    }

    /// Sends a request on this connection, once it is ready for one.
    pub async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// GETs `path` and reads the body; returns the status and the round-trip time.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Duration)> {
        let started = Instant::now();
        self.sender.ready().await?;
        let request = http::Request::builder()
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .body(Full::new(Bytes::new()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok((status, started.elapsed()))
    }
}

/// The `authorization` value for HTTP Basic auth.
pub fn basic_auth(user: &str, secret: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {token}")
}

/// A request with a JSON body (empty when `None`) and, optionally, an `authorization` header: what the
/// stores' clients send.
pub fn json_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(http::header::AUTHORIZATION, authorization);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    Ok(request.body(Full::new(Bytes::from(body)))?)
}

/// Reads a response whole: its status and its body as JSON (`null` if the body is not JSON).
pub async fn read_json(
    response: http::Response<hyper::body::Incoming>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// Throughput and latency of a bounded load run.
#[derive(Debug, Clone, Copy)]
pub struct LoadSummary {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Joins load workers (each returning its latency samples) started at `started`, and summarises them.
pub async fn summarize(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
    started: Instant,
) -> anyhow::Result<LoadSummary> {
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    samples.sort();
    Ok(LoadSummary {
        rate: samples.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
    })
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Sends `texts` to an OpenAI-API embeddings server at `model` the way ingest's embedder does:
/// batches of 32 texts, 4 requests in flight. The benchmarks' embedder-alone baseline.
pub async fn embed_as_ingest_does(
    model: SocketAddr,
    api_key: &str,
    texts: &[String],
) -> anyhow::Result<()> {
    let batches: Vec<&[String]> = texts.chunks(32).collect();
    for wave in batches.chunks(4) {
        let sends = wave.iter().map(|batch| {
            let body = serde_json::json!({"model": "all-MiniLM-L6-v2", "input": batch}).to_string();
            let request = http::Request::builder()
                .method("POST")
                .uri("/v1/embeddings")
                .header("host", model.to_string())
                .header("authorization", format!("Bearer {api_key}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)));
            async move {
                let response = send_request(model, request?).await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "embeddings answered {}",
                    response.status()
                );
                response.into_body().collect().await?;
                anyhow::Ok(())
            }
        });
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
    }
    Ok(())
}
