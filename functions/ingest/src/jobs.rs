//! Jobs: a write too large for one request, done in bounded steps.
//!
//! Each step is a request the component makes to itself through Spin's local service chaining
//! (`http://ingest.spin.internal`), sent after the current request has been answered. A step reads
//! the job's cursor from the document store, cuts the stored original again (deterministically),
//! embeds and writes the next slice of chunks under their fixed ids, moves the cursor, and starts the
//! next step; the last one makes the version live. A step that died is simply run again: by the next
//! `GET` of the job once it has stalled, or by `POST .../jobs/:id/resume`. No threads, no timers.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::ApiError;
use shared::auth::password::constant_time_eq;
use shared::ingest::document::{DocumentRecord, object_key, record_id};

use crate::documents::{Claimed, Documents, Laps, now_ms};
use crate::input::{Meta, NewDocument};

/// The header a step request proves itself with.
pub const TOKEN_HEADER: &str = "x-edgerag-job-token";
/// A job whose cursor has not moved for this long is taken to have lost its step.
const STALL_MS: u64 = 60_000;
/// Failed steps before the job gives up.
const MAX_ATTEMPTS: u32 = 3;

fn job_id(project: &str, id: &str) -> String {
    format!("job:{project}:{id}")
}

fn new_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of a job that removes `source`.
pub fn removal_id(source: &str) -> String {
    format!("remove-{source}-{}", &new_token()[..8])
}

/// What clients see of a job.
fn public(job: &Value) -> Value {
    let mut job = job.clone();
    if let Some(obj) = job.as_object_mut() {
        for private in [
            "_id", "_rev", "type", "token", "meta", "queue", "seen", "robots", "spec", "cursor",
            "phase", "blobs", "partial", "items",
        ] {
            obj.remove(private);
        }
    }
    job
}

pub struct Jobs<'a, 'b> {
    pub documents: &'a Documents<'b>,
}

impl Jobs<'_, '_> {
    fn couch(&self) -> &guest::couch::Couch {
        &self.documents.stores.couch
    }

    fn project(&self) -> &str {
        self.documents.project
    }

    /// Records a new job of `kind` (`fields` besides those every job has) and starts its first step
    /// once this request has been answered.
    async fn launch(&self, id: &str, kind: &str, fields: Value) -> Result<Value, ApiError> {
        let mut job = json!({
            "_id": job_id(self.project(), id),
            "type": "job",
            "id": id,
            "kind": kind,
            "project": self.project(),
            "status": "running",
            "attempts": 0,
            "errors": [],
            "created_at": now_ms(),
            "updated_at": now_ms(),
            "finished_at": null,
            "token": new_token(),
        });
        if let (Some(job), Value::Object(fields)) = (job.as_object_mut(), fields) {
            job.extend(fields);
        }
        job["_rev"] = json!(self.couch().put(&job).await?);
        kick(self.project(), &job);
        Ok(public(&job))
    }

    /// Records a job for `version` of `record` (already `processing`, its bytes stored) and starts
    /// its first step once this request has been answered.
    pub async fn start(
        &self,
        record: &DocumentRecord,
        version: u32,
        new: &NewDocument,
        chunks: usize,
    ) -> Result<Value, ApiError> {
        let id = format!("{}-v{version}-{}", record.id, &new_token()[..8]);
        let mut meta = new.meta();
        meta.id = Some(record.id.clone());
        self.launch(
            &id,
            "ingest",
            json!({
                "document": record.id,
                "version": version,
                "chunks_total": chunks,
                "chunks_done": 0,
                "items_total": 1,
                "items_done": 0,
                "embed_ms": 0.0,
                "store_ms": 0.0,
                "meta": meta,
            }),
        )
        .await
    }

    /// Records a job that indexes claimed documents (each `processing` at its version, its bytes
    /// stored) a group at a time, and starts its first step once this request has been answered.
    pub async fn start_batch(&self, items: Vec<BatchItem>) -> Result<Value, ApiError> {
        let id = format!("batch-{}", &new_token()[..12]);
        let chunks: usize = items.iter().map(|item| item.chunks).sum();
        self.launch(
            &id,
            "batch",
            json!({
                "documents": items.iter().map(|item| &item.document).collect::<Vec<_>>(),
                "chunks_total": chunks,
                "chunks_done": 0,
                "items_total": items.len(),
                "items_done": 0,
                "items_failed": 0,
                "cursor": 0,
                "items": items,
            }),
        )
        .await
    }

