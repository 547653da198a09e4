//! Mango on the document store: JSON indexes (SQLite expression indexes on the fields they name),
//! `_find` with the selector pushed down to SQL where an index covers it, and bookmarks to page on.

use rusqlite::{Connection, params, params_from_iter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{DocError, Engine, Result, with_meta};
use crate::mango::{Condition, Selector, Sort, project};

impl Engine {
    pub fn create_index(&self, db: &str, request: &Value) -> Result<Value> {
        let fields = index_fields(request)?;
        let field_list: Vec<&str> = fields.iter().map(String::as_str).collect();
        let digest = {
            let mut hasher = Sha256::new();
            hasher.update(db.as_bytes());
            hasher.update(field_list.join(",").as_bytes());
            let d = hasher.finalize();
            d[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let name = request
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| digest.clone());
        let ddoc = request
            .get("ddoc")
            .and_then(Value::as_str)
            .map(|d| d.trim_start_matches("_design/").to_string())
            .unwrap_or_else(|| digest.clone());
        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let inserted = conn.execute(
            "INSERT INTO mango_indexes (db, ddoc, name, fields) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![db, ddoc, name, serde_json::to_string(&fields).unwrap_or_default()],
        )?;
        // The expression index serves every database: rows are keyed by (db, value).
        let first = &fields[0];
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS \"{}\" ON docs (db, json_extract(body, '{}'))",
            index_name(first),
            json_path(first)
        ))?;
        Ok(json!({
            "result": if inserted == 0 { "exists" } else { "created" },
            "id": format!("_design/{ddoc}"),
            "name": name,
        }))
    }

    pub fn list_indexes(&self, db: &str) -> Result<Value> {
        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let mut statement = conn.prepare_cached(
            "SELECT ddoc, name, fields FROM mango_indexes WHERE db = ?1 ORDER BY ddoc, name",
        )?;
        let mut indexes = vec![json!({
            "ddoc": null, "name": "_all_docs", "type": "special",
            "def": {"fields": [{"_id": "asc"}]}
        })];
        let rows = statement.query_map([db], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (ddoc, name, fields) = row?;
            let fields: Vec<String> = serde_json::from_str(&fields).unwrap_or_default();
            let def: Vec<Value> = fields.iter().map(|f| json!({ f.clone(): "asc" })).collect();
            indexes.push(json!({
                "ddoc": format!("_design/{ddoc}"), "name": name, "type": "json", "def": {"fields": def}
            }));
        }
        Ok(json!({"total_rows": indexes.len(), "indexes": indexes}))
    }

    fn indexed_fields(conn: &Connection, db: &str) -> Result<Vec<Vec<String>>> {
        let mut statement =
            conn.prepare_cached("SELECT fields FROM mango_indexes WHERE db = ?1")?;
        let rows = statement.query_map([db], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for fields in rows {
            out.push(serde_json::from_str(&fields?).unwrap_or_default());
        }
        Ok(out)
    }

    /// `POST /{db}/_find`.
    pub fn find(&self, db: &str, request: &Value) -> Result<Value> {
        let selector = request
            .get("selector")
            .ok_or_else(|| DocError::bad_request("Missing required key: selector"))?;
        let selector =
            Selector::parse(selector).map_err(|e| DocError::new(400, "invalid_selector", e.0))?;
        let sort = request
            .get("sort")
            .map(Sort::parse)
            .transpose()
            .map_err(|e| DocError::new(400, "invalid_sort_json", e.0))?;
        let fields: Option<Vec<String>> = match request.get("fields") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| DocError::bad_request("fields must be an array of strings"))?,
            ),
            Some(_) => return Err(DocError::bad_request("fields must be an array of strings")),
        };
        let limit = match request.get("limit") {
            None => 25,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| DocError::bad_request("limit must be a non-negative integer"))?
                as usize,
        };
        let mut skip = match request.get("skip") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| DocError::bad_request("skip must be a non-negative integer"))?
                as usize,
        };
        if let Some(bookmark) = request.get("bookmark").and_then(Value::as_str)
            && bookmark != "nil"
        {
            skip += decode_bookmark(bookmark)?;
        }

        let conn = self.lock();
        Self::update_seq(&conn, db)?;
        let indexes = Self::indexed_fields(&conn, db)?;
        if let Some(sort) = &sort {
            let usable = indexes.iter().any(|fields| {
                fields.len() >= sort.fields.len()
                    && fields
                        .iter()
                        .zip(&sort.fields)
                        .all(|(f, s)| split_path(f) == *s)
            });
            if !usable && !sort.fields.iter().all(|f| f == &["_id".to_string()]) {
                return Err(DocError::new(
                    400,
                    "no_usable_index",
                    "No index exists for this sort, try indexing by the sort fields.",
                ));
            }
        }

        // Narrow the scan with an index when the selector pins its first field; the selector is
        // still applied to every candidate, so the narrowing only has to be a superset.
        let mut args: Vec<rusqlite::types::Value> = vec![db.to_string().into()];
        let mut index_clause = None;
        for fields in &indexes {
            let first = &fields[0];
            let mut conditions = Vec::new();
            selector.required_conditions(&split_path(first), &mut conditions);
            if let Some(clause) = conditions
                .iter()
                .find_map(|c| pushdown(c, first, &mut args))
            {
                index_clause = Some((index_name(first), clause));
                break;
            }
        }
        let used_index = index_clause.is_some();
        // Without statistics SQLite prefers the primary key to an expression index, so the index
        // is named explicitly.
        let sql = match &index_clause {
            Some((index, clause)) => format!(
                "SELECT id, rev, body FROM docs INDEXED BY \"{index}\" WHERE db = ?1 AND deleted = 0{clause}"
            ),
            None => "SELECT id, rev, body FROM docs WHERE db = ?1 AND deleted = 0".to_string(),
        };
        // No ORDER BY: it would tempt SQLite to walk the primary key instead of the expression
        // index. Candidates are put in id order here, which costs little for what an index leaves.
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query(params_from_iter(args.iter()))?;
        let mut matched = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let rev: String = row.get(1)?;
            let body: String = row.get(2)?;
            let doc = with_meta(&id, &rev, &body);
            if selector.matches(&doc) {
                matched.push(doc);
            }
        }
        matched.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
        if let Some(sort) = &sort {
            matched.sort_by(|a, b| sort.compare(a, b));
        }
        let end = skip.saturating_add(limit).min(matched.len());
        let page: Vec<Value> = matched
            .get(skip.min(matched.len())..end)
            .unwrap_or_default()
            .iter()
            .map(|doc| match &fields {
                Some(fields) => project(doc, fields),
                None => doc.clone(),
            })
            .collect();
        let mut response = json!({"docs": page, "bookmark": encode_bookmark(end)});
        if !used_index {
            response["warning"] = Value::String(
                "No matching index found, create an index to optimize query time.".into(),
            );
        }
        Ok(response)
    }
}

