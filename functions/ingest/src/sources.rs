//! Sources kept in sync: a website crawled within its host, one URL, or the pages a sitemap lists.
//!
//! A sync is a job (see `jobs`): its steps are chained requests of ingest to itself. The first step
//! reads robots.txt and the sitemaps and seeds the queue; each further step fetches the next pages
//! (several at once, conditionally, with the validators of the last sync), indexes those whose
//! extracted text changed (one batch of embeddings for all of them), and queues the links it found;
//! the last step removes the documents of pages that are gone or no longer linked or listed. The
//! summary says what was added, updated, unchanged, removed and failed.
//!
//! Records, in ingest's database: `source:{project}:{id}` (the configuration and the last sync),
//! `page:{project}:{source}:{key}` (per page: its document, validators, text hash and links).

use std::collections::HashSet;

use futures::StreamExt;

use serde_json::{Map, Value, json};
use shared::ApiError;
use shared::ingest::crawl::{self, Robots, Scope};
use shared::ingest::document::{self, ContentType, Kind, content_hash, validate_tags};
use url::Url;

use crate::documents::{Documents, now_ms};
use crate::fetch::{self, Fetched, Policy, Validators};
use crate::input::NewDocument;

/// Pages fetched and indexed by one step, so a step stays well inside the request time limit and its
/// embeddings fill the embedder's batches (32 texts, 4 in flight).
const STEP_PAGES: usize = 32;
/// Fetches in flight to the site at once.
const FETCHES_IN_FLIGHT: usize = 8;
/// The time a step may spend waiting out a robots.txt `Crawl-delay`.
const DELAY_BUDGET_SECONDS: f32 = 10.0;
/// Per-page errors a job keeps (the count is exact; the list is the first ones).
const MAX_ERRORS: usize = 200;
/// Sitemaps read by one sync (an index and the sitemaps it lists).
const MAX_SITEMAPS: usize = 20;
const DEFAULT_MAX_PAGES: u64 = 100;
const CAP_MAX_PAGES: u64 = 5_000;
const DEFAULT_MAX_DEPTH: u64 = 3;
const CAP_MAX_DEPTH: u64 = 20;
pub const PAGE_ACCEPT: &str =
    "text/html,application/xhtml+xml,text/markdown,text/plain,application/pdf;q=0.9,*/*;q=0.1";
const SITEMAP_ACCEPT: &str = "application/xml,text/xml,text/plain;q=0.9,*/*;q=0.1";
/// Sources of at most this many pages are removed within the request; larger ones by a job.
const INLINE_REMOVAL_PAGES: usize = 64;
/// Pages one round of a removal takes (a removal job's step is one round).
const REMOVAL_PAGES: usize = 64;
/// Documents removed at once.
const REMOVALS_IN_FLIGHT: usize = 8;

fn source_id(project: &str, id: &str) -> String {
    format!("source:{project}:{id}")
}

/// A scheduled sync's entry in the schedule: ids sort by the time it is due, so `sync-due` reads
/// only the entries that are due.
fn due_id(at: u64, project: &str, source: &str) -> String {
    format!("{DUE_PREFIX}{at:015}:{project}:{source}")
}

const DUE_PREFIX: &str = "due:";
/// Written once the schedule holds every source's entry (stores from before it had none).
const SCHEDULE_MARKER: &str = "schedule:v1";

fn page_prefix(project: &str, source: &str) -> String {
    format!("page:{project}:{source}:")
}

fn url_key(url: &str) -> String {
    content_hash(url.as_bytes())[..32].to_string()
}

fn page_id(project: &str, source: &str, url: &str) -> String {
    format!("{}{}", page_prefix(project, source), url_key(url))
}

/// A page's document id: the source's id and a hash of the URL, so a re-sync finds it again.
fn page_document(source: &str, url: &str) -> String {
    format!("{source}-{}", &url_key(url)[..24])
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("src{hex}")
}

/// The strings of a JSON list (nothing when it is not one).
pub fn texts(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn whole(body: &Value, name: &str, default: u64, cap: u64) -> Result<u64, ApiError> {
    match &body[name] {
        Value::Null => Ok(default),
        value => value
            .as_u64()
            .filter(|n| (1..=cap).contains(n))
            .ok_or_else(|| bad(format!("`{name}` is a whole number from 1 to {cap}"))),
    }
}

fn strings(body: &Value, name: &str) -> Result<Vec<String>, ApiError> {
    match &body[name] {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) if items.len() <= 50 => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("`{name}` is a list of strings")))
            })
            .collect(),
        _ => Err(bad(format!("`{name}` is a list of at most 50 strings"))),
    }
}

/// A source's configuration, checked: what `POST .../sources` stores.
pub fn parse(body: &Value, policy: &Policy) -> Result<Value, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| bad("a source is a JSON object"))?;
    const KNOWN: &[&str] = &[
        "id",
        "kind",
        "url",
        "max_pages",
        "max_depth",
        "include",
        "exclude",
        "subdomains",
        "sync_every",
        "tags",
    ];
    let kind = body["kind"].as_str().unwrap_or_default();
    if kind == "github" {
        return parse_github(body, policy);
    }
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("unknown field `{unknown}`")));
    }
    if !matches!(kind, "website" | "url" | "sitemap") {
        return Err(bad(
            "`kind` is website (a crawl), url (one page or file), sitemap (the pages it lists) or github (a repository's files)",
        ));
    }
    let text = body["url"]
        .as_str()
        .ok_or_else(|| bad("`url` is required: where the source starts"))?;
    if text.len() > 2048 {
        return Err(bad("`url` is longer than 2048 characters"));
    }
    let url = policy.check(text).map_err(bad)?;
    let url = crawl::normalize(&url);
    let include = strings(body, "include")?;
    let exclude = strings(body, "exclude")?;
    let subdomains = match &body["subdomains"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(bad("`subdomains` is true or false")),
    };
    Scope::new(&url, subdomains, &include, &exclude).map_err(bad)?;
    let sync_every = match &body["sync_every"] {
        Value::Null => None,
        Value::String(s) => Some((s.clone(), crawl::sync_interval(s).map_err(bad)?)),
        _ => return Err(bad("`sync_every` is a duration such as \"6h\"")),
    };
    let tags = validate_tags(&strings(body, "tags")?)?;
    let id = source_id_of(body)?;
    Ok(json!({
        "id": id,
        "kind": kind,
        "url": url.as_str(),
        "max_pages": if kind == "url" { 1 } else { whole(body, "max_pages", DEFAULT_MAX_PAGES, CAP_MAX_PAGES)? },
        "max_depth": whole(body, "max_depth", DEFAULT_MAX_DEPTH, CAP_MAX_DEPTH)?,
        "include": include,
        "exclude": exclude,
        "subdomains": subdomains,
        "sync_every": sync_every.as_ref().map(|(text, _)| text.clone()),
        "sync_every_s": sync_every.map(|(_, s)| s),
        "tags": tags,
    }))
}

