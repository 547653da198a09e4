//! The ports auth's logic runs against: a document store (CouchDB's model: ids, revisions, conflicts),
//! a mail sender, the other stores' knowledge of a project and a clock. The functions implement them over outbound HTTP; unit tests use fakes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// A store failure the logic can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The document changed since it was read, or already exists.
    #[error("document update conflict")]
    Conflict,
    /// The store did not answer, or answered something unexpected. Logged, never shown.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => ApiError::Conflict(
                "the record was changed by another request at the same time; retry".into(),
            ),
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
        }
    }
}

/// Documents with CouchDB semantics: every document has `_id` and `_rev`; a write names the revision
/// it replaces and fails with `Conflict` if that is not the current one (or, for a create, if the id exists).
///
/// `async fn` in a public trait: the functions run one request per single-threaded instance, so nothing
/// needs the futures to be `Send`.
#[allow(async_fn_in_trait)]
pub trait DocumentStore {
    /// The document, or `None` if it does not exist or was deleted.
    async fn get(&self, id: &str) -> Result<Option<Value>, StoreError>;
    /// Several documents in one round trip, in the order of `ids`.
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Value>>, StoreError>;
    /// Creates (no `_rev`) or replaces (with `_rev`) the document named by its `_id`; the new revision.
    async fn put(&self, doc: &Value) -> Result<String, StoreError>;
    /// Deletes the document at revision `rev`.
    async fn delete(&self, id: &str, rev: &str) -> Result<(), StoreError>;
    /// Documents whose ids start with `prefix`, in id order, starting after `after`, at most `limit`.
    async fn prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError>;
    /// Documents matching a Mango selector, at most `limit`.
    async fn find(&self, selector: Value, limit: usize) -> Result<Vec<Value>, StoreError>;
}

/// A message to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Sends mail through a configured HTTP endpoint.
#[allow(async_fn_in_trait)]
pub trait Mailer {
    async fn send(&self, mail: &Mail) -> Result<(), StoreError>;
}

/// A project's knowledge in the other stores (documents, chunks, vectors, files, conversations), which
/// auth does not hold: removed before auth's own records of the project, so that a failure leaves the
/// project there to purge again.
#[allow(async_fn_in_trait)]
pub trait Knowledge {
    async fn purge(&self, project: &str) -> Result<(), StoreError>;
}

/// The time, in milliseconds since the Unix epoch.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// A typed record as stored: its id and revision next to its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub id: String,
    pub rev: Option<String>,
    pub record: T,
}

impl<T: Serialize + DeserializeOwned> Stored<T> {
    /// A record not yet written.
    pub fn new(id: String, record: T) -> Self {
        Self {
            id,
            rev: None,
            record,
        }
    }

    /// The record's own id: its document id without the kind prefix (`user:abc` -> `abc`).
    pub fn key(&self) -> &str {
        self.id
            .split_once(':')
            .map_or(self.id.as_str(), |(_, key)| key)
    }

    /// Reads the document as a `T`; a document of another shape counts as missing.
    pub fn from_doc(doc: Value) -> Option<Self> {
        let id = doc.get("_id")?.as_str()?.to_string();
        let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_string);
        let record = serde_json::from_value(doc).ok()?;
        Some(Self { id, rev, record })
    }

    /// The document to write: the record's fields plus `_id` and, when updating, `_rev`.
    pub fn to_doc(&self) -> Value {
        let mut doc = serde_json::to_value(&self.record).expect("records serialise to objects");
        if let Value::Object(map) = &mut doc {
            map.insert("_id".into(), Value::String(self.id.clone()));
            if let Some(rev) = &self.rev {
                map.insert("_rev".into(), Value::String(rev.clone()));
            }
        }
        doc
    }
}

/// Reads one typed record.
pub async fn load<T: Serialize + DeserializeOwned>(
    store: &impl DocumentStore,
    id: &str,
) -> Result<Option<Stored<T>>, StoreError> {
    Ok(store.get(id).await?.and_then(Stored::from_doc))
}

/// Writes a typed record and records its new revision.
pub async fn save<T: Serialize + DeserializeOwned>(
    store: &impl DocumentStore,
    stored: &mut Stored<T>,
) -> Result<(), StoreError> {
    stored.rev = Some(store.put(&stored.to_doc()).await?);
    Ok(())
}

/// Deletes a typed record at the revision it was read at (a record never written is left alone).
pub async fn remove<T>(store: &impl DocumentStore, stored: &Stored<T>) -> Result<(), StoreError> {
    match &stored.rev {
        Some(rev) => store.delete(&stored.id, rev).await,
        None => Ok(()),
    }
}

/// Typed records from raw documents, dropping any of another shape.
pub fn typed<T: Serialize + DeserializeOwned>(docs: Vec<Value>) -> Vec<Stored<T>> {
    docs.into_iter().filter_map(Stored::from_doc).collect()
}
