//! Accounts for end-to-end tests, made the way a user makes them: registration, the code from the
//! outbox (read with the operator key), sign-in, an organisation, a project and its keys.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::{Reply, exchange};

/// The operator key tests start the host with (`SPIN_VARIABLE_AUTH_OPERATOR_KEY`).
pub const OPERATOR: &str = "operator-key-for-tests-0123456789";

/// One request with an optional credential and JSON body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(credential) = credential {
        request = request.header("authorization", credential);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            body.to_string()
        }
        None => String::new(),
    };
    exchange(addr, request.body(body).expect("a valid request"))
        .await
        .expect("the host answers")
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Registers, verifies (with the code from the outbox) and signs in; the access token.
pub async fn sign_up(addr: SocketAddr, email: &str) -> String {
    let credentials = json!({"email": email, "password": "a long enough password"});
    let reply = call(
        addr,
        "POST",
        "/v1/auth/register",
        None,
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let outbox = call(
        addr,
        "GET",
        &format!("/v1/auth/admin/outbox?to={}", email.replace('@', "%40")),
        Some(&bearer(OPERATOR)),
        None,
    )
    .await;
    assert_eq!(outbox.status, 200, "{}", outbox.text());
    let text = outbox.json()["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .rev()
                .find_map(|m| m["text"].as_str())
                .map(str::to_string)
        })
        .expect("a code was mailed");
    let code = &text["Your code is ".len().."Your code is ".len() + 6];
    let reply = call(
        addr,
        "POST",
        "/v1/auth/verify",
        None,
        Some(json!({"email": email, "code": code})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = call(addr, "POST", "/v1/auth/login", None, Some(credentials)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// POSTs JSON that must answer 201, and returns the answer.
pub async fn created(addr: SocketAddr, path: &str, token: &str, body: Value) -> Value {
    let reply = call(addr, "POST", path, Some(&bearer(token)), Some(body)).await;
    assert_eq!(reply.status, 201, "{path}: {}", reply.text());
    reply.json()
}

/// A signed-in owner with one organisation and one project.
#[derive(Debug, Clone)]
pub struct Owner {
    pub token: String,
    pub org: String,
    pub project: String,
}

impl Owner {
    /// Signs `email` up and makes an organisation and a project.
    pub async fn new(addr: SocketAddr, email: &str) -> Self {
        let token = sign_up(addr, email).await;
        let org = created(addr, "/v1/orgs", &token, json!({"name": "Acme"})).await["id"]
            .as_str()
            .expect("an org id")
            .to_string();
        let project = created(
            addr,
            &format!("/v1/orgs/{org}/projects"),
            &token,
            json!({"name": "Help centre"}),
        )
        .await["id"]
            .as_str()
            .expect("a project id")
            .to_string();
        Self {
            token,
            org,
            project,
        }
    }

    /// A new API key of the project with these actions, as an `authorization` value.
    pub async fn key(&self, addr: SocketAddr, actions: &[&str]) -> String {
        let key = created(
            addr,
            &format!("/v1/projects/{}/keys", self.project),
            &self.token,
            json!({"name": "test", "actions": actions}),
        )
        .await["key"]
            .as_str()
            .expect("a key")
            .to_string();
        bearer(&key)
    }
}
