//! A search request as a client sends it, checked field by field (a 400 names the field), and its
//! filter as a vector store (Qdrant) filter that always starts with the caller's project and the live
//! versions, whatever the client's filter says.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::ApiError;
use crate::auth::records::{ProjectSettings, RetrievalMode};
use crate::ingest::visibility;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// The most hits one search returns.
pub const MAX_TOP_K: u32 = 100;
/// The most values in one list of a filter (documents, sources, tags).
pub const MAX_FILTER_VALUES: usize = 1_000;
/// The most metadata conditions in one filter.
pub const MAX_METADATA_CONDITIONS: usize = 32;
/// Chunks of one document on a page unless the request says otherwise.
pub const DEFAULT_PER_DOCUMENT: u32 = 3;

/// How a search ranks: by meaning, by words, or both fused.
pub type Mode = RetrievalMode;

/// The name of a mode as requests and replies spell it.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Hybrid => "hybrid",
        Mode::Semantic => "semantic",
        Mode::Keyword => "keyword",
    }
}

/// Parses a mode's name.
pub fn parse_mode(name: &str, field: &str) -> Result<Mode, ApiError> {
    match name {
        "hybrid" => Ok(Mode::Hybrid),
        "semantic" => Ok(Mode::Semantic),
        "keyword" => Ok(Mode::Keyword),
        other => Err(bad(
            field,
            &format!("is `{other}`; use hybrid, semantic or keyword"),
        )),
    }
}

/// A checked search request, the project's settings filled in where the client left a field out.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub query: String,
    pub mode: Mode,
    pub top_k: u32,
    pub filter: Filter,
    pub score_threshold: Option<f32>,
    pub highlight: bool,
    /// Most chunks of one document in the hits; 0 = no limit.
    pub per_document: u32,
}

/// What the client may narrow a search to. Every list is "any of"; `tags_all` is "all of".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub documents: Vec<String>,
    pub sources: Vec<String>,
    pub tags_any: Vec<String>,
    pub tags_all: Vec<String>,
    pub kind: Option<String>,
    pub metadata: BTreeMap<String, Condition>,
    /// Milliseconds since the epoch, inclusive.
    pub indexed_after: Option<u64>,
    pub indexed_before: Option<u64>,
}

/// A condition on one metadata field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to a string, integer or boolean.
    Equals(Value),
    /// Any of these strings or integers.
    AnyOf(Vec<Value>),
    /// A numeric range; each bound optional.
    Range {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
}

fn bad(field: &str, problem: &str) -> ApiError {
    ApiError::BadRequest(format!("`{field}` {problem}"))
}

