//! The respond function: grounded answers with citations, streamed; conversations, feedback and
//! analytics; an OpenAI-compatible endpoint.
//!
//! Thin glue on spin-sdk: route, parse, call `shared`, answer. It holds no domain logic of its own and
//! never depends on another function or on the host.

#![deny(unsafe_code)]

mod body;
mod chat;
mod conversations;
mod llm;

use futures::StreamExt;
use serde_json::{Value, json};
use shared::auth::Action;
use shared::respond::conversation::Channel;
use shared::respond::openai::{self, CompletionRequest};
use shared::respond::{ChatRequest, sse};
use shared::{ApiError, Reply, Route, Service, route};
use spin_sdk::http::Request;
use spin_sdk::http_service;

use body::Body;
use chat::{Asked, Event};

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

/// The largest request body: a chat message, or an OpenAI request with its history.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Access,
    Context,
    Chat,
    Conversations,
    Conversation,
    Export,
    DeleteConversation,
    Feedback,
    Analytics,
    Completions,
    Models,
}

use Endpoint as E;
use shared::route::at;

const ROUTES: &[Route<Endpoint>] = &[
    at("GET", "/v1/respond/health", E::Health),
    at("GET", "/v1/respond/projects/:project/access", E::Access),
    at("GET", "/v1/respond/projects/:project/context", E::Context),
    at("POST", "/v1/projects/:project/chat", E::Chat),
    at(
        "GET",
        "/v1/projects/:project/conversations",
        E::Conversations,
    ),
    at(
        "GET",
        "/v1/projects/:project/conversations/:id",
        E::Conversation,
    ),
    at(
        "GET",
        "/v1/projects/:project/conversations/:id/export",
        E::Export,
    ),
    at(
        "DELETE",
        "/v1/projects/:project/conversations/:id",
        E::DeleteConversation,
    ),
    at(
        "POST",
        "/v1/projects/:project/messages/:id/feedback",
        E::Feedback,
    ),
    at("GET", "/v1/projects/:project/analytics", E::Analytics),
    at("POST", "/v1/chat/completions", E::Completions),
    at("GET", "/v1/models", E::Models),
];

async fn read_json(request: Request) -> Result<serde_json::Value, ApiError> {
    guest::read_json(request, MAX_BODY_BYTES).await
}

/// The passages an answer to `q` would be grounded in: the same retrieval the search route runs,
/// reached through the `retrieve` interface.
async fn context(request: &Request, project: &str) -> Result<Value, ApiError> {
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
    let reply = retrieve::search(principal.authorization, Value::Object(query).to_string())
        .await
        .map_err(guest::api_error)?;
    serde_json::from_str(&reply)
        .map_err(|e| ApiError::Internal(format!("retrieve answered something not JSON: {e}")))
}

fn error_json(error: &ApiError) -> Value {
    serde_json::from_slice(&Reply::error(error).body).unwrap_or(Value::Null)
}

/// Headers a widget's page needs to read the answer.
fn cors(principal: &guest::Principal, origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        Some(origin) if principal.kind == "widget_key" => vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "origin".into()),
        ],
        _ => Vec::new(),
    }
}

