//! The respond function: RAG answers with citations, chat history and an OpenAI-compatible endpoint.
//!
//! Thin glue on spin-sdk: route, parse, call `shared`, answer. It holds no domain logic of its own and
//! never depends on another function or on the host.

#![forbid(unsafe_code)]

use shared::auth::Action;
use shared::{Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Access,
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