    /// Records a sync of `source` (a source record) and starts its first step once this request
    /// has been answered.
    pub async fn start_sync(&self, source: &Value) -> Result<Value, ApiError> {
        let name = source["id"].as_str().unwrap_or_default();
        let id = format!("sync-{name}-{}", &new_token()[..8]);
        let mut spec = source.clone();
        if let Some(obj) = spec.as_object_mut() {
            for private in [
                "_id",
                "_rev",
                "type",
                "last_sync",
                "syncing",
                "next_sync_at",
            ] {
                obj.remove(private);
            }
        }
        self.launch(
            &id,
            "sync",
            json!({
                "source": name,
                "spec": spec,
                "phase": "start",
                "queue": [],
                "seen": [],
                "cursor": 0,
                "summary": {"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "failed": 0},
                "page_errors": [],
                "items_total": 0,
                "items_done": 0,
            }),
        )
        .await
    }

    /// Records the removal `id` (see `removal_id`) of `source`, marked as being deleted, and
    /// starts its first step once this request has been answered.
    pub async fn start_removal(&self, id: &str, source: &str) -> Result<Value, ApiError> {
        self.launch(
            id,
            "removal",
            json!({"source": source, "items_done": 0, "documents_removed": 0}),
        )
        .await
    }

    async fn load(&self, id: &str) -> Result<Value, ApiError> {
        self.couch()
            .get(&job_id(self.project(), id))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no job {id} in this project")))
    }

    /// A job's state; a running job whose step was lost is started again.
    pub async fn get(&self, id: &str) -> Result<Value, ApiError> {
        let job = self.load(id).await?;
        if job["status"] == "running"
            && now_ms() > job["updated_at"].as_u64().unwrap_or(0) + STALL_MS
        {
            kick(self.project(), &job);
        }
        Ok(public(&job))
    }

    /// Starts a running job's next step now.
    pub async fn resume(&self, id: &str) -> Result<Value, ApiError> {
        let job = self.load(id).await?;
        if job["status"] == "running" {
            kick(self.project(), &job);
        }
        Ok(public(&job))
    }

    /// The project's jobs, newest first (at most 100).
    pub async fn list(&self) -> Result<Value, ApiError> {
        let rows = self
            .couch()
            .prefix(&format!("job:{}:", self.project()), None, 1000, true)
            .await?;
        let mut jobs: Vec<Value> = rows.iter().map(|r| public(&r["doc"])).collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j["created_at"].as_u64().unwrap_or(0)));
        jobs.truncate(100);
        Ok(json!({"jobs": jobs}))
    }

    /// One step: the next slice of chunks, or the promotion when none is left.
    pub async fn step(&self, id: &str, token: &str) -> Result<Value, ApiError> {
        let mut job = self.load(id).await?;
        let expected = job["token"].as_str().unwrap_or_default();
        if expected.is_empty() || !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
            return Err(ApiError::Unauthenticated("not this job's step".into()));
        }
        if job["status"] != "running" {
            return Ok(public(&job));
        }
        // Claim the step: a second runner of the same step loses this write and stops.
        job["updated_at"] = json!(now_ms());
        job["_rev"] = json!(self.couch().put(&job).await?);
        let advanced = if job["kind"] == "sync" {
            crate::sources::advance(self.documents, &mut job).await
        } else if job["kind"] == "removal" {
            crate::sources::advance_removal(self.documents, &mut job).await
        } else if job["kind"] == "batch" {
            self.advance_batch(&mut job).await
        } else {
            self.advance(&mut job).await
        };
        match advanced {
            Ok(()) => {}
            Err(error) => {
                let attempts = job["attempts"].as_u64().unwrap_or(0) as u32 + 1;
                job["attempts"] = json!(attempts);
                if let Some(errors) = job["errors"].as_array_mut() {
                    errors.push(json!({"at": now_ms(), "error": error.to_string()}));
                }
                if attempts >= MAX_ATTEMPTS && job["kind"] == "batch" {
                    // One group's failure is its documents' own: they keep their previous version,
                    // the job goes on with the next group.
                    self.skip_group(&mut job, &error).await?;
                } else if attempts >= MAX_ATTEMPTS {
                    job["status"] = json!("failed");
                    job["finished_at"] = json!(now_ms());
                    if job["kind"] == "sync" {
                        crate::sources::abandon(self.documents, &job).await;
                    } else if let Some(mut record) = self.record(&job).await? {
                        let version = job["version"].as_u64().unwrap_or(0) as u32;
                        self.documents.abandon(&mut record, version, &error).await;
                    }
                }
            }
        }
        job["updated_at"] = json!(now_ms());
        job["_rev"] = json!(self.couch().put(&job).await?);
        if job["status"] == "running" {
            kick(self.project(), &job);
        }
        Ok(public(&job))
    }

    async fn record(&self, job: &Value) -> Result<Option<DocumentRecord>, ApiError> {
        self.documents
            .record(job["document"].as_str().unwrap_or_default())
            .await
    }

    async fn advance(&self, job: &mut Value) -> Result<(), ApiError> {
        let documents = self.documents;
        let stores = documents.stores;
        let document = job["document"].as_str().unwrap_or_default().to_string();
        let version = job["version"].as_u64().unwrap_or(0) as u32;
        let meta: Meta = serde_json::from_value(job["meta"].clone())
            .map_err(|e| ApiError::Internal(format!("job {}: {e}", job["id"])))?;
        if self.record(job).await?.is_none() {
            return self.cancel_deleted(job, &document).await;
        }
        let bytes = stores
            .objects
            .get(&object_key(self.project(), &document, version))
            .await?
            .ok_or_else(|| {
                ApiError::Internal(format!("job {}: the stored file is gone", job["id"]))
            })?;
        let new = NewDocument::from_meta(meta.clone(), bytes.to_vec());
        let prepared = documents.prepare(&new)?;
        let total = prepared.chunks.len();
        let step = std::time::Instant::now();
        let budget = std::time::Duration::from_millis(stores.step_ms as u64);
        let mut advanced = false;
        loop {
            let done = job["chunks_done"].as_u64().unwrap_or(0) as usize;
            if done >= total || (advanced && step.elapsed() >= budget) {
                break;
            }
            let end = (done + stores.step_chunks).min(total);
            let (embed_ms, store_ms) = documents
                .stage(
                    &document,
                    version,
                    &prepared.title,
                    &meta,
                    &prepared.chunks[done..end],
                )
                .await?;
            job["chunks_done"] = json!(end);
            job["embed_ms"] = json!(job["embed_ms"].as_f64().unwrap_or(0.0) + embed_ms);
            job["store_ms"] = json!(job["store_ms"].as_f64().unwrap_or(0.0) + store_ms);
            advanced = true;
        }
        if advanced {
            if self.record(job).await?.is_none() {
                // Deleted while this step wrote: what it wrote goes too.
                return self.cancel_deleted(job, &document).await;
            }
            return Ok(());
        }
        let mut record = self.record(job).await?.ok_or_else(|| {
            ApiError::Internal(format!("job {}: the document is gone", job["id"]))
        })?;
        documents
            .finish(
                &mut record,
                version,
                &meta,
                &prepared.title,
                &prepared.hash,
                total,
            )
            .await?;
        job["status"] = json!("done");
        job["items_done"] = json!(1);
        job["finished_at"] = json!(now_ms());
        Ok(())
    }
}