fn source_id_of(body: &Value) -> Result<String, ApiError> {
    match &body["id"] {
        Value::Null => Ok(new_id()),
        Value::String(id) if id.len() <= 64 => {
            document::validate_id(id)?;
            Ok(id.clone())
        }
        _ => Err(bad("`id` is a string of at most 64 URL-safe characters")),
    }
}

/// A `github` source: `repo` (owner/name), `branch` (default main), `paths` (globs from the
/// repository's root; default: the formats ingest reads), read through `github_api_url`.
fn parse_github(body: &Value, policy: &Policy) -> Result<Value, ApiError> {
    const KNOWN: &[&str] = &[
        "id",
        "kind",
        "repo",
        "branch",
        "paths",
        "max_pages",
        "sync_every",
        "tags",
    ];
    let object = body
        .as_object()
        .ok_or_else(|| bad("a source is a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("unknown field `{unknown}`")));
    }
    let name_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && part != "."
            && part != ".."
    };
    let repo = body["repo"]
        .as_str()
        .filter(|r| {
            r.split_once('/')
                .is_some_and(|(o, n)| name_ok(o) && name_ok(n))
        })
        .ok_or_else(|| bad("`repo` is owner/name, e.g. acme/docs"))?;
    let branch = match &body["branch"] {
        Value::Null => "main".to_string(),
        Value::String(b)
            if !b.is_empty()
                && b.len() <= 200
                && !b.contains("..")
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c)) =>
        {
            b.clone()
        }
        _ => return Err(bad("`branch` is a branch name")),
    };
    let mut paths = strings(body, "paths")?;
    if paths.is_empty() {
        paths = crawl::DEFAULT_FILE_GLOBS
            .iter()
            .map(|g| g.to_string())
            .collect();
    }
    crawl::Files::new(&paths).map_err(bad)?;
    let url = format!("{}/repos/{repo}", policy.github_api);
    policy.check(&url).map_err(bad)?;
    let sync_every = match &body["sync_every"] {
        Value::Null => None,
        Value::String(s) => Some((s.clone(), crawl::sync_interval(s).map_err(bad)?)),
        _ => return Err(bad("`sync_every` is a duration such as \"6h\"")),
    };
    Ok(json!({
        "id": source_id_of(body)?,
        "kind": "github",
        "repo": repo,
        "branch": branch,
        "paths": paths,
        "url": url,
        "max_pages": whole(body, "max_pages", CAP_MAX_PAGES, CAP_MAX_PAGES)?,
        "max_depth": 0,
        "include": [],
        "exclude": [],
        "subdomains": false,
        "sync_every": sync_every.as_ref().map(|(text, _)| text.clone()),
        "sync_every_s": sync_every.map(|(_, s)| s),
        "tags": validate_tags(&strings(body, "tags")?)?,
    }))
}

/// Where a repository file is read from (the contents API) and what citations link to.
fn github_file(policy: &Policy, spec: &Value, path: &str) -> (String, String) {
    let repo = spec["repo"].as_str().unwrap_or_default();
    let branch = spec["branch"].as_str().unwrap_or("main");
    let encoded: Vec<String> = path.split('/').map(guest::outbound::encode).collect();
    let api = format!(
        "{}/repos/{repo}/contents/{}?ref={}",
        policy.github_api,
        encoded.join("/"),
        guest::outbound::encode(branch)
    );
    let web = if policy.github_api == "https://api.github.com" {
        "https://github.com".to_string()
    } else {
        policy.github_api.trim_end_matches("/api/v3").to_string()
    };
    (api, format!("{web}/{repo}/blob/{branch}/{path}"))
}

/// The first step of a repository sync: the branch's tree, the files the globs take, queued with
/// their blob ids (a file whose blob id is the one indexed is unchanged, and not fetched).
async fn start_github(policy: &Policy, job: &mut Value) -> Result<(), ApiError> {
    let spec = job["spec"].clone();
    let repo = spec["repo"].as_str().unwrap_or_default();
    let branch = spec["branch"].as_str().unwrap_or("main");
    let tree = format!(
        "{}/repos/{repo}/git/trees/{}?recursive=1",
        policy.github_api,
        guest::outbound::encode(branch)
    );
    let url = Url::parse(&tree).map_err(|e| ApiError::Internal(e.to_string()))?;
    let headers = policy.github_headers("application/vnd.github+json");
    let body = match fetch::fetch(policy, &url, &headers, &Validators::default()).await {
        Ok(Fetched::Page { body, .. }) => body,
        Ok(Fetched::Gone(status)) => {
            return Err(ApiError::Unprocessable(format!(
                "GitHub answered {status} for {repo} at {branch}: no such repository or branch (or the token may not read it)"
            )));
        }
        Ok(Fetched::NotModified) => return Err(ApiError::Internal("unexpected 304".into())),
        Err(error) => return Err(ApiError::Unavailable(format!("GitHub: {error}"))),
    };
    let tree: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Unavailable(format!("GitHub's tree is not JSON: {e}")))?;
    if tree["truncated"] == true {
        // Files the listing left out must not be taken for deleted.
        job["partial"] = json!(true);
        page_error(
            job,
            url.as_str(),
            "GitHub truncated the tree; files it left out are kept, not removed",
        );
    }
    let files = crawl::Files::new(&texts(&spec["paths"])).map_err(ApiError::Internal)?;
    let mut seen = Seen::of(job);
    let mut blobs = serde_json::Map::new();
    for entry in tree["tree"].as_array().cloned().unwrap_or_default() {
        let (Some(path), Some(sha)) = (entry["path"].as_str(), entry["sha"].as_str()) else {
            continue;
        };
        if entry["type"] != "blob"
            || !files.contains(path)
            || ContentType::from_file_name(path).is_none()
        {
            continue;
        }
        let (api, web) = github_file(policy, &spec, path);
        let Ok(api_url) = Url::parse(&api) else {
            continue;
        };
        seen.enqueue(job, &api_url, 0);
        blobs.insert(
            api_url.as_str().to_string(),
            json!({"sha": sha, "path": path, "web": web}),
        );
    }
    job["blobs"] = Value::Object(blobs);
    job["phase"] = json!("crawl");
    Ok(())
}

