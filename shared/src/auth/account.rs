//! Accounts: registration with an emailed code, sign-in with access and refresh tokens, password
//! changes and resets, export and deletion.
//!
//! Answers never tell whether an address has an account: registration and reset always answer the same,
//! and a failed sign-in says only that the address or password is wrong, after the same password work.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::password;
use super::records::{
    Code, CodePurpose, EmailClaim, Key, OrgMember, OrgRole, ProjectMember, Session, User, code_id,
    email_id, session_id, user_id,
};
use super::secret::{SecretKind, digest, new_code, new_id, new_secret, secret_id};
use super::service::{ACCOUNT_FREE_FAILURES, Auth, CLIENT_FREE_FAILURES, CODE_ATTEMPTS, CODE_TTL};
use super::store::{
    DocumentStore, Knowledge, Mail, Mailer, StoreError, Stored, load, remove, save, typed,
};
use super::token::{Claims, ISSUER, TokenError};
use crate::ApiError;

/// The longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// What a successful sign-in or refresh returns.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub user: UserView,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
}

/// The fixed answer to registration and reset requests.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub status: &'static str,
    pub message: &'static str,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeConfirmation {
    pub email: String,
    pub code: String,
    /// The new password, for resets.
    pub new_password: Option<String>,
}

/// Lowercases and checks an email address's shape (one `@`, a dotted domain, no spaces or controls).
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let shaped = email.len() <= MAX_EMAIL_BYTES
        && email.split('@').count() == 2
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if shaped {
        Ok(email)
    } else {
        Err(ApiError::BadRequest(
            "`email` is not an email address".into(),
        ))
    }
}

fn invalid_code() -> ApiError {
    ApiError::BadRequest("the code is wrong or has expired; request a new one".into())
}

fn wrong_credentials() -> ApiError {
    ApiError::Unauthenticated("the email address or password is wrong".into())
}

