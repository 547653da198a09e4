use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::distance::Distance;
use crate::error::{Result, VecError};

/// HNSW settings (Qdrant's names and defaults).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hnsw {
    pub(super) m: usize,
    pub(super) ef_construct: usize,
    /// Below this many kilobytes of candidate vectors a filtered query scans exactly.
    pub(super) full_scan_threshold_kb: usize,
}

impl Default for Hnsw {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construct: 100,
            full_scan_threshold_kb: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct DenseParams {
    pub(super) size: usize,
    pub(super) distance: Distance,
    /// Several vectors of `size` per point, compared by `max_sim` (late interaction): the sum,
    /// over the query's vectors, of each one's best score against the point's vectors.
    pub(super) multivector: bool,
    pub(super) datatype: Datatype,
}

/// How a dense vector's values are stored, as Qdrant's `datatype` names it. This store keeps every
/// value in an f32, but one of a narrower type holds what that type can hold: a `uint8` value is
/// the number's integer part within 0..=255, a `float16` one the nearest half-precision number, so
/// reads and scores are what Qdrant's would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Datatype {
    Float32,
    Float16,
    Uint8,
}

impl Datatype {
    fn parse(value: Option<&Value>) -> Result<Self> {
        match value {
            None | Some(Value::Null) => Ok(Datatype::Float32),
            Some(v) => match v.as_str() {
                Some("float32") => Ok(Datatype::Float32),
                Some("float16") => Ok(Datatype::Float16),
                Some("uint8") => Ok(Datatype::Uint8),
                _ => Err(VecError::bad_request(format!(
                    "Format error in JSON body: unknown datatype {v}: expected float32, float16 or uint8"
                ))),
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Datatype::Float32 => "float32",
            Datatype::Float16 => "float16",
            Datatype::Uint8 => "uint8",
        }
    }

    /// A stored vector's values as this type holds them.
    pub(super) fn store(self, vector: &mut [f32]) {
        match self {
            Datatype::Float32 => {}
            Datatype::Float16 => vector
                .iter_mut()
                .for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
            Datatype::Uint8 => vector
                .iter_mut()
                .for_each(|x| *x = x.clamp(0.0, 255.0).trunc()),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    /// `Some` for a collection created with one unnamed vector (named "" inside).
    pub(super) dense: BTreeMap<String, DenseParams>,
    pub(super) unnamed: bool,
    /// Sparse vector names and whether the `idf` modifier applies.
    pub(super) sparse: BTreeMap<String, bool>,
    pub(super) hnsw: Hnsw,
    /// The collection's `metadata`: whatever JSON object its owner keeps with it (an embedding
    /// model's name, a schema version), shown in collection info.
    pub(super) metadata: Map<String, Value>,
}

impl Config {
    pub(super) fn parse(body: &Value) -> Result<Self> {
        let body = body.as_object().ok_or_else(|| {
            VecError::bad_request("Format error in JSON body: expected an object")
        })?;
        let mut hnsw = Hnsw::default();
        if let Some(h) = body.get("hnsw_config").filter(|v| !v.is_null()) {
            let get = |name: &str, default: usize| -> Result<usize> {
                match h.get(name) {
                    None | Some(Value::Null) => Ok(default),
                    Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                        VecError::bad_request(format!(
                            "Format error in JSON body: hnsw_config.{name} must be a non-negative integer"
                        ))
                    }),
                }
            };
            hnsw.m = get("m", hnsw.m)?.clamp(2, 128);
            let ef_construct = get("ef_construct", hnsw.ef_construct)?;
            if ef_construct < 4 {
                return Err(VecError::validation(format!(
                    "hnsw_config.ef_construct: value {ef_construct} invalid, must be 4 or larger"
                )));
            }
            hnsw.ef_construct = ef_construct.min(2048);
            hnsw.full_scan_threshold_kb = get("full_scan_threshold", hnsw.full_scan_threshold_kb)?;
        }
        // One node serves every collection, so the shard count and the replication factors are
        // accepted and reported as 1; each must still be a count (a negative one is not even a
        // number of the right type: 400, as Qdrant's deserialiser answers).
        for field in [
            "shard_number",
            "replication_factor",
            "write_consistency_factor",
        ] {
            match body.get(field) {
                None | Some(Value::Null) => {}
                Some(n) if n.as_u64().is_some_and(|n| n >= 1) => {}
                Some(n) if n.as_i64().is_some_and(|n| n < 0) || !n.is_number() => {
                    return Err(VecError::bad_request(format!(
                        "Format error in JSON body: {field}: invalid value {n}, expected u32"
                    )));
                }
                Some(n) => {
                    return Err(VecError::validation(format!(
                        "{field}: value {n} invalid, must be 1 or larger"
                    )));
                }
            }
        }
        let mut dense = BTreeMap::new();
        let mut unnamed = false;
        match body.get("vectors") {
            None | Some(Value::Null) => {}
            Some(v) if v.get("size").is_some() => {
                dense.insert(String::new(), parse_dense(v)?);
                unnamed = true;
            }
            Some(Value::Object(named)) => {
                for (name, params) in named {
                    dense.insert(name.clone(), parse_dense(params)?);
                }
            }
            Some(_) => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: vectors must be an object",
                ));
            }
        }
        let mut sparse = BTreeMap::new();
        match body.get("sparse_vectors") {
            None | Some(Value::Null) => {}
            Some(Value::Object(named)) => {
                for (name, params) in named {
                    let idf = match params.get("modifier") {
                        None | Some(Value::Null) => false,
                        Some(m) if m == "idf" => true,
                        Some(m) if m == "none" => false,
                        Some(m) => {
                            return Err(VecError::bad_request(format!(
                                "Format error in JSON body: unknown sparse modifier {m}"
                            )));
                        }
                    };
                    // Sparse values are kept as f32: a request for another datatype is refused,
                    // not quietly stored at a different precision.
                    match &params["index"]["datatype"] {
                        Value::Null => {}
                        d if d == "float32" => {}
                        d => {
                            return Err(VecError::bad_request(format!(
                                "Bad request: sparse vectors do not support the datatype {d} in this store (float32 only)"
                            )));
                        }
                    }
                    if dense.contains_key(name) {
                        return Err(VecError::wrong_input(format!(
                            "vector name `{name}` is used by a dense and a sparse vector"
                        )));
                    }
                    sparse.insert(name.clone(), idf);
                }
            }
            Some(_) => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: sparse_vectors must be an object",
                ));
            }
        }
        let metadata = match body.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(metadata)) => metadata.clone(),
            Some(_) => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: metadata must be an object",
                ));
            }
        };
        Ok(Self {
            dense,
            unnamed,
            sparse,
            hnsw,
            metadata,
        })
    }

    /// The configuration in the shape it was given (and is stored in).
    pub(super) fn to_json(&self) -> Value {
        let dense_json = |p: &DenseParams| {
            let mut params = json!({"size": p.size, "distance": p.distance.name()});
            if p.multivector {
                params["multivector_config"] = json!({"comparator": "max_sim"});
            }
            if p.datatype != Datatype::Float32 {
                params["datatype"] = json!(p.datatype.name());
            }
            params
        };
        let vectors = if self.unnamed {
            dense_json(&self.dense[""])
        } else {
            Value::Object(
                self.dense
                    .iter()
                    .map(|(name, p)| (name.clone(), dense_json(p)))
                    .collect(),
            )
        };
        let sparse: Map<String, Value> = self
            .sparse
            .iter()
            .map(|(name, idf)| {
                let params = if *idf {
                    json!({"modifier": "idf"})
                } else {
                    json!({})
                };
                (name.clone(), params)
            })
            .collect();
        let mut config = json!({
            "vectors": vectors,
            "sparse_vectors": sparse,
            "hnsw_config": {
                "m": self.hnsw.m,
                "ef_construct": self.hnsw.ef_construct,
                "full_scan_threshold": self.hnsw.full_scan_threshold_kb,
            },
        });
        if !self.metadata.is_empty() {
            config["metadata"] = Value::Object(self.metadata.clone());
        }
        config
    }
}

pub(super) fn parse_dense(value: &Value) -> Result<DenseParams> {
    let size = value
        .get("size")
        .and_then(Value::as_u64)
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| {
            VecError::bad_request(
                "Format error in JSON body: vector size must be an integer from 1 to 65536",
            )
        })?;
    let distance = Distance::parse(value.get("distance").unwrap_or(&Value::Null))?;
    let multivector = match value.get("multivector_config") {
        None | Some(Value::Null) => false,
        Some(config) if config.get("comparator").is_some_and(|c| c == "max_sim") => true,
        Some(config) => {
            return Err(VecError::bad_request(format!(
                "Format error in JSON body: multivector_config.comparator must be \"max_sim\", got {}",
                config.get("comparator").unwrap_or(&Value::Null)
            )));
        }
    };
    Ok(DenseParams {
        size: size as usize,
        distance,
        multivector,
        datatype: Datatype::parse(value.get("datatype"))?,
    })
}
