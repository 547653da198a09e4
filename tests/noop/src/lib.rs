//! The smallest useful HTTP component: every request gets `200 ok`. Used by `bench-host` only.

#![forbid(unsafe_code)]

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn handle(_request: Request) -> impl IntoResponse {
    "ok"
}
