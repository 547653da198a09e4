//! Benchmarks auth (run it with `scripts/bench-auth`), through the real host serving the project's
//! spin.toml with the embedded document store, in-process, over loopback:
//!
//! 1. the cost of verifying an access token inside the function (the auth component times it and
//!    reports it in `Server-Timing`), next to the cost of reading its configuration;
//! 2. sign-in latency (argon2id in WebAssembly dominates), with the same hash natively for scale;
//! 3. requests/s of an authenticated no-op route (`GET /v1/auth/token`) against an unauthenticated one
//!    (`GET /v1/auth/health`), and of a function route authorised with an API key (one batched store
//!    read and one usage write), at concurrency 1 and 16, each for a bounded time.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tests::{Connection, Options, percentile, start, summarize, temp_dir, workspace_root};

const OPERATOR: &str = "operator-key-for-the-benchmark-0123";
const VERIFICATIONS: usize = 3000;
const LOGINS: usize = 30;
const LOAD_SECONDS: u64 = 5;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    println!("# edgerag auth benchmark");
    println!(
        "machine: {} cores; host in-process, embedded document store, loopback",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    let env = BTreeMap::from([
        (
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        ),
        // The benchmark measures cost, not the limits: raise them out of the way.
        (
            "SPIN_VARIABLE_AUTH_LOGIN_PER_MINUTE".to_string(),
            "1000000".to_string(),
        ),
        (
            "SPIN_VARIABLE_AUTH_KEY_PER_MINUTE".to_string(),
            "100000000".to_string(),
        ),
    ]);
    let options = Options {
        env,
        data_dir: Some(temp_dir("bench-auth")),
        request_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options).await?;
    let addr = host.addr;

    let email = "bench@example.com";
    let credentials = json!({"email": email, "password": "a long enough password"});
    expect(
        call(addr, "POST", "/v1/auth/register", None, Some(&credentials)).await?,
        202,
    )?;
    let outbox = expect(
        call(
            addr,
            "GET",
            "/v1/auth/admin/outbox",
            Some(&format!("Bearer {OPERATOR}")),
            None,
        )
        .await?,
        200,
    )?;
    let text = outbox["items"][0]["text"]
        .as_str()
        .context("no code in the outbox")?;
    let code = &text["Your code is ".len().."Your code is ".len() + 6];
    expect(
        call(
            addr,
            "POST",
            "/v1/auth/verify",
            None,
            Some(&json!({"email": email, "code": code})),
        )
        .await?,
        200,
    )?;
    let tokens = expect(
        call(addr, "POST", "/v1/auth/login", None, Some(&credentials)).await?,
        200,
    )?;
    let token = format!(
        "Bearer {}",
        tokens["access_token"].as_str().context("no token")?
    );
    let org = expect(
        call(
            addr,
            "POST",
            "/v1/orgs",
            Some(&token),
            Some(&json!({"name": "bench"})),
        )
        .await?,
        201,
    )?;
    let org = org["id"].as_str().context("no org id")?;
    let project = expect(
        call(
            addr,
            "POST",
            &format!("/v1/orgs/{org}/projects"),
            Some(&token),
            Some(&json!({"name": "bench"})),
        )
        .await?,
        201,
    )?;
    let project = project["id"].as_str().context("no project id")?;
    let key = expect(
        call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/keys"),
            Some(&token),
            Some(&json!({"name": "bench", "actions": ["search"]})),
        )
        .await?,
        201,
    )?;
    let key = format!("ApiKey {}", key["key"].as_str().context("no key")?);

    verification(addr, &token).await?;
    logins(addr, &credentials).await?;
    let search = format!("/v1/search/projects/{project}/access");
    throughput(
        addr,
        &[
            (
                "GET /v1/auth/health (no credential)",
                "/v1/auth/health",
                None,
            ),
            (
                "GET /v1/auth/token (access token, verified in the function)",
                "/v1/auth/token",
                Some(token.as_str()),
            ),
            (
                "GET /v1/search/projects/P/access (API key: store read + usage write)",
                search.as_str(),
                Some(key.as_str()),
            ),
        ],
    )
    .await?;
    host.stop().await;
    Ok(())
}

