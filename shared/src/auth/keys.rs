//! A project's API and widget keys: creating (the secret is shown once), listing and revoking.

use serde::Deserialize;
use serde_json::{Value, json};

use super::orgs::check_name;
use super::records::{Key, KeyKind, Role, USAGE_SHARDS, Usage, key_id, usage_ids};
use super::secret::{SecretKind, digest, new_id, new_secret};
use super::service::Auth;
use super::store::{DocumentStore, Knowledge, Mailer, Stored, load, save, typed};
use super::token::Claims;
use super::{Action, validate_id};
use crate::ApiError;

/// Most origins on one widget key.
pub const MAX_ORIGINS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    /// For API keys: what the key may do.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// For widget keys: the browser origins it works from.
    #[serde(default)]
    pub origins: Vec<String>,
    pub expires_in_days: Option<u32>,
}

/// Checks a browser origin: `https://host[:port]`, or `http://` for localhost.
pub fn check_origin(origin: &str) -> Result<String, ApiError> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, host) = origin.split_once("://").unwrap_or(("", ""));
    let hostname = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
            h
        } else {
            host
        }
    });
    let host_ok = !hostname.is_empty()
        && hostname.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'.'
                || b == b'-'
                || b == b'['
                || b == b']'
                || b == b':'
        })
        && !host.contains('/');
    let local = matches!(hostname, "localhost" | "127.0.0.1" | "[::1]");
    if host_ok && (scheme == "https" || (scheme == "http" && local)) {
        Ok(origin)
    } else {
        Err(ApiError::BadRequest(format!(
            "`{origin}` is not an origin: use https://host[:port] (http:// only for localhost)"
        )))
    }
}

fn key_view(key: &Stored<Key>, last_used: Option<u64>) -> Value {
    let id = key.key();
    let k = &key.record;
    let prefix = match k.kind {
        KeyKind::Api => SecretKind::ApiKey.prefix(),
        KeyKind::Widget => SecretKind::WidgetKey.prefix(),
    };
    json!({
        "id": id,
        "kind": k.kind,
        "name": k.name,
        "prefix": format!("{prefix}_{id}"),
        "project": k.project,
        "actions": k.actions,
        "origins": k.origins,
        "created": k.created,
        "created_by": k.created_by,
        "expires": k.expires,
        "revoked": k.revoked,
        "last_used": last_used,
    })
}
impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
    // --- keys ---

    /// Creates an API key (`kind` Api: scoped to `actions`) or a widget key (respond only, from
    /// `origins`). The secret is in this answer and nowhere else.
    pub async fn create_key(
        &self,
        claims: &Claims,
        project: &str,
        kind: KeyKind,
        body: NewKey,
    ) -> Result<Value, ApiError> {
        let (stored, _) = self
            .project_for(claims, project, Role::Owner, false)
            .await?;
        let name = check_name(&body.name, "key")?;
        let (actions, origins) = match kind {
            KeyKind::Api => {
                if body.actions.is_empty() || !body.origins.is_empty() {
                    return Err(ApiError::BadRequest("an API key names its `actions` (ingest, search, respond, admin) and no `origins`".into()));
                }
                let mut actions = body.actions;
                actions.sort_by_key(|a| *a as u8);
                actions.dedup();
                (actions, Vec::new())
            }
            KeyKind::Widget => {
                if body.origins.is_empty()
                    || body.origins.len() > MAX_ORIGINS
                    || !body.actions.is_empty()
                {
                    return Err(ApiError::BadRequest(format!(
                        "a widget key names 1 to {MAX_ORIGINS} browser `origins` and no `actions` (it can only respond)"
                    )));
                }
                let origins = body
                    .origins
                    .iter()
                    .map(|o| check_origin(o))
                    .collect::<Result<Vec<_>, _>>()?;
                (vec![Action::Respond], origins)
            }
        };
        if body.expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
            return Err(ApiError::BadRequest(
                "`expires_in_days` is between 1 and 3650".into(),
            ));
        }
        let kid = new_id(self.entropy);
        let secret_kind = if kind == KeyKind::Api {
            SecretKind::ApiKey
        } else {
            SecretKind::WidgetKey
        };
        let secret = new_secret(self.entropy, secret_kind, &kid);
        let now = self.now();
        let org = stored.record.org.clone();
        let mut key = Stored::new(
            key_id(&kid),
            Key {
                kind,
                project: project.into(),
                org: org.clone(),
                name,
                actions,
                origins,
                hash: digest(&secret),
                created: now,
                created_by: claims.sub.clone(),
                expires: body.expires_in_days.map(|d| now + u64::from(d) * 86_400),
                revoked: None,
            },
        );
        save(self.store, &mut key).await?;
        self.org_event(&org, &claims.sub, "key_created", Some(&kid))
            .await?;
        let mut view = key_view(&key, None);
        view["key"] = Value::String(secret);
        Ok(view)
    }

    pub async fn list_keys(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        self.project_for(claims, project, Role::Owner, false)
            .await?;
        let keys = typed::<Key>(
            self.store
                .find(json!({"type": "key", "project": project}), 10_000)
                .await?,
        );
        let ids: Vec<String> = keys.iter().flat_map(|k| usage_ids(k.key())).collect();
        let usage = self.store.get_many(&ids).await?;
        let items: Vec<Value> = keys
            .iter()
            .zip(usage.chunks(USAGE_SHARDS))
            .map(|(k, shards)| {
                let last_used = shards
                    .iter()
                    .flatten()
                    .filter_map(|doc| Stored::<Usage>::from_doc(doc.clone()))
                    .map(|u| u.record.last_used)
                    .max();
                key_view(k, last_used)
            })
            .collect();
        Ok(json!({"items": items}))
    }

    pub async fn revoke_key(
        &self,
        claims: &Claims,
        project: &str,
        key: &str,
    ) -> Result<Value, ApiError> {
        self.project_for(claims, project, Role::Owner, false)
            .await?;
        validate_id(key, "key")?;
        let mut stored = load::<Key>(self.store, &key_id(key))
            .await?
            .filter(|k| k.record.project == project)
            .ok_or_else(|| ApiError::NotFound("no such key in this project".into()))?;
        if stored.record.revoked.is_none() {
            stored.record.revoked = Some(self.now());
            save(self.store, &mut stored).await?;
            let org = stored.record.org.clone();
            self.org_event(&org, &claims.sub, "key_revoked", Some(key))
                .await?;
        }
        Ok(key_view(&stored, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for (origin, ok) in [
            ("https://example.com", true),
            ("https://Example.com:8443/", true),
            ("http://localhost:3000", true),
            ("http://example.com", false),
            ("https://example.com/path", false),
            ("example.com", false),
            ("https://", false),
            ("javascript:alert(1)", false),
        ] {
            assert_eq!(check_origin(origin).is_ok(), ok, "{origin}");
        }
        assert_eq!(
            check_origin("https://Example.com:8443/").unwrap(),
            "https://example.com:8443"
        );
    }
}
