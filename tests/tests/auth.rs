//! Accounts, organisations, projects, roles, keys and tokens, through the real host running the real
//! auth component (and ingest, search and respond composed with it) against the embedded document store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shared::auth::token::{Claims, ISSUER, SigningKeys};
use tests::accounts::{OPERATOR, bearer, call};
use tests::{Options, Reply, exchange, start, temp_dir, workspace_root};

/// A host serving the project's spin.toml with embedded stores in a data directory the test can read.
async fn host_with(env: &[(&str, &str)]) -> (host::RunningHost, PathBuf) {
    let data_dir = temp_dir("auth");
    let mut vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.insert("SPIN_VARIABLE_AUTH_OPERATOR_KEY".into(), OPERATOR.into());
    let options = Options {
        env: vars,
        data_dir: Some(data_dir.clone()),
        // The access suite reaches search too; under the whole suite's load its first search has
        // taken over the default 10 s (not seen alone): see the stop's note.
        request_timeout: std::time::Duration::from_secs(60),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options)
        .await
        .unwrap();
    (host, data_dir)
}

/// The newest code mailed to `email`, read from the outbox with the operator key.
async fn mailed_code(addr: SocketAddr, email: &str) -> String {
    let reply = call(
        addr,
        "GET",
        &format!("/v1/auth/admin/outbox?to={}", email.replace('@', "%40")),
        Some(&bearer(OPERATOR)),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let items = reply.json()["items"].as_array().unwrap().clone();
    let text = items
        .iter()
        .filter_map(|m| m["text"].as_str())
        .rfind(|t| t.starts_with("Your code is "))
        .unwrap_or_else(|| panic!("no code mailed to {email}: {items:?}"))
        .to_string();
    text["Your code is ".len().."Your code is ".len() + 6].to_string()
}

/// Registers, verifies and signs in; the access token and the user id.
async fn sign_up(addr: SocketAddr, email: &str) -> (String, String) {
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
    let code = mailed_code(addr, email).await;
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
    let body = reply.json();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["user"]["id"].as_str().unwrap().to_string(),
    )
}

async fn created(addr: SocketAddr, path: &str, token: &str, body: Value) -> Value {
    let reply = call(addr, "POST", path, Some(&bearer(token)), Some(body)).await;
    assert_eq!(reply.status, 201, "{path}: {}", reply.text());
    reply.json()
}

/// Reads the document store directly, as an operator would, with its generated secret.
async fn docstore(
    host: &host::RunningHost,
    data_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let store = host.services.iter().find(|s| s.name == "docstore").unwrap();
    let secret = std::fs::read_to_string(data_dir.join("secrets/docstore")).unwrap();
    let reply = call(
        store.addr,
        method,
        path,
        Some(&tests::basic_auth("admin", secret.trim())),
        body,
    )
    .await;
    assert!(
        reply.status < 300,
        "{method} {path}: {} {}",
        reply.status,
        reply.text()
    );
    reply.json()
}

