//! The embedded document store: the part of CouchDB's HTTP API that a document-oriented application
//! uses, on SQLite, on a loopback port, behind Basic auth with a generated secret.
//!
//! Production points the functions at a CouchDB cluster or Cloudant instead; the functions' adapter is
//! the same code for both.
//!
//! This crate is one server and nothing else: it knows nothing of wasmtime, manifests, the host or
//! the other embedded services. [`start`] takes a [`Config`] and gives back a running server.

#![forbid(unsafe_code)]

pub mod engine;
pub mod mango;
mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use embedded::{Credentials, Embedded};
use engine::{AllDocs, DocError, Engine};

/// Largest request body accepted (CouchDB's default `max_http_request_size` is larger; 64 MiB is
/// plenty for `_bulk_docs` batches and keeps memory bounded).
const MAX_BODY: usize = 64 << 20;

/// Where the store keeps its data, where it listens, and the user and secret clients must present.
#[derive(Debug, Clone)]
pub struct Config {
    /// The folder holding `documents.sqlite`; created if missing.
    pub dir: PathBuf,
    /// A loopback address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Checked as HTTP Basic auth on every request.
    pub credentials: Credentials,
}

/// Opens the store under `config.dir` and serves it on `config.addr`.
pub async fn start(config: Config) -> anyhow::Result<Embedded> {
    let Config {
        dir,
        addr,
        credentials,
    } = config;
    std::fs::create_dir_all(&dir)?;
    let engine = Arc::new(Engine::open(&dir.join("documents.sqlite"))?);
    let credentials = Arc::new(credentials);
    embedded::serve("docstore", addr, move |request| {
        let engine = engine.clone();
        let credentials = credentials.clone();
        async move { handle(engine, &credentials, request).await }
    })
    .await
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_reply(error: &DocError) -> Response<Full<Bytes>> {
    reply(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.body(),
    )
}

async fn handle(
    engine: Arc<Engine>,
    credentials: &Credentials,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let public = request.method() == Method::GET && (path == "/" || path == "/_up");
    if !public && !credentials.check_basic(request.headers()) {
        let reason = if request.headers().contains_key(http::header::AUTHORIZATION) {
            "Name or password is incorrect."
        } else {
            "Authentication required."
        };
        let mut response = error_reply(&DocError::new(401, "unauthorized", reason));
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"edgerag\""),
        );
        return response;
    }
    match route(engine, request).await {
        Ok((status, body)) => reply(status, &body),
        Err(error) => error_reply(&error),
    }
}

fn decode(segment: &str) -> Result<String, DocError> {
    embedded::percent_decode(segment)
        .ok_or_else(|| DocError::bad_request("invalid UTF-8 in the URL"))
}

fn query_params(request: &Request<Incoming>) -> Result<Vec<(String, String)>, DocError> {
    let Some(query) = request.uri().query() else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(&v.replace('+', " "))?))
        })
        .collect()
}

async fn read_json(request: Request<Incoming>, require_json_type: bool) -> Result<Value, DocError> {
    if require_json_type {
        let json_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json_type {
            return Err(DocError::new(
                415,
                "bad_content_type",
                "Content-Type must be application/json",
            ));
        }
    }
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| DocError::new(413, "too_large", "the request entity is too large"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| DocError::bad_request("invalid UTF-8 JSON"))
}

fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

fn bool_param(params: &[(String, String)], name: &str, default: bool) -> Result<bool, DocError> {
    match param(params, &[name]) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(DocError::new(
            400,
            "query_parse_error",
            format!("Invalid boolean parameter: {other:?}"),
        )),
    }
}

fn number_param(params: &[(String, String)], name: &str) -> Result<Option<usize>, DocError> {
    param(params, &[name])
        .map(|v| {
            v.parse().map_err(|_| {
                DocError::new(
                    400,
                    "query_parse_error",
                    format!("Invalid value for integer: {v:?}"),
                )
            })
        })
        .transpose()
}

/// `startkey` and friends are JSON-encoded in the query string.
fn key_param(params: &[(String, String)], names: &[&str]) -> Result<Option<String>, DocError> {
    param(params, names)
        .map(|raw| match serde_json::from_str::<Value>(raw) {
            Ok(Value::String(key)) => Ok(key),
            _ => Err(DocError::new(
                400,
                "query_parse_error",
                format!("Invalid key JSON: {raw}"),
            )),
        })
        .transpose()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DocError> + Send + 'static,
) -> Result<T, DocError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| DocError::new(500, "internal_server_error", "storage task failed"))?
}

