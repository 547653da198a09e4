//! Evaluations: a team's queries and judgements run through every asked mode with the project's
//! current settings, scored by document (a document ranks where its best chunk does), and kept so
//! that settings can be compared over time.
//!
//! One of more than `INLINE_QUERIES` judged queries is a job: each step is a request the component
//! makes to itself through Spin's local service chaining (`http://search.spin.internal`), after the
//! current request has been answered; it scores the next `STEP_QUERIES` queries, adds them to the
//! running totals in the record and starts the next step. A lost step is started again by the next
//! `GET` of the evaluation once it has stalled.

use std::time::Instant;

use serde_json::{Value, json};
use shared::ApiError;
use shared::auth::password::constant_time_eq;
use shared::auth::records::ProjectSettings;
use shared::search::evaluation::{EvaluationRequest, INLINE_QUERIES, STEP_QUERIES};
use shared::search::metrics::{self, Totals};
use shared::search::query::mode_name;
use shared::search::rank::Fusion;
use shared::search::{Mode, rank};

use crate::engine::{self, Stores};

/// Queries whose candidates are fetched in one embedding request and one store round trip.
const SLICE: usize = 50;
/// The header a job's step request proves itself with.
pub const TOKEN_HEADER: &str = "x-edgerag-evaluation-token";
/// A job whose last step is older than this is taken to have lost its step.
const STALL_MS: u64 = 60_000;
/// Failed steps before a job gives up.
const MAX_ATTEMPTS: u64 = 3;

fn record_id(project: &str, id: &str) -> String {
    format!("evaluation:{project}:{id}")
}

/// The request of a job, kept apart from its record so that each step's write stays small.
fn spec_id(project: &str, id: &str) -> String {
    format!("evaluation-spec:{project}:{id}")
}

fn new_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the platform provides randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What clients see of a kept evaluation.
fn public(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(obj) = record.as_object_mut() {
        for private in [
            "_id", "_rev", "type", "project", "token", "totals", "attempts",
        ] {
            obj.remove(private);
        }
    }
    record
}

/// Scores `queries` (of `request`) in every mode it asks for, adding to `totals` (one per mode).
async fn score(
    stores: &Stores,
    project: &str,
    fusion: &Fusion,
    request: &EvaluationRequest,
    queries: &[(String, String)],
    totals: &mut [Totals],
) -> Result<(), ApiError> {
    let semantic = request.modes.iter().any(|m| *m != Mode::Keyword);
    let keyword = request.modes.iter().any(|m| *m != Mode::Semantic);
    for slice in queries.chunks(SLICE) {
        let texts: Vec<String> = slice.iter().map(|(_, text)| text.clone()).collect();
        let (lists, _) = engine::candidates(
            stores,
            project,
            &texts,
            &request.filter,
            semantic,
            keyword,
            fusion.candidates,
        )
        .await?;
        if let Some(why) = lists.first().and_then(|l| l.degraded.clone()) {
            return Err(ApiError::Unavailable(why));
        }
        for ((id, _), lists) in slice.iter().zip(&lists) {
            let judged = request.qrels.get(id).cloned().unwrap_or_default();
            for (m, mode) in request.modes.iter().enumerate() {
                let documents = rank::documents(&engine::ranking(lists, *mode, fusion));
                totals[m].add(&metrics::score_query(&documents, &judged, request.k));
            }
        }
    }
    Ok(())
}

fn results(modes: &[Mode], totals: &[Totals]) -> Value {
    let results: serde_json::Map<String, Value> = modes
        .iter()
        .zip(totals)
        .map(|(mode, totals)| (mode_name(*mode).to_string(), json!(totals.mean())))
        .collect();
    Value::Object(results)
}

/// Runs an evaluation and keeps its results: within this request (201) when it holds at most
/// [`INLINE_QUERIES`] judged queries, else as a job whose steps run after this request has been
/// answered (202; `GET` it until its `status` is `done`). `body` is the request as sent.
pub async fn run(
    stores: &Stores,
    project: &str,
    settings: &ProjectSettings,
    request: EvaluationRequest,
    body: Value,
) -> Result<(u16, Value), ApiError> {
    let started = Instant::now();
    let fusion = settings.fusion;
    let id = new_id(8);
    let mut record = json!({
        "_id": record_id(project, &id),
        "type": "evaluation",
        "project": project,
        "id": id,
        "name": request.name,
        "created_at": now_ms(),
        "k": request.k,
        "queries": request.queries.len(),
        "modes": request.modes.iter().map(|m| mode_name(*m)).collect::<Vec<_>>(),
        "settings": {"fusion": fusion, "retrieval": settings.retrieval},
    });
    if request.queries.len() <= INLINE_QUERIES {
        let mut totals = vec![Totals::default(); request.modes.len()];
        score(
            stores,
            project,
            &fusion,
            &request,
            &request.queries,
            &mut totals,
        )
        .await?;
        record["status"] = json!("done");
        record["queries_done"] = json!(request.queries.len());
        record["results"] = results(&request.modes, &totals);
        record["took_ms"] = json!(started.elapsed().as_millis() as u64);
        stores.couch.put(&record).await?;
        return Ok((201, public(&record)));
    }
    stores
        .couch
        .put(&json!({
            "_id": spec_id(project, &id),
            "type": "evaluation-spec",
            "request": body,
        }))
        .await?;
    record["status"] = json!("running");
    record["queries_done"] = json!(0);
    record["results"] = Value::Null;
    record["took_ms"] = Value::Null;
    record["updated_at"] = json!(now_ms());
    record["errors"] = json!([]);
    record["attempts"] = json!(0);
    record["totals"] = json!(vec![Totals::default(); request.modes.len()]);
    record["token"] = json!(new_id(24));
    match stores.couch.put(&record).await {
        Ok(rev) => record["_rev"] = json!(rev),
        Err(error) => {
            // No job without its record: the request kept above goes too (best effort).
            let _ = delete_spec(stores, project, &id).await;
            return Err(error);
        }
    }
    kick(project, &record);
    Ok((202, public(&record)))
}

