use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{Result, VecError};
use crate::point_id::PointId;

/// A sparse vector: strictly increasing indices after parsing, with their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Parses `{indices, values}`; `place` names the point a write gives it for (`points[3]`), in
    /// the shape errors are reported in as Qdrant's request validation does (422).
    pub(super) fn parse(value: &Value, place: Option<&str>) -> Result<Self> {
        let invalid = |field: &str, rule: &str, fallback: &str| match place {
            Some(place) => VecError::validation(format!(
                "[{place}.vector.?.{field}: Validation error: {rule} [{{}}]]"
            )),
            None => VecError::wrong_input(fallback),
        };
        let bad = |m: &str| VecError::bad_request(format!("Format error in JSON body: {m}"));
        let indices = value["indices"]
            .as_array()
            .ok_or_else(|| bad("a sparse vector needs `indices`"))?;
        let values = value["values"]
            .as_array()
            .ok_or_else(|| bad("a sparse vector needs `values`"))?;
        if indices.len() != values.len() {
            return Err(invalid(
                "values",
                "must be the same length as indices",
                "sparse vector indices and values differ in length",
            ));
        }
        let mut pairs = Vec::with_capacity(indices.len());
        for (i, v) in indices.iter().zip(values) {
            let i = i
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad("sparse indices must be 32-bit unsigned integers"))?;
            let v = finite(v)?;
            pairs.push((i, v));
        }
        pairs.sort_by_key(|p| p.0);
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(invalid(
                "indices",
                "must be unique",
                "sparse vector indices must be unique",
            ));
        }
        Ok(Self {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        })
    }

    pub(super) fn to_json(&self) -> Value {
        json!({"indices": self.indices, "values": crate::number::f32_array(&self.values)})
    }
}

pub(super) fn finite(value: &Value) -> Result<f32> {
    let x = value.as_f64().ok_or_else(|| {
        VecError::bad_request("Format error in JSON body: vector values must be numbers")
    })? as f32;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(VecError::wrong_input(
            "vector values must be finite 32-bit floats",
        ))
    }
}

/// A multivector: a non-empty list of non-empty lists of numbers, all of one length. `place` names
/// the point in Qdrant's validation messages (`points[0]`).
pub(super) fn multi_values(value: &Value, place: &str) -> Result<Vec<Vec<f32>>> {
    let list = value.as_array().ok_or_else(|| {
        VecError::bad_request(
            "Format error in JSON body: a multivector is a list of lists of numbers",
        )
    })?;
    if list.is_empty() {
        return Err(VecError::validation(format!(
            "[{place}.vector.?: dense vector must not be empty]"
        )));
    }
    // A single vector is a multivector of one.
    if !list[0].is_array() {
        return Ok(vec![dense_values(value)?]);
    }
    let vectors = list.iter().map(dense_values).collect::<Result<Vec<_>>>()?;
    if vectors.iter().any(Vec::is_empty) {
        return Err(VecError::validation(format!(
            "[{place}.vector.?.data: all vectors must be non-empty]"
        )));
    }
    if let Some(other) = vectors.iter().find(|v| v.len() != vectors[0].len()) {
        return Err(VecError::validation(format!(
            "[{place}.vector.?.data: all vectors must have the same dimension, found vector with dimension {}]",
            other.len()
        )));
    }
    Ok(vectors)
}

pub(super) fn dense_values(value: &Value) -> Result<Vec<f32>> {
    value
        .as_array()
        .ok_or_else(|| {
            VecError::bad_request("Format error in JSON body: expected a list of numbers")
        })?
        .iter()
        .map(finite)
        .collect()
}

/// A point as written: its vectors by name.
#[derive(Debug, Clone, Default)]
pub struct PointVectors {
    pub dense: BTreeMap<String, Vec<f32>>,
    pub sparse: BTreeMap<String, SparseVector>,
    /// Multivectors: each one's vectors, all of the configured size.
    pub multi: BTreeMap<String, Vec<Vec<f32>>>,
}

impl PointVectors {
    /// Adds (or replaces) `other`'s vectors.
    pub fn merge(&mut self, other: PointVectors) {
        self.dense.extend(other.dense);
        self.sparse.extend(other.sparse);
        self.multi.extend(other.multi);
    }

    /// Drops the vector `name`, whatever its kind.
    pub fn remove(&mut self, name: &str) {
        self.dense.remove(name);
        self.sparse.remove(name);
        self.multi.remove(name);
    }

    /// Binary encoding for storage: per vector, a kind byte, the name, then the numbers.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let name = |out: &mut Vec<u8>, kind: u8, n: &str, len: usize| {
            out.push(kind);
            out.extend((n.len() as u32).to_le_bytes());
            out.extend(n.as_bytes());
            out.extend((len as u32).to_le_bytes());
        };
        for (n, v) in &self.dense {
            name(&mut out, 0, n, v.len());
            v.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
        for (n, v) in &self.sparse {
            name(&mut out, 1, n, v.indices.len());
            v.indices.iter().for_each(|i| out.extend(i.to_le_bytes()));
            v.values.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
        for (n, vectors) in &self.multi {
            let size = vectors.first().map_or(0, Vec::len);
            name(&mut out, 2, n, vectors.len());
            out.extend((size as u32).to_le_bytes());
            vectors
                .iter()
                .flatten()
                .for_each(|x| out.extend(x.to_le_bytes()));
        }
        out
    }

    pub(super) fn decode(mut bytes: &[u8]) -> Option<Self> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = bytes.split_at_checked(n)?;
            *bytes = tail;
            Some(head)
        }
        fn u32_at(bytes: &mut &[u8]) -> Option<u32> {
            Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?))
        }
        let mut vectors = Self::default();
        while let Some(&kind) = bytes.first() {
            bytes = &bytes[1..];
            let name_len = u32_at(&mut bytes)? as usize;
            let name = String::from_utf8(take(&mut bytes, name_len)?.to_vec()).ok()?;
            let len = u32_at(&mut bytes)? as usize;
            let floats = |raw: &[u8]| -> Vec<f32> {
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            match kind {
                0 => {
                    let raw = take(&mut bytes, len * 4)?;
                    vectors.dense.insert(name, floats(raw));
                }
                1 => {
                    let raw = take(&mut bytes, len * 4)?;
                    let indices = raw
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let values = floats(take(&mut bytes, len * 4)?);
                    vectors
                        .sparse
                        .insert(name, SparseVector { indices, values });
                }
                2 => {
                    let size = u32_at(&mut bytes)? as usize;
                    let raw = take(&mut bytes, len.checked_mul(size)?.checked_mul(4)?)?;
                    let all = floats(raw);
                    let each = all.chunks(size.max(1)).map(<[f32]>::to_vec).collect();
                    vectors.multi.insert(name, each);
                }
                _ => return None,
            }
        }
        Some(vectors)
    }
}

/// One point to upsert.
#[derive(Debug, Clone)]
pub struct NewPoint {
    pub id: PointId,
    pub payload: Map<String, Value>,
    pub vectors: PointVectors,
}
