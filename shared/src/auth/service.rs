//! The auth service: everything auth decides, over the store, mail and clock ports. The auth function's
//! handlers parse a request, call one method here and answer with its result.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::records::{AuditEvent, OutboxMail, Throttle};
use super::secret::{Entropy, random_string};
use super::store::{Clock, DocumentStore, Knowledge, Mail, Mailer, StoreError, Stored, load, save};
use super::token::SigningKeys;
use crate::ApiError;

/// Settings read once from the function's variables.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub signing: SigningKeys,
    /// Lifetime of an access token, seconds.
    pub access_ttl: u64,
    /// Lifetime of a sign-in (its refresh tokens), seconds.
    pub session_ttl: u64,
    /// Sign-in, registration and reset attempts per client address per minute.
    pub login_per_minute: u32,
    /// Requests per API or widget key per minute.
    pub key_per_minute: u32,
    /// The operator's key for the admin routes; empty turns them off.
    pub operator_key: String,
    /// How long a project stays in the trash before it is purged, seconds.
    pub trash_ttl: u64,
}

impl AuthConfig {
    pub const DEFAULT_ACCESS_TTL: u64 = 15 * 60;
    pub const DEFAULT_SESSION_TTL: u64 = 30 * 24 * 3600;
    pub const DEFAULT_LOGIN_PER_MINUTE: u32 = 30;
    pub const DEFAULT_KEY_PER_MINUTE: u32 = 600;

    pub fn new(signing: SigningKeys) -> Self {
        Self {
            signing,
            access_ttl: Self::DEFAULT_ACCESS_TTL,
            session_ttl: Self::DEFAULT_SESSION_TTL,
            login_per_minute: Self::DEFAULT_LOGIN_PER_MINUTE,
            key_per_minute: Self::DEFAULT_KEY_PER_MINUTE,
            operator_key: String::new(),
            trash_ttl: TRASH_TTL,
        }
    }
}

/// How long one-time codes live, seconds, and how many wrong tries void one.
pub const CODE_TTL: u64 = 15 * 60;
pub const CODE_ATTEMPTS: u32 = 5;
/// How long a project stays in the trash before it is purged by default, seconds.
pub const TRASH_TTL: u64 = 30 * 24 * 3600;
/// Failed sign-ins allowed before back-off starts, per account and per client address.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
pub const CLIENT_FREE_FAILURES: u32 = 20;
/// The first back-off after the free failures, and the longest, seconds.
pub const FIRST_BACKOFF: u64 = 30;
pub const MAX_BACKOFF: u64 = 15 * 60;
/// How often a counter update that lost a race re-reads and tries again. Each round at least one of
/// the racing requests wins, so this many requests arriving at the same instant all get counted; a
/// burst beyond that is refused with 429.
pub const COUNTER_TRIES: usize = 16;

/// The auth logic bound to its ports for one request.
pub struct Auth<'a, S, M, K> {
    pub store: &'a S,
    /// `None`: mail goes to the outbox that operators read.
    pub mailer: Option<&'a M>,
    /// What the other stores hold of a project, removed when auth purges it.
    pub knowledge: &'a K,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
    pub config: &'a AuthConfig,
    /// The caller's address as the host saw it, for throttles and the audit log.
    pub client: String,
}

impl<S, M, K> std::fmt::Debug for Auth<'_, S, M, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("client", &self.client)
            .finish()
    }
}