/// What clients see of a source record.
fn public(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(obj) = record.as_object_mut() {
        for private in ["_id", "_rev", "type"] {
            obj.remove(private);
        }
    }
    record
}

fn public_page(page: &Value) -> Value {
    json!({
        "url": page["url"],
        "document": page["document"],
        "status": page["status"],
        "error": page["error"],
        "fetched_at": page["fetched_at"],
        "changed_at": page["changed_at"],
    })
}

/// One project's sources.
pub struct Sources<'a, 'b> {
    pub documents: &'a Documents<'b>,
}

impl Sources<'_, '_> {
    fn couch(&self) -> &guest::couch::Couch {
        &self.documents.stores.couch
    }

    fn project(&self) -> &str {
        self.documents.project
    }

    async fn load(&self, id: &str) -> Result<Value, ApiError> {
        self.couch()
            .get(&source_id(self.project(), id))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no source {id} in this project")))
    }

    /// Stores a new source and starts its first sync.
    pub async fn create(&self, body: &Value) -> Result<Value, ApiError> {
        let policy = Policy::load().await;
        let mut record = parse(body, &policy)?;
        let id = record["id"].as_str().unwrap_or_default().to_string();
        let now = now_ms();
        record["_id"] = json!(source_id(self.project(), &id));
        record["type"] = json!("source");
        record["project"] = json!(self.project());
        record["created_at"] = json!(now);
        record["pages"] = json!(0);
        record["last_sync"] = Value::Null;
        record["syncing"] = Value::Null;
        record["next_sync_at"] = Value::Null;
        if self
            .couch()
            .get(record["_id"].as_str().unwrap_or_default())
            .await?
            .is_some()
        {
            return Err(ApiError::Conflict(format!("source {id} exists")));
        }
        record["_rev"] = json!(self.couch().put(&record).await?);
        match self.sync(&id).await {
            Ok(job) => {
                let record = self.load(&id).await?;
                Ok(json!({"source": public(&record), "job": job}))
            }
            Err(error) => {
                // A source is kept only with its first sync started: creating it again is the retry.
                if let Ok(Some(record)) = self.couch().get(&source_id(self.project(), &id)).await {
                    let _ = self.couch().bulk(vec![tombstone(&record)]).await;
                }
                Err(error)
            }
        }
    }

    pub async fn list(&self) -> Result<Value, ApiError> {
        let rows = self
            .couch()
            .prefix(&format!("source:{}:", self.project()), None, 1000, true)
            .await?;
        let sources: Vec<Value> = rows.iter().map(|r| public(&r["doc"])).collect();
        Ok(json!({"sources": sources}))
    }

