//! The document store's storage: databases of JSON documents with MVCC revisions, a changes feed and
//! Mango indexes, on SQLite in WAL mode (a write is durable once acknowledged, even if the process is
//! killed).
//!
//! It keeps each document's winning revision only: there is no replication, so there are no conflicts
//! to keep.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// An error in CouchDB's vocabulary: status, `error` and `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub status: u16,
    pub error: &'static str,
    pub reason: String,
}

impl DocError {
    pub fn new(status: u16, error: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            error,
            reason: reason.into(),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400, "bad_request", reason)
    }

    fn no_db() -> Self {
        Self::new(404, "not_found", "Database does not exist.")
    }

    fn conflict() -> Self {
        Self::new(409, "conflict", "Document update conflict.")
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.error, "reason": self.reason })
    }
}

impl From<rusqlite::Error> for DocError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!("document store: {error}");
        Self::new(500, "internal_server_error", "storage error")
    }
}

pub(crate) type Result<T> = std::result::Result<T, DocError>;

/// Options of `_all_docs`.
#[derive(Debug, Clone, Default)]
pub struct AllDocs {
    pub keys: Option<Vec<String>>,
    pub start_key: Option<String>,
    pub end_key: Option<String>,
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: Option<usize>,
    pub skip: usize,
    pub include_docs: bool,
}

