//! The embedded vector store: the part of Qdrant's REST API a RAG application uses, on a loopback
//! port, behind an `api-key` generated on first start.
//!
//! Production points the functions at a Qdrant cluster instead; the functions' adapter is the same
//! code for both. Request and response shapes follow Qdrant's OpenAPI schema, and Qdrant's own Python
//! client (`qdrant-client`) is the conformance check.
//!
//! This crate is one server and nothing else: it knows nothing of wasmtime, manifests, the host or
//! the other embedded services. [`start`] takes a [`Config`] and gives back a running server; the
//! HTTP handlers here parse Qdrant's request shapes and call the [`engine`].

#![forbid(unsafe_code)]

pub mod engine;
mod error;
pub mod filter;
mod number;
mod point_id;
pub mod text;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use embedded::{ApiKey, Embedded, constant_time_eq, percent_decode};
use engine::{
    Collection, NewPoint, PayloadChange, PointId, QueryVector, Search, Selector, Store, VecError,
    With,
};
use filter::{Condition, Filter};

/// Largest request body accepted: Qdrant's default `max_request_size_mb`.
const MAX_BODY: usize = 32 << 20;
/// The Qdrant release whose REST API (the schema in shared/data/qdrant) this store follows; clients
/// compare its major and minor with their own.
pub const QDRANT_VERSION: &str = "1.20.0";
/// Default `k` of reciprocal rank fusion, Qdrant's: each list adds 1 / (position + k), positions from 0.
const RRF_K: f32 = 2.0;

/// Where the store keeps its data, where it listens, and the key clients must send.
#[derive(Debug, Clone)]
pub struct Config {
    /// The folder holding `vectors.sqlite`; created if missing.
    pub dir: PathBuf,
    /// A loopback address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Clients send it as `api-key` (or `authorization: Bearer`).
    pub api_key: ApiKey,
}

/// Opens the store under `config.dir` and serves it on `config.addr`.
pub async fn start(config: Config) -> anyhow::Result<Embedded> {
    let Config { dir, addr, api_key } = config;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vectors.sqlite");
    let store = tokio::task::spawn_blocking(move || Store::open(&path)).await??;
    let store = Arc::new(store);
    let api_key = Arc::new(api_key);
    embedded::serve("vectorstore", addr, move |request| {
        let store = store.clone();
        let api_key = api_key.clone();
        async move { handle(store, api_key.as_str(), request).await }
    })
    .await
}

fn envelope(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(result: Value, started: Instant) -> Response<Full<Bytes>> {
    envelope(
        StatusCode::OK,
        json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()}),
    )
}

fn error(error: &VecError, started: Instant) -> Response<Full<Bytes>> {
    envelope(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"status": {"error": error.message}, "time": started.elapsed().as_secs_f64()}),
    )
}

fn authorized(headers: &http::HeaderMap, api_key: &str) -> bool {
    let presented = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    presented.is_some_and(|key| constant_time_eq(key.trim().as_bytes(), api_key.as_bytes()))
}

async fn handle(
    store: Arc<Store>,
    api_key: &str,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).unwrap_or_else(|| s.to_string()))
        .collect();

    if method == Method::GET {
        match segments.as_slice() {
            [] => {
                return ok_raw(
                    json!({"title": "qdrant - vector search engine (edgerag embedded)",
                                     "version": QDRANT_VERSION}),
                );
            }
            [probe] if matches!(probe.as_str(), "healthz" | "livez" | "readyz") => {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(b"healthz check passed")));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                return response;
            }
            _ => {}
        }
    }
    if !authorized(request.headers(), api_key) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            json!({"status": {"error": "Must provide an API key or an Authorization bearer token"},
                   "time": started.elapsed().as_secs_f64()}),
        );
    }

    if let Err(e) = check_request_line(&segments, request.uri().query()) {
        return error(&e, started);
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return envelope(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"status": {"error": format!(
                    "Payload error: the request body is larger than {} bytes", MAX_BODY)},
                       "time": started.elapsed().as_secs_f64()}),
            );
        }
    };
    let outcome = tokio::task::spawn_blocking(move || route(&store, &method, &segments, &body))
        .await
        .unwrap_or_else(|_| {
            Err(VecError {
                status: 500,
                message: "Service internal error: the request failed".into(),
            })
        });
    match outcome {
        Ok(result) => ok(result, started),
        Err(e) => error(&e, started),
    }
}

/// Qdrant's checks of the path and query parameters, before the body is read: a collection name
/// of at most 255 bytes, and a `timeout` of at least one second.
fn check_request_line(segments: &[String], query: Option<&str>) -> Result<(), VecError> {
    if let [first, name, ..] = segments
        && first == "collections"
        && name.len() > 255
    {
        return Err(VecError {
            status: 422,
            message: format!(
                "Validation error in path parameters: [collection_name: value is {} bytes long, \
                 must be at most 255]",
                name.len()
            ),
        });
    }
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "timeout" && !value.parse::<u64>().is_ok_and(|t| t >= 1) {
            return Err(VecError {
                status: 422,
                message: format!(
                    "Validation error in query parameters: [timeout: value {value} invalid, \
                     must be 1 or larger]"
                ),
            });
        }
    }
    Ok(())
}

fn ok_raw(body: Value) -> Response<Full<Bytes>> {
    envelope(StatusCode::OK, body)
}

fn parse_body(body: &[u8]) -> Result<Value, VecError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| VecError::bad_request(format!("Format error in JSON body: {e}")))?;
    if !value.is_object() {
        return Err(VecError::bad_request(
            "Format error in JSON body: expected a JSON object",
        ));
    }
    Ok(value)
}

fn not_found() -> VecError {
    VecError {
        status: 404,
        message: "Not found: no such endpoint".into(),
    }
}

fn completed(operation: u64) -> Value {
    json!({"operation_id": operation, "status": "completed"})
}

fn route(
    store: &Store,
    method: &Method,
    segments: &[String],
    body: &[u8],
) -> Result<Value, VecError> {
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["collections"]) => {
            let names: Vec<Value> = store
                .names()
                .into_iter()
                .map(|n| json!({"name": n}))
                .collect();
            Ok(json!({"collections": names}))
        }
        (Method::GET, ["collections", name]) => {
            let shared = store.collection(name)?;
            let collection = read(&shared);
            Ok(collection.info())
        }
        (Method::GET, ["collections", name, "exists"]) => {
            Ok(json!({"exists": store.collection(name).is_ok()}))
        }
        (Method::PUT, ["collections", name]) => {
            store.create_collection(name, &parse_body(body)?)?;
            Ok(json!(true))
        }
        (Method::PATCH, ["collections", name]) => {
            store.update_collection(name, &parse_body(body)?)?;
            Ok(json!(true))
        }
        (Method::DELETE, ["collections", name]) => Ok(json!(store.delete_collection(name)?)),
        (Method::PUT, ["collections", name, "index"]) => {
            let body = parse_body(body)?;
            let field = body["field_name"].as_str().ok_or_else(|| {
                VecError::bad_request("Format error in JSON body: field_name is required")
            })?;
            Ok(completed(store.create_index(
                name,
                field,
                &body["field_schema"],
            )?))
        }
        (Method::DELETE, ["collections", name, "index", field]) => {
            Ok(completed(store.delete_index(name, field)?))
        }
        (Method::PUT, ["collections", name, "vectors", vector]) => Ok(completed(
            store.create_vector(name, vector, &parse_body(body)?)?,
        )),
        (Method::DELETE, ["collections", name, "vectors", vector]) => {
            Ok(completed(store.delete_vector(name, vector)?))
        }
        (Method::PUT, ["collections", name, "points"]) => upsert(store, name, &parse_body(body)?),
        (Method::POST, ["collections", name, "points"]) => {
            retrieve(store, name, &parse_body(body)?)
        }
        (Method::GET, ["collections", name, "points", id]) => {
            let id = PointId::parse(&Value::String((*id).to_string()))?;
            let shared = store.collection(name)?;
            let collection = read(&shared);
            let with = With::parse(&Value::Bool(true), &Value::Bool(true), true)?;
            collection
                .slot_of(&id)
                .and_then(|slot| collection.record(slot, &with))
                .map(|r| Value::Object(without_version(r)))
                .ok_or_else(|| VecError::no_point(&id))
        }
        (Method::POST, ["collections", name, "points", "delete"]) => {
            let body = parse_body(body)?;
            Ok(completed(store.delete_points(name, selector_of(&body)?)?))
        }
        (Method::POST, ["collections", name, "points", "payload"]) => {
            payload_write(store, name, "set_payload", &parse_body(body)?)
        }
        (Method::PUT, ["collections", name, "points", "payload"]) => {
            payload_write(store, name, "overwrite_payload", &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "payload", "delete"]) => {
            payload_write(store, name, "delete_payload", &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "payload", "clear"]) => {
            payload_write(store, name, "clear_payload", &parse_body(body)?)
        }
        (Method::PUT, ["collections", name, "points", "vectors"]) => {
            update_vectors(store, name, &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "vectors", "delete"]) => {
            delete_vectors(store, name, &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "batch"]) => {
            batch(store, name, &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "scroll"]) => {
            scroll(store, name, &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "count"]) => {
            let body = parse_body(body)?;
            let filter = filter::parse(&body["filter"])?;
            let shared = store.collection(name)?;
            let collection = read(&shared);
            let count = match &filter {
                None => collection.len(),
                Some(f) => collection.scan(Some(f), None).count(),
            };
            Ok(json!({"count": count}))
        }
        (Method::POST, ["collections", name, "points", "query"]) => {
            let body = resolve_lookup(store, name, parse_body(body)?)?;
            let shared = store.collection(name)?;
            let collection = read(&shared);
            query(&collection, &body)
        }
        (Method::POST, ["collections", name, "facet"]) => facet(store, name, &parse_body(body)?),
        (Method::POST, ["collections", name, "points", "query", "groups"]) => {
            query_groups(store, name, &parse_body(body)?)
        }
        (Method::POST, ["collections", name, "points", "query", "batch"]) => {
            let mut body = parse_body(body)?;
            let Value::Array(searches) = body["searches"].take() else {
                return Err(VecError::bad_request(
                    "Format error in JSON body: `searches` must be a list",
                ));
            };
            let searches = searches
                .into_iter()
                .map(|s| resolve_lookup(store, name, s))
                .collect::<Result<Vec<_>, _>>()?;
            let shared = store.collection(name)?;
            let collection = read(&shared);
            let results = in_parallel(&searches, |s| query(&collection, s))
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(results))
        }
        (Method::POST, ["collections", name, "points", "search"]) => {
            let shared = store.collection(name)?;
            let collection = read(&shared);
            legacy_search(&collection, &parse_body(body)?)
        }
        _ => Err(not_found()),
    }
}

/// `f` of each item, in order, the items shared out over the machine's cores: a batch's searches
/// (a hybrid search's dense and keyword halves) take the time of the slowest, not of all together.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < 2 || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(per_thread);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut results: Vec<R> = first.iter().map(f).collect();
        for other in others {
            results.extend(
                other
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        results
    })
}

fn read(shared: &engine::Shared) -> std::sync::RwLockReadGuard<'_, Collection> {
    shared.read().unwrap_or_else(|p| p.into_inner())
}

fn without_version(mut record: Map<String, Value>) -> Map<String, Value> {
    record.remove("version");
    record
}

fn point_ids(value: &Value) -> Result<Vec<PointId>, VecError> {
    value
        .as_array()
        .ok_or_else(|| VecError::bad_request("Format error in JSON body: ids must be a list"))?
        .iter()
        .map(PointId::parse)
        .collect()
}

