//! The respond function: RAG answers with citations, chat history and an OpenAI-compatible endpoint.
//!
//! Thin glue on spin-sdk: route, parse, call `shared`, answer. It holds no domain logic of its own and
//! never depends on another function or on the host.

#![deny(unsafe_code)]

use shared::auth::Action;
use shared::{ApiError, Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

/// Generated bindings of the `respond-consumer` world: `auth` as `guest` binds it, and `retrieve`,
/// which composing with the search component satisfies. The only unsafe code is the generator's.
#[allow(unsafe_code)]
mod consumer {
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        world: "respond-consumer",
        path: "../../wit",
        with: {
            "edgerag:platform/types@0.1.0": guest::bindings::edgerag::platform::types,
            "edgerag:platform/auth@0.1.0": guest::bindings::edgerag::platform::auth,
        },
        generate_all,
    });
}

use consumer::edgerag::platform::retrieve;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Access,
    Context,
}

/// The passages an answer to `q` would be grounded in: the same retrieval the search route runs,
/// reached through the `retrieve` interface.
async fn context(request: &Request, project: &str) -> Result<serde_json::Value, ApiError> {
    let principal = guest::authorize(request.headers(), project, Action::Respond).await?;
    let mut query = serde_json::Map::new();
    for (name, value) in shared::request::query_pairs(request.uri().query().unwrap_or_default())? {
        match name.as_str() {
            "q" => query.insert("query".into(), value.into()),
            "top_k" => query.insert(
                "top_k".into(),
                value
                    .parse::<u64>()
                    .map_err(|_| ApiError::BadRequest("`top_k` must be an integer".into()))?
                    .into(),
            ),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "`{other}` is not a known query parameter (q, top_k)"
                )));
            }
        };
    }
    let reply = retrieve::search(
        principal.authorization,
        serde_json::Value::Object(query).to_string(),
    )
    .await
    .map_err(guest::api_error)?;
    serde_json::from_str(&reply)
        .map_err(|e| ApiError::Internal(format!("retrieve answered something not JSON: {e}")))
}

const ROUTES: &[Route<Endpoint>] = &[
    Route {
        method: "GET",
        path: "/v1/respond/health",
        endpoint: Endpoint::Health,
    },
    Route {
        method: "GET",
        path: "/v1/respond/projects/:project/access",
        endpoint: Endpoint::Access,
    },
    Route {
        method: "GET",
        path: "/v1/respond/projects/:project/context",
        endpoint: Endpoint::Context,
    },
];

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if request.method() == spin_sdk::http::Method::OPTIONS
        && let Some(origin) = &origin
    {
        return Reply::preflight(origin).into_http();
    }
    let reply = match route::resolve(ROUTES, request.method().as_str(), request.uri().path()) {
        Ok(found) => match found.endpoint {
            Endpoint::Health => Reply::json(200, &Service::Respond.health()),
            Endpoint::Context => Reply::from_result(
                context(&request, found.param("project").unwrap_or_default()).await,
            ),
            // Whether the caller's credential may use this function on the project.
            Endpoint::Access => {
                let principal = guest::authorize(
                    request.headers(),
                    found.param("project").unwrap_or_default(),
                    Action::Respond,
                )
                .await;
                // Widget keys are used from web pages: let the page whose origin was accepted read the answer.
                let widget = principal.as_ref().is_ok_and(|p| p.kind == "widget_key");
                match (Reply::from_result(principal), &origin) {
                    (reply, Some(origin)) if widget => reply.allow_origin(origin),
                    (reply, _) => reply,
                }
            }
        },
        Err(error) => Reply::error(&error),
    };
    reply.into_http()
}
