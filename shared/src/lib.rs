//! Domain types, validation and the one error vocabulary that every edgerag function shares.
//!
//! This crate is pure logic: it must not depend on spin-sdk, wasmtime, tokio or anything that does IO,
//! so that it builds natively and for `wasm32-wasip2` alike and is unit-tested with plain `cargo test`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod ingest;
pub mod net;
pub mod reply;
pub mod request;
pub mod respond;
pub mod route;
pub mod search;
pub mod service;

pub use error::ApiError;
pub use reply::Reply;
pub use route::{Endpoint, Route};
pub use service::Service;
