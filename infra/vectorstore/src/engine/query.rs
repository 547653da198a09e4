use serde_json::{Map, Value};

use super::points::{SparseVector, dense_values};
use crate::error::{Result, VecError};
use crate::filter::Filter;

#[derive(Debug, Clone)]
pub enum QueryVector {
    Dense(Vec<f32>),
    Sparse(SparseVector),
    /// Several vectors, for a multivector (`max_sim`).
    Multi(Vec<Vec<f32>>),
}

impl QueryVector {
    pub fn parse(value: &Value) -> Result<Self> {
        match value {
            Value::Array(list) if list.first().is_some_and(Value::is_array) => {
                let vectors = list.iter().map(dense_values).collect::<Result<Vec<_>>>()?;
                if vectors.iter().any(Vec::is_empty) {
                    return Err(VecError::validation("all vectors must be non-empty"));
                }
                Ok(QueryVector::Multi(vectors))
            }
            Value::Array(_) => Ok(QueryVector::Dense(dense_values(value)?)),
            Value::Object(o) if o.contains_key("indices") => {
                Ok(QueryVector::Sparse(SparseVector::parse(value, None)?))
            }
            _ => Err(VecError::bad_request(
                "Format error in JSON body: a query vector is a list of numbers or a sparse {indices, values}",
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Search {
    pub using: String,
    pub query: QueryVector,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: usize,
    pub score_threshold: Option<f32>,
    pub ef: Option<usize>,
    pub exact: bool,
}

impl Search {
    pub(super) fn want(&self) -> usize {
        self.limit.saturating_add(self.offset)
    }
}

#[derive(Debug, Clone)]
pub enum WithVectors {
    None,
    All,
    Named(Vec<String>),
}

/// Which parts of a point to return.
#[derive(Debug, Clone)]
pub struct With {
    pub payload: WithPayload,
    pub vectors: WithVectors,
}

#[derive(Debug, Clone)]
pub enum WithPayload {
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl With {
    pub fn parse(payload: &Value, vectors: &Value, payload_default: bool) -> Result<Self> {
        let bad = |m: &str| VecError::bad_request(format!("Format error in JSON body: {m}"));
        let names = |v: &Value| -> Result<Vec<String>> {
            v.as_array()
                .ok_or_else(|| bad("expected a list of names"))?
                .iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("names are strings"))
                })
                .collect()
        };
        let payload = match payload {
            Value::Null => {
                if payload_default {
                    WithPayload::All
                } else {
                    WithPayload::None
                }
            }
            Value::Bool(true) => WithPayload::All,
            Value::Bool(false) => WithPayload::None,
            Value::Array(_) => WithPayload::Include(names(payload)?),
            Value::Object(o) if o.contains_key("include") => {
                WithPayload::Include(names(&o["include"])?)
            }
            Value::Object(o) if o.contains_key("exclude") => {
                WithPayload::Exclude(names(&o["exclude"])?)
            }
            _ => {
                return Err(bad(
                    "with_payload must be a boolean, a list or {include|exclude}",
                ));
            }
        };
        let vectors = match vectors {
            Value::Null | Value::Bool(false) => WithVectors::None,
            Value::Bool(true) => WithVectors::All,
            Value::Array(_) => WithVectors::Named(names(vectors)?),
            _ => return Err(bad("with_vector must be a boolean or a list of names")),
        };
        Ok(Self { payload, vectors })
    }

    pub(super) fn payload(&self, payload: &Map<String, Value>) -> Value {
        match &self.payload {
            WithPayload::None => Value::Null,
            WithPayload::All => Value::Object(payload.clone()),
            WithPayload::Include(keys) => {
                // Projected from the stored payload in place: cloning it whole first (its text
                // and all) cost more than the search it answers.
                let mut selected = Value::Object(Map::new());
                for key in keys {
                    if let Some(part) = project_object(payload, &path(key)) {
                        merge(&mut selected, part);
                    }
                }
                selected
            }
            WithPayload::Exclude(keys) => {
                let mut kept = Value::Object(payload.clone());
                for key in keys {
                    remove(&mut kept, &path(key));
                }
                kept
            }
        }
    }
}

/// A payload path as Qdrant writes it (`country.cities[].name`): each step a key, and whether to go
/// into the items of the array found there.
fn path(key: &str) -> Vec<(&str, bool)> {
    key.split('.')
        .map(|part| match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        })
        .collect()
}

/// The part of `value` that `steps` selects, in the same shape (objects keep only the selected keys,
/// arrays opened with `[]` keep every item's selected part). `None` when the path leads nowhere.
fn project(value: &Value, steps: &[(&str, bool)]) -> Option<Value> {
    if steps.is_empty() {
        return Some(value.clone());
    }
    project_object(value.as_object()?, steps)
}

/// [`project`] of an object; `steps` is not empty.
fn project_object(object: &Map<String, Value>, steps: &[(&str, bool)]) -> Option<Value> {
    let ((name, into_items), rest) = steps.split_first()?;
    let child = object.get(*name)?;
    let inner = match child {
        Value::Array(items) if *into_items && !rest.is_empty() => Value::Array(
            items
                .iter()
                .filter_map(|item| project(item, rest))
                .collect(),
        ),
        _ if rest.is_empty() => child.clone(),
        _ => project(child, rest)?,
    };
    let mut object = Map::new();
    object.insert(name.to_string(), inner);
    Some(Value::Object(object))
}

/// Merges a projection into what was selected so far: objects key by key, arrays item by item.
fn merge(into: &mut Value, part: Value) {
    match (into, part) {
        (Value::Object(into), Value::Object(part)) => {
            for (key, value) in part {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(into), Value::Array(part)) => {
            for (i, value) in part.into_iter().enumerate() {
                match into.get_mut(i) {
                    Some(existing) => merge(existing, value),
                    None => into.push(value),
                }
            }
        }
        (into, part) => *into = part,
    }
}

/// Removes what the dotted `key` selects from `value`, in place.
pub(super) fn remove_path(value: &mut Value, key: &str) {
    remove(value, &path(key));
}

/// Removes what `steps` selects from `value`, in place.
fn remove(value: &mut Value, steps: &[(&str, bool)]) {
    let Some(((name, into_items), rest)) = steps.split_first() else {
        return;
    };
    let Some(object) = value.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        object.remove(*name);
        return;
    }
    match object.get_mut(*name) {
        Some(Value::Array(items)) if *into_items => {
            for item in items {
                remove(item, rest);
            }
        }
        Some(child) => remove(child, rest),
        None => {}
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;
    use serde_json::json;

    fn select(with_payload: Value, payload: &Value) -> Value {
        With::parse(&with_payload, &Value::Null, true)
            .unwrap()
            .payload(payload.as_object().unwrap())
    }

    #[test]
    fn payload_selectors_take_dotted_paths() {
        // Issue 16, item 2.
        let payload = json!({"country": {"name": "Germany", "capital": "Berlin",
            "cities": [{"name": "Berlin", "population": 3.7}, {"name": "Munich", "population": 1.5}]}});
        assert_eq!(
            select(
                json!({"include": ["country.name", "country.capital"]}),
                &payload
            ),
            json!({"country": {"name": "Germany", "capital": "Berlin"}})
        );
        assert_eq!(
            select(json!({"include": ["country.cities[].name"]}), &payload),
            json!({"country": {"cities": [{"name": "Berlin"}, {"name": "Munich"}]}})
        );
        assert_eq!(
            select(
                json!(["country.cities[].name", "country.cities[].population"]),
                &payload
            ),
            json!({"country": {"cities": [{"name": "Berlin", "population": 3.7},
                                          {"name": "Munich", "population": 1.5}]}})
        );
        assert_eq!(
            select(json!({"exclude": ["country.cities"]}), &payload),
            json!({"country": {"name": "Germany", "capital": "Berlin"}})
        );
        assert_eq!(
            select(
                json!({"exclude": ["country.cities[].population", "country.name"]}),
                &payload
            ),
            json!({"country": {"capital": "Berlin", "cities": [{"name": "Berlin"}, {"name": "Munich"}]}})
        );
        assert_eq!(
            select(json!({"include": ["nowhere.at.all"]}), &payload),
            json!({})
        );
        // A top-level key still works as before.
        assert_eq!(select(json!(["country"]), &payload), payload);
    }
}
