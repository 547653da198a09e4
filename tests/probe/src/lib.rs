//! A test fixture component for the host: each route exercises one runtime behaviour (variables, outbound
//! HTTP, traps, time limits, streaming). It is built and served by `tests/` only and is never deployed.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

type Answer = http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>>;

/// Requests this instance has served; a fresh instance per request always reports 1.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    // Empty segments are skipped, so `/users/42/headers/` (a trailing slash) still answers `headers`.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "hello"] => text(200, "hello from probe".into()),
        [.., "whoami"] => {
            let name = spin_sdk::variables::get("name").await.unwrap_or_default();
            text(200, name)
        }
        [.., "var", name] => match spin_sdk::variables::get(*name).await {
            Ok(value) => text(200, value),
            Err(error) => text(404, format!("{error:?}")),
        },
        [.., "headers"] => {
            let spin: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("spin-"))
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        value.to_str().unwrap_or_default().to_string().into(),
                    )
                })
                .collect();
            text(200, serde_json::Value::Object(spin).to_string())
        }
        [.., "outbound"] => {
            let url = query.strip_prefix("url=").unwrap_or_default().to_string();
            fetch(&url).await
        }
        [.., "instance"] => text(200, served.to_string()),
        // Calls this same route on this same component through local service chaining, forever: the
        // host must stop it.
        [.., "chain-self"] => {
            let name = spin_sdk::variables::get("name").await.unwrap_or_default();
            let url = format!("http://{name}.spin.internal{path}");
            fetch(&url).await
        }
        [.., "trap"] => panic!("the probe was asked to trap"),
        [.., "spin"] => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        [.., "sleep", ms] => {
            let ms: u64 = ms.parse().unwrap_or(0);
            spin_sdk::time::sleep(Duration::from_millis(ms)).await;
            let mut answer = text(200, format!("slept {ms} ms"));
            answer
                .headers_mut()
                .insert("x-probe-served", http::HeaderValue::from(served));
            answer
        }
        [.., "stream", n] => {
            let n: u32 = n.parse().unwrap_or(0);
            let chunks = futures::stream::iter(0..n).then(|i| async move {
                spin_sdk::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(format!("chunk {i}\n"))))
            });
            http::Response::new(StreamBody::new(chunks).boxed_unsync())
        }
        [.., "count"] => {
            let mut total: u64 = 0;
            let mut body = request.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len() as u64),
                    Err(error) => return text(400, format!("body error: {error:?}")),
                }
            }
            text(200, total.to_string())
        }
        _ => text(404, format!("no probe at {path}")),
    }
}

/// GETs `url` and answers `200 "<status> <body>"`, or 502 with the error.
async fn fetch(url: &str) -> Answer {
    match spin_sdk::http::get(url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await;
            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
            text(200, format!("{status} {}", String::from_utf8_lossy(&body)))
        }
        Err(error) => text(502, format!("outbound failed: {error:?}")),
    }
}

fn text(status: u16, body: String) -> Answer {
    let mut response = http::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = http::StatusCode::from_u16(status).expect("probe statuses are valid");
    response
}