fn only_fields(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(bad(
            &format!("{at}{unknown}"),
            &format!("is not a known field; known: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

impl SearchRequest {
    /// Checks a JSON search body; fields left out take the project's settings.
    pub fn from_json(body: &Value, settings: &ProjectSettings) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        only_fields(
            object,
            &[
                "query",
                "mode",
                "top_k",
                "filter",
                "score_threshold",
                "highlight",
                "per_document",
            ],
            "",
        )?;
        let query = match object.get("query") {
            Some(Value::String(q)) => q.clone(),
            Some(_) => return Err(bad("query", "must be a string")),
            None => return Err(bad("query", "is required")),
        };
        let mode = match object.get("mode") {
            None | Some(Value::Null) => settings.retrieval,
            Some(Value::String(name)) => parse_mode(name, "mode")?,
            Some(_) => return Err(bad("mode", "must be a string")),
        };
        let top_k = match object.get("top_k") {
            None | Some(Value::Null) => settings.top_k.clamp(1, MAX_TOP_K),
            Some(v) => v
                .as_u64()
                .filter(|k| (1..=u64::from(MAX_TOP_K)).contains(k))
                .ok_or_else(|| {
                    bad(
                        "top_k",
                        &format!("must be an integer from 1 to {MAX_TOP_K}"),
                    )
                })? as u32,
        };
        let score_threshold = match object.get("score_threshold") {
            None | Some(Value::Null) => settings.score_threshold,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| t.is_finite())
                    .ok_or_else(|| bad("score_threshold", "must be a number"))?
                    as f32,
            ),
        };
        let highlight = match object.get("highlight") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("highlight", "must be true or false")),
        };
        let per_document = match object.get("per_document") {
            None | Some(Value::Null) => DEFAULT_PER_DOCUMENT,
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= u64::from(MAX_TOP_K))
                .ok_or_else(|| {
                    bad(
                        "per_document",
                        &format!("must be an integer from 0 (no limit) to {MAX_TOP_K}"),
                    )
                })? as u32,
        };
        let filter = match object.get("filter") {
            None | Some(Value::Null) => Filter::default(),
            Some(v) => Filter::from_json(v)?,
        };
        let request = Self {
            query,
            mode,
            top_k,
            filter,
            score_threshold,
            highlight,
            per_document,
        };
        request.check_query()?;
        Ok(request)
    }

    /// A quick look: `GET ...?q=&mode=&top_k=` with the project's settings for the rest.
    pub fn from_query_string(query: &str, settings: &ProjectSettings) -> Result<Self, ApiError> {
        let mut body = Map::new();
        for (name, value) in crate::request::query_pairs(query)? {
            let value = match name.as_str() {
                "q" | "query" => ("query", Value::String(value)),
                "mode" => ("mode", Value::String(value)),
                "top_k" => (
                    "top_k",
                    value
                        .parse::<u64>()
                        .map(Value::from)
                        .map_err(|_| bad("top_k", "must be an integer"))?,
                ),
                "highlight" => ("highlight", Value::Bool(value == "true" || value == "1")),
                "tag" => {
                    let tags = body
                        .entry("filter")
                        .or_insert_with(|| json!({"tags": {"any": []}}));
                    if let Some(list) = tags["tags"]["any"].as_array_mut() {
                        list.push(Value::String(value));
                    }
                    continue;
                }
                other => {
                    return Err(bad(
                        other,
                        "is not a known query parameter (q, mode, top_k, highlight, tag)",
                    ));
                }
            };
            body.insert(value.0.to_string(), value.1);
        }
        Self::from_json(&Value::Object(body), settings)
    }

    fn check_query(&self) -> Result<(), ApiError> {
        if self.query.trim().is_empty() {
            return Err(bad("query", "must not be empty"));
        }
        let chars = self.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(bad(
                "query",
                &format!("has {chars} characters; the most is {MAX_QUERY_CHARS}"),
            ));
        }
        Ok(())
    }
}

fn string_list(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let list = match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(field, "must hold only strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(field, "must be a string or a list of strings")),
    };
    if list.len() > MAX_FILTER_VALUES {
        return Err(bad(
            field,
            &format!("has {} values; the most is {MAX_FILTER_VALUES}", list.len()),
        ));
    }
    if list.iter().any(|s| s.is_empty() || s.len() > 2048) {
        return Err(bad(field, "holds an empty or over-long value"));
    }
    Ok(list)
}

/// A date bound: RFC 3339 (`2026-01-31T00:00:00Z`), a bare date (`2026-01-31`, midnight UTC) or
/// milliseconds since the epoch.
fn date(value: &Value, field: &str) -> Result<u64, ApiError> {
    let problem = "must be an RFC 3339 date-time, a YYYY-MM-DD date or milliseconds since 1970";
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad(field, problem)),
        Value::String(text) => {
            let full = if text.len() == 10 {
                format!("{text}T00:00:00Z")
            } else {
                text.clone()
            };
            let time = humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
                .map_err(|_| bad(field, problem))?;
            let millis = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| bad(field, problem))?
                .as_millis();
            u64::try_from(millis).map_err(|_| bad(field, problem))
        }
        _ => Err(bad(field, problem)),
    }
}

