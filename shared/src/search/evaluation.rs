//! An evaluation request: a team's own queries and judgements, checked before any search runs.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::metrics::Judgements;
use super::query::{self, Filter, MAX_QUERY_CHARS, MAX_TOP_K, Mode};
use crate::ApiError;

/// The most judged queries an evaluation answers within its own request (300 queries in all three
/// modes take about 10 s on two cores); a larger one runs as a job, in steps of
/// [`STEP_QUERIES`].
pub const INLINE_QUERIES: usize = 500;
/// The most queries one evaluation may hold (as a job, about 5 minutes on two cores).
pub const MAX_QUERIES: usize = 10_000;
/// Queries one step of an evaluation job scores.
pub const STEP_QUERIES: usize = 100;
/// The most judged documents per query.
pub const MAX_JUDGEMENTS: usize = 1_000;

/// A checked evaluation request.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationRequest {
    pub name: String,
    /// `(id, text)` of each judged query, in the order given.
    pub queries: Vec<(String, String)>,
    pub qrels: BTreeMap<String, Judgements>,
    pub modes: Vec<Mode>,
    pub k: usize,
    pub filter: Filter,
}

fn bad(field: &str, problem: &str) -> ApiError {
    ApiError::BadRequest(format!("`{field}` {problem}"))
}

impl EvaluationRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        let known = ["name", "queries", "qrels", "modes", "k", "filter"];
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(
                unknown,
                &format!("is not a known field; known: {}", known.join(", ")),
            ));
        }
        let name = match object.get("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(n)) if n.chars().count() <= 200 => n.clone(),
            Some(_) => return Err(bad("name", "must be a string of at most 200 characters")),
        };
        let k = match object.get("k") {
            None | Some(Value::Null) => 10,
            Some(v) => v
                .as_u64()
                .filter(|k| (1..=u64::from(MAX_TOP_K)).contains(k))
                .ok_or_else(|| bad("k", &format!("must be an integer from 1 to {MAX_TOP_K}")))?
                as usize,
        };
        let modes = match object.get("modes") {
            None | Some(Value::Null) => vec![Mode::Keyword, Mode::Semantic, Mode::Hybrid],
            Some(Value::Array(names)) if !names.is_empty() => {
                let mut modes = Vec::new();
                for name in names {
                    let name = name
                        .as_str()
                        .ok_or_else(|| bad("modes", "must list mode names"))?;
                    let mode = query::parse_mode(name, "modes")?;
                    if !modes.contains(&mode) {
                        modes.push(mode);
                    }
                }
                modes
            }
            Some(_) => {
                return Err(bad(
                    "modes",
                    "must be a non-empty list of hybrid, semantic, keyword",
                ));
            }
        };
        let filter = match object.get("filter") {
            None | Some(Value::Null) => Filter::default(),
            Some(v) => Filter::from_json(v)?,
        };
        let listed = object
            .get("queries")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("queries", "must be a list of {id, text}"))?;
        if listed.is_empty() || listed.len() > MAX_QUERIES {
            return Err(bad(
                "queries",
                &format!("must hold 1 to {MAX_QUERIES} queries"),
            ));
        }
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, q) in listed.iter().enumerate() {
            let field = format!("queries[{i}]");
            let id = q["id"]
                .as_str()
                .filter(|id| !id.is_empty() && id.len() <= 128)
                .ok_or_else(|| bad(&format!("{field}.id"), "must be a string of 1 to 128 bytes"))?;
            let text = q["text"]
                .as_str()
                .filter(|t| !t.trim().is_empty() && t.chars().count() <= MAX_QUERY_CHARS)
                .ok_or_else(|| {
                    bad(
                        &format!("{field}.text"),
                        &format!("must be 1 to {MAX_QUERY_CHARS} characters"),
                    )
                })?;
            if texts.insert(id.to_string(), text.to_string()).is_some() {
                return Err(bad(&format!("{field}.id"), &format!("repeats the id {id}")));
            }
            order.push(id.to_string());
        }
        let judged = object
            .get("qrels")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                bad(
                    "qrels",
                    "must be an object {query id: {document id: grade}}",
                )
            })?;
        let mut qrels = BTreeMap::new();
        for (query, documents) in judged {
            let field = format!("qrels.{query}");
            if !texts.contains_key(query) {
                return Err(bad(&field, "names a query that `queries` does not hold"));
            }
            let documents = documents
                .as_object()
                .filter(|d| d.len() <= MAX_JUDGEMENTS)
                .ok_or_else(|| {
                    bad(
                        &field,
                        &format!(
                            "must be an object of at most {MAX_JUDGEMENTS} {{document id: grade}}"
                        ),
                    )
                })?;
            let mut grades = Judgements::new();
            for (document, grade) in documents {
                let grade = grade
                    .as_i64()
                    .filter(|g| (-10..=10).contains(g))
                    .ok_or_else(|| {
                        bad(
                            &format!("{field}.{document}"),
                            "must be an integer grade from -10 to 10",
                        )
                    })?;
                grades.insert(document.clone(), grade);
            }
            qrels.insert(query.clone(), grades);
        }
        if qrels.is_empty() {
            return Err(bad("qrels", "must judge at least one query"));
        }
        let judged_ids: HashSet<&String> = qrels.keys().collect();
        let queries = order
            .into_iter()
            .filter(|id| judged_ids.contains(id))
            .map(|id| {
                let text = texts.remove(&id).unwrap_or_default();
                (id, text)
            })
            .collect();
        Ok(Self {
            name,
            queries,
            qrels,
            modes,
            k,
            filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_request_keeps_only_judged_queries() {
        let request = EvaluationRequest::from_json(&json!({
            "queries": [{"id": "1", "text": "refunds"}, {"id": "2", "text": "unjudged"}],
            "qrels": {"1": {"doc-a": 1, "doc-b": 0}},
            "modes": ["keyword", "hybrid", "keyword"],
        }))
        .unwrap();
        assert_eq!(request.queries, [("1".to_string(), "refunds".to_string())]);
        assert_eq!(request.modes, [Mode::Keyword, Mode::Hybrid]);
        assert_eq!(request.k, 10);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let base = |extra: Value| {
            let mut body = json!({"queries": [{"id": "1", "text": "a"}], "qrels": {"1": {"d": 1}}});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let cases = [
            (base(json!({"queries": []})), "`queries` must hold 1 to"),
            (base(json!({"queries": [{"id": "1"}]})), "`queries[0].text`"),
            (
                base(json!({"queries": [{"id": "1", "text": "a"}, {"id": "1", "text": "b"}]})),
                "repeats the id",
            ),
            (
                base(json!({"qrels": {"9": {"d": 1}}})),
                "`qrels.9` names a query",
            ),
            (
                base(json!({"qrels": {"1": {"d": "yes"}}})),
                "`qrels.1.d` must be an integer",
            ),
            (base(json!({"qrels": {}})), "must judge at least one"),
            (base(json!({"modes": ["fast"]})), "`modes` is `fast`"),
            (base(json!({"k": 0})), "`k` must be"),
            (base(json!({"extra": 1})), "`extra` is not a known field"),
        ];
        for (body, expected) in cases {
            let error = EvaluationRequest::from_json(&body).expect_err(&body.to_string());
            assert!(error.to_string().contains(expected), "{body}: {error}");
        }
    }
}