fn payload_object(value: &Value) -> Result<Map<String, Value>, VecError> {
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(o) => Ok(o.clone()),
        _ => Err(VecError::bad_request(
            "Format error in JSON body: payload must be an object",
        )),
    }
}

fn upsert(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let shared = store.collection(name)?;
    let points = {
        let collection = read(&shared);
        let mut points = Vec::new();
        if let Some(list) = body.get("points") {
            let list = list.as_array().ok_or_else(|| {
                VecError::bad_request("Format error in JSON body: `points` must be a list")
            })?;
            for (i, point) in list.iter().enumerate() {
                let id = PointId::parse(&point["id"])?;
                let vectors =
                    collection.parse_vectors(&point["vector"], &format!("points[{i}]"))?;
                points.push(NewPoint {
                    id,
                    payload: payload_object(&point["payload"])?,
                    vectors,
                });
            }
        } else if let Some(batch) = body.get("batch") {
            let ids = point_ids(&batch["ids"])?;
            let nth_vector = |i: usize| -> Value {
                match &batch["vectors"] {
                    Value::Array(list) => list.get(i).cloned().unwrap_or(Value::Null),
                    Value::Object(named) => Value::Object(
                        named
                            .iter()
                            .filter_map(|(n, list)| Some((n.clone(), list.get(i)?.clone())))
                            .collect(),
                    ),
                    _ => Value::Null,
                }
            };
            for (i, id) in ids.into_iter().enumerate() {
                let payload = batch["payloads"].get(i).cloned().unwrap_or(Value::Null);
                points.push(NewPoint {
                    id,
                    payload: payload_object(&payload)?,
                    vectors: collection
                        .parse_vectors(&nth_vector(i), &format!("batch.vectors[{i}]"))?,
                });
            }
        } else {
            return Err(VecError::bad_request(
                "Format error in JSON body: expected `points` or `batch`",
            ));
        }
        points
    };
    // Qdrant's conditional upsert: a point that exists is replaced only if it matches
    // `update_filter`; new points are inserted.
    let Some(condition) = filter::parse(&body["update_filter"])? else {
        return Ok(completed(store.upsert(name, points)?));
    };
    let operation = store.upsert_with(name, |collection| {
        Ok(points
            .into_iter()
            .filter(|p| {
                collection
                    .slot_of(&p.id)
                    .is_none_or(|slot| collection.matches(slot, Some(&condition)))
            })
            .collect())
    })?;
    Ok(completed(operation))
}

/// `PUT points/vectors`: new vectors for existing points, the others they hold kept; an unknown
/// point fails the whole request; with `update_filter`, points not matching it are left alone.
fn update_vectors(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let list = body["points"].as_array().ok_or_else(|| {
        VecError::bad_request("Format error in JSON body: `points` must be a list")
    })?;
    // As for upsert: with `update_filter`, only points matching it change.
    let condition = filter::parse(&body["update_filter"])?;
    let operation = store.upsert_with(name, |collection| {
        let mut points: Vec<NewPoint> = Vec::with_capacity(list.len());
        for (i, point) in list.iter().enumerate() {
            let id = PointId::parse(&point["id"])?;
            if point["vector"].as_object().is_some_and(Map::is_empty) {
                return Err(VecError::validation(format!(
                    "[points[{i}].vector: must specify vectors to update for point]"
                )));
            }
            let slot = collection
                .slot_of(&id)
                .ok_or_else(|| VecError::no_point(&id))?;
            let new = collection.parse_vectors(&point["vector"], &format!("points[{i}]"))?;
            if !collection.matches(slot, condition.as_ref()) {
                continue;
            }
            // The same point twice: the later update applies over the earlier one.
            let mut vectors = match points.iter().position(|p| p.id == id) {
                Some(k) => points.remove(k).vectors,
                None => collection.point_vectors(slot).unwrap_or_default(),
            };
            vectors.merge(new);
            let payload = collection.payload_of(slot).cloned().unwrap_or_default();
            points.push(NewPoint {
                id,
                payload,
                vectors,
            });
        }
        Ok(points)
    })?;
    Ok(completed(operation))
}

/// `POST points/vectors/delete`: drops the named vectors of the selected points.
fn delete_vectors(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let names: Vec<&str> = body["vector"]
        .as_array()
        .and_then(|list| list.iter().map(Value::as_str).collect())
        .ok_or_else(|| {
            VecError::bad_request("Format error in JSON body: `vector` must be a list of names")
        })?;
    let selector = selector_of(body)?;
    let operation = store.upsert_with(name, |collection| {
        if let Some(unknown) = names.iter().find(|n| !collection.has_vector_name(n)) {
            return Err(VecError::wrong_input(format!(
                "Not existing vector name error: {unknown}"
            )));
        }
        let slots: Vec<u32> = match &selector {
            Selector::Ids(ids) => ids.iter().filter_map(|id| collection.slot_of(id)).collect(),
            Selector::Filter(filter) => collection.scan(Some(filter), None).collect(),
        };
        Ok(slots
            .into_iter()
            .filter_map(|slot| {
                let mut vectors = collection.point_vectors(slot)?;
                names.iter().for_each(|n| vectors.remove(n));
                Some(NewPoint {
                    id: collection.id_of(slot)?.clone(),
                    payload: collection.payload_of(slot)?.clone(),
                    vectors,
                })
            })
            .collect())
    })?;
    Ok(completed(operation))
}

fn retrieve(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let ids = point_ids(&body["ids"])?;
    let with = With::parse(&body["with_payload"], with_vector_of(body), true)?;
    let shared = store.collection(name)?;
    let collection = read(&shared);
    collection.check_vector_names(&with)?;
    let records: Vec<Value> = ids
        .iter()
        .filter_map(|id| collection.slot_of(id))
        .filter_map(|slot| collection.record(slot, &with))
        .map(|r| Value::Object(without_version(r)))
        .collect();
    Ok(Value::Array(records))
}

/// One of the payload writes, named as `points/batch` names them; the same body as its endpoint.
fn payload_write(store: &Store, name: &str, kind: &str, body: &Value) -> Result<Value, VecError> {
    let change = match kind {
        "set_payload" => {
            let key = match &body["key"] {
                Value::Null => None,
                Value::String(key) if !key.is_empty() => Some(key.clone()),
                _ => {
                    return Err(VecError::bad_request(
                        "Format error in JSON body: key must be a non-empty string",
                    ));
                }
            };
            PayloadChange::Set {
                values: payload_of(body)?,
                key,
            }
        }
        "overwrite_payload" => PayloadChange::Overwrite(payload_of(body)?),
        "delete_payload" => {
            let keys = body["keys"]
                .as_array()
                .and_then(|keys| {
                    keys.iter()
                        .map(|k| k.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    VecError::bad_request(
                        "Format error in JSON body: keys must be a list of strings",
                    )
                })?;
            PayloadChange::Delete(keys)
        }
        _ => PayloadChange::Clear,
    };
    Ok(completed(store.update_payload(
        name,
        selector_of(body)?,
        &change,
    )?))
}

/// `POST points/batch`: update operations applied in order, each as its own endpoint would; the
/// first that fails stops the batch (the ones before it stay applied, as on Qdrant).
fn batch(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let operations = body["operations"].as_array().ok_or_else(|| {
        VecError::bad_request("Format error in JSON body: operations must be a list")
    })?;
    store.collection(name)?;
    let mut results = Vec::with_capacity(operations.len());
    for operation in operations {
        let (kind, inner) = operation
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
            .ok_or_else(|| {
                VecError::bad_request(
                    "Format error in JSON body: each operation is an object with one key",
                )
            })?;
        let result = match kind.as_str() {
            "upsert" => upsert(store, name, inner)?,
            "delete" => completed(store.delete_points(name, selector_of(inner)?)?),
            "update_vectors" => update_vectors(store, name, inner)?,
            "delete_vectors" => delete_vectors(store, name, inner)?,
            "set_payload" | "overwrite_payload" | "delete_payload" | "clear_payload" => {
                payload_write(store, name, kind, inner)?
            }
            other => {
                return Err(VecError::bad_request(format!(
                    "Format error in JSON body: batch operation `{other}` is not supported by this store"
                )));
            }
        };
        results.push(result);
    }
    Ok(Value::Array(results))
}

/// Which points a write is for: `points` (a list of ids) or `filter`.
fn selector_of(body: &Value) -> Result<Selector, VecError> {
    if let Some(ids) = body.get("points").filter(|v| !v.is_null()) {
        Ok(Selector::Ids(point_ids(ids)?))
    } else if let Some(filter) = filter::parse(&body["filter"])? {
        Ok(Selector::Filter(filter))
    } else {
        Err(VecError::bad_request(
            "Format error in JSON body: expected `points` (a list of ids) or `filter`",
        ))
    }
}

/// The `payload` object of a payload write.
fn payload_of(body: &Value) -> Result<Map<String, Value>, VecError> {
    body["payload"].as_object().cloned().ok_or_else(|| {
        VecError::bad_request("Format error in JSON body: payload must be an object")
    })
}

fn limit_of(value: &Value, default: usize) -> Result<usize, VecError> {
    match value {
        Value::Null => Ok(default),
        v => v.as_u64().map(|n| n as usize).ok_or_else(|| {
            VecError::bad_request(
                "Format error in JSON body: limits and offsets are non-negative integers",
            )
        }),
    }
}

fn scroll(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    if body.get("order_by").is_some_and(|v| !v.is_null()) {
        return ordered_scroll(store, name, body);
    }
    let filter = filter::parse(&body["filter"])?;
    let limit = limit_of(&body["limit"], 10)?;
    let from = match &body["offset"] {
        Value::Null => None,
        id => Some(PointId::parse(id)?),
    };
    let with = With::parse(&body["with_payload"], with_vector_of(body), true)?;
    let shared = store.collection(name)?;
    let collection = read(&shared);
    collection.check_vector_names(&with)?;
    let mut slots = collection.scan(filter.as_ref(), from.as_ref());
    let page: Vec<u32> = slots.by_ref().take(limit).collect();
    let next = slots
        .next()
        .and_then(|slot| collection.id_of(slot))
        .map_or(Value::Null, PointId::to_json);
    let points: Vec<Value> = page
        .into_iter()
        .filter_map(|slot| collection.record(slot, &with))
        .map(|r| Value::Object(without_version(r)))
        .collect();
    Ok(json!({"points": points, "next_page_offset": next}))
}

/// What `order_by` sorts on: a number, or a datetime as microseconds since the epoch.
fn order_value(value: &Value, schema: &str) -> Option<f64> {
    match (schema, value) {
        ("datetime", Value::String(text)) => filter::datetime_micros(text).map(|m| m as f64),
        (_, Value::Number(n)) => n.as_f64(),
        _ => None,
    }
}

/// `scroll` with `order_by`, as Qdrant serves it: every (point, value) pair of the key's values in
/// order (a point with two values appears twice), from `start_from` on, with no page offset (the
/// client pages with `start_from` and a `has_id` exclusion). The key needs a range-capable index.
/// An `order_by` (a key, or `{key, direction, start_from}`): the key, whether descending, and where
/// to start.
fn order_spec(value: &Value) -> Result<(String, bool, Value), VecError> {
    Ok(match value {
        Value::String(key) => (key.clone(), false, Value::Null),
        Value::Object(o) => {
            let key = o.get("key").and_then(Value::as_str).ok_or_else(|| {
                VecError::bad_request("Format error in JSON body: order_by.key is required")
            })?;
            let descending = match o.get("direction").and_then(Value::as_str) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(VecError::bad_request(format!(
                        "Format error in JSON body: order_by.direction is asc or desc, not {other}"
                    )));
                }
            };
            let start = o.get("start_from").cloned().unwrap_or(Value::Null);
            (key.to_string(), descending, start)
        }
        _ => {
            return Err(VecError::bad_request(
                "Format error in JSON body: order_by is a key or {key, direction, start_from}",
            ));
        }
    })
}