fn with_headers(mut reply: Reply, headers: Vec<(&'static str, String)>) -> Reply {
    reply.headers.extend(headers);
    reply
}

/// `POST /v1/projects/:project/chat`.
async fn chat(
    request: Request,
    project: &str,
    origin: Option<&str>,
) -> Result<http::Response<Body>, ApiError> {
    let principal = guest::authorize(request.headers(), project, Action::Respond).await?;
    let widget = principal.kind == "widget_key";
    let chat = ChatRequest::from_json(&read_json(request).await?)?;
    if widget {
        let Some(visitor) = &chat.user else {
            return Err(ApiError::BadRequest(
                "`user` is required with a widget key: the visitor's anonymous id".into(),
            ));
        };
        let couch = chat::couch().await?;
        conversations::count_visitor(
            &couch,
            project,
            visitor,
            principal.settings.visitor_per_minute,
        )
        .await?;
    }
    let headers = cors(&principal, origin);
    let stream = chat.stream;
    let started = chat::start(Asked {
        project: project.to_string(),
        principal,
        question: chat.message,
        conversation: chat.conversation,
        user: chat.user,
        top_k: chat.top_k,
        filter: chat.filter,
        channel: if widget {
            Channel::Widget
        } else {
            Channel::Chat
        },
        system: None,
        history: None,
        stream,
    })
    .await?;
    if !stream {
        let outcome = chat::whole(started).await?;
        let mut body = outcome.json();
        body["answer"] = json!(outcome.text);
        return Ok(body::full(with_headers(Reply::json(200, &body), headers)));
    }
    let (conversation, message) = started.ids();
    let opening = sse(
        "conversation",
        &json!({"conversation": conversation, "message": message}),
    );
    let events = chat::encode(chat::events(started), |event| match event {
        Event::Delta(text) => sse("delta", &json!({"text": text})),
        Event::End(outcome) => {
            let citations = sse(
                "citations",
                &json!({"citations": outcome.citations, "method": outcome.method}),
            );
            format!("{citations}{}", sse("done", &outcome.json()))
        }
        Event::Failed(error) => sse("error", &error_json(&error)),
    });
    let stream = futures::stream::once(async move { bytes::Bytes::from(opening) }).chain(events);
    Ok(body::events(stream, headers))
}

fn now_secs() -> u64 {
    chat::now_ms() / 1000
}

/// `POST /v1/chat/completions`: OpenAI's protocol over a project.
async fn completions(request: Request) -> Result<http::Response<Body>, ApiError> {
    let headers = request.headers().clone();
    let body = read_json(request).await;
    // The credential is checked first, against the project `model` names (or the key's own).
    let named = body
        .as_ref()
        .ok()
        .and_then(|b| b["model"].as_str())
        .unwrap_or_default()
        .to_string();
    let principal = guest::authorize(&headers, &named, Action::Respond).await?;
    let completion = CompletionRequest::from_json(&body?)?;
    let project = principal.project.clone();
    let widget = principal.kind == "widget_key";
    if widget && completion.user.is_none() {
        return Err(ApiError::BadRequest(
            "`user` is required with a widget key: the visitor's anonymous id".into(),
        ));
    }
    let include_usage = completion.include_usage;
    let stream = completion.stream;
    let started = chat::start(Asked {
        project: project.clone(),
        principal,
        question: completion.question,
        conversation: None,
        user: completion.user,
        top_k: completion.top_k,
        filter: completion.filter,
        channel: Channel::Openai,
        system: completion.system,
        history: Some(completion.history),
        stream,
    })
    .await?;
    let (_, message) = started.ids();
    let id = format!("chatcmpl-{message}");
    let created = now_secs();
    if !stream {
        let outcome = chat::whole(started).await?;
        let usage = (outcome.usage.prompt_tokens, outcome.usage.completion_tokens);
        let mut extra = outcome.json();
        extra.as_object_mut().map(|o| o.remove("usage"));
        let body = openai::completion(&id, created, &project, &outcome.text, usage, extra);
        return Ok(body::full(Reply::json(200, &body)));
    }
    let opening = openai::data(&openai::chunk(
        &id,
        created,
        &project,
        json!({"role": "assistant", "content": ""}),
        None,
    ));
    let (chunk_id, model) = (id.clone(), project.clone());
    let events = chat::encode(chat::events(started), move |event| match event {
        Event::Delta(text) => openai::data(&openai::chunk(
            &chunk_id,
            created,
            &model,
            json!({"content": text}),
            None,
        )),
        Event::End(outcome) => {
            let mut last = openai::chunk(&chunk_id, created, &model, json!({}), Some("stop"));
            let mut extra = outcome.json();
            extra.as_object_mut().map(|o| o.remove("usage"));
            if let (Some(last), Value::Object(extra)) = (last.as_object_mut(), extra) {
                last.extend(extra);
            }
            let mut out = openai::data(&last);
            if include_usage {
                let usage = json!({
                    "id": chunk_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [],
                    "usage": openai::usage_json((outcome.usage.prompt_tokens, outcome.usage.completion_tokens)),
                });
                out.push_str(&openai::data(&usage));
            }
            out.push_str("data: [DONE]\n\n");
            out
        }
        Event::Failed(error) => format!("{}data: [DONE]\n\n", openai::data(&error_json(&error))),
    });
    let stream = futures::stream::once(async move { bytes::Bytes::from(opening) }).chain(events);
    Ok(body::events(stream, Vec::new()))
}

/// `GET /v1/models`: the projects the credential may chat with (a key's own).
async fn models(request: &Request) -> Result<Value, ApiError> {
    let principal = guest::authorize(request.headers(), "", Action::Respond).await?;
    Ok(json!({
        "object": "list",
        "data": [{
            "id": principal.project,
            "object": "model",
            "created": 0,
            "owned_by": principal.organisation,
        }],
    }))
}

/// Conversations and analytics are the team's: a widget key (a site's visitors) may not read them.
async fn team(
    request: &Request,
    project: &str,
    action: Action,
) -> Result<guest::Principal, ApiError> {
    let principal = guest::authorize(request.headers(), project, action).await?;
    if principal.kind == "widget_key" {
        return Err(ApiError::Forbidden(
            "a widget key may chat, not read conversations or analytics".into(),
        ));
    }
    Ok(principal)
}

async fn answer(
    request: Request,
    found: route::Endpoint<Endpoint>,
    origin: Option<&str>,
) -> Result<http::Response<Body>, ApiError> {
    let project = found.param("project").unwrap_or_default().to_string();
    let id = found.param("id").unwrap_or_default().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let reply = match found.endpoint {
        E::Health => Reply::json(200, &Service::Respond.health()),
        E::Context => Reply::json(200, &context(&request, &project).await?),
        // Whether the caller's credential may use this function on the project.
        E::Access => {
            let principal = guest::authorize(request.headers(), &project, Action::Respond).await?;
            let headers = cors(&principal, origin);
            with_headers(Reply::json(200, &principal), headers)
        }
        E::Chat => return chat(request, &project, origin).await,
        E::Completions => return completions(request).await,
        E::Models => Reply::json(200, &models(&request).await?),
        E::Conversations => {
            let principal = team(&request, &project, Action::Respond).await?;
            let couch = chat::couch().await?;
            let list = conversations::list(&couch, &project, &query, &principal.settings).await?;
            Reply::json(200, &list)
        }
        E::Conversation | E::Export => {
            let principal = team(&request, &project, Action::Respond).await?;
            let couch = chat::couch().await?;
            let (conversation, _) =
                conversations::load(&couch, &project, &id, &principal.settings).await?;
            match (found.endpoint, query.as_str()) {
                (E::Conversation, _) => Reply::json(200, &conversation.view()),
                (_, "" | "format=json") => {
                    let mut reply = Reply::json(200, &conversation.view());
                    reply.headers.push((
                        "content-disposition",
                        format!("attachment; filename=\"conversation-{id}.json\""),
                    ));
                    reply
                }
                (_, "format=markdown") => Reply {
                    status: 200,
                    headers: vec![
                        ("content-type", "text/markdown; charset=utf-8".into()),
                        (
                            "content-disposition",
                            format!("attachment; filename=\"conversation-{id}.md\""),
                        ),
                    ],
                    body: conversation.markdown().into_bytes(),
                },
                _ => {
                    return Err(ApiError::BadRequest("`format` is json or markdown".into()));
                }
            }
        }
        E::DeleteConversation => {
            // Deleting what visitors said is an editor's decision, as deleting documents is.
            let principal = team(&request, &project, Action::Ingest).await?;
            let couch = chat::couch().await?;
            Reply::json(
                200,
                &conversations::delete(&couch, &project, &id, &principal.settings).await?,
            )
        }
        E::Feedback => {
            let principal = guest::authorize(request.headers(), &project, Action::Respond).await?;
            let widget = principal.kind == "widget_key";
            let headers = cors(&principal, origin);
            let body = read_json(request).await?;
            let couch = chat::couch().await?;
            let shown =
                conversations::feedback(&couch, &project, &id, &body, &principal.settings, widget)
                    .await?;
            with_headers(Reply::json(200, &shown), headers)
        }
        E::Analytics => {
            let principal = team(&request, &project, Action::Respond).await?;
            let couch = chat::couch().await?;
            Reply::json(
                200,
                &conversations::analytics(&couch, &project, &query, &principal.settings).await?,
            )
        }
    };
    Ok(body::full(reply))
}

#[http_service]
async fn handle(request: Request) -> http::Response<Body> {
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if request.method() == spin_sdk::http::Method::OPTIONS
        && let Some(origin) = &origin
    {
        return body::full(Reply::preflight(origin));
    }
    let found = match route::resolve(ROUTES, request.method().as_str(), request.uri().path()) {
        Ok(found) => found,
        Err(error) => return body::full(Reply::error(&error)),
    };
    match answer(request, found, origin.as_deref()).await {
        Ok(response) => response,
        Err(error) => {
            if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
                eprintln!("respond: {detail}");
            }
            body::full(Reply::error(&error))
        }
    }
}