async fn load(stores: &Stores, project: &str, id: &str) -> Result<Value, ApiError> {
    stores
        .couch
        .get(&record_id(project, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no evaluation {id} in this project")))
}

/// One step of a job: the next [`STEP_QUERIES`] queries, and the results after the last.
pub async fn step(
    stores: &Stores,
    project: &str,
    id: &str,
    token: &str,
) -> Result<Value, ApiError> {
    let mut record = load(stores, project, id).await?;
    let expected = record["token"].as_str().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
        return Err(ApiError::Unauthenticated(
            "not this evaluation's step".into(),
        ));
    }
    if record["status"] != "running" {
        return Ok(public(&record));
    }
    // Claim the step: a second runner of the same step loses this write and stops.
    record["updated_at"] = json!(now_ms());
    record["_rev"] = json!(stores.couch.put(&record).await?);
    match advance(stores, project, &mut record).await {
        Ok(()) => {}
        Err(error) => {
            let attempts = record["attempts"].as_u64().unwrap_or(0) + 1;
            record["attempts"] = json!(attempts);
            if let Some(errors) = record["errors"].as_array_mut() {
                errors.push(json!({"at": now_ms(), "error": error.to_string()}));
            }
            if attempts >= MAX_ATTEMPTS {
                record["status"] = json!("failed");
                record["finished_at"] = json!(now_ms());
            }
        }
    }
    record["updated_at"] = json!(now_ms());
    record["_rev"] = json!(stores.couch.put(&record).await?);
    if record["status"] == "running" {
        kick(project, &record);
    } else {
        // Finished either way: the queries are not kept beyond their evaluation.
        delete_spec(stores, project, id).await?;
    }
    Ok(public(&record))
}

/// Deletes a job's kept request, if it is still there.
async fn delete_spec(stores: &Stores, project: &str, id: &str) -> Result<(), ApiError> {
    if let Some(spec) = stores.couch.get(&spec_id(project, id)).await? {
        let gone = json!({"_id": spec["_id"], "_rev": spec["_rev"], "_deleted": true});
        stores.couch.bulk(vec![gone]).await?;
    }
    Ok(())
}

async fn advance(stores: &Stores, project: &str, record: &mut Value) -> Result<(), ApiError> {
    let id = record["id"].as_str().unwrap_or_default().to_string();
    let spec = stores
        .couch
        .get(&spec_id(project, &id))
        .await?
        .ok_or_else(|| ApiError::Internal(format!("evaluation {id}: its request is gone")))?;
    let request = EvaluationRequest::from_json(&spec["request"])?;
    let fusion: Fusion = serde_json::from_value(record["settings"]["fusion"].clone())
        .map_err(|e| ApiError::Internal(format!("evaluation {id}: its fusion: {e}")))?;
    let mut totals: Vec<Totals> = serde_json::from_value(record["totals"].clone())
        .map_err(|e| ApiError::Internal(format!("evaluation {id}: its totals: {e}")))?;
    let done = record["queries_done"].as_u64().unwrap_or(0) as usize;
    let end = (done + STEP_QUERIES).min(request.queries.len());
    score(
        stores,
        project,
        &fusion,
        &request,
        &request.queries[done..end],
        &mut totals,
    )
    .await?;
    record["queries_done"] = json!(end);
    record["totals"] = json!(totals);
    if end == request.queries.len() {
        record["status"] = json!("done");
        record["results"] = results(&request.modes, &totals);
        let finished = now_ms();
        record["finished_at"] = json!(finished);
        record["took_ms"] =
            json!(finished.saturating_sub(record["created_at"].as_u64().unwrap_or(finished)));
    }
    Ok(())
}

/// Starts the job's next step as a chained request, once this request has been answered.
fn kick(project: &str, record: &Value) {
    let url = format!(
        "http://search.spin.internal/v1/projects/{project}/evaluations/{}/step",
        record["id"].as_str().unwrap_or_default()
    );
    let token = record["token"].as_str().unwrap_or_default().to_string();
    guest::outbound::start_step(url, TOKEN_HEADER, token);
}

/// The project's kept evaluations, newest id order, results included.
pub async fn list(stores: &Stores, project: &str) -> Result<Value, ApiError> {
    let prefix = format!("evaluation:{project}:");
    let rows = stores.couch.prefix(&prefix, None, 200, true).await?;
    let mut items: Vec<Value> = rows.iter().map(|row| public(&row["doc"])).collect();
    items.sort_by_key(|e| std::cmp::Reverse(e["created_at"].as_u64().unwrap_or(0)));
    Ok(json!({"evaluations": items}))
}

/// One kept evaluation.
pub async fn get(stores: &Stores, project: &str, id: &str) -> Result<Value, ApiError> {
    let record = load(stores, project, id).await?;
    // A running job whose step was lost is started again.
    if record["status"] == "running"
        && now_ms() > record["updated_at"].as_u64().unwrap_or(0) + STALL_MS
    {
        kick(project, &record);
    }
    Ok(public(&record))
}