/// The range index schema `order_by` needs on `key`.
fn order_schema(collection: &Collection, key: &str) -> Result<String, VecError> {
    match collection.index_schema(key) {
        Some(schema @ ("integer" | "float" | "datetime")) => Ok(schema.to_string()),
        _ => Err(VecError::bad_request(format!(
            "Bad request: No range index for `order_by` key: `{key}`. Create an integer, float or \
             datetime payload index on it to use order_by"
        ))),
    }
}

/// `slots` by their values of `key` (a point once per value, as Qdrant orders), from `start`.
fn ordered_entries(
    collection: &Collection,
    slots: impl Iterator<Item = u32>,
    key: &str,
    schema: &str,
    descending: bool,
    start: Option<f64>,
) -> Vec<(f64, u32)> {
    let mut entries: Vec<(f64, u32)> = Vec::new();
    for slot in slots {
        let Some(payload) = collection.payload_of(slot) else {
            continue;
        };
        for value in filter::values_at(payload, key) {
            let Some(x) = order_value(value, schema) else {
                continue;
            };
            let from_start = start.is_none_or(|s| if descending { x <= s } else { x >= s });
            if from_start {
                entries.push((x, slot));
            }
        }
    }
    entries.sort_by(|a, b| {
        let by_value = if descending {
            b.0.total_cmp(&a.0)
        } else {
            a.0.total_cmp(&b.0)
        };
        by_value.then(a.1.cmp(&b.1))
    });
    entries
}

fn start_of(start_from: &Value, schema: &str) -> Result<Option<f64>, VecError> {
    match start_from {
        Value::Null => Ok(None),
        value => Ok(Some(order_value(value, schema).ok_or_else(|| {
            VecError::bad_request(
                "Format error in JSON body: order_by.start_from must be a number or a datetime",
            )
        })?)),
    }
}

fn ordered_scroll(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let (key, descending, start_from) = order_spec(&body["order_by"])?;
    if !body["offset"].is_null() {
        return Err(VecError::bad_request(
            "Bad request: Can't use offset with order_by; page with order_by.start_from instead",
        ));
    }
    let filter = filter::parse(&body["filter"])?;
    let limit = limit_of(&body["limit"], 10)?;
    let with = With::parse(&body["with_payload"], with_vector_of(body), true)?;
    let shared = store.collection(name)?;
    let collection = read(&shared);
    collection.check_vector_names(&with)?;
    let schema = order_schema(&collection, &key)?;
    let start = start_of(&start_from, &schema)?;
    let entries = ordered_entries(
        &collection,
        collection.scan(filter.as_ref(), None),
        &key,
        &schema,
        descending,
        start,
    );
    let points: Vec<Value> = entries
        .into_iter()
        .take(limit)
        .filter_map(|(x, slot)| {
            let mut record = without_version(collection.record(slot, &with)?);
            let order = if schema == "integer" || schema == "datetime" {
                json!(x as i64)
            } else {
                json!(x)
            };
            record.insert("order_value".into(), order);
            Some(Value::Object(record))
        })
        .collect();
    Ok(json!({"points": points, "next_page_offset": Value::Null}))
}

/// A request's `with_vector`, or `with_vectors`, Qdrant's alias of it (issue 16, item 7).
fn with_vector_of(body: &Value) -> &Value {
    match &body["with_vector"] {
        Value::Null => &body["with_vectors"],
        given => given,
    }
}

/// What a query or prefetch asks for.
enum Ask {
    Nothing,
    Vector(QueryVector),
    /// Reciprocal rank fusion with its `k` and, optionally, one weight per prefetch.
    Fusion(f32, Option<Vec<f32>>),
    /// Distribution-based score fusion: each prefetch's scores normalised over its own spread.
    Dbsf,
    /// `order_by`: points by a payload value (the value is the score).
    OrderBy {
        key: String,
        descending: bool,
        start_from: Value,
    },
    /// Each candidate scored on its own against examples.
    Scored(Scoring),
    /// `nearest` with `mmr`: the `candidates` nearest, then picked one by one for relevance less
    /// `diversity` times the likeness to those already picked.
    Mmr {
        query: QueryVector,
        diversity: f32,
        candidates: usize,
    },
}

/// Maximal marginal relevance over `candidates` (slot, score) of `query`: returns `want` of them in
/// the order picked, each with its score from the search.
fn maximal_marginal_relevance(
    collection: &Collection,
    using: &str,
    query: &QueryVector,
    candidates: Vec<(u32, f32)>,
    diversity: f32,
    want: usize,
) -> Vec<(u32, f32)> {
    let query = collection.prepare_query(using, query.clone());
    let relevance: Vec<f32> = candidates
        .iter()
        .map(|(slot, _)| {
            collection
                .similarity(using, *slot, &query)
                .unwrap_or(f32::NEG_INFINITY)
        })
        .collect();
    let vectors: Vec<Option<QueryVector>> = candidates
        .iter()
        .map(|(slot, _)| collection.vector_query(using, *slot))
        .collect();
    // For each candidate, its greatest likeness to anything picked so far.
    let mut likeness = vec![f32::NEG_INFINITY; candidates.len()];
    let mut picked = vec![false; candidates.len()];
    let mut order = Vec::with_capacity(want.min(candidates.len()));
    while order.len() < want.min(candidates.len()) {
        let mmr = |i: usize| {
            let penalty = if likeness[i].is_finite() {
                likeness[i]
            } else {
                0.0
            };
            (1.0 - diversity) * relevance[i] - diversity * penalty
        };
        let Some(next) = (0..candidates.len())
            .filter(|&i| !picked[i])
            .max_by(|&a, &b| mmr(a).total_cmp(&mmr(b)).then(b.cmp(&a)))
        else {
            break;
        };
        picked[next] = true;
        order.push(candidates[next]);
        if let Some(chosen) = &vectors[next] {
            for (i, (slot, _)) in candidates.iter().enumerate() {
                if !picked[i]
                    && let Some(sim) = collection.similarity(using, *slot, chosen)
                {
                    likeness[i] = likeness[i].max(sim);
                }
            }
        }
    }
    order
}

/// Queries that score each point against examples (prepared with [`Collection::prepare_query`]).
enum Scoring {
    /// `recommend` with `best_score` (`sum: false`) or `sum_scores`.
    Recommend {
        positive: Vec<QueryVector>,
        negative: Vec<QueryVector>,
        sum: bool,
    },
    /// `discover` (with a target) and `context` (without): pairs of (positive, negative).
    Discover {
        target: Option<QueryVector>,
        pairs: Vec<(QueryVector, QueryVector)>,
    },
    /// `sample: random`, seeded per request.
    Random(std::collections::hash_map::RandomState),
}

/// Maps a similarity onto (0, 1), keeping its order (Qdrant's fast sigmoid).
fn squash(x: f32) -> f32 {
    0.5 * (x / (1.0 + x.abs()) + 1.0)
}

impl Scoring {
    fn score(&self, collection: &Collection, using: &str, slot: u32) -> Option<f32> {
        let sim = |q: &QueryVector| collection.similarity(using, slot, q);
        let best = |list: &[QueryVector]| -> Option<f32> {
            list.iter()
                .map(sim)
                .try_fold(f32::NEG_INFINITY, |m, s| Some(m.max(s?)))
        };
        match self {
            Scoring::Recommend {
                positive,
                negative,
                sum: false,
            } => {
                let p = best(positive)?;
                if negative.is_empty() {
                    return Some(p);
                }
                // Closer to a positive than to any negative: ranked above every point that is
                // closer to a negative, by how close.
                let n = best(negative)?;
                Some(if p > n { squash(p) } else { -squash(n) })
            }
            Scoring::Recommend {
                positive,
                negative,
                sum: true,
            } => {
                let total = |list: &[QueryVector]| list.iter().map(sim).sum::<Option<f32>>();
                Some(total(positive)? - total(negative)?)
            }
            Scoring::Discover { target, pairs } => {
                let mut rank = 0.0;
                let mut loss = 0.0;
                for (positive, negative) in pairs {
                    let difference = sim(positive)? - sim(negative)?;
                    rank += if difference > 0.0 { 1.0 } else { -1.0 };
                    loss += difference.min(0.0);
                }
                match target {
                    // Discovery: how many pairs the point sits on the positive side of, then
                    // closeness to the target within the same rank.
                    Some(target) => Some(rank + squash(sim(target)?)),
                    // Context: how far the point is on the wrong side of its pairs.
                    None => Some(loss),
                }
            }
            Scoring::Random(seed) => {
                use std::hash::BuildHasher;
                Some((seed.hash_one(slot) >> 40) as f32 / (1u64 << 24) as f32)
            }
        }
    }
}

/// The vector `using` of the point `id`, as a query.
fn point_vector(
    collection: &Collection,
    id: &PointId,
    using: &str,
) -> Result<QueryVector, VecError> {
    QueryVector::parse(&vector_json(collection, id, using)?)
}

