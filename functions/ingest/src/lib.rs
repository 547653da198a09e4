//! The ingest function: documents and Q&A pairs in, cleaned, chunked, embedded and indexed; read back
//! and deleted for real.
//!
//! Glue on spin-sdk: route, parse, authorise, call the document flows, answer. The logic of text,
//! chunks, keyword vectors and versions is `shared::ingest`'s; the stores are reached through
//! `guest`'s adapters. It never depends on another function or on the host.

#![forbid(unsafe_code)]

mod documents;
mod fetch;
mod input;
mod jobs;
mod sources;
mod stores;
mod webhooks;

use serde_json::json;
use shared::auth::Action;
use shared::ingest::document::{Kind, Status, validate_id};
use shared::request::query_pairs;
use shared::{ApiError, Reply, Route, Service, route};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

use documents::{Documents, ListQuery, Mode};
use stores::Stores;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Access,
    Create,
    List,
    DeleteByTag,
    Get,
    Put,
    Delete,
    Chunks,
    Content,
    Qa,
    Jobs,
    Job,
    Resume,
    Step,
    Purge,
    Sources,
    CreateSource,
    Source,
    DeleteSource,
    SyncSource,
    Webhooks,
    CreateWebhook,
    DeleteWebhook,
    Hook,
    SyncDue,
}

use Endpoint as E;
use shared::route::at;

const ROUTES: &[Route<Endpoint>] = &[
    at("GET", "/v1/ingest/health", E::Health),
    at("GET", "/v1/ingest/projects/:project/access", E::Access),
    at("POST", "/v1/ingest/projects/:project/purge", E::Purge),
    at("POST", "/v1/projects/:project/documents", E::Create),
    at("GET", "/v1/projects/:project/documents", E::List),
    at("DELETE", "/v1/projects/:project/documents", E::DeleteByTag),
    at("GET", "/v1/projects/:project/documents/:id", E::Get),
    at("PUT", "/v1/projects/:project/documents/:id", E::Put),
    at("DELETE", "/v1/projects/:project/documents/:id", E::Delete),
    at(
        "GET",
        "/v1/projects/:project/documents/:id/chunks",
        E::Chunks,
    ),
    at(
        "GET",
        "/v1/projects/:project/documents/:id/content",
        E::Content,
    ),
    at("POST", "/v1/projects/:project/qa", E::Qa),
    at("GET", "/v1/projects/:project/jobs", E::Jobs),
    at("GET", "/v1/projects/:project/jobs/:job", E::Job),
    at("POST", "/v1/projects/:project/jobs/:job/resume", E::Resume),
    at("POST", "/v1/projects/:project/jobs/:job/step", E::Step),
    at("POST", "/v1/projects/:project/sources", E::CreateSource),
    at("GET", "/v1/projects/:project/sources", E::Sources),
    at("GET", "/v1/projects/:project/sources/:source", E::Source),
    at(
        "DELETE",
        "/v1/projects/:project/sources/:source",
        E::DeleteSource,
    ),
    at(
        "POST",
        "/v1/projects/:project/sources/:source/sync",
        E::SyncSource,
    ),
    at("POST", "/v1/projects/:project/webhooks", E::CreateWebhook),
    at("GET", "/v1/projects/:project/webhooks", E::Webhooks),
    at(
        "DELETE",
        "/v1/projects/:project/webhooks/:hook",
        E::DeleteWebhook,
    ),
    at("POST", "/v1/hooks/:hook", E::Hook),
    at("POST", "/v1/admin/sync-due", E::SyncDue),
];

