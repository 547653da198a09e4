//! Projects (one chatbot each): creating, listing, settings, trash and purge, and project members.

use serde::Deserialize;
use serde_json::{Value, json};

use super::account::delete_doc;
use super::orgs::{check_name, role_name};
use super::records::{
    Key, OrgMember, OrgRole, Project, ProjectMember, ProjectSettings, Role, org_member_id,
    project_id, project_member_id, usage_ids,
};
use super::secret::new_id;
use super::service::Auth;
use super::store::{DocumentStore, Knowledge, Mailer, Stored, load, remove, save, typed};
use super::token::Claims;
use super::validate_id;
use crate::ApiError;

/// Longest system prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

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
    /// Replaces hybrid search's fusion; fields left out take the defaults.
    pub fusion: Option<crate::search::Fusion>,
    pub fallback: Option<String>,
    pub answer_threshold: Option<f32>,
    pub qa_threshold: Option<f32>,
    /// `null` keeps conversations for good.
    #[serde(default, with = "double_option")]
    pub retention_days: Option<Option<u32>>,
    pub context_tokens: Option<u32>,
    pub visitor_per_minute: Option<u32>,
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
    if let Some(fusion) = patch.fusion {
        fusion.check().map_err(ApiError::BadRequest)?;
        settings.fusion = fusion;
    }
    if let Some(text) = patch.fallback {
        if text.trim().is_empty() || text.chars().count() > 2000 {
            return bad("`settings.fallback` is 1 to 2,000 characters");
        }
        settings.fallback = text;
    }
    if let Some(t) = patch.answer_threshold {
        if !(-1.0..=1.0).contains(&t) {
            return bad("`settings.answer_threshold` is a similarity from -1 to 1");
        }
        settings.answer_threshold = t;
    }
    if let Some(t) = patch.qa_threshold {
        if !(0.0..=1.0).contains(&t) {
            return bad("`settings.qa_threshold` is a similarity from 0 to 1");
        }
        settings.qa_threshold = t;
    }
    if let Some(days) = patch.retention_days {
        if days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return bad("`settings.retention_days` is 1 to 3,650 days, or null");
        }
        settings.retention_days = days;
    }
    if let Some(n) = patch.context_tokens {
        if !(512..=1_048_576).contains(&n) {
            return bad("`settings.context_tokens` is between 512 and 1,048,576");
        }
        settings.context_tokens = n;
    }
    if let Some(n) = patch.visitor_per_minute {
        if !(1..=10_000).contains(&n) {
            return bad("`settings.visitor_per_minute` is between 1 and 10,000");
        }
        settings.visitor_per_minute = n;
    }
    Ok(())
}

/// A project as clients see it; `trash_ttl` tells when a trashed one is purged.
pub(super) fn project_view(project: &Stored<Project>, role: Option<Role>, trash_ttl: u64) -> Value {
    let p = &project.record;
    json!({
        "id": project.key(),
        "organisation": p.org,
        "name": p.name,
        "settings": p.settings,
        "created": p.created,
        "updated": p.updated,
        "deleted": p.deleted,
        "purge_after": p.deleted.map(|d| d + trash_ttl),
        "role": role,
    })
}

impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
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
    pub(super) async fn project_for(
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
        Ok(project_view(
            &stored,
            Some(Role::Owner),
            self.config.trash_ttl,
        ))
    }

    /// Projects of an organisation the caller can see (all of them for owners and admins), trash excluded.
    pub async fn list_projects(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        let member = self.org_role(claims, org, OrgRole::Member).await?;
        let projects = self.projects_after_expiry(org).await?;
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
                role.map(|role| project_view(p, Some(role), self.config.trash_ttl))
            })
            .collect();
        Ok(json!({"items": items}))
    }

    pub async fn get_project(&self, claims: &Claims, project: &str) -> Result<Value, ApiError> {
        let (stored, role) = self
            .project_for(claims, project, Role::Viewer, false)
            .await?;
        Ok(project_view(&stored, Some(role), self.config.trash_ttl))
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
        Ok(project_view(&stored, Some(role), self.config.trash_ttl))
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
        Ok(project_view(&stored, Some(role), self.config.trash_ttl))
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
        Ok(project_view(&stored, Some(role), self.config.trash_ttl))
    }

    /// Deletes a trashed project for good, now rather than when its time in the trash is up: its
    /// knowledge in the other stores first, then auth's records.
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

    /// The organisation's trash; projects past their time there are purged on the way.
    pub async fn list_trash(&self, claims: &Claims, org: &str) -> Result<Value, ApiError> {
        self.org_role(claims, org, OrgRole::Admin).await?;
        let items: Vec<Value> = self
            .projects_after_expiry(org)
            .await?
            .iter()
            .filter(|p| p.record.deleted.is_some())
            .map(|p| project_view(p, None, self.config.trash_ttl))
            .collect();
        Ok(json!({"items": items}))
    }

    /// The organisation's projects, once those whose time in the trash is up have been purged (with
    /// their knowledge in the other stores). Serverless, nothing runs on a timer: listing an
    /// organisation's projects or its trash is what purges them.
    async fn projects_after_expiry(&self, org: &str) -> Result<Vec<Stored<Project>>, ApiError> {
        let now = self.now();
        let mut kept = Vec::new();
        for project in typed::<Project>(
            self.store
                .find(json!({"type": "project", "org": org}), 10_000)
                .await?,
        ) {
            match project.record.deleted {
                Some(deleted) if deleted.saturating_add(self.config.trash_ttl) <= now => {
                    self.purge_project_records(&project).await?;
                    self.audit(org, Some(org), None, "project_purged", Some(project.key()))
                        .await?;
                }
                _ => kept.push(project),
            }
        }
        Ok(kept)
    }

    /// Removes the project's knowledge from the other stores, then auth's records of it: its
    /// members, keys (with their usage counters) and the project itself.
    pub(super) async fn purge_project_records(
        &self,
        project: &Stored<Project>,
    ) -> Result<(), ApiError> {
        let pid = project.key().to_string();
        self.knowledge.purge(&pid).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
