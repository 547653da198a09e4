//! Which version of a document search sees.
//!
//! Every chunk point carries its `document`, its `version` and a `live` flag. A new version's points
//! are written with `live: false`, so search does not see them while they are written. Once all are
//! written, one request to the vector store first marks them live and then marks the previous
//! version's points not live ([`promotion`]); then the old points are deleted. Between those two
//! operations both versions are flagged live, so search applies the second half of the rule to what
//! it retrieves ([`keep_latest`]): of each document, only the highest version among the hits counts.
//! Together: before the promotion search sees the old version, after it only the new one, never both
//! and never neither.

use serde_json::{Value, json};

/// The payload field every chunk point carries that says it is searchable.
pub const LIVE: &str = "live";

/// The vector store filter for what search may return of `project`: live points only. Combine it with
/// the caller's own conditions under `must`.
pub fn live_filter(project: &str) -> Value {
    json!({
        "must": [
            {"key": "project", "match": {"value": project}},
            {"key": LIVE, "match": {"value": true}},
        ]
    })
}

/// The `points/batch` body that makes `version` of a document the live one: first its points live,
/// then every other version's points not live.
pub fn promotion(project: &str, document: &str, version: u32) -> Value {
    let of_document = |extra: Value| {
        json!({
            "must": [
                {"key": "project", "match": {"value": project}},
                {"key": "document", "match": {"value": document}},
                extra,
            ]
        })
    };
    let this_version = json!({"key": "version", "match": {"value": version}});
    json!({
        "operations": [
            {"set_payload": {"payload": {LIVE: true}, "filter": of_document(this_version.clone())}},
            {"set_payload": {
                "payload": {LIVE: false},
                "filter": {
                    "must": of_document(json!({"key": LIVE, "match": {"value": true}}))["must"],
                    "must_not": [this_version],
                }
            }},
        ]
    })
}

/// The filter for a document's points of every version but `keep` (all of them when `None`).
pub fn other_versions(project: &str, document: &str, keep: Option<u32>) -> Value {
    let mut filter = json!({
        "must": [
            {"key": "project", "match": {"value": project}},
            {"key": "document", "match": {"value": document}},
        ]
    });
    if let Some(keep) = keep {
        filter["must_not"] = json!([{"key": "version", "match": {"value": keep}}]);
    }
    filter
}

/// The second half of the rule, applied to retrieved hits in rank order: of each document, only the
/// hits of the highest version among them are kept. `key` gives a hit's document id and version.
pub fn keep_latest<T>(hits: Vec<T>, key: impl Fn(&T) -> (&str, u32)) -> Vec<T> {
    let mut latest: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for hit in &hits {
        let (document, version) = key(hit);
        let entry = latest.entry(document.to_string()).or_insert(version);
        *entry = (*entry).max(version);
    }
    hits.into_iter()
        .filter(|hit| {
            let (document, version) = key(hit);
            latest.get(document) == Some(&version)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_highest_version_of_each_document_is_kept_in_rank_order() {
        let hits = vec![
            ("a", 1, 0.9),
            ("b", 3, 0.8),
            ("a", 2, 0.7),
            ("b", 3, 0.6),
            ("a", 1, 0.5),
        ];
        let kept = keep_latest(hits, |h| (h.0, h.1));
        assert_eq!(kept, vec![("b", 3, 0.8), ("a", 2, 0.7), ("b", 3, 0.6)]);
    }

    #[test]
    fn promotion_marks_the_new_version_live_before_retiring_the_old() {
        let body = promotion("p", "d", 2);
        let ops = body["operations"].as_array().unwrap();
        assert_eq!(ops[0]["set_payload"]["payload"][LIVE], true);
        assert_eq!(ops[1]["set_payload"]["payload"][LIVE], false);
        assert_eq!(
            ops[1]["set_payload"]["filter"]["must_not"][0]["match"]["value"],
            2
        );
    }
}
