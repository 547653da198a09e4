use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value, json};

use super::config::Config;
use super::dense::{DenseIndex, Rough, TopK};
use super::distance::{Distance, normalize, squared_l2};
use super::payload_index::{Candidates, Group, PayloadIndex};
use super::points::{NewPoint, PointVectors, SparseVector, dense_values, multi_values};
use super::query::{QueryVector, Search, With, WithVectors};
use super::sparse::{SparseIndex, intersect_sorted};
use crate::error::{Result, VecError};
use crate::filter::{self, Filter};
use crate::point_id::PointId;

/// A scan ranked by 8-bit codes rescores `want * RESCORE_FACTOR + RESCORE_EXTRA` points exactly.
pub(super) const RESCORE_FACTOR: usize = 4;
pub(super) const RESCORE_EXTRA: usize = 32;
/// Candidate scans at least this long are split over two threads.
pub(super) const PARALLEL_SCAN: usize = 4096;

pub(super) struct Slot {
    pub(super) id: PointId,
    pub(super) version: u64,
    pub(super) payload: Map<String, Value>,
    pub(super) sparse: BTreeMap<String, SparseVector>,
    /// Multivectors are kept with the point and searched by scanning (late interaction re-ranks
    /// candidates; a graph over every vector of every point is not built).
    pub(super) multi: BTreeMap<String, Vec<Vec<f32>>>,
}

