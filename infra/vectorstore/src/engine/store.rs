use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use super::collection::Collection;
use super::config::Config;
use super::payload_index::PayloadIndex;
use super::points::{NewPoint, PointVectors};
use crate::error::{Result, VecError};
use crate::filter::Filter;
use crate::point_id::PointId;

pub(super) const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    vectors BLOB NOT NULL,
    UNIQUE (collection, id)
);
CREATE TABLE IF NOT EXISTS payload_indexes (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    schema TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT 'null',
    PRIMARY KEY (collection, field)
);
";

pub type Shared = Arc<RwLock<Collection>>;

/// All collections, and the database they are kept in.
pub struct Store {
    pub(super) db: Mutex<Connection>,
    pub(super) collections: RwLock<BTreeMap<String, Shared>>,
    pub(super) operation: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

pub(super) fn valid_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            matches!(
                c,
                '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*' | '\0'
            )
        })
    {
        return Err(VecError::wrong_input(format!(
            "collection name `{name}` is empty, too long or has one of < > : \" / \\ | ? *"
        )));
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store at `path` and loads every collection into memory.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        // Stores made before indexes kept their parameters.
        if conn
            .prepare("SELECT params FROM payload_indexes LIMIT 0")
            .is_err()
        {
            conn.execute_batch(
                "ALTER TABLE payload_indexes ADD COLUMN params TEXT NOT NULL DEFAULT 'null'",
            )?;
        }
        let mut collections = BTreeMap::new();
        let mut max_version = 0u64;
        {
            let mut stmt = conn.prepare("SELECT name, config FROM collections")?;
            let rows: Vec<(String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<_, _>>()?;
            for (name, config) in rows {
                let config = Config::parse(&serde_json::from_str(&config)?)
                    .map_err(|e| anyhow::anyhow!("collection {name}: {}", e.message))?;
                let mut collection = Collection::new(config)
                    .map_err(|e| anyhow::anyhow!("collection {name}: {}", e.message))?;
                let mut indexes = conn.prepare(
                    "SELECT field, schema, params FROM payload_indexes WHERE collection = ?1",
                )?;
                let rows = indexes.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
                for row in rows? {
                    let (field, schema, params): (String, String, String) = row?;
                    let params = serde_json::from_str(&params).unwrap_or(Value::Null);
                    collection
                        .indexes
                        .insert(field, PayloadIndex::new(&schema, params));
                }
                let mut points = conn.prepare(
                    "SELECT id, slot, version, payload, vectors FROM points WHERE collection = ?1",
                )?;
                let mut batch = Vec::new();
                let mut rows = points.query([&name])?;
                while let Some(row) = rows.next()? {
                    let id: String = row.get(0)?;
                    let slot: i64 = row.get(1)?;
                    let version: i64 = row.get(2)?;
                    let payload: String = row.get(3)?;
                    let vectors: Vec<u8> = row.get(4)?;
                    let (Some(id), Some(vectors), Ok(Value::Object(payload))) = (
                        PointId::from_storage_key(&id),
                        PointVectors::decode(&vectors),
                        serde_json::from_str(&payload),
                    ) else {
                        anyhow::bail!("collection {name}: point {id} is unreadable");
                    };
                    max_version = max_version.max(version as u64);
                    batch.push((
                        slot as u32,
                        version as u64,
                        NewPoint {
                            id,
                            payload,
                            vectors,
                        },
                    ));
                    if batch.len() >= 10_000 {
                        collection
                            .apply_upsert(std::mem::take(&mut batch))
                            .map_err(|e| anyhow::anyhow!("collection {name}: {}", e.message))?;
                    }
                }
                collection
                    .apply_upsert(batch)
                    .map_err(|e| anyhow::anyhow!("collection {name}: {}", e.message))?;
                tracing::info!(
                    "vector store: loaded collection {name} ({} points)",
                    collection.len()
                );
                collections.insert(name, Arc::new(RwLock::new(collection)));
            }
        }
        Ok(Self {
            db: Mutex::new(conn),
            collections: RwLock::new(collections),
            operation: AtomicU64::new(max_version),
        })
    }

    pub(super) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn collection(&self, name: &str) -> Result<Shared> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| VecError::no_collection(name))
    }

    pub fn names(&self) -> Vec<String> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn create_collection(&self, name: &str, body: &Value) -> Result<()> {
        valid_name(name)?;
        let config = Config::parse(body)?;
        if config.dense.is_empty() && config.sparse.is_empty() {
            return Err(VecError::wrong_input(
                "a collection needs at least one dense or sparse vector",
            ));
        }
        let collection = Collection::new(config.clone())?;
        let mut collections = self.collections.write().unwrap_or_else(|p| p.into_inner());
        if collections.contains_key(name) {
            return Err(VecError {
                status: 409,
                message: format!("Wrong input: Collection `{name}` already exists!"),
            });
        }
        self.db().execute(
            "INSERT INTO collections (name, config) VALUES (?1, ?2)",
            params![name, config.to_json().to_string()],
        )?;
        collections.insert(name.to_string(), Arc::new(RwLock::new(collection)));
        Ok(())
    }

    /// Deletes a collection; answers whether it existed.
    pub fn delete_collection(&self, name: &str) -> Result<bool> {
        let mut collections = self.collections.write().unwrap_or_else(|p| p.into_inner());
        if !collections.contains_key(name) {
            return Ok(false);
        }
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM points WHERE collection = ?1", [name])?;
        tx.execute("DELETE FROM payload_indexes WHERE collection = ?1", [name])?;
        tx.execute("DELETE FROM collections WHERE name = ?1", [name])?;
        tx.commit()?;
        collections.remove(name);
        Ok(true)
    }

    pub(super) fn next_operation(&self) -> u64 {
        self.operation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Inserts or replaces points; committed to disk before it returns. Returns the operation id.
    pub fn upsert(&self, name: &str, points: Vec<NewPoint>) -> Result<u64> {
        self.upsert_with(name, |_| Ok(points))
    }

    /// Inserts or replaces the points `build` makes from the collection as it stands, under the
    /// collection's write lock (so a change to existing points sees no write in between); nothing
    /// changes when `build` fails.
    pub fn upsert_with(
        &self,
        name: &str,
        build: impl FnOnce(&Collection) -> Result<Vec<NewPoint>>,
    ) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        let points = build(&collection)?;
        let operation = self.next_operation();
        // Later duplicates of an id in one batch win, as if applied in order.
        let mut seen = HashMap::new();
        for (i, point) in points.iter().enumerate() {
            seen.insert(point.id.clone(), i);
        }
        let mut next = collection.free_slot();
        let mut planned = Vec::with_capacity(seen.len());
        for (i, point) in points.into_iter().enumerate() {
            if seen[&point.id] != i {
                continue;
            }
            let slot = collection.slot_of(&point.id).unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            planned.push((slot, operation, point));
        }
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO points (collection, id, slot, version, payload, vectors)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (slot, version, point) in &planned {
                    insert.execute(params![
                        name,
                        point.id.storage_key(),
                        i64::from(*slot),
                        *version as i64,
                        Value::Object(point.payload.clone()).to_string(),
                        point.vectors.encode(),
                    ])?;
                }
            }
            tx.commit()?;
        }
        collection.apply_upsert(planned)?;
        Ok(operation)
    }

    /// Deletes the given points (ids that do not exist are ignored). Returns the operation id.
    pub fn delete_points(&self, name: &str, selector: Selector) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        let operation = self.next_operation();
        let slots: Vec<u32> = match selector {
            Selector::Ids(ids) => ids.iter().filter_map(|id| collection.slot_of(id)).collect(),
            Selector::Filter(filter) => collection.scan(Some(&filter), None).collect(),
        };
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM points WHERE collection = ?1 AND id = ?2")?;
                for slot in &slots {
                    if let Some(id) = collection.id_of(*slot) {
                        delete.execute(params![name, id.storage_key()])?;
                    }
                }
            }
            tx.commit()?;
        }
        for slot in slots {
            collection.remove_slot(slot);
        }
        Ok(operation)
    }

    /// Changes the payloads of the selected points (ids that do not exist are ignored, as Qdrant
    /// does for filters; a listed id that is missing is a 404); committed before it returns, and on
    /// failure nothing changes. Returns the operation id.
    pub fn update_payload(
        &self,
        name: &str,
        selector: Selector,
        change: &PayloadChange,
    ) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        let operation = self.next_operation();
        let slots: Vec<u32> = match &selector {
            Selector::Ids(ids) => ids
                .iter()
                .map(|id| collection.slot_of(id).ok_or_else(|| VecError::no_point(id)))
                .collect::<Result<_>>()?,
            Selector::Filter(filter) => collection.scan(Some(filter), None).collect(),
        };
        let planned: Vec<(u32, Map<String, Value>)> = slots
            .iter()
            .filter_map(|slot| {
                let current = &collection.slot(*slot)?.payload;
                Some((*slot, change.apply(current)))
            })
            .collect();
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE points SET payload = ?3, version = ?4 WHERE collection = ?1 AND id = ?2",
                )?;
                for (slot, payload) in &planned {
                    if let Some(id) = collection.id_of(*slot) {
                        update.execute(params![
                            name,
                            id.storage_key(),
                            Value::Object(payload.clone()).to_string(),
                            operation as i64,
                        ])?;
                    }
                }
            }
            tx.commit()?;
        }
        for (slot, payload) in planned {
            collection.replace_payload(slot, operation, payload);
        }
        Ok(operation)
    }

    /// Creates (or replaces) a payload index on `field`; `field_schema` is a type name or an object
    /// with a `type` and its parameters, as in Qdrant.
    pub fn create_index(&self, name: &str, field: &str, field_schema: &Value) -> Result<u64> {
        const SCHEMAS: [&str; 8] = [
            "keyword", "integer", "float", "geo", "text", "bool", "datetime", "uuid",
        ];
        let (schema, params) = match field_schema {
            Value::String(schema) => (schema.as_str(), Value::Null),
            Value::Object(params) => (
                params.get("type").and_then(Value::as_str).unwrap_or(""),
                field_schema.clone(),
            ),
            _ => ("", Value::Null),
        };
        if !SCHEMAS.contains(&schema) {
            return Err(VecError::bad_request(format!(
                "Format error in JSON body: unknown field_schema `{schema}`"
            )));
        }
        match params.get("is_tenant") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(_)) if matches!(schema, "keyword" | "uuid") => {}
            Some(Value::Bool(_)) => {
                return Err(VecError::bad_request(format!(
                    "Format error in JSON body: is_tenant applies to keyword and uuid indexes, not {schema}"
                )));
            }
            Some(_) => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: is_tenant must be a boolean",
                ));
            }
        }
        if field.is_empty() {
            return Err(VecError::bad_request(
                "Format error in JSON body: field_name must not be empty",
            ));
        }
        if schema == "text" {
            crate::text::TextOptions::parse(&params)?;
        }
        if schema == "integer"
            && params.get("lookup") == Some(&Value::Bool(false))
            && params.get("range") == Some(&Value::Bool(false))
        {
            return Err(VecError {
                status: 422,
                message:
                    "Validation error: the 'lookup' and 'range' capabilities can't be both disabled"
                        .into(),
            });
        }
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        self.db().execute(
            "INSERT OR REPLACE INTO payload_indexes (collection, field, schema, params) \
             VALUES (?1, ?2, ?3, ?4)",
            params![name, field, schema, params.to_string()],
        )?;
        let mut index = PayloadIndex::new(schema, params);
        let collection = &mut *collection;
        for (slot, point) in collection.slots.iter().enumerate() {
            if let Some(point) = point {
                index.add(slot as u32, field, &point.payload, &collection.dense);
            }
        }
        collection.indexes.insert(field.to_string(), index);
        Ok(self.next_operation())
    }

    pub fn delete_index(&self, name: &str, field: &str) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        self.db().execute(
            "DELETE FROM payload_indexes WHERE collection = ?1 AND field = ?2",
            params![name, field],
        )?;
        collection.indexes.remove(field);
        Ok(self.next_operation())
    }

    /// Changes a collection's parameters (`PATCH collections/:name`): a sparse vector's `modifier`
    /// (`idf` or `none`, applied from the next query on), the collection's `hnsw_config` (`m` and
    /// `ef_construct` rebuild the graphs; `full_scan_threshold` applies at once) and its `metadata`
    /// (merged key by key, a null removing its key). Parameters this store cannot change
    /// (quantisation, storage placement, optimizers, per-vector HNSW settings) are refused by name
    /// rather than accepted and ignored; nothing changes when any is refused.
    pub fn update_collection(&self, name: &str, body: &Value) -> Result<()> {
        let body = body.as_object().ok_or_else(|| {
            VecError::bad_request("Format error in JSON body: expected an object")
        })?;
        if let Some(field) = body
            .iter()
            .find(|(k, v)| {
                !v.is_null() && !matches!(k.as_str(), "sparse_vectors" | "hnsw_config" | "metadata")
            })
            .map(|(k, _)| k)
        {
            return Err(VecError::bad_request(format!(
                "Bad request: this store does not change `{field}` of a collection (it can change \
                 `sparse_vectors.*.modifier`, `hnsw_config` and `metadata`)"
            )));
        }
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        let mut config = collection.config.clone();
        if let Some(sparse) = body.get("sparse_vectors").filter(|v| !v.is_null()) {
            let sparse = sparse.as_object().ok_or_else(|| {
                VecError::bad_request("Format error in JSON body: sparse_vectors must be an object")
            })?;
            for (vector, params) in sparse {
                if !config.sparse.contains_key(vector) {
                    return Err(VecError::wrong_input(format!(
                        "Not existing vector name error: {vector}"
                    )));
                }
                let params = params.as_object().cloned().unwrap_or_default();
                if let Some(field) = params
                    .iter()
                    .find(|(k, v)| !v.is_null() && k.as_str() != "modifier")
                    .map(|(k, _)| k)
                {
                    return Err(VecError::bad_request(format!(
                        "Bad request: this store does not change `sparse_vectors.{vector}.{field}`"
                    )));
                }
                if let Some(modifier) = params.get("modifier").filter(|m| !m.is_null()) {
                    let parsed = Config::parse(&serde_json::json!({
                        "sparse_vectors": {vector: {"modifier": modifier}}
                    }))?;
                    config.sparse.extend(parsed.sparse);
                }
            }
        }
        match body.get("metadata") {
            None | Some(Value::Null) => {}
            // Merged key by key, a null removing its key, as Qdrant does.
            Some(Value::Object(changes)) => {
                for (key, value) in changes {
                    if value.is_null() {
                        config.metadata.remove(key);
                    } else {
                        config.metadata.insert(key.clone(), value.clone());
                    }
                }
            }
            Some(_) => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: metadata must be an object",
                ));
            }
        }
        let mut rebuild = false;
        if let Some(hnsw) = body.get("hnsw_config").filter(|v| !v.is_null()) {
            let mut merged = config.to_json();
            let current = merged["hnsw_config"]
                .as_object_mut()
                .expect("hnsw_config is an object");
            for (key, value) in hnsw.as_object().into_iter().flatten() {
                if !matches!(key.as_str(), "m" | "ef_construct" | "full_scan_threshold") {
                    return Err(VecError::bad_request(format!(
                        "Bad request: this store does not change `hnsw_config.{key}`"
                    )));
                }
                current.insert(key.clone(), value.clone());
            }
            let parsed = Config::parse(&merged)?;
            rebuild = parsed.hnsw.m != config.hnsw.m
                || parsed.hnsw.ef_construct != config.hnsw.ef_construct;
            config.hnsw = parsed.hnsw;
        }
        write_config(&self.db(), name, &config)?;
        collection.reconfigure(config, rebuild)
    }

    /// Adds the vector `vector` to collection `name` (`PUT collections/:name/vectors/:vector`, body
    /// `{"dense": {size, distance, multivector_config?}}` or `{"sparse": {modifier?}}`); existing
    /// points have no value for it until they are written with one.
    pub fn create_vector(&self, name: &str, vector: &str, body: &Value) -> Result<u64> {
        let (dense, sparse) = (&body["dense"], &body["sparse"]);
        if dense.is_null() == sparse.is_null() {
            return Err(VecError::validation(
                "a new vector is either `dense` or `sparse`",
            ));
        }
        if vector.is_empty() {
            return Err(VecError::validation("vector_name: must not be empty"));
        }
        if let Some(size) = dense.get("size")
            && !size.as_u64().is_some_and(|n| (1..=65_536).contains(&n))
        {
            return Err(VecError::validation(format!(
                "size: value {size} invalid, must be from 1 to 65536"
            )));
        }
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        if collection.config.unnamed {
            return Err(VecError::wrong_input(
                "this collection has one unnamed vector; named vectors cannot be added to it",
            ));
        }
        if collection.config.dense.contains_key(vector)
            || collection.config.sparse.contains_key(vector)
        {
            return Err(VecError::wrong_input(format!(
                "vector `{vector}` already exists in collection `{name}`"
            )));
        }
        let mut config = collection.config.clone();
        if dense.is_null() {
            // The same reading of sparse parameters as at creation.
            let parsed = Config::parse(&serde_json::json!({"sparse_vectors": {vector: sparse}}))?;
            config.sparse.extend(parsed.sparse);
        } else {
            config
                .dense
                .insert(vector.to_string(), super::config::parse_dense(dense)?);
        }
        write_config(&self.db(), name, &config)?;
        collection.add_vector(config, vector)?;
        Ok(self.next_operation())
    }

    /// Removes the vector `vector` from collection `name` and from every point (a point left with
    /// no vector keeps its payload, as in Qdrant).
    pub fn delete_vector(&self, name: &str, vector: &str) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
        if !collection.config.dense.contains_key(vector)
            && !collection.config.sparse.contains_key(vector)
        {
            return Err(VecError {
                status: 404,
                message: format!("Not found: vector `{vector}` of collection `{name}`"),
            });
        }
        if collection.config.unnamed {
            return Err(VecError::wrong_input(
                "the unnamed vector of a collection cannot be deleted",
            ));
        }
        let mut config = collection.config.clone();
        config.dense.remove(vector);
        config.sparse.remove(vector);
        let rewritten: Vec<(PointId, Vec<u8>)> = collection
            .slots_holding(vector)
            .into_iter()
            .filter_map(|slot| {
                let mut vectors = collection.point_vectors(slot)?;
                vectors.dense.remove(vector);
                vectors.sparse.remove(vector);
                vectors.multi.remove(vector);
                Some((collection.id_of(slot)?.clone(), vectors.encode()))
            })
            .collect();
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE points SET vectors = ?3 WHERE collection = ?1 AND id = ?2",
                )?;
                for (id, vectors) in &rewritten {
                    update.execute(params![name, id.storage_key(), vectors])?;
                }
            }
            write_config(&tx, name, &config)?;
            tx.commit()?;
        }
        collection.remove_vector(config, vector);
        Ok(self.next_operation())
    }

    /// How many points of collection `name` are on disk (tests compare it with memory).
    pub fn stored_count(&self, name: &str) -> Result<usize> {
        let count: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM points WHERE collection = ?1",
            [name],
            |r| r.get(0),
        )?;
        Ok(count as usize)
    }
}