/// The vector `using` of the point `id`, as JSON.
fn vector_json(collection: &Collection, id: &PointId, using: &str) -> Result<Value, VecError> {
    let slot = collection
        .slot_of(id)
        .ok_or_else(|| VecError::no_point(id))?;
    let with = With {
        payload: engine::WithPayload::None,
        vectors: engine::WithVectors::Named(vec![using.to_string()]),
    };
    let record = collection.record(slot, &with).unwrap_or_default();
    let vector = match &record["vector"] {
        Value::Object(named) => named.get(using).cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    if vector.is_null() {
        return Err(VecError::bad_request(format!(
            "Wrong input: point {} has no vector `{using}`",
            id.to_json()
        )));
    }
    Ok(vector)
}

/// Qdrant's 404 for a `lookup_from` or `with_lookup` collection that does not exist.
fn no_lookup(name: &str) -> VecError {
    VecError {
        status: 404,
        message: format!("Not found: Collection {name} not found"),
    }
}

/// `lookup_from: {collection, vector}`: the point ids a query gives as examples (or as its
/// `nearest`) are read from that collection's vector (`vector`, else the query's `using`), so they
/// become vectors here and are not left out of the results. Applies to the body and its prefetches.
/// Takes the body by value: a query without `lookup_from` passes through uncopied.
fn resolve_lookup(store: &Store, own: &str, mut body: Value) -> Result<Value, VecError> {
    if let Some(prefetch) = body.get_mut("prefetch") {
        match prefetch {
            Value::Array(list) => {
                for p in list.iter_mut() {
                    *p = resolve_lookup(store, own, p.take())?;
                }
            }
            one @ Value::Object(_) => *one = resolve_lookup(store, own, one.take())?,
            _ => {}
        }
    }
    let lookup = match body.get("lookup_from") {
        None | Some(Value::Null) => return Ok(body),
        Some(lookup) => lookup.clone(),
    };
    let name = lookup["collection"].as_str().ok_or_else(|| {
        VecError::bad_request("Format error in JSON body: lookup_from.collection is required")
    })?;
    let vector = match (&lookup["vector"], &body["using"]) {
        (Value::String(v), _) | (Value::Null, Value::String(v)) => v.clone(),
        _ => String::new(),
    };
    let shared = store.collection(name).map_err(|_| no_lookup(name))?;
    let using = body["using"].as_str().unwrap_or_default();
    if name == own && vector == using {
        // Examples from this very collection and vector: the ids stay ids (left out of the results,
        // as without lookup_from).
        body.as_object_mut().map(|o| o.remove("lookup_from"));
        return Ok(body);
    }
    // Runs before the query takes its own read lock, so no lock is held twice.
    let other = read(&shared);
    if !other.has_vector_name(&vector) {
        return Err(VecError::wrong_input(format!(
            "Not existing vector name error: {vector}"
        )));
    }
    let to_vector = |value: &mut Value| -> Result<(), VecError> {
        if matches!(value, Value::Number(_) | Value::String(_)) {
            let id = PointId::parse(value)?;
            *value = vector_json(&other, &id, &vector)?;
        }
        Ok(())
    };
    let each = |value: Option<&mut Value>| -> Result<(), VecError> {
        match value {
            Some(Value::Array(list)) => list.iter_mut().try_for_each(to_vector),
            Some(one) => to_vector(one),
            None => Ok(()),
        }
    };
    let pairs = |value: Option<&mut Value>| -> Result<(), VecError> {
        let list: Vec<&mut Value> = match value {
            Some(Value::Array(list)) => list.iter_mut().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        for pair in list {
            each(pair.get_mut("positive"))?;
            each(pair.get_mut("negative"))?;
        }
        Ok(())
    };
    let query = &mut body["query"];
    to_vector(query)?;
    if let Some(o) = query.as_object_mut() {
        if let Some(nearest) = o.get_mut("nearest") {
            to_vector(nearest)?;
        }
        if let Some(recommend) = o.get_mut("recommend") {
            each(recommend.get_mut("positive"))?;
            each(recommend.get_mut("negative"))?;
        }
        if let Some(discover) = o.get_mut("discover") {
            each(discover.get_mut("target"))?;
            pairs(discover.get_mut("context"))?;
        }
        pairs(o.get_mut("context"))?;
    }
    drop(other);
    Ok(body)
}

/// An example of a recommend, discover or context query: a point id (its vector; the point is then
/// left out of the results) or a vector.
fn example(
    collection: &Collection,
    value: &Value,
    using: &str,
    excluded: &mut Vec<PointId>,
) -> Result<QueryVector, VecError> {
    let query = match value {
        Value::Number(_) | Value::String(_) => {
            let id = PointId::parse(value)?;
            let vector = point_vector(collection, &id, using)?;
            excluded.push(id);
            vector
        }
        _ => QueryVector::parse(value)?,
    };
    Ok(collection.prepare_query(using, query))
}

fn examples(
    collection: &Collection,
    value: Option<&Value>,
    using: &str,
    excluded: &mut Vec<PointId>,
) -> Result<Vec<QueryVector>, VecError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| example(collection, v, using, excluded))
            .collect(),
        Some(_) => Err(VecError::bad_request(
            "Format error in JSON body: examples are a list of point ids or vectors",
        )),
    }
}

/// The context pairs of a discover or context query: one `{positive, negative}` or a list.
fn pairs(
    collection: &Collection,
    value: &Value,
    using: &str,
    excluded: &mut Vec<PointId>,
) -> Result<Vec<(QueryVector, QueryVector)>, VecError> {
    let list: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(list) => list.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(VecError::bad_request(
                "Format error in JSON body: context is a pair {positive, negative} or a list of them",
            ));
        }
    };
    list.into_iter()
        .map(|pair| {
            Ok((
                example(collection, &pair["positive"], using, excluded)?,
                example(collection, &pair["negative"], using, excluded)?,
            ))
        })
        .collect()
}

/// `recommend`: `average_vector` (the default) searches with `avg(positive) + avg(positive) -
/// avg(negative)`; `best_score` and `sum_scores` score each point against the examples.
fn recommend(
    collection: &Collection,
    body: &Value,
    using: &str,
    excluded: &mut Vec<PointId>,
) -> Result<Ask, VecError> {
    let given = |key: &str| body[key].as_array().is_some_and(|list| !list.is_empty());
    if !given("positive") && !given("negative") {
        // A rule of the request's shape, so Qdrant's 422 rather than a 400 of the query.
        return Err(VecError::validation(
            "[recommend: at least one positive or negative example is needed]",
        ));
    }
    let positive = examples(collection, body.get("positive"), using, excluded)?;
    let negative = examples(collection, body.get("negative"), using, excluded)?;
    match body
        .get("strategy")
        .and_then(Value::as_str)
        .unwrap_or("average_vector")
    {
        "average_vector" => {
            let dense = |list: &[QueryVector]| -> Result<Vec<Vec<f32>>, VecError> {
                list.iter()
                    .map(|q| match q {
                        QueryVector::Dense(v) => Ok(v.clone()),
                        _ => Err(VecError::wrong_input(
                            "average_vector needs dense examples; use strategy best_score",
                        )),
                    })
                    .collect()
            };
            let (positive, negative) = (dense(&positive)?, dense(&negative)?);
            let Some(size) = positive.first().map(Vec::len) else {
                return Err(VecError::wrong_input(
                    "average_vector needs at least one positive example",
                ));
            };
            let mean = |list: &[Vec<f32>]| -> Vec<f32> {
                let mut sum = vec![0.0; size];
                for v in list {
                    sum.iter_mut()
                        .zip(v)
                        .for_each(|(s, x)| *s += x / list.len() as f32);
                }
                sum
            };
            let p = mean(&positive);
            let query = if negative.is_empty() {
                p
            } else {
                let n = mean(&negative);
                p.iter().zip(&n).map(|(p, n)| p + p - n).collect()
            };
            Ok(Ask::Vector(QueryVector::Dense(query)))
        }
        strategy @ ("best_score" | "sum_scores") => {
            if positive.is_empty() && negative.is_empty() {
                return Err(VecError::wrong_input("recommend needs examples"));
            }
            Ok(Ask::Scored(Scoring::Recommend {
                positive,
                negative,
                sum: strategy == "sum_scores",
            }))
        }
        other => Err(VecError::bad_request(format!(
            "Format error in JSON body: unknown recommend strategy `{other}`"
        ))),
    }
}

/// What a query asks, and the example points to leave out of its results.
fn parse_ask(
    collection: &Collection,
    value: &Value,
    using: &str,
) -> Result<(Ask, Vec<PointId>), VecError> {
    let mut excluded = Vec::new();
    let ask = parse_ask_into(collection, value, using, &mut excluded)?;
    Ok((ask, excluded))
}

fn parse_ask_into(
    collection: &Collection,
    value: &Value,
    using: &str,
    excluded: &mut Vec<PointId>,
) -> Result<Ask, VecError> {
    match value {
        Value::Null => Ok(Ask::Nothing),
        Value::Array(_) => Ok(Ask::Vector(QueryVector::parse(value)?)),
        Value::Number(_) | Value::String(_) => {
            // A point id: search with that point's own vector, the point left out.
            let id = PointId::parse(value)?;
            let vector = point_vector(collection, &id, using)?;
            excluded.push(id);
            Ok(Ask::Vector(vector))
        }
        Value::Object(o) => {
            if let Some(nearest) = o.get("nearest") {
                let ask = parse_ask_into(collection, nearest, using, excluded)?;
                return match (o.get("mmr"), ask) {
                    (None | Some(Value::Null), ask) => Ok(ask),
                    (Some(mmr), Ask::Vector(query)) => {
                        let diversity =
                            match &mmr["diversity"] {
                                Value::Null => 0.5,
                                v => v.as_f64().filter(|d| (0.0..=1.0).contains(d)).ok_or_else(
                                    || VecError::validation("mmr.diversity: must be from 0 to 1"),
                                )? as f32,
                            };
                        let candidates = match &mmr["candidates_limit"] {
                            Value::Null => 100,
                            v => v.as_u64().filter(|n| (1..=16_384).contains(n)).ok_or_else(
                                || {
                                    VecError::validation(
                                        "mmr.candidates_limit: must be from 1 to 16384",
                                    )
                                },
                            )? as usize,
                        };
                        Ok(Ask::Mmr {
                            query,
                            diversity,
                            candidates,
                        })
                    }
                    (Some(_), _) => Err(VecError::bad_request(
                        "Wrong input: mmr needs a vector or point id in nearest",
                    )),
                };
            }
            if let Some(body) = o.get("recommend") {
                return recommend(collection, body, using, excluded);
            }
            if let Some(body) = o.get("discover") {
                let target = example(collection, &body["target"], using, excluded)?;
                let pairs = pairs(collection, &body["context"], using, excluded)?;
                return Ok(Ask::Scored(Scoring::Discover {
                    target: Some(target),
                    pairs,
                }));
            }
            if let Some(context) = o.get("context") {
                let pairs = pairs(collection, context, using, excluded)?;
                return Ok(Ask::Scored(Scoring::Discover {
                    target: None,
                    pairs,
                }));
            }
            if let Some(order) = o.get("order_by") {
                let (key, descending, start_from) = order_spec(order)?;
                return Ok(Ask::OrderBy {
                    key,
                    descending,
                    start_from,
                });
            }
            if let Some(sample) = o.get("sample") {
                return match sample.as_str() {
                    Some("random") => Ok(Ask::Scored(Scoring::Random(Default::default()))),
                    _ => Err(VecError::bad_request(
                        "Format error in JSON body: sample must be \"random\"",
                    )),
                };
            }
            if o.contains_key("indices") {
                return Ok(Ask::Vector(QueryVector::parse(value)?));
            }
            if let Some(fusion) = o.get("fusion") {
                return match fusion.as_str() {
                    Some("rrf") => Ok(Ask::Fusion(RRF_K, None)),
                    Some("dbsf") => Ok(Ask::Dbsf),
                    _ => Err(VecError::bad_request(
                        "Wrong input: fusion is `rrf` or `dbsf`",
                    )),
                };
            }
            if let Some(rrf) = o.get("rrf") {
                let k = match rrf.get("k") {
                    None | Some(Value::Null) => RRF_K,
                    Some(k) => k.as_f64().filter(|k| *k >= 0.0).ok_or_else(|| {
                        VecError::bad_request("Format error in JSON body: rrf.k must be a number")
                    })? as f32,
                };
                let weights = match rrf.get("weights") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(weights)) => Some(
                        weights
                            .iter()
                            .map(|w| w.as_f64().filter(|w| *w > 0.0).map(|w| w as f32))
                            .collect::<Option<Vec<f32>>>()
                            .ok_or_else(|| {
                                VecError::bad_request(
                                    "Validation error in JSON body: rrf.weights must be positive numbers",
                                )
                            })?,
                    ),
                    Some(_) => {
                        return Err(VecError::bad_request(
                            "Format error in JSON body: rrf.weights must be a list of numbers",
                        ));
                    }
                };
                return Ok(Ask::Fusion(k, weights));
            }
            Err(VecError::bad_request(
                "Wrong input: this query kind is not supported (use a vector, nearest, recommend, discover, context, sample or fusion rrf)",
            ))
        }
        _ => Err(VecError::bad_request(
            "Format error in JSON body: query must be a vector, an object or a point id",
        )),
    }
}

fn both(parent: Option<&Filter>, own: Option<Filter>) -> Option<Filter> {
    match (parent, own) {
        (None, own) => own,
        (Some(p), None) => Some(p.clone()),
        (Some(p), Some(o)) => Some(Filter {
            must: vec![Condition::Nested(p.clone()), Condition::Nested(o)],
            ..Filter::default()
        }),
    }
}

