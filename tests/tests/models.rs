//! The embedded model server over OpenAI's API: checked by OpenAI's own Python client (`openai`,
//! installed by scripts/install) against vectors made by Python sentence-transformers, and over raw
//! sockets for what a client cannot see: batching under concurrency, the queue limit, and
//! generation stopping when its client goes away.

use std::time::{Duration, Instant};

use embedded::Embedded;
use models::Which;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const API_KEY: &str = "model-server-test-key";

async fn server() -> Embedded {
    let which = Which {
        embeddings: true,
        chat: true,
        preload: false,
    };
    models::start(models::Config {
        dir: tests::models_dir(),
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key: API_KEY.into(),
        which,
    })
    .await
    .unwrap()
}

async fn post(server: &Embedded, path: &str, body: &Value) -> tests::Reply {
    let request = http::Request::post(path)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap();
    tests::exchange(server.addr, request).await.unwrap()
}

async fn health(server: &Embedded) -> Value {
    tests::get(server.addr, "/health").await.unwrap().json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_passes_the_conformance_checks() {
    let server = server().await;
    let url = format!("{}/v1", server.url());
    let reference = tests::workspace_root().join("tests/fixtures/minilm_reference.json");
    let result = tokio::task::spawn_blocking(move || {
        tests::run_python(
            "openai_conformance.py",
            &[&url, API_KEY, &reference.display().to_string()],
        )
    })
    .await
    .unwrap();
    let output = result.unwrap_or_else(|e| panic!("{e}"));
    println!("{output}");
    assert!(output.contains("checks passed"), "{output}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_embedding_requests_each_get_their_own_vectors() {
    let server = server().await;
    let texts: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "document {i} talks about topic {} in {} words",
                i * 7,
                i + 3
            )
        })
        .collect();
    // One at a time first: the answers each concurrent request must get back.
    let mut alone = Vec::new();
    for text in &texts {
        let reply = post(
            &server,
            "/v1/embeddings",
            &json!({"model": models::EMBEDDING_MODEL, "input": text}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        alone.push(vector(&reply.json()["data"][0]["embedding"]));
    }
    // Then all at once, in requests of one to three texts, which the worker batches together.
    let requests = texts.chunks(3).enumerate().flat_map(|(i, chunk)| {
        let split = (i % 3).min(chunk.len());
        [chunk[..split].to_vec(), chunk[split..].to_vec()]
    });
    let mut tasks = Vec::new();
    let mut offset = 0;
    for group in requests.filter(|g| !g.is_empty()) {
        let start = offset;
        offset += group.len();
        let body = json!({"model": models::EMBEDDING_MODEL, "input": group});
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let request = http::Request::post("/v1/embeddings")
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(body.to_string())
                .unwrap();
            (start, tests::exchange(addr, request).await.unwrap())
        }));
    }
    for task in tasks {
        let (start, reply) = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        for (i, item) in reply.json()["data"].as_array().unwrap().iter().enumerate() {
            let got = vector(&item["embedding"]);
            let dot: f32 = got.iter().zip(&alone[start + i]).map(|(a, b)| a * b).sum();
            assert!(
                dot > 0.9999,
                "text {} got another text's vector (cosine {dot})",
                start + i
            );
        }
    }
    server.stop().await;
}

fn vector(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_generation() {
    let server = server().await;
    // Long enough that it would run for minutes if nobody stopped it.
    let body = json!({
        "model": models::CHAT_MODEL,
        "messages": [{"role": "user", "content": "Tell me a very long story about the sea."}],
        "max_tokens": 2000,
        "temperature": 0.8,
        "stream": true,
    });
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.to_string().len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let read = socket.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..read]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert_eq!(
        health(&server).await["models"][models::CHAT_MODEL]["active"],
        1
    );
    drop(socket);
    let started = Instant::now();
    loop {
        let active = health(&server).await["models"][models::CHAT_MODEL]["active"].clone();
        if active == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "generation still running {:?} after the client left",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let server = server().await;
    let body = json!({
        "model": models::CHAT_MODEL,
        "messages": [{"role": "user", "content": "Count to twenty."}],
        "max_tokens": 48,
        "temperature": 0,
    });
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let addr = server.addr;
        let body = body.to_string();
        tasks.push(tokio::spawn(async move {
            let request = http::Request::post("/v1/chat/completions")
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(body)
                .unwrap();
            tests::exchange(addr, request).await.unwrap()
        }));
    }
    let (mut answered, mut refused) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            200 => answered += 1,
            429 => {
                refused += 1;
                assert_eq!(reply.headers["retry-after"], "1");
                assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    // At least a queue's worth (16) are answered, the rest are told to come back, none is dropped.
    assert!(answered >= 16, "answered {answered}");
    assert!(refused >= 1, "nobody was refused though 40 arrived at once");
    assert_eq!(answered + refused, 40);
    server.stop().await;
}