/// Writes collection `name`'s changed configuration (in `db`, or in a transaction of it).
fn write_config(db: &Connection, name: &str, config: &Config) -> Result<()> {
    db.execute(
        "UPDATE collections SET config = ?2 WHERE name = ?1",
        params![name, config.to_json().to_string()],
    )?;
    Ok(())
}

/// Which points a delete applies to.
#[derive(Debug)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

/// A change to the payloads of selected points, as Qdrant's payload endpoints make them.
#[derive(Debug, Clone)]
pub enum PayloadChange {
    /// `POST points/payload`: merge these keys in (at `key`, a dotted path of objects, when given).
    Set {
        values: Map<String, Value>,
        key: Option<String>,
    },
    /// `PUT points/payload`: the payload becomes exactly this.
    Overwrite(Map<String, Value>),
    /// `POST points/payload/delete`: remove these paths (dotted, `[]` into arrays).
    Delete(Vec<String>),
    /// `POST points/payload/clear`: the payload becomes empty.
    Clear,
}

/// Which items of an array a step of a set-payload key goes into.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    /// The value itself (`name`).
    Whole,
    /// One item (`name[2]`).
    At(usize),
    /// Every item (`name[]`).
    Every,
}

/// One step of a set-payload key: `name`, `name[N]` or `name[]`.
fn step(part: &str) -> (&str, Item) {
    if let Some(name) = part.strip_suffix("[]") {
        return (name, Item::Every);
    }
    if let Some((name, index)) = part.strip_suffix(']').and_then(|p| p.rsplit_once('['))
        && let Ok(index) = index.parse()
    {
        return (name, Item::At(index));
    }
    (part, Item::Whole)
}

