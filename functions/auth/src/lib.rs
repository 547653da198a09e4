//! The auth function: accounts, organisations, projects, roles, API keys and tokens.
//!
//! Thin glue on spin-sdk: route, parse, call `shared::auth`, answer. It serves the `/v1/auth/...` routes and
//! exports the `edgerag:platform/auth` interface that ingest, search and respond are composed with at build
//! time. It holds no domain logic of its own and never depends on another function or on the host.

mod couch;

use http_body_util::BodyExt;
use serde::Deserialize;
use shared::auth::account::{CodeConfirmation, Credentials};
use shared::auth::keys::NewKey;
use shared::auth::orgs::{NewMember, NewOrg, RoleChange};
use shared::auth::projects::{NewProject, ProjectPatch};
use shared::auth::records::{KeyKind, OrgRole, Role};
use shared::auth::secret::Entropy;
use shared::auth::service::{PageQuery, client_ip};
use shared::auth::store::{Clock, Knowledge, StoreError};
use shared::auth::token::SigningKeys;
use shared::auth::{Action, Auth, AuthConfig};
use shared::request::{MAX_JSON_BYTES, json_body, query_pairs};
use shared::{ApiError, Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

use couch::{Couch, HttpMailer};

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

/// The system clock and the platform's random source (WASI's, through getrandom).
struct System;

impl Clock for System {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl Entropy for System {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the platform provides randomness");
    }
}

/// Everything a request needs, read once from the component's variables.
struct Context {
    config: AuthConfig,
    store: Couch,
    mailer: Option<HttpMailer>,
    ingest: Ingest,
}

async fn variable(name: &str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .await
        .map_err(|e| ApiError::Internal(format!("variable {name}: {e:?}")))
}

/// An optional variable: absent (not declared for this component) reads as empty.
async fn optional(name: &str) -> String {
    spin_sdk::variables::get(name).await.unwrap_or_default()
}

async fn limit(name: &str, default: u32) -> Result<u32, ApiError> {
    match optional(name).await.trim() {
        "" => Ok(default),
        text => text
            .parse()
            .map_err(|_| ApiError::Internal(format!("variable {name} is not a whole number"))),
    }
}

impl Context {
    async fn load() -> Result<Self, ApiError> {
        let signing = SigningKeys::parse(&variable("auth_signing_keys").await?)
            .map_err(|e| ApiError::Internal(format!("auth_signing_keys: {e}")))?;
        let mut config = AuthConfig::new(signing);
        config.login_per_minute = limit(
            "auth_login_per_minute",
            AuthConfig::DEFAULT_LOGIN_PER_MINUTE,
        )
        .await?;
        config.key_per_minute =
            limit("auth_key_per_minute", AuthConfig::DEFAULT_KEY_PER_MINUTE).await?;
        config.operator_key = optional("auth_operator_key").await;
        config.trash_ttl = u64::from(limit("auth_trash_days", 30).await?) * 24 * 3600;
        let store = Couch::new(
            &variable("docstore_url").await?,
            &variable("docstore_user").await?,
            &variable("docstore_password").await?,
        );
        let mail_url = optional("mail_url").await;
        let mailer = (!mail_url.trim().is_empty()).then(|| HttpMailer {
            url: mail_url.trim().to_string(),
            api_key: String::new(),
        });
        let ingest = Ingest {
            signing: config.signing.clone(),
        };
        let mut context = Self {
            config,
            store,
            mailer,
            ingest,
        };
        if let Some(mailer) = &mut context.mailer {
            let path = optional("mail_path").await;
            let path = path.trim();
            mailer.url = format!(
                "{}/{}",
                mailer.url.trim_end_matches('/'),
                path.trim_start_matches('/')
            );
            mailer.api_key = optional("mail_api_key").await;
        }
        Ok(context)
    }

    fn auth(&self, client: String) -> Auth<'_, Couch, HttpMailer, Ingest> {
        Auth {
            store: &self.store,
            mailer: self.mailer.as_ref(),
            knowledge: &self.ingest,
            clock: &System,
            entropy: &System,
            config: &self.config,
            client,
        }
    }
}

struct Provider;

