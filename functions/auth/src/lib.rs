//! The auth function: accounts, organisations, projects, roles, API keys and tokens.
//!
//! Thin glue on spin-sdk: route, parse, call `shared`, answer. It serves the `/v1/auth/...` routes and exports
//! the `edgerag:platform/auth` interface that ingest, search and respond are composed with at build time.
//! It holds no domain logic of its own and never depends on another function or on the host.

use shared::{Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

/// Generated bindings of the `auth-provider` world; the only unsafe code is the generator's.
#[allow(unsafe_code)]
mod provider {
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        world: "auth-provider",
        path: "../../wit",
        generate_all,
    });

    use super::Provider;
    export!(Provider with_types_in self);
}

use provider::edgerag::platform::types;
use provider::exports::edgerag::platform::auth;

struct Provider;

impl auth::Guest for Provider {
    async fn authorize(
        credential: String,
        project: String,
        action: types::Action,
        _origin: Option<String>,
    ) -> Result<types::Principal, types::Error> {
        let action = match action {
            types::Action::Ingest => shared::auth::Action::Ingest,
            types::Action::Search => shared::auth::Action::Search,
            types::Action::Respond => shared::auth::Action::Respond,
            types::Action::Admin => shared::auth::Action::Admin,
        };
        match shared::auth::authorize(&credential, &project, action) {
            Ok(()) => Err(types::Error {
                code: "internal".into(),
                message: "internal error".into(),
                status: 500,
            }),
            Err(error) => Err(types::Error {
                code: error.code().into(),
                message: error.to_string(),
                status: error.status(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
}

const ROUTES: &[Route<Endpoint>] = &[Route {
    method: "GET",
    path: "/v1/auth/health",
    endpoint: Endpoint::Health,
}];

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let reply = match route::resolve(ROUTES, request.method().as_str(), request.uri().path()) {
        Ok(found) => match found.endpoint {
            Endpoint::Health => Reply::json(200, &Service::Auth.health()),
        },
        Err(error) => Reply::error(&error),
    };
    reply.into_http()
}