fn as_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("made an object above")
}

/// Sets `values` at the object `steps` lead to from `target`: a missing or non-object step becomes
/// an object; an array step names an item (out of range: nothing is set) or every item.
fn set_into(target: &mut Map<String, Value>, steps: &[(&str, Item)], values: &Map<String, Value>) {
    let Some(((name, item), rest)) = steps.split_first() else {
        for (k, v) in values {
            target.insert(k.clone(), v.clone());
        }
        return;
    };
    match item {
        Item::Whole => {
            let entry = target
                .entry(name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            set_into(as_object(entry), rest, values);
        }
        Item::At(index) => {
            if let Some(Value::Array(items)) = target.get_mut(*name)
                && let Some(item) = items.get_mut(*index)
            {
                set_into(as_object(item), rest, values);
            }
        }
        Item::Every => {
            if let Some(Value::Array(items)) = target.get_mut(*name) {
                for item in items {
                    set_into(as_object(item), rest, values);
                }
            }
        }
    }
}

impl PayloadChange {
    fn apply(&self, payload: &Map<String, Value>) -> Map<String, Value> {
        match self {
            PayloadChange::Set { values, key } => {
                let mut next = payload.clone();
                let steps: Vec<(&str, Item)> =
                    key.iter().flat_map(|k| k.split('.')).map(step).collect();
                set_into(&mut next, &steps, values);
                next
            }
            PayloadChange::Overwrite(values) => values.clone(),
            PayloadChange::Delete(keys) => {
                let mut next = Value::Object(payload.clone());
                for key in keys {
                    super::query::remove_path(&mut next, key);
                }
                match next {
                    Value::Object(map) => map,
                    _ => Map::new(),
                }
            }
            PayloadChange::Clear => Map::new(),
        }
    }
}