fn index_fields(request: &Value) -> Result<Vec<String>> {
    let fields = request
        .get("index")
        .and_then(|i| i.get("fields"))
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| DocError::bad_request("Missing required key: index.fields"))?;
    let mut out = Vec::new();
    for field in fields {
        let name = match field {
            Value::String(name) => name.clone(),
            Value::Object(map) if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
            _ => return Err(DocError::bad_request("Invalid index field")),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(DocError::bad_request(format!(
                "Index field `{name}` must be letters, digits, '_', '-' and '.'"
            )));
        }
        out.push(name);
    }
    Ok(out)
}

fn split_path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

fn json_path(field: &str) -> String {
    let mut path = String::from("$");
    for part in field.split('.') {
        path.push_str(&format!(".\"{part}\""));
    }
    path
}

/// The SQLite expression index behind Mango indexes whose first field is `field`. The field is
/// hex-encoded so that distinct fields never share a name.
fn index_name(field: &str) -> String {
    let hex: String = field.bytes().map(|b| format!("{b:02x}")).collect();
    format!("mango_{hex}")
}

/// A SQL clause that returns a superset of the documents `condition` matches on `field`, if one can
/// use the expression index.
fn pushdown(
    condition: &Condition,
    field: &str,
    args: &mut Vec<rusqlite::types::Value>,
) -> Option<String> {
    let expr = format!("json_extract(body, '{}')", json_path(field));
    let scalar = |v: &Value| -> Option<rusqlite::types::Value> {
        match v {
            Value::String(s) => Some(s.clone().into()),
            Value::Number(n) => n
                .as_i64()
                .map(Into::into)
                .or_else(|| n.as_f64().map(Into::into)),
            _ => None,
        }
    };
    match condition {
        Condition::Eq(value) => {
            args.push(scalar(value)?);
            Some(format!(" AND {expr} = ?{}", args.len()))
        }
        Condition::In(values) if !values.is_empty() => {
            let scalars: Option<Vec<_>> = values.iter().map(scalar).collect();
            let mut placeholders = Vec::new();
            for value in scalars? {
                args.push(value);
                placeholders.push(format!("?{}", args.len()));
            }
            Some(format!(" AND {expr} IN ({})", placeholders.join(", ")))
        }
        // Above a number, collation puts larger numbers, then strings, arrays and objects, which
        // SQLite also orders above numbers.
        Condition::Gt(Value::Number(_)) | Condition::Gte(Value::Number(_)) => {
            let (op, value) = match condition {
                Condition::Gt(v) => (">", v),
                Condition::Gte(v) => (">=", v),
                _ => unreachable!("matched above"),
            };
            args.push(scalar(value)?);
            Some(format!(" AND {expr} {op} ?{}", args.len()))
        }
        _ => None,
    }
}

fn encode_bookmark(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

fn decode_bookmark(bookmark: &str) -> Result<usize> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(bookmark)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix('o').and_then(|n| n.parse().ok()))
        .ok_or_else(|| DocError::bad_request("Invalid bookmark value"))
}
