//! The per-request decision behind the `edgerag:platform/auth` interface: who is calling, and may they
//! do this to this project. A key costs one batched store read and one usage write; a signed-in user one batched
//! read (sign-in, project, project role) and one read of their organisation membership.

use serde::Serialize;

use super::records::{
    Key, KeyKind, Project, ProjectSettings, Role, Session, USAGE_SHARDS, Usage, key_id,
    role_needed, session_id, usage_id, usage_ids,
};
use super::secret::{SecretKind, digest, secret_id, secret_kind};
use super::service::{Auth, COUNTER_TRIES, rate_limited};
use super::store::{DocumentStore, Knowledge, Mailer, StoreError, Stored, save};
use super::{Action, Credential, parse_credential, validate_id};
use crate::ApiError;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PrincipalKind {
    AccessToken { role: Role },
    ApiKey { actions: Vec<Action> },
    WidgetKey { origins: Vec<String> },
}

/// An authenticated caller allowed to act on a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// The project the credential was checked against (the key's own when the request named none).
    pub project: String,
    /// The user id, or the key id for keys.
    pub subject: String,
    pub organisation: String,
    #[serde(flatten)]
    pub kind: PrincipalKind,
    /// The project's settings, read with the credential check (not shown to the caller).
    #[serde(skip)]
    pub settings: ProjectSettings,
}

fn no_access(project: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "this credential has no access to project {project}"
    ))
}

impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
    /// Authenticates `header` (`authorization`'s value) and checks that it may perform `action` on
    /// `project`. `origin` is the browser's `origin` header, required for widget keys. An empty
    /// `project` means the key's own (OpenAI-style clients need not name it); a signed-in user must
    /// name one.
    pub async fn authorize(
        &self,
        header: &str,
        project: &str,
        action: Action,
        origin: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let (value, key_scheme) = match parse_credential(header)? {
            Credential::Bearer(value) => (value, false),
            Credential::ApiKey(value) => (value, true),
        };
        let kind = secret_kind(value);
        match kind {
            Some(SecretKind::RefreshToken) => {
                return Err(ApiError::Unauthenticated(
                    "a refresh token is not an access token; trade it at /v1/auth/token/refresh"
                        .into(),
                ));
            }
            None if key_scheme => {
                return Err(ApiError::Unauthenticated("the API key is not valid".into()));
            }
            _ => {}
        }
        let is_key = matches!(kind, Some(SecretKind::ApiKey | SecretKind::WidgetKey));
        let owned;
        let project = if !project.is_empty() {
            project
        } else if is_key {
            owned = self.key_project(value).await?;
            owned.as_str()
        } else {
            // An invalid token is refused as such before anything is said of the request.
            self.verify_access_token(value)?;
            return Err(ApiError::BadRequest(
                "name the project (a signed-in user may use several)".into(),
            ));
        };
        validate_id(project, "project")?;
        // Keys are accepted as bearer tokens too, as OpenAI-style clients send them.
        if is_key {
            self.authorize_key(value, project, action, origin).await
        } else {
            self.authorize_user(value, project, action).await
        }
    }

    /// The project a key belongs to, for requests that name none.
    async fn key_project(&self, secret: &str) -> Result<String, ApiError> {
        let invalid = || ApiError::Unauthenticated("the API key is not valid".into());
        let kid = secret_id(secret, SecretKind::ApiKey)
            .or_else(|| secret_id(secret, SecretKind::WidgetKey))
            .ok_or_else(invalid)?;
        // The key is checked in full afterwards; this read only learns its project.
        let key = self
            .store
            .get(&key_id(kid))
            .await?
            .and_then(Stored::<Key>::from_doc)
            .ok_or_else(invalid)?;
        Ok(key.record.project)
    }

    async fn authorize_user(
        &self,
        token: &str,
        project: &str,
        action: Action,
    ) -> Result<Principal, ApiError> {
        let claims = self.verify_access_token(token)?;
        // The sign-in is read in the same batch as the project and the caller's role on it.
        let sid = session_id(&claims.sid);
        let (stored, role, session) = self
            .project_role_with(&claims.sub, project, Some(&sid))
            .await?;
        let session = session.and_then(Stored::<Session>::from_doc);
        if !session.is_some_and(|s| s.record.revoked.is_none() && s.record.user == claims.sub) {
            return Err(ApiError::Unauthenticated(
                "the sign-in has ended; sign in again".into(),
            ));
        }
        let (Some(stored), Some(role)) = (stored, role) else {
            return Err(no_access(project));
        };
        if stored.record.deleted.is_some() {
            return Err(ApiError::NotFound(format!(
                "project {project} is in the trash"
            )));
        }
        let needed = role_needed(action);
        if role < needed {
            return Err(ApiError::Forbidden(format!(
                "{} needs the {} role on the project",
                action_name(action),
                super::orgs::role_name(needed)
            )));
        }
        Ok(Principal {
            project: project.to_string(),
            subject: claims.sub,
            organisation: stored.record.org,
            kind: PrincipalKind::AccessToken { role },
            settings: stored.record.settings,
        })
    }

    async fn authorize_key(
        &self,
        secret: &str,
        project: &str,
        action: Action,
        origin: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let invalid = || ApiError::Unauthenticated("the API key is not valid".into());
        let kid = secret_id(secret, SecretKind::ApiKey)
            .or_else(|| secret_id(secret, SecretKind::WidgetKey))
            .ok_or_else(invalid)?;
        let mut ids = vec![key_id(kid), super::records::project_id(project)];
        ids.extend(usage_ids(kid));
        let mut docs = self.store.get_many(&ids).await?.into_iter();
        let key = docs
            .next()
            .flatten()
            .and_then(Stored::<Key>::from_doc)
            .ok_or_else(invalid)?;
        let stored_project = docs.next().flatten().and_then(Stored::<Project>::from_doc);
        let usage: Vec<Option<Stored<Usage>>> = docs
            .map(|doc| doc.and_then(Stored::<Usage>::from_doc))
            .collect();
        if !super::password::constant_time_eq(digest(secret).as_bytes(), key.record.hash.as_bytes())
        {
            return Err(invalid());
        }
        let now = self.now();
        if key.record.revoked.is_some() {
            return Err(ApiError::Unauthenticated("the API key was revoked".into()));
        }
        if key.record.expires.is_some_and(|e| e <= now) {
            return Err(ApiError::Unauthenticated("the API key has expired".into()));
        }
        if key.record.project != project {
            return Err(no_access(project));
        }
        let Some(stored_project) = stored_project else {
            return Err(no_access(project));
        };
        if stored_project.record.deleted.is_some() {
            return Err(ApiError::NotFound(format!(
                "project {project} is in the trash"
            )));
        }
        if !key.record.actions.contains(&action) {
            return Err(ApiError::Forbidden(format!(
                "this key may not {}",
                action_name(action)
            )));
        }
        let kind = match key.record.kind {
            KeyKind::Api => PrincipalKind::ApiKey {
                actions: key.record.actions.clone(),
            },
            KeyKind::Widget => {
                let origin = origin.map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase());
                if !origin.is_some_and(|o| key.record.origins.contains(&o)) {
                    return Err(ApiError::Forbidden(
                        "this widget key does not work from this origin".into(),
                    ));
                }
                PrincipalKind::WidgetKey {
                    origins: key.record.origins.clone(),
                }
            }
        };
        self.count_key_use(kid, usage, now).await?;
        Ok(Principal {
            project: project.to_string(),
            subject: kid.to_string(),
            organisation: key.record.org,
            kind,
            settings: stored_project.record.settings,
        })
    }

    /// Counts a request against the key's per-minute limit and notes when it was last used. The count
    /// is spread over `USAGE_SHARDS` documents: the request adds to a random one, and on a conflict
    /// re-reads and tries the next.
    async fn count_key_use(
        &self,
        kid: &str,
        mut shards: Vec<Option<Stored<Usage>>>,
        now: u64,
    ) -> Result<(), ApiError> {
        let window = now / 60;
        let total: u32 = shards
            .iter()
            .flatten()
            .filter(|u| u.record.window == window)
            .map(|u| u.record.count)
            .sum();
        if total >= self.config.key_per_minute {
            return Err(rate_limited(60 - now % 60));
        }
        shards.resize(USAGE_SHARDS, None);
        let mut pick = [0u8; 1];
        self.entropy.fill(&mut pick);
        let mut shard = usize::from(pick[0]) % USAGE_SHARDS;
        for _ in 0..COUNTER_TRIES {
            let mut stored = shards[shard].take().unwrap_or_else(|| {
                Stored::new(
                    usage_id(kid, shard),
                    Usage {
                        window,
                        count: 0,
                        last_used: now,
                    },
                )
            });
            if stored.record.window != window {
                stored.record.window = window;
                stored.record.count = 0;
            }
            stored.record.count += 1;
            stored.record.last_used = now;
            match save(self.store, &mut stored).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => {
                    shard = (shard + 1) % USAGE_SHARDS;
                    shards[shard] =
                        super::store::load::<Usage>(self.store, &usage_id(kid, shard)).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(rate_limited(1))
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Ingest => "ingest",
        Action::Search => "search",
        Action::Respond => "respond",
        Action::Admin => "administer the project",
    }
}