/// A page of records and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The cursor query of a listing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl<S: DocumentStore, M: Mailer, K: Knowledge> Auth<'_, S, M, K> {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ms() / 1000
    }

    /// Sends mail, or keeps it in the outbox when no mail endpoint is configured.
    pub(crate) async fn deliver(&self, mail: Mail) -> Result<(), ApiError> {
        match self.mailer {
            Some(mailer) => mailer.send(&mail).await.map_err(ApiError::from),
            None => {
                let id = format!(
                    "outbox:{:013}:{}",
                    self.clock.now_ms(),
                    random_string(self.entropy, 6)
                );
                let mut stored = Stored::new(
                    id,
                    OutboxMail {
                        to: mail.to,
                        subject: mail.subject,
                        text: mail.text,
                        created: self.now(),
                    },
                );
                save(self.store, &mut stored).await.map_err(ApiError::from)
            }
        }
    }

    /// Appends an event to the audit log of `scope` (an organisation id, or `user.<id>` for events of a
    /// user outside any organisation). Ids sort by time, so the log reads in order by id prefix.
    pub(crate) async fn audit(
        &self,
        scope: &str,
        org: Option<&str>,
        actor: Option<&str>,
        action: &str,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = self.clock.now_ms();
        let id = format!("audit:{scope}:{now:013}:{}", random_string(self.entropy, 6));
        let mut stored = Stored::new(
            id,
            AuditEvent {
                at: now,
                org: org.map(str::to_string),
                actor: actor.map(str::to_string),
                action: action.to_string(),
                target: target.map(str::to_string),
                client: Some(self.client.clone()),
            },
        );
        save(self.store, &mut stored).await.map_err(ApiError::from)
    }

    /// Appends an event a signed-in user caused to an organisation's log.
    pub(crate) async fn org_event(
        &self,
        org: &str,
        actor: &str,
        action: &str,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        self.audit(org, Some(org), Some(actor), action, target)
            .await
    }

    /// The mail waiting in the outbox (operator only), oldest first, optionally for one address.
    pub async fn outbox(
        &self,
        operator_key: &str,
        to: Option<&str>,
        page: &PageQuery,
    ) -> Result<Page<serde_json::Value>, ApiError> {
        self.check_operator(operator_key)?;
        let limit = page_limit(page);
        let docs = match to {
            Some(to) => {
                self.store
                    .find(
                        json!({"type": "outbox", "to": to.trim().to_lowercase()}),
                        limit,
                    )
                    .await?
            }
            None => {
                self.store
                    .prefix("outbox:", page.after.as_deref(), limit)
                    .await?
            }
        };
        let mut items: Vec<Stored<OutboxMail>> = super::store::typed(docs);
        // Ids carry the time, so id order is the order the mail was written in.
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let next = (items.len() == limit)
            .then(|| items.last().map(|m| m.id.clone()))
            .flatten();
        Ok(Page {
            items: items
                .into_iter()
                .map(|m| json!({"id": m.id, "to": m.record.to, "subject": m.record.subject, "text": m.record.text, "created": m.record.created}))
                .collect(),
            next,
        })
    }

    fn check_operator(&self, presented: &str) -> Result<(), ApiError> {
        let expected = self.config.operator_key.as_bytes();
        if expected.is_empty() {
            return Err(ApiError::NotFound("operator routes are not enabled".into()));
        }
        let presented = presented
            .trim()
            .strip_prefix("Bearer ")
            .unwrap_or_default()
            .trim();
        if super::password::constant_time_eq(presented.as_bytes(), expected) {
            Ok(())
        } else {
            Err(ApiError::Unauthenticated(
                "the operator key is missing or wrong".into(),
            ))
        }
    }

    /// Counts one attempt against a per-minute limit kept in the throttle record `id`: `Err(429)` when the
    /// limit is reached. Concurrent attempts that collide re-read and retry, so none is lost.
    pub(crate) async fn count_attempt(&self, id: &str, limit: u32) -> Result<(), ApiError> {
        let now = self.now();
        let window = now / 60;
        for _ in 0..COUNTER_TRIES {
            let mut stored = load::<Throttle>(self.store, id)
                .await?
                .unwrap_or_else(|| Stored::new(id.to_string(), Throttle::default()));
            if stored.record.window != window {
                stored.record.window = window;
                stored.record.count = 0;
            }
            if stored.record.count >= limit {
                return Err(rate_limited(60 - now % 60));
            }
            stored.record.count += 1;
            match save(self.store, &mut stored).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(rate_limited(1))
    }

    /// `Err(429)` while the throttle record `id` is backing off after `free` failures: `FIRST_BACKOFF`
    /// after the next failure, doubling each time, at most `MAX_BACKOFF`.
    pub(crate) async fn check_backoff(&self, id: &str, free: u32) -> Result<(), ApiError> {
        if let Some(stored) = load::<Throttle>(self.store, id).await? {
            let wait = backoff(stored.record.failures, free);
            let until = stored.record.last_failure + wait;
            let now = self.now();
            if wait > 0 && now < until {
                return Err(rate_limited(until - now));
            }
        }
        Ok(())
    }

    /// Records a failed attempt on the throttle record `id`.
    pub(crate) async fn record_failure(&self, id: &str) -> Result<(), ApiError> {
        for _ in 0..COUNTER_TRIES {
            let mut stored = load::<Throttle>(self.store, id)
                .await?
                .unwrap_or_else(|| Stored::new(id.to_string(), Throttle::default()));
            stored.record.failures = stored.record.failures.saturating_add(1);
            stored.record.last_failure = self.now();
            match save(self.store, &mut stored).await {
                Err(StoreError::Conflict) => continue,
                other => return other.map_err(ApiError::from),
            }
        }
        Ok(())
    }

    /// Forgets failures on `id` after a success.
    pub(crate) async fn clear_failures(&self, id: &str) -> Result<(), ApiError> {
        if let Some(mut stored) = load::<Throttle>(self.store, id).await?
            && stored.record.failures > 0
        {
            stored.record.failures = 0;
            // A concurrent failure winning the race is fine: it is the newer fact.
            match save(self.store, &mut stored).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// Seconds to wait after `failures` failed attempts when `free` are allowed without waiting.
pub fn backoff(failures: u32, free: u32) -> u64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(20);
    (FIRST_BACKOFF << doublings).min(MAX_BACKOFF)
}

pub(crate) fn rate_limited(retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        message: "too many requests; retry later".into(),
        retry_after_secs: retry_after_secs.max(1),
    }
}

pub(crate) fn page_limit(page: &PageQuery) -> usize {
    page.limit.unwrap_or(100).clamp(1, 1000)
}

/// The address part of the host's `spin-client-addr` (`ip:port` or `[v6]:port`).
pub fn client_ip(client_addr: &str) -> String {
    let addr = client_addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.to_string()
        }
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_capped() {
        let got: Vec<u64> = (0..8).map(|f| backoff(f, 5)).collect();
        assert_eq!(got, vec![0, 0, 0, 0, 0, 30, 60, 120]);
        assert_eq!(backoff(40, 5), MAX_BACKOFF);
    }

    #[test]
    fn client_ip_drops_the_port() {
        for (addr, ip) in [
            ("127.0.0.1:5000", "127.0.0.1"),
            ("[::1]:5000", "::1"),
            ("10.0.0.1", "10.0.0.1"),
            ("", ""),
        ] {
            assert_eq!(client_ip(addr), ip, "{addr}");
        }
    }
}
