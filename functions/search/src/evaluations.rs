//! Evaluations: a team's queries and judgements run through every asked mode with the project's
//! current settings, scored by document (a document ranks where its best chunk does), and kept so
//! that settings can be compared over time.

use std::time::Instant;

use serde_json::{Value, json};
use shared::ApiError;
use shared::auth::records::ProjectSettings;
use shared::search::evaluation::EvaluationRequest;
use shared::search::metrics::{self, QueryScores};
use shared::search::query::mode_name;
use shared::search::{Mode, rank};

use crate::engine::{self, Stores};

/// Queries whose candidates are fetched in one embedding request and one store round trip.
const SLICE: usize = 50;

fn record_id(project: &str, id: &str) -> String {
    format!("evaluation:{project}:{id}")
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        for private in ["_id", "_rev", "type", "project"] {
            obj.remove(private);
        }
    }
    record
}

/// Runs an evaluation and keeps its results.
pub async fn run(
    stores: &Stores,
    project: &str,
    settings: &ProjectSettings,
    request: EvaluationRequest,
) -> Result<Value, ApiError> {
    let started = Instant::now();
    let fusion = settings.fusion;
    let semantic = request.modes.iter().any(|m| *m != Mode::Keyword);
    let keyword = request.modes.iter().any(|m| *m != Mode::Semantic);
    let mut scores: Vec<Vec<QueryScores>> = vec![Vec::new(); request.modes.len()];
    for slice in request.queries.chunks(SLICE) {
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
                let documents = rank::documents(&engine::ranking(lists, *mode, &fusion));
                scores[m].push(metrics::score_query(&documents, &judged, request.k));
            }
        }
    }
    let results: serde_json::Map<String, Value> = request
        .modes
        .iter()
        .zip(&scores)
        .map(|(mode, scores)| (mode_name(*mode).to_string(), json!(metrics::mean(scores))))
        .collect();
    let id = new_id();
    let record = json!({
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
        "results": results,
        "took_ms": started.elapsed().as_millis() as u64,
    });
    stores.couch.put(&record).await?;
    Ok(public(&record))
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
    match stores.couch.get(&record_id(project, id)).await? {
        Some(record) => Ok(public(&record)),
        None => Err(ApiError::NotFound(format!(
            "no evaluation {id} in this project"
        ))),
    }
}
