//! Organisations and their members, and the organisation audit log. Projects are in
//! [`super::projects`], their keys in [`super::keys`].

use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{delete_doc, normalize_email};
use super::records::{
    EmailClaim, Org, OrgMember, OrgRole, Project, User, email_id, org_id, org_member_id, user_id,
};
use super::secret::new_id;
use super::service::{Auth, Page, PageQuery, page_limit};
use super::store::{
    DocumentStore, Knowledge, Mailer, StoreError, Stored, load, remove, save, typed,
};
use super::token::Claims;
use super::validate_id;
use crate::ApiError;

/// Longest organisation, project and key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

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

pub(super) fn check_name(name: &str, what: &str) -> Result<String, ApiError> {
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

pub(super) fn not_member() -> ApiError {
    ApiError::NotFound("no such organisation, or you are not a member".into())
}

impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
    pub(crate) async fn org_members(&self, org: &str) -> Result<Vec<Stored<OrgMember>>, ApiError> {
        Ok(typed(
            self.store
                .prefix(&format!("orgmember:{org}:"), None, 10_000)
                .await?,
        ))
    }

    /// The caller's membership of `org`, required to be at least `min`; 404 for non-members.
    pub(super) async fn org_role(
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
}

/// A role's (or action's) name as clients write it.
pub(crate) fn role_name<R: serde::Serialize>(role: R) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