/// A stored hash to verify against when the account does not exist, so that the answer takes as long.
const DECOY_HASH: &str = "argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
    fn salt(&self) -> [u8; password::SALT_BYTES] {
        let mut salt = [0u8; password::SALT_BYTES];
        self.entropy.fill(&mut salt);
        salt
    }

    fn accepted() -> Accepted {
        Accepted {
            status: "accepted",
            message: "if the address can receive mail, a message is on its way",
        }
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<Stored<User>>, ApiError> {
        let Some(claim) = load::<EmailClaim>(self.store, &email_id(email)).await? else {
            return Ok(None);
        };
        Ok(load::<User>(self.store, &user_id(&claim.record.user)).await?)
    }

    /// Registers an address, or on a repeat registration of an unverified one, replaces its password and
    /// sends a new code. Answers the same whether or not the address already had an account.
    pub async fn register(&self, body: Credentials) -> Result<Accepted, ApiError> {
        let email = normalize_email(&body.email)?;
        password::check_policy(&body.password)?;
        self.count_attempt(
            &format!("throttle:attempts:{}", self.client),
            self.config.login_per_minute,
        )
        .await?;
        let hash = password::hash(&body.password, &self.salt());
        let now = self.now();
        // The claim is written first: of two registrations racing, exactly one creates it.
        let fresh = Stored::new(
            email_id(&email),
            EmailClaim {
                user: new_id(self.entropy),
            },
        );
        let claim = match self.store.put(&fresh.to_doc()).await {
            Ok(_) => fresh,
            Err(StoreError::Conflict) => load::<EmailClaim>(self.store, &email_id(&email))
                .await?
                .ok_or_else(|| {
                ApiError::Conflict("registration raced a deletion; retry".into())
            })?,
            Err(error) => return Err(error.into()),
        };
        let user = claim.record.user;
        match load::<User>(self.store, &user_id(&user)).await? {
            Some(existing) if existing.record.verified => {
                self.deliver(Mail {
                    to: email,
                    subject: "Someone tried to register with your address".into(),
                    text: "Your address already has an edgerag account. If this was you, sign in, or reset your password if you forgot it. If not, you can ignore this message.".into(),
                })
                .await?;
            }
            existing => {
                let mut stored = existing.unwrap_or_else(|| {
                    Stored::new(
                        user_id(&user),
                        User {
                            email: email.clone(),
                            password: String::new(),
                            verified: false,
                            created: now,
                        },
                    )
                });
                stored.record.password = hash;
                match save(self.store, &mut stored).await {
                    // Another registration of the same address got there first; its code is on its way.
                    Err(StoreError::Conflict) => return Ok(Self::accepted()),
                    other => other?,
                }
                self.send_code(&user, &email, CodePurpose::Verify).await?;
            }
        }
        Ok(Self::accepted())
    }

    async fn send_code(
        &self,
        user: &str,
        email: &str,
        purpose: CodePurpose,
    ) -> Result<(), ApiError> {
        let code = new_code(self.entropy);
        let id = code_id(purpose, user);
        let mut stored = load::<Code>(self.store, &id).await?.unwrap_or_else(|| {
            Stored::new(
                id.clone(),
                Code {
                    user: user.into(),
                    purpose,
                    hash: String::new(),
                    expires: 0,
                    attempts: 0,
                },
            )
        });
        stored.record.hash = digest(&format!("{user}:{code}"));
        stored.record.expires = self.now() + CODE_TTL;
        stored.record.attempts = 0;
        match save(self.store, &mut stored).await {
            // A registration racing this one issued a code at the same moment; that one is on its way.
            Err(StoreError::Conflict) => return Ok(()),
            other => other?,
        }
        let (subject, what) = match purpose {
            CodePurpose::Verify => ("Your edgerag verification code", "confirm your address"),
            CodePurpose::Reset => ("Your edgerag password reset code", "choose a new password"),
        };
        self.deliver(Mail {
            to: email.into(),
            subject: subject.into(),
            text: format!(
                "Your code is {code}. Use it within {} minutes to {what}.",
                CODE_TTL / 60
            ),
        })
        .await
    }

    /// Checks and spends a one-time code; every failure looks the same to the caller.
    async fn spend_code(
        &self,
        email: &str,
        code: &str,
        purpose: CodePurpose,
    ) -> Result<Stored<User>, ApiError> {
        let user = self.user_by_email(email).await?.ok_or_else(invalid_code)?;
        let user_key = user.key().to_string();
        let Some(mut stored) = load::<Code>(self.store, &code_id(purpose, &user_key)).await? else {
            return Err(invalid_code());
        };
        if stored.record.expires <= self.now() || stored.record.attempts >= CODE_ATTEMPTS {
            remove(self.store, &stored).await?;
            return Err(invalid_code());
        }
        let presented = digest(&format!("{user_key}:{}", code.trim()));
        if !password::constant_time_eq(presented.as_bytes(), stored.record.hash.as_bytes()) {
            stored.record.attempts += 1;
            save(self.store, &mut stored).await?;
            return Err(invalid_code());
        }
        // Deleting at the read revision makes the code single-use even under concurrent tries.
        remove(self.store, &stored).await.map_err(|e| match e {
            // Another request spent the code first.
            StoreError::Conflict => invalid_code(),
            other => other.into(),
        })?;
        Ok(user)
    }

    /// Confirms an address with the emailed code.
    pub async fn verify_email(&self, body: CodeConfirmation) -> Result<Value, ApiError> {
        let email = normalize_email(&body.email)?;
        let mut user = self
            .spend_code(&email, &body.code, CodePurpose::Verify)
            .await?;
        user.record.verified = true;
        save(self.store, &mut user).await?;
        Ok(json!({"status": "verified", "email": email}))
    }

    /// Signs in: an access token and a refresh token. Backs off per account and per client address
    /// after repeated failures; counts every attempt against the per-client rate limit.
    pub async fn login(&self, body: Credentials) -> Result<Tokens, ApiError> {
        let email = normalize_email(&body.email)?;
        let client_throttle = format!("throttle:client:{}", self.client);
        // Keyed by the address's hash, so the throttle works the same whether or not an account exists.
        let account_throttle = format!("throttle:account:{}", digest(&email));
        self.count_attempt(
            &format!("throttle:attempts:{}", self.client),
            self.config.login_per_minute,
        )
        .await?;
        self.check_backoff(&client_throttle, CLIENT_FREE_FAILURES)
            .await?;
        self.check_backoff(&account_throttle, ACCOUNT_FREE_FAILURES)
            .await?;
        let user = self.user_by_email(&email).await?;
        let stored_hash = user
            .as_ref()
            .map_or(DECOY_HASH, |u| u.record.password.as_str());
        let matches = password::verify(&body.password, stored_hash) && user.is_some();
        if !matches {
            self.record_failure(&client_throttle).await?;
            self.record_failure(&account_throttle).await?;
            match &user {
                Some(user) => {
                    let uid = user.key();
                    self.audit_user_event(uid, "login_failed").await?;
                }
                None => {
                    let hashed = digest(&email);
                    self.audit("anonymous", None, None, "login_failed", Some(&hashed))
                        .await?;
                }
            }
            return Err(wrong_credentials());
        }
        let Some(mut user) = user else {
            return Err(wrong_credentials());
        };
        if !user.record.verified {
            return Err(ApiError::Forbidden(
                "confirm your email address first: use the code we sent, or register again for a new one".into(),
            ));
        }
        self.clear_failures(&account_throttle).await?;
        if password::needs_rehash(&user.record.password) {
            user.record.password = password::hash(&body.password, &self.salt());
            save(self.store, &mut user).await?;
        }
        let uid = user.key().to_string();
        let tokens = self.start_session(&uid, &user.record.email).await?;
        self.audit_user_event(&uid, "login").await?;
        Ok(tokens)
    }

    /// Records an event about a user in their own log and in each of their organisations' logs.
    pub(crate) async fn audit_user_event(&self, user: &str, action: &str) -> Result<(), ApiError> {
        self.audit(
            &format!("user.{user}"),
            None,
            Some(user),
            action,
            Some(user),
        )
        .await?;
        for member in self.memberships(user).await? {
            let org = &member.record.org;
            self.audit(org, Some(org), Some(user), action, Some(user))
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn memberships(&self, user: &str) -> Result<Vec<Stored<OrgMember>>, ApiError> {
        let docs = self
            .store
            .find(json!({"type": "orgmember", "user": user}), 1000)
            .await?;
        Ok(typed(docs))
    }

    async fn start_session(&self, user: &str, email: &str) -> Result<Tokens, ApiError> {
        let sid = new_id(self.entropy);
        let refresh = new_secret(self.entropy, SecretKind::RefreshToken, &sid);
        let now = self.now();
        let mut session = Stored::new(
            session_id(&sid),
            Session {
                user: user.into(),
                refresh: digest(&refresh),
                previous: None,
                created: now,
                expires: now + self.config.session_ttl,
                revoked: None,
                client: self.client.clone(),
            },
        );
        save(self.store, &mut session).await?;
        Ok(self.tokens(user, email, &sid, refresh, session.record.expires))
    }

    fn tokens(
        &self,
        user: &str,
        email: &str,
        sid: &str,
        refresh: String,
        session_expires: u64,
    ) -> Tokens {
        let now = self.now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user.into(),
            sid: sid.into(),
            iat: now,
            exp: now + self.config.access_ttl,
        };
        Tokens {
            access_token: self.config.signing.sign(&claims),
            token_type: "Bearer",
            expires_in: self.config.access_ttl,
            refresh_token: refresh,
            refresh_expires_in: session_expires.saturating_sub(now),
            user: UserView {
                id: user.into(),
                email: email.into(),
            },
        }
    }

    /// Trades a refresh token for a new pair. Each refresh token works once; presenting a used one
    /// again means it was copied, so the whole sign-in is revoked.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ApiError> {
        let invalid = || ApiError::Unauthenticated("the refresh token is not valid".into());
        let sid = secret_id(refresh_token.trim(), SecretKind::RefreshToken).ok_or_else(invalid)?;
        let mut session = load::<Session>(self.store, &session_id(sid))
            .await?
            .ok_or_else(invalid)?;
        let now = self.now();
        if session.record.revoked.is_some() || session.record.expires <= now {
            return Err(invalid());
        }
        let presented = digest(refresh_token.trim());
        if session.record.previous.as_deref() == Some(presented.as_str()) {
            session.record.revoked = Some(now);
            save(self.store, &mut session).await?;
            let user = session.record.user.clone();
            self.audit(
                &format!("user.{user}"),
                None,
                Some(&user),
                "refresh_token_reused",
                Some(sid),
            )
            .await?;
            return Err(invalid());
        }
        if !password::constant_time_eq(presented.as_bytes(), session.record.refresh.as_bytes()) {
            return Err(invalid());
        }
        let user = load::<User>(self.store, &user_id(&session.record.user))
            .await?
            .ok_or_else(invalid)?;
        let next = new_secret(self.entropy, SecretKind::RefreshToken, sid);
        session.record.previous = Some(presented);
        session.record.refresh = digest(&next);
        // Two refreshes racing with the same token: one rotates, the other conflicts and is refused.
        save(self.store, &mut session).await.map_err(|e| match e {
            StoreError::Conflict => invalid(),
            other => other.into(),
        })?;
        Ok(self.tokens(
            &session.record.user,
            &user.record.email,
            sid,
            next,
            session.record.expires,
        ))
    }

    /// Verifies an access token's signature and lifetime, without touching the store.
    pub fn verify_access_token(&self, token: &str) -> Result<Claims, ApiError> {
        self.config
            .signing
            .verify(token, self.now())
            .map_err(|e| match e {
                TokenError::Expired => {
                    ApiError::Unauthenticated("the access token has expired".into())
                }
                _ => ApiError::Unauthenticated("the access token is not valid".into()),
            })
    }

    /// A verified access token whose sign-in is still live (not signed out, not revoked).
    pub async fn signed_in(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = self.verify_access_token(token)?;
        let session = load::<Session>(self.store, &session_id(&claims.sid)).await?;
        match session {
            Some(s) if s.record.revoked.is_none() && s.record.user == claims.sub => Ok(claims),
            _ => Err(ApiError::Unauthenticated(
                "the sign-in has ended; sign in again".into(),
            )),
        }
    }

    /// Signs out: revokes the token's sign-in and its refresh token.
    pub async fn logout(&self, claims: &Claims) -> Result<Value, ApiError> {
        if let Some(mut session) = load::<Session>(self.store, &session_id(&claims.sid)).await?
            && session.record.revoked.is_none()
        {
            session.record.revoked = Some(self.now());
            save(self.store, &mut session).await?;
        }
        Ok(json!({"status": "signed_out"}))
    }

    async fn revoke_sessions(&self, user: &str) -> Result<(), ApiError> {
        let now = self.now();
        let docs = self
            .store
            .find(json!({"type": "session", "user": user}), 10_000)
            .await?;
        for mut session in typed::<Session>(docs) {
            if session.record.revoked.is_none() {
                session.record.revoked = Some(now);
                save(self.store, &mut session).await?;
            }
        }
        Ok(())
    }

    async fn current_user(&self, claims: &Claims) -> Result<Stored<User>, ApiError> {
        load::<User>(self.store, &user_id(&claims.sub))
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("the account no longer exists".into()))
    }

    /// Changes the password after checking the current one; every sign-in ends, and the caller gets a new one.
    pub async fn change_password(
        &self,
        claims: &Claims,
        current: &str,
        new: &str,
    ) -> Result<Tokens, ApiError> {
        password::check_policy(new)?;
        let mut user = self.current_user(claims).await?;
        if !password::verify(current, &user.record.password) {
            return Err(ApiError::Forbidden("the current password is wrong".into()));
        }
        user.record.password = password::hash(new, &self.salt());
        save(self.store, &mut user).await?;
        self.revoke_sessions(&claims.sub).await?;
        self.audit_user_event(&claims.sub, "password_changed")
            .await?;
        self.start_session(&claims.sub, &user.record.email).await
    }

    /// Sends a reset code if the address has a verified account; answers the same either way.
    pub async fn request_reset(&self, email: &str) -> Result<Accepted, ApiError> {
        let email = normalize_email(email)?;
        self.count_attempt(
            &format!("throttle:attempts:{}", self.client),
            self.config.login_per_minute,
        )
        .await?;
        if let Some(user) = self.user_by_email(&email).await?
            && user.record.verified
        {
            let uid = user.key().to_string();
            self.send_code(&uid, &email, CodePurpose::Reset).await?;
        }
        Ok(Self::accepted())
    }

    /// Sets a new password with a reset code; every sign-in ends.
    pub async fn confirm_reset(&self, body: CodeConfirmation) -> Result<Value, ApiError> {
        let email = normalize_email(&body.email)?;
        let new = body
            .new_password
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("`new_password` is required".into()))?;
        password::check_policy(new)?;
        let mut user = self
            .spend_code(&email, &body.code, CodePurpose::Reset)
            .await?;
        user.record.password = password::hash(new, &self.salt());
        save(self.store, &mut user).await?;
        let uid = user.key().to_string();
        self.revoke_sessions(&uid).await?;
        self.audit_user_event(&uid, "password_reset").await?;
        Ok(json!({"status": "password_changed"}))
    }

    /// The signed-in user and their organisations.
    pub async fn me(&self, claims: &Claims) -> Result<Value, ApiError> {
        let user = self.current_user(claims).await?;
        let orgs: Vec<Value> = self
            .memberships(&claims.sub)
            .await?
            .into_iter()
            .map(|m| json!({"id": m.record.org, "role": m.record.role}))
            .collect();
        Ok(json!({
            "id": claims.sub,
            "email": user.record.email,
            "verified": user.record.verified,
            "created": user.record.created,
            "organisations": orgs,
        }))
    }

    /// Everything stored about the user, as JSON (GDPR access and portability). Hashes are left out.
    pub async fn export(&self, claims: &Claims) -> Result<Value, ApiError> {
        let user = self.current_user(claims).await?;
        let uid = &claims.sub;
        let sessions: Vec<Value> = typed::<Session>(self.store.find(json!({"type": "session", "user": uid}), 10_000).await?)
            .into_iter()
            .map(|s| json!({"id": s.key(), "created": s.record.created, "expires": s.record.expires, "revoked": s.record.revoked, "client": s.record.client}))
            .collect();
        let orgs: Vec<Value> = self
            .memberships(uid)
            .await?
            .into_iter()
            .map(|m| json!({"organisation": m.record.org, "role": m.record.role, "added": m.record.added}))
            .collect();
        let projects: Vec<Value> = typed::<ProjectMember>(self.store.find(json!({"type": "projmember", "user": uid}), 10_000).await?)
            .into_iter()
            .map(|m| json!({"project": m.record.project, "organisation": m.record.org, "role": m.record.role}))
            .collect();
        let keys: Vec<Value> = typed::<Key>(self.store.find(json!({"type": "key", "created_by": uid}), 10_000).await?)
            .into_iter()
            .map(|k| json!({"id": k.key(), "kind": k.record.kind, "project": k.record.project, "name": k.record.name, "created": k.record.created, "revoked": k.record.revoked}))
            .collect();
        let audit: Vec<Value> = self
            .store
            .prefix(&format!("audit:user.{uid}:"), None, 10_000)
            .await?
            .into_iter()
            .map(|mut doc| {
                if let Value::Object(map) = &mut doc {
                    map.retain(|k, _| !k.starts_with('_') && k != "type");
                }
                doc
            })
            .collect();
        Ok(json!({
            "user": {"id": uid, "email": user.record.email, "verified": user.record.verified, "created": user.record.created},
            "sessions": sessions,
            "organisations": orgs,
            "projects": projects,
            "keys_created": keys,
            "sign_in_history": audit,
        }))
    }

    /// Deletes the account after checking the password: its sign-ins, codes, memberships, and every
    /// organisation it alone owns (with their projects, keys and the projects' knowledge in the other
    /// stores) are removed; its entries in other organisations' audit logs are anonymised.
    pub async fn delete_account(
        &self,
        claims: &Claims,
        password_given: &str,
    ) -> Result<Value, ApiError> {
        let user = self.current_user(claims).await?;
        if !password::verify(password_given, &user.record.password) {
            return Err(ApiError::Forbidden("the password is wrong".into()));
        }
        let uid = claims.sub.clone();
        for member in self.memberships(&uid).await? {
            let org = member.record.org.clone();
            let owners = self
                .org_members(&org)
                .await?
                .into_iter()
                .filter(|m| m.record.role == OrgRole::Owner)
                .count();
            if member.record.role == OrgRole::Owner && owners == 1 {
                self.purge_org(&org).await?;
            } else {
                remove(self.store, &member).await?;
                self.audit(
                    &org,
                    Some(&org),
                    Some("deleted-user"),
                    "member_removed",
                    Some("deleted-user"),
                )
                .await?;
            }
        }
        for doc in self
            .store
            .find(json!({"type": "projmember", "user": &uid}), 10_000)
            .await?
        {
            delete_doc(self.store, &doc).await?;
        }
        for doc in self
            .store
            .find(json!({"type": "session", "user": &uid}), 10_000)
            .await?
        {
            delete_doc(self.store, &doc).await?;
        }
        for purpose in [CodePurpose::Verify, CodePurpose::Reset] {
            if let Some(code) = load::<Code>(self.store, &code_id(purpose, &uid)).await? {
                remove(self.store, &code).await?;
            }
        }
        for doc in self
            .store
            .prefix(&format!("audit:user.{uid}:"), None, 100_000)
            .await?
        {
            delete_doc(self.store, &doc).await?;
        }
        for mut doc in self
            .store
            .find(json!({"type": "audit", "actor": &uid}), 100_000)
            .await?
        {
            anonymise(&mut doc, &uid);
            self.store.put(&doc).await?;
        }
        for mut doc in self
            .store
            .find(json!({"type": "audit", "target": &uid}), 100_000)
            .await?
        {
            anonymise(&mut doc, &uid);
            self.store.put(&doc).await?;
        }
        if let Some(claim) = load::<EmailClaim>(self.store, &email_id(&user.record.email)).await? {
            remove(self.store, &claim).await?;
        }
        remove(self.store, &user).await?;
        Ok(json!({"status": "deleted"}))
    }
}

/// Replaces a deleted user's id in an audit entry.
fn anonymise(doc: &mut Value, user: &str) {
    for field in ["actor", "target"] {
        if doc.get(field).and_then(Value::as_str) == Some(user) {
            doc[field] = Value::String("deleted-user".into());
        }
    }
}

/// Deletes a raw document at the revision it was read at.
pub(crate) async fn delete_doc(store: &impl DocumentStore, doc: &Value) -> Result<(), StoreError> {
    match (
        doc.get("_id").and_then(Value::as_str),
        doc.get("_rev").and_then(Value::as_str),
    ) {
        (Some(id), Some(rev)) => match store.delete(id, rev).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(error) => Err(error),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@example.",
            "a@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn the_decoy_hash_parses_so_unknown_addresses_cost_a_full_hash() {
        // verify() returns false for malformed records before hashing; the decoy must be well formed.
        assert!(!password::needs_rehash(DECOY_HASH));
        assert!(!password::verify("anything at all", DECOY_HASH));
    }
}