/// What reading needs versus what writing needs: viewers read, editors (and `ingest` keys) write.
fn action(endpoint: Endpoint) -> Action {
    match endpoint {
        E::List
        | E::Get
        | E::Chunks
        | E::Content
        | E::Health
        | E::Jobs
        | E::Job
        | E::Sources
        | E::Source => Action::Search,
        E::Access
        | E::Create
        | E::Put
        | E::Delete
        | E::DeleteByTag
        | E::Qa
        | E::Resume
        | E::Step
        | E::CreateSource
        | E::DeleteSource
        | E::SyncSource
        | E::Webhooks
        | E::CreateWebhook
        | E::DeleteWebhook => Action::Ingest,
        // Answered with auth's purge token, the operator key or a webhook's signature, never a
        // caller's credential.
        E::Purge | E::Hook | E::SyncDue => Action::Admin,
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{name}` is a whole number")))
}

fn list_query(query: &str) -> Result<ListQuery, ApiError> {
    let mut list = ListQuery::default();
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "after" => list.after = Some(value),
            "limit" => list.limit = number::<usize>("limit", &value)?.clamp(1, 200),
            "tag" => list.tag = Some(value),
            "source" => list.source = Some(value),
            "status" => {
                list.status =
                    Some(serde_json::from_value::<Status>(json!(value)).map_err(|_| {
                        ApiError::BadRequest("`status` is processing, ready or failed".into())
                    })?)
            }
            "kind" => {
                list.kind = Some(
                    serde_json::from_value::<Kind>(json!(value))
                        .map_err(|_| ApiError::BadRequest("`kind` is document or qa".into()))?,
                )
            }
            _ => {}
        }
    }
    Ok(list)
}

fn query_value(query: &str, wanted: &str) -> Result<Option<String>, ApiError> {
    Ok(query_pairs(query)?
        .into_iter()
        .find(|(name, _)| name == wanted)
        .map(|(_, value)| value))
}

async fn answer(request: Request) -> Result<Reply, ApiError> {
    let found = route::resolve(ROUTES, request.method().as_str(), request.uri().path())?;
    let endpoint = found.endpoint;
    if let E::Health = endpoint {
        return Ok(Reply::json(200, &Service::Ingest.health()));
    }
    let project = found.param("project").unwrap_or_default().to_string();
    let id = found.param("id").unwrap_or_default().to_string();
    let job = found.param("job").unwrap_or_default().to_string();
    if let E::Step = endpoint {
        // A job's step is the component calling itself: it proves itself with the job's token.
        let token = guest::outbound::header_text(request.headers(), jobs::TOKEN_HEADER);
        shared::auth::validate_id(&project, "project")?;
        let stores = Stores::load().await?;
        let documents = Documents {
            stores: &stores,
            project: &project,
        };
        let body = jobs::Jobs {
            documents: &documents,
        }
        .step(&job, &token)
        .await?;
        return Ok(Reply::json(200, &body));
    }
    if let E::Purge = endpoint {
        // Only the auth component purges, after its own checks, with a token signed by its keys.
        let credential = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        shared::auth::validate_id(&project, "project")?;
        let keys = shared::auth::token::SigningKeys::parse(
            &spin_sdk::variables::get("auth_signing_keys")
                .await
                .map_err(|e| ApiError::Internal(format!("variable auth_signing_keys: {e:?}")))?,
        )
        .map_err(|e| ApiError::Internal(format!("auth_signing_keys: {e}")))?;
        if !keys.allows_purge(&credential, &project, documents::now_ms() / 1000) {
            return Err(ApiError::Unauthenticated(
                "not a purge token for this project".into(),
            ));
        }
        let stores = Stores::load().await?;
        let documents = Documents {
            stores: &stores,
            project: &project,
        };
        return Ok(Reply::json(200, &documents.purge_project().await?));
    }
    if let E::Hook = endpoint {
        return hook(request, found.param("hook").unwrap_or_default()).await;
    }
    if let E::SyncDue = endpoint {
        return sync_due(request).await;
    }
    let mut laps = documents::Laps::start();
    let principal = guest::authorize(request.headers(), &project, action(endpoint)).await?;
    laps.lap("auth");
    if let E::Access = endpoint {
        return Ok(Reply::json(200, &principal));
    }
    if !id.is_empty() {
        validate_id(&id)?;
    }
    let source = found.param("source").unwrap_or_default().to_string();
    if !source.is_empty() {
        validate_id(&source)?;
    }
    let webhook = found.param("hook").unwrap_or_default().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let origin = request
        .headers()
        .get("spin-full-url")
        .and_then(|v| v.to_str().ok())
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization());
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // A source's or webhook's settings are small; only documents may be large.
    let limit = match endpoint {
        E::CreateSource | E::CreateWebhook => input::MAX_SETTINGS_BYTES,
        _ => input::MAX_DOCUMENT_BYTES,
    };
    let body = guest::read_body(request, limit).await?;
    let stores = Stores::load().await?;
    let documents = Documents {
        stores: &stores,
        project: &project,
    };
    match endpoint {
        E::Create if input::is_multipart(content_type.as_deref()) => {
            let files = input::multipart(content_type.as_deref().unwrap_or_default(), body).await?;
            laps.lap("read");
            let (status, body) = documents.write_batch(files, laps).await?;
            Ok(Reply::json(status, &body))
        }
        E::Create if input::is_batch(content_type.as_deref(), &body) => {
            let batch = input::documents(content_type.as_deref(), &body)?;
            laps.lap("read");
            let (status, body) = documents.write_batch(batch, laps).await?;
            Ok(Reply::json(status, &body))
        }
        E::Create => {
            let new = input::document(content_type.as_deref(), &query, body)?;
            let (status, body) = documents.write(new, Mode::Create).await?;
            Ok(Reply::json(status, &body))
        }
        E::Put => {
            let mut new = input::document(content_type.as_deref(), &query, body)?;
            if new.id.as_ref().is_some_and(|given| *given != id) {
                return Err(ApiError::BadRequest(
                    "the body's id differs from the path's".into(),
                ));
            }
            new.id = Some(id);
            let (status, body) = documents.write(new, Mode::Upsert).await?;
            Ok(Reply::json(status, &body))
        }
        E::Qa => {
            let pairs = input::qa_pairs(content_type.as_deref(), &body)?;
            let mut written = Vec::with_capacity(pairs.len());
            for pair in pairs {
                let (_, outcome) = documents.write(pair, Mode::Upsert).await?;
                written.push(outcome["document"].clone());
            }
            Ok(Reply::json(201, &json!({"pairs": written})))
        }
        E::List => Ok(Reply::json(
            200,
            &documents.list(&list_query(&query)?).await?,
        )),
        E::Get => Ok(Reply::json(200, &documents.get(&id).await?)),
        E::Delete => Ok(Reply::json(200, &documents.delete(&id).await?)),
        E::DeleteByTag => {
            let tag = query_value(&query, "tag")?.ok_or_else(|| {
                ApiError::BadRequest("a bulk delete names its documents by `?tag=`".into())
            })?;
            let ids = documents.with_tag(&tag).await?;
            for id in &ids {
                documents.delete(id).await?;
            }
            Ok(Reply::json(200, &json!({"deleted": ids})))
        }
        E::Chunks => {
            let version = query_value(&query, "version")?
                .map(|v| number::<u32>("version", &v))
                .transpose()?;
            let after = query_value(&query, "after")?
                .map(|v| number::<u32>("after", &v))
                .transpose()?;
            let limit = query_value(&query, "limit")?
                .map(|v| number::<usize>("limit", &v))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 500);
            Ok(Reply::json(
                200,
                &documents.chunks(&id, version, after, limit).await?,
            ))
        }
        E::Content => {
            let version = query_value(&query, "version")?
                .map(|v| number::<u32>("version", &v))
                .transpose()?;
            let (content_type, bytes) = documents.content(&id, version).await?;
            Ok(Reply {
                status: 200,
                headers: vec![("content-type", content_type.as_str().to_string())],
                body: bytes.to_vec(),
            })
        }
        E::Jobs => Ok(Reply::json(
            200,
            &jobs::Jobs {
                documents: &documents,
            }
            .list()
            .await?,
        )),
        E::Job => Ok(Reply::json(
            200,
            &jobs::Jobs {
                documents: &documents,
            }
            .get(&job)
            .await?,
        )),
        E::Resume => Ok(Reply::json(
            202,
            &jobs::Jobs {
                documents: &documents,
            }
            .resume(&job)
            .await?,
        )),
        E::CreateSource => {
            let body = json_body(&body)?;
            let sources = sources::Sources {
                documents: &documents,
            };
            Ok(Reply::json(201, &sources.create(&body).await?))
        }
        E::Sources => Ok(Reply::json(
            200,
            &sources::Sources {
                documents: &documents,
            }
            .list()
            .await?,
        )),
        E::Source => {
            let after = query_value(&query, "after")?;
            let limit = query_value(&query, "limit")?
                .map(|v| number::<usize>("limit", &v))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 1000);
            Ok(Reply::json(
                200,
                &sources::Sources {
                    documents: &documents,
                }
                .get(&source, after.as_deref(), limit)
                .await?,
            ))
        }
        E::DeleteSource => {
            let (status, body) = sources::Sources {
                documents: &documents,
            }
            .delete(&source)
            .await?;
            Ok(Reply::json(status, &body))
        }
        E::SyncSource => Ok(Reply::json(
            202,
            &json!({"job": sources::Sources {
                documents: &documents,
            }
            .sync(&source)
            .await?}),
        )),
        E::CreateWebhook => {
            let body = json_body(&body)?;
            let hooks = webhooks::Webhooks {
                documents: &documents,
            };
            Ok(Reply::json(
                201,
                &hooks.create(&body, origin.as_deref()).await?,
            ))
        }
        E::Webhooks => Ok(Reply::json(
            200,
            &webhooks::Webhooks {
                documents: &documents,
            }
            .list()
            .await?,
        )),
        E::DeleteWebhook => {
            validate_id(&webhook)?;
            Ok(Reply::json(
                200,
                &webhooks::Webhooks {
                    documents: &documents,
                }
                .delete(&webhook)
                .await?,
            ))
        }
        E::Health | E::Access | E::Step | E::Purge | E::Hook | E::SyncDue => {
            unreachable!("answered above")
        }
    }
}

fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `POST /v1/hooks/:id`: public, verified by the delivery's signature.
async fn hook(request: Request, id: &str) -> Result<Reply, ApiError> {
    let delivery = webhooks::Delivery {
        standard_id: header(&request, "webhook-id"),
        standard_timestamp: header(&request, "webhook-timestamp"),
        standard_signature: header(&request, "webhook-signature"),
        github_signature: header(&request, "x-hub-signature-256"),
        github_event: header(&request, "x-github-event"),
        github_delivery: header(&request, "x-github-delivery"),
    };
    let stores = Stores::load().await?;
    let endpoint = webhooks::endpoint(&stores.couch, id).await?;
    let body = guest::read_body(request, input::MAX_DOCUMENT_BYTES).await?;
    let project = endpoint["project"].as_str().unwrap_or_default().to_string();
    let documents = Documents {
        stores: &stores,
        project: &project,
    };
    let (status, answer) = webhooks::deliver(&documents, &endpoint, &delivery, &body).await?;
    Ok(Reply::json(status, &answer))
}

/// `POST /v1/admin/sync-due` (operator key): starts every sync that is due and returns at once.
async fn sync_due(request: Request) -> Result<Reply, ApiError> {
    let expected = guest::vars::optional("auth_operator_key", "").await;
    let given = header(&request, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default();
    if expected.is_empty()
        || !shared::auth::password::constant_time_eq(expected.as_bytes(), given.as_bytes())
    {
        return Err(ApiError::Unauthenticated(
            "the operator key is required".into(),
        ));
    }
    let stores = Stores::load().await?;
    let now = documents::now_ms();
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    for due in sources::due(&stores.couch, now).await? {
        let (project, source) = (&due.project, &due.source);
        let documents = Documents {
            stores: &stores,
            project,
        };
        match (sources::Sources {
            documents: &documents,
        })
        .sync(source)
        .await
        {
            Ok(job) => {
                started.push(json!({"project": project, "source": source, "job": job["id"]}))
            }
            // A source deleted since: its entry is all that is left of it.
            Err(ApiError::NotFound(_)) => {}
            Err(error) => skipped
                .push(json!({"project": project, "source": source, "why": error.to_string()})),
        }
        sources::settle_due(&stores.couch, &due).await?;
    }
    Ok(Reply::json(
        202,
        &json!({"started": started, "skipped": skipped}),
    ))
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let reply = match answer(request).await {
        Ok(reply) => reply,
        Err(error) => {
            if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                eprintln!("ingest: {detail}");
            }
            Reply::error(&error)
        }
    };
    reply.into_http()
}
