//! A document's life in the three stores: written as a new version that becomes live only once
//! complete, read back, and deleted everywhere.
//!
//! The order of writes is what keeps the stores consistent: the record says `processing` before
//! anything else is written; the file, the chunk records and the (not yet live) points follow, all
//! under deterministic names so that writing them again is harmless; one vector store request then
//! makes the new version live (shared::ingest::visibility); only after that are the old version's
//! points removed and the record marked `ready`.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use shared::ApiError;
use shared::ingest::chunk::{Chunk, chunk};
use shared::ingest::document::{
    self, ContentType, DocumentRecord, Kind, Status, Version, chunk_record_id, chunk_record_prefix,
    content_hash, object_key, object_prefix, point_id, record_id,
};
use shared::ingest::{sparse, visibility};

use crate::input::NewDocument;
use crate::stores::Stores;

/// How long a `processing` record blocks another write before it counts as abandoned (its writer
/// died); the next write then takes over.
const STALE_MS: u64 = 10 * 60 * 1000;
/// Points per upsert request.
const UPSERT_BATCH: usize = 256;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no document {id} in this project"))
}

/// A document read and cut, not yet written.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub title: String,
    pub chunks: Vec<Chunk>,
    pub hash: String,
}

pub use crate::input::Meta;

/// Where a write's time went, phase by phase, for the answer's `timings` (milliseconds).
pub struct Laps {
    last: Instant,
    spent: Vec<(&'static str, f64)>,
}

impl Laps {
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            spent: Vec::new(),
        }
    }

    /// Charges the time since the previous lap to `phase` (added up when a phase repeats).
    pub fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1000.0;
        self.last = now;
        match self.spent.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += ms,
            None => self.spent.push((phase, ms)),
        }
    }

    pub fn ms(&self, phase: &str) -> f64 {
        self.spent
            .iter()
            .find(|(name, _)| *name == phase)
            .map_or(0.0, |(_, ms)| *ms)
    }

    pub fn total_ms(&self) -> f64 {
        self.spent.iter().map(|(_, ms)| ms).sum()
    }

    pub fn json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, ms) in &self.spent {
            out.insert(format!("{name}_ms"), json!(ms));
        }
        Value::Object(out)
    }
}

/// One document's chunks to stage.
#[derive(Debug)]
pub struct Staging<'a> {
    pub id: &'a str,
    pub version: u32,
    pub title: &'a str,
    pub meta: &'a Meta,
    pub chunks: &'a [Chunk],
}

/// The conflict to answer when another write of the document is still under way (and not abandoned).
fn being_written(record: &DocumentRecord, now: u64) -> Option<ApiError> {
    (record.status == Status::Processing && now < record.updated_at + STALE_MS).then(|| {
        ApiError::Conflict(format!(
            "a version of document {} is being written; try again when it is done",
            record.id
        ))
    })
}

/// A document of a batch claimed for writing: its index in the batch, its record (`processing`),
/// the version being written.
pub type Claimed = (usize, DocumentRecord, u32);

/// Whether `new` would write what the live version already is: same bytes, format and metadata.
fn unchanged(record: &DocumentRecord, new: &NewDocument, prepared: &Prepared) -> bool {
    record.status == Status::Ready
        && record.live().is_some_and(|live| {
            live.content_sha256 == prepared.hash && live.content_type == new.content_type
        })
        && record.title == prepared.title
        && record.tags == new.tags
        && record.metadata == new.metadata
        && record.source_uri == new.source_uri
        && record.answer == new.answer
}

/// An error about the `i`th document of a batch, saying which.
fn within(i: usize, new: &NewDocument, error: ApiError) -> ApiError {
    let name = new.id.clone().unwrap_or_else(|| format!("#{i}"));
    match error {
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("document {name}: {m}")),
        ApiError::UnsupportedMediaType(m) => {
            ApiError::UnsupportedMediaType(format!("document {name}: {m}"))
        }
        ApiError::Unprocessable(m) => ApiError::Unprocessable(format!("document {name}: {m}")),
        other => other,
    }
}

/// Whether a write makes a document or a new version of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST`: a new document; an id that exists is a conflict.
    Create,
    /// `PUT` and Q&A: a new version, or a new document when the id is free.
    Upsert,
}

/// One project's documents.
pub struct Documents<'a> {
    pub stores: &'a Stores,
    pub project: &'a str,
}

