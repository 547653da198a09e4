//! The vector store's engine: collections of points (an id, a JSON payload, named dense vectors and
//! named sparse vectors), kept in SQLite (every acknowledged write is committed there first) and
//! served from memory: an HNSW graph (usearch) per dense vector, an inverted index per sparse
//! vector, and keyword indexes on payload fields for filtered search.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use super::filter::{self, Filter};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecError {
    pub status: u16,
    pub message: String,
}

impl VecError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    fn wrong_input(message: impl Into<String>) -> Self {
        Self::bad_request(format!("Wrong input: {}", message.into()))
    }

    fn no_collection(name: &str) -> Self {
        Self {
            status: 404,
            message: format!("Not found: Collection `{name}` doesn't exist!"),
        }
    }

    pub fn no_point(id: &PointId) -> Self {
        Self {
            status: 404,
            message: format!("Not found: No point with id {} found", id.to_json()),
        }
    }
}

impl From<rusqlite::Error> for VecError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!("vector store: {error}");
        Self {
            status: 500,
            message: "Service internal error: storage failure".into(),
        }
    }
}

type Result<T> = std::result::Result<T, VecError>;

/// A point id: an unsigned integer or a UUID (kept in canonical lower-case hyphenated form).
/// Integers sort before UUIDs, as in Qdrant's scroll order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    Num(u64),
    Uuid(String),
}

impl PointId {
    pub fn parse(value: &Value) -> Result<Self> {
        match value {
            Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
                VecError::bad_request(format!(
                    "Format error in JSON body: point id {n} is not an unsigned integer"
                ))
            }),
            Value::String(s) => canonical_uuid(s)
                .map(PointId::Uuid)
                .or_else(|| s.parse::<u64>().ok().map(PointId::Num))
                .ok_or_else(|| {
                    VecError::bad_request(format!(
                        "Format error in JSON body: point id `{s}` is neither an unsigned integer nor a UUID"
                    ))
                }),
            _ => Err(VecError::bad_request(
                "Format error in JSON body: a point id must be an unsigned integer or a UUID string",
            )),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            PointId::Num(n) => json!(n),
            PointId::Uuid(u) => json!(u),
        }
    }

    fn storage_key(&self) -> String {
        match self {
            PointId::Num(n) => format!("n{n:020}"),
            PointId::Uuid(u) => format!("u{u}"),
        }
    }

    fn from_storage_key(key: &str) -> Option<Self> {
        match key.split_at_checked(1)? {
            ("n", n) => n.parse().ok().map(PointId::Num),
            ("u", u) => Some(PointId::Uuid(u.to_string())),
            _ => None,
        }
    }
}

fn canonical_uuid(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let hyphens_ok = text.len() == 32
        || (text.len() == 36 && [8, 13, 18, 23].iter().all(|&i| text.as_bytes()[i] == b'-'));
    if hex.len() != 32 || !hyphens_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}

impl Distance {
    fn parse(value: &Value) -> Result<Self> {
        match value.as_str() {
            Some("Cosine") => Ok(Distance::Cosine),
            Some("Dot") => Ok(Distance::Dot),
            Some("Euclid") => Ok(Distance::Euclid),
            Some("Manhattan") => Err(VecError::wrong_input(
                "the Manhattan distance is not supported by this store",
            )),
            _ => Err(VecError::bad_request(
                "Format error in JSON body: distance must be one of Cosine, Dot, Euclid",
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
        }
    }

    /// Whether a larger score is a better match.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Distance::Euclid)
    }

    fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot(a, b),
            Distance::Euclid => squared_l2(a, b).sqrt(),
        }
    }
}

/// Dot product, with the widest SIMD this CPU has (the portable build only assumes SSE2).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::<DotKernel>(a, b)
}

fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    simd::<SquaredL2Kernel>(a, b)
}

/// `query . codes`, for a vector stored as 8-bit codes (see [`Rough::rank`]).
fn dot_codes(query: &[f32], codes: &[u8]) -> f32 {
    simd::<CodesKernel>(query, codes)
}

/// A loop over two slices that the compiler vectorises for whatever instruction set it is
/// compiled for; [`simd`] compiles it for the best one this CPU has, detected once.
trait Kernel {
    type Item;
    fn run(a: &[f32], b: &[Self::Item]) -> f32;
}

struct DotKernel;
struct SquaredL2Kernel;
struct CodesKernel;

impl Kernel for DotKernel {
    type Item = f32;
    #[inline(always)]
    fn run(a: &[f32], b: &[f32]) -> f32 {
        dot_portable(a, b)
    }
}

impl Kernel for SquaredL2Kernel {
    type Item = f32;
    #[inline(always)]
    fn run(a: &[f32], b: &[f32]) -> f32 {
        squared_l2_portable(a, b)
    }
}

impl Kernel for CodesKernel {
    type Item = u8;
    #[inline(always)]
    fn run(a: &[f32], b: &[u8]) -> f32 {
        dot_codes_portable(a, b)
    }
}

struct Vectorised<'a, K: Kernel>(&'a [f32], &'a [K::Item]);

impl<K: Kernel> pulp::WithSimd for Vectorised<'_, K> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f32 {
        K::run(self.0, self.1)
    }
}

fn simd<K: Kernel>(a: &[f32], b: &[K::Item]) -> f32 {
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(Vectorised::<K>(a, b))
}

/// Sums `term(a[i], b[i])` in sixteen independent accumulators, which the compiler turns into SIMD.
#[inline(always)]
fn sum_terms<T: Copy>(a: &[f32], b: &[T], term: impl Fn(f32, T) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = a.len() / 16 * 16;
    for (x, y) in a[..chunks]
        .chunks_exact(16)
        .zip(b[..chunks].chunks_exact(16))
    {
        for i in 0..16 {
            acc[i] += term(x[i], y[i]);
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| term(*x, *y))
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| x * y)
}

#[inline(always)]
fn squared_l2_portable(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| (x - y) * (x - y))
}

#[inline(always)]
fn dot_codes_portable(query: &[f32], codes: &[u8]) -> f32 {
    sum_terms(query, codes, |x, c| x * f32::from(c as i8))
}

