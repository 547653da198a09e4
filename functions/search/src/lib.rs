//! The search function: semantic, keyword and hybrid search over a project's knowledge, the
//! `retrieve` interface respond is composed with, and evaluations.
//!
//! Thin glue on spin-sdk: route, parse, call `shared`, answer. It holds no domain logic of its own and
//! never depends on another function or on the host.

mod engine;
mod evaluations;

use std::time::Instant;

use shared::auth::Action;
use shared::auth::records::ProjectSettings;
use shared::search::SearchRequest;
use shared::search::evaluation::EvaluationRequest;
use shared::{ApiError, Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

/// Generated bindings of the `search-provider` world: the `auth` import is the one `guest` binds, the
/// `retrieve` export is implemented here. The only unsafe code is the generator's.
#[allow(unsafe_code)]
mod provider {
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        world: "search-provider",
        path: "../../wit",
        with: {
            "edgerag:platform/types@0.1.0": guest::bindings::edgerag::platform::types,
            "edgerag:platform/auth@0.1.0": guest::bindings::edgerag::platform::auth,
        },
        generate_all,
    });

    use super::Retriever;
    export!(Retriever with_types_in self);
}

use guest::bindings::edgerag::platform::types;
use provider::exports::edgerag::platform::retrieve;

/// The largest request body: a search is small; an evaluation of 10,000 queries with a few
/// judgements each fits inside.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Access,
    Search,
    QuickSearch,
    Evaluate,
    Evaluations,
    Evaluation,
    EvaluationStep,
}

use Endpoint as E;
use shared::route::at;

const ROUTES: &[Route<Endpoint>] = &[
    at("GET", "/v1/search/health", E::Health),
    at("GET", "/v1/search/projects/:project/access", E::Access),
    at("POST", "/v1/projects/:project/search", E::Search),
    at("GET", "/v1/projects/:project/search", E::QuickSearch),
    at("POST", "/v1/projects/:project/evaluations", E::Evaluate),
    at("GET", "/v1/projects/:project/evaluations", E::Evaluations),
    at(
        "GET",
        "/v1/projects/:project/evaluations/:id",
        E::Evaluation,
    ),
    at(
        "POST",
        "/v1/projects/:project/evaluations/:id/step",
        E::EvaluationStep,
    ),
];

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn read_json(request: Request) -> Result<serde_json::Value, ApiError> {
    guest::read_json(request, MAX_BODY_BYTES).await
}

fn server_timing(auth_ms: f64, timing: engine::Timing, total_ms: f64) -> String {
    let rerank = if timing.rerank_ms > 0.0 {
        format!(", rerank;dur={:.1}", timing.rerank_ms)
    } else {
        String::new()
    };
    format!(
        "auth;dur={auth_ms:.1}, embed;dur={:.1}, store;dur={:.1}{rerank}, total;dur={total_ms:.1}",
        timing.embed_ms, timing.store_ms
    )
}

async fn answer(request: Request, started: Instant) -> Result<Reply, ApiError> {
    let found = route::resolve(ROUTES, request.method().as_str(), request.uri().path())?;
    let endpoint = found.endpoint;
    if let E::Health = endpoint {
        return Ok(Reply::json(200, &Service::Search.health()));
    }
    let project = found.param("project").unwrap_or_default().to_string();
    let id = found.param("id").unwrap_or_default().to_string();
    if let E::EvaluationStep = endpoint {
        // A job's step is the component calling itself: it proves itself with the job's token.
        let token = guest::outbound::header_text(request.headers(), evaluations::TOKEN_HEADER);
        shared::auth::validate_id(&project, "project")?;
        shared::auth::validate_id(&id, "evaluation")?;
        let stores = engine::Stores::load().await?;
        let body = evaluations::step(&stores, &project, &id, &token).await?;
        return Ok(Reply::json(200, &body));
    }
    // Evaluations only read the project's knowledge, as searches do.
    let principal = guest::authorize(request.headers(), &project, Action::Search).await?;
    let auth_ms = ms(started);
    if let E::Access = endpoint {
        return Ok(Reply::json(200, &principal));
    }
    let stores = engine::Stores::load().await?;
    let settings = &principal.settings;
    match endpoint {
        E::Search | E::QuickSearch => {
            let search = if let E::Search = endpoint {
                SearchRequest::from_json(&read_json(request).await?, settings)?
            } else {
                SearchRequest::from_query_string(
                    request.uri().query().unwrap_or_default(),
                    settings,
                )?
            };
            let (body, timing) = engine::search(&stores, &project, settings, &search).await?;
            let mut reply = Reply::json(200, &body);
            reply
                .headers
                .push(("server-timing", server_timing(auth_ms, timing, ms(started))));
            Ok(reply)
        }
        E::Evaluate => {
            let body = read_json(request).await?;
            let evaluation = EvaluationRequest::from_json(&body)?;
            let (status, record) =
                evaluations::run(&stores, &project, settings, evaluation, body).await?;
            let mut reply = Reply::json(status, &record);
            if status == 202 {
                let id = record["id"].as_str().unwrap_or_default();
                reply.headers.push((
                    "location",
                    format!("/v1/projects/{project}/evaluations/{id}"),
                ));
            }
            Ok(reply)
        }
        E::Evaluations => Ok(Reply::json(
            200,
            &evaluations::list(&stores, &project).await?,
        )),
        E::Evaluation => Ok(Reply::json(
            200,
            &evaluations::get(&stores, &project, &id).await?,
        )),
        E::Health | E::Access | E::EvaluationStep => unreachable!("answered above"),
    }
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let started = Instant::now();
    let reply = match answer(request, started).await {
        Ok(reply) => reply,
        Err(error) => {
            if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                eprintln!("search: {detail}");
            }
            Reply::error(&error)
        }
    };
    reply.into_http()
}

/// `retrieve` for respond: the search route's code, for a caller auth has admitted.
struct Retriever;

impl retrieve::Guest for Retriever {
    async fn search(
        authorization: types::Authorization,
        request: String,
    ) -> Result<String, types::Error> {
        let outcome = async {
            let settings: ProjectSettings = serde_json::from_str(&authorization.settings)
                .map_err(|e| ApiError::Internal(format!("unreadable project settings: {e}")))?;
            let body: serde_json::Value = serde_json::from_str(&request)
                .map_err(|e| ApiError::BadRequest(format!("the request is not valid JSON: {e}")))?;
            let search = SearchRequest::from_json(&body, &settings)?;
            let stores = engine::Stores::load().await?;
            let (reply, _) =
                engine::search(&stores, &authorization.project, &settings, &search).await?;
            Ok::<_, ApiError>(reply.to_string())
        };
        outcome.await.map_err(|error| {
            if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                eprintln!("search (retrieve): {detail}");
            }
            guest::wit_error(&error)
        })
    }
}