async fn route(
    engine: Arc<Engine>,
    request: Request<Incoming>,
) -> Result<(StatusCode, Value), DocError> {
    let method = request.method().clone();
    let raw_path = request.uri().path().to_string();
    let segments: Vec<String> = raw_path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect::<Result<_, _>>()?;
    let params = query_params(&request)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let not_allowed = || {
        DocError::new(
            405,
            "method_not_allowed",
            "Only the documented methods are allowed here",
        )
    };

    match segments.as_slice() {
        [] => Ok((
            StatusCode::OK,
            json!({"couchdb": "Welcome", "version": "3.3.3", "vendor": {"name": "edgerag"}}),
        )),
        ["_up"] => Ok((StatusCode::OK, json!({"status": "ok"}))),
        ["_all_dbs"] if method == Method::GET => {
            let dbs = blocking(move || engine.list_dbs()).await?;
            Ok((StatusCode::OK, json!(dbs)))
        }
        ["_uuids"] if method == Method::GET => {
            let count = number_param(&params, "count")?.unwrap_or(1).min(1000);
            let uuids: Vec<String> = (0..count).map(|_| engine::new_id()).collect();
            Ok((StatusCode::OK, json!({"uuids": uuids})))
        }
        [special, ..] if special.starts_with('_') => Err(DocError::new(
            400,
            "illegal_database_name",
            format!(
                "Name: '{special}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
            ),
        )),
        [db] => {
            let db = db.to_string();
            match method {
                Method::PUT => {
                    blocking(move || engine.create_db(&db)).await?;
                    Ok((StatusCode::CREATED, json!({"ok": true})))
                }
                Method::DELETE => {
                    blocking(move || engine.delete_db(&db)).await?;
                    Ok((StatusCode::OK, json!({"ok": true})))
                }
                Method::GET | Method::HEAD => {
                    let info = blocking(move || engine.db_info(&db)).await?;
                    Ok((StatusCode::OK, info))
                }
                Method::POST => {
                    let doc = read_json(request, true).await?;
                    let (id, rev) = blocking(move || engine.put(&db, None, doc, None)).await?;
                    Ok((
                        StatusCode::CREATED,
                        json!({"ok": true, "id": id, "rev": rev}),
                    ))
                }
                _ => Err(not_allowed()),
            }
        }
        [db, "_all_docs"] => {
            let db = db.to_string();
            let mut query = AllDocs {
                start_key: key_param(&params, &["startkey", "start_key"])?,
                end_key: key_param(&params, &["endkey", "end_key"])?,
                inclusive_end: bool_param(&params, "inclusive_end", true)?,
                descending: bool_param(&params, "descending", false)?,
                limit: number_param(&params, "limit")?,
                skip: number_param(&params, "skip")?.unwrap_or(0),
                include_docs: bool_param(&params, "include_docs", false)?,
                keys: None,
            };
            if let Some(keys) = param(&params, &["keys"]) {
                query.keys = Some(parse_keys(
                    &serde_json::from_str(keys).unwrap_or(Value::Null),
                )?);
            }
            if method == Method::POST {
                let body = read_json(request, true).await?;
                query.keys = Some(parse_keys(body.get("keys").unwrap_or(&Value::Null))?);
            } else if method != Method::GET {
                return Err(not_allowed());
            }
            let result = blocking(move || engine.all_docs(&db, &query)).await?;
            Ok((StatusCode::OK, result))
        }
        [db, "_bulk_docs"] if method == Method::POST => {
            let db = db.to_string();
            let body = read_json(request, true).await?;
            let Some(Value::Array(docs)) = body.get("docs").cloned() else {
                return Err(DocError::bad_request(
                    "POST body must include `docs` parameter.",
                ));
            };
            let results = blocking(move || engine.bulk(&db, docs)).await?;
            Ok((StatusCode::CREATED, json!(results)))
        }
        [db, "_find"] if method == Method::POST => {
            let db = db.to_string();
            let body = read_json(request, true).await?;
            let found = blocking(move || engine.find(&db, &body)).await?;
            Ok((StatusCode::OK, found))
        }
        [db, "_index"] => {
            let db = db.to_string();
            match method {
                Method::POST => {
                    let body = read_json(request, true).await?;
                    let created = blocking(move || engine.create_index(&db, &body)).await?;
                    Ok((StatusCode::OK, created))
                }
                Method::GET => {
                    let listed = blocking(move || engine.list_indexes(&db)).await?;
                    Ok((StatusCode::OK, listed))
                }
                _ => Err(not_allowed()),
            }
        }
        [db, "_changes"] if method == Method::GET => {
            let db = db.to_string();
            let since: i64 = match param(&params, &["since"]) {
                None | Some("0") => 0,
                Some("now") => -1,
                Some(raw) => raw
                    .trim_matches('"')
                    .parse::<u32>()
                    .map(i64::from)
                    .map_err(|_| {
                        DocError::new(
                            400,
                            "bad_request",
                            format!("Malformed sequence supplied in 'since' parameter: {raw}"),
                        )
                    })?,
            };
            let limit = number_param(&params, "limit")?;
            let include_docs = bool_param(&params, "include_docs", false)?;
            let changes = blocking(move || {
                let since = if since < 0 {
                    engine.db_info(&db)?["update_seq"].as_i64().unwrap_or(0)
                } else {
                    since
                };
                engine.changes(&db, since, limit, include_docs)
            })
            .await?;
            Ok((StatusCode::OK, changes))
        }
        [db, rest @ ..] => {
            let id = match rest {
                [prefix @ ("_design" | "_local"), name] => format!("{prefix}/{name}"),
                [id] => id.to_string(),
                _ => return Err(DocError::new(404, "not_found", "missing")),
            };
            let db = db.to_string();
            let rev = param(&params, &["rev"]).map(str::to_string);
            match method {
                Method::GET | Method::HEAD => {
                    let doc = blocking(move || engine.get(&db, &id)).await?;
                    Ok((StatusCode::OK, doc))
                }
                Method::PUT => {
                    let doc = read_json(request, false).await?;
                    let (id, rev) = blocking(move || engine.put(&db, Some(&id), doc, rev)).await?;
                    Ok((
                        StatusCode::CREATED,
                        json!({"ok": true, "id": id, "rev": rev}),
                    ))
                }
                Method::DELETE => {
                    let rev = blocking({
                        let id = id.clone();
                        move || engine.delete(&db, &id, rev)
                    })
                    .await?;
                    Ok((StatusCode::OK, json!({"ok": true, "id": id, "rev": rev})))
                }
                _ => Err(not_allowed()),
            }
        }
    }
}

fn parse_keys(value: &Value) -> Result<Vec<String>, DocError> {
    match value {
        Value::Array(keys) => keys
            .iter()
            .map(|k| k.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| DocError::bad_request("`keys` must be an array of strings")),
        _ => Err(DocError::bad_request("`keys` must be an array of strings")),
    }
}