    /// A source with its pages (up to `limit`, after the page key `after`).
    pub async fn get(
        &self,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Value, ApiError> {
        let record = self.load(id).await?;
        let rows = self
            .couch()
            .prefix(&page_prefix(self.project(), id), after, limit + 1, true)
            .await?;
        let more = rows.len() > limit;
        let pages: Vec<Value> = rows
            .iter()
            .take(limit)
            .map(|r| public_page(&r["doc"]))
            .collect();
        let next = more
            .then(|| rows.get(limit - 1).and_then(|r| r["id"].as_str()))
            .flatten();
        let mut out = public(&record);
        out["page_list"] = json!(pages);
        out["next"] = json!(next);
        Ok(out)
    }

    /// Removes the source, its pages and every document it made: a small source within the request
    /// (200), a large one by a job (202). The source is marked first, so a sync that is running
    /// stops at its next step and no new one starts.
    pub async fn delete(&self, id: &str) -> Result<(u16, Value), ApiError> {
        let mut record = self.load(id).await?;
        let jobs = crate::jobs::Jobs {
            documents: self.documents,
        };
        if let Some(job) = record["deleting"].as_str() {
            match jobs.get(job).await {
                Ok(job) if job["status"] == "running" => {
                    return Ok((202, json!({"deleted": id, "job": job})));
                }
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let pages = self
            .couch()
            .prefix(
                &page_prefix(self.project(), id),
                None,
                INLINE_REMOVAL_PAGES + 1,
                false,
            )
            .await?;
        reschedule(self.couch(), &record, None).await?;
        record["next_sync_at"] = Value::Null;
        if pages.len() > INLINE_REMOVAL_PAGES {
            let job = crate::jobs::removal_id(id);
            record["deleting"] = json!(job);
            self.couch().put(&record).await?;
            let job = jobs.start_removal(&job, id).await?;
            return Ok((202, json!({"deleted": id, "job": job})));
        }
        record["deleting"] = json!(true);
        record["_rev"] = json!(self.couch().put(&record).await?);
        let removed = remove_all_pages(self.documents, id).await?;
        self.couch().bulk(vec![tombstone(&record)]).await?;
        // A sync step that wrote pages before it saw the mark: its pages are found by this pass.
        let late = remove_all_pages(self.documents, id).await?;
        Ok((
            200,
            json!({"deleted": id, "documents_removed": removed + late}),
        ))
    }

    /// Starts a sync of source `id` (202); a sync already running is a conflict.
    pub async fn sync(&self, id: &str) -> Result<Value, ApiError> {
        let mut record = self.load(id).await?;
        if !record["deleting"].is_null() {
            return Err(ApiError::Conflict(format!("source {id} is being deleted")));
        }
        if let Some(job) = record["syncing"].as_str()
            && let Ok(running) = (crate::jobs::Jobs {
                documents: self.documents,
            })
            .get(job)
            .await
            && running["status"] == "running"
        {
            return Err(ApiError::Conflict(format!(
                "source {id} is being synced by job {job}"
            )));
        }
        let job = crate::jobs::Jobs {
            documents: self.documents,
        }
        .start_sync(&record)
        .await?;
        record["syncing"] = job["id"].clone();
        let next = record["sync_every_s"]
            .as_u64()
            .map(|every| now_ms() + every * 1000);
        reschedule(self.couch(), &record, next).await?;
        record["next_sync_at"] = json!(next);
        self.couch().put(&record).await?;
        Ok(job)
    }
}

/// Moves a source's entry in the schedule from its record's `next_sync_at` to `next`.
async fn reschedule(
    couch: &guest::couch::Couch,
    record: &Value,
    next: Option<u64>,
) -> Result<(), ApiError> {
    let (project, source) = (
        record["project"].as_str().unwrap_or_default(),
        record["id"].as_str().unwrap_or_default(),
    );
    let from = record["next_sync_at"].as_u64();
    let mut writes = Vec::new();
    if let Some(at) = from.filter(|at| Some(*at) != next)
        && let Some(entry) = couch.get(&due_id(at, project, source)).await?
    {
        writes.push(tombstone(&entry));
    }
    if let Some(at) = next.filter(|at| Some(*at) != from) {
        writes.push(json!({"_id": due_id(at, project, source), "type": "due"}));
    }
    couch.bulk(writes).await?;
    Ok(())
}

/// Removes the schedule's entries of every source of `project` (before its records go).
pub async fn unschedule_project(
    couch: &guest::couch::Couch,
    project: &str,
) -> Result<(), ApiError> {
    let rows = couch
        .prefix(&format!("source:{project}:"), None, 100_000, true)
        .await?;
    for row in &rows {
        reschedule(couch, &row["doc"], None).await?;
    }
    Ok(())
}

/// A source the schedule says is due: its project and id, and the entry that said so.
pub struct Due {
    pub project: String,
    pub source: String,
    entry: String,
}

/// The sources due at `now`, across projects, for the operator's `sync-due`: read from the
/// schedule in time order, so only the entries that are due (and one more) are read.
pub async fn due(couch: &guest::couch::Couch, now: u64) -> Result<Vec<Due>, ApiError> {
    index_schedules_once(couch).await?;
    let mut due = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = couch
            .prefix(DUE_PREFIX, after.as_deref(), 500, false)
            .await?;
        for row in &rows {
            let id = row["id"].as_str().unwrap_or_default();
            let mut parts = id[DUE_PREFIX.len()..].splitn(3, ':');
            let (Some(at), Some(project), Some(source)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if at.parse::<u64>().map_or(true, |at| at > now) {
                return Ok(due);
            }
            due.push(Due {
                project: project.to_string(),
                source: source.to_string(),
                entry: id.to_string(),
            });
        }
        if rows.len() < 500 {
            return Ok(due);
        }
        after = rows
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_string);
    }
}

/// After `sync-due` acted on an entry: it goes unless it is still the source's next time (a sync
/// that could not start leaves the source due).
pub async fn settle_due(couch: &guest::couch::Couch, due: &Due) -> Result<(), ApiError> {
    let record = couch.get(&source_id(&due.project, &due.source)).await?;
    let still_next = record.is_some_and(|r| {
        r["next_sync_at"]
            .as_u64()
            .is_some_and(|at| due_id(at, &due.project, &due.source) == due.entry)
    });
    if !still_next && let Some(entry) = couch.get(&due.entry).await? {
        couch.bulk(vec![tombstone(&entry)]).await?;
    }
    Ok(())
}

/// Stores made before the schedule existed: every scheduled source gets its entry, once.
async fn index_schedules_once(couch: &guest::couch::Couch) -> Result<(), ApiError> {
    if couch.get(SCHEDULE_MARKER).await?.is_some() {
        return Ok(());
    }
    let mut after: Option<String> = None;
    loop {
        let rows = couch.prefix("source:", after.as_deref(), 500, true).await?;
        let entries: Vec<Value> = rows
            .iter()
            .filter(|r| r["doc"]["deleting"].is_null())
            .filter_map(|r| {
                let doc = &r["doc"];
                Some(json!({
                    "_id": due_id(doc["next_sync_at"].as_u64()?, doc["project"].as_str()?, doc["id"].as_str()?),
                    "type": "due",
                }))
            })
            .collect();
        let ids: Vec<String> = entries
            .iter()
            .filter_map(|e| e["_id"].as_str().map(str::to_string))
            .collect();
        let present = couch.get_many(&ids).await?;
        let missing: Vec<Value> = entries
            .into_iter()
            .zip(present)
            .filter(|(_, present)| present.is_none())
            .map(|(entry, _)| entry)
            .collect();
        couch.bulk(missing).await?;
        if rows.len() < 500 {
            break;
        }
        after = rows
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_string);
    }
    match couch
        .put(&json!({"_id": SCHEDULE_MARKER, "type": "marker"}))
        .await
    {
        Ok(_) | Err(ApiError::Conflict(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

fn count(job: &mut Value, field: &str) {
    let n = job["summary"][field].as_u64().unwrap_or(0) + 1;
    job["summary"][field] = json!(n);
}

fn page_error(job: &mut Value, url: &str, error: &str) {
    count(job, "failed");
    if let Some(errors) = job["page_errors"].as_array_mut()
        && errors.len() < MAX_ERRORS
    {
        errors.push(json!({"url": url, "error": error}));
    }
}

/// A page this sync could not index: counted, listed in the job's errors, and said in its record.
fn fail(job: &mut Value, record: &mut Value, url: &str, error: &str) {
    page_error(job, url, error);
    record["status"] = json!("failed");
    record["error"] = json!(error);
}

/// Deletes `document` if it exists; whether it did.
async fn remove_document(documents: &Documents<'_>, document: &str) -> Result<bool, ApiError> {
    match documents.delete(document).await {
        Ok(_) => Ok(true),
        Err(ApiError::NotFound(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

fn tombstone(record: &Value) -> Value {
    json!({"_id": record["_id"], "_rev": record["_rev"], "_deleted": true})
}

/// Removes up to `limit` of the source's pages and their documents: how many pages it found and
/// how many documents it removed.
async fn remove_pages(
    documents: &Documents<'_>,
    source: &str,
    limit: usize,
) -> Result<(usize, usize), ApiError> {
    let couch = &documents.stores.couch;
    let rows = couch
        .prefix(&page_prefix(documents.project, source), None, limit, true)
        .await?;
    let removals = rows
        .iter()
        .filter_map(|row| row["doc"]["document"].as_str())
        .map(|document| remove_document(documents, document));
    let results: Vec<Result<bool, ApiError>> = futures::stream::iter(removals)
        .buffered(REMOVALS_IN_FLIGHT)
        .collect()
        .await;
    let mut removed = 0;
    for result in results {
        removed += usize::from(result?);
    }
    couch
        .bulk(rows.iter().map(|row| tombstone(&row["doc"])).collect())
        .await?;
    Ok((rows.len(), removed))
}

/// Removes every page of the source and their documents; how many documents it removed.
async fn remove_all_pages(documents: &Documents<'_>, source: &str) -> Result<usize, ApiError> {
    let mut removed = 0;
    loop {
        let (pages, documents_removed) = remove_pages(documents, source, REMOVAL_PAGES).await?;
        removed += documents_removed;
        if pages < REMOVAL_PAGES {
            return Ok(removed);
        }
    }
}

/// One step of a removal job: a round of pages, and the source record once none is left.
pub async fn advance_removal(documents: &Documents<'_>, job: &mut Value) -> Result<(), ApiError> {
    let source = job["source"].as_str().unwrap_or_default().to_string();
    let (pages, removed) = remove_pages(documents, &source, REMOVAL_PAGES).await?;
    for (key, add) in [("items_done", pages), ("documents_removed", removed)] {
        job[key] = json!(job[key].as_u64().unwrap_or(0) as usize + add);
    }
    if pages == REMOVAL_PAGES {
        return Ok(());
    }
    let couch = &documents.stores.couch;
    if let Some(record) = couch.get(&source_id(documents.project, &source)).await? {
        couch.bulk(vec![tombstone(&record)]).await?;
    }
    // A sync step that wrote pages before it saw the mark: its pages are found by this pass.
    let late = remove_all_pages(documents, &source).await?;
    job["documents_removed"] =
        json!(job["documents_removed"].as_u64().unwrap_or(0) as usize + late);
    job["status"] = json!("done");
    job["finished_at"] = json!(now_ms());
    Ok(())
}

/// Whether the source still exists and is not being deleted.
async fn still_wanted(documents: &Documents<'_>, source: &str) -> Result<bool, ApiError> {
    Ok(documents
        .stores
        .couch
        .get(&source_id(documents.project, source))
        .await?
        .is_some_and(|record| record["deleting"].is_null()))
}

/// The URLs a sync has queued so far (each is visited once).
struct Seen(HashSet<String>);

impl Seen {
    fn of(job: &Value) -> Self {
        Self(texts(&job["seen"]).into_iter().collect())
    }

    /// Queues `url` at `depth` unless it was seen or the source's page budget is spent.
    fn enqueue(&mut self, job: &mut Value, url: &Url, depth: u64) {
        let max_pages = job["spec"]["max_pages"]
            .as_u64()
            .unwrap_or(DEFAULT_MAX_PAGES) as usize;
        if self.0.len() >= max_pages || !self.0.insert(url.as_str().to_string()) {
            return;
        }
        if let Some(seen) = job["seen"].as_array_mut() {
            seen.push(json!(url.as_str()));
        }
        if let Some(queue) = job["queue"].as_array_mut() {
            queue.push(json!([url.as_str(), depth]));
        }
    }
}

/// One fetched page, judged.
struct Outcome {
    url: String,
    record: Value,
    /// The document to write and the text already extracted from it.
    write: Option<(NewDocument, shared::ingest::extract::Extracted)>,
}

/// The next piece of a sync job's work.
pub async fn advance(documents: &Documents<'_>, job: &mut Value) -> Result<(), ApiError> {
    let source = job["source"].as_str().unwrap_or_default().to_string();
    if !still_wanted(documents, &source).await? {
        job["status"] = json!("cancelled");
        job["cancelled"] = json!("the source was deleted");
        job["finished_at"] = json!(now_ms());
        return Ok(());
    }
    let policy = Policy::load().await;
    match job["phase"].as_str().unwrap_or("start") {
        "start" => start(&policy, job).await,
        "crawl" => crawl_step(documents, &policy, job).await,
        _ => sweep(documents, job).await,
    }
}

async fn text_of(policy: &Policy, url: &Url, accept: &str) -> Result<Option<Vec<u8>>, String> {
    match fetch::fetch(
        policy,
        url,
        &[("accept", accept.to_string())],
        &Validators::default(),
    )
    .await?
    {
        Fetched::Page { body, .. } => Ok(Some(body.to_vec())),
        Fetched::NotModified | Fetched::Gone(_) => Ok(None),
    }
}

/// Reads a sitemap (and the sitemaps an index lists) into the queue.
async fn read_sitemaps(policy: &Policy, job: &mut Value, first: Vec<Url>, scope: Option<&Scope>) {
    let mut seen = Seen::of(job);
    let mut pending = first;
    let mut read = 0;
    while let Some(url) = pending.pop() {
        if read >= MAX_SITEMAPS {
            break;
        }
        read += 1;
        let body = match text_of(policy, &url, SITEMAP_ACCEPT).await {
            Ok(Some(body)) => body,
            Ok(None) => continue,
            Err(error) => {
                page_error(job, url.as_str(), &format!("sitemap: {error}"));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&body);
        match crawl::sitemap(&text) {
            Ok(found) => {
                pending.extend(found.sitemaps);
                for page in found.pages {
                    if scope.is_none_or(|s| s.contains(&page)) {
                        seen.enqueue(job, &page, 0);
                    }
                }
            }
            Err(error) => page_error(job, url.as_str(), &format!("sitemap: {error}")),
        }
    }
}

/// The first step: robots.txt and sitemaps read, the queue seeded.
async fn start(policy: &Policy, job: &mut Value) -> Result<(), ApiError> {
    if job["spec"]["kind"] == "github" {
        return start_github(policy, job).await;
    }
    let spec = job["spec"].clone();
    let url = Url::parse(spec["url"].as_str().unwrap_or_default())
        .map_err(|e| ApiError::Internal(format!("source url: {e}")))?;
    match spec["kind"].as_str().unwrap_or_default() {
        "website" => {
            let robots_url = url
                .join("/robots.txt")
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let robots = match text_of(policy, &robots_url, "text/plain").await {
                Ok(Some(body)) => String::from_utf8_lossy(&body).into_owned(),
                Ok(None) => String::new(),
                Err(error) => {
                    page_error(job, robots_url.as_str(), &format!("robots.txt: {error}"));
                    String::new()
                }
            };
            let parsed = Robots::parse(robots.as_bytes());
            let mut sitemaps = parsed.sitemaps();
            if sitemaps.is_empty()
                && let Ok(default) = url.join("/sitemap.xml")
            {
                sitemaps.push(default);
            }
            job["robots"] = json!(robots);
            Seen::of(job).enqueue(job, &url, 0);
            let scope = scope_of(&spec)?;
            read_sitemaps(policy, job, sitemaps, Some(&scope)).await;
            // A sitemap's 404 is not the site's failure.
            if let Some(errors) = job["page_errors"].as_array_mut() {
                errors.retain(|e| {
                    !e["error"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("sitemap: HTTP 404")
                });
            }
        }
        "sitemap" => read_sitemaps(policy, job, vec![url], None).await,
        _ => Seen::of(job).enqueue(job, &url, 0),
    }
    job["phase"] = json!("crawl");
    Ok(())
}

fn scope_of(spec: &Value) -> Result<Scope, ApiError> {
    let url = Url::parse(spec["url"].as_str().unwrap_or_default())
        .map_err(|e| ApiError::Internal(format!("source url: {e}")))?;
    Scope::new(
        &url,
        spec["subdomains"].as_bool().unwrap_or(false),
        &texts(&spec["include"]),
        &texts(&spec["exclude"]),
    )
    .map_err(ApiError::Internal)
}

/// A page as the queue had it: where, how deep, and its record from the last sync.
struct Queued<'a> {
    source: &'a str,
    project: &'a str,
    url: &'a Url,
    depth: u64,
    previous: Option<Value>,
    /// For a repository file: its path, blob id and web address.
    file: Option<Value>,
}

/// Judges one fetch: what to write, and the page record to keep; the links to follow go to
/// `followed`.
fn judge(
    job: &mut Value,
    queued: Queued<'_>,
    fetched: Result<Fetched, String>,
    followed: &mut Vec<(Url, u64)>,
) -> Outcome {
    let Queued {
        source,
        project,
        url,
        depth,
        previous,
        file,
    } = queued;
    let spec = job["spec"].clone();
    let sync = job["id"].clone();
    let key = url.as_str().to_string();
    let mut record = previous.clone().unwrap_or_else(|| {
        json!({
            "_id": page_id(project, source, &key),
            "type": "page",
            "url": key,
            "document": page_document(source, &key),
        })
    });
    record["seen"] = sync;
    record["fetched_at"] = json!(now_ms());
    let website = spec["kind"] == "website";
    let follow_links = |links: &[String], followed: &mut Vec<(Url, u64)>| {
        if website && depth < spec["max_depth"].as_u64().unwrap_or(DEFAULT_MAX_DEPTH) {
            followed.extend(
                links
                    .iter()
                    .filter_map(|l| Url::parse(l).ok())
                    .map(|u| (u, depth + 1)),
            );
        }
    };
    let stored_links = |record: &Value| texts(&record["links"]);
    match fetched {
        Err(error) => {
            fail(job, &mut record, &key, &error);
            // Links of the last good fetch keep the pages under it from being taken for gone.
            follow_links(&stored_links(&record), followed);
            Outcome {
                url: key,
                record,
                write: None,
            }
        }
        Ok(Fetched::Gone(status)) => {
            // Not marked seen: the sweep removes its document.
            record["seen"] = Value::Null;
            record["status"] = json!("gone");
            record["error"] = json!(format!("HTTP {status}"));
            Outcome {
                url: key,
                record,
                write: None,
            }
        }
        Ok(Fetched::NotModified) => {
            count(job, "unchanged");
            record["status"] = json!("indexed");
            record["error"] = Value::Null;
            follow_links(&stored_links(&record), followed);
            Outcome {
                url: key,
                record,
                write: None,
            }
        }
        Ok(Fetched::Page {
            url: final_url,
            content_type,
            body,
            etag,
            last_modified,
        }) => {
            let named = file
                .as_ref()
                .and_then(|f| f["path"].as_str())
                .and_then(ContentType::from_file_name);
            let format = match named.map_or_else(|| ContentType::parse(&content_type), Ok) {
                Ok(format) => format,
                Err(_) => {
                    let media = content_type
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    let error =
                        format!("content type `{media}` is not read (HTML, Markdown, text or PDF)");
                    fail(job, &mut record, &key, &error);
                    return Outcome {
                        url: key,
                        record,
                        write: None,
                    };
                }
            };
            let charset = shared::ingest::text::charset(&content_type).map(str::to_string);
            record["etag"] = json!(etag);
            record["last_modified"] = json!(last_modified);
            let mut links = Vec::new();
            let mut noindex = false;
            // A crawl indexes a page under one URL: where its redirects end, or what it names as
            // canonical. Another URL for it is followed there, not indexed twice.
            let mut elsewhere = (website && crawl::normalize(&final_url) != *url)
                .then(|| crawl::normalize(&final_url));
            if format == ContentType::Html
                && let Ok(text) = shared::ingest::text::decode(&body, charset.as_deref())
            {
                let page = crawl::links(&text, &final_url);
                noindex = page.noindex;
                if !page.nofollow {
                    links = page.links.iter().map(|u| u.as_str().to_string()).collect();
                }
                if website && let Some(canonical) = page.canonical.filter(|c| c != url) {
                    elsewhere = Some(canonical);
                }
            }
            follow_links(&links, followed);
            record["links"] = json!(links);
            if let Some(target) = elsewhere {
                record["seen"] = Value::Null;
                record["status"] = json!("duplicate");
                record["error"] = json!(format!("indexed as {target}"));
                followed.push((target, depth));
                return Outcome {
                    url: key,
                    record,
                    write: None,
                };
            }
            if noindex {
                record["seen"] = Value::Null;
                record["status"] = json!("skipped");
                record["error"] = json!("the page asks not to be indexed (noindex)");
                return Outcome {
                    url: key,
                    record,
                    write: None,
                };
            }
            let extracted = match document::extract(format, &body, charset.as_deref()) {
                Ok(extracted) => extracted,
                Err(error) => {
                    let error = error.to_string();
                    fail(job, &mut record, &key, &error);
                    return Outcome {
                        url: key,
                        record,
                        write: None,
                    };
                }
            };
            let text_hash = content_hash(extracted.text.as_bytes());
            if previous.is_some()
                && record["text_hash"] == json!(text_hash)
                && record["status"] == "indexed"
            {
                count(job, "unchanged");
                record["error"] = Value::Null;
                return Outcome {
                    url: key,
                    record,
                    write: None,
                };
            }
            record["text_hash"] = json!(text_hash);
            if let Some(file) = &file {
                record["sha"] = file["sha"].clone();
            }
            let mut metadata = Map::new();
            metadata.insert("source".into(), json!(source));
            let tags: Vec<String> = texts(&spec["tags"]);
            let write = NewDocument {
                id: record["document"].as_str().map(str::to_string),
                title: None,
                content_type: format,
                charset,
                bytes: body.to_vec(),
                tags,
                metadata,
                source_uri: Some(
                    file.as_ref()
                        .and_then(|f| f["web"].as_str())
                        .unwrap_or(&key)
                        .to_string(),
                ),
                kind: Kind::Document,
                answer: None,
            };
            Outcome {
                url: key,
                record,
                write: Some((write, extracted)),
            }
        }
    }
}

/// Fetches the next pages, indexes the changed ones in one batch, queues their links.
async fn crawl_step(
    documents: &Documents<'_>,
    policy: &Policy,
    job: &mut Value,
) -> Result<(), ApiError> {
    let project = documents.project.to_string();
    let source = job["source"].as_str().unwrap_or_default().to_string();
    let spec = job["spec"].clone();
    let scope = scope_of(&spec)?;
    let robots = Robots::parse(job["robots"].as_str().unwrap_or_default().as_bytes());
    let cursor = job["cursor"].as_u64().unwrap_or(0) as usize;
    // A site's Crawl-delay is honoured: one fetch at a time, that far apart, and fewer pages a step.
    let delay = robots
        .delay()
        .filter(|d| *d > 0.0)
        .map(|d| d.min(DELAY_BUDGET_SECONDS));
    let (per_step, in_flight) = match delay {
        Some(d) => (
            ((DELAY_BUDGET_SECONDS / d) as usize).clamp(1, STEP_PAGES),
            1,
        ),
        None => (STEP_PAGES, FETCHES_IN_FLIGHT),
    };
    let queue: Vec<(String, u64)> = job["queue"]
        .as_array()
        .map(|q| {
            q.iter()
                .skip(cursor)
                .take(per_step)
                .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_u64().unwrap_or(0))))
                .collect()
        })
        .unwrap_or_default();
    if queue.is_empty() {
        job["phase"] = json!("sweep");
        return Ok(());
    }
    let ids: Vec<String> = queue
        .iter()
        .map(|(u, _)| page_id(&project, &source, u))
        .collect();
    let previous = documents.stores.couch.get_many(&ids).await?;
    let github = spec["kind"] == "github";
    let fetches = queue.iter().zip(&previous).map(|((url, _), previous)| {
        // A repository file whose blob id is the one indexed has not changed: no fetch at all.
        let file = &job["blobs"][url.as_str()];
        let same_blob = github
            && previous
                .as_ref()
                .is_some_and(|p| p["status"] == "indexed" && p["sha"] == file["sha"]);
        let headers = if github {
            policy.github_headers("application/vnd.github.raw")
        } else {
            vec![("accept", PAGE_ACCEPT.to_string())]
        };
        let validators = Validators {
            etag: previous
                .as_ref()
                .and_then(|p| p["etag"].as_str().map(str::to_string)),
            last_modified: previous
                .as_ref()
                .and_then(|p| p["last_modified"].as_str().map(str::to_string)),
        };
        // A page that failed last time has no trustworthy validators.
        let validators = if previous.as_ref().is_some_and(|p| p["status"] == "indexed") {
            validators
        } else {
            Validators::default()
        };
        let policy = policy.clone();
        let url = url.clone();
        async move {
            if same_blob {
                return Ok(Fetched::NotModified);
            }
            if let Some(seconds) = delay {
                spin_sdk::time::sleep(std::time::Duration::from_secs_f32(seconds)).await;
            }
            match Url::parse(&url) {
                Ok(parsed) => fetch::fetch(&policy, &parsed, &headers, &validators).await,
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let results: Vec<_> = futures::stream::iter(fetches)
        .buffered(in_flight)
        .collect()
        .await;
    let mut followed = Vec::new();
    let mut outcomes = Vec::new();
    for (((url, depth), previous), result) in queue.iter().zip(previous).zip(results) {
        let parsed = Url::parse(url).map_err(|e| ApiError::Internal(e.to_string()))?;
        let queued = Queued {
            source: &source,
            project: &project,
            url: &parsed,
            depth: *depth,
            previous,
            file: Some(job["blobs"][url.as_str()].clone()).filter(|f| f.is_object()),
        };
        outcomes.push(judge(job, queued, result, &mut followed));
    }
    // Index what changed: small pages in one batch, large ones each on their own (maybe a job).
    let mut batch = Vec::new();
    let mut batch_index = Vec::new();
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        let Some((new, extracted)) = outcome.write.take() else {
            continue;
        };
        match documents.prepare_extracted(&new, extracted) {
            Err(error) => {
                fail(job, &mut outcome.record, &outcome.url, &error.to_string());
                outcome.record["text_hash"] = Value::Null;
            }
            Ok(prepared) if prepared.chunks.len() > documents.stores.inline_chunks => {
                match documents.write(new, crate::documents::Mode::Upsert).await {
                    Ok((status, body)) => {
                        let added = status == 201 || (status == 202 && body["version"] == 1);
                        count(job, if added { "added" } else { "updated" });
                        outcome.record["status"] = json!("indexed");
                        outcome.record["error"] = Value::Null;
                        outcome.record["changed_at"] = json!(now_ms());
                    }
                    Err(error) => {
                        fail(job, &mut outcome.record, &outcome.url, &error.to_string());
                        outcome.record["text_hash"] = Value::Null;
                    }
                }
            }
            Ok(prepared) => {
                batch.push((new, prepared));
                batch_index.push(i);
            }
        }
    }
    // One write (one round of embeddings) per group of pages that fits a batch's chunk cap.
    let mut written = Vec::new();
    let mut group: Vec<(NewDocument, crate::documents::Prepared)> = Vec::new();
    let mut group_chunks = 0;
    let mut pending = batch.into_iter().peekable();
    while let Some((new, prepared)) = pending.next() {
        group_chunks += prepared.chunks.len();
        group.push((new, prepared));
        let next = pending.peek().map_or(0, |(_, p)| p.chunks.len());
        if pending.peek().is_none() || group_chunks + next > documents.stores.batch_chunks {
            let (news, prepared) = std::mem::take(&mut group).into_iter().unzip();
            let (_, answer) = documents
                .write_prepared(news, prepared, crate::documents::Laps::start())
                .await?;
            written.extend(answer["documents"].as_array().cloned().unwrap_or_default());
            group_chunks = 0;
        }
    }
    {
        for (i, outcome) in batch_index.into_iter().zip(written) {
            let status = outcome["status"].as_str().unwrap_or_default();
            count(
                job,
                match status {
                    "created" => "added",
                    "unchanged" => "unchanged",
                    _ => "updated",
                },
            );
            outcomes[i].record["status"] = json!("indexed");
            outcomes[i].record["error"] = Value::Null;
            if status != "unchanged" {
                outcomes[i].record["changed_at"] = json!(now_ms());
            }
        }
    }
    let mut seen = Seen::of(job);
    for (url, depth) in followed {
        if scope.contains(&url) && robots.allowed(&url) {
            seen.enqueue(job, &url, depth);
        }
    }
    let records: Vec<Value> = outcomes.into_iter().map(|o| o.record).collect();
    let written: Vec<String> = records
        .iter()
        .filter_map(|r| r["_id"].as_str().map(str::to_string))
        .collect();
    documents.stores.couch.bulk(records).await?;
    if !still_wanted(documents, &source).await? {
        // Deleted while this step ran: the removal may have passed these pages, so they go here.
        let written = documents.stores.couch.get_many(&written).await?;
        for page in written.iter().flatten() {
            if let Some(document) = page["document"].as_str() {
                remove_document(documents, document).await?;
            }
        }
        let pages: Vec<Value> = written.iter().flatten().map(tombstone).collect();
        documents.stores.couch.bulk(pages).await?;
        job["status"] = json!("cancelled");
        job["cancelled"] = json!("the source was deleted");
        job["finished_at"] = json!(now_ms());
        return Ok(());
    }
    let done = cursor + queue.len();
    job["cursor"] = json!(done);
    job["items_done"] = json!(done);
    job["items_total"] = json!(job["queue"].as_array().map_or(0, Vec::len));
    Ok(())
}

/// The last step: documents of pages not seen in this sync go; the source records the summary.
async fn sweep(documents: &Documents<'_>, job: &mut Value) -> Result<(), ApiError> {
    let project = documents.project;
    let source = job["source"].as_str().unwrap_or_default().to_string();
    let rows = documents
        .stores
        .couch
        .prefix(&page_prefix(project, &source), None, 100_000, true)
        .await?;
    let mut gone = Vec::new();
    let mut kept = 0u64;
    for row in &rows {
        let page = &row["doc"];
        if page["seen"] == job["id"] || job["partial"] == true {
            kept += 1;
            continue;
        }
        if let Some(document) = page["document"].as_str()
            && remove_document(documents, document).await?
        {
            count(job, "removed");
        }
        gone.push(json!({"_id": page["_id"], "_rev": page["_rev"], "_deleted": true}));
    }
    if !gone.is_empty() {
        documents.stores.couch.bulk(gone).await?;
    }
    let id = source_id(project, &source);
    if let Some(mut record) = documents.stores.couch.get(&id).await? {
        record["pages"] = json!(kept);
        record["syncing"] = Value::Null;
        record["last_sync"] = json!({
            "job": job["id"],
            "started_at": job["created_at"],
            "finished_at": now_ms(),
            "summary": job["summary"],
            "errors": job["page_errors"].as_array().map_or(0, Vec::len),
        });
        documents.stores.couch.put(&record).await?;
    }
    job["status"] = json!("done");
    job["finished_at"] = json!(now_ms());
    Ok(())
}

/// After a sync failed for good: the source says so and may be synced again.
pub async fn abandon(documents: &Documents<'_>, job: &Value) {
    let id = source_id(
        documents.project,
        job["source"].as_str().unwrap_or_default(),
    );
    if let Ok(Some(mut record)) = documents.stores.couch.get(&id).await {
        record["syncing"] = Value::Null;
        record["last_sync"] = json!({
            "job": job["id"],
            "started_at": job["created_at"],
            "finished_at": now_ms(),
            "summary": job["summary"],
            "failed": job["errors"].as_array().and_then(|e| e.last()).map(|e| e["error"].clone()),
        });
        let _ = documents.stores.couch.put(&record).await;
    }
}