/// A collection in memory.
pub struct Collection {
    pub(super) config: Config,
    pub(super) slots: Vec<Option<Slot>>,
    pub(super) ids: BTreeMap<PointId, u32>,
    pub(super) dense: BTreeMap<String, DenseIndex>,
    pub(super) sparse: BTreeMap<String, SparseIndex>,
    pub(super) indexes: BTreeMap<String, PayloadIndex>,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("points", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Collection {
    pub(super) fn new(config: Config) -> Result<Self> {
        let mut collection = Self {
            config: config.clone(),
            slots: Vec::new(),
            ids: BTreeMap::new(),
            dense: BTreeMap::new(),
            sparse: BTreeMap::new(),
            indexes: BTreeMap::new(),
        };
        for name in config.dense.keys().chain(config.sparse.keys()) {
            collection.open_vector(&config, name)?;
        }
        Ok(collection)
    }

    /// An empty index for the vector `name` of `config` (none for a multivector, which is scanned).
    fn open_vector(&mut self, config: &Config, name: &str) -> Result<()> {
        if let Some(params) = config.dense.get(name).filter(|p| !p.multivector) {
            self.dense.insert(
                name.to_string(),
                DenseIndex::new(params.clone(), config.hnsw)?,
            );
        }
        if let Some(idf) = config.sparse.get(name) {
            self.sparse.insert(
                name.to_string(),
                SparseIndex {
                    idf: *idf,
                    ..SparseIndex::default()
                },
            );
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `name` is a multivector of this collection.
    pub fn is_multi(&self, name: &str) -> bool {
        self.config.dense.get(name).is_some_and(|p| p.multivector)
    }

    /// Parses one point's `vector` field against this collection's vector names and sizes; `place`
    /// names the point in validation messages (`points[3]`).
    pub fn parse_vectors(&self, value: &Value, place: &str) -> Result<PointVectors> {
        let mut vectors = PointVectors::default();
        let dense_or_multi = |vectors: &mut PointVectors, name: &str, v: &Value| -> Result<()> {
            if self.is_multi(name) {
                vectors
                    .multi
                    .insert(name.to_string(), multi_values(v, place)?);
            } else {
                vectors.dense.insert(name.to_string(), dense_values(v)?);
            }
            Ok(())
        };
        match value {
            Value::Array(_) => {
                if !self.config.dense.contains_key("") {
                    return Err(VecError::wrong_input(
                        "Not existing vector name error: this collection has only named vectors",
                    ));
                }
                dense_or_multi(&mut vectors, "", value)?;
            }
            Value::Object(named) => {
                for (name, v) in named {
                    if v.is_object() && !self.config.sparse.contains_key(name) {
                        // A sparse vector's shape is checked before its name, as Qdrant's request
                        // validation does (422 before 400).
                        SparseVector::parse(v, Some(place))?;
                    }
                    if self.config.dense.contains_key(name) {
                        dense_or_multi(&mut vectors, name, v)?;
                    } else if self.config.sparse.contains_key(name) {
                        vectors
                            .sparse
                            .insert(name.clone(), SparseVector::parse(v, Some(place))?);
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
            params.datatype.store(v);
            fit(params, v)?;
        }
        for (name, list) in &mut vectors.multi {
            let params = &self.config.dense[name];
            for v in list {
                params.datatype.store(v);
                fit(params, v)?;
            }
        }
        Ok(vectors)
    }

    pub(super) fn free_slot(&self) -> u32 {
        self.slots.len() as u32
    }

    pub(super) fn apply_upsert(&mut self, points: Vec<(u32, u64, NewPoint)>) -> Result<()> {
        let mut added: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (slot, version, point) in points {
            self.remove_slot(slot);
            let NewPoint {
                id,
                payload,
                mut vectors,
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
                multi: std::mem::take(&mut vectors.multi),
            });
        }
        for (name, slots) in added {
            self.dense[&name].index(&slots)?;
        }
        Ok(())
    }

    pub(super) fn remove_slot(&mut self, slot: u32) -> Option<PointId> {
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

    /// Takes `config`, the same vectors with other parameters: the sparse indexes' modifiers follow
    /// it, and with `rebuild` every dense graph is built again with its HNSW settings.
    pub(super) fn reconfigure(&mut self, config: Config, rebuild: bool) -> Result<()> {
        for (name, index) in &mut self.sparse {
            if let Some(idf) = config.sparse.get(name) {
                index.idf = *idf;
            }
        }
        if rebuild {
            for (name, index) in &mut self.dense {
                let mut fresh = DenseIndex::new(index.params.clone(), config.hnsw)?;
                let slots: Vec<u32> = (0..self.slots.len() as u32)
                    .filter(|&slot| index.vector(slot).is_some())
                    .collect();
                for &slot in &slots {
                    if let Some(v) = index.vector(slot) {
                        fresh.store(slot, v);
                    }
                }
                fresh.index(&slots)?;
                tracing::info!(
                    "vector store: rebuilt the graph of `{name}` ({} vectors)",
                    slots.len()
                );
                *index = fresh;
            }
        }
        self.config = config;
        Ok(())
    }

    /// Takes `config`, which adds the vector `name` to this collection's: an empty index for it.
    pub(super) fn add_vector(&mut self, config: Config, name: &str) -> Result<()> {
        self.open_vector(&config, name)?;
        self.config = config;
        Ok(())
    }

    /// Whether the point in `slot`, `point`, holds a value for vector `name`.
    fn holds_vector(&self, slot: u32, point: &Slot, name: &str) -> bool {
        point.sparse.contains_key(name)
            || point.multi.contains_key(name)
            || self
                .dense
                .get(name)
                .is_some_and(|index| index.vector(slot).is_some())
    }

    /// The slots of points that hold a value for vector `name`.
    pub(super) fn slots_holding(&self, name: &str) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&slot| {
                self.slot(slot)
                    .is_some_and(|s| self.holds_vector(slot, s, name))
            })
            .collect()
    }

    /// Takes `config`, which no longer has the vector `name`: its index and every point's value go.
    pub(super) fn remove_vector(&mut self, config: Config, name: &str) {
        self.dense.remove(name);
        self.sparse.remove(name);
        for slot in self.slots.iter_mut().flatten() {
            slot.sparse.remove(name);
            slot.multi.remove(name);
        }
        for index in self.indexes.values_mut() {
            if let Some(tenants) = &mut index.tenants {
                for groups in tenants.values_mut() {
                    groups.remove(name);
                }
            }
        }
        self.config = config;
    }

    /// A new payload for a point that stays where it is: its payload indexes follow.
    pub(super) fn replace_payload(&mut self, slot: u32, version: u64, payload: Map<String, Value>) {
        let Some(Some(current)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        for (key, index) in &mut self.indexes {
            index.remove(slot, key, &current.payload);
            index.add(slot, key, &payload, &self.dense);
        }
        current.payload = payload;
        current.version = version;
    }

    pub(super) fn slot(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Whether the point in `slot` exists and matches `filter` (every point when there is none).
    pub fn matches(&self, slot: u32, filter: Option<&Filter>) -> bool {
        match (self.slot(slot), filter) {
            (Some(s), Some(f)) => {
                let has_vector = |name: &str| self.holds_vector(slot, s, name);
                let text = |key: &str| self.indexes.get(key).and_then(|i| i.text.as_deref());
                let context = filter::Context {
                    has_vector: &has_vector,
                    text: &text,
                };
                f.matches_point(&s.id, &s.payload, &context)
            }
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
    pub(super) fn prefer_exact(&self, size: usize, estimate: usize, want: usize) -> bool {
        let hnsw = self.config.hnsw;
        let scan_limit = hnsw.full_scan_threshold_kb * 1024 / (size * 4);
        let estimate = estimate.max(1);
        let walk = hnsw.ef_construct.max(want) * hnsw.m * (self.len() / estimate);
        estimate <= scan_limit.max(1) || estimate <= walk
    }

    /// For a filter whose `must` has an equality condition on a tenant index and no other condition
    /// an index could narrow: that condition's groups for vector `using`, and whether they hold
    /// exactly the filter's matches.
    pub(super) fn tenant_groups(
        &self,
        filter: &Filter,
        using: &str,
    ) -> Option<(Vec<&Group>, bool)> {
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
    pub(super) fn code_rows<'a>(
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

    /// At most how many points match `filter`, by the sizes of its indexed `must` equality
    /// conditions' sets (without listing them); `None` when no index narrows it.
    pub(super) fn estimate(&self, filter: &Filter) -> Option<usize> {
        filter
            .must
            .iter()
            .filter_map(|condition| {
                let (key, values) = condition.indexable()?;
                let index = self.indexes.get(key)?;
                Some(
                    values
                        .iter()
                        .filter_map(|value| index.values.get(&value.to_string()))
                        .map(BTreeSet::len)
                        .sum::<usize>(),
                )
            })
            .min()
    }

    /// The slots an index can narrow `filter`'s `must` equality conditions to, when any is indexed.
    pub(super) fn candidates(&self, filter: &Filter) -> Option<Candidates> {
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

    /// The slots of the smallest set one of `filter`'s indexed `must` equality conditions allows
    /// (a superset of the filter's matches), in slot order; `None` when no index narrows it.
    fn narrowest(&self, filter: &Filter) -> Option<Vec<u32>> {
        let sets = filter
            .must
            .iter()
            .filter_map(|condition| {
                let (key, values) = condition.indexable()?;
                let index = self.indexes.get(key)?;
                // Only where the index holds exactly the values an equality compares with.
                if !matches!(
                    index.schema.as_str(),
                    "keyword" | "integer" | "bool" | "uuid"
                ) {
                    return None;
                }
                Some(
                    values
                        .iter()
                        .filter_map(|value| index.values.get(&value.to_string()))
                        .collect::<Vec<&BTreeSet<u32>>>(),
                )
            })
            .min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>())?;
        let mut slots: Vec<u32> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        if sets.len() > 1 {
            slots.sort_unstable();
            slots.dedup();
        }
        Some(slots)
    }

    /// Points matching `filter`, in id order, starting at `from`.
    ///
    /// When an index narrows the filter to a small part of the collection (a document's points
    /// among every project's), only that part is checked; otherwise every point is, lazily in id
    /// order, so that a page of a broad scroll stops early.
    pub fn scan<'a>(
        &'a self,
        filter: Option<&'a Filter>,
        from: Option<&PointId>,
    ) -> Box<dyn Iterator<Item = u32> + 'a> {
        if let Some(narrowed) = filter.and_then(|f| self.narrowest(f))
            && narrowed.len() * 4 <= self.len()
        {
            let mut found: Vec<(&PointId, u32)> = narrowed
                .into_iter()
                .filter(|slot| self.matches(*slot, filter))
                .filter_map(|slot| Some((self.id_of(slot)?, slot)))
                .filter(|(id, _)| from.is_none_or(|from| *id >= from))
                .collect();
            found.sort_unstable_by(|a, b| a.0.cmp(b.0));
            return Box::new(found.into_iter().map(|(_, slot)| slot));
        }
        let range = match from {
            Some(id) => self.ids.range(id.clone()..),
            None => self.ids.range(..),
        };
        Box::new(
            range
                .map(|(_, slot)| *slot)
                .filter(move |slot| self.matches(*slot, filter)),
        )
    }

    /// The best `want` points for a query vector, best first.
    pub fn search(&self, search: &Search) -> Result<Vec<(u32, f32)>> {
        let want = search.want();
        if want == 0 {
            return Ok(Vec::new());
        }
        if self.is_multi(&search.using) {
            return self.score_multi(search, 0..self.slots.len() as u32, want);
        }
        match &search.query {
            QueryVector::Dense(query) => self.search_dense(search, query, want),
            QueryVector::Sparse(query) => self.search_sparse(search, query, want),
            QueryVector::Multi(_) => Err(VecError::wrong_input(format!(
                "a multivector query needs a multivector; `{}` is not one",
                search.using
            ))),
        }
    }

    /// Scores `slots` by `max_sim` against the multivector `search.using`: for each query vector its
    /// best score among the point's vectors, summed. A plain vector query is a multivector of one.
    pub(super) fn score_multi(
        &self,
        search: &Search,
        slots: impl Iterator<Item = u32>,
        want: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let params = &self.config.dense[&search.using];
        let mut query = match &search.query {
            QueryVector::Multi(vectors) => vectors.clone(),
            QueryVector::Dense(vector) => vec![vector.clone()],
            QueryVector::Sparse(_) => {
                return Err(VecError::wrong_input(format!(
                    "a sparse query cannot search the multivector `{}`",
                    search.using
                )));
            }
        };
        for q in &mut query {
            fit(params, q)?;
        }
        let higher = params.distance.higher_is_better();
        // Euclid sums squared distances and reports the root of the sum, as Qdrant does.
        let euclid = params.distance == Distance::Euclid;
        let filter = search.filter.as_ref();
        let mut top = TopK::new(want, higher);
        for slot in slots {
            let Some(point) = self.slot(slot) else {
                continue;
            };
            let Some(vectors) = point.multi.get(&search.using) else {
                continue;
            };
            if !self.matches(slot, filter) {
                continue;
            }
            let score: f32 = query
                .iter()
                .map(|q| {
                    let scores = vectors.iter().map(|v| {
                        if euclid {
                            squared_l2(q, v)
                        } else {
                            params.distance.score(q, v)
                        }
                    });
                    if higher {
                        scores.fold(f32::NEG_INFINITY, f32::max)
                    } else {
                        scores.fold(f32::INFINITY, f32::min)
                    }
                })
                .sum();
            top.push(slot, if euclid { score.sqrt() } else { score });
        }
        Ok(top.finish(search.score_threshold))
    }

    pub(super) fn search_dense(
        &self,
        search: &Search,
        query: &[f32],
        want: usize,
    ) -> Result<Vec<(u32, f32)>> {
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
        let bound = filter.and_then(|f| self.estimate(f)).unwrap_or(self.len());
        let exact = search.exact || self.prefer_exact(index.params.size, bound, want);
        // A scan reads the candidates the indexes narrow the filter to. A walk is only chosen when
        // the filter keeps so many points that it visits fewer of them than the indexes hold
        // (listing 100k slots out of the index trees cost 4 ms, the walk 0.6): it checks each
        // point it visits instead.
        let candidates = if exact {
            filter.and_then(|f| self.candidates(f))
        } else {
            None
        };
        // When the indexes answered every condition, the candidates are exactly the matches.
        let covered = candidates.as_ref().is_some_and(|c| c.complete);
        let candidates = candidates.map(|c| c.slots);
        let estimate = candidates.as_ref().map_or(bound, Vec::len);
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
            // The graph orders by Euclidean distance for Manhattan vectors: all `ef` candidates it
            // met are rescored, so the nearest by Manhattan distance among them come out.
            let asked = if distance == Distance::Manhattan {
                ef
            } else {
                want
            };
            let found = index
                .graph
                .filtered_search(&query, asked, |key| self.matches(key as u32, filter))
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

    pub(super) fn search_sparse(
        &self,
        search: &Search,
        query: &SparseVector,
        want: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let index = self.sparse.get(&search.using).ok_or_else(|| {
            VecError::wrong_input(format!("Not existing vector name error: {}", search.using))
        })?;
        // Sums per slot in a flat array (a hash map cost more than the postings themselves at 100k
        // points), with the slots a posting touched in the order they were first met.
        let mut totals = vec![0f32; self.slots.len()];
        let mut seen = vec![false; self.slots.len()];
        let mut touched: Vec<u32> = Vec::new();
        for (i, q) in query.indices.iter().zip(&query.values) {
            let Some(list) = index.postings.get(i) else {
                continue;
            };
            let weight = if index.idf {
                q * SparseIndex::idf(list.len(), index.points)
            } else {
                *q
            };
            for &(slot, value) in list {
                let at = slot as usize;
                if !seen[at] {
                    seen[at] = true;
                    touched.push(slot);
                }
                totals[at] += weight * value;
            }
        }
        let mut scored: Vec<(u32, f32)> = touched
            .into_iter()
            .map(|s| (s, totals[s as usize]))
            .collect();
        let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Best first, so the filter (the costly part: a payload lookup per point) is checked only
        // until `want` points pass: in rounds, each the best of what is left by partial selection
        // (not a sort of every point a common term touches), four times larger than the last.
        let filter = search.filter.as_ref();
        let mut top = TopK::new(want, true);
        let mut taken = 0;
        let mut rest = &mut scored[..];
        let mut round = want.max(16) * 2;
        while taken < want && !rest.is_empty() {
            let n = round.min(rest.len());
            if n < rest.len() {
                rest.select_nth_unstable_by(n - 1, better);
            }
            let (head, tail) = rest.split_at_mut(n);
            head.sort_unstable_by(better);
            for &(slot, score) in head.iter() {
                if taken == want {
                    break;
                }
                if self.matches(slot, filter) {
                    top.push(slot, score);
                    taken += 1;
                }
            }
            rest = tail;
            round = round.saturating_mul(4);
        }
        Ok(top.finish(search.score_threshold))
    }

    /// Scores given slots against a query (for re-ranking prefetched candidates).
    pub fn rescore(&self, search: &Search, slots: &[u32]) -> Result<Vec<(u32, f32)>> {
        let want = search.want();
        if self.is_multi(&search.using) {
            return self.score_multi(search, slots.iter().copied(), want);
        }
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
            QueryVector::Multi(_) => self.search(search),
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
        self.config
            .dense
            .get(using)
            .is_none_or(|d| d.distance.higher_is_better())
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
                // Qdrant answers the default vector alone as a plain list; with other vectors
                // beside it, every vector by name ("" for the default).
                let has_default = s.multi.contains_key("")
                    || self.dense.get("").is_some_and(|i| i.vector(slot).is_some());
                let only_default = self.config.unnamed
                    && wanted("")
                    && has_default
                    && !s.sparse.keys().any(|n| wanted(n));
                if only_default {
                    match self.dense.get("") {
                        Some(index) => index
                            .vector(slot)
                            .map_or(Value::Null, crate::number::f32_array),
                        None => s.multi.get("").map_or(Value::Null, |m| multi_json(m)),
                    }
                } else {
                    let mut named = Map::new();
                    for (name, index) in &self.dense {
                        if wanted(name)
                            && let Some(v) = index.vector(slot)
                        {
                            named.insert(name.clone(), crate::number::f32_array(v));
                        }
                    }
                    for (name, v) in &s.sparse {
                        if wanted(name) {
                            named.insert(name.clone(), v.to_json());
                        }
                    }
                    for (name, m) in &s.multi {
                        if wanted(name) {
                            named.insert(name.clone(), multi_json(m));
                        }
                    }
                    Value::Object(named)
                }
            }
        };
        record.insert("vector".into(), vector);
        Some(record)
    }

    /// The vectors a point holds now (cosine ones as stored, normalised).
    pub fn point_vectors(&self, slot: u32) -> Option<PointVectors> {
        let s = self.slot(slot)?;
        let dense = self
            .dense
            .iter()
            .filter_map(|(name, index)| Some((name.clone(), index.vector(slot)?.to_vec())))
            .collect();
        Some(PointVectors {
            dense,
            sparse: s.sparse.clone(),
            multi: s.multi.clone(),
        })
    }

    /// `query` made ready to compare with the stored vectors of `using`: cosine ones normalised.
    pub fn prepare_query(&self, using: &str, mut query: QueryVector) -> QueryVector {
        if self
            .config
            .dense
            .get(using)
            .is_some_and(|p| p.distance == Distance::Cosine)
        {
            match &mut query {
                QueryVector::Dense(v) => normalize(v),
                QueryVector::Multi(list) => list.iter_mut().for_each(|v| normalize(v)),
                QueryVector::Sparse(_) => {}
            }
        }
        query
    }

    /// How alike the point in `slot` is to a prepared `query` on vector `using`, larger being more
    /// alike whatever the distance (Euclid's distances negated); `None` when the point lacks that
    /// vector or the kinds differ. What recommend, discover and context queries compare.
    pub fn similarity(&self, using: &str, slot: u32, query: &QueryVector) -> Option<f32> {
        let s = self.slot(slot)?;
        let params = self.config.dense.get(using);
        let sign = |p: &super::config::DenseParams| {
            if p.distance.higher_is_better() {
                1.0
            } else {
                -1.0
            }
        };
        match query {
            QueryVector::Sparse(q) => {
                let v = s.sparse.get(using)?;
                let (mut i, mut j, mut sum) = (0, 0, 0.0);
                while i < q.indices.len() && j < v.indices.len() {
                    match q.indices[i].cmp(&v.indices[j]) {
                        std::cmp::Ordering::Less => i += 1,
                        std::cmp::Ordering::Greater => j += 1,
                        std::cmp::Ordering::Equal => {
                            sum += q.values[i] * v.values[j];
                            i += 1;
                            j += 1;
                        }
                    }
                }
                Some(sum)
            }
            QueryVector::Dense(q) if !self.is_multi(using) => {
                let p = params?;
                let v = self.dense.get(using)?.vector(slot)?;
                (q.len() == v.len()).then(|| sign(p) * p.distance.score(q, v))
            }
            QueryVector::Dense(_) | QueryVector::Multi(_) => {
                let p = params?;
                let vectors = s.multi.get(using)?;
                let list = match query {
                    QueryVector::Multi(list) => list.as_slice(),
                    QueryVector::Dense(one) => std::slice::from_ref(one),
                    QueryVector::Sparse(_) => return None,
                };
                let mut total = 0.0;
                for q in list {
                    let best = vectors
                        .iter()
                        .filter(|v| v.len() == q.len())
                        .map(|v| sign(p) * p.distance.score(q, v))
                        .fold(f32::NEG_INFINITY, f32::max);
                    total += best;
                }
                Some(total)
            }
        }
    }

    /// The vector `using` of the point in `slot` as a query (as stored: cosine ones normalised).
    pub fn vector_query(&self, using: &str, slot: u32) -> Option<QueryVector> {
        let s = self.slot(slot)?;
        if let Some(v) = s.sparse.get(using) {
            return Some(QueryVector::Sparse(v.clone()));
        }
        if let Some(list) = s.multi.get(using) {
            return Some(QueryVector::Multi(list.clone()));
        }
        Some(QueryVector::Dense(
            self.dense.get(using)?.vector(slot)?.to_vec(),
        ))
    }

    /// The best `want` of `slots` that match `filter`, by `score` (larger first; `None` skips a
    /// point).
    pub fn best_by(
        &self,
        slots: impl Iterator<Item = u32>,
        filter: Option<&Filter>,
        want: usize,
        threshold: Option<f32>,
        score: impl Fn(u32) -> Option<f32>,
    ) -> Vec<(u32, f32)> {
        let mut top = TopK::new(want, true);
        for slot in slots {
            if self.matches(slot, filter)
                && let Some(value) = score(slot)
            {
                top.push(slot, value);
            }
        }
        top.finish(threshold)
    }

    /// Every slot that may hold a point.
    pub fn all_slots(&self) -> std::ops::Range<u32> {
        0..self.slots.len() as u32
    }

    /// Whether this collection has a vector (dense, multi or sparse) named `name`.
    pub fn has_vector_name(&self, name: &str) -> bool {
        self.config.dense.contains_key(name) || self.config.sparse.contains_key(name)
    }

    /// The stored payload of a slot, borrowed.
    pub fn payload_of(&self, slot: u32) -> Option<&Map<String, Value>> {
        self.slot(slot).map(|s| &s.payload)
    }

    /// The schema of the payload index on `key`, if there is one.
    pub fn index_schema(&self, key: &str) -> Option<&str> {
        self.indexes.get(key).map(|index| index.schema.as_str())
    }

    /// A `with_vector` list may name only vectors this collection has (Qdrant's 400 otherwise).
    pub fn check_vector_names(&self, with: &With) -> Result<()> {
        if let WithVectors::Named(names) = &with.vectors
            && let Some(unknown) = names
                .iter()
                .find(|n| !self.config.dense.contains_key(*n) && !self.sparse.contains_key(*n))
        {
            return Err(VecError::wrong_input(format!(
                "Not existing vector name error: {unknown}"
            )));
        }
        Ok(())
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
            object.remove("metadata");
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
                "metadata": self.config.metadata,
            },
            "payload_schema": payload_schema,
        })
    }
}

fn multi_json(vectors: &[Vec<f32>]) -> Value {
    Value::Array(
        vectors
            .iter()
            .map(|v| crate::number::f32_array(v))
            .collect(),
    )
}

/// Checks a vector has the configured size and normalises it for cosine (as points are stored and
/// queries compared).
fn fit(params: &super::config::DenseParams, v: &mut [f32]) -> Result<()> {
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
    Ok(())
}