fn signing_keys(data_dir: &Path) -> SigningKeys {
    let secret = std::fs::read_to_string(data_dir.join("secrets/auth-signing")).unwrap();
    SigningKeys::parse(&format!("local:{}", secret.trim())).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_account_lifecycle() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    let email = "Alice@Example.com";
    let password = json!({"email": email, "password": "a long enough password"});

    // Register; a wrong code fails; the mailed one verifies; signing in before that is refused.
    let reply = call(
        addr,
        "POST",
        "/v1/auth/register",
        None,
        Some(password.clone()),
    )
    .await;
    assert_eq!(reply.status, 202);
    let early = call(addr, "POST", "/v1/auth/login", None, Some(password.clone())).await;
    assert_eq!(early.status, 403, "{}", early.text());
    let code = mailed_code(addr, "alice@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let reply = call(
        addr,
        "POST",
        "/v1/auth/verify",
        None,
        Some(json!({"email": email, "code": wrong})),
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = call(
        addr,
        "POST",
        "/v1/auth/verify",
        None,
        Some(json!({"email": email, "code": code})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A code works once.
    let again = call(
        addr,
        "POST",
        "/v1/auth/verify",
        None,
        Some(json!({"email": email, "code": code})),
    )
    .await;
    assert_eq!(again.status, 400);

    // Sign in; the token verifies without the store; /me answers.
    let wrong_password = call(
        addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"email": email, "password": "not the password"})),
    )
    .await;
    assert_eq!(wrong_password.status, 401);
    let login = call(addr, "POST", "/v1/auth/login", None, Some(password.clone())).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let tokens = login.json();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.starts_with("err_"), "{refresh}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let claims = call(addr, "GET", "/v1/auth/token", Some(&bearer(&access)), None).await;
    assert_eq!(claims.status, 200, "{}", claims.text());
    assert_eq!(claims.json()["iss"], ISSUER);
    let me = call(addr, "GET", "/v1/auth/me", Some(&bearer(&access)), None).await;
    assert_eq!(me.json()["email"], "alice@example.com");

    // Refresh rotates; using the old refresh token again revokes the whole sign-in.
    let rotated = call(
        addr,
        "POST",
        "/v1/auth/token/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let next_refresh = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(next_refresh, refresh);
    let reused = call(
        addr,
        "POST",
        "/v1/auth/token/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(reused.status, 401);
    let after_theft = call(
        addr,
        "POST",
        "/v1/auth/token/refresh",
        None,
        Some(json!({"refresh_token": next_refresh})),
    )
    .await;
    assert_eq!(
        after_theft.status, 401,
        "the family is revoked after a reuse"
    );
    let me = call(addr, "GET", "/v1/auth/me", Some(&bearer(&access)), None).await;
    assert_eq!(
        me.status, 401,
        "the access token of the revoked sign-in stops working"
    );

    // Change the password: other sign-ins end, the caller gets a new one.
    let other = call(addr, "POST", "/v1/auth/login", None, Some(password.clone()))
        .await
        .json();
    let other_access = other["access_token"].as_str().unwrap().to_string();
    let login = call(addr, "POST", "/v1/auth/login", None, Some(password.clone()))
        .await
        .json();
    let access = login["access_token"].as_str().unwrap().to_string();
    let changed = call(
        addr,
        "POST",
        "/v1/auth/password",
        Some(&bearer(&access)),
        Some(json!({"current_password": "a long enough password", "new_password": "another long password"})),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let access = changed.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            addr,
            "GET",
            "/v1/auth/me",
            Some(&bearer(&other_access)),
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(
        call(addr, "GET", "/v1/auth/me", Some(&bearer(&access)), None)
            .await
            .status,
        200
    );
    let old = call(addr, "POST", "/v1/auth/login", None, Some(password.clone())).await;
    assert_eq!(old.status, 401);

    // Sign out.
    let out = call(
        addr,
        "POST",
        "/v1/auth/logout",
        Some(&bearer(&access)),
        None,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(
        call(addr, "GET", "/v1/auth/me", Some(&bearer(&access)), None)
            .await
            .status,
        401
    );

    // Reset the password with a mailed code.
    let reset = call(
        addr,
        "POST",
        "/v1/auth/password/reset",
        None,
        Some(json!({"email": email})),
    )
    .await;
    assert_eq!(reset.status, 202);
    let code = mailed_code(addr, "alice@example.com").await;
    let confirm = call(
        addr,
        "POST",
        "/v1/auth/password/reset/confirm",
        None,
        Some(json!({"email": email, "code": code, "new_password": "a third long password"})),
    )
    .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    let third = json!({"email": email, "password": "a third long password"});
    let login = call(addr, "POST", "/v1/auth/login", None, Some(third.clone())).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let access = login.json()["access_token"].as_str().unwrap().to_string();

    // Export everything, then delete the account: it cannot sign in, and the address is free again.
    let org = created(addr, "/v1/orgs", &access, json!({"name": "Alice's"})).await;
    let export = call(
        addr,
        "GET",
        "/v1/auth/me/export",
        Some(&bearer(&access)),
        None,
    )
    .await;
    assert_eq!(export.status, 200);
    let export = export.json();
    assert_eq!(export["user"]["email"], "alice@example.com");
    assert_eq!(export["organisations"][0]["organisation"], org["id"]);
    assert!(export["sessions"].as_array().unwrap().len() >= 4);
    assert!(
        export["sign_in_history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "login")
    );
    assert!(
        !export.to_string().contains("argon2id"),
        "no password hash in the export"
    );
    let wrong = call(
        addr,
        "DELETE",
        "/v1/auth/me",
        Some(&bearer(&access)),
        Some(json!({"password": "nope nope nope"})),
    )
    .await;
    assert_eq!(wrong.status, 403);
    let deleted = call(
        addr,
        "DELETE",
        "/v1/auth/me",
        Some(&bearer(&access)),
        Some(json!({"password": "a third long password"})),
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(
        call(addr, "POST", "/v1/auth/login", None, Some(third))
            .await
            .status,
        401
    );
    assert_eq!(
        call(addr, "GET", "/v1/auth/me", Some(&bearer(&access)), None)
            .await
            .status,
        401
    );
    let (fresh, _) = sign_up(addr, "alice@example.com").await;
    let orgs = call(addr, "GET", "/v1/orgs", Some(&bearer(&fresh)), None)
        .await
        .json();
    assert_eq!(
        orgs["items"],
        json!([]),
        "the sole-owner organisation went with the account"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_do_not_reveal_which_addresses_have_accounts() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    sign_up(addr, "known@example.com").await;
    let register = |email: &'static str| {
        call(
            addr,
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"email": email, "password": "a long enough password"})),
        )
    };
    let (known, unknown) = (
        register("known@example.com").await,
        register("unknown@example.com").await,
    );
    assert_eq!(
        (known.status, known.body.clone()),
        (unknown.status, unknown.body.clone())
    );
    let login = |email: &'static str| {
        call(
            addr,
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "wrong password here"})),
        )
    };
    let (known, unknown) = (
        login("known@example.com").await,
        login("nobody@example.com").await,
    );
    assert_eq!(known.status, 401);
    assert_eq!(
        (known.status, known.body.clone()),
        (unknown.status, unknown.body.clone())
    );
    let reset = |email: &'static str| {
        call(
            addr,
            "POST",
            "/v1/auth/password/reset",
            None,
            Some(json!({"email": email})),
        )
    };
    let (known, unknown) = (
        reset("known@example.com").await,
        reset("nobody@example.com").await,
    );
    assert_eq!(
        (known.status, known.body.clone()),
        (unknown.status, unknown.body.clone())
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_address_make_one_account() {
    let (host, data_dir) = host_with(&[]).await;
    let addr = host.addr;
    let attempts = (0..8).map(|i| {
        call(
            addr,
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"email": "race@example.com", "password": format!("password number {i}")})),
        )
    });
    for reply in futures::future::join_all(attempts).await {
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    let users = docstore(
        &host,
        &data_dir,
        "POST",
        "/edgerag_auth/_find",
        Some(json!({"selector": {"type": "user", "email": "race@example.com"}})),
    )
    .await;
    assert_eq!(users["docs"].as_array().unwrap().len(), 1, "{users}");
    let claims = docstore(
        &host,
        &data_dir,
        "POST",
        "/edgerag_auth/_find",
        Some(json!({"selector": {"type": "email"}})),
    )
    .await;
    assert_eq!(claims["docs"].as_array().unwrap().len(), 1, "{claims}");
    host.stop().await;
}