/// Runs one level of a query (the top, or a prefetch): the best `limit + offset` points.
fn run(
    collection: &Collection,
    body: &Value,
    parent: Option<&Filter>,
    default_limit: usize,
    offset: usize,
) -> Result<Vec<(u32, f32)>, VecError> {
    let using = match &body["using"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        _ => {
            return Err(VecError::bad_request(
                "Format error in JSON body: using must be a vector name",
            ));
        }
    };
    let filter = both(parent, filter::parse(&body["filter"])?);
    let limit = limit_of(&body["limit"], default_limit)?;
    let score_threshold = match &body["score_threshold"] {
        Value::Null => None,
        v => Some(v.as_f64().ok_or_else(|| {
            VecError::bad_request("Format error in JSON body: score_threshold must be a number")
        })? as f32),
    };
    let params = &body["params"];
    let ef = match &params["hnsw_ef"] {
        Value::Null => None,
        v => match v.as_u64() {
            Some(n) if n >= 1 => Some(n as usize),
            _ => {
                return Err(VecError::validation(format!(
                    "params.hnsw_ef: value {v} invalid, must be 1 or larger"
                )));
            }
        },
    };
    let exact = params["exact"].as_bool().unwrap_or(false);
    let prefetches: Vec<&Value> = match &body["prefetch"] {
        Value::Null => Vec::new(),
        Value::Array(list) => list.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(VecError::bad_request(
                "Format error in JSON body: prefetch must be an object or a list",
            ));
        }
    };
    let (ask, excluded) = parse_ask(collection, &body["query"], &using)?;
    // Qdrant's checks of how the parts combine, with its wording.
    match &ask {
        Ask::Nothing if !prefetches.is_empty() => {
            return Err(VecError::bad_request(
                "Bad request: A query is needed to merge the prefetches. Can't have prefetches without defining a query.",
            ));
        }
        Ask::Nothing if score_threshold.is_some() => {
            return Err(VecError::bad_request(
                "Bad request: A query is needed to use the score_threshold. Can't have score_threshold without defining a query.",
            ));
        }
        Ask::OrderBy { .. } if score_threshold.is_some() => {
            return Err(VecError::bad_request(
                "Bad request: Can't use score_threshold with an order_by query.",
            ));
        }
        Ask::Fusion(..) | Ask::Dbsf if !body["using"].is_null() => {
            return Err(VecError::bad_request(
                "Bad request: Fusion queries cannot be combined with the 'using' field.",
            ));
        }
        _ => {}
    }
    // Example points are left out of this level's results (not of its prefetches').
    let own_filter = if excluded.is_empty() {
        filter.clone()
    } else {
        let leave_out = Filter {
            must_not: vec![Condition::HasId(excluded.into_iter().collect())],
            ..Filter::default()
        };
        both(filter.as_ref(), Some(leave_out))
    };
    let want = limit.saturating_add(offset);
    let search = |query: QueryVector| Search {
        using: using.clone(),
        query,
        filter: own_filter.clone(),
        limit,
        offset,
        score_threshold,
        ef,
        exact,
    };
    let lists = prefetches
        .iter()
        .map(|p| run(collection, p, filter.as_ref(), 10, 0))
        .collect::<Result<Vec<_>, _>>()?;
    match ask {
        Ask::Fusion(k, weights) => {
            if lists.is_empty() {
                return Err(VecError::bad_request(
                    "Wrong input: fusion needs prefetch queries to fuse",
                ));
            }
            if let Some(weights) = &weights
                && weights.len() != lists.len()
            {
                return Err(VecError::bad_request(format!(
                    "Wrong input: rrf.weights has {} weights for {} prefetches",
                    weights.len(),
                    lists.len()
                )));
            }
            let mut fused = reciprocal_rank_fusion(&lists, k, weights.as_deref());
            if let Some(t) = score_threshold {
                fused.retain(|(_, s)| *s >= t);
            }
            fused.truncate(want);
            Ok(fused)
        }
        Ask::Vector(query) if !lists.is_empty() => {
            collection.rescore(&search(query), &prefetched(&lists))
        }
        Ask::Dbsf => {
            if lists.is_empty() {
                return Err(VecError::bad_request(
                    "Wrong input: fusion needs prefetch queries to fuse",
                ));
            }
            let mut fused = distribution_based_fusion(&lists);
            if let Some(t) = score_threshold {
                fused.retain(|(_, s)| *s >= t);
            }
            fused.truncate(want);
            Ok(fused)
        }
        Ask::OrderBy {
            key,
            descending,
            start_from,
        } => {
            let schema = order_schema(collection, &key)?;
            let start = start_of(&start_from, &schema)?;
            let slots: Vec<u32> = if lists.is_empty() {
                collection.scan(own_filter.as_ref(), None).collect()
            } else {
                let mut slots = prefetched(&lists);
                slots.retain(|slot| collection.matches(*slot, own_filter.as_ref()));
                slots
            };
            Ok(ordered_entries(
                collection,
                slots.into_iter(),
                &key,
                &schema,
                descending,
                start,
            )
            .into_iter()
            .take(want)
            .map(|(x, slot)| (slot, x as f32))
            .collect())
        }
        Ask::Vector(query) => collection.search(&search(query)),
        Ask::Mmr {
            query,
            diversity,
            candidates,
        } => {
            let wide = Search {
                limit: candidates.max(want),
                offset: 0,
                ..search(query.clone())
            };
            let pool = if lists.is_empty() {
                collection.search(&wide)?
            } else {
                collection.rescore(&wide, &prefetched(&lists))?
            };
            Ok(maximal_marginal_relevance(
                collection, &using, &query, pool, diversity, want,
            ))
        }
        Ask::Scored(scoring) => {
            let candidates: Vec<u32> = if lists.is_empty() {
                collection.all_slots().collect()
            } else {
                prefetched(&lists)
            };
            Ok(collection.best_by(
                candidates.into_iter(),
                own_filter.as_ref(),
                want,
                score_threshold,
                |slot| scoring.score(collection, &using, slot),
            ))
        }
        Ask::Nothing => {
            if let Some(first) = lists.into_iter().next() {
                let mut first = first;
                first.truncate(want);
                return Ok(first);
            }
            Ok(collection
                .scan(filter.as_ref(), None)
                .take(want)
                .map(|slot| (slot, 0.0))
                .collect())
        }
    }
}

/// Qdrant's reciprocal rank fusion: an item at 0-based `position` in a list of weight `w` (1 unless
/// given) adds `1 / ((position + 1) / w + k - 1)`, which is `1 / (position + k)` unweighted. Sorted best
/// first, ties by slot.
fn reciprocal_rank_fusion(
    lists: &[Vec<(u32, f32)>],
    k: f32,
    weights: Option<&[f32]>,
) -> Vec<(u32, f32)> {
    let mut fused: HashMap<u32, f32> = HashMap::new();
    for (i, list) in lists.iter().enumerate() {
        let weight = weights.and_then(|w| w.get(i)).copied().unwrap_or(1.0);
        for (position, (slot, _)) in list.iter().enumerate() {
            *fused.entry(*slot).or_default() += 1.0 / ((position as f32 + 1.0) / weight + k - 1.0);
        }
    }
    let mut fused: Vec<(u32, f32)> = fused.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// The distinct slots the prefetches found, in slot order.
fn prefetched(lists: &[Vec<(u32, f32)>]) -> Vec<u32> {
    let mut slots: Vec<u32> = lists.iter().flatten().map(|(slot, _)| *slot).collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// Distribution-based score fusion (Qdrant's `dbsf`): in each list a score becomes its place within
/// the list's mean plus or minus three sample standard deviations (0 at the low end, 1 at the high),
/// and a point's fused score is the sum over the lists it is in. Sorted best first, ties by slot.
fn distribution_based_fusion(lists: &[Vec<(u32, f32)>]) -> Vec<(u32, f32)> {
    let mut fused: HashMap<u32, f32> = HashMap::new();
    for list in lists.iter().filter(|l| !l.is_empty()) {
        let n = list.len() as f64;
        let mean = list.iter().map(|(_, s)| f64::from(*s)).sum::<f64>() / n;
        let spread = if list.len() > 1 {
            let variance = list
                .iter()
                .map(|(_, s)| (f64::from(*s) - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            6.0 * variance.sqrt()
        } else {
            0.0
        };
        let low = mean - spread / 2.0;
        for (slot, score) in list {
            let place = if spread > 0.0 {
                (f64::from(*score) - low) / spread
            } else {
                0.5
            };
            *fused.entry(*slot).or_default() += place as f32;
        }
    }
    let mut fused: Vec<(u32, f32)> = fused.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

fn scored(
    collection: &Collection,
    hits: Vec<(u32, f32)>,
    offset: usize,
    with: &With,
) -> Vec<Value> {
    hits.into_iter()
        .skip(offset)
        .filter_map(|(slot, score)| {
            let mut record = collection.record(slot, with)?;
            record.insert("score".into(), number::f32_value(score));
            Some(Value::Object(record))
        })
        .collect()
}

fn query(collection: &Collection, body: &Value) -> Result<Value, VecError> {
    if !body.is_object() {
        return Err(VecError::bad_request(
            "Format error in JSON body: a query is an object",
        ));
    }
    let offset = limit_of(&body["offset"], 0)?;
    if body["limit"] == json!(0) {
        return Err(VecError::validation(
            "[internal.limit: value 0 invalid, must be 1 or larger]",
        ));
    }
    let with = With::parse(&body["with_payload"], with_vector_of(body), false)?;
    collection.check_vector_names(&with)?;
    let hits = run(collection, body, None, 10, offset)?;
    Ok(json!({"points": scored(collection, hits, offset, &with)}))
}

/// `POST /collections/{name}/facet`: how many (filtered) points hold each value of an indexed
/// keyword, integer, bool or uuid field, most common first, ties by value; `limit` values (10).
fn facet(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    let key = body["key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| VecError::bad_request("Format error in JSON body: key is required"))?;
    let limit = match &body["limit"] {
        Value::Null => 10,
        v => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                VecError::validation(format!("limit: value {v} invalid, must be 1 or larger"))
            })?,
    };
    let filter = filter::parse(&body["filter"])?;
    let shared = store.collection(name)?;
    let collection = read(&shared);
    if !matches!(
        collection.index_schema(key),
        Some("keyword" | "integer" | "bool" | "uuid")
    ) {
        return Err(VecError::bad_request(format!(
            "Bad request: Index required but not found for \"{key}\" of one of the following types: \
             [keyword, integer, bool, uuid]. Help: Create an index for this key or use a different key."
        )));
    }
    let mut counts: Vec<(Value, usize)> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    for slot in collection.scan(filter.as_ref(), None) {
        let Some(payload) = collection.payload_of(slot) else {
            continue;
        };
        let mut seen: Vec<&Value> = Vec::new();
        for value in filter::values_at(payload, key) {
            if !(value.is_string() || value.is_boolean() || value.as_i64().is_some())
                || seen.contains(&value)
            {
                continue;
            }
            seen.push(value);
            let text = value.to_string();
            match positions.get(&text) {
                Some(&i) => counts[i].1 += 1,
                None => {
                    positions.insert(text, counts.len());
                    counts.push((value.clone(), 1));
                }
            }
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| facet_order(&a.0, &b.0)));
    let hits: Vec<Value> = counts
        .into_iter()
        .take(limit)
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect();
    Ok(json!({"hits": hits}))
}

/// Facet values of one field in their natural order: numbers by value, strings and bools as such.
fn facet_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// A group's id: a keyword or an integer value of the `group_by` key (others form no group).
fn group_id(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) => Some(value.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(value.clone()),
        _ => None,
    }
}

/// `POST points/query/groups`: the query's hits grouped by the values of `group_by` (a point with
/// several values joins each of their groups), at most `group_size` hits a group, the `limit` groups
/// with the best hits, best first; `with_lookup` adds the point of another collection whose id is the
/// group's. The query runs with a growing limit until enough groups are full or every point was seen.
fn query_groups(store: &Store, name: &str, body: &Value) -> Result<Value, VecError> {
    // Groups are not a hot path: one copy of the body for the lookup's rewrite.
    let body = &resolve_lookup(store, name, body.clone())?;
    let key = body["group_by"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| VecError::bad_request("Format error in JSON body: group_by is required"))?;
    let group_size = match &body["group_size"] {
        Value::Null => 3,
        v => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                VecError::validation(format!(
                    "group_size: value {v} invalid, must be 1 or larger"
                ))
            })?,
    };
    let groups_wanted = match &body["limit"] {
        Value::Null => 10,
        v => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                VecError::validation(format!("limit: value {v} invalid, must be 1 or larger"))
            })?,
    };
    let with = With::parse(&body["with_payload"], with_vector_of(body), false)?;
    let shared = store.collection(name)?;
    let collection = read(&shared);
    collection.check_vector_names(&with)?;
    let total = collection.len().max(1);
    let mut fetch = (groups_wanted * group_size * 2).min(total);
    let groups: Vec<(Value, Vec<(u32, f32)>)> = loop {
        let mut ask = body.clone();
        ask["limit"] = json!(fetch);
        let hits = run(&collection, &ask, None, fetch, 0)?;
        let seen_all = hits.len() < fetch || fetch >= total;
        let mut groups: Vec<(Value, Vec<(u32, f32)>)> = Vec::new();
        for (slot, score) in hits {
            let Some(payload) = collection.payload_of(slot) else {
                continue;
            };
            let mut ids: Vec<Value> = filter::values_at(payload, key)
                .into_iter()
                .filter_map(group_id)
                .collect();
            ids.dedup();
            for id in ids {
                match groups.iter_mut().find(|(g, _)| *g == id) {
                    Some((_, members)) if members.len() < group_size => members.push((slot, score)),
                    Some(_) => {}
                    None => groups.push((id, vec![(slot, score)])),
                }
            }
        }
        let full = groups
            .iter()
            .take(groups_wanted)
            .filter(|(_, members)| members.len() >= group_size)
            .count();
        if seen_all || (groups.len() >= groups_wanted && full == groups_wanted) {
            groups.truncate(groups_wanted);
            break groups;
        }
        fetch = (fetch * 2).min(total);
    };
    let lookup = match &body["with_lookup"] {
        Value::Null => None,
        Value::String(other) => Some((
            other.clone(),
            With::parse(&json!(true), &json!(false), true)?,
        )),
        Value::Object(o) => {
            let other = o.get("collection").and_then(Value::as_str).ok_or_else(|| {
                VecError::bad_request(
                    "Format error in JSON body: with_lookup.collection is required",
                )
            })?;
            let vectors = o.get("with_vectors").or_else(|| o.get("with_vector"));
            let with = With::parse(
                o.get("with_payload").unwrap_or(&Value::Null),
                vectors.unwrap_or(&Value::Null),
                true,
            )?;
            Some((other.to_string(), with))
        }
        _ => {
            return Err(VecError::bad_request(
                "Format error in JSON body: with_lookup is a collection name or {collection, ...}",
            ));
        }
    };
    let lookup_collection = match &lookup {
        Some((other, _)) => Some(store.collection(other).map_err(|_| no_lookup(other))?),
        None => None,
    };
    let lookup_read = lookup_collection.as_ref().map(read);
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(id, members)| {
            let mut group = json!({"id": id, "hits": scored(&collection, members, 0, &with)});
            if let (Some(other), Some((_, with))) = (&lookup_read, &lookup) {
                let found = PointId::parse(&id)
                    .ok()
                    .and_then(|pid| other.slot_of(&pid))
                    .and_then(|slot| other.record(slot, with))
                    .map_or(Value::Null, |r| Value::Object(without_version(r)));
                group["lookup"] = found;
            }
            group
        })
        .collect();
    Ok(json!({"groups": groups}))
}

