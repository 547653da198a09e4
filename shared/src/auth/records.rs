//! What auth keeps in the document store, one record type per kind of document.
//!
//! Document ids carry the keys records are found by (`orgmember:<org>:<user>`), so most reads are one
//! lookup by id or one id-prefix range and need no index. Each record has a `type` field for `_find`.

use serde::{Deserialize, Serialize};

use super::Action;

/// A user's role in an organisation. Owners and admins act as owners of every project in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

/// A user's role in a project. Ordered: an owner can do what an editor can, an editor what a viewer can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

/// The role a project action needs from a signed-in user.
pub fn role_needed(action: Action) -> Role {
    match action {
        Action::Search | Action::Respond => Role::Viewer,
        Action::Ingest => Role::Editor,
        Action::Admin => Role::Owner,
    }
}

pub fn user_id(user: &str) -> String {
    format!("user:{user}")
}
pub fn email_id(email: &str) -> String {
    format!("email:{email}")
}
pub fn code_id(purpose: CodePurpose, user: &str) -> String {
    format!("code:{}:{user}", purpose.name())
}
pub fn session_id(session: &str) -> String {
    format!("session:{session}")
}
pub fn org_id(org: &str) -> String {
    format!("org:{org}")
}
pub fn org_member_id(org: &str, user: &str) -> String {
    format!("orgmember:{org}:{user}")
}
pub fn project_id(project: &str) -> String {
    format!("project:{project}")
}
pub fn project_member_id(project: &str, user: &str) -> String {
    format!("projmember:{project}:{user}")
}
pub fn key_id(key: &str) -> String {
    format!("key:{key}")
}
/// How many counter documents a key's usage is spread over, so that concurrent requests with one
/// key rarely write the same document.
pub const USAGE_SHARDS: usize = 8;

pub fn usage_id(key: &str, shard: usize) -> String {
    format!("usage:{key}:{shard}")
}

/// Every usage shard of a key.
pub fn usage_ids(key: &str) -> Vec<String> {
    (0..USAGE_SHARDS)
        .map(|shard| usage_id(key, shard))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "user")]
pub struct User {
    pub email: String,
    /// Argon2id, see `password`.
    pub password: String,
    pub verified: bool,
    pub created: u64,
}

/// Claims an email address for one user: created first and only once, so two registrations of the same
/// address race on this document and exactly one wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "email")]
pub struct EmailClaim {
    pub user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodePurpose {
    Verify,
    Reset,
}

impl CodePurpose {
    pub fn name(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Reset => "reset",
        }
    }
}

/// A one-time code sent by mail, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "code")]
pub struct Code {
    pub user: String,
    pub purpose: CodePurpose,
    pub hash: String,
    pub expires: u64,
    pub attempts: u32,
}

/// A sign-in: its refresh token (hashed; rotated on every use) and whether it was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "session")]
pub struct Session {
    pub user: String,
    pub refresh: String,
    /// The refresh token this one replaced: seeing it again means a copy was stolen.
    pub previous: Option<String>,
    pub created: u64,
    pub expires: u64,
    pub revoked: Option<u64>,
    pub client: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "org")]
pub struct Org {
    pub name: String,
    pub created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "orgmember")]
pub struct OrgMember {
    pub org: String,
    pub user: String,
    pub role: OrgRole,
    pub added: u64,
}

/// How a project answers and retrieves; `PATCH` replaces the fields it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    pub system_prompt: String,
    /// The chat model; `None` uses the deployment's default.
    pub model: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
    /// How many chunks retrieval returns.
    pub top_k: u32,
    pub retrieval: RetrievalMode,
    /// Hits scoring below this are dropped.
    pub score_threshold: Option<f32>,
    /// How hybrid search fuses its signals (projects made before it have the default).
    #[serde(default)]
    pub fusion: crate::search::Fusion,
    /// What the bot says, without calling the model, when no passage is close enough to the question.
    #[serde(default = "default_fallback")]
    pub fallback: String,
    /// The least semantic similarity (cosine) of the best passage for the bot to answer at all.
    #[serde(default = "default_answer_threshold")]
    pub answer_threshold: f32,
    /// The least similarity of a stored Q&A pair's question for its answer to be given verbatim.
    #[serde(default = "default_qa_threshold")]
    pub qa_threshold: f32,
    /// Days a conversation is kept after its last message; `None` keeps conversations.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// The chat model's context window, prompt and answer, in tokens.
    #[serde(default = "default_context_tokens")]
    pub context_tokens: u32,
    /// Messages one widget visitor may send per minute (the widget key's own limit applies as well).
    #[serde(default = "default_visitor_per_minute")]
    pub visitor_per_minute: u32,
}

fn default_visitor_per_minute() -> u32 {
    20
}

fn default_fallback() -> String {
    "I could not find an answer to that in this knowledge base.".into()
}
/// Chosen by measurement: see BENCHMARKS.md, "Answer threshold".
fn default_answer_threshold() -> f32 {
    0.35
}
fn default_qa_threshold() -> f32 {
    0.85
}
/// The embedded chat model's window.
fn default_context_tokens() -> u32 {
    2048
}

impl Default for ProjectSettings {
    fn default() -> Self {
        Self {
            system_prompt: "Answer from the provided context. If the context does not contain the answer, say so.".into(),
            model: None,
            temperature: 0.2,
            max_tokens: 512,
            top_k: 5,
            retrieval: RetrievalMode::Hybrid,
            score_threshold: None,
            fusion: crate::search::Fusion::default(),
            fallback: default_fallback(),
            answer_threshold: default_answer_threshold(),
            qa_threshold: default_qa_threshold(),
            retention_days: None,
            context_tokens: default_context_tokens(),
            visitor_per_minute: default_visitor_per_minute(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    Semantic,
    Keyword,
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "project")]
pub struct Project {
    pub org: String,
    pub name: String,
    pub settings: ProjectSettings,
    pub created: u64,
    pub updated: u64,
    /// When it went to the trash; purged 30 days later.
    pub deleted: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "projmember")]
pub struct ProjectMember {
    pub project: String,
    pub org: String,
    pub user: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Api,
    Widget,
}

/// An API key or widget key; only the hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "key")]
pub struct Key {
    pub kind: KeyKind,
    pub project: String,
    pub org: String,
    pub name: String,
    pub actions: Vec<Action>,
    /// Browser origins a widget key may be used from.
    pub origins: Vec<String>,
    pub hash: String,
    pub created: u64,
    pub created_by: String,
    pub expires: Option<u64>,
    pub revoked: Option<u64>,
}

/// One shard of a key's request count in the current minute, and when it was last used: small documents
/// written on each use, kept apart from the key so that counting never races with revocation. The
/// count is the sum over the shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "usage")]
pub struct Usage {
    pub window: u64,
    pub count: u32,
    pub last_used: u64,
}

/// Failed sign-ins (for back-off) and attempts in the current minute (for the rate limit), per account
/// or per client address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename = "throttle")]
pub struct Throttle {
    pub failures: u32,
    pub last_failure: u64,
    pub window: u64,
    pub count: u32,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "audit")]
pub struct AuditEvent {
    /// Milliseconds since the epoch.
    pub at: u64,
    pub org: Option<String>,
    /// The user or key that acted; `deleted-user` once its account is deleted.
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub client: Option<String>,
}

/// Mail kept for an operator because no mail endpoint is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "outbox")]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub created: u64,
}
