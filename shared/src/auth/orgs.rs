//! Organisations and their members, projects (one chatbot each) with their members, trash and keys,
//! and the organisation audit log.

use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{delete_doc, normalize_email};
use super::records::{
    EmailClaim, Key, KeyKind, Org, OrgMember, OrgRole, Project, ProjectMember, ProjectSettings,
    Role, USAGE_SHARDS, Usage, User, email_id, key_id, org_id, org_member_id, project_id,
    project_member_id, usage_ids, user_id,
};
use super::secret::{SecretKind, digest, new_id, new_secret};
use super::service::{Auth, Page, PageQuery, TRASH_TTL, page_limit};
use super::store::{DocumentStore, Mailer, StoreError, Stored, load, remove, save, typed};
use super::token::Claims;
use super::{Action, validate_id};
use crate::ApiError;

/// Longest organisation, project and key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest system prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// Most origins on one widget key.
pub const MAX_ORIGINS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub email: String,
    pub role: OrgRole,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange<R> {
    pub role: R,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    pub settings: Option<SettingsPatch>,
}

/// A partial update of a project: only the named fields change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub settings: Option<SettingsPatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub system_prompt: Option<String>,
    /// `null` goes back to the deployment's default model.
    #[serde(default, with = "double_option")]
    pub model: Option<Option<String>>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_k: Option<u32>,
    pub retrieval: Option<super::records::RetrievalMode>,
    #[serde(default, with = "double_option")]
    pub score_threshold: Option<Option<f32>>,
}

/// Tells a field set to `null` (`Some(None)`) from one left out (`None`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

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

fn check_name(name: &str, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "a {what} name is 1 to {MAX_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name.to_string())
}