impl Filter {
    /// Checks a filter object.
    pub fn from_json(value: &Value) -> Result<Self, ApiError> {
        let object = value
            .as_object()
            .ok_or_else(|| bad("filter", "must be an object"))?;
        only_fields(
            object,
            &[
                "documents",
                "sources",
                "tags",
                "kind",
                "metadata",
                "indexed_after",
                "indexed_before",
            ],
            "filter.",
        )?;
        let mut filter = Self::default();
        if let Some(v) = object.get("documents") {
            filter.documents = string_list(v, "filter.documents")?;
        }
        if let Some(v) = object.get("sources") {
            filter.sources = string_list(v, "filter.sources")?;
        }
        match object.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tags)) => {
                only_fields(tags, &["any", "all"], "filter.tags.")?;
                if let Some(v) = tags.get("any") {
                    filter.tags_any = string_list(v, "filter.tags.any")?;
                }
                if let Some(v) = tags.get("all") {
                    filter.tags_all = string_list(v, "filter.tags.all")?;
                }
            }
            Some(v) => filter.tags_any = string_list(v, "filter.tags")?,
        }
        match object.get("kind") {
            None | Some(Value::Null) => {}
            Some(Value::String(kind)) if kind == "document" || kind == "qa" => {
                filter.kind = Some(kind.clone());
            }
            Some(_) => return Err(bad("filter.kind", "must be `document` or `qa`")),
        }
        if let Some(v) = object.get("indexed_after") {
            filter.indexed_after = Some(date(v, "filter.indexed_after")?);
        }
        if let Some(v) = object.get("indexed_before") {
            filter.indexed_before = Some(date(v, "filter.indexed_before")?);
        }
        match object.get("metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(fields)) => {
                if fields.len() > MAX_METADATA_CONDITIONS {
                    return Err(bad(
                        "filter.metadata",
                        &format!(
                            "has {} fields; the most is {MAX_METADATA_CONDITIONS}",
                            fields.len()
                        ),
                    ));
                }
                for (name, condition) in fields {
                    let field = format!("filter.metadata.{name}");
                    let valid_name = !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !valid_name {
                        return Err(bad(
                            &field,
                            "is not a metadata field name (letters, digits, _ and -, at most 64)",
                        ));
                    }
                    filter
                        .metadata
                        .insert(name.clone(), Condition::from_json(condition, &field)?);
                }
            }
            Some(_) => return Err(bad("filter.metadata", "must be an object")),
        }
        Ok(filter)
    }

    /// The vector store filter: the project's live points, then the client's conditions. The project
    /// comes from the caller's credential, never from the filter.
    pub fn to_store(&self, project: &str) -> Value {
        let mut must: Vec<Value> = visibility::live_filter(project)["must"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !self.documents.is_empty() {
            must.push(json!({"key": "document", "match": {"any": self.documents}}));
        }
        if !self.sources.is_empty() {
            must.push(json!({"should": [
                {"key": "source", "match": {"any": self.sources}},
                {"key": "source_uri", "match": {"any": self.sources}},
            ]}));
        }
        if !self.tags_any.is_empty() {
            must.push(json!({"key": "tags", "match": {"any": self.tags_any}}));
        }
        for tag in &self.tags_all {
            must.push(json!({"key": "tags", "match": {"value": tag}}));
        }
        if let Some(kind) = &self.kind {
            must.push(json!({"key": "kind", "match": {"value": kind}}));
        }
        if self.indexed_after.is_some() || self.indexed_before.is_some() {
            let mut range = Map::new();
            if let Some(after) = self.indexed_after {
                range.insert("gte".into(), after.into());
            }
            if let Some(before) = self.indexed_before {
                range.insert("lte".into(), before.into());
            }
            must.push(json!({"key": "indexed_at", "range": range}));
        }
        for (name, condition) in &self.metadata {
            let key = format!("metadata.{name}");
            must.push(match condition {
                Condition::Equals(value) => json!({"key": key, "match": {"value": value}}),
                Condition::AnyOf(values) => json!({"key": key, "match": {"any": values}}),
                Condition::Range { gt, gte, lt, lte } => {
                    let mut range = Map::new();
                    for (name, bound) in [("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)] {
                        if let Some(bound) = bound {
                            range.insert(name.into(), json!(bound));
                        }
                    }
                    json!({"key": key, "range": range})
                }
            });
        }
        json!({"must": must})
    }
}

impl Condition {
    fn from_json(value: &Value, field: &str) -> Result<Self, ApiError> {
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Bool(_)) || v.is_i64();
        match value {
            v if scalar(v) => Ok(Self::Equals(v.clone())),
            Value::Array(items) => {
                if items.is_empty() || items.len() > MAX_FILTER_VALUES {
                    return Err(bad(
                        field,
                        &format!("must list 1 to {MAX_FILTER_VALUES} values"),
                    ));
                }
                let strings = items.iter().all(Value::is_string);
                let integers = items.iter().all(Value::is_i64);
                if !(strings || integers) {
                    return Err(bad(field, "must list only strings or only integers"));
                }
                Ok(Self::AnyOf(items.clone()))
            }
            Value::Object(bounds) => {
                only_fields(bounds, &["gt", "gte", "lt", "lte"], &format!("{field}."))?;
                if bounds.is_empty() {
                    return Err(bad(field, "needs at least one of gt, gte, lt, lte"));
                }
                let bound = |name: &str| -> Result<Option<f64>, ApiError> {
                    match bounds.get(name) {
                        None => Ok(None),
                        Some(v) => v
                            .as_f64()
                            .filter(|f| f.is_finite())
                            .map(Some)
                            .ok_or_else(|| bad(&format!("{field}.{name}"), "must be a number")),
                    }
                };
                Ok(Self::Range {
                    gt: bound("gt")?,
                    gte: bound("gte")?,
                    lt: bound("lt")?,
                    lte: bound("lte")?,
                })
            }
            _ => Err(bad(
                field,
                "must be a string, integer or boolean (equality), a list (any of), or a range {gt, gte, lt, lte}",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProjectSettings {
        ProjectSettings::default()
    }

    fn parse(body: Value) -> Result<SearchRequest, ApiError> {
        SearchRequest::from_json(&body, &settings())
    }

    fn message(error: ApiError) -> String {
        error.to_string()
    }

    #[test]
    fn fields_left_out_take_the_project_s_settings() {
        let mut own = settings();
        own.top_k = 7;
        own.retrieval = Mode::Keyword;
        own.score_threshold = Some(0.3);
        let request = SearchRequest::from_json(&json!({"query": "refunds"}), &own).unwrap();
        assert_eq!(request.top_k, 7);
        assert_eq!(request.mode, Mode::Keyword);
        assert_eq!(request.score_threshold, Some(0.3));
        assert_eq!(request.per_document, DEFAULT_PER_DOCUMENT);
        let request = SearchRequest::from_json(
            &json!({"query": "refunds", "mode": "semantic", "top_k": 100}),
            &own,
        )
        .unwrap();
        assert_eq!((request.mode, request.top_k), (Mode::Semantic, 100));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (json!({}), "`query` is required"),
            (json!({"query": "  "}), "`query` must not be empty"),
            (
                json!({"query": "x".repeat(2_001)}),
                "`query` has 2001 characters",
            ),
            (
                json!({"query": "a", "top_k": 0}),
                "`top_k` must be an integer from 1 to 100",
            ),
            (json!({"query": "a", "top_k": 101}), "`top_k`"),
            (json!({"query": "a", "mode": "fuzzy"}), "`mode` is `fuzzy`"),
            (
                json!({"query": "a", "colour": 1}),
                "`colour` is not a known field",
            ),
            (
                json!({"query": "a", "filter": []}),
                "`filter` must be an object",
            ),
            (
                json!({"query": "a", "filter": {"tags": 3}}),
                "`filter.tags`",
            ),
            (
                json!({"query": "a", "filter": {"project": "p2"}}),
                "`filter.project` is not a known field",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"year": {"gte": "x"}}}}),
                "`filter.metadata.year.gte` must be a number",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"year": {"near": 3}}}}),
                "`filter.metadata.year.near` is not a known field",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"x": {}}}}),
                "needs at least one of",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"x": null}}}),
                "`filter.metadata.x` must be a string",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"x": 1.5}}}),
                "`filter.metadata.x`",
            ),
            (
                json!({"query": "a", "filter": {"metadata": {"a.b": 1}}}),
                "is not a metadata field name",
            ),
            (
                json!({"query": "a", "filter": {"indexed_after": "yesterday"}}),
                "`filter.indexed_after` must be an RFC 3339",
            ),
            (
                json!({"query": "a", "filter": {"kind": "page"}}),
                "`filter.kind`",
            ),
            (
                json!({"query": "a", "score_threshold": "high"}),
                "`score_threshold` must be a number",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(body.clone()).expect_err(&body.to_string());
            assert!(matches!(error, ApiError::BadRequest(_)), "{body}");
            assert!(
                message(error).contains(expected),
                "{body}: wanted {expected}"
            );
        }
    }

    #[test]
    fn the_store_filter_always_starts_with_the_project_and_live_versions() {
        let request = parse(json!({"query": "a", "filter": {
            "documents": ["d1", "d2"],
            "sources": "https://example.com/a",
            "tags": {"any": ["billing"], "all": ["en", "public"]},
            "kind": "qa",
            "metadata": {"year": {"gte": 2020, "lt": 2025}, "lang": "en", "team": ["a", "b"]},
            "indexed_after": "2026-01-01",
            "indexed_before": "2026-02-01T12:00:00Z",
        }}))
        .unwrap();
        let store = request.filter.to_store("p1");
        let must = store["must"].as_array().unwrap();
        assert_eq!(must[0], json!({"key": "project", "match": {"value": "p1"}}));
        assert_eq!(must[1], json!({"key": "live", "match": {"value": true}}));
        assert!(must.contains(&json!({"key": "document", "match": {"any": ["d1", "d2"]}})));
        assert!(must.contains(&json!({"key": "tags", "match": {"any": ["billing"]}})));
        assert!(must.contains(&json!({"key": "tags", "match": {"value": "en"}})));
        assert!(must.contains(&json!({"key": "tags", "match": {"value": "public"}})));
        assert!(must.contains(&json!({"key": "kind", "match": {"value": "qa"}})));
        assert!(
            must.contains(&json!({"key": "metadata.year", "range": {"gte": 2020.0, "lt": 2025.0}}))
        );
        assert!(must.contains(&json!({"key": "metadata.lang", "match": {"value": "en"}})));
        assert!(must.contains(&json!({"key": "metadata.team", "match": {"any": ["a", "b"]}})));
        assert!(must.contains(&json!({"key": "indexed_at", "range": {
            "gte": 1_767_225_600_000_u64, "lte": 1_769_947_200_000_u64
        }})));
        // Nothing in a filter can name the project: only the credential's project is searched.
        assert!(!store.to_string().contains("p2"));
    }

    #[test]
    fn a_quick_look_takes_query_parameters() {
        let request = SearchRequest::from_query_string(
            "q=reset%20password&mode=keyword&top_k=3&tag=faq",
            &settings(),
        )
        .unwrap();
        assert_eq!(request.query, "reset password");
        assert_eq!((request.mode, request.top_k), (Mode::Keyword, 3));
        assert_eq!(request.filter.tags_any, vec!["faq".to_string()]);
        assert!(SearchRequest::from_query_string("q=a&top_k=x", &settings()).is_err());
        assert!(SearchRequest::from_query_string("q=a&page=2", &settings()).is_err());
    }
}