impl Jobs<'_, '_> {
    /// Ends the job of a document deleted while it ran, with what its steps wrote.
    async fn cancel_deleted(&self, job: &mut Value, document: &str) -> Result<(), ApiError> {
        self.documents.forget_staged(document).await?;
        job["status"] = json!("cancelled");
        job["cancelled"] = json!("the document was deleted");
        job["finished_at"] = json!(now_ms());
        Ok(())
    }
}

/// A document a batch job indexes: claimed at `version` when the batch came in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    pub document: String,
    pub version: u32,
    pub chunks: usize,
    pub meta: Meta,
}

impl Jobs<'_, '_> {
    fn batch_items(job: &Value) -> Result<Vec<BatchItem>, ApiError> {
        serde_json::from_value(job["items"].clone())
            .map_err(|e| ApiError::Internal(format!("job {}: {e}", job["id"])))
    }

    /// The next group of a batch job: the items from `cursor` while their chunks fit in
    /// `batch_chunks` (at least one).
    fn group(&self, items: &[BatchItem], cursor: usize) -> std::ops::Range<usize> {
        let mut end = cursor;
        let mut chunks = 0;
        while end < items.len()
            && (end == cursor || chunks + items[end].chunks <= self.documents.stores.batch_chunks)
        {
            chunks += items[end].chunks;
            end += 1;
        }
        cursor..end
    }

    /// One step of a batch job: groups of documents, each indexed as one batch request would index
    /// it, until the step's time is up.
    async fn advance_batch(&self, job: &mut Value) -> Result<(), ApiError> {
        let items = Self::batch_items(job)?;
        let step = std::time::Instant::now();
        let budget = std::time::Duration::from_millis(self.documents.stores.step_ms as u64);
        loop {
            let cursor = job["cursor"].as_u64().unwrap_or(0) as usize;
            if cursor >= items.len() {
                job["status"] = json!("done");
                job["finished_at"] = json!(now_ms());
                return Ok(());
            }
            let group = self.group(&items, cursor);
            let failed = self.index_group(job, &items[group.clone()]).await?;
            Self::moved(job, &items[group.clone()], failed);
            if step.elapsed() >= budget {
                return Ok(());
            }
        }
    }

    /// The cursor past `group`, its documents and chunks counted (`failed` of them as failed).
    fn moved(job: &mut Value, group: &[BatchItem], failed: usize) {
        let chunks = group.iter().map(|item| item.chunks).sum::<usize>();
        for (key, add) in [
            ("cursor", group.len()),
            ("items_done", group.len() - failed),
            ("items_failed", failed),
            ("chunks_done", chunks),
        ] {
            job[key] = json!(job[key].as_u64().unwrap_or(0) as usize + add);
        }
        job["attempts"] = json!(0);
    }