fn normalize(vector: &mut [f32]) {
    let norm = dot(vector, vector).sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// A scan ranked by 8-bit codes rescores `want * RESCORE_FACTOR + RESCORE_EXTRA` points exactly.
const RESCORE_FACTOR: usize = 4;
const RESCORE_EXTRA: usize = 32;
/// Candidate scans at least this long are split over two threads.
const PARALLEL_SCAN: usize = 4096;

/// HNSW settings (Qdrant's names and defaults).
#[derive(Debug, Clone, Copy)]
struct Hnsw {
    m: usize,
    ef_construct: usize,
    /// Below this many kilobytes of candidate vectors a filtered query scans exactly.
    full_scan_threshold_kb: usize,
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
struct DenseParams {
    size: usize,
    distance: Distance,
}

#[derive(Debug, Clone)]
struct Config {
    /// `Some` for a collection created with one unnamed vector (named "" inside).
    dense: BTreeMap<String, DenseParams>,
    unnamed: bool,
    /// Sparse vector names and whether the `idf` modifier applies.
    sparse: BTreeMap<String, bool>,
    hnsw: Hnsw,
}

impl Config {
    fn parse(body: &Value) -> Result<Self> {
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
            hnsw.ef_construct = get("ef_construct", hnsw.ef_construct)?.clamp(4, 2048);
            hnsw.full_scan_threshold_kb = get("full_scan_threshold", hnsw.full_scan_threshold_kb)?;
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
        Ok(Self {
            dense,
            unnamed,
            sparse,
            hnsw,
        })
    }

    /// The configuration in the shape it was given (and is stored in).
    fn to_json(&self) -> Value {
        let dense_json = |p: &DenseParams| json!({"size": p.size, "distance": p.distance.name()});
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
        json!({
            "vectors": vectors,
            "sparse_vectors": sparse,
            "hnsw_config": {
                "m": self.hnsw.m,
                "ef_construct": self.hnsw.ef_construct,
                "full_scan_threshold": self.hnsw.full_scan_threshold_kb,
            },
        })
    }
}

fn parse_dense(value: &Value) -> Result<DenseParams> {
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
    Ok(DenseParams {
        size: size as usize,
        distance,
    })
}

/// A sparse vector: strictly increasing indices after parsing, with their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    fn parse(value: &Value) -> Result<Self> {
        let bad = |m: &str| VecError::bad_request(format!("Format error in JSON body: {m}"));
        let indices = value["indices"]
            .as_array()
            .ok_or_else(|| bad("a sparse vector needs `indices`"))?;
        let values = value["values"]
            .as_array()
            .ok_or_else(|| bad("a sparse vector needs `values`"))?;
        if indices.len() != values.len() {
            return Err(VecError::wrong_input(
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
            return Err(VecError::wrong_input(
                "sparse vector indices must be unique",
            ));
        }
        Ok(Self {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        })
    }

    fn to_json(&self) -> Value {
        json!({"indices": self.indices, "values": self.values})
    }
}

fn finite(value: &Value) -> Result<f32> {
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

fn dense_values(value: &Value) -> Result<Vec<f32>> {
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
}

impl PointVectors {
    /// Binary encoding for storage: per vector, a kind byte, the name, then the numbers.
    fn encode(&self) -> Vec<u8> {
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
        out
    }

    fn decode(mut bytes: &[u8]) -> Option<Self> {
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

struct Slot {
    id: PointId,
    version: u64,
    payload: Map<String, Value>,
    sparse: BTreeMap<String, SparseVector>,
}

/// A dense vector's storage and graph. Vectors live in `data` at `slot * size`.
///
/// For dot-product distances each vector is also kept as 8-bit codes: a quarter of the bytes, which
/// is what a scan over scattered candidates is bound by. A slot's row in `codes` holds its `size`
/// codes and then its scale (4 bytes, little-endian; 0 when the slot has no vector), so ranking one
/// candidate touches one stretch of memory. A scan ranks by the codes, then rescores the best few
/// with the full vectors.
struct DenseIndex {
    params: DenseParams,
    data: Vec<f32>,
    codes: Vec<u8>,
    present: Vec<bool>,
    graph: usearch::Index,
}

impl DenseIndex {
    fn new(params: DenseParams, hnsw: Hnsw) -> Result<Self> {
        let options = usearch::IndexOptions {
            dimensions: params.size,
            metric: match params.distance {
                Distance::Cosine | Distance::Dot => usearch::MetricKind::IP,
                Distance::Euclid => usearch::MetricKind::L2sq,
            },
            // The graph keeps its own copy of every vector; it only steers the walk (results are
            // rescored from `data`), so for unit-length vectors half precision is enough and
            // halves that copy. Dot and Euclid vectors may be too large for it.
            quantization: match params.distance {
                Distance::Cosine => usearch::ScalarKind::F16,
                Distance::Dot | Distance::Euclid => usearch::ScalarKind::F32,
            },
            connectivity: hnsw.m,
            expansion_add: hnsw.ef_construct,
            expansion_search: hnsw.ef_construct,
            multi: false,
        };
        let graph = usearch::Index::new(&options).map_err(|e| {
            tracing::error!("vector store: cannot create an index: {e}");
            VecError::bad_request("Service internal error: cannot create the vector index")
        })?;
        Ok(Self {
            params,
            data: Vec::new(),
            codes: Vec::new(),
            present: Vec::new(),
            graph,
        })
    }

    fn vector(&self, slot: u32) -> Option<&[f32]> {
        let slot = slot as usize;
        if !self.present.get(slot).copied().unwrap_or(false) {
            return None;
        }
        Some(&self.data[slot * self.params.size..(slot + 1) * self.params.size])
    }

    fn store(&mut self, slot: u32, vector: &[f32]) {
        let (slot, size) = (slot as usize, self.params.size);
        if self.present.len() <= slot {
            self.present.resize(slot + 1, false);
            self.data.resize((slot + 1) * size, 0.0);
        }
        self.data[slot * size..(slot + 1) * size].copy_from_slice(vector);
        self.present[slot] = true;
        if self.coded() {
            let row = self.code_row(slot as u32);
            if self.codes.len() < row.end {
                self.codes.resize(row.end, 0);
            }
            let largest = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
            let (codes, tail) = self.codes[row].split_at_mut(size);
            for (code, x) in codes.iter_mut().zip(vector) {
                *code = (x / scale).round().clamp(-127.0, 127.0) as i8 as u8;
            }
            tail.copy_from_slice(&scale.to_le_bytes());
        }
    }

    /// Where `slot`'s row (its codes, then its scale) lies in `codes`.
    fn code_row(&self, slot: u32) -> std::ops::Range<usize> {
        let row = self.params.size + 4;
        slot as usize * row..(slot as usize + 1) * row
    }

    /// Whether vectors are also kept as codes: for the dot-product distances, whose score the codes
    /// approximate directly.
    fn coded(&self) -> bool {
        self.params.distance != Distance::Euclid
    }

    /// `slot`'s row of codes and scale, when this index is coded and the slot has a vector.
    fn code_bytes(&self, slot: u32) -> Option<&[u8]> {
        let row = self.codes.get(self.code_row(slot))?;
        (self.present.get(slot as usize).copied() == Some(true)).then_some(row)
    }

    fn remove(&mut self, slot: u32) {
        if let Some(p) = self.present.get_mut(slot as usize)
            && *p
        {
            *p = false;
            let _ = self.graph.remove(u64::from(slot));
            let row = self.code_row(slot);
            if let Some(scale) = self.codes.get_mut(row.end - 4..row.end) {
                scale.fill(0);
            }
        }
    }

    /// Adds the given slots' stored vectors to the graph, on every core.
    fn index(&self, slots: &[u32]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let needed = self.graph.size() + slots.len();
        if needed > self.graph.capacity() {
            let capacity = needed.max(self.graph.capacity() * 2).max(1024);
            self.graph
                .reserve_capacity_and_threads(capacity, threads)
                .map_err(|e| {
                    tracing::error!("vector store: cannot grow the index: {e}");
                    VecError::bad_request("Service internal error: cannot grow the vector index")
                })?;
        }
        let failed = std::sync::atomic::AtomicBool::new(false);
        let chunk = slots.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for part in slots.chunks(chunk) {
                let failed = &failed;
                scope.spawn(move || {
                    for &slot in part {
                        if let Some(v) = self.vector(slot)
                            && self.graph.add(u64::from(slot), v).is_err()
                        {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            return Err(VecError::bad_request(
                "Service internal error: the vector index refused a vector",
            ));
        }
        Ok(())
    }
}

#[derive(Default)]
struct SparseIndex {
    idf: bool,
    postings: HashMap<u32, Vec<(u32, f32)>>,
    points: usize,
}

impl SparseIndex {
    fn add(&mut self, slot: u32, vector: &SparseVector) {
        for (&i, &v) in vector.indices.iter().zip(&vector.values) {
            self.postings.entry(i).or_default().push((slot, v));
        }
        self.points += 1;
    }

    fn remove(&mut self, slot: u32, vector: &SparseVector) {
        for i in &vector.indices {
            if let Some(list) = self.postings.get_mut(i) {
                list.retain(|(s, _)| *s != slot);
                if list.is_empty() {
                    self.postings.remove(i);
                }
            }
        }
        self.points = self.points.saturating_sub(1);
    }

    /// Qdrant's inverse document frequency for an index present in `n` of `total` points.
    fn idf(n: usize, total: usize) -> f32 {
        let (n, total) = (n as f32, total as f32);
        (1.0 + (total - n + 0.5) / (n + 0.5)).ln()
    }
}

/// The values in both ascending lists, ascending.
fn intersect_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// What the payload indexes narrowed a filter to.
struct Candidates {
    /// Slots that may match, in slot order.
    slots: Vec<u32>,
    /// True when the indexes decided every condition, so each slot does match.
    complete: bool,
}

/// A keyword-style payload index: for each value (as its JSON text), the slots that hold it.
struct PayloadIndex {
    schema: String,
    /// The `field_schema` object it was created with (reported back in collection info), or null.
    params: Value,
    /// Kept ordered, so a query's candidates come out in slot (memory) order without sorting.
    values: HashMap<String, BTreeSet<u32>>,
    points: HashSet<u32>,
    /// For a tenant index (`is_tenant: true`): each value's code rows for each coded dense vector,
    /// kept together so that a search within one tenant reads one stretch of memory.
    tenants: Option<HashMap<String, HashMap<String, Group>>>,
}

/// One tenant's code rows (as in [`DenseIndex::codes`]) for one dense vector, in no particular
/// order, with the slot each row belongs to.
#[derive(Default)]
struct Group {
    slots: Vec<u32>,
    codes: Vec<u8>,
    /// Where each slot's row is.
    rows: HashMap<u32, u32>,
}

impl Group {
    /// Adds or replaces `slot`'s row.
    fn put(&mut self, slot: u32, row: &[u8]) {
        let width = row.len();
        match self.rows.get(&slot) {
            Some(&at) => self.codes[at as usize * width..][..width].copy_from_slice(row),
            None => {
                self.rows.insert(slot, self.slots.len() as u32);
                self.slots.push(slot);
                self.codes.extend_from_slice(row);
            }
        }
    }

    /// Removes `slot`'s row, moving the last row into its place.
    fn take(&mut self, slot: u32) {
        let Some(at) = self.rows.remove(&slot) else {
            return;
        };
        let (at, last) = (at as usize, self.slots.len() - 1);
        let width = self.codes.len() / self.slots.len();
        if at != last {
            self.codes.copy_within(last * width.., at * width);
            let moved = self.slots[last];
            self.slots[at] = moved;
            self.rows.insert(moved, at as u32);
        }
        self.slots.pop();
        self.codes.truncate(last * width);
    }

    fn rows(&self) -> impl Iterator<Item = (u32, &[u8])> {
        let width = self.codes.len() / self.slots.len().max(1);
        self.slots
            .iter()
            .copied()
            .zip(self.codes.chunks_exact(width.max(1)))
    }
}

impl PayloadIndex {
    fn new(schema: &str, params: Value) -> Self {
        let tenant = params["is_tenant"].as_bool() == Some(true);
        Self {
            schema: schema.to_string(),
            params,
            values: HashMap::new(),
            points: HashSet::new(),
            tenants: tenant.then(HashMap::new),
        }
    }

    fn add(
        &mut self,
        slot: u32,
        key: &str,
        payload: &Map<String, Value>,
        dense: &BTreeMap<String, DenseIndex>,
    ) {
        let values = filter::values_at(payload, key);
        if values.is_empty() {
            return;
        }
        self.points.insert(slot);
        for value in values {
            if !(value.is_object() || value.is_array() || value.is_null()) {
                let text = value.to_string();
                if let Some(tenants) = &mut self.tenants {
                    let groups = tenants.entry(text.clone()).or_default();
                    for (name, index) in dense {
                        if let Some(row) = index.code_bytes(slot) {
                            groups.entry(name.clone()).or_default().put(slot, row);
                        }
                    }
                }
                self.values.entry(text).or_default().insert(slot);
            }
        }
    }

    fn remove(&mut self, slot: u32, key: &str, payload: &Map<String, Value>) {
        self.points.remove(&slot);
        for value in filter::values_at(payload, key) {
            let text = value.to_string();
            if let Some(set) = self.values.get_mut(&text) {
                set.remove(&slot);
                if set.is_empty() {
                    self.values.remove(&text);
                }
            }
            if let Some(tenants) = &mut self.tenants
                && let Some(groups) = tenants.get_mut(&text)
            {
                groups.values_mut().for_each(|g| g.take(slot));
                groups.retain(|_, g| !g.slots.is_empty());
                if groups.is_empty() {
                    tenants.remove(&text);
                }
            }
        }
    }

    fn info(&self) -> Value {
        let mut info = json!({"data_type": self.schema, "points": self.points.len()});
        if self.params.is_object() {
            info["params"] = self.params.clone();
        }
        info
    }
}

/// A collection in memory.
pub struct Collection {
    config: Config,
    slots: Vec<Option<Slot>>,
    ids: BTreeMap<PointId, u32>,
    dense: BTreeMap<String, DenseIndex>,
    sparse: BTreeMap<String, SparseIndex>,
    indexes: BTreeMap<String, PayloadIndex>,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("points", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Collection {
    fn new(config: Config) -> Result<Self> {
        let mut dense = BTreeMap::new();
        for (name, params) in &config.dense {
            dense.insert(name.clone(), DenseIndex::new(params.clone(), config.hnsw)?);
        }
        let sparse = config
            .sparse
            .iter()
            .map(|(name, idf)| {
                (
                    name.clone(),
                    SparseIndex {
                        idf: *idf,
                        ..SparseIndex::default()
                    },
                )
            })
            .collect();
        Ok(Self {
            config,
            slots: Vec::new(),
            ids: BTreeMap::new(),
            dense,
            sparse,
            indexes: BTreeMap::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Parses one point's `vector` field against this collection's vector names and sizes.
    pub fn parse_vectors(&self, value: &Value) -> Result<PointVectors> {
        let mut vectors = PointVectors::default();
        match value {
            Value::Array(_) => {
                if !self.config.dense.contains_key("") {
                    return Err(VecError::wrong_input(
                        "Not existing vector name error: this collection has only named vectors",
                    ));
                }
                vectors.dense.insert(String::new(), dense_values(value)?);
            }
            Value::Object(named) => {
                for (name, v) in named {
                    if self.config.dense.contains_key(name) {
                        vectors.dense.insert(name.clone(), dense_values(v)?);
                    } else if self.config.sparse.contains_key(name) {
                        vectors.sparse.insert(name.clone(), SparseVector::parse(v)?);
                    } else {
                        return Err(VecError::wrong_input(format!(
                            "Not existing vector name error: {name}"
                        )));
                    }
                }
            }
            Value::Null => {}
            _ => {
                return Err(VecError::bad_request(
                    "Format error in JSON body: vector must be a list or an object of named vectors",
                ));
            }
        }
        for (name, v) in &mut vectors.dense {
            let params = &self.config.dense[name];
            if v.len() != params.size {
                return Err(VecError::wrong_input(format!(
                    "Vector dimension error: expected dim: {}, got {}",
                    params.size,
                    v.len()
                )));
            }
            if params.distance == Distance::Cosine {
                normalize(v);
            }
        }
        Ok(vectors)
    }

    fn free_slot(&self) -> u32 {
        self.slots.len() as u32
    }

    fn apply_upsert(&mut self, points: Vec<(u32, u64, NewPoint)>) -> Result<()> {
        let mut added: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (slot, version, point) in points {
            self.remove_slot(slot);
            let NewPoint {
                id,
                payload,
                vectors,
            } = point;
            for (name, vector) in &vectors.dense {
                if let Some(index) = self.dense.get_mut(name) {
                    index.store(slot, vector);
                    added.entry(name.clone()).or_default().push(slot);
                }
            }
            for (name, vector) in &vectors.sparse {
                if let Some(index) = self.sparse.get_mut(name) {
                    index.add(slot, vector);
                }
            }
            for (key, index) in &mut self.indexes {
                index.add(slot, key, &payload, &self.dense);
            }
            if self.slots.len() <= slot as usize {
                self.slots.resize_with(slot as usize + 1, || None);
            }
            self.ids.insert(id.clone(), slot);
            self.slots[slot as usize] = Some(Slot {
                id,
                version,
                payload,
                sparse: vectors.sparse,
            });
        }
        for (name, slots) in added {
            self.dense[&name].index(&slots)?;
        }
        Ok(())
    }

    fn remove_slot(&mut self, slot: u32) -> Option<PointId> {
        let old = self.slots.get_mut(slot as usize)?.take()?;
        for index in self.dense.values_mut() {
            index.remove(slot);
        }
        for (name, vector) in &old.sparse {
            if let Some(index) = self.sparse.get_mut(name) {
                index.remove(slot, vector);
            }
        }
        for (key, index) in &mut self.indexes {
            index.remove(slot, key, &old.payload);
        }
        self.ids.remove(&old.id);
        Some(old.id)
    }

    fn slot(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn matches(&self, slot: u32, filter: Option<&Filter>) -> bool {
        match (self.slot(slot), filter) {
            (Some(s), Some(f)) => f.matches(&s.id, &s.payload),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether scoring `estimate` candidates one by one costs less than walking the graph.
    ///
    /// Below Qdrant's full-scan threshold the scan always wins. Above it, a graph walk that keeps
    /// only a fraction `estimate / len` of what it visits needs about `ef * m * len / estimate`
    /// distance computations to collect `ef` matches, against `estimate` for the scan: a selective
    /// filter (one project among a hundred) is cheaper to scan even when it leaves many points.
    fn prefer_exact(&self, size: usize, estimate: usize, want: usize) -> bool {
        let hnsw = self.config.hnsw;
        let scan_limit = hnsw.full_scan_threshold_kb * 1024 / (size * 4);
        let estimate = estimate.max(1);
        let walk = hnsw.ef_construct.max(want) * hnsw.m * (self.len() / estimate);
        estimate <= scan_limit.max(1) || estimate <= walk
    }

    /// For a filter whose `must` has an equality condition on a tenant index and no other condition
    /// an index could narrow: that condition's groups for vector `using`, and whether they hold
    /// exactly the filter's matches.
    fn tenant_groups(&self, filter: &Filter, using: &str) -> Option<(Vec<&Group>, bool)> {
        let mut indexed_conditions = filter.must.iter().filter_map(|condition| {
            let (key, values) = condition.indexable()?;
            Some((self.indexes.get(key)?, values))
        });
        let (index, values) = indexed_conditions.next()?;
        if indexed_conditions.next().is_some() {
            return None;
        }
        let tenants = index.tenants.as_ref()?;
        let groups = values
            .iter()
            .filter_map(|value| tenants.get(&value.to_string())?.get(using))
            .collect();
        let only = filter.must.len() == 1
            && filter.should.is_empty()
            && filter.must_not.is_empty()
            && filter.min_should.is_none();
        Some((groups, only))
    }

    /// The code rows of those of `slots` that match `filter` (all of them when `covered`).
    fn code_rows<'a>(
        &'a self,
        index: &'a DenseIndex,
        slots: impl Iterator<Item = u32> + Send + 'a,
        filter: Option<&'a Filter>,
        covered: bool,
    ) -> impl Iterator<Item = (u32, &'a [u8])> + Send + 'a {
        slots.filter_map(move |slot| {
            let row = index.code_bytes(slot)?;
            (covered || self.matches(slot, filter)).then_some((slot, row))
        })
    }

    /// The slots an index can narrow `filter`'s `must` equality conditions to, when any is indexed.
    fn candidates(&self, filter: &Filter) -> Option<Candidates> {
        let mut best: Option<Vec<u32>> = None;
        let mut complete =
            filter.should.is_empty() && filter.must_not.is_empty() && filter.min_should.is_none();
        for condition in &filter.must {
            let Some((key, values)) = condition.indexable() else {
                complete = false;
                continue;
            };
            let Some(index) = self.indexes.get(key) else {
                complete = false;
                continue;
            };
            let sets: Vec<&BTreeSet<u32>> = values
                .iter()
                .filter_map(|value| index.values.get(&value.to_string()))
                .collect();
            let slots: Vec<u32> = match sets.as_slice() {
                [one] => one.iter().copied().collect(),
                several => {
                    let mut all: Vec<u32> =
                        several.iter().flat_map(|s| s.iter().copied()).collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                }
            };
            best = Some(match best {
                None => slots,
                Some(previous) => intersect_sorted(&previous, &slots),
            });
        }
        best.map(|slots| Candidates { slots, complete })
    }

    /// Points matching `filter`, in id order, starting at `from`.
    pub fn scan(
        &self,
        filter: Option<&Filter>,
        from: Option<&PointId>,
    ) -> impl Iterator<Item = u32> {
        let range = match from {
            Some(id) => self.ids.range(id.clone()..),
            None => self.ids.range(..),
        };
        range
            .map(|(_, slot)| *slot)
            .filter(move |slot| self.matches(*slot, filter))
    }

    /// The best `want` points for a query vector, best first.
    pub fn search(&self, search: &Search) -> Result<Vec<(u32, f32)>> {
        let want = search.want();
        if want == 0 {
            return Ok(Vec::new());
        }
        match &search.query {
            QueryVector::Dense(query) => self.search_dense(search, query, want),
            QueryVector::Sparse(query) => self.search_sparse(search, query, want),
        }
    }

    fn search_dense(&self, search: &Search, query: &[f32], want: usize) -> Result<Vec<(u32, f32)>> {
        let index = self.dense.get(&search.using).ok_or_else(|| {
            VecError::wrong_input(format!("Not existing vector name error: {}", search.using))
        })?;
        if query.len() != index.params.size {
            return Err(VecError::wrong_input(format!(
                "Vector dimension error: expected dim: {}, got {}",
                index.params.size,
                query.len()
            )));
        }
        let mut query = query.to_vec();
        if index.params.distance == Distance::Cosine {
            normalize(&mut query);
        }
        let distance = index.params.distance;
        let filter = search.filter.as_ref();
        // A scan the store chose (not one the request asked to be exact) over many candidates ranks
        // them by their codes and rescores the best `keep` exactly.
        let keep = want
            .saturating_mul(RESCORE_FACTOR)
            .saturating_add(RESCORE_EXTRA);
        // Within one tenant the codes lie together: rank them there, without gathering rows.
        if !search.exact
            && index.coded()
            && let Some((groups, covered)) =
                filter.and_then(|f| self.tenant_groups(f, &search.using))
        {
            let rows: usize = groups.iter().map(|g| g.slots.len()).sum();
            if rows > keep && self.prefer_exact(index.params.size, rows, want) {
                let halves = |first: bool| {
                    groups.iter().flat_map(move |g| {
                        let half = g.slots.len() / 2;
                        let (skip, take) = if first { (0, half) } else { (half, usize::MAX) };
                        g.rows()
                            .skip(skip)
                            .take(take)
                            .filter(move |(slot, _)| covered || self.matches(*slot, filter))
                    })
                };
                let parallel = rows >= PARALLEL_SCAN;
                let rough = Rough::rank_parts(keep, &query, halves(true), halves(false), parallel)?;
                if let Some(top) = rough.settle(index, &query, want) {
                    return Ok(top.finish(search.score_threshold));
                }
            }
        }
        let candidates = filter.and_then(|f| self.candidates(f));
        // When the indexes answered every condition, the candidates are exactly the matches.
        let covered = candidates.as_ref().is_some_and(|c| c.complete);
        let candidates = candidates.map(|c| c.slots);
        let estimate = candidates.as_ref().map_or(self.len(), Vec::len);
        let exact = search.exact || self.prefer_exact(index.params.size, estimate, want);
        let mut top = TopK::new(want, distance.higher_is_better());
        let every_slot = 0..self.slots.len() as u32;
        let all_candidates = || -> Box<dyn Iterator<Item = u32> + '_> {
            match &candidates {
                Some(slots) => Box::new(slots.iter().copied()),
                None => Box::new(every_slot.clone()),
            }
        };
        let mut full_scan = exact;
        if exact && !search.exact && index.coded() && estimate > keep {
            let rough = match &candidates {
                Some(slots) => {
                    let (first, second) = slots.split_at(slots.len() / 2);
                    let parallel = slots.len() >= PARALLEL_SCAN;
                    let first = self.code_rows(index, first.iter().copied(), filter, covered);
                    let second = self.code_rows(index, second.iter().copied(), filter, covered);
                    Rough::rank_parts(keep, &query, first, second, parallel)?
                }
                None => Rough::rank(
                    keep,
                    &query,
                    self.code_rows(index, every_slot.clone(), filter, covered),
                ),
            };
            match rough.settle(index, &query, want) {
                Some(settled) => {
                    top = settled;
                    full_scan = false;
                }
                // Many near-equal vectors: every candidate is scored in full.
                None => full_scan = true,
            }
        }
        if exact && full_scan {
            for slot in all_candidates() {
                if let Some(v) = index.vector(slot)
                    && (covered || self.matches(slot, filter))
                {
                    top.push(slot, distance.score(&query, v));
                }
            }
        } else if !exact {
            let ef = search.ef.unwrap_or(self.config.hnsw.ef_construct).max(want);
            index.graph.change_expansion_search(ef);
            let allowed: Option<HashSet<u32>> = candidates.map(|c| c.into_iter().collect());
            let found = index
                .graph
                .filtered_search(&query, want, |key| {
                    let slot = key as u32;
                    allowed.as_ref().is_none_or(|a| a.contains(&slot)) && self.matches(slot, filter)
                })
                .map_err(|e| {
                    tracing::error!("vector store: search failed: {e}");
                    VecError::bad_request("Service internal error: search failed")
                })?;
            for (key, _) in found.keys.iter().zip(&found.distances) {
                let slot = *key as u32;
                if let Some(v) = index.vector(slot) {
                    top.push(slot, distance.score(&query, v));
                }
            }
            // A selective filter can starve the graph walk; fall back to an exact scan then.
            if top.len() < want.min(estimate) {
                let exact = Search {
                    exact: true,
                    ..search.clone()
                };
                return self.search_dense(&exact, &query, want);
            }
        }
        Ok(top.finish(search.score_threshold))
    }

    fn search_sparse(
        &self,
        search: &Search,
        query: &SparseVector,
        want: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let index = self.sparse.get(&search.using).ok_or_else(|| {
            VecError::wrong_input(format!("Not existing vector name error: {}", search.using))
        })?;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for (i, q) in query.indices.iter().zip(&query.values) {
            let Some(list) = index.postings.get(i) else {
                continue;
            };
            let weight = if index.idf {
                q * SparseIndex::idf(list.len(), index.points)
            } else {
                *q
            };
            for (slot, value) in list {
                *scores.entry(*slot).or_default() += weight * value;
            }
        }
        let filter = search.filter.as_ref();
        let mut top = TopK::new(want, true);
        for (slot, score) in scores {
            if self.matches(slot, filter) {
                top.push(slot, score);
            }
        }
        Ok(top.finish(search.score_threshold))
    }

    /// Scores given slots against a query (for re-ranking prefetched candidates).
    pub fn rescore(&self, search: &Search, slots: &[u32]) -> Result<Vec<(u32, f32)>> {
        let want = search.want();
        match &search.query {
            QueryVector::Dense(query) => {
                let index = self.dense.get(&search.using).ok_or_else(|| {
                    VecError::wrong_input(format!(
                        "Not existing vector name error: {}",
                        search.using
                    ))
                })?;
                let mut query = query.clone();
                if index.params.distance == Distance::Cosine {
                    normalize(&mut query);
                }
                let mut top = TopK::new(want, index.params.distance.higher_is_better());
                for &slot in slots {
                    if let Some(v) = index.vector(slot)
                        && self.matches(slot, search.filter.as_ref())
                    {
                        top.push(slot, index.params.distance.score(&query, v));
                    }
                }
                Ok(top.finish(search.score_threshold))
            }
            QueryVector::Sparse(_) => {
                let allowed: HashSet<u32> = slots.iter().copied().collect();
                let all = Search {
                    limit: usize::MAX / 4,
                    offset: 0,
                    ..search.clone()
                };
                let mut scored = self.search(&all)?;
                scored.retain(|(slot, _)| allowed.contains(slot));
                scored.truncate(want);
                Ok(scored)
            }
        }
    }

    pub fn higher_is_better(&self, using: &str) -> bool {
        self.dense
            .get(using)
            .is_none_or(|d| d.params.distance.higher_is_better())
    }

    /// A point's JSON record with the parts asked for.
    pub fn record(&self, slot: u32, with: &With) -> Option<Map<String, Value>> {
        let s = self.slot(slot)?;
        let mut record = Map::new();
        record.insert("id".into(), s.id.to_json());
        record.insert("version".into(), json!(s.version));
        record.insert("payload".into(), with.payload(&s.payload));
        let vector = match &with.vectors {
            WithVectors::None => Value::Null,
            selection => {
                let wanted = |name: &str| match selection {
                    WithVectors::All => true,
                    WithVectors::Named(names) => names.iter().any(|n| n == name),
                    WithVectors::None => false,
                };
                if self.config.unnamed && wanted("") {
                    self.dense[""]
                        .vector(slot)
                        .map_or(Value::Null, |v| json!(v))
                } else {
                    let mut named = Map::new();
                    for (name, index) in &self.dense {
                        if wanted(name)
                            && let Some(v) = index.vector(slot)
                        {
                            named.insert(name.clone(), json!(v));
                        }
                    }
                    for (name, v) in &s.sparse {
                        if wanted(name) {
                            named.insert(name.clone(), v.to_json());
                        }
                    }
                    Value::Object(named)
                }
            }
        };
        record.insert("vector".into(), vector);
        Some(record)
    }

    pub fn slot_of(&self, id: &PointId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub fn id_of(&self, slot: u32) -> Option<&PointId> {
        self.slot(slot).map(|s| &s.id)
    }

    pub fn info(&self) -> Value {
        let payload_schema: Map<String, Value> = self
            .indexes
            .iter()
            .map(|(key, index)| (key.clone(), index.info()))
            .collect();
        let mut params = self.config.to_json();
        let hnsw = params["hnsw_config"].take();
        if let Some(object) = params.as_object_mut() {
            object.remove("hnsw_config");
            object.insert("shard_number".into(), json!(1));
            object.insert("replication_factor".into(), json!(1));
            object.insert("write_consistency_factor".into(), json!(1));
            object.insert("on_disk_payload".into(), json!(false));
        }
        let indexed: usize = self.dense.values().map(|d| d.graph.size()).sum();
        json!({
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": indexed,
            "points_count": self.len(),
            "segments_count": 1,
            "config": {
                "params": params,
                "hnsw_config": hnsw,
                "optimizer_config": {
                    "deleted_threshold": 0.2,
                    "vacuum_min_vector_number": 1000,
                    "default_segment_number": 1,
                    "flush_interval_sec": 5,
                },
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            },
            "payload_schema": payload_schema,
        })
    }
}

/// The best candidates by code score, before they are rescored exactly.
struct Rough {
    top: TopK,
    /// How many candidates were ranked.
    ranked: usize,
    /// The largest scale among them, which bounds how far a code score can be off.
    largest: f32,
}

impl Rough {
    /// Ranks rows of codes and scale (see [`DenseIndex::codes`]), keeping the best `keep`.
    fn rank<'a>(keep: usize, query: &[f32], rows: impl Iterator<Item = (u32, &'a [u8])>) -> Self {
        let mut rough = Self {
            top: TopK::new(keep, true),
            ranked: 0,
            largest: 0.0,
        };
        for (slot, row) in rows {
            let (codes, tail) = row.split_at(query.len());
            let scale = f32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
            if scale > 0.0 {
                rough.top.push(slot, scale * dot_codes(query, codes));
                rough.ranked += 1;
                rough.largest = rough.largest.max(scale);
            }
        }
        rough
    }

    /// Ranks two parts, at once when `parallel`, the second on another thread: reading rows waits
    /// on memory more than it computes, and two threads keep twice as many reads in flight.
    fn rank_parts<'a>(
        keep: usize,
        query: &[f32],
        first: impl Iterator<Item = (u32, &'a [u8])>,
        second: impl Iterator<Item = (u32, &'a [u8])> + Send,
        parallel: bool,
    ) -> Result<Self> {
        if !parallel {
            return Ok(Self::rank(keep, query, first.chain(second)));
        }
        let (mut mine, other) = std::thread::scope(|scope| {
            let other = scope.spawn(|| Self::rank(keep, query, second));
            (Self::rank(keep, query, first), other.join())
        });
        let other =
            other.map_err(|_| VecError::bad_request("Service internal error: search failed"))?;
        mine.top.absorb(other.top);
        mine.ranked += other.ranked;
        mine.largest = mine.largest.max(other.largest);
        Ok(mine)
    }

    /// Rescores the ranked slots exactly and keeps the best `want`; `None` when a candidate left
    /// out could still belong among them.
    ///
    /// A code is within half a step of its value, so a code score is within
    /// `0.5 * scale * sum |q|` of the exact one: the result is certain when nothing left out could
    /// reach the worst score kept (it may not be with many near-equal vectors).
    fn settle(self, index: &DenseIndex, query: &[f32], want: usize) -> Option<TopK> {
        let cut = (self.ranked > self.top.k)
            .then(|| self.top.worst())
            .flatten();
        // A point in two of the tenants asked for was ranked twice.
        let mut slots: Vec<u32> = self.top.heap.into_iter().map(|e| e.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        let distance = index.params.distance;
        let mut top = TopK::new(want, distance.higher_is_better());
        for slot in slots {
            if let Some(v) = index.vector(slot) {
                top.push(slot, distance.score(query, v));
            }
        }
        let uncertain = cut.is_some_and(|cut| {
            let slack = 0.5 * self.largest * query.iter().map(|x| x.abs()).sum::<f32>();
            top.len() < want || top.worst().is_none_or(|worst| cut + slack * 1.001 >= worst)
        });
        (!uncertain).then_some(top)
    }
}

/// Keeps the best `k` scores seen.
struct TopK {
    k: usize,
    higher_is_better: bool,
    heap: BinaryHeap<Entry>,
}

/// Heap entry whose ordering puts the worst kept score on top.
struct Entry {
    key: f32,
    slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `key` is "badness": the max-heap's top is the worst entry kept.
        self.key
            .total_cmp(&other.key)
            .then(self.slot.cmp(&other.slot))
    }
}

impl TopK {
    fn new(k: usize, higher_is_better: bool) -> Self {
        Self {
            k,
            higher_is_better,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    /// The worst score kept.
    fn worst(&self) -> Option<f32> {
        let key = self.heap.peek()?.key;
        Some(if self.higher_is_better { -key } else { key })
    }

    fn push(&mut self, slot: u32, score: f32) {
        let key = if self.higher_is_better { -score } else { score };
        self.push_key(slot, key);
    }

    /// Keeps the best of both.
    fn absorb(&mut self, other: TopK) {
        for entry in other.heap {
            self.push_key(entry.slot, entry.key);
        }
    }

    fn push_key(&mut self, slot: u32, key: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Entry { key, slot });
        } else if let Some(worst) = self.heap.peek()
            && key < worst.key
        {
            self.heap.pop();
            self.heap.push(Entry { key, slot });
        }
    }

    fn finish(self, threshold: Option<f32>) -> Vec<(u32, f32)> {
        let higher = self.higher_is_better;
        let mut entries = self.heap.into_sorted_vec();
        let to_score = |key: f32| if higher { -key } else { key };
        if let Some(t) = threshold {
            entries.retain(|e| {
                let s = to_score(e.key);
                if higher { s >= t } else { s <= t }
            });
        }
        entries
            .into_iter()
            .map(|e| (e.slot, to_score(e.key)))
            .collect()
    }
}

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
    fn want(&self) -> usize {
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

    fn payload(&self, payload: &Map<String, Value>) -> Value {
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

const SCHEMA: &str = "
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
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
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
    db: Mutex<Connection>,
    collections: RwLock<BTreeMap<String, Shared>>,
    operation: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> Result<()> {
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

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
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

    fn next_operation(&self) -> u64 {
        self.operation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Inserts or replaces points; committed to disk before it returns. Returns the operation id.
    pub fn upsert(&self, name: &str, points: Vec<NewPoint>) -> Result<u64> {
        let shared = self.collection(name)?;
        let mut collection = shared.write().unwrap_or_else(|p| p.into_inner());
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

/// Which points a delete applies to.
#[derive(Debug)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edgerag-vec-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("vectors.sqlite")
    }

    /// Reproducible numbers in [-1, 1) (xorshift).
    fn numbers(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f32 / 500.0 - 1.0
        }
    }

    fn point(id: u64, vector: Vec<f32>, project: &str) -> NewPoint {
        NewPoint {
            id: PointId::Num(id),
            payload: json!({"project": project}).as_object().unwrap().clone(),
            vectors: PointVectors {
                dense: BTreeMap::from([(String::new(), vector)]),
                sparse: BTreeMap::new(),
            },
        }
    }

    #[test]
    fn ids_parse_and_order_like_qdrant() {
        assert_eq!(PointId::parse(&json!(7)).unwrap(), PointId::Num(7));
        assert_eq!(
            PointId::parse(&json!("550E8400E29B41D4A716446655440000")).unwrap(),
            PointId::Uuid("550e8400-e29b-41d4-a716-446655440000".into())
        );
        assert!(PointId::parse(&json!(-1)).is_err());
        assert!(PointId::parse(&json!("not-a-uuid")).is_err());
        assert!(PointId::Num(u64::MAX) < PointId::Uuid("0".into()));
        let key = PointId::Num(42).storage_key();
        assert_eq!(PointId::from_storage_key(&key), Some(PointId::Num(42)));
    }

    #[test]
    fn vectors_round_trip_through_storage_encoding() {
        let vectors = PointVectors {
            dense: BTreeMap::from([("a".into(), vec![1.0, -2.5]), (String::new(), vec![0.25])]),
            sparse: BTreeMap::from([(
                "s".into(),
                SparseVector {
                    indices: vec![3, 9],
                    values: vec![0.5, 1.5],
                },
            )]),
        };
        let decoded = PointVectors::decode(&vectors.encode()).unwrap();
        assert_eq!(decoded.dense, vectors.dense);
        assert_eq!(decoded.sparse, vectors.sparse);
        assert!(PointVectors::decode(&[0, 1]).is_none());
    }

    #[test]
    fn exact_and_graph_search_agree_and_survive_reopen() {
        let path = temp_db("search");
        let store = Store::open(&path).unwrap();
        store
            .create_collection(
                "c",
                &json!({"vectors": {"size": 8, "distance": "Cosine"},
                        "hnsw_config": {"full_scan_threshold": 0}}),
            )
            .unwrap();
        let mut random = numbers(7);
        let points: Vec<NewPoint> = (0..2000)
            .map(|i| {
                let v: Vec<f32> = (0..8).map(|_| random()).collect();
                point(i, v, if i % 4 == 0 { "a" } else { "b" })
            })
            .collect();
        store.upsert("c", points).unwrap();
        store
            .create_index("c", "project", &json!("keyword"))
            .unwrap();
        let query: Vec<f32> = (0..8).map(|_| random()).collect();
        let search = |exact: bool, filter: Option<Filter>| Search {
            using: String::new(),
            query: QueryVector::Dense(query.clone()),
            filter,
            limit: 10,
            offset: 0,
            score_threshold: None,
            ef: Some(200),
            exact,
        };
        let shared = store.collection("c").unwrap();
        let collection = shared.read().unwrap();
        let exact = collection.search(&search(true, None)).unwrap();
        let graph = collection.search(&search(false, None)).unwrap();
        let overlap = graph
            .iter()
            .filter(|g| exact.iter().any(|e| e.0 == g.0))
            .count();
        assert!(
            overlap >= 9,
            "graph search found {overlap}/10 of the exact top 10"
        );
        assert!(exact.windows(2).all(|w| w[0].1 >= w[1].1));

        let only_a =
            filter::parse(&json!({"must": [{"key": "project", "match": {"value": "a"}}]})).unwrap();
        let filtered = collection.search(&search(false, only_a)).unwrap();
        assert_eq!(filtered.len(), 10);
        for (slot, _) in &filtered {
            let PointId::Num(id) = collection.id_of(*slot).unwrap() else {
                panic!()
            };
            assert_eq!(id % 4, 0);
        }
        // The index decides this filter alone; with a condition it cannot answer, every candidate
        // is checked against the payload. Both must give the same answer.
        let checked = filter::parse(&json!({
            "must": [{"key": "project", "match": {"value": "a"}}],
            "must_not": [{"key": "project", "match": {"value": "none"}}]
        }))
        .unwrap();
        assert_eq!(
            collection.search(&search(false, checked)).unwrap(),
            filtered
        );
        // The scan ranked by codes and rescored finds what the scan over full vectors finds.
        let only_a =
            filter::parse(&json!({"must": [{"key": "project", "match": {"value": "a"}}]})).unwrap();
        assert_eq!(collection.search(&search(true, only_a)).unwrap(), filtered);
        // Two indexed conditions narrow to the slots both allow.
        let both = filter::parse(&json!({"must": [
            {"key": "project", "match": {"any": ["a", "b"]}},
            {"key": "project", "match": {"value": "a"}}
        ]}))
        .unwrap();
        assert_eq!(collection.search(&search(false, both)).unwrap(), filtered);
        assert_eq!(intersect_sorted(&[1, 3, 5, 9], &[2, 3, 9, 11]), vec![3, 9]);
        // A filter keeping a quarter of 2,000 points is scanned; no filter walks the graph.
        assert!(collection.prefer_exact(8, 500, 10));
        assert!(!collection.prefer_exact(8, 2000, 10));
        drop(collection);
        drop(store);

        let reopened = Store::open(&path).unwrap();
        let shared = reopened.collection("c").unwrap();
        let collection = shared.read().unwrap();
        assert_eq!(collection.len(), 2000);
        assert_eq!(collection.search(&search(true, None)).unwrap(), exact);
    }

    #[test]
    fn the_code_scan_is_exact_among_near_equal_vectors() {
        let store = Store::open(&temp_db("ties")).unwrap();
        store
            .create_collection("c", &json!({"vectors": {"size": 8, "distance": "Cosine"}}))
            .unwrap();
        // Thirteen directions repeated: hundreds of exact duplicates and near-duplicates per query.
        let points: Vec<NewPoint> = (0..3000u64)
            .map(|id| {
                let mut v: Vec<f32> = (0..8).map(|d| ((id + d) % 13) as f32 + 1.0).collect();
                normalize(&mut v);
                point(id, v, "a")
            })
            .collect();
        store.upsert("c", points).unwrap();
        let shared = store.collection("c").unwrap();
        let collection = shared.read().unwrap();
        for probe in 0..13u64 {
            let query: Vec<f32> = (0..8).map(|d| ((probe + d) % 13) as f32 + 1.0).collect();
            let search = |exact: bool| Search {
                using: String::new(),
                query: QueryVector::Dense(query.clone()),
                filter: None,
                limit: 5,
                offset: 0,
                score_threshold: None,
                ef: None,
                exact,
            };
            let scores = |found: Vec<(u32, f32)>| found.iter().map(|f| f.1).collect::<Vec<_>>();
            let chosen = scores(collection.search(&search(false)).unwrap());
            assert_eq!(chosen, scores(collection.search(&search(true)).unwrap()));
            assert!((chosen[0] - 1.0).abs() < 1e-5, "{chosen:?}");
        }
    }

    #[test]
    fn upserts_replace_and_deletes_remove_everywhere() {
        let store = Store::open(&temp_db("replace")).unwrap();
        store
            .create_collection("c", &json!({"vectors": {"size": 2, "distance": "Dot"}}))
            .unwrap();
        store
            .create_index("c", "project", &json!("keyword"))
            .unwrap();
        store
            .upsert(
                "c",
                vec![point(1, vec![1.0, 0.0], "a"), point(2, vec![0.0, 1.0], "a")],
            )
            .unwrap();
        store
            .upsert("c", vec![point(1, vec![0.0, 2.0], "b")])
            .unwrap();
        let search = Search {
            using: String::new(),
            query: QueryVector::Dense(vec![0.0, 1.0]),
            filter: None,
            limit: 10,
            offset: 0,
            score_threshold: None,
            ef: None,
            exact: false,
        };
        {
            let shared = store.collection("c").unwrap();
            let c = shared.read().unwrap();
            let hits = c.search(&search).unwrap();
            assert_eq!(c.id_of(hits[0].0), Some(&PointId::Num(1)));
            assert_eq!(hits[0].1, 2.0);
            let in_a = filter::parse(&json!({"must": {"key": "project", "match": {"value": "a"}}}))
                .unwrap()
                .unwrap();
            assert_eq!(c.scan(Some(&in_a), None).count(), 1);
        }
        store
            .delete_points("c", Selector::Ids(vec![PointId::Num(1)]))
            .unwrap();
        assert_eq!(store.stored_count("c").unwrap(), 1);
        let shared = store.collection("c").unwrap();
        let c = shared.read().unwrap();
        let hits = c.search(&search).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(c.id_of(hits[0].0), Some(&PointId::Num(2)));
    }

    #[test]
    fn a_tenant_index_finds_what_a_plain_index_finds() {
        let path = temp_db("tenant");
        let store = Store::open(&path).unwrap();
        for name in ["plain", "tenant"] {
            store
                .create_collection(
                    name,
                    &json!({"vectors": {"size": 16, "distance": "Cosine"}}),
                )
                .unwrap();
        }
        store
            .create_index("plain", "project", &json!("keyword"))
            .unwrap();
        let mut random = numbers(11);
        // One tenant large enough for the two-thread scan, small ones, and points in two tenants.
        let project = |id: u64| match id % 10 {
            0..=6 => json!("big"),
            7 => json!("a"),
            8 => json!("b"),
            _ => json!(["a", "b"]),
        };
        let mut make = |id: u64, project: Value| {
            let mut p = point(id, (0..16).map(|_| random()).collect(), "");
            p.payload.insert("project".into(), project);
            p
        };
        let first: Vec<NewPoint> = (0..7000).map(|id| make(id, project(id))).collect();
        // Half before the tenant index exists (built from the points), half after (kept up).
        for name in ["plain", "tenant"] {
            store.upsert(name, first[..3500].to_vec()).unwrap();
        }
        let tenant = json!({"type": "keyword", "is_tenant": true});
        store.create_index("tenant", "project", &tenant).unwrap();
        // Moves between tenants, new vectors, deletes.
        let changes: Vec<NewPoint> = (0..600).map(|i| make(i * 11, project(i * 7 + 3))).collect();
        let gone: Vec<PointId> = (0..300).map(|i| PointId::Num(i * 13 + 5)).collect();
        for name in ["plain", "tenant"] {
            store.upsert(name, first[3500..].to_vec()).unwrap();
            store.upsert(name, changes.clone()).unwrap();
            store
                .delete_points(name, Selector::Ids(gone.clone()))
                .unwrap();
        }
        let queries: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..16).map(|_| random()).collect())
            .collect();
        let filters = [
            json!({"must": [{"key": "project", "match": {"value": "big"}}]}),
            json!({"must": [{"key": "project", "match": {"value": "a"}}]}),
            json!({"must": [{"key": "project", "match": {"any": ["a", "b"]}}]}),
            json!({"must": [{"key": "project", "match": {"value": "nobody"}}]}),
            json!({"must": [{"key": "project", "match": {"value": "b"}}],
                   "must_not": [{"has_id": [8, 18, 28]}]}),
        ];
        let check = |store: &Store| {
            let plain = store.collection("plain").unwrap();
            let plain = plain.read().unwrap();
            let tenant = store.collection("tenant").unwrap();
            let tenant = tenant.read().unwrap();
            assert_eq!(tenant.len(), plain.len());
            // Every group holds exactly its tenant's points, each row the slot's current codes.
            let index = &tenant.indexes["project"];
            let dense = &tenant.dense[""];
            let groups = index.tenants.as_ref().unwrap();
            assert_eq!(groups.len(), 3);
            for (value, slots) in &index.values {
                let group = &groups[value][""];
                let mut held = group.slots.clone();
                held.sort_unstable();
                assert_eq!(held, slots.iter().copied().collect::<Vec<_>>(), "{value}");
                for (slot, row) in group.rows() {
                    assert_eq!(Some(row), dense.code_bytes(slot));
                }
            }
            let ids = |c: &Collection, found: Vec<(u32, f32)>| {
                found
                    .into_iter()
                    .map(|(slot, score)| (c.id_of(slot).unwrap().clone(), score))
                    .collect::<Vec<_>>()
            };
            for query in &queries {
                for f in &filters {
                    let search = |exact: bool| Search {
                        using: String::new(),
                        query: QueryVector::Dense(query.clone()),
                        filter: filter::parse(f).unwrap(),
                        limit: 10,
                        offset: 0,
                        score_threshold: None,
                        ef: None,
                        exact,
                    };
                    let found = ids(&tenant, tenant.search(&search(false)).unwrap());
                    assert_eq!(
                        found,
                        ids(&plain, plain.search(&search(false)).unwrap()),
                        "{f}"
                    );
                    assert_eq!(
                        found,
                        ids(&tenant, tenant.search(&search(true)).unwrap()),
                        "{f}"
                    );
                }
            }
            assert_eq!(
                tenant.info()["payload_schema"]["project"]["params"]["is_tenant"],
                json!(true)
            );
        };
        check(&store);
        drop(store);
        check(&Store::open(&path).unwrap());

        let store = Store::open(&path).unwrap();
        for bad in [
            json!({"type": "integer", "is_tenant": true}),
            json!({"type": "keyword", "is_tenant": "yes"}),
        ] {
            let error = store.create_index("tenant", "other", &bad).unwrap_err();
            assert_eq!(error.status, 400, "{bad}");
        }
    }

    #[test]
    fn a_store_from_before_index_params_opens_with_its_indexes() {
        let path = temp_db("old-schema");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE collections (name TEXT PRIMARY KEY, config TEXT NOT NULL);
                 CREATE TABLE payload_indexes (collection TEXT NOT NULL, field TEXT NOT NULL,
                     schema TEXT NOT NULL, PRIMARY KEY (collection, field));
                 INSERT INTO collections VALUES ('c', '{\"vectors\": {\"size\": 2, \"distance\": \"Dot\"}}');
                 INSERT INTO payload_indexes VALUES ('c', 'project', 'keyword');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        store
            .upsert("c", vec![point(1, vec![1.0, 0.0], "a")])
            .unwrap();
        let shared = store.collection("c").unwrap();
        let info = shared.read().unwrap().info();
        assert_eq!(
            info["payload_schema"]["project"],
            json!({"data_type": "keyword", "points": 1})
        );
        drop(shared);
        let tenant = json!({"type": "keyword", "is_tenant": true});
        store.create_index("c", "project", &tenant).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let shared = store.collection("c").unwrap();
        let info = shared.read().unwrap().info();
        assert_eq!(info["payload_schema"]["project"]["params"], tenant);
    }
}
