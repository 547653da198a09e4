//! What ingest, search and respond share on the guest side: the generated bindings of the
//! `edgerag:platform/auth` interface they import (satisfied by composing them with the auth component at
//! build time), and the glue from spin-sdk requests to `shared`'s types.
//!
//! It also holds the adapters to the stores and models over Spin's outbound HTTP: the document store
//! (CouchDB's API), the vector store (Qdrant's), the object store (S3) and the embedding model
//! (OpenAI's `/v1/embeddings`), each tested end to end against the real server it speaks to.
//!
//! It holds no domain logic (that is `shared`'s) and is never linked into the auth component.

pub mod couch;
pub mod embed;
pub mod objects;
pub mod outbound;
pub mod vars;
pub mod vectors;

/// Generated bindings of the `auth-consumer` world; the only unsafe code is the generator's.
#[allow(unsafe_code)]
pub mod bindings {
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        world: "auth-consumer",
        path: "../../wit",
        generate_all,
    });
}

use bindings::edgerag::platform::{auth, types};
use serde::Serialize;
use shared::ApiError;
use shared::auth::Action;
use shared::auth::records::ProjectSettings;

/// Who the auth component says is calling, as functions report it, and the project's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// The project auth checked (the key's own when the request named none).
    pub project: String,
    pub subject: String,
    pub organisation: String,
    pub kind: &'static str,
    #[serde(skip)]
    pub settings: ProjectSettings,
    /// What auth answered, as it travels on to `retrieve`.
    #[serde(skip)]
    pub authorization: types::Authorization,
}

/// Asks the auth component whether this request's credential may perform `action` on `project`.
pub async fn authorize(
    headers: &http::HeaderMap,
    project: &str,
    action: Action,
) -> Result<Principal, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let action = match action {
        Action::Ingest => types::Action::Ingest,
        Action::Search => types::Action::Search,
        Action::Respond => types::Action::Respond,
        Action::Admin => types::Action::Admin,
    };
    let authorization = auth::authorize(
        header("authorization").unwrap_or_default().to_string(),
        project.to_string(),
        action,
        header("origin").map(str::to_string),
    )
    .await
    .map_err(api_error)?;
    let settings = serde_json::from_str(&authorization.settings).map_err(|e| {
        ApiError::Internal(format!(
            "auth answered project settings this build cannot read: {e}"
        ))
    })?;
    let principal = &authorization.principal;
    Ok(Principal {
        project: authorization.project.clone(),
        subject: principal.subject.clone(),
        organisation: principal.organisation.clone(),
        kind: match principal.kind {
            types::CredentialKind::AccessToken => "access_token",
            types::CredentialKind::ApiKey(_) => "api_key",
            types::CredentialKind::WidgetKey(_) => "widget_key",
        },
        settings,
        authorization,
    })
}

/// Reads a request's body as JSON: 413 past `limit`, 400 when it is empty or not JSON.
pub async fn read_json(
    request: spin_sdk::http::Request,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let body = read_body(request, limit).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// Reads a request's body whole, refusing more than `limit` bytes (413) as soon as it is passed.
pub async fn read_body(
    request: spin_sdk::http::Request,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let mut body = Vec::new();
    let mut stream = request.into_body();
    while let Some(frame) = stream.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e:?}")))?;
        if let Some(data) = frame.data_ref() {
            if body.len() + data.len() > limit {
                return Err(ApiError::PayloadTooLarge {
                    limit: limit as u64,
                });
            }
            body.extend_from_slice(data);
        }
    }
    Ok(body)
}

/// An error in the interfaces' vocabulary (for a component's exports).
pub fn wit_error(error: &ApiError) -> types::Error {
    types::Error {
        code: error.code().into(),
        message: error.to_string(),
        status: error.status(),
    }
}

/// The auth component's error, back in `shared`'s vocabulary (by status, so the client sees the same code).
pub fn api_error(error: types::Error) -> ApiError {
    match error.status {
        400 => ApiError::BadRequest(error.message),
        401 => ApiError::Unauthenticated(error.message),
        403 => ApiError::Forbidden(error.message),
        404 => ApiError::NotFound(error.message),
        429 => ApiError::TooManyRequests {
            message: error.message,
            retry_after_secs: 1,
        },
        _ => ApiError::Internal(format!("auth failed: {} {}", error.code, error.message)),
    }
}

/// A future that says it is `Send` so that `object_store`'s `Send`-bound HTTP trait can hold Spin's
/// outbound HTTP futures, which are not. Sound because a component runs on one thread: WASI 0.3
/// guests have no threads, and this crate is only ever run inside one.
#[allow(unsafe_code)]
mod single_thread {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct AssertSend<F>(pub F);

    // SAFETY: see the module comment; nothing here is ever shared with or moved to another thread.
    unsafe impl<F> Send for AssertSend<F> {}

    impl<F: Future> Future for AssertSend<F> {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            // SAFETY: a structural projection of the only field; it is never moved out.
            unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
        }
    }
}

pub(crate) fn send_send<F: std::future::Future>(future: F) -> single_thread::AssertSend<F> {
    single_thread::AssertSend(future)
}