/// One organisation's project and everything needed to attack it.
struct World {
    addr: SocketAddr,
    owner: String,
    viewer: String,
    outsider: String,
    org: String,
    project: String,
    project_name: String,
    other_project: String,
    search_key: String,
    full_key: String,
    outsider_key: String,
    revoked_key: String,
    expired_key: String,
    expired_token: String,
    tampered_token: String,
}

async fn world(host: &host::RunningHost, data_dir: &Path) -> World {
    let addr = host.addr;
    let (owner, _) = sign_up(addr, "owner@example.com").await;
    let (viewer, viewer_id) = sign_up(addr, "viewer@example.com").await;
    let (outsider, _) = sign_up(addr, "outsider@example.com").await;
    let org = created(addr, "/v1/orgs", &owner, json!({"name": "Acme"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let project_name = "Acme help centre";
    let project = created(
        addr,
        &format!("/v1/orgs/{org}/projects"),
        &owner,
        json!({"name": project_name}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    created(
        addr,
        &format!("/v1/orgs/{org}/members"),
        &owner,
        json!({"email": "viewer@example.com", "role": "member"}),
    )
    .await;
    let role = call(
        addr,
        "PUT",
        &format!("/v1/projects/{project}/members/{viewer_id}"),
        Some(&bearer(&owner)),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(role.status, 200, "{}", role.text());
    let other_org = created(addr, "/v1/orgs", &outsider, json!({"name": "Other"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_project = created(
        addr,
        &format!("/v1/orgs/{other_org}/projects"),
        &outsider,
        json!({"name": "Other bot"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = |token: String, project: String, actions: Value| async move {
        created(
            addr,
            &format!("/v1/projects/{project}/keys"),
            &token,
            json!({"name": "k", "actions": actions}),
        )
        .await
    };
    let search_key = key(owner.clone(), project.clone(), json!(["search"])).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let full_key = key(
        owner.clone(),
        project.clone(),
        json!(["ingest", "search", "respond", "admin"]),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let outsider_key = key(
        outsider.clone(),
        other_project.clone(),
        json!(["ingest", "search", "respond", "admin"]),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = key(
        owner.clone(),
        project.clone(),
        json!(["ingest", "search", "respond", "admin"]),
    )
    .await;
    let revoke = call(
        addr,
        "DELETE",
        &format!(
            "/v1/projects/{project}/keys/{}",
            revoked["id"].as_str().unwrap()
        ),
        Some(&bearer(&owner)),
        None,
    )
    .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    // An expired key: created valid for a day, then its expiry moved into the past in the store.
    let expired = key(
        owner.clone(),
        project.clone(),
        json!(["ingest", "search", "respond", "admin"]),
    )
    .await;
    let path = format!("/edgerag_auth/key%3A{}", expired["id"].as_str().unwrap());
    let mut doc = docstore(host, data_dir, "GET", &path, None).await;
    doc["expires"] = json!(now() - 10);
    docstore(host, data_dir, "PUT", &path, Some(doc)).await;
    // Tokens signed with the deployment's own key: one expired, one altered after signing.
    let keys = signing_keys(data_dir);
    let valid: Claims = {
        let reply = call(addr, "GET", "/v1/auth/token", Some(&bearer(&owner)), None).await;
        serde_json::from_value(reply.json()).unwrap()
    };
    let expired_token = keys.sign(&Claims {
        iat: now() - 3600,
        exp: now() - 1800,
        ..valid.clone()
    });
    let mut parts: Vec<String> = owner.split('.').map(str::to_string).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    payload["exp"] = json!(now() + 86_400 * 365);
    parts[1] = b64.encode(payload.to_string());
    let tampered_token = parts.join(".");
    World {
        addr,
        owner,
        viewer,
        outsider,
        org,
        project,
        project_name: project_name.into(),
        other_project,
        search_key,
        full_key,
        outsider_key,
        revoked_key: revoked["key"].as_str().unwrap().to_string(),
        expired_key: expired["key"].as_str().unwrap().to_string(),
        expired_token,
        tampered_token,
    }
}

/// Credentials that must never reach a project's routes: none, another project's, expired,
/// tampered, revoked. Each with the statuses a refusal may have.
fn attacks(w: &World) -> Vec<(&'static str, Option<String>, &'static [u16])> {
    vec![
        ("missing credential", None, &[401]),
        (
            "another project's token",
            Some(bearer(&w.outsider)),
            &[403, 404],
        ),
        (
            "another project's key",
            Some(format!("ApiKey {}", w.outsider_key)),
            &[403, 404],
        ),
        ("expired token", Some(bearer(&w.expired_token)), &[401]),
        ("tampered token", Some(bearer(&w.tampered_token)), &[401]),
        (
            "revoked key",
            Some(format!("ApiKey {}", w.revoked_key)),
            &[401],
        ),
        (
            "expired key",
            Some(format!("ApiKey {}", w.expired_key)),
            &[401],
        ),
    ]
}

/// Asserts a refusal: one of the expected statuses, a JSON error body, and nothing of the project.
fn refused(reply: &Reply, statuses: &[u16], what: &str, w: &World) {
    assert!(
        statuses.contains(&reply.status),
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    let body = reply.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["error"], "{what}: {body}");
    assert!(body["error"]["code"].is_string(), "{what}: {body}");
    let text = reply.text();
    assert!(
        !text.contains(&w.project_name) && !text.contains("erk_"),
        "{what} leaked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_holds_on_every_route_of_every_function() {
    let (host, data_dir) = host_with(&[]).await;
    let w = world(&host, &data_dir).await;
    let addr = w.addr;
    let p = &w.project;
    let org = &w.org;

    // The functions' routes: (path, what the owner's token and the full key may do there).
    let function_routes = [
        (format!("/v1/ingest/projects/{p}/access"), "ingest"),
        (format!("/v1/search/projects/{p}/access"), "search"),
        (format!("/v1/respond/projects/{p}/access"), "respond"),
    ];
    for (path, action) in &function_routes {
        for (who, credential) in [
            ("owner token", bearer(&w.owner)),
            ("full key", format!("ApiKey {}", w.full_key)),
            ("full key as bearer", bearer(&w.full_key)),
        ] {
            let reply = call(addr, "GET", path, Some(&credential), None).await;
            assert_eq!(reply.status, 200, "{who} on {path}: {}", reply.text());
        }
        let attacks = [
            ("missing credential", None, &[401][..]),
            (
                "another project's token",
                Some(bearer(&w.outsider)),
                &[403, 404][..],
            ),
            (
                "another project's key",
                Some(format!("ApiKey {}", w.outsider_key)),
                &[403, 404][..],
            ),
            ("expired token", Some(bearer(&w.expired_token)), &[401][..]),
            (
                "tampered token",
                Some(bearer(&w.tampered_token)),
                &[401][..],
            ),
            (
                "revoked key",
                Some(format!("ApiKey {}", w.revoked_key)),
                &[401][..],
            ),
            (
                "expired key",
                Some(format!("ApiKey {}", w.expired_key)),
                &[401][..],
            ),
            ("garbage key", Some("ApiKey erk_nothing".into()), &[401][..]),
        ];
        for (what, credential, statuses) in attacks {
            let reply = call(addr, "GET", path, credential.as_deref(), None).await;
            refused(&reply, statuses, &format!("{what} on {path}"), &w);
        }
        // A key scoped to search only, and a viewer: allowed to read, not to write.
        let scoped = call(
            addr,
            "GET",
            path,
            Some(&format!("ApiKey {}", w.search_key)),
            None,
        )
        .await;
        let viewer = call(addr, "GET", path, Some(&bearer(&w.viewer)), None).await;
        match *action {
            "ingest" => {
                refused(&scoped, &[403], "search-only key ingesting", &w);
                refused(&viewer, &[403], "viewer ingesting (an editor's action)", &w);
            }
            "search" => {
                assert_eq!(scoped.status, 200, "{}", scoped.text());
                assert_eq!(viewer.status, 200, "{}", viewer.text());
            }
            _ => {
                refused(&scoped, &[403], "search-only key responding", &w);
                assert_eq!(viewer.status, 200, "{}", viewer.text());
            }
        }
    }

    // Ingest's document routes: reads need search (a viewer's), writes need ingest (an editor's).
    let ingest_routes: Vec<(&str, String, Option<Value>, bool)> = vec![
        ("GET", format!("/v1/projects/{p}/documents"), None, false),
        ("GET", format!("/v1/projects/{p}/documents/d1"), None, false),
        (
            "GET",
            format!("/v1/projects/{p}/documents/d1/chunks"),
            None,
            false,
        ),
        (
            "GET",
            format!("/v1/projects/{p}/documents/d1/content"),
            None,
            false,
        ),
        (
            "POST",
            format!("/v1/projects/{p}/documents"),
            Some(json!({"text": "x"})),
            true,
        ),
        (
            "PUT",
            format!("/v1/projects/{p}/documents/d1"),
            Some(json!({"text": "x"})),
            true,
        ),
        (
            "DELETE",
            format!("/v1/projects/{p}/documents/d1"),
            None,
            true,
        ),
        (
            "DELETE",
            format!("/v1/projects/{p}/documents?tag=t"),
            None,
            true,
        ),
        (
            "POST",
            format!("/v1/projects/{p}/qa"),
            Some(json!([{"question": "q", "answer": "a"}])),
            true,
        ),
        ("GET", format!("/v1/projects/{p}/sources"), None, false),
        ("GET", format!("/v1/projects/{p}/sources/s1"), None, false),
        (
            "POST",
            format!("/v1/projects/{p}/sources"),
            Some(json!({"kind": "url", "url": "https://example.com/"})),
            true,
        ),
        (
            "POST",
            format!("/v1/projects/{p}/sources/s1/sync"),
            None,
            true,
        ),
        ("DELETE", format!("/v1/projects/{p}/sources/s1"), None, true),
        (
            "POST",
            format!("/v1/projects/{p}/webhooks"),
            Some(json!({"events": ["source.sync"]})),
            true,
        ),
        ("GET", format!("/v1/projects/{p}/webhooks"), None, true),
        (
            "DELETE",
            format!("/v1/projects/{p}/webhooks/wh1"),
            None,
            true,
        ),
    ];
    for (method, path, body, write) in &ingest_routes {
        for (what, credential, statuses) in attacks(&w) {
            let reply = call(addr, method, path, credential.as_deref(), body.clone()).await;
            refused(&reply, statuses, &format!("{what}: {method} {path}"), &w);
        }
        for (who, credential) in [
            ("search-only key", format!("ApiKey {}", w.search_key)),
            ("viewer", bearer(&w.viewer)),
        ] {
            let reply = call(addr, method, path, Some(&credential), body.clone()).await;
            if *write {
                refused(&reply, &[403], &format!("{who}: {method} {path}"), &w);
            } else {
                // Allowed to read: the project has no document d1, so a 404 that is about the document.
                assert!(
                    reply.status == 200
                        || (reply.status == 404
                            && (reply.text().contains("no document")
                                || reply.text().contains("no source"))),
                    "{who} reading {path}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
        }
    }

    // The search function's routes: reads, open to a search-only key and a viewer.
    let evaluation =
        json!({"queries": [{"id": "q", "text": "refunds"}], "qrels": {"q": {"d1": 1}}});
    let search_routes = [
        (
            "POST",
            format!("/v1/projects/{p}/search"),
            Some(json!({"query": "refunds"})),
        ),
        ("GET", format!("/v1/projects/{p}/search?q=refunds"), None),
        (
            "POST",
            format!("/v1/projects/{p}/evaluations"),
            Some(evaluation),
        ),
        ("GET", format!("/v1/projects/{p}/evaluations"), None),
        ("GET", format!("/v1/projects/{p}/evaluations/e1"), None),
    ];
    for (method, path, body) in &search_routes {
        for (what, credential, statuses) in attacks(&w) {
            let reply = call(addr, method, path, credential.as_deref(), body.clone()).await;
            refused(&reply, statuses, &format!("{what}: {method} {path}"), &w);
        }
        for (who, credential) in [
            ("search-only key", format!("ApiKey {}", w.search_key)),
            ("viewer", bearer(&w.viewer)),
        ] {
            let reply = call(addr, method, path, Some(&credential), body.clone()).await;
            assert!(
                matches!(reply.status, 200 | 201)
                    || (reply.status == 404 && reply.text().contains("no evaluation")),
                "{who}: {method} {path}: {} {}",
                reply.status,
                reply.text()
            );
        }
    }

    // The respond function's routes. The project holds no documents, so a chat gets the fallback
    // (no model call); conversation c1 and its messages do not exist.
    let respond_routes: Vec<(&str, String, Option<Value>, bool)> = vec![
        (
            "POST",
            format!("/v1/projects/{p}/chat"),
            Some(json!({"message": "refunds?", "stream": false})),
            false,
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            Some(json!({"model": p, "messages": [{"role": "user", "content": "refunds?"}]})),
            false,
        ),
        (
            "GET",
            format!("/v1/projects/{p}/conversations"),
            None,
            false,
        ),
        (
            "GET",
            format!("/v1/projects/{p}/conversations/c1"),
            None,
            false,
        ),
        (
            "GET",
            format!("/v1/projects/{p}/conversations/c1/export?format=markdown"),
            None,
            false,
        ),
        (
            "POST",
            format!("/v1/projects/{p}/messages/c1-1/feedback"),
            Some(json!({"rating": "up"})),
            false,
        ),
        ("GET", format!("/v1/projects/{p}/analytics"), None, false),
        (
            "DELETE",
            format!("/v1/projects/{p}/conversations/c1"),
            None,
            true,
        ),
    ];
    for (method, path, body, write) in &respond_routes {
        for (what, credential, statuses) in attacks(&w) {
            let reply = call(addr, method, path, credential.as_deref(), body.clone()).await;
            refused(&reply, statuses, &format!("{what}: {method} {path}"), &w);
        }
        let scoped = call(
            addr,
            method,
            path,
            Some(&format!("ApiKey {}", w.search_key)),
            body.clone(),
        )
        .await;
        refused(
            &scoped,
            &[403],
            &format!("search-only key: {method} {path}"),
            &w,
        );
        for (who, credential) in [
            ("viewer", bearer(&w.viewer)),
            ("full key", format!("ApiKey {}", w.full_key)),
        ] {
            let reply = call(addr, method, path, Some(&credential), body.clone()).await;
            if *write && who == "viewer" {
                refused(&reply, &[403], &format!("{who}: {method} {path}"), &w);
            } else {
                assert!(
                    reply.status == 200
                        || (reply.status == 404 && reply.text().contains("not found")),
                    "{who}: {method} {path}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
        }
    }
    // `/v1/models` names the key's own project only.
    let models = call(
        addr,
        "GET",
        "/v1/models",
        Some(&format!("ApiKey {}", w.outsider_key)),
        None,
    )
    .await;
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["data"][0]["id"], w.other_project.as_str());
    for (what, credential, statuses) in attacks(&w) {
        if what.starts_with("another project") {
            continue;
        }
        let reply = call(addr, "GET", "/v1/models", credential.as_deref(), None).await;
        refused(&reply, statuses, &format!("{what}: GET /v1/models"), &w);
    }

    // The auth function's project and organisation routes.
    let auth_routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/projects/{p}"), None),
        (
            "PATCH",
            format!("/v1/projects/{p}"),
            Some(json!({"name": "renamed"})),
        ),
        ("DELETE", format!("/v1/projects/{p}"), None),
        ("POST", format!("/v1/projects/{p}/restore"), None),
        ("POST", format!("/v1/projects/{p}/purge"), None),
        ("GET", format!("/v1/projects/{p}/members"), None),
        (
            "PUT",
            format!("/v1/projects/{p}/members/someone"),
            Some(json!({"role": "owner"})),
        ),
        ("DELETE", format!("/v1/projects/{p}/members/someone"), None),
        ("GET", format!("/v1/projects/{p}/keys"), None),
        (
            "POST",
            format!("/v1/projects/{p}/keys"),
            Some(json!({"name": "x", "actions": ["search"]})),
        ),
        (
            "POST",
            format!("/v1/projects/{p}/widget-keys"),
            Some(json!({"name": "x", "origins": ["https://evil.example"]})),
        ),
        ("DELETE", format!("/v1/projects/{p}/keys/somekey"), None),
        ("GET", format!("/v1/orgs/{org}"), None),
        ("GET", format!("/v1/orgs/{org}/members"), None),
        (
            "POST",
            format!("/v1/orgs/{org}/members"),
            Some(json!({"email": "outsider@example.com", "role": "owner"})),
        ),
        (
            "PATCH",
            format!("/v1/orgs/{org}/members/someone"),
            Some(json!({"role": "owner"})),
        ),
        ("DELETE", format!("/v1/orgs/{org}/members/someone"), None),
        ("GET", format!("/v1/orgs/{org}/audit"), None),
        ("GET", format!("/v1/orgs/{org}/projects"), None),
        (
            "POST",
            format!("/v1/orgs/{org}/projects"),
            Some(json!({"name": "x"})),
        ),
        ("GET", format!("/v1/orgs/{org}/trash"), None),
    ];
    for (method, path, body) in &auth_routes {
        let attacks = [
            ("missing credential", None, &[401][..]),
            (
                "another organisation's user",
                Some(bearer(&w.outsider)),
                &[403, 404][..],
            ),
            (
                "an API key on an account route",
                Some(format!("ApiKey {}", w.full_key)),
                &[401][..],
            ),
            (
                "an API key as a bearer token",
                Some(bearer(&w.full_key)),
                &[401][..],
            ),
            ("expired token", Some(bearer(&w.expired_token)), &[401][..]),
            (
                "tampered token",
                Some(bearer(&w.tampered_token)),
                &[401][..],
            ),
        ];
        for (what, credential, statuses) in attacks {
            let reply = call(addr, method, path, credential.as_deref(), body.clone()).await;
            refused(&reply, statuses, &format!("{what}: {method} {path}"), &w);
        }
        // The viewer may read the project and its members, and the organisation it belongs to; nothing else.
        let reads = [
            format!("/v1/projects/{p}"),
            format!("/v1/projects/{p}/members"),
            format!("/v1/orgs/{org}"),
            format!("/v1/orgs/{org}/members"),
            format!("/v1/orgs/{org}/projects"),
        ];
        let reply = call(addr, method, path, Some(&bearer(&w.viewer)), body.clone()).await;
        if *method == "GET" && reads.contains(path) {
            assert_eq!(reply.status, 200, "viewer reading {path}: {}", reply.text());
        } else {
            refused(&reply, &[403, 404], &format!("viewer: {method} {path}"), &w);
        }
    }
    // The listing a viewer gets shows only their project; the outsider's project stays invisible.
    let listing = call(
        addr,
        "GET",
        &format!("/v1/orgs/{org}/projects"),
        Some(&bearer(&w.viewer)),
        None,
    )
    .await
    .json();
    assert_eq!(listing["items"].as_array().unwrap().len(), 1);
    assert!(!listing.to_string().contains(&w.other_project));

    // Everything above was refused, so the project is as it was.
    let project = call(
        addr,
        "GET",
        &format!("/v1/projects/{p}"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await
    .json();
    assert_eq!(project["name"], w.project_name.as_str());
    assert_eq!(project["deleted"], Value::Null);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_restore_purge_and_the_audit_log() {
    let (host, data_dir) = host_with(&[]).await;
    let w = world(&host, &data_dir).await;
    let (addr, p, org) = (w.addr, w.project.clone(), w.org.clone());
    let search = format!("/v1/search/projects/{p}/access");
    let key = format!("ApiKey {}", w.full_key);
    assert_eq!(
        call(addr, "GET", &search, Some(&key), None).await.status,
        200
    );
    // Sign-ins, good and bad, of a member land in the organisation's log.
    let owner = json!({"email": "owner@example.com", "password": "a long enough password"});
    assert_eq!(
        call(addr, "POST", "/v1/auth/login", None, Some(owner))
            .await
            .status,
        200
    );
    let wrong = json!({"email": "viewer@example.com", "password": "wrong password here"});
    assert_eq!(
        call(addr, "POST", "/v1/auth/login", None, Some(wrong))
            .await
            .status,
        401
    );

    let trashed = call(
        addr,
        "DELETE",
        &format!("/v1/projects/{p}"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(trashed.status, 200, "{}", trashed.text());
    assert!(trashed.json()["purge_after"].as_u64().unwrap() > now() + 29 * 86_400);
    refused(
        &call(addr, "GET", &search, Some(&key), None).await,
        &[404],
        "key of a trashed project",
        &w,
    );
    let trash = call(
        addr,
        "GET",
        &format!("/v1/orgs/{org}/trash"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await
    .json();
    assert_eq!(trash["items"][0]["id"], p.as_str());
    let restored = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/restore"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(
        call(addr, "GET", &search, Some(&key), None).await.status,
        200
    );
    let early = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/purge"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(early.status, 409, "purging needs the trash first");

    call(
        addr,
        "DELETE",
        &format!("/v1/projects/{p}"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    let purged = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/purge"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    refused(
        &call(addr, "GET", &search, Some(&key), None).await,
        &[401],
        "key of a purged project",
        &w,
    );
    let keys = docstore(
        &host,
        &data_dir,
        "POST",
        "/edgerag_auth/_find",
        Some(json!({"selector": {"type": "key", "project": &p}})),
    )
    .await;
    assert_eq!(
        keys["docs"],
        json!([]),
        "purging removed the project's keys"
    );

    // The audit log saw all of it, oldest first, and only admins read it.
    let log = call(
        addr,
        "GET",
        &format!("/v1/orgs/{org}/audit?limit=1000"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(log.status, 200, "{}", log.text());
    let actions: Vec<String> = log.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "organisation_created",
        "project_created",
        "member_added:member",
        "project_role_changed:viewer",
        "key_created",
        "key_revoked",
        "login",
        "login_failed",
        "project_deleted",
        "project_restored",
        "project_purged",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let mut sorted = log.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_u64().unwrap())
        .collect::<Vec<_>>();
    let original = sorted.clone();
    sorted.sort();
    assert_eq!(original, sorted);
    refused(
        &call(
            addr,
            "GET",
            &format!("/v1/orgs/{org}/audit"),
            Some(&bearer(&w.viewer)),
            None,
        )
        .await,
        &[403],
        "member reading the audit log",
        &w,
    );
    // Append-only: there is no route that changes or deletes an entry.
    let delete = call(
        addr,
        "DELETE",
        &format!("/v1/orgs/{org}/audit"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(delete.status, 405);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_keys_work_only_from_their_origins_and_only_to_respond() {
    let (host, data_dir) = host_with(&[]).await;
    let w = world(&host, &data_dir).await;
    let addr = w.addr;
    let p = &w.project;
    let widget = created(
        addr,
        &format!("/v1/projects/{p}/widget-keys"),
        &w.owner,
        json!({"name": "site", "origins": ["https://shop.example"]}),
    )
    .await;
    let secret = widget["key"].as_str().unwrap();
    assert!(secret.starts_with("erw_"));
    let from = |path: String, origin: Option<&'static str>| {
        let mut request = http::Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", format!("Bearer {secret}"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        exchange(addr, request.body(String::new()).unwrap())
    };
    let respond = format!("/v1/respond/projects/{p}/access");
    let ok = from(respond.clone(), Some("https://shop.example"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    refused(
        &from(respond.clone(), Some("https://evil.example"))
            .await
            .unwrap(),
        &[403],
        "widget key from another origin",
        &w,
    );
    refused(
        &from(respond.clone(), None).await.unwrap(),
        &[403],
        "widget key without an origin",
        &w,
    );
    refused(
        &from(
            format!("/v1/search/projects/{p}/access"),
            Some("https://shop.example"),
        )
        .await
        .unwrap(),
        &[403],
        "widget key searching",
        &w,
    );
    let preflight = exchange(
        addr,
        http::Request::builder()
            .method("OPTIONS")
            .uri(&respond)
            .header("origin", "https://shop.example")
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert!(
        preflight.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    // Bad widget keys are refused at creation.
    for bad in [
        json!({"name": "x", "origins": ["http://shop.example"]}),
        json!({"name": "x", "origins": []}),
        json!({"name": "x", "origins": ["https://a.example"], "actions": ["search"]}),
    ] {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{p}/widget-keys"),
            Some(&bearer(&w.owner)),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    host.stop().await;
}

/// Requests until the first 429: how many succeeded, and the 429's Retry-After.
async fn until_limited(
    mut attempt: impl AsyncFnMut() -> Reply,
    max: usize,
) -> (usize, Option<u64>) {
    for n in 0..max {
        let reply = attempt().await;
        if reply.status == 429 {
            assert_eq!(reply.json()["error"]["code"], "rate_limited");
            let retry = reply.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            return (n, Some(retry));
        }
    }
    (max, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_sign_ins_are_rate_limited() {
    let (host, data_dir) = host_with(&[
        ("SPIN_VARIABLE_AUTH_KEY_PER_MINUTE", "5"),
        ("SPIN_VARIABLE_AUTH_LOGIN_PER_MINUTE", "20"),
    ])
    .await;
    let w = world(&host, &data_dir).await;
    let addr = w.addr;
    let search = format!("/v1/search/projects/{}/access", w.project);
    let key = format!("ApiKey {}", w.search_key);
    // A minute boundary inside the loop resets the window, so up to twice the limit can pass.
    let (passed, retry) = until_limited(
        async || call(addr, "GET", &search, Some(&key), None).await,
        20,
    )
    .await;
    assert!(
        (5..=10).contains(&passed),
        "{passed} requests passed a limit of 5"
    );
    assert!((1..=60).contains(&retry.unwrap()));
    // Another key of the same project has its own allowance.
    assert_eq!(
        call(
            addr,
            "GET",
            &search,
            Some(&format!("ApiKey {}", w.full_key)),
            None
        )
        .await
        .status,
        200
    );

    // Failed sign-ins back off per account: after 5, even the right password waits.
    let wrong = json!({"email": "viewer@example.com", "password": "wrong password here"});
    for _ in 0..5 {
        assert_eq!(
            call(addr, "POST", "/v1/auth/login", None, Some(wrong.clone()))
                .await
                .status,
            401
        );
    }
    let right = json!({"email": "viewer@example.com", "password": "a long enough password"});
    let locked = call(addr, "POST", "/v1/auth/login", None, Some(right)).await;
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert!(locked.headers.contains_key("retry-after"));
    // And attempts per client address are capped, whatever the account.
    let (passed, _) = until_limited(
        async || {
            call(
                addr,
                "POST",
                "/v1/auth/login",
                None,
                Some(json!({"email": "nobody@example.com", "password": "wrong password here"})),
            )
            .await
        },
        60,
    )
    .await;
    assert!(
        passed <= 40,
        "{passed} attempts passed a limit of 20 per minute"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_json_error() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    let (token, _) = sign_up(addr, "input@example.com").await;
    let post = |path: &'static str, content_type: &'static str, body: &'static str| {
        let request = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"))
            .body(body.to_string())
            .unwrap();
        exchange(addr, request)
    };
    let cases: [(&str, &str, &str, u16); 8] = [
        (
            "/v1/auth/register",
            "application/json",
            "{\"email\": \"x@example.com\"",
            400,
        ),
        ("/v1/auth/register", "text/plain", "{}", 415),
        (
            "/v1/auth/register",
            "application/json",
            "{\"email\": 5, \"password\": \"a long enough password\"}",
            400,
        ),
        (
            "/v1/auth/register",
            "application/json",
            "{\"email\": \"not-an-address\", \"password\": \"a long enough password\"}",
            400,
        ),
        (
            "/v1/auth/register",
            "application/json",
            "{\"email\": \"x@example.com\", \"password\": \"short\"}",
            400,
        ),
        (
            "/v1/auth/register",
            "application/json",
            "{\"email\": \"x@example.com\", \"password\": \"a long enough password\", \"admin\": true}",
            400,
        ),
        ("/v1/orgs", "application/json", "{\"name\": \"\"}", 400),
        ("/v1/orgs", "application/json", "[]", 400),
    ];
    for (path, content_type, body, status) in cases {
        let reply = post(path, content_type, body).await.unwrap();
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.text());
        assert!(reply.json()["error"]["message"].is_string());
    }
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    let reply = call(
        addr,
        "POST",
        "/v1/orgs",
        Some(&bearer(&token)),
        Some(serde_json::from_str(&huge).unwrap()),
    )
    .await;
    assert_eq!(reply.status, 413);
    let bad_id = call(addr, "GET", "/v1/projects/a.b", Some(&bearer(&token)), None).await;
    assert_eq!(bad_id.status, 400);
    // Nothing above created an organisation.
    let orgs = call(addr, "GET", "/v1/orgs", Some(&bearer(&token)), None)
        .await
        .json();
    assert_eq!(orgs["items"], json!([]));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_go_to_the_configured_mail_endpoint() {
    // A loopback mail endpoint that keeps what it is sent, with the headers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mail_addr = listener.local_addr().unwrap();
    let received: std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>> =
        Default::default();
    let inbox = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let inbox = inbox.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let inbox = inbox.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let authorization = request
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        inbox.lock().unwrap().push((
                            authorization,
                            path,
                            serde_json::from_slice(&body).unwrap_or_default(),
                        ));
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                        ))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let url = format!("http://{mail_addr}");
    let (host, _data) = host_with(&[
        ("SPIN_VARIABLE_MAIL_URL", &url),
        ("SPIN_VARIABLE_MAIL_PATH", "/v1/send"),
        ("SPIN_VARIABLE_MAIL_API_KEY", "mail-secret"),
    ])
    .await;
    let addr = host.addr;
    let credentials = json!({"email": "mailed@example.com", "password": "a long enough password"});
    assert_eq!(
        call(
            addr,
            "POST",
            "/v1/auth/register",
            None,
            Some(credentials.clone())
        )
        .await
        .status,
        202
    );
    let (authorization, path, mail) = received
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the endpoint got the mail");
    assert_eq!(authorization, "Bearer mail-secret");
    assert_eq!(path, "/v1/send");
    assert_eq!(mail["to"], "mailed@example.com");
    let text = mail["text"].as_str().unwrap();
    let code = &text["Your code is ".len().."Your code is ".len() + 6];
    // Nothing went to the outbox.
    let outbox = call(
        addr,
        "GET",
        "/v1/auth/admin/outbox",
        Some(&bearer(OPERATOR)),
        None,
    )
    .await
    .json();
    assert_eq!(outbox["items"], json!([]));
    let verified = call(
        addr,
        "POST",
        "/v1/auth/verify",
        None,
        Some(json!({"email": "mailed@example.com", "code": code})),
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_eq!(
        call(addr, "POST", "/v1/auth/login", None, Some(credentials))
            .await
            .status,
        200
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trash_empties_itself_after_30_days_and_keys_show_their_last_use() {
    let (host, data_dir) = host_with(&[]).await;
    let w = world(&host, &data_dir).await;
    let (addr, p, org) = (w.addr, w.project.clone(), w.org.clone());
    let search = format!("/v1/search/projects/{p}/access");
    assert_eq!(
        call(
            addr,
            "GET",
            &search,
            Some(&format!("ApiKey {}", w.search_key)),
            None
        )
        .await
        .status,
        200
    );
    let keys = call(
        addr,
        "GET",
        &format!("/v1/projects/{p}/keys"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await
    .json();
    let used: Vec<&Value> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["last_used"].is_null())
        .collect();
    assert_eq!(
        used.len(),
        1,
        "only the key just used has a last use: {keys}"
    );
    assert!(used[0]["last_used"].as_u64().unwrap() + 60 >= now());
    assert!(
        !keys.to_string().contains(&w.search_key),
        "listings never show secrets"
    );

    assert_eq!(
        call(
            addr,
            "DELETE",
            &format!("/v1/projects/{p}"),
            Some(&bearer(&w.owner)),
            None
        )
        .await
        .status,
        200
    );
    // 29 days in the trash: still restorable.
    let path = format!("/edgerag_auth/project%3A{p}");
    let mut doc = docstore(&host, &data_dir, "GET", &path, None).await;
    doc["deleted"] = json!(now() - 29 * 86_400);
    docstore(&host, &data_dir, "PUT", &path, Some(doc)).await;
    let trash = call(
        addr,
        "GET",
        &format!("/v1/orgs/{org}/trash"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await
    .json();
    assert_eq!(trash["items"].as_array().unwrap().len(), 1);
    // 31 days: purged, with its keys.
    let mut doc = docstore(&host, &data_dir, "GET", &path, None).await;
    doc["deleted"] = json!(now() - 31 * 86_400);
    docstore(&host, &data_dir, "PUT", &path, Some(doc)).await;
    let trash = call(
        addr,
        "GET",
        &format!("/v1/orgs/{org}/trash"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await
    .json();
    assert_eq!(trash["items"], json!([]), "{trash}");
    let restore = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/restore"),
        Some(&bearer(&w.owner)),
        None,
    )
    .await;
    assert_eq!(
        restore.status,
        403,
        "a purged project is gone: {}",
        restore.text()
    );
    let keys = docstore(
        &host,
        &data_dir,
        "POST",
        "/edgerag_auth/_find",
        Some(json!({"selector": {"type": "key", "project": &p}})),
    )
    .await;
    assert_eq!(keys["docs"], json!([]));
    host.stop().await;
}
