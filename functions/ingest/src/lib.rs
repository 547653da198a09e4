//! The ingest function: uploads, URLs, Q&A pairs and webhooks turned into cleaned, chunked, embedded documents.
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
        path: "/v1/ingest/health",
        endpoint: Endpoint::Health,
    },
    Route {
        method: "GET",
        path: "/v1/ingest/projects/:project/access",
        endpoint: Endpoint::Access,
    },
];

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let reply = match route::resolve(ROUTES, request.method().as_str(), request.uri().path()) {
        Ok(found) => match found.endpoint {
            Endpoint::Health => Reply::json(200, &Service::Ingest.health()),
            // Whether the caller's credential may use this function on the project.
            Endpoint::Access => Reply::from_result(
                guest::authorize(
                    request.headers(),
                    found.param("project").unwrap_or_default(),
                    Action::Ingest,
                )
                .await,
            ),
        },
        Err(error) => Reply::error(&error),
    };
    reply.into_http()
}
