use serde_json::{Map, Value};

use super::points::{SparseVector, dense_values};
use crate::error::{Result, VecError};
use crate::filter::Filter;

#[derive(Debug, Clone)]
pub enum QueryVector {
    Dense(Vec<f32>),
    Sparse(SparseVector),
}

impl QueryVector {
    pub fn parse(value: &Value) -> Result<Self> {
        match value {
            Value::Array(_) => Ok(QueryVector::Dense(dense_values(value)?)),
            Value::Object(o) if o.contains_key("indices") => {
                Ok(QueryVector::Sparse(SparseVector::parse(value)?))
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
            WithPayload::Include(keys) => Value::Object(
                payload
                    .iter()
                    .filter(|(k, _)| keys.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            WithPayload::Exclude(keys) => Value::Object(
                payload
                    .iter()
                    .filter(|(k, _)| !keys.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }
}