/// `POST /points/search`, the older search endpoint many integrations still call.
fn legacy_search(collection: &Collection, body: &Value) -> Result<Value, VecError> {
    let (using, vector) = match &body["vector"] {
        Value::Object(o) if o.contains_key("name") => (
            o["name"].clone(),
            o.get("vector").cloned().unwrap_or(Value::Null),
        ),
        other => (Value::Null, other.clone()),
    };
    if vector.is_null() {
        return Err(VecError::bad_request(
            "Format error in JSON body: `vector` is required",
        ));
    }
    let mut request = body.clone();
    if let Some(object) = request.as_object_mut() {
        object.insert("query".into(), vector);
        object.insert("using".into(), using);
        object.remove("vector");
        if !object.contains_key("limit")
            && let Some(top) = object.remove("top")
        {
            object.insert("limit".into(), top);
        }
    }
    let offset = limit_of(&body["offset"], 0)?;
    let with = With::parse(&body["with_payload"], with_vector_of(body), false)?;
    collection.check_vector_names(&with)?;
    let hits = run(collection, &request, None, 10, offset)?;
    Ok(Value::Array(scored(collection, hits, offset, &with)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store in its own temporary folder.
    fn test_store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("edgerag-vec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("vectors.sqlite")).unwrap()
    }

    /// One request through the store's router, as the HTTP front makes it (`path` without the `/`).
    fn call(store: &Store, method: Method, path: &str, body: Value) -> Result<Value, VecError> {
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        route(store, &method, &segments, body.to_string().as_bytes())
    }

    #[test]
    fn rrf_scores_are_qdrants_one_over_position_plus_k() {
        // Issue 16, item 1: the top item of each list scores 1 / (0 + 2) = 0.5, not 1 / 3.
        let a = vec![(1, 0.9), (2, 0.8), (3, 0.7)];
        let b = vec![(2, 0.5), (4, 0.4)];
        let fused = reciprocal_rank_fusion(&[a.clone(), b.clone()], RRF_K, None);
        let score = |slot| fused.iter().find(|(s, _)| *s == slot).unwrap().1;
        assert!((score(1) - 0.5).abs() < 1e-6);
        assert!((score(2) - (1.0 / 3.0 + 0.5)).abs() < 1e-6);
        assert!((score(3) - 0.25).abs() < 1e-6);
        assert!((score(4) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(fused[0].0, 2);
        // k applies as given: k = 60 puts the top item at 1 / 60.
        let fused = reciprocal_rank_fusion(std::slice::from_ref(&a), 60.0, None);
        assert!((fused[0].1 - 1.0 / 60.0).abs() < 1e-7);
    }

    #[test]
    fn multivectors_score_by_max_sim_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("edgerag-vec-multi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vectors.sqlite");
        let store = Store::open(&path).unwrap();
        let multi = |distance: &str| json!({"size": 2, "distance": distance, "multivector_config": {"comparator": "max_sim"}});
        let body = json!({"vectors": {"m": multi("Dot"), "e": multi("Euclid")}});
        call(&store, Method::PUT, "collections/c", body).unwrap();
        let points = json!({"points": [
            {"id": 1, "vector": {"m": [[1.0, 0.0], [0.0, 1.0]], "e": [[0.0, 0.0], [3.0, 4.0]]}},
            // A single vector is a multivector of one.
            {"id": 2, "vector": {"m": [0.5, 0.5], "e": [1.0, 1.0]}},
        ]});
        call(&store, Method::PUT, "collections/c/points", points).unwrap();
        let ranked = |store: &Store, using: &str, query: Value| -> Vec<(u64, f64)> {
            let body = json!({"query": query, "using": using});
            let result = call(store, Method::POST, "collections/c/points/query", body).unwrap();
            result["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["id"].as_u64().unwrap(), p["score"].as_f64().unwrap()))
                .collect()
        };
        // Dot: point 1 = max(1, 0) + max(0, 1) = 2; point 2 = 0.5 + 0.5 = 1.
        assert_eq!(
            ranked(&store, "m", json!([[1.0, 0.0], [0.0, 1.0]])),
            [(1, 2.0), (2, 1.0)]
        );
        // Euclid, as Qdrant: the root of the summed best squared distances. Query [0,0],[3,3]:
        // point 1: 0 + min(18, 1) = 1 -> 1; point 2: 2 + 8 = 10 -> sqrt(10).
        let euclid = ranked(&store, "e", json!([[0.0, 0.0], [3.0, 3.0]]));
        assert_eq!(euclid[0], (1, 1.0));
        assert_eq!(euclid[1].0, 2);
        assert!((euclid[1].1 - 10f64.sqrt()).abs() < 1e-5, "{euclid:?}");
        // Bad shapes are Qdrant's 422s and 400s.
        let bad = |vector: Value| {
            let body = json!({"points": [{"id": 3, "vector": {"m": vector}}]});
            call(&store, Method::PUT, "collections/c/points", body).unwrap_err()
        };
        assert!(
            bad(json!([[]]))
                .message
                .contains("all vectors must be non-empty")
        );
        assert!(
            bad(json!([[1.0, 2.0], [1.0]]))
                .message
                .contains("same dimension")
        );
        assert!(
            bad(json!([[1.0, 2.0, 3.0]]))
                .message
                .contains("expected dim: 2, got 3")
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        let point = call(&store, Method::GET, "collections/c/points/1", Value::Null).unwrap();
        assert_eq!(point["vector"]["m"], json!([[1.0, 0.0], [0.0, 1.0]]));
        assert_eq!(ranked(&store, "m", json!([1.0, 0.0]))[0], (1, 1.0));
    }

    #[test]
    fn sparse_search_finds_filtered_points_past_its_first_rounds_and_batches_keep_order() {
        let store = test_store("sparse-rounds");
        let body = json!({"sparse_vectors": {"s": {"modifier": "idf"}}});
        call(&store, Method::PUT, "collections/r", body).unwrap();
        // 500 points share term 1; point i weighs it i, so the best are the highest ids. Only every
        // 97th point passes the filter: the search must look past its first rounds of candidates.
        let points: Vec<Value> = (1..=500)
            .map(|i| {
                json!({"id": i, "vector": {"s": {"indices": [1, 2], "values": [i as f32, 1.0]}},
                       "payload": {"keep": i % 97 == 0}})
            })
            .collect();
        call(
            &store,
            Method::PUT,
            "collections/r/points",
            json!({"points": points}),
        )
        .unwrap();
        let search = |limit: u32, filter: Value| {
            json!({"query": {"indices": [1], "values": [1.0]}, "using": "s", "limit": limit,
                   "filter": filter})
        };
        let keep = json!({"must": [{"key": "keep", "match": {"value": true}}]});
        let batch = json!({"searches": [search(3, keep.clone()), search(2, Value::Null), search(10, keep)]});
        let result = call(
            &store,
            Method::POST,
            "collections/r/points/query/batch",
            batch,
        )
        .unwrap();
        let ids = |i: usize| -> Vec<u64> {
            result[i]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(ids(0), vec![485, 388, 291]);
        assert_eq!(ids(1), vec![500, 499]);
        assert_eq!(
            ids(2),
            vec![485, 388, 291, 194, 97],
            "every match, best first"
        );
    }

    #[test]
    fn vectors_are_updated_and_deleted_by_name_and_has_vector_filters_on_them() {
        let store = test_store("vectors-update");
        let body = json!({
            "vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 2, "distance": "Dot"}},
            "sparse_vectors": {"s": {}},
        });
        call(&store, Method::PUT, "collections/v", body).unwrap();
        let points = json!({"points": [
            {"id": 1, "vector": {"a": [1.0, 0.0]}, "payload": {"k": 1}},
            {"id": 2, "vector": {"b": [0.0, 1.0]}, "payload": {"k": 2}},
        ]});
        call(&store, Method::PUT, "collections/v/points", points).unwrap();
        let update = json!({"points": [{"id": 1, "vector": {"b": [2.0, 2.0], "s": {"indices": [4], "values": [1.0]}}}]});
        call(&store, Method::PUT, "collections/v/points/vectors", update).unwrap();
        let get = |id: u64| {
            call(
                &store,
                Method::GET,
                &format!("collections/v/points/{id}"),
                Value::Null,
            )
            .unwrap()
        };
        let one = get(1);
        assert_eq!(one["vector"]["a"], json!([1.0, 0.0]), "kept");
        assert_eq!(one["vector"]["b"], json!([2.0, 2.0]), "added");
        assert_eq!(one["payload"], json!({"k": 1}), "payload kept");
        // An unknown point fails the whole request and changes nothing.
        let update = json!({"points": [
            {"id": 2, "vector": {"a": [5.0, 5.0]}},
            {"id": 99, "vector": {"a": [5.0, 5.0]}},
        ]});
        let error = call(&store, Method::PUT, "collections/v/points/vectors", update).unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (404, "Not found: No point with id 99 found")
        );
        assert!(get(2)["vector"].get("a").is_none());
        let count = |name: &str| {
            let body = json!({"filter": {"must": [{"has_vector": name}]}});
            call(&store, Method::POST, "collections/v/points/count", body).unwrap()["count"].clone()
        };
        assert_eq!(
            (count("a"), count("b"), count("s")),
            (json!(1), json!(2), json!(1))
        );
        let delete = json!({"points": [1], "vector": ["a", "s"]});
        call(
            &store,
            Method::POST,
            "collections/v/points/vectors/delete",
            delete,
        )
        .unwrap();
        assert_eq!(get(1)["vector"], json!({"b": [2.0, 2.0]}));
        assert_eq!((count("a"), count("s")), (json!(0), json!(0)));
        let unknown = json!({"points": [1], "vector": ["nope"]});
        let error = call(
            &store,
            Method::POST,
            "collections/v/points/vectors/delete",
            unknown,
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "Wrong input: Not existing vector name error: nope"
        );
    }

    #[test]
    fn update_filter_leaves_existing_points_that_do_not_match() {
        let store = test_store("conditional");
        call(
            &store,
            Method::PUT,
            "collections/u",
            json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )
        .unwrap();
        let points = json!({"points": [
            {"id": 1, "vector": [1.0, 0.0], "payload": {"version": 1}},
            {"id": 2, "vector": [1.0, 0.0], "payload": {"version": 5}},
        ]});
        call(&store, Method::PUT, "collections/u/points", points).unwrap();
        let upsert = json!({
            "points": [
                {"id": 1, "vector": [0.0, 1.0], "payload": {"version": 2}},
                {"id": 2, "vector": [0.0, 1.0], "payload": {"version": 6}},
                {"id": 3, "vector": [0.0, 1.0], "payload": {"version": 1}},
            ],
            "update_filter": {"must": [{"key": "version", "range": {"lt": 3}}]},
        });
        call(&store, Method::PUT, "collections/u/points", upsert).unwrap();
        let version = |id: u64| {
            call(
                &store,
                Method::GET,
                &format!("collections/u/points/{id}"),
                Value::Null,
            )
            .unwrap()["payload"]["version"]
                .clone()
        };
        assert_eq!(
            (version(1), version(2), version(3)),
            (json!(2), json!(5), json!(1))
        );
        // update_vectors takes the same filter.
        let vectors = json!({"points": [{"id": 2, "vector": [0.0, 2.0]}], "update_filter": {"must": [{"key": "version", "range": {"lt": 3}}]}});
        call(&store, Method::PUT, "collections/u/points/vectors", vectors).unwrap();
        let point = call(&store, Method::GET, "collections/u/points/2", Value::Null).unwrap();
        assert_eq!(
            point["vector"],
            json!([1.0, 0.0]),
            "not matching: unchanged"
        );
    }

    /// Four 2-d points for the example-based queries: 1 [1,0], 2 [0.9,0.1], 3 [0,1], 4 [-1,0].
    fn example_store(name: &str) -> Store {
        let store = test_store(name);
        let body = json!({"vectors": {"size": 2, "distance": "Dot"}});
        call(&store, Method::PUT, "collections/x", body).unwrap();
        let points = json!({"points": [
            {"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.9, 0.1]},
            {"id": 3, "vector": [0.0, 1.0]}, {"id": 4, "vector": [-1.0, 0.0]},
        ]});
        call(&store, Method::PUT, "collections/x/points", points).unwrap();
        store
    }

    fn ids_of(store: &Store, body: Value) -> Vec<u64> {
        let result = call(store, Method::POST, "collections/x/points/query", body).unwrap();
        result["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn recommend_discover_context_and_random_rank_as_qdrant_describes() {
        let store = example_store("examples");
        // average_vector: 2 * [1,0] - [0,1] = [2,-1]; the examples (1, 3) are left out.
        let average = json!({"query": {"recommend": {"positive": [1], "negative": [3]}}});
        assert_eq!(ids_of(&store, average), [2, 4]);
        // best_score: closer to the positive than to the negative ranks first.
        let best = json!({"query": {"recommend": {"positive": [1], "negative": [4], "strategy": "best_score"}}});
        assert_eq!(ids_of(&store, best), [2, 3]);
        // Vectors as examples leave nothing out. discover: pairs won (+1) or lost (-1), then
        // closeness to the target: 2 (1 + s(0.1)), 1 (1 + s(0)), 3 (-1 + s(1)), 4 (-1 + s(0)).
        let discover = json!({"query": {"discover": {
            "target": [0.0, 1.0],
            "context": [{"positive": [1.0, 0.0], "negative": [-1.0, 0.0]}],
        }}});
        assert_eq!(ids_of(&store, discover), [2, 1, 3, 4]);
        // context: only how far on the wrong side of the pair; 1 and 2 lose nothing.
        let context =
            json!({"query": {"context": {"positive": [1.0, 0.0], "negative": [-1.0, 0.0]}}});
        assert_eq!(ids_of(&store, context)[2..], [3, 4]);
        let mut random = ids_of(&store, json!({"query": {"sample": "random"}}));
        random.sort_unstable();
        assert_eq!(random, [1, 2, 3, 4]);
        // Root and prefetch-then-rescore agree, as the suite checks.
        let best =
            json!({"recommend": {"positive": [1], "negative": [4], "strategy": "best_score"}});
        let nested = json!({"prefetch": {"limit": 100}, "query": best});
        assert_eq!(ids_of(&store, nested), [2, 3]);
        // Qdrant's wording for parts that do not combine.
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            json!({"prefetch": [{"query": [1.0, 0.0]}]}),
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "Bad request: A query is needed to merge the prefetches. Can't have prefetches without defining a query."
        );
    }

    #[test]
    fn order_by_queries_score_by_the_value_and_agree_with_scroll() {
        let store = example_store("order-by");
        for (id, price) in [(1, 30), (2, 10), (3, 20), (4, 40)] {
            let body = json!({"payload": {"price": price}, "points": [id]});
            call(&store, Method::POST, "collections/x/points/payload", body).unwrap();
        }
        let query = json!({"query": {"order_by": {"key": "price", "direction": "desc"}}});
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            query.clone(),
        )
        .unwrap_err();
        assert!(
            error.message.contains("No range index"),
            "{}",
            error.message
        );
        let index = json!({"field_name": "price", "field_schema": "integer"});
        call(&store, Method::PUT, "collections/x/index", index).unwrap();
        assert_eq!(ids_of(&store, query), [4, 1, 3, 2]);
        let result = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            json!({"query": {"order_by": "price"}, "limit": 1}),
        )
        .unwrap();
        assert_eq!(
            (&result["points"][0]["id"], &result["points"][0]["score"]),
            (&json!(2), &json!(10.0))
        );
        let nested = json!({"prefetch": {"limit": 100}, "query": {"order_by": "price"}});
        assert_eq!(ids_of(&store, nested), [2, 3, 1, 4]);
        let threshold = json!({"query": {"order_by": "price"}, "score_threshold": 1});
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            threshold,
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "Bad request: Can't use score_threshold with an order_by query."
        );
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            json!({"query": [1.0, 0.0], "limit": 0}),
        )
        .unwrap_err();
        assert_eq!(error.status, 422);
    }

    #[test]
    fn lookup_from_reads_example_ids_in_another_collection() {
        let store = example_store("lookup");
        let body = json!({"vectors": {"v": {"size": 2, "distance": "Dot"}}});
        call(&store, Method::PUT, "collections/other", body).unwrap();
        let points = json!({"points": [{"id": 1, "vector": {"v": [0.0, 1.0]}}]});
        call(&store, Method::PUT, "collections/other/points", points).unwrap();
        // Point 1 of `other` is [0,1]: nearest here is 3, and 1 (an id of this collection too) is
        // not left out.
        let query = |lookup: Value| json!({"query": {"recommend": {"positive": [1]}}, "lookup_from": lookup});
        assert_eq!(
            ids_of(&store, query(json!({"collection": "other", "vector": "v"})))[..2],
            [3, 2]
        );
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            query(json!({"collection": "gone"})),
        )
        .unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (404, "Not found: Collection gone not found")
        );
        let error = call(
            &store,
            Method::POST,
            "collections/x/points/query",
            query(json!({"collection": "other", "vector": "w"})),
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "Wrong input: Not existing vector name error: w"
        );
    }

    #[test]
    fn mmr_trades_relevance_for_diversity() {
        let store = example_store("mmr");
        let nearest = |diversity: f64| json!({"query": {"nearest": [1.0, 0.0], "mmr": {"diversity": diversity}}});
        assert_eq!(
            ids_of(&store, nearest(0.0)),
            [1, 2, 3, 4],
            "no diversity: plain order"
        );
        // diversity 0.9 after 1: 4 scores 0.1 * -1 - 0.9 * -1 = 0.8, 3 scores 0, 2 scores -0.72.
        assert_eq!(ids_of(&store, nearest(0.9)), [1, 4, 3, 2]);
        let bad = json!({"query": {"nearest": [1.0, 0.0], "mmr": {"diversity": 2.0}}});
        let error = call(&store, Method::POST, "collections/x/points/query", bad).unwrap_err();
        assert_eq!(error.status, 422);
    }

    #[test]
    fn dbsf_places_each_score_within_its_list_s_three_sigma_spread() {
        // List a: mean 2, sample sd sqrt(2): 3 -> 0.618, 1 -> 0.382; list b (5, 1) the same places.
        let fused =
            distribution_based_fusion(&[vec![(1, 3.0), (2, 1.0)], vec![(2, 5.0), (3, 1.0)]]);
        let order: Vec<u32> = fused.iter().map(|(slot, _)| *slot).collect();
        assert_eq!(order, [2, 1, 3]);
        assert!((fused[0].1 - 1.0).abs() < 1e-5, "{fused:?}");
        assert!((fused[1].1 - 0.6178).abs() < 1e-3, "{fused:?}");
    }

    #[test]
    fn with_vectors_is_an_alias_of_with_vector() {
        assert_eq!(with_vector_of(&json!({"with_vectors": true})), &json!(true));
        assert_eq!(
            with_vector_of(&json!({"with_vector": ["a"], "with_vectors": true})),
            &json!(["a"])
        );
        assert_eq!(with_vector_of(&json!({})), &Value::Null);
    }

    #[test]
    fn hnsw_ef_zero_and_unknown_vector_names_are_refused() {
        let store = test_store("lib");
        store
            .create_collection(
                "c",
                &json!({"vectors": {"text": {"size": 2, "distance": "Dot"}}}),
            )
            .unwrap();
        let shared = store.collection("c").unwrap();
        let collection = read(&shared);
        let error = run(
            &collection,
            &json!({"query": [1.0, 0.0], "using": "text", "params": {"hnsw_ef": 0}}),
            None,
            10,
            0,
        )
        .unwrap_err();
        assert_eq!(error.status, 422);
        assert!(error.message.contains("hnsw_ef"), "{}", error.message);
        drop(collection);
        let error = retrieve(
            &store,
            "c",
            &json!({"ids": [1], "with_vectors": ["text", "i_do_no_exist"]}),
        )
        .unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (
                400,
                "Wrong input: Not existing vector name error: i_do_no_exist"
            )
        );
        assert!(retrieve(&store, "c", &json!({"ids": [1], "with_vectors": ["text"]})).is_ok());
        // The same on scroll and query.
        let error = scroll(&store, "c", &json!({"with_vector": ["nope"]})).unwrap_err();
        assert_eq!(error.status, 400);
        let shared = store.collection("c").unwrap();
        let error = query(
            &read(&shared),
            &json!({"query": [1.0, 0.0], "using": "text", "with_vector": ["nope"]}),
        )
        .unwrap_err();
        assert!(
            error.message.contains("Not existing vector name"),
            "{}",
            error.message
        );
    }

    #[test]
    fn batch_applies_mixed_operations_in_order() {
        let store = test_store("batch");
        let call = |method: Method, path: &str, body: Value| call(&store, method, path, body);
        call(
            Method::PUT,
            "collections/c",
            json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )
        .unwrap();
        let results = call(
            Method::POST,
            "collections/c/points/batch",
            json!({"operations": [
                {"upsert": {"points": [{"id": 7, "vector": [1.0, 0.0], "payload": {}},
                                       {"id": 8, "vector": [0.0, 1.0], "payload": {"a": 1}}]}},
                {"delete": {"points": [8]}},
                {"set_payload": {"payload": {"lang": "en"}, "points": [7]}},
                {"overwrite_payload": {"payload": {"lang": "fr", "x": 1}, "points": [7]}},
                {"delete_payload": {"keys": ["x"], "points": [7]}},
            ]}),
        )
        .unwrap();
        assert_eq!(results.as_array().unwrap().len(), 5);
        let points = call(
            Method::POST,
            "collections/c/points",
            json!({"ids": [7, 8], "with_payload": true}),
        )
        .unwrap();
        assert_eq!(points.as_array().unwrap().len(), 1, "8 was deleted");
        assert_eq!(points[0]["payload"], json!({"lang": "fr"}));
        // clear through its own endpoint; an unsupported operation stops the batch with a 400.
        call(
            Method::POST,
            "collections/c/points/payload/clear",
            json!({"points": [7]}),
        )
        .unwrap();
        let error = call(
            Method::POST,
            "collections/c/points/batch",
            json!({"operations": [{"set_payload": {"payload": {"y": 1}, "points": [7]}},
                                  {"rotate_vectors": {}}]}),
        )
        .unwrap_err();
        assert_eq!(error.status, 400);
        let points = call(Method::POST, "collections/c/points", json!({"ids": [7]})).unwrap();
        assert_eq!(
            points[0]["payload"],
            json!({"y": 1}),
            "operations before the failure stay"
        );
    }

    #[test]
    fn order_by_sorts_every_value_and_pages_with_start_from() {
        let store = test_store("order");
        let call = |path: &str, body: Value| {
            let method =
                if path.ends_with("/c") || path.ends_with("/index") || path.ends_with("/points") {
                    Method::PUT
                } else {
                    Method::POST
                };
            call(&store, method, path, body)
        };
        call(
            "collections/c",
            json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )
        .unwrap();
        let points: Vec<Value> = (0..6)
            .map(|i| {
                json!({"id": i, "vector": [1.0, 0.0], "payload": {
                "n": i, "multi": [i, 10 - i], "day": format!("2024-01-0{}", 6 - i)}})
            })
            .collect();
        call("collections/c/points", json!({"points": points})).unwrap();
        let ids = |result: &Value| -> Vec<i64> {
            result["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap())
                .collect()
        };
        // No range index: refused, as on Qdrant.
        let error = call("collections/c/points/scroll", json!({"order_by": "n"})).unwrap_err();
        assert!(
            error.message.contains("No range index"),
            "{}",
            error.message
        );
        for (field, schema) in [("n", "integer"), ("multi", "integer"), ("day", "datetime")] {
            call(
                "collections/c/index",
                json!({"field_name": field, "field_schema": schema}),
            )
            .unwrap();
        }
        let page = call(
            "collections/c/points/scroll",
            json!({"order_by": {"key": "n", "direction": "desc"}, "limit": 3}),
        )
        .unwrap();
        assert_eq!(ids(&page), [5, 4, 3]);
        assert_eq!(page["next_page_offset"], Value::Null);
        let page = call(
            "collections/c/points/scroll",
            json!({"order_by": {"key": "n", "start_from": 2}, "limit": 2}),
        )
        .unwrap();
        assert_eq!(ids(&page), [2, 3]);
        // Dates order as dates: day 2024-01-06 belongs to point 0, the latest.
        let page = call(
            "collections/c/points/scroll",
            json!({"order_by": {"key": "day", "direction": "desc"}, "limit": 2}),
        )
        .unwrap();
        assert_eq!(ids(&page), [0, 1]);
        // Each value is an entry: 12 entries for 6 points.
        let page = call(
            "collections/c/points/scroll",
            json!({"order_by": "multi", "limit": 20}),
        )
        .unwrap();
        assert_eq!(ids(&page).len(), 12);
        let error = call(
            "collections/c/points/scroll",
            json!({"order_by": "n", "offset": 1}),
        )
        .unwrap_err();
        assert_eq!(error.status, 400);
    }

    #[test]
    fn query_groups_give_one_group_per_document_with_lookup() {
        let store = test_store("groups");
        let call = |method: Method, path: &str, body: Value| call(&store, method, path, body);
        for c in ["chunks", "docs"] {
            call(
                Method::PUT,
                &format!("collections/{c}"),
                json!({"vectors": {"size": 2, "distance": "Dot"}}),
            )
            .unwrap();
        }
        // 20 documents of 4 chunks; document d's chunks score d + 1 - chunk / 10.
        let chunks: Vec<Value> = (0..80)
            .map(|i| {
                let (doc, chunk) = (i / 4, i % 4);
                json!({"id": i, "vector": [doc as f32 + 1.0 - chunk as f32 / 10.0, 0.0],
                       "payload": {"doc": doc, "tags": ["all", format!("t{}", doc % 2)]}})
            })
            .collect();
        call(
            Method::PUT,
            "collections/chunks/points",
            json!({"points": chunks}),
        )
        .unwrap();
        let docs: Vec<Value> = (0..20)
            .map(|d| json!({"id": d, "vector": [0.0, 1.0], "payload": {"title": format!("doc {d}")}}))
            .collect();
        call(
            Method::PUT,
            "collections/docs/points",
            json!({"points": docs}),
        )
        .unwrap();
        let result = call(
            Method::POST,
            "collections/chunks/points/query/groups",
            json!({"query": [1.0, 0.0], "group_by": "doc", "group_size": 2, "limit": 3,
                   "with_payload": true, "with_lookup": "docs"}),
        )
        .unwrap();
        let groups = result["groups"].as_array().unwrap();
        let ids: Vec<i64> = groups.iter().map(|g| g["id"].as_i64().unwrap()).collect();
        assert_eq!(
            ids,
            [19, 18, 17],
            "the documents with the best chunks, best first"
        );
        for group in groups {
            let hits = group["hits"].as_array().unwrap();
            assert_eq!(hits.len(), 2);
            assert!(hits.iter().all(|h| h["payload"]["doc"] == group["id"]));
            assert_eq!(
                group["lookup"]["payload"]["title"],
                format!("doc {}", group["id"])
            );
        }
        // A point with several values joins each group; floats and missing keys form none.
        let result = call(
            Method::POST,
            "collections/chunks/points/query/groups",
            json!({"query": [1.0, 0.0], "group_by": "tags", "group_size": 3, "limit": 5}),
        )
        .unwrap();
        let ids: Vec<&str> = result["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["all", "t1", "t0"]);
        let result = call(
            Method::POST,
            "collections/chunks/points/query/groups",
            json!({"query": [1.0, 0.0], "group_by": "nowhere"}),
        )
        .unwrap();
        assert_eq!(result["groups"], json!([]));
    }

    #[test]
    fn facets_count_points_per_value() {
        let store = test_store("facet");
        let call = |method: Method, path: &str, body: Value| call(&store, method, path, body);
        call(
            Method::PUT,
            "collections/c",
            json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )
        .unwrap();
        let cities = ["Berlin", "London", "Berlin", "Moscow", "London", "Berlin"];
        let points: Vec<Value> = cities
            .iter()
            .enumerate()
            .map(|(i, city)| {
                json!({"id": i, "vector": [1.0, 0.0],
                "payload": {"city": city, "n": i % 2, "tags": ["x", "x", format!("y{i}")]}})
            })
            .collect();
        call(
            Method::PUT,
            "collections/c/points",
            json!({"points": points}),
        )
        .unwrap();
        let error = call(Method::POST, "collections/c/facet", json!({"key": "city"})).unwrap_err();
        assert!(
            error.message.contains("Index required"),
            "{}",
            error.message
        );
        for (field, schema) in [("city", "keyword"), ("n", "integer"), ("tags", "keyword")] {
            call(
                Method::PUT,
                "collections/c/index",
                json!({"field_name": field, "field_schema": schema}),
            )
            .unwrap();
        }
        assert_eq!(
            call(Method::POST, "collections/c/facet", json!({"key": "city"})).unwrap(),
            json!({"hits": [{"value": "Berlin", "count": 3}, {"value": "London", "count": 2},
                            {"value": "Moscow", "count": 1}]})
        );
        assert_eq!(
            call(Method::POST, "collections/c/facet", json!({"key": "n"})).unwrap(),
            json!({"hits": [{"value": 0, "count": 3}, {"value": 1, "count": 3}]})
        );
        // A point counts once per value, however often it holds it; limit and filter apply.
        let tags = call(
            Method::POST,
            "collections/c/facet",
            json!({"key": "tags", "limit": 2,
                   "filter": {"must": [{"key": "city", "match": {"value": "Berlin"}}]}}),
        )
        .unwrap();
        assert_eq!(
            tags,
            json!({"hits": [{"value": "x", "count": 3}, {"value": "y0", "count": 1}]})
        );
    }

    #[test]
    fn rrf_weights_apply_per_prefetch() {
        let a = vec![(1, 0.9), (2, 0.8)];
        let b = vec![(2, 0.5), (1, 0.4)];
        // Weight 3 on the second list: its top item adds 1 / (1/3 + 1), its second 1 / (2/3 + 1).
        let fused = reciprocal_rank_fusion(&[a, b], RRF_K, Some(&[1.0, 3.0]));
        let score = |slot| fused.iter().find(|(s, _)| *s == slot).unwrap().1;
        assert!((score(2) - (1.0 / 3.0 + 1.0 / (1.0 / 3.0 + 1.0))).abs() < 1e-6);
        assert!((score(1) - (0.5 + 1.0 / (2.0 / 3.0 + 1.0))).abs() < 1e-6);
        // Unweighted, the two tie (0.5 + 1/3 each), and the tie goes to the lower slot.
        let fused = reciprocal_rank_fusion(
            &[vec![(1, 0.9), (2, 0.8)], vec![(2, 0.5), (1, 0.4)]],
            RRF_K,
            None,
        );
        assert!((fused[0].1 - fused[1].1).abs() < 1e-7);
        assert_eq!(fused[0].0, 1);
    }
}