/// Applies a settings patch, checking each value's range.
pub fn apply_settings(
    settings: &mut ProjectSettings,
    patch: SettingsPatch,
) -> Result<(), ApiError> {
    let bad = |m: &str| Err(ApiError::BadRequest(m.into()));
    if let Some(prompt) = patch.system_prompt {
        if prompt.len() > MAX_PROMPT_BYTES {
            return bad("`settings.system_prompt` is at most 16 KiB");
        }
        settings.system_prompt = prompt;
    }
    if let Some(model) = patch.model {
        if model
            .as_ref()
            .is_some_and(|m| m.is_empty() || m.len() > 200)
        {
            return bad("`settings.model` is 1 to 200 characters, or null");
        }
        settings.model = model;
    }
    if let Some(t) = patch.temperature {
        if !(0.0..=2.0).contains(&t) {
            return bad("`settings.temperature` is between 0 and 2");
        }
        settings.temperature = t;
    }
    if let Some(n) = patch.max_tokens {
        if !(1..=8192).contains(&n) {
            return bad("`settings.max_tokens` is between 1 and 8192");
        }
        settings.max_tokens = n;
    }
    if let Some(k) = patch.top_k {
        if !(1..=50).contains(&k) {
            return bad("`settings.top_k` is between 1 and 50");
        }
        settings.top_k = k;
    }
    if let Some(mode) = patch.retrieval {
        settings.retrieval = mode;
    }
    if let Some(threshold) = patch.score_threshold {
        if threshold.is_some_and(|t| !t.is_finite()) {
            return bad("`settings.score_threshold` is a finite number, or null");
        }
        settings.score_threshold = threshold;
    }
    Ok(())
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

fn not_member() -> ApiError {
    ApiError::NotFound("no such organisation, or you are not a member".into())
}

fn project_view(project: &Stored<Project>, role: Option<Role>) -> Value {
    let p = &project.record;
    json!({
        "id": project.key(),
        "organisation": p.org,
        "name": p.name,
        "settings": p.settings,
        "created": p.created,
        "updated": p.updated,
        "deleted": p.deleted,
        "purge_after": p.deleted.map(|d| d + TRASH_TTL),
        "role": role,
    })
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

impl<S: DocumentStore, M: Mailer> Auth<'_, S, M> {
    pub(crate) async fn org_members(&self, org: &str) -> Result<Vec<Stored<OrgMember>>, ApiError> {
        Ok(typed(
            self.store
                .prefix(&format!("orgmember:{org}:"), None, 10_000)
                .await?,
        ))
    }

    /// The caller's membership of `org`, required to be at least `min`; 404 for non-members.
    async fn org_role(
        &self,
        claims: &Claims,
        org: &str,
        min: OrgRole,
    ) -> Result<Stored<OrgMember>, ApiError> {
        validate_id(org, "organisation")?;
        let member = load::<OrgMember>(self.store, &org_member_id(org, &claims.sub))
            .await?
            .ok_or_else(not_member)?;
        if member.record.role < min {
            return Err(ApiError::Forbidden(format!(
                "this needs the {} role in the organisation",
                role_name(min)
            )));
        }
        Ok(member)
    }

    pub async fn create_org(&self, claims: &Claims, body: NewOrg) -> Result<Value, ApiError> {
        let name = check_name(&body.name, "organisation")?;
        let oid = new_id(self.entropy);
        let now = self.now();
        save(
            self.store,
            &mut Stored::new(
                org_id(&oid),
                Org {
                    name: name.clone(),
                    created: now,
                },
            ),
        )
        .await?;
        let member = OrgMember {
            org: oid.clone(),
            user: claims.sub.clone(),
            role: OrgRole::Owner,
            added: now,
        };
        save(
            self.store,
            &mut Stored::new(org_member_id(&oid, &claims.sub), member),
        )
        .await?;
        self.org_event(&oid, &claims.sub, "organisation_created", Some(&oid))
            .await?;
        Ok(json!({"id": oid, "name": name, "created": now, "role": OrgRole::Owner}))
    }

    pub async fn list_orgs(&self, claims: &Claims) -> Result<Value, ApiError> {
        let members = self.memberships(&claims.sub).await?;
        let ids: Vec<String> = members.iter().map(|m| org_id(&m.record.org)).collect();
        let orgs = self.store.get_many(&ids).await?;
        let items: Vec<Value> = members
            .iter()
            .zip(orgs)
            .filter_map(|(m, doc)| {
                let org = Stored::<Org>::from_doc(doc?)?;
                Some(json!({"id": m.record.org, "name": org.record.name, "created": org.record.created, "role": m.record.role}))
            })
            .collect();
        Ok(json!({"items": items}))
    }

    pub async fn get_org(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        let member = self.org_role(claims, org, OrgRole::Member).await?;
        let stored = load::<Org>(self.store, &org_id(org))
            .await?
            .ok_or_else(not_member)?;
        Ok(
            json!({"id": org, "name": stored.record.name, "created": stored.record.created, "role": member.record.role}),
        )
    }

    pub async fn list_members(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        self.org_role(claims, org, OrgRole::Member).await?;
        let members = self.org_members(org).await?;
        let ids: Vec<String> = members.iter().map(|m| user_id(&m.record.user)).collect();
        let users = self.store.get_many(&ids).await?;
        let items: Vec<Value> = members
            .iter()
            .zip(users)
            .map(|(m, user)| {
                let email = user.and_then(Stored::<User>::from_doc).map(|u| u.record.email);
                json!({"user": m.record.user, "email": email, "role": m.record.role, "added": m.record.added})
            })
            .collect();
        Ok(json!({"items": items}))
    }

    /// Adds a verified user, by address, to the organisation. Only owners may make owners.
    pub async fn add_member(
        &self,
        claims: &Claims,
        org: &str,
        body: NewMember,
    ) -> Result<Value, ApiError> {
        let caller = self.org_role(claims, org, OrgRole::Admin).await?;
        if body.role == OrgRole::Owner && caller.record.role != OrgRole::Owner {
            return Err(ApiError::Forbidden("only an owner can add an owner".into()));
        }
        let email = normalize_email(&body.email)?;
        let no_account = || ApiError::NotFound("no verified account has that email address".into());
        let claim = load::<EmailClaim>(self.store, &email_id(&email))
            .await?
            .ok_or_else(no_account)?;
        let user = load::<User>(self.store, &user_id(&claim.record.user))
            .await?
            .ok_or_else(no_account)?;
        if !user.record.verified {
            return Err(no_account());
        }
        let uid = claim.record.user;
        let member = OrgMember {
            org: org.into(),
            user: uid.clone(),
            role: body.role,
            added: self.now(),
        };
        match save(
            self.store,
            &mut Stored::new(org_member_id(org, &uid), member),
        )
        .await
        {
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict(
                    "that user is already a member; change their role instead".into(),
                ));
            }
            other => other?,
        }
        self.org_event(
            org,
            &claims.sub,
            &format!("member_added:{}", role_name(body.role)),
            Some(&uid),
        )
        .await?;
        Ok(json!({"user": uid, "email": email, "role": body.role}))
    }

    /// Changes a member's role. Owners are made and unmade only by owners; the last owner stays.
    pub async fn change_member(
        &self,
        claims: &Claims,
        org: &str,
        user: &str,
        role: OrgRole,
    ) -> Result<Value, ApiError> {
        let caller = self.org_role(claims, org, OrgRole::Admin).await?;
        validate_id(user, "user")?;
        let mut member = load::<OrgMember>(self.store, &org_member_id(org, user))
            .await?
            .ok_or_else(|| ApiError::NotFound("no such member".into()))?;
        let touches_owner = role == OrgRole::Owner || member.record.role == OrgRole::Owner;
        if touches_owner && caller.record.role != OrgRole::Owner {
            return Err(ApiError::Forbidden(
                "only an owner can make or unmake an owner".into(),
            ));
        }
        if member.record.role == OrgRole::Owner && role != OrgRole::Owner {
            self.keep_an_owner(org).await?;
        }
        member.record.role = role;
        save(self.store, &mut member).await?;
        self.org_event(
            org,
            &claims.sub,
            &format!("role_changed:{}", role_name(role)),
            Some(user),
        )
        .await?;
        Ok(json!({"user": user, "role": role}))
    }

    async fn keep_an_owner(&self, org: &str) -> Result<(), ApiError> {
        let owners = self
            .org_members(org)
            .await?
            .into_iter()
            .filter(|m| m.record.role == OrgRole::Owner)
            .count();
        if owners <= 1 {
            return Err(ApiError::Conflict(
                "an organisation keeps at least one owner".into(),
            ));
        }
        Ok(())
    }

    /// Removes a member (admins remove others; anyone may leave), with their project roles in the organisation.
    pub async fn remove_member(
        &self,
        claims: &Claims,
        org: &str,
        user: &str,
    ) -> Result<Value, ApiError> {
        validate_id(user, "user")?;
        let leaving = user == claims.sub;
        let caller = self
            .org_role(
                claims,
                org,
                if leaving {
                    OrgRole::Member
                } else {
                    OrgRole::Admin
                },
            )
            .await?;
        let member = load::<OrgMember>(self.store, &org_member_id(org, user))
            .await?
            .ok_or_else(|| ApiError::NotFound("no such member".into()))?;
        if member.record.role == OrgRole::Owner {
            if !leaving && caller.record.role != OrgRole::Owner {
                return Err(ApiError::Forbidden(
                    "only an owner can remove an owner".into(),
                ));
            }
            self.keep_an_owner(org).await?;
        }
        for doc in self
            .store
            .find(
                json!({"type": "projmember", "org": org, "user": user}),
                10_000,
            )
            .await?
        {
            delete_doc(self.store, &doc).await?;
        }
        remove(self.store, &member).await?;
        self.org_event(org, &claims.sub, "member_removed", Some(user))
            .await?;
        Ok(json!({"status": "removed"}))
    }

    /// The organisation's audit log, oldest first, a page at a time (owners and admins).
    pub async fn read_audit(
        &self,
        claims: &Claims,
        org: &str,
        page: &PageQuery,
    ) -> Result<Page<Value>, ApiError> {
        self.org_role(claims, org, OrgRole::Admin).await?;
        let limit = page_limit(page);
        let docs = self
            .store
            .prefix(&format!("audit:{org}:"), page.after.as_deref(), limit)
            .await?;
        let next = (docs.len() == limit)
            .then(|| {
                docs.last()
                    .and_then(|d| d["_id"].as_str())
                    .map(str::to_string)
            })
            .flatten();
        let items = docs
            .into_iter()
            .map(|d| json!({"id": d["_id"], "at": d["at"], "actor": d["actor"], "action": d["action"], "target": d["target"], "client": d["client"]}))
            .collect();
        Ok(Page { items, next })
    }

    /// Removes an organisation and everything in it.
    pub(crate) async fn purge_org(&self, org: &str) -> Result<(), ApiError> {
        let projects = typed::<Project>(
            self.store
                .find(json!({"type": "project", "org": org}), 10_000)
                .await?,
        );
        for project in projects {
            self.purge_project_records(&project).await?;
        }
        for member in self.org_members(org).await? {
            remove(self.store, &member).await?;
        }
        if let Some(stored) = load::<Org>(self.store, &org_id(org)).await? {
            remove(self.store, &stored).await?;
        }
        self.audit(org, Some(org), None, "organisation_deleted", Some(org))
            .await?;
        Ok(())
    }

    // --- projects ---

    /// The caller's effective role in a project: their project role, or owner for organisation owners
    /// and admins. `None` when they have none (or the project does not exist).
    pub(crate) async fn project_role(
        &self,
        user: &str,
        project: &str,
    ) -> Result<(Option<Stored<Project>>, Option<Role>), ApiError> {
        let (stored, role, _) = self.project_role_with(user, project, None).await?;
        Ok((stored, role))
    }

    /// `project_role`, reading one more document (`also`, e.g. the caller's sign-in) in the same batch.
    pub(crate) async fn project_role_with(
        &self,
        user: &str,
        project: &str,
        also: Option<&str>,
    ) -> Result<(Option<Stored<Project>>, Option<Role>, Option<Value>), ApiError> {
        let mut ids = vec![project_id(project), project_member_id(project, user)];
        ids.extend(also.map(str::to_string));
        let mut docs = self.store.get_many(&ids).await?.into_iter();
        let stored = docs.next().flatten().and_then(Stored::<Project>::from_doc);
        let member = docs
            .next()
            .flatten()
            .and_then(Stored::<ProjectMember>::from_doc);
        let extra = docs.next().flatten();
        let Some(stored) = stored else {
            return Ok((None, None, extra));
        };
        let org_role = load::<OrgMember>(self.store, &org_member_id(&stored.record.org, user))
            .await?
            .map(|m| m.record.role);
        let role = match org_role {
            Some(OrgRole::Owner | OrgRole::Admin) => Some(Role::Owner),
            Some(OrgRole::Member) => member.map(|m| m.record.role),
            // A project role without organisation membership is stale: membership was revoked.
            None => None,
        };
        Ok((Some(stored), role, extra))
    }

    /// The project if the signed-in caller has at least `min` on it. No role reads as 403 whether or not
    /// the project exists, so ids cannot be probed; a trashed project is 404 unless `trashed` is allowed.
    async fn project_for(
        &self,
        claims: &Claims,
        project: &str,
        min: Role,
        trashed: bool,
    ) -> Result<(Stored<Project>, Role), ApiError> {
        validate_id(project, "project")?;
        let (stored, role) = self.project_role(&claims.sub, project).await?;
        let (Some(stored), Some(role)) = (stored, role) else {
            return Err(ApiError::Forbidden(format!(
                "you have no access to project {project}"
            )));
        };
        if stored.record.deleted.is_some() && !trashed {
            return Err(ApiError::NotFound(format!(
                "project {project} is in the trash; restore it first"
            )));
        }
        if role < min {
            return Err(ApiError::Forbidden(format!(
                "this needs the {} role on the project",
                role_name(min)
            )));
        }
        Ok((stored, role))
    }

    pub async fn create_project(
        &self,
        claims: &Claims,
        org: &str,
        body: NewProject,
    ) -> Result<Value, ApiError> {
        self.org_role(claims, org, OrgRole::Admin).await?;
        let name = check_name(&body.name, "project")?;
        let mut settings = ProjectSettings::default();
        if let Some(patch) = body.settings {
            apply_settings(&mut settings, patch)?;
        }
        let pid = new_id(self.entropy);
        let now = self.now();
        let mut stored = Stored::new(
            project_id(&pid),
            Project {
                org: org.into(),
                name,
                settings,
                created: now,
                updated: now,
                deleted: None,
            },
        );
        save(self.store, &mut stored).await?;
        self.org_event(org, &claims.sub, "project_created", Some(&pid))
            .await?;
        Ok(project_view(&stored, Some(Role::Owner)))
    }

    /// Projects of an organisation the caller can see (all of them for owners and admins), trash excluded.
    pub async fn list_projects(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        let member = self.org_role(claims, org, OrgRole::Member).await?;
        let projects = typed::<Project>(
            self.store
                .find(json!({"type": "project", "org": org}), 10_000)
                .await?,
        );
        let roles: Vec<Stored<ProjectMember>> = if member.record.role >= OrgRole::Admin {
            Vec::new()
        } else {
            typed(
                self.store
                    .find(
                        json!({"type": "projmember", "org": org, "user": &claims.sub}),
                        10_000,
                    )
                    .await?,
            )
        };
        let items: Vec<Value> = projects
            .iter()
            .filter(|p| p.record.deleted.is_none())
            .filter_map(|p| {
                let pid = p.key();
                let role = if member.record.role >= OrgRole::Admin {
                    Some(Role::Owner)
                } else {
                    roles
                        .iter()
                        .find(|r| r.record.project == pid)
                        .map(|r| r.record.role)
                };
                role.map(|role| project_view(p, Some(role)))
            })
            .collect();
        Ok(json!({"items": items}))
    }

    pub async fn get_project(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        let (stored, role) = self
            .project_for(claims, project, Role::Viewer, false)
            .await?;
        Ok(project_view(&stored, Some(role)))
    }

    pub async fn update_project(
        &self,
        claims: &Claims,
        project: &str,
        patch: ProjectPatch,
    ) -> Result<Value, ApiError> {
        let (mut stored, role) = self
            .project_for(claims, project, Role::Editor, false)
            .await?;
        if let Some(name) = patch.name {
            stored.record.name = check_name(&name, "project")?;
        }
        if let Some(settings) = patch.settings {
            apply_settings(&mut stored.record.settings, settings)?;
        }
        stored.record.updated = self.now();
        save(self.store, &mut stored).await?;
        Ok(project_view(&stored, Some(role)))
    }

    /// Moves a project to the trash: its keys stop working at once; it can be restored for 30 days.
    pub async fn trash_project(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        let (mut stored, role) = self
            .project_for(claims, project, Role::Owner, false)
            .await?;
        stored.record.deleted = Some(self.now());
        save(self.store, &mut stored).await?;
        let org = stored.record.org.clone();
        self.org_event(&org, &claims.sub, "project_deleted", Some(project))
            .await?;
        Ok(project_view(&stored, Some(role)))
    }

    pub async fn restore_project(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        let (mut stored, role) = self.project_for(claims, project, Role::Owner, true).await?;
        if stored.record.deleted.is_none() {
            return Err(ApiError::Conflict("the project is not in the trash".into()));
        }
        stored.record.deleted = None;
        save(self.store, &mut stored).await?;
        let org = stored.record.org.clone();
        self.org_event(&org, &claims.sub, "project_restored", Some(project))
            .await?;
        Ok(project_view(&stored, Some(role)))
    }

    /// Deletes a trashed project for good, now rather than after 30 days.
    pub async fn purge_project(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        let (stored, _) = self.project_for(claims, project, Role::Owner, true).await?;
        if stored.record.deleted.is_none() {
            return Err(ApiError::Conflict(
                "move the project to the trash before purging it".into(),
            ));
        }
        self.purge_project_records(&stored).await?;
        let org = stored.record.org.clone();
        self.org_event(&org, &claims.sub, "project_purged", Some(project))
            .await?;
        Ok(json!({"status": "purged"}))
    }

    /// The organisation's trash; projects past their 30 days are purged on the way.
    pub async fn list_trash(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        self.org_role(claims, org, OrgRole::Admin).await?;
        let now = self.now();
        let mut items = Vec::new();
        for project in typed::<Project>(
            self.store
                .find(json!({"type": "project", "org": org}), 10_000)
                .await?,
        ) {
            match project.record.deleted {
                Some(deleted) if deleted + TRASH_TTL <= now => {
                    self.purge_project_records(&project).await?;
                    self.audit(org, Some(org), None, "project_purged", Some(project.key()))
                        .await?;
                }
                Some(_) => items.push(project_view(&project, None)),
                None => {}
            }
        }
        Ok(json!({"items": items}))
    }

    async fn purge_project_records(&self, project: &Stored<Project>) -> Result<(), ApiError> {
        let pid = project.key().to_string();
        for doc in self
            .store
            .prefix(&format!("projmember:{pid}:"), None, 10_000)
            .await?
        {
            delete_doc(self.store, &doc).await?;
        }
        for key in typed::<Key>(
            self.store
                .find(json!({"type": "key", "project": &pid}), 10_000)
                .await?,
        ) {
            let kid = key.key().to_string();
            for doc in self
                .store
                .get_many(&usage_ids(&kid))
                .await?
                .into_iter()
                .flatten()
            {
                delete_doc(self.store, &doc).await?;
            }
            remove(self.store, &key).await?;
        }
        remove(self.store, project).await?;
        Ok(())
    }

    // --- project members ---

    pub async fn list_project_members(
        &self,
        claims: &Claims,
        project: &str,
    ) -> Result<Value, ApiError> {
        self.project_for(claims, project, Role::Viewer, false)
            .await?;
        let items: Vec<Value> = typed::<ProjectMember>(
            self.store
                .prefix(&format!("projmember:{project}:"), None, 10_000)
                .await?,
        )
        .into_iter()
        .map(|m| json!({"user": m.record.user, "role": m.record.role}))
        .collect();
        Ok(json!({"items": items}))
    }

    /// Gives an organisation member a role on the project (project owners only).
    pub async fn set_project_member(
        &self,
        claims: &Claims,
        project: &str,
        user: &str,
        role: Role,
    ) -> Result<Value, ApiError> {
        let (stored, _) = self
            .project_for(claims, project, Role::Owner, false)
            .await?;
        validate_id(user, "user")?;
        let org = stored.record.org.clone();
        if load::<OrgMember>(self.store, &org_member_id(&org, user))
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(
                "that user is not a member of the project's organisation".into(),
            ));
        }
        let id = project_member_id(project, user);
        let mut member = load::<ProjectMember>(self.store, &id)
            .await?
            .unwrap_or_else(|| {
                Stored::new(
                    id.clone(),
                    ProjectMember {
                        project: project.into(),
                        org: org.clone(),
                        user: user.into(),
                        role,
                    },
                )
            });
        member.record.role = role;
        save(self.store, &mut member).await?;
        self.org_event(
            &org,
            &claims.sub,
            &format!("project_role_changed:{}", role_name(role)),
            Some(&format!("{project}/{user}")),
        )
        .await?;
        Ok(json!({"user": user, "role": role}))
    }

    pub async fn remove_project_member(
        &self,
        claims: &Claims,
        project: &str,
        user: &str,
    ) -> Result<Value, ApiError> {
        let (stored, _) = self
            .project_for(claims, project, Role::Owner, false)
            .await?;
        validate_id(user, "user")?;
        let member = load::<ProjectMember>(self.store, &project_member_id(project, user))
            .await?
            .ok_or_else(|| ApiError::NotFound("that user has no role on the project".into()))?;
        remove(self.store, &member).await?;
        let org = stored.record.org.clone();
        self.org_event(
            &org,
            &claims.sub,
            "project_role_removed",
            Some(&format!("{project}/{user}")),
        )
        .await?;
        Ok(json!({"status": "removed"}))
    }

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

/// A role's (or action's) name as clients write it.
pub(crate) fn role_name<R: serde::Serialize>(role: R) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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

    #[test]
    fn settings_patches_check_ranges_and_null_resets() {
        let mut settings = ProjectSettings::default();
        let patch: SettingsPatch =
            serde_json::from_value(json!({"model": "gpt-x", "top_k": 8})).unwrap();
        apply_settings(&mut settings, patch).unwrap();
        assert_eq!(
            (settings.model.as_deref(), settings.top_k),
            (Some("gpt-x"), 8)
        );
        let patch: SettingsPatch = serde_json::from_value(json!({"model": null})).unwrap();
        apply_settings(&mut settings, patch).unwrap();
        assert_eq!(settings.model, None);
        for bad in [
            json!({"temperature": 3.0}),
            json!({"top_k": 0}),
            json!({"max_tokens": 0}),
            json!({"model": ""}),
        ] {
            let patch: SettingsPatch = serde_json::from_value(bad.clone()).unwrap();
            assert!(apply_settings(&mut settings, patch).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<SettingsPatch>(json!({"colour": "red"})).is_err());
    }
}