    /// Indexes one group. A document deleted or written anew since the batch came in is left as it
    /// is; one whose stored file no longer reads as a document fails alone. Returns how many failed.
    async fn index_group(&self, job: &mut Value, group: &[BatchItem]) -> Result<usize, ApiError> {
        let documents = self.documents;
        let stores = documents.stores;
        let ids: Vec<String> = group
            .iter()
            .map(|item| record_id(self.project(), &item.document))
            .collect();
        let found = stores.couch.get_many(&ids).await?;
        let mut claimed = Vec::new();
        for (item, doc) in group.iter().zip(found) {
            let Some(doc) = doc else { continue };
            let record: DocumentRecord = serde_json::from_value(doc).map_err(|e| {
                ApiError::Internal(format!("document record {}: {e}", item.document))
            })?;
            if record.pending_version == Some(item.version) {
                claimed.push((item, record));
            }
        }
        let keys: Vec<String> = claimed
            .iter()
            .map(|(item, _)| object_key(self.project(), &item.document, item.version))
            .collect();
        let reads = keys.iter().map(|key| stores.objects.get(key));
        let files = futures::future::join_all(reads).await;
        let (mut prepared, mut metas) = (Vec::new(), Vec::new());
        let mut work: Vec<Claimed> = Vec::new();
        let mut failed = 0;
        for ((item, mut record), file) in claimed.into_iter().zip(files) {
            let bytes = file?.ok_or_else(|| {
                ApiError::Internal(format!(
                    "document {}: the stored file is gone",
                    item.document
                ))
            })?;
            let new = NewDocument::from_meta(item.meta.clone(), bytes.to_vec());
            match documents.prepare(&new) {
                Ok(prep) => {
                    work.push((prepared.len(), record, item.version));
                    metas.push(new.meta());
                    prepared.push(prep);
                }
                Err(error) => {
                    documents.abandon(&mut record, item.version, &error).await;
                    Self::item_error(job, &item.document, &error);
                    failed += 1;
                }
            }
        }
        if !work.is_empty() {
            // A failure here is retried by the next attempt, which writes the same ids again; only a
            // group's last attempt gives its documents up (`skip_group`).
            let mut laps = Laps::start();
            documents
                .stage_claimed(&prepared, &metas, &work, &mut laps)
                .await?;
            // A document deleted while its chunks were written: they go too, and it is not settled.
            let ids: Vec<String> = work
                .iter()
                .map(|(_, record, _)| record_id(self.project(), &record.id))
                .collect();
            let found = stores.couch.get_many(&ids).await?;
            let mut kept = Vec::new();
            for (claimed, doc) in work.into_iter().zip(found) {
                if doc.is_some() {
                    kept.push(claimed);
                } else {
                    documents.forget_staged(&claimed.1.id).await?;
                }
            }
            let mut work = kept;
            documents
                .settle_claimed(&prepared, &metas, &mut work, &mut laps)
                .await?;
        }
        Ok(failed)
    }

    fn item_error(job: &mut Value, document: &str, error: &ApiError) {
        if let Some(errors) = job["errors"].as_array_mut() {
            errors.push(json!({"at": now_ms(), "document": document, "error": error.to_string()}));
        }
    }

    /// After a group failed its last attempt: its documents keep their previous versions and say
    /// why, and the cursor moves past them.
    async fn skip_group(&self, job: &mut Value, error: &ApiError) -> Result<(), ApiError> {
        let items = Self::batch_items(job)?;
        let cursor = job["cursor"].as_u64().unwrap_or(0) as usize;
        let group = self.group(&items, cursor);
        for item in &items[group.clone()] {
            if let Some(mut record) = self.documents.record(&item.document).await?
                && record.pending_version == Some(item.version)
            {
                self.documents
                    .abandon(&mut record, item.version, error)
                    .await;
            }
            Self::item_error(job, &item.document, error);
        }
        Self::moved(job, &items[group.clone()], group.len());
        if job["cursor"].as_u64().unwrap_or(0) as usize >= items.len() {
            job["status"] = json!("done");
            job["finished_at"] = json!(now_ms());
        }
        Ok(())
    }
}

/// Starts the job's next step as a chained request, once this request has been answered.
fn kick(project: &str, job: &Value) {
    let url = format!(
        "http://ingest.spin.internal/v1/projects/{project}/jobs/{}/step",
        job["id"].as_str().unwrap_or_default()
    );
    let token = job["token"].as_str().unwrap_or_default().to_string();
    guest::outbound::start_step(url, TOKEN_HEADER, token);
}