async fn verification(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr).await?;
    let mut verify = Vec::new();
    let mut config = Vec::new();
    let mut round_trip = Vec::new();
    for i in 0..VERIFICATIONS + 200 {
        let started = Instant::now();
        let response = connection
            .send(request(addr, "GET", "/v1/auth/token", Some(token), None)?)
            .await?;
        let timing: Vec<String> = response
            .headers()
            .get_all("server-timing")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if response.status() != 200 {
            bail!("GET /v1/auth/token answered {}", response.status());
        }
        response.into_body().collect().await?;
        if i < 200 {
            continue; // warm-up
        }
        round_trip.push(started.elapsed());
        verify.push(server_timing(&timing, "verify")?);
        config.push(server_timing(&timing, "config")?);
    }
    for samples in [&mut verify, &mut config, &mut round_trip] {
        samples.sort();
    }
    println!("## access token verification inside the function, {VERIFICATIONS} requests");
    println!("| measure | p50 | p99 |");
    println!("|---|---|---|");
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    println!(
        "| verify (signature, claims, expiry) | {} | {} |",
        us(percentile(&verify, 0.5)),
        us(percentile(&verify, 0.99))
    );
    println!(
        "| read configuration (variables) | {} | {} |",
        us(percentile(&config, 0.5)),
        us(percentile(&config, 0.99))
    );
    println!(
        "| whole request, client side | {} | {} |",
        us(percentile(&round_trip, 0.5)),
        us(percentile(&round_trip, 0.99))
    );
    println!();
    Ok(())
}

async fn logins(addr: SocketAddr, credentials: &Value) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for _ in 0..LOGINS {
        let started = Instant::now();
        expect(
            call(addr, "POST", "/v1/auth/login", None, Some(credentials)).await?,
            200,
        )?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let mut native = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        std::hint::black_box(shared::auth::password::hash(
            "a long enough password",
            &[7; 16],
        ));
        native.push(started.elapsed());
    }
    native.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let (m, t, p) = shared::auth::password::PARAMS;
    println!("## sign-in latency, {LOGINS} sequential logins (argon2id m={m} KiB, t={t}, p={p})");
    println!("| measure | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| POST /v1/auth/login, client side | {} | {} |",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99))
    );
    println!(
        "| the same argon2id hash natively (baseline) | {} | {} |",
        ms(percentile(&native, 0.5)),
        ms(percentile(&native, 0.99))
    );
    println!();
    Ok(())
}

async fn throughput(addr: SocketAddr, routes: &[(&str, &str, Option<&str>)]) -> anyhow::Result<()> {
    println!("## requests/s, {LOAD_SECONDS} s per cell, keep-alive connections");
    println!("| route | concurrency | requests/s | p50 | p99 | vs no credential |");
    println!("|---|---|---|---|---|---|");
    for concurrency in [1usize, 16] {
        let mut baseline = None;
        for (name, path, credential) in routes {
            let started = Instant::now();
            let deadline = started + Duration::from_secs(LOAD_SECONDS);
            let workers = (0..concurrency)
                .map(|_| {
                    let path = path.to_string();
                    let credential = credential.map(str::to_string);
                    tokio::spawn(async move {
                        let mut connection = Connection::open(addr).await?;
                        let mut samples = Vec::new();
                        while Instant::now() < deadline {
                            let sent = Instant::now();
                            let response = connection
                                .send(request(addr, "GET", &path, credential.as_deref(), None)?)
                                .await?;
                            let status = response.status().as_u16();
                            response.into_body().collect().await?;
                            if status != 200 {
                                bail!("GET {path} answered {status}");
                            }
                            samples.push(sent.elapsed());
                        }
                        Ok(samples)
                    })
                })
                .collect();
            let summary = summarize(workers, started).await?;
            let base = *baseline.get_or_insert(summary.rate);
            let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
            println!(
                "| {name} | {concurrency} | {:.0} | {} | {} | {:.2}x |",
                summary.rate,
                ms(summary.p50),
                ms(summary.p99),
                summary.rate / base
            );
        }
    }
    println!();
    Ok(())
}

fn server_timing(values: &[String], name: &str) -> anyhow::Result<Duration> {
    let prefix = format!("{name};dur=");
    let ms: f64 = values
        .iter()
        .find_map(|v| v.strip_prefix(&prefix))
        .with_context(|| format!("no {name} in Server-Timing {values:?}"))?
        .parse()?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(credential) = credential {
        builder = builder.header(http::header::AUTHORIZATION, credential);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    Ok(builder.body(Full::new(body))?)
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let response =
        tests::send_request(addr, request(addr, method, path, credential, body)?).await?;
    tests::read_json(response).await
}

fn expect((status, body): (u16, Value), want: u16) -> anyhow::Result<Value> {
    if status != want {
        bail!("expected {want}, got {status}: {body}");
    }
    Ok(body)
}