/// What a record looks like to clients.
pub fn summary(record: &DocumentRecord) -> Value {
    let live = record.live();
    json!({
        "id": record.id,
        "kind": record.kind,
        "title": record.title,
        "tags": record.tags,
        "metadata": record.metadata,
        "source_uri": record.source_uri,
        "status": record.status,
        "version": record.live_version,
        "pending_version": record.pending_version,
        "content_type": live.map(|v| v.content_type),
        "bytes": live.map(|v| v.bytes),
        "chunks": live.map(|v| v.chunks),
        "content_sha256": live.map(|v| v.content_sha256.clone()),
        "versions": record.versions,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "error": record.error,
        "answer": record.answer,
    })
}

impl Documents<'_> {
    pub async fn record(&self, id: &str) -> Result<Option<DocumentRecord>, ApiError> {
        match self.stores.couch.get(&record_id(self.project, id)).await? {
            Some(doc) => serde_json::from_value(doc)
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("document record {id}: {e}"))),
            None => Ok(None),
        }
    }

    async fn save(&self, record: &mut DocumentRecord) -> Result<(), ApiError> {
        record.updated_at = now_ms();
        let doc = serde_json::to_value(&*record).map_err(|e| ApiError::Internal(e.to_string()))?;
        record.rev = Some(self.stores.couch.put(&doc).await?);
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Value, ApiError> {
        let record = self.record(id).await?.ok_or_else(|| not_found(id))?;
        Ok(summary(&record))
    }

    /// Reads and cuts `new`: everything that can be wrong with the input is found here, before the
    /// first write.
    pub fn prepare(&self, new: &NewDocument) -> Result<Prepared, ApiError> {
        let extracted = document::extract(new.content_type, &new.bytes, new.charset.as_deref())?;
        self.prepare_extracted(new, extracted)
    }

    /// [`Self::prepare`] for a document whose text was already extracted from its bytes.
    pub fn prepare_extracted(
        &self,
        new: &NewDocument,
        extracted: shared::ingest::extract::Extracted,
    ) -> Result<Prepared, ApiError> {
        let id = new.id.clone().unwrap_or_else(new_id);
        let title = new
            .title
            .clone()
            .or_else(|| extracted.title.clone())
            .unwrap_or_else(|| id.clone());
        let chunks = chunk(&extracted, &title, &self.stores.chunking)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        if new.kind == Kind::Qa && chunks.len() > 1 {
            return Err(ApiError::Unprocessable(
                "a question must fit one chunk; shorten it".into(),
            ));
        }
        Ok(Prepared {
            id,
            title,
            chunks,
            hash: content_hash(&new.bytes),
        })
    }

    /// Writes `new` as a document (or its next version). A small one is indexed within this request
    /// (201 or 200); a large one becomes a job whose steps run as chained requests (202).
    pub async fn write(&self, new: NewDocument, mode: Mode) -> Result<(u16, Value), ApiError> {
        let started = Instant::now();
        let prepared = self.prepare(&new)?;
        let extract_ms = started.elapsed().as_secs_f64() * 1000.0;
        let Prepared {
            id,
            title,
            chunks,
            hash,
        } = &prepared;
        let existing = self.record(id).await?;
        if let Some(record) = &existing {
            // A document whose every write failed has nothing to protect.
            if mode == Mode::Create
                && (record.live_version.is_some() || record.status == Status::Processing)
            {
                return Err(ApiError::Conflict(format!(
                    "document {id} exists; PUT /documents/{id} writes a new version"
                )));
            }
            if let Some(busy) = being_written(record, now_ms()) {
                return Err(busy);
            }
            if unchanged(record, &new, &prepared) {
                return Ok((
                    200,
                    json!({"document": summary(record), "unchanged": true, "version": record.live_version}),
                ));
            }
        }
        let created = existing.is_none();
        let (mut record, version) = self.begin(existing, &new, &prepared).await?;
        if chunks.len() > self.stores.inline_chunks {
            let job = crate::jobs::Jobs { documents: self }
                .start(&record, version, &new, chunks.len())
                .await?;
            return Ok((
                202,
                json!({"document": summary(&record), "version": version, "chunks": chunks.len(), "job": job}),
            ));
        }
        let staged = self
            .stage(id, version, title, &new.meta(), &chunks[..])
            .await;
        let (embed_ms, store_ms) = match staged {
            Ok(timings) => timings,
            Err(error) => {
                self.abandon(&mut record, version, &error).await;
                return Err(error);
            }
        };
        self.finish(&mut record, version, &new.meta(), title, hash, chunks.len())
            .await?;
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok((
            if created { 201 } else { 200 },
            json!({
                "document": summary(&record),
                "version": version,
                "chunks": chunks.len(),
                "unchanged": false,
                "timings": {"extract_ms": extract_ms, "embed_ms": embed_ms, "store_ms": store_ms, "total_ms": total_ms},
            }),
        ))
    }

    /// The record (a new one, or the existing one) marked `processing` with the next version number,
    /// not yet saved. A version a dead writer left behind is cleaned away before its number is reused.
    async fn claim(
        &self,
        existing: Option<DocumentRecord>,
        new: &NewDocument,
        prepared: &Prepared,
        now: u64,
    ) -> Result<(DocumentRecord, u32), ApiError> {
        let mut record = existing.unwrap_or_else(|| DocumentRecord {
            record_id: record_id(self.project, &prepared.id),
            rev: None,
            project: self.project.to_string(),
            id: prepared.id.clone(),
            kind: new.kind,
            title: prepared.title.clone(),
            tags: Vec::new(),
            metadata: Default::default(),
            source_uri: None,
            status: Status::Processing,
            live_version: None,
            pending_version: None,
            versions: Vec::new(),
            created_at: now,
            updated_at: now,
            error: None,
            answer: None,
        });
        if let Some(abandoned) = record.pending_version.take() {
            self.remove_version(&prepared.id, abandoned).await?;
        }
        let version = record
            .next_version()
            .max(record.live_version.unwrap_or(0) + 1);
        record.status = Status::Processing;
        record.pending_version = Some(version);
        record.error = None;
        record.updated_at = now;
        Ok((record, version))
    }

    /// Marks the record `processing` with its next version and stores the original bytes.
    async fn begin(
        &self,
        existing: Option<DocumentRecord>,
        new: &NewDocument,
        prepared: &Prepared,
    ) -> Result<(DocumentRecord, u32), ApiError> {
        let (mut record, version) = self.claim(existing, new, prepared, now_ms()).await?;
        self.save(&mut record).await?;
        if let Err(error) = self
            .stores
            .objects
            .put(
                &object_key(self.project, &prepared.id, version),
                Bytes::from(new.bytes.clone()),
            )
            .await
        {
            self.abandon(&mut record, version, &error).await;
            return Err(error);
        }
        Ok((record, version))
    }

    /// After a failed write: the staged pieces go, the previous version stays live, and the record
    /// says what failed.
    pub async fn abandon(&self, record: &mut DocumentRecord, version: u32, error: &ApiError) {
        let _ = self.remove_version(&record.id, version).await;
        record.status = if record.live_version.is_some() {
            Status::Ready
        } else {
            Status::Failed
        };
        record.pending_version = None;
        record.error = Some(error.to_string());
        let _ = self.save(record).await;
    }

    /// [`Self::abandon`] for every claim of a batch.
    async fn abandon_all(&self, work: &mut [Claimed], error: &ApiError) {
        for (_, record, version) in work.iter_mut() {
            self.abandon(record, *version, error).await;
        }
    }

    /// Makes `version` live, removes the older versions' points (and their files and chunk records
    /// beyond the kept count) and marks the record `ready`.
    pub async fn finish(
        &self,
        record: &mut DocumentRecord,
        version: u32,
        meta: &Meta,
        title: &str,
        hash: &str,
        chunks: usize,
    ) -> Result<(), ApiError> {
        let id = record.id.clone();
        let promoted = self
            .stores
            .vectors
            .batch(&visibility::promotion(self.project, &id, version))
            .await;
        if let Err(error) = promoted {
            self.abandon(record, version, &error).await;
            return Err(error);
        }
        self.stores
            .vectors
            .delete(&visibility::other_versions(
                self.project,
                &id,
                Some(version),
            ))
            .await?;
        self.complete(record, version, meta, title, hash, chunks)
            .await?;
        self.save(record).await
    }

    /// The record's side of a version going live: its entry, the kept versions, `ready`. Files and
    /// chunk records of versions beyond the kept count go.
    async fn complete(
        &self,
        record: &mut DocumentRecord,
        version: u32,
        meta: &Meta,
        title: &str,
        hash: &str,
        chunks: usize,
    ) -> Result<(), ApiError> {
        let id = record.id.clone();
        record.versions.push(Version {
            version,
            content_type: meta.content_type,
            content_sha256: hash.to_string(),
            bytes: meta.bytes,
            chunks: chunks as u32,
            created_at: now_ms(),
            kept: true,
        });
        let keep = self.stores.keep_versions;
        let kept: Vec<u32> = record
            .versions
            .iter()
            .filter(|v| v.kept)
            .map(|v| v.version)
            .collect();
        if kept.len() > keep {
            for old in &kept[..kept.len() - keep] {
                self.remove_files(&id, *old).await?;
                if let Some(v) = record.versions.iter_mut().find(|v| v.version == *old) {
                    v.kept = false;
                }
            }
        }
        record.title = title.to_string();
        record.kind = meta.kind;
        record.tags = meta.tags.clone();
        record.metadata = meta.metadata.clone();
        record.source_uri = meta.source_uri.clone();
        record.answer = meta.answer.clone();
        record.live_version = Some(version);
        record.pending_version = None;
        record.status = Status::Ready;
        record.updated_at = now_ms();
        Ok(())
    }

    /// Writes chunks' records and points (not yet live) for one version. Returns the milliseconds
    /// spent embedding and storing.
    pub async fn stage(
        &self,
        id: &str,
        version: u32,
        title: &str,
        meta: &Meta,
        chunks: &[Chunk],
    ) -> Result<(f64, f64), ApiError> {
        let mut laps = Laps::start();
        self.stage_many(
            &[Staging {
                id,
                version,
                title,
                meta,
                chunks,
            }],
            &mut laps,
        )
        .await?;
        let embed_ms = laps.ms("embed");
        Ok((embed_ms, laps.total_ms() - embed_ms))
    }

    /// [`Documents::stage`] for several documents at once: one embedding run, one collection check,
    /// and chunk records and points written in large batches.
    pub async fn stage_many(&self, items: &[Staging<'_>], laps: &mut Laps) -> Result<(), ApiError> {
        let stores = self.stores;
        let texts: Vec<String> = items
            .iter()
            .flat_map(|item| item.chunks.iter().map(Chunk::embed_text))
            .collect();
        laps.lap("prepare");
        let dense = stores.embedder.embed(&texts).await?;
        laps.lap("embed");
        let dimension = dense.first().map_or(0, Vec::len);
        stores.vectors.ensure_collection(dimension).await?;
        laps.lap("collection");
        let mut records = Vec::with_capacity(texts.len());
        let mut points = Vec::with_capacity(texts.len());
        let mut keywords = Vec::with_capacity(texts.len());
        let indexed_at = now_ms();
        for item in items {
            let (project, id, version, meta) = (self.project, item.id, item.version, item.meta);
            for c in item.chunks {
                let chunk_id = chunk_record_id(project, id, version, c.ordinal);
                records.push(json!({
                    "_id": chunk_id,
                    "type": "chunk",
                    "project": project,
                    "document": id,
                    "version": version,
                    "ordinal": c.ordinal,
                    "text": c.text,
                    "heading_path": c.heading_path,
                    "start": c.start,
                    "end": c.end,
                    "page": c.page,
                    "tokens": c.tokens,
                    "sha256": c.sha256,
                }));
                keywords.push(sparse::document_vector(&texts[points.len()]));
                points.push((
                    point_id(project, id, version, c.ordinal),
                    json!({
                        "project": project,
                        "document": id,
                        "version": version,
                        visibility::LIVE: false,
                        "kind": meta.kind,
                        "ordinal": c.ordinal,
                        "chunk_id": chunk_id,
                        "text": c.text,
                        "title": item.title,
                        "source_uri": meta.source_uri,
                        "tags": meta.tags,
                        "metadata": meta.metadata,
                        "heading_path": c.heading_path,
                        "start": c.start,
                        "end": c.end,
                        "page": c.page,
                        "sha256": c.sha256,
                        "answer": meta.answer,
                        "content_type": meta.content_type,
                        "indexed_at": indexed_at,
                    }),
                ));
            }
        }
        let points: Vec<guest::vectors::Point<'_>> = points
            .into_iter()
            .zip(&dense)
            .zip(&keywords)
            .map(|(((id, payload), dense), keyword)| guest::vectors::Point {
                id,
                vector: guest::vectors::PointVectors { dense, keyword },
                payload,
            })
            .collect();
        laps.lap("prepare");
        for batch in records.chunks(500) {
            stores.couch.bulk(batch.to_vec()).await?;
        }
        laps.lap("chunk_records");
        for batch in points.chunks(UPSERT_BATCH) {
            stores.vectors.upsert(batch).await?;
        }
        laps.lap("points");
        Ok(())
    }

    /// Writes several documents (new ones, or new versions of existing ones) in one go: every input
    /// is checked first, then each phase (records, files, embeddings, chunk records and points, the
    /// promotion, the final records) is one round of batched store requests for all of them.
    /// `laps` holds what the request spent before (its credential check, reading the body).
    pub async fn write_batch(
        &self,
        news: Vec<NewDocument>,
        mut laps: Laps,
    ) -> Result<(u16, Value), ApiError> {
        let mut prepared = Vec::with_capacity(news.len());
        for (i, new) in news.iter().enumerate() {
            prepared.push(self.prepare(new).map_err(|e| within(i, new, e))?);
        }
        laps.lap("cut");
        self.write_prepared(news, prepared, laps).await
    }

    /// [`Self::write_batch`] for documents already read and cut (a crawl prepares each page on its
    /// own, to keep one bad page out of the batch).
    pub async fn write_prepared(
        &self,
        news: Vec<NewDocument>,
        prepared: Vec<Prepared>,
        mut laps: Laps,
    ) -> Result<(u16, Value), ApiError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = prepared.iter().find(|p| !seen.insert(p.id.clone())) {
            return Err(ApiError::BadRequest(format!(
                "document {} appears twice in the batch",
                dup.id
            )));
        }
        let ids: Vec<String> = prepared
            .iter()
            .map(|p| record_id(self.project, &p.id))
            .collect();
        let existing = self.stores.couch.get_many(&ids).await?;
        laps.lap("records");
        let mut outcomes = vec![Value::Null; news.len()];
        let mut work: Vec<Claimed> = Vec::new();
        let now = now_ms();
        for (i, (found, (new, prep))) in existing
            .into_iter()
            .zip(news.iter().zip(&prepared))
            .enumerate()
        {
            let record: Option<DocumentRecord> = match found {
                Some(doc) => Some(serde_json::from_value(doc).map_err(|e| {
                    ApiError::Internal(format!("document record {}: {e}", prep.id))
                })?),
                None => None,
            };
            if let Some(record) = &record {
                if let Some(busy) = being_written(record, now) {
                    return Err(busy);
                }
                if unchanged(record, new, prep) {
                    outcomes[i] = json!({"id": prep.id, "status": "unchanged", "version": record.live_version, "chunks": record.live().map(|v| v.chunks)});
                    continue;
                }
            }
            let created = record.is_none();
            let (record, version) = self.claim(record, new, prep, now).await?;
            outcomes[i] = json!({"id": prep.id, "status": if created { "created" } else { "updated" }, "version": version, "chunks": prep.chunks.len()});
            work.push((i, record, version));
        }
        let chunks: usize = work.iter().map(|(i, _, _)| prepared[*i].chunks.len()).sum();
        if !work.is_empty() {
            self.save_many(work.iter_mut().map(|(_, record, _)| record))
                .await?;
            laps.lap("records");
            let keys: Vec<String> = work
                .iter()
                .map(|(i, _, version)| object_key(self.project, &prepared[*i].id, *version))
                .collect();
            let puts = work.iter().zip(&keys).map(|((i, _, _), key)| {
                self.stores
                    .objects
                    .put(key, Bytes::from(news[*i].bytes.clone()))
            });
            let stored: Result<Vec<()>, ApiError> =
                futures::future::join_all(puts).await.into_iter().collect();
            if let Err(error) = stored {
                self.abandon_all(&mut work, &error).await;
                return Err(error);
            }
            laps.lap("files");
            if chunks > self.stores.batch_chunks {
                return self.queue(work, &news, &prepared, outcomes).await;
            }
            let metas: Vec<Meta> = news.iter().map(NewDocument::meta).collect();
            self.index_claimed(&prepared, &metas, &mut work, &mut laps)
                .await?;
        }
        Ok((
            200,
            json!({
                "documents": outcomes,
                "chunks": chunks,
                "took_ms": laps.total_ms(),
                "timings": laps.json(),
            }),
        ))
    }

    /// Indexes documents already claimed (records `processing`, bytes stored): one round of batched
    /// store requests for all of them per phase (embeddings, chunk records and points, the promotion,
    /// then [`Self::settle_claimed`]). `prepared` and `metas` are indexed by the claims' first field.
    /// On failure every claimed document keeps its previous version.
    pub async fn index_claimed(
        &self,
        prepared: &[Prepared],
        metas: &[Meta],
        work: &mut [Claimed],
        laps: &mut Laps,
    ) -> Result<(), ApiError> {
        if let Err(error) = self.stage_claimed(prepared, metas, work, laps).await {
            self.abandon_all(work, &error).await;
            return Err(error);
        }
        self.settle_claimed(prepared, metas, work, laps).await
    }

    /// The claimed documents' chunk records and points, written and made live. Nothing is undone on
    /// failure: the caller abandons the claims, or (a job) runs this again, the ids being fixed.
    pub async fn stage_claimed(
        &self,
        prepared: &[Prepared],
        metas: &[Meta],
        work: &[Claimed],
        laps: &mut Laps,
    ) -> Result<(), ApiError> {
        let items: Vec<Staging<'_>> = work
            .iter()
            .map(|(i, _, version)| Staging {
                id: &prepared[*i].id,
                version: *version,
                title: &prepared[*i].title,
                meta: &metas[*i],
                chunks: &prepared[*i].chunks,
            })
            .collect();
        self.stage_many(&items, laps).await?;
        let operations: Vec<Value> = work
            .iter()
            .flat_map(|(i, _, version)| {
                visibility::promotion(self.project, &prepared[*i].id, *version)["operations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let promoted = self
            .stores
            .vectors
            .batch(&json!({"operations": operations}))
            .await;
        laps.lap("promote");
        promoted
    }

    /// After the claimed versions went live: the older versions' points go, and the records say
    /// `ready` with their new versions.
    pub async fn settle_claimed(
        &self,
        prepared: &[Prepared],
        metas: &[Meta],
        work: &mut [Claimed],
        laps: &mut Laps,
    ) -> Result<(), ApiError> {
        for (i, record, version) in work.iter_mut() {
            if record.live_version.is_some() {
                self.stores
                    .vectors
                    .delete(&visibility::other_versions(
                        self.project,
                        &record.id,
                        Some(*version),
                    ))
                    .await?;
            }
            let (meta, prep) = (&metas[*i], &prepared[*i]);
            self.complete(
                record,
                *version,
                meta,
                &prep.title,
                &prep.hash,
                prep.chunks.len(),
            )
            .await?;
        }
        laps.lap("retire");
        self.save_many(work.iter_mut().map(|(_, record, _)| record))
            .await?;
        laps.lap("records");
        Ok(())
    }

    /// A batch of more chunks than one request indexes (`batch_chunks`), already claimed: each
    /// document of more than `inline_chunks` chunks gets a job of its own, as a single upload would;
    /// the others one job that indexes them a group at a time. 202, naming each document's job.
    async fn queue(
        &self,
        mut work: Vec<Claimed>,
        news: &[NewDocument],
        prepared: &[Prepared],
        mut outcomes: Vec<Value>,
    ) -> Result<(u16, Value), ApiError> {
        let jobs = crate::jobs::Jobs { documents: self };
        let chunks: usize = work.iter().map(|(i, _, _)| prepared[*i].chunks.len()).sum();
        let mut started = Vec::new();
        let mut grouped = Vec::new();
        while let Some((i, mut record, version)) = work.pop() {
            let count = prepared[i].chunks.len();
            if count <= self.stores.inline_chunks {
                grouped.push((i, record, version));
                continue;
            }
            match jobs.start(&record, version, &news[i], count).await {
                Ok(job) => {
                    outcomes[i]["job"] = job["id"].clone();
                    started.push(job);
                }
                Err(error) => {
                    self.abandon(&mut record, version, &error).await;
                    self.abandon_all(&mut work, &error).await;
                    self.abandon_all(&mut grouped, &error).await;
                    return Err(error);
                }
            }
        }
        if !grouped.is_empty() {
            grouped.reverse();
            let items: Vec<crate::jobs::BatchItem> = grouped
                .iter()
                .map(|(i, record, version)| {
                    let mut meta = news[*i].meta();
                    meta.id = Some(record.id.clone());
                    crate::jobs::BatchItem {
                        document: record.id.clone(),
                        version: *version,
                        chunks: prepared[*i].chunks.len(),
                        meta,
                    }
                })
                .collect();
            match jobs.start_batch(items).await {
                Ok(job) => {
                    for (i, _, _) in &grouped {
                        outcomes[*i]["job"] = job["id"].clone();
                    }
                    started.push(job);
                }
                Err(error) => {
                    self.abandon_all(&mut grouped, &error).await;
                    return Err(error);
                }
            }
        }
        Ok((
            202,
            json!({"documents": outcomes, "chunks": chunks, "jobs": started}),
        ))
    }

    /// Saves several records in one request, taking their new revisions.
    async fn save_many<'r>(
        &self,
        records: impl Iterator<Item = &'r mut DocumentRecord>,
    ) -> Result<(), ApiError> {
        let mut records: Vec<&mut DocumentRecord> = records.collect();
        let docs = records
            .iter()
            .map(|r| serde_json::to_value(&**r).map_err(|e| ApiError::Internal(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let revs = self.stores.couch.bulk(docs).await?;
        for (record, rev) in records.iter_mut().zip(revs) {
            record.rev = Some(rev);
        }
        Ok(())
    }

    /// Removes everything of one version: its points, chunk records and file.
    pub async fn remove_version(&self, id: &str, version: u32) -> Result<(), ApiError> {
        let filter = json!({"must": [
            {"key": "project", "match": {"value": self.project}},
            {"key": "document", "match": {"value": id}},
            {"key": "version", "match": {"value": version}},
        ]});
        self.stores.vectors.delete(&filter).await?;
        self.remove_files(id, version).await
    }

    /// Removes a version's chunk records and file (its points are gone already).
    async fn remove_files(&self, id: &str, version: u32) -> Result<(), ApiError> {
        self.stores
            .couch
            .delete_prefix(&chunk_record_prefix(self.project, id, Some(version)))
            .await?;
        self.stores
            .objects
            .delete_prefix(&object_key(self.project, id, version))
            .await?;
        Ok(())
    }

    /// Deletes a document everywhere: points first (search stops seeing it), then chunk records and
    /// files, and the record last, so a delete that fails halfway can simply be repeated.
    pub async fn delete(&self, id: &str) -> Result<Value, ApiError> {
        let record = self.record(id).await?.ok_or_else(|| not_found(id))?;
        let points = self
            .stores
            .vectors
            .count(&visibility::other_versions(self.project, id, None))
            .await?;
        self.stores
            .vectors
            .delete(&visibility::other_versions(self.project, id, None))
            .await?;
        let chunks = self
            .stores
            .couch
            .delete_prefix(&chunk_record_prefix(self.project, id, None))
            .await?;
        let files = self
            .stores
            .objects
            .delete_prefix(&object_prefix(self.project, id))
            .await?;
        let mut tombstone =
            serde_json::to_value(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
        tombstone["_deleted"] = json!(true);
        self.stores
            .couch
            .bulk(vec![json!({
                "_id": tombstone["_id"],
                "_rev": tombstone["_rev"],
                "_deleted": true,
            })])
            .await?;
        // A job indexing a version may have written chunks after the first pass; it checks for the
        // record after each write, so what it wrote before the record went is removed here.
        if record.pending_version.is_some() {
            self.forget_staged(id).await?;
        }
        Ok(json!({"deleted": id, "points": points, "chunks": chunks, "files": files}))
    }

    /// Removes the points and chunk records of every version of a document whose record is gone.
    pub async fn forget_staged(&self, id: &str) -> Result<(), ApiError> {
        self.stores
            .vectors
            .delete(&visibility::other_versions(self.project, id, None))
            .await?;
        self.stores
            .couch
            .delete_prefix(&chunk_record_prefix(self.project, id, None))
            .await?;
        Ok(())
    }

    /// Removes everything the project holds in the three stores: points; document, chunk, job,
    /// source, page, webhook, conversation, evaluation and rate-limit records; files. Repeating it
    /// is harmless.
    pub async fn purge_project(&self) -> Result<Value, ApiError> {
        let project_filter =
            json!({"must": [{"key": "project", "match": {"value": self.project}}]});
        let points = self.stores.vectors.count(&project_filter).await?;
        self.stores.vectors.delete(&project_filter).await?;
        crate::sources::unschedule_project(&self.stores.couch, self.project).await?;
        let mut records = 0;
        for prefix in [
            document::project_record_prefix(self.project),
            format!("chunk:{}:", self.project),
            format!("job:{}:", self.project),
            format!("source:{}:", self.project),
            format!("page:{}:", self.project),
        ] {
            records += self.stores.couch.delete_prefix(&prefix).await?;
        }
        // Search's evaluations and respond's conversations live in their own databases.
        let couch = &self.stores.couch;
        for (database, kinds) in [
            (
                guest::couch::SEARCH_DATABASE,
                &["evaluation", "evaluation-spec"][..],
            ),
            (
                guest::couch::RESPOND_DATABASE,
                &["conversation", "visitor"][..],
            ),
        ] {
            let other = couch.sibling(database);
            for kind in kinds {
                records += other
                    .delete_prefix(&format!("{kind}:{}:", self.project))
                    .await?;
            }
        }
        records += crate::webhooks::purge_project(&self.stores.couch, self.project).await?;
        let files = self
            .stores
            .objects
            .delete_prefix(&document::project_object_prefix(self.project))
            .await?;
        Ok(json!({"purged": self.project, "points": points, "records": records, "files": files}))
    }

    /// A page of the project's documents, in id order, filtered.
    pub async fn list(&self, query: &ListQuery) -> Result<Value, ApiError> {
        let prefix = document::project_record_prefix(self.project);
        let mut after = query.after.as_ref().map(|a| record_id(self.project, a));
        let mut found = Vec::new();
        let mut more = false;
        'pages: loop {
            let rows = self
                .stores
                .couch
                .prefix(&prefix, after.as_deref(), 200, true)
                .await?;
            let last = rows
                .last()
                .and_then(|r| r["id"].as_str())
                .map(str::to_string);
            for row in &rows {
                let Ok(record) = serde_json::from_value::<DocumentRecord>(row["doc"].clone())
                else {
                    continue;
                };
                if query.matches(&record) {
                    if found.len() == query.limit {
                        more = true;
                        break 'pages;
                    }
                    found.push(record);
                }
            }
            if rows.len() < 200 {
                break;
            }
            after = last;
        }
        let next = more.then(|| found.last().map(|r| r.id.clone())).flatten();
        Ok(json!({
            "documents": found.iter().map(summary).collect::<Vec<_>>(),
            "next": next,
        }))
    }

    /// The ids of every document carrying `tag`.
    pub async fn with_tag(&self, tag: &str) -> Result<Vec<String>, ApiError> {
        let query = ListQuery {
            tag: Some(tag.to_string()),
            limit: usize::MAX,
            ..ListQuery::default()
        };
        let listed = self.list(&query).await?;
        Ok(listed["documents"]
            .as_array()
            .map(|docs| {
                docs.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The chunks of the live version (or of `version`), in order, a page at a time.
    pub async fn chunks(
        &self,
        id: &str,
        version: Option<u32>,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Value, ApiError> {
        let record = self.record(id).await?.ok_or_else(|| not_found(id))?;
        let version = version.or(record.live_version).ok_or_else(|| {
            ApiError::NotFound(format!("document {id} has no complete version yet"))
        })?;
        let prefix = chunk_record_prefix(self.project, id, Some(version));
        let after = after.map(|a| chunk_record_id(self.project, id, version, a));
        let rows = self
            .stores
            .couch
            .prefix(&prefix, after.as_deref(), limit + 1, true)
            .await?;
        let mut chunks: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut doc = row["doc"].clone();
                if let Some(obj) = doc.as_object_mut() {
                    let id = obj.remove("_id");
                    obj.remove("_rev");
                    obj.remove("type");
                    obj.remove("project");
                    obj.insert("id".into(), id.unwrap_or_default());
                }
                doc
            })
            .collect();
        let more = chunks.len() > limit;
        chunks.truncate(limit);
        let next = if more {
            chunks.last().and_then(|c| c["ordinal"].as_u64())
        } else {
            None
        };
        Ok(json!({"document": id, "version": version, "chunks": chunks, "next": next}))
    }

    /// The original bytes of the live version (or of `version`) and their content type.
    pub async fn content(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<(ContentType, Bytes), ApiError> {
        let record = self.record(id).await?.ok_or_else(|| not_found(id))?;
        let wanted = version.or(record.live_version).ok_or_else(|| {
            ApiError::NotFound(format!("document {id} has no complete version yet"))
        })?;
        let entry = record
            .versions
            .iter()
            .find(|v| v.version == wanted && v.kept)
            .ok_or_else(|| ApiError::NotFound(format!("version {wanted} of {id} is not kept")))?;
        let bytes = self
            .stores
            .objects
            .get(&object_key(self.project, id, wanted))
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("the file of {id} version {wanted} is gone"))
            })?;
        Ok((entry.content_type, bytes))
    }
}

/// Filters and page of `GET /documents`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: usize,
    pub tag: Option<String>,
    pub status: Option<Status>,
    pub source: Option<String>,
    pub kind: Option<Kind>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            after: None,
            limit: 50,
            tag: None,
            status: None,
            source: None,
            kind: None,
        }
    }
}

impl ListQuery {
    fn matches(&self, record: &DocumentRecord) -> bool {
        self.tag.as_ref().is_none_or(|t| record.tags.contains(t))
            && self.status.is_none_or(|s| record.status == s)
            && self.kind.is_none_or(|k| record.kind == k)
            && self.source.as_ref().is_none_or(|s| {
                record
                    .source_uri
                    .as_deref()
                    .is_some_and(|uri| uri.starts_with(s.as_str()))
            })
    }
}