impl auth::Guest for Provider {
    async fn authorize(
        credential: String,
        project: String,
        action: types::Action,
        origin: Option<String>,
    ) -> Result<types::Authorization, types::Error> {
        let action = match action {
            types::Action::Ingest => Action::Ingest,
            types::Action::Search => Action::Search,
            types::Action::Respond => Action::Respond,
            types::Action::Admin => Action::Admin,
        };
        let decision = async {
            let context = Context::load().await?;
            context
                .auth(String::new())
                .authorize(&credential, &project, action, origin.as_deref())
                .await
        };
        match decision.await {
            Ok(principal) => Ok(types::Authorization {
                project: principal.project.clone(),
                settings: serde_json::to_string(&principal.settings).unwrap_or_default(),
                principal: types::Principal {
                    subject: principal.subject,
                    organisation: principal.organisation,
                    kind: match principal.kind {
                        shared::auth::PrincipalKind::AccessToken { .. } => {
                            types::CredentialKind::AccessToken
                        }
                        shared::auth::PrincipalKind::ApiKey { actions } => {
                            types::CredentialKind::ApiKey(
                                actions.into_iter().map(wit_action).collect(),
                            )
                        }
                        shared::auth::PrincipalKind::WidgetKey { origins } => {
                            types::CredentialKind::WidgetKey(origins)
                        }
                    },
                },
            }),
            Err(error) => {
                if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                    eprintln!("auth: {detail}");
                }
                Err(types::Error {
                    code: error.code().into(),
                    message: error.to_string(),
                    status: error.status(),
                })
            }
        }
    }
}