/// The document store engine.
#[derive(Debug)]
pub struct Engine {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS dbs (
    name TEXT PRIMARY KEY,
    update_seq INTEGER NOT NULL DEFAULT 0,
    doc_count INTEGER NOT NULL DEFAULT 0,
    del_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS docs (
    db TEXT NOT NULL,
    id TEXT NOT NULL,
    rev TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    PRIMARY KEY (db, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_by_seq ON docs (db, seq);
CREATE TABLE IF NOT EXISTS mango_indexes (
    db TEXT NOT NULL,
    ddoc TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (db, ddoc, name)
);
";

/// CouchDB's database name rule.
pub fn validate_db_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+-/".contains(c))
        && name.len() <= 238;
    if valid {
        Ok(())
    } else {
        Err(DocError::new(
            400,
            "illegal_database_name",
            format!(
                "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
            ),
        ))
    }
}

fn validate_doc_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(DocError::bad_request("Document id must not be empty"));
    }
    if id.starts_with('_') && !id.starts_with("_design/") && !id.starts_with("_local/") {
        return Err(DocError::bad_request(
            "Only reserved document ids may start with underscore.",
        ));
    }
    Ok(())
}

fn new_rev(previous: Option<&str>, body: &Value) -> String {
    let generation = previous
        .and_then(|rev| rev.split_once('-'))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut hasher = Sha256::new();
    hasher.update(previous.unwrap_or("").as_bytes());
    hasher.update(body.to_string().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{generation}-{hex}")
}

/// A fresh document id: 32 random hex digits, like CouchDB's.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A written document split into its body and CouchDB's special fields.
struct Written {
    body: Map<String, Value>,
    id: Option<String>,
    rev: Option<String>,
    deleted: bool,
}

/// Splits a document into its body and the `_id`, `_rev` and `_deleted` fields.
fn split(doc: Value) -> Result<Written> {
    let Value::Object(mut map) = doc else {
        return Err(DocError::new(
            400,
            "bad_request",
            "Document must be a JSON object",
        ));
    };
    let id = match map.remove("_id") {
        None => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err(DocError::bad_request("Document id must be a string")),
    };
    let rev = match map.remove("_rev") {
        None | Some(Value::Null) => None,
        Some(Value::String(rev)) => Some(rev),
        Some(_) => return Err(DocError::bad_request("Invalid rev format")),
    };
    let deleted = matches!(map.remove("_deleted"), Some(Value::Bool(true)));
    if let Some(key) = map.keys().find(|k| k.starts_with('_')) {
        return Err(DocError::new(
            400,
            "doc_validation",
            format!("Bad special document member: {key}"),
        ));
    }
    Ok(Written {
        body: map,
        id,
        rev,
        deleted,
    })
}

pub(crate) fn with_meta(id: &str, rev: &str, body: &str) -> Value {
    let mut map: Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
    map.insert("_id".into(), Value::String(id.to_string()));
    map.insert("_rev".into(), Value::String(rev.to_string()));
    Value::Object(map)
}

impl Engine {
    /// Opens (or creates) the store in a SQLite file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Self::add_counts(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// A store made before databases kept their document counts gets them, counted once.
    fn add_counts(conn: &Connection) -> anyhow::Result<()> {
        let has_counts = conn
            .prepare("SELECT 1 FROM pragma_table_info('dbs') WHERE name = 'doc_count'")?
            .exists([])?;
        if !has_counts {
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE dbs ADD COLUMN doc_count INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE dbs ADD COLUMN del_count INTEGER NOT NULL DEFAULT 0;
                 UPDATE dbs SET
                     doc_count = (SELECT COUNT(*) FROM docs WHERE docs.db = dbs.name AND deleted = 0),
                     del_count = (SELECT COUNT(*) FROM docs WHERE docs.db = dbs.name AND deleted = 1);
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn list_dbs(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached("SELECT name FROM dbs ORDER BY name")?;
        let names = statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    pub fn create_db(&self, name: &str) -> Result<()> {
        validate_db_name(name)?;
        let conn = self.lock();
        let inserted = conn.execute(
            "INSERT INTO dbs (name) VALUES (?1) ON CONFLICT DO NOTHING",
            [name],
        )?;
        if inserted == 0 {
            return Err(DocError::new(
                412,
                "file_exists",
                "The database could not be created, the file already exists.",
            ));
        }
        Ok(())
    }

    pub fn delete_db(&self, name: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM dbs WHERE name = ?1", [name])? == 0 {
            return Err(DocError::no_db());
        }
        tx.execute("DELETE FROM docs WHERE db = ?1", [name])?;
        tx.execute("DELETE FROM mango_indexes WHERE db = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn update_seq(conn: &Connection, db: &str) -> Result<i64> {
        conn.prepare_cached("SELECT update_seq FROM dbs WHERE name = ?1")?
            .query_row([db], |row| row.get(0))
            .optional()?
            .ok_or_else(DocError::no_db)
    }

    /// A database's live and deleted documents, as kept by every write.
    pub(crate) fn counts(conn: &Connection, db: &str) -> Result<(i64, i64)> {
        Ok(conn
            .prepare_cached("SELECT doc_count, del_count FROM dbs WHERE name = ?1")?
            .query_row([db], |row| Ok((row.get(0)?, row.get(1)?)))?)
    }

    pub fn db_info(&self, db: &str) -> Result<Value> {
        let conn = self.lock();
        let update_seq = Self::update_seq(&conn, db)?;
        let (live, deleted) = Self::counts(&conn, db)?;
        Ok(json!({
            "db_name": db,
            "doc_count": live,
            "doc_del_count": deleted,
            "update_seq": update_seq,
            "instance_start_time": "0",
        }))
    }

    /// Writes one document; `rev` from the query string takes part as `_rev` would.
    pub fn put(
        &self,
        db: &str,
        id: Option<&str>,
        doc: Value,
        rev: Option<String>,
    ) -> Result<(String, String)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let result = Self::write(&tx, db, id, doc, rev)?;
        tx.commit()?;
        Ok(result)
    }

    fn write(
        conn: &Connection,
        db: &str,
        path_id: Option<&str>,
        doc: Value,
        query_rev: Option<String>,
    ) -> Result<(String, String)> {
        let seq = Self::update_seq(conn, db)? + 1;
        let Written {
            body,
            id: body_id,
            rev: body_rev,
            deleted,
        } = split(doc)?;
        let id = match (path_id, body_id) {
            (Some(path), Some(body)) if path != body => {
                return Err(DocError::bad_request(
                    "Document id must match the id in the URL",
                ));
            }
            (Some(path), _) => path.to_string(),
            (None, Some(body)) => body,
            (None, None) => new_id(),
        };
        validate_doc_id(&id)?;
        let rev = body_rev.or(query_rev);
        let current: Option<(String, bool)> = conn
            .prepare_cached("SELECT rev, deleted FROM docs WHERE db = ?1 AND id = ?2")?
            .query_row(params![db, id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let previous = match (&current, &rev) {
            (None, None) => None,
            (None, Some(_)) => return Err(DocError::conflict()),
            (Some((current, true)), None) => Some(current.clone()),
            (Some((current, _)), Some(given)) if current == given => Some(current.clone()),
            (Some(_), _) => return Err(DocError::conflict()),
        };
        let body = Value::Object(if deleted { Map::new() } else { body });
        let new = new_rev(previous.as_deref(), &body);
        conn.prepare_cached(
            "INSERT INTO docs (db, id, rev, seq, deleted, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (db, id) DO UPDATE SET rev = ?3, seq = ?4, deleted = ?5, body = ?6",
        )?
        .execute(params![db, id, new, seq, deleted, body.to_string()])?;
        // The database's counts follow the document: live or deleted before, live or deleted now.
        let was = |gone: bool| i64::from(current.as_ref().is_some_and(|(_, d)| *d == gone));
        conn.prepare_cached(
            "UPDATE dbs SET update_seq = ?2, doc_count = doc_count + ?3, del_count = del_count + ?4
             WHERE name = ?1",
        )?
        .execute(params![
            db,
            seq,
            i64::from(!deleted) - was(false),
            i64::from(deleted) - was(true)
        ])?;
        Ok((id, new))
    }

    pub fn get(&self, db: &str, id: &str) -> Result<Value> {
        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let row: Option<(String, bool, String)> = conn
            .query_row(
                "SELECT rev, deleted, body FROM docs WHERE db = ?1 AND id = ?2",
                params![db, id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        match row {
            None => Err(DocError::new(404, "not_found", "missing")),
            Some((_, true, _)) => Err(DocError::new(404, "not_found", "deleted")),
            Some((rev, false, body)) => Ok(with_meta(id, &rev, &body)),
        }
    }

    pub fn delete(&self, db: &str, id: &str, rev: Option<String>) -> Result<String> {
        let Some(rev) = rev else {
            return Err(DocError::conflict());
        };
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let exists: Option<bool> = tx
            .query_row(
                "SELECT deleted FROM docs WHERE db = ?1 AND id = ?2",
                params![db, id],
                |row| row.get(0),
            )
            .optional()?;
        Self::update_seq(&tx, db)?;
        match exists {
            None => return Err(DocError::new(404, "not_found", "missing")),
            Some(true) => return Err(DocError::new(404, "not_found", "deleted")),
            Some(false) => {}
        }
        let (_, new) = Self::write(
            &tx,
            db,
            Some(id),
            json!({ "_rev": rev, "_deleted": true }),
            None,
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// `_bulk_docs`: every document in one transaction; each gets its own result.
    pub fn bulk(&self, db: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        Self::update_seq(&tx, db)?;
        let mut results = Vec::with_capacity(docs.len());
        for doc in docs {
            let id = doc.get("_id").and_then(Value::as_str).map(str::to_string);
            match Self::write(&tx, db, None, doc, None) {
                Ok((id, rev)) => results.push(json!({"ok": true, "id": id, "rev": rev})),
                Err(error) if error.status >= 500 => return Err(error),
                Err(error) => {
                    results.push(json!({"id": id, "error": error.error, "reason": error.reason}))
                }
            }
        }
        tx.commit()?;
        Ok(results)
    }

    pub fn all_docs(&self, db: &str, query: &AllDocs) -> Result<Value> {
        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let (total, _) = Self::counts(&conn, db)?;
        let mut rows = Vec::new();
        if let Some(keys) = &query.keys {
            let mut statement = conn
                .prepare_cached("SELECT rev, deleted, body FROM docs WHERE db = ?1 AND id = ?2")?;
            for key in keys {
                let found: Option<(String, bool, String)> = statement
                    .query_row(params![db, key], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .optional()?;
                rows.push(match found {
                    None => json!({"key": key, "error": "not_found"}),
                    Some((rev, true, _)) => json!({
                        "id": key, "key": key, "value": {"rev": rev, "deleted": true}, "doc": null
                    }),
                    Some((rev, false, body)) => {
                        let mut row = json!({"id": key, "key": key, "value": {"rev": rev}});
                        if query.include_docs {
                            row["doc"] = with_meta(key, &rev, &body);
                        }
                        row
                    }
                });
            }
            return Ok(json!({"total_rows": total, "offset": 0, "rows": rows}));
        }

        let (low, high) = if query.descending {
            (query.end_key.clone(), query.start_key.clone())
        } else {
            (query.start_key.clone(), query.end_key.clone())
        };
        let (low_inclusive, high_inclusive) = if query.descending {
            (query.inclusive_end, true)
        } else {
            (true, query.inclusive_end)
        };
        let mut sql = String::from("SELECT id, rev, body FROM docs WHERE db = ?1 AND deleted = 0");
        let mut args: Vec<String> = vec![db.to_string()];
        if let Some(low) = low {
            args.push(low);
            sql.push_str(&format!(
                " AND id {} ?{}",
                if low_inclusive { ">=" } else { ">" },
                args.len()
            ));
        }
        if let Some(high) = high {
            args.push(high);
            sql.push_str(&format!(
                " AND id {} ?{}",
                if high_inclusive { "<=" } else { "<" },
                args.len()
            ));
        }
        sql.push_str(if query.descending {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id ASC"
        });
        let limit = query.limit.map_or(-1, |l| l as i64);
        sql.push_str(&format!(" LIMIT {limit} OFFSET {}", query.skip));
        let mut statement = conn.prepare(&sql)?;
        let mut cursor = statement.query(params_from_iter(args.iter()))?;
        while let Some(row) = cursor.next()? {
            let id: String = row.get(0)?;
            let rev: String = row.get(1)?;
            let mut out = json!({"id": id, "key": id, "value": {"rev": rev}});
            if query.include_docs {
                let body: String = row.get(2)?;
                out["doc"] = with_meta(&id, &rev, &body);
            }
            rows.push(out);
        }
        Ok(json!({"total_rows": total, "offset": query.skip, "rows": rows}))
    }

    pub fn changes(
        &self,
        db: &str,
        since: i64,
        limit: Option<usize>,
        include_docs: bool,
    ) -> Result<Value> {
        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let mut statement = conn.prepare_cached(
            "SELECT id, rev, seq, deleted, body FROM docs WHERE db = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let limit = limit.map_or(-1, |l| l as i64);
        let mut results = Vec::new();
        let mut last_seq = since;
        let mut rows = statement.query(params![db, since, limit])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let rev: String = row.get(1)?;
            let seq: i64 = row.get(2)?;
            let deleted: bool = row.get(3)?;
            let mut change = json!({"seq": seq, "id": id, "changes": [{"rev": rev}]});
            if deleted {
                change["deleted"] = Value::Bool(true);
            }
            if include_docs {
                let body: String = row.get(4)?;
                change["doc"] = if deleted {
                    json!({"_id": id, "_rev": rev, "_deleted": true})
                } else {
                    with_meta(&id, &rev, &body)
                };
            }
            last_seq = seq;
            results.push(change);
        }
        drop(rows);
        let pending: i64 = conn.query_row(
            "SELECT COUNT(*) FROM docs WHERE db = ?1 AND seq > ?2",
            params![db, last_seq],
            |row| row.get(0),
        )?;
        Ok(json!({"results": results, "last_seq": last_seq, "pending": pending}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `_id`s of a `_find` answer, in order.
    fn doc_ids(found: &Value) -> Vec<&str> {
        found["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["_id"].as_str().unwrap())
            .collect()
    }

    fn engine() -> Engine {
        let dir = std::env::temp_dir().join(format!("edgerag-docstore-unit-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        Engine::open(&dir.join("docs.sqlite")).unwrap()
    }

    #[test]
    fn document_counts_follow_every_write_and_older_stores_get_them() {
        let counts = |engine: &Engine| {
            let info = engine.db_info("d").unwrap();
            let total = engine.all_docs("d", &AllDocs::default()).unwrap()["total_rows"].clone();
            assert_eq!(info["doc_count"], total);
            (
                info["doc_count"].as_i64().unwrap(),
                info["doc_del_count"].as_i64().unwrap(),
            )
        };
        let dir = std::env::temp_dir().join(format!("edgerag-docstore-counts-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docs.sqlite");
        let engine = Engine::open(&path).unwrap();
        engine.create_db("d").unwrap();
        let (_, a1) = engine.put("d", Some("a"), json!({"n": 1}), None).unwrap();
        engine.put("d", Some("b"), json!({"n": 1}), None).unwrap();
        assert_eq!(counts(&engine), (2, 0));
        let (_, a2) = engine
            .put("d", Some("a"), json!({"n": 2}), Some(a1))
            .unwrap();
        assert_eq!(counts(&engine), (2, 0), "an update is not a new document");
        assert!(engine.put("d", Some("a"), json!({"n": 3}), None).is_err());
        assert_eq!(counts(&engine), (2, 0), "a conflict changes nothing");
        engine.delete("d", "a", Some(a2)).unwrap();
        assert_eq!(counts(&engine), (1, 1));
        engine.put("d", Some("a"), json!({"n": 4}), None).unwrap();
        assert_eq!(counts(&engine), (2, 0), "written again after its delete");
        let results = engine
            .bulk("d", vec![json!({"_id": "c"}), json!({"_id": "b"})])
            .unwrap();
        assert_eq!(results[1]["error"], "conflict");
        assert_eq!(counts(&engine), (3, 0));
        drop(engine);
        // A store from before the counts were kept: they are counted once when it is opened.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE old (name TEXT PRIMARY KEY, update_seq INTEGER NOT NULL DEFAULT 0);
             INSERT INTO old SELECT name, update_seq FROM dbs;
             DROP TABLE dbs; ALTER TABLE old RENAME TO dbs;",
        )
        .unwrap();
        drop(conn);
        let engine = Engine::open(&path).unwrap();
        assert_eq!(counts(&engine), (3, 0));
        engine.put("d", Some("e"), json!({}), None).unwrap();
        assert_eq!(counts(&engine), (4, 0));
    }

    #[test]
    fn revisions_conflicts_and_deletes() {
        let e = engine();
        e.create_db("db").unwrap();
        let (_, r1) = e.put("db", Some("a"), json!({"x": 1}), None).unwrap();
        assert!(r1.starts_with("1-"));
        assert_eq!(
            e.put("db", Some("a"), json!({"x": 2}), None)
                .unwrap_err()
                .status,
            409
        );
        let (_, r2) = e
            .put("db", Some("a"), json!({"_rev": r1, "x": 2}), None)
            .unwrap();
        assert!(r2.starts_with("2-"));
        assert_eq!(e.get("db", "a").unwrap()["x"], 2);
        let r3 = e.delete("db", "a", Some(r2)).unwrap();
        assert!(r3.starts_with("3-"));
        assert_eq!(e.get("db", "a").unwrap_err().reason, "deleted");
        let (_, r4) = e.put("db", Some("a"), json!({"x": 3}), None).unwrap();
        assert!(
            r4.starts_with("4-"),
            "recreating a deleted doc continues its revisions"
        );
    }

    #[test]
    fn bulk_writes_report_each_document() {
        let e = engine();
        e.create_db("db").unwrap();
        e.put("db", Some("taken"), json!({}), None).unwrap();
        let results = e
            .bulk(
                "db",
                vec![
                    json!({"_id": "new"}),
                    json!({"_id": "taken"}),
                    json!({"v": 1}),
                ],
            )
            .unwrap();
        assert_eq!(results[0]["ok"], true);
        assert_eq!(results[1]["error"], "conflict");
        assert_eq!(results[2]["id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn find_uses_an_index_and_still_applies_the_selector() {
        let e = engine();
        e.create_db("db").unwrap();
        let docs = (0..50)
            .map(|i| json!({"_id": format!("d{i:02}"), "n": i, "even": i % 2 == 0}))
            .collect();
        e.bulk("db", docs).unwrap();
        e.create_index("db", &json!({"index": {"fields": ["n"]}}))
            .unwrap();
        let found = e
            .find("db", &json!({"selector": {"n": {"$gte": 40}, "even": true}, "sort": ["n"], "fields": ["_id", "n"]}))
            .unwrap();
        let ids = doc_ids(&found);
        assert_eq!(ids, ["d40", "d42", "d44", "d46", "d48"]);
        assert!(found.get("warning").is_none());
        let unsorted = e.find("db", &json!({"selector": {"even": true}, "sort": ["even"]}));
        assert_eq!(unsorted.unwrap_err().error, "no_usable_index");
    }

    #[test]
    fn bookmarks_page_through_results() {
        let e = engine();
        e.create_db("db").unwrap();
        e.bulk(
            "db",
            (0..7)
                .map(|i| json!({"_id": format!("d{i}"), "k": 1}))
                .collect(),
        )
        .unwrap();
        let first = e
            .find("db", &json!({"selector": {"k": 1}, "limit": 5}))
            .unwrap();
        assert_eq!(first["docs"].as_array().unwrap().len(), 5);
        let second = e
            .find(
                "db",
                &json!({"selector": {"k": 1}, "limit": 5, "bookmark": first["bookmark"]}),
            )
            .unwrap();
        let ids = doc_ids(&second);
        assert_eq!(ids, ["d5", "d6"]);
    }
}
