//! A WASI 0.2 test fixture for the host, built with spin-sdk 5 as every Spin app before spin-sdk 6 was:
//! it exports `wasi:http/incoming-handler@0.2.0` and imports `fermyon:spin/variables@2.0.0`,
//! `spin:variables/variables@3.0.0` (the synchronous one of Spin 3's SDKs) and outbound `wasi:http@0.2`.
//! Each route exercises one runtime behaviour. It is built and served by `tests/` only and is never
//! deployed.

// spin-sdk 5's `#[http_component]` expands to the ABI glue's `unsafe` in this crate; nothing else here is unsafe.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

mod spin3 {
    wit_bindgen::generate!({
        inline: "
            package edgerag:probe-p2;
            world spin3 { import spin:variables/variables@3.0.0; }
            package spin:variables@3.0.0 {
                interface variables {
                    get: func(name: string) -> result<string, error>;
                    variant error { invalid-name(string), undefined(string), provider(string), other(string) }
                }
            }
        ",
        generate_all,
    });
}

/// Requests this instance has served; a fresh instance per request always reports 1.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[http_component]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.path().to_string();
    let query = request.query().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match segments.as_slice() {
        [.., "hello"] => text(200, "hello from probe-p2".into()),
        [.., "whoami"] => text(200, spin_sdk::variables::get("name").unwrap_or_default()),
        [.., "var", name] => match spin_sdk::variables::get(name) {
            Ok(value) => text(200, value),
            Err(error) => text(404, format!("{error:?}")),
        },
        [.., "var3", name] => match spin3::spin::variables::variables::get(name) {
            Ok(value) => text(200, value),
            Err(error) => text(404, format!("{error:?}")),
        },
        [.., "headers"] => {
            let spin: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .filter(|(name, _)| name.starts_with("spin-"))
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        value.as_str().unwrap_or_default().to_string().into(),
                    )
                })
                .collect();
            text(200, serde_json::Value::Object(spin).to_string())
        }
        [.., "outbound"] => {
            let url = query.strip_prefix("url=").unwrap_or_default().to_string();
            match spin_sdk::http::send::<_, Response>(Request::get(url)).await {
                Ok(response) => text(
                    200,
                    format!(
                        "{} {}",
                        response.status(),
                        String::from_utf8_lossy(response.body())
                    ),
                ),
                Err(error) => text(502, format!("outbound failed: {error:?}")),
            }
        }
        [.., "instance"] => text(200, served.to_string()),
        [.., "echo"] => Response::builder()
            .status(200)
            .header("x-probe", "p2")
            .body(request.into_body())
            .build(),
        [.., "trap"] => panic!("the probe was asked to trap"),
        _ => text(404, format!("no probe at {path}")),
    })
}

fn text(status: u16, body: String) -> Response {
    Response::builder().status(status).body(body).build()
}