fn wit_action(action: Action) -> types::Action {
    match action {
        Action::Ingest => types::Action::Ingest,
        Action::Search => types::Action::Search,
        Action::Respond => types::Action::Respond,
        Action::Admin => types::Action::Admin,
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Register,
    Verify,
    Login,
    Refresh,
    Logout,
    Token,
    ChangePassword,
    RequestReset,
    ConfirmReset,
    Me,
    Export,
    DeleteMe,
    CreateOrg,
    ListOrgs,
    GetOrg,
    ListMembers,
    AddMember,
    ChangeMember,
    RemoveMember,
    Audit,
    ListProjects,
    CreateProject,
    Trash,
    GetProject,
    UpdateProject,
    TrashProject,
    RestoreProject,
    PurgeProject,
    ListProjectMembers,
    SetProjectMember,
    RemoveProjectMember,
    ListKeys,
    CreateKey,
    CreateWidgetKey,
    RevokeKey,
    Outbox,
}

use Endpoint as E;
use shared::route::at;

const ROUTES: &[Route<Endpoint>] = &[
    at("GET", "/v1/auth/health", E::Health),
    at("POST", "/v1/auth/register", E::Register),
    at("POST", "/v1/auth/verify", E::Verify),
    at("POST", "/v1/auth/login", E::Login),
    at("POST", "/v1/auth/token/refresh", E::Refresh),
    at("POST", "/v1/auth/logout", E::Logout),
    at("GET", "/v1/auth/token", E::Token),
    at("POST", "/v1/auth/password", E::ChangePassword),
    at("POST", "/v1/auth/password/reset", E::RequestReset),
    at("POST", "/v1/auth/password/reset/confirm", E::ConfirmReset),
    at("GET", "/v1/auth/me", E::Me),
    at("GET", "/v1/auth/me/export", E::Export),
    at("DELETE", "/v1/auth/me", E::DeleteMe),
    at("POST", "/v1/orgs", E::CreateOrg),
    at("GET", "/v1/orgs", E::ListOrgs),
    at("GET", "/v1/orgs/:org", E::GetOrg),
    at("GET", "/v1/orgs/:org/members", E::ListMembers),
    at("POST", "/v1/orgs/:org/members", E::AddMember),
    at("PATCH", "/v1/orgs/:org/members/:user", E::ChangeMember),
    at("DELETE", "/v1/orgs/:org/members/:user", E::RemoveMember),
    at("GET", "/v1/orgs/:org/audit", E::Audit),
    at("GET", "/v1/orgs/:org/projects", E::ListProjects),
    at("POST", "/v1/orgs/:org/projects", E::CreateProject),
    at("GET", "/v1/orgs/:org/trash", E::Trash),
    at("GET", "/v1/projects/:project", E::GetProject),
    at("PATCH", "/v1/projects/:project", E::UpdateProject),
    at("DELETE", "/v1/projects/:project", E::TrashProject),
    at("POST", "/v1/projects/:project/restore", E::RestoreProject),
    at("POST", "/v1/projects/:project/purge", E::PurgeProject),
    at(
        "GET",
        "/v1/projects/:project/members",
        E::ListProjectMembers,
    ),
    at(
        "PUT",
        "/v1/projects/:project/members/:user",
        E::SetProjectMember,
    ),
    at(
        "DELETE",
        "/v1/projects/:project/members/:user",
        E::RemoveProjectMember,
    ),
    at("GET", "/v1/projects/:project/keys", E::ListKeys),
    at("POST", "/v1/projects/:project/keys", E::CreateKey),
    at(
        "POST",
        "/v1/projects/:project/widget-keys",
        E::CreateWidgetKey,
    ),
    at("DELETE", "/v1/projects/:project/keys/:key", E::RevokeKey),
    at("GET", "/v1/auth/admin/outbox", E::Outbox),
];

/// What a handler needs from the request, read once.
struct Input {
    endpoint: shared::Endpoint<Endpoint>,
    authorization: String,
    content_type: Option<String>,
    body: Vec<u8>,
    query: String,
}

impl Input {
    fn param(&self, name: &str) -> &str {
        self.endpoint.param(name).unwrap_or_default()
    }

    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ApiError> {
        json_body(self.content_type.as_deref(), &self.body, MAX_JSON_BYTES)
    }

    fn bearer(&self) -> Result<&str, ApiError> {
        match shared::auth::parse_credential(&self.authorization)? {
            shared::auth::Credential::Bearer(token) => Ok(token),
            shared::auth::Credential::ApiKey(_) => Err(ApiError::Unauthenticated(
                "account routes need a signed-in user's access token".into(),
            )),
        }
    }

    fn page(&self) -> Result<PageQuery, ApiError> {
        let mut page = PageQuery::default();
        for (name, value) in query_pairs(&self.query)? {
            match name.as_str() {
                "after" => page.after = Some(value),
                "limit" => {
                    page.limit =
                        Some(value.parse().map_err(|_| {
                            ApiError::BadRequest("`limit` is a whole number".into())
                        })?)
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordConfirmation {
    password: String,
}

/// Runs one endpoint and renders its result.
async fn dispatch(
    input: &Input,
    auth: &Auth<'_, Couch, HttpMailer, Ingest>,
) -> Result<Reply, ApiError> {
    match input.endpoint.endpoint {
        E::Register => Ok(Reply::json(
            202,
            &auth.register(input.json::<Credentials>()?).await?,
        )),
        E::Verify => ok(&auth.verify_email(input.json::<CodeConfirmation>()?).await?),
        E::Login => ok(&auth.login(input.json::<Credentials>()?).await?),
        E::Refresh => ok(&auth
            .refresh(&input.json::<RefreshBody>()?.refresh_token)
            .await?),
        E::RequestReset => Ok(Reply::json(
            202,
            &auth
                .request_reset(&input.json::<ResetRequest>()?.email)
                .await?,
        )),
        E::ConfirmReset => ok(&auth
            .confirm_reset(input.json::<CodeConfirmation>()?)
            .await?),
        // Verified from the token alone: no store round trip.
        E::Token => {
            // What checking a token costs inside the function, for the benchmark (Server-Timing, in ms).
            let started = std::time::Instant::now();
            let claims = auth.verify_access_token(input.bearer()?)?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let mut reply = Reply::json(200, &claims);
            reply
                .headers
                .push(("server-timing", format!("verify;dur={elapsed:.4}")));
            Ok(reply)
        }
        E::Outbox => {
            let to = query_pairs(&input.query)?
                .into_iter()
                .find(|(n, _)| n == "to")
                .map(|(_, v)| v);
            ok(&auth
                .outbox(&input.authorization, to.as_deref(), &input.page()?)
                .await?)
        }
        _ => {
            let claims = auth.signed_in(input.bearer()?).await?;
            let claims = &claims;
            let (org, project) = (input.param("org"), input.param("project"));
            match input.endpoint.endpoint {
                E::Logout => ok(&auth.logout(claims).await?),
                E::ChangePassword => {
                    let body = input.json::<PasswordChange>()?;
                    ok(&auth
                        .change_password(claims, &body.current_password, &body.new_password)
                        .await?)
                }
                E::Me => ok(&auth.me(claims).await?),
                E::Export => ok(&auth.export(claims).await?),
                E::DeleteMe => ok(&auth
                    .delete_account(claims, &input.json::<PasswordConfirmation>()?.password)
                    .await?),
                E::CreateOrg => Ok(Reply::json(
                    201,
                    &auth.create_org(claims, input.json::<NewOrg>()?).await?,
                )),
                E::ListOrgs => ok(&auth.list_orgs(claims).await?),
                E::GetOrg => ok(&auth.get_org(claims, org).await?),
                E::ListMembers => ok(&auth.list_members(claims, org).await?),
                E::AddMember => Ok(Reply::json(
                    201,
                    &auth
                        .add_member(claims, org, input.json::<NewMember>()?)
                        .await?,
                )),
                E::ChangeMember => {
                    let change = input.json::<RoleChange<OrgRole>>()?;
                    ok(&auth
                        .change_member(claims, org, input.param("user"), change.role)
                        .await?)
                }
                E::RemoveMember => {
                    ok(&auth.remove_member(claims, org, input.param("user")).await?)
                }
                E::Audit => ok(&auth.read_audit(claims, org, &input.page()?).await?),
                E::ListProjects => ok(&auth.list_projects(claims, org).await?),
                E::CreateProject => Ok(Reply::json(
                    201,
                    &auth
                        .create_project(claims, org, input.json::<NewProject>()?)
                        .await?,
                )),
                E::Trash => ok(&auth.list_trash(claims, org).await?),
                E::GetProject => ok(&auth.get_project(claims, project).await?),
                E::UpdateProject => ok(&auth
                    .update_project(claims, project, input.json::<ProjectPatch>()?)
                    .await?),
                E::TrashProject => ok(&auth.trash_project(claims, project).await?),
                E::RestoreProject => ok(&auth.restore_project(claims, project).await?),
                E::PurgeProject => ok(&auth.purge_project(claims, project).await?),
                E::ListProjectMembers => ok(&auth.list_project_members(claims, project).await?),
                E::SetProjectMember => {
                    let change = input.json::<RoleChange<Role>>()?;
                    ok(&auth
                        .set_project_member(claims, project, input.param("user"), change.role)
                        .await?)
                }
                E::RemoveProjectMember => ok(&auth
                    .remove_project_member(claims, project, input.param("user"))
                    .await?),
                E::ListKeys => ok(&auth.list_keys(claims, project).await?),
                E::CreateKey => Ok(Reply::json(
                    201,
                    &auth
                        .create_key(claims, project, KeyKind::Api, input.json::<NewKey>()?)
                        .await?,
                )),
                E::CreateWidgetKey => Ok(Reply::json(
                    201,
                    &auth
                        .create_key(claims, project, KeyKind::Widget, input.json::<NewKey>()?)
                        .await?,
                )),
                E::RevokeKey => ok(&auth.revoke_key(claims, project, input.param("key")).await?),
                E::Health
                | E::Register
                | E::Verify
                | E::Login
                | E::Refresh
                | E::RequestReset
                | E::ConfirmReset
                | E::Token
                | E::Outbox => unreachable!("health is answered in `answer`, the others above"),
            }
        }
    }
}

/// Ingest, which holds a project's documents, chunks, points and files (and removes what search and
/// respond keep of it): reached by a chained request to `http://ingest.spin.internal`, proved by a
/// one-minute purge token signed with auth's keys.
struct Ingest {
    signing: SigningKeys,
}

impl Knowledge for Ingest {
    async fn purge(&self, project: &str) -> Result<(), StoreError> {
        let token = self.signing.purge_token(project, System.now_ms() / 1000);
        let url = format!("http://ingest.spin.internal/v1/ingest/projects/{project}/purge");
        let (status, body) = couch::send_json("POST", &url, Some(&format!("Bearer {token}")), None)
            .await
            .map_err(|e| StoreError::Unavailable(format!("ingest purge: {e}")))?;
        if status == 200 {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "ingest purge answered {status}: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }
}

/// A 200 JSON answer.
fn ok(value: &impl serde::Serialize) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, value))
}

async fn answer(request: Request) -> Result<Reply, ApiError> {
    let endpoint = route::resolve(ROUTES, request.method().as_str(), request.uri().path())?;
    if let E::Health = endpoint.endpoint {
        return Ok(Reply::json(200, &Service::Auth.health()));
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization").unwrap_or_default();
    let content_type = header("content-type");
    let client = client_ip(&header("spin-client-addr").unwrap_or_default());
    let query = request.uri().query().unwrap_or_default().to_string();
    let mut body = Vec::new();
    let mut stream = request.into_body();
    while let Some(frame) = stream.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e:?}")))?;
        if let Some(data) = frame.data_ref() {
            if body.len() + data.len() > MAX_JSON_BYTES {
                return Err(ApiError::PayloadTooLarge {
                    limit: MAX_JSON_BYTES as u64,
                });
            }
            body.extend_from_slice(data);
        }
    }
    let input = Input {
        endpoint,
        authorization,
        content_type,
        body,
        query,
    };
    let started = std::time::Instant::now();
    let context = Context::load().await?;
    let loaded = started.elapsed().as_secs_f64() * 1000.0;
    let mut reply = dispatch(&input, &context.auth(client)).await?;
    reply
        .headers
        .push(("server-timing", format!("config;dur={loaded:.4}")));
    Ok(reply)
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let reply = match answer(request).await {
        Ok(reply) => reply,
        Err(error) => {
            if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                eprintln!("auth: {detail}");
            }
            Reply::error(&error)
        }
    };
    reply.into_http()
}
