use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::dense::DenseIndex;
use crate::filter::{self};
use crate::text::TextOptions;

/// What the payload indexes narrowed a filter to.
pub(super) struct Candidates {
    /// Slots that may match, in slot order.
    pub(super) slots: Vec<u32>,
    /// True when the indexes decided every condition, so each slot does match.
    pub(super) complete: bool,
}

/// A keyword-style payload index: for each value (as its JSON text), the slots that hold it.
pub(super) struct PayloadIndex {
    pub(super) schema: String,
    /// The `field_schema` object it was created with (reported back in collection info), or null.
    pub(super) params: Value,
    /// Kept ordered, so a query's candidates come out in slot (memory) order without sorting.
    pub(super) values: HashMap<String, BTreeSet<u32>>,
    pub(super) points: HashSet<u32>,
    /// For a tenant index (`is_tenant: true`): each value's code rows for each coded dense vector,
    /// kept together so that a search within one tenant reads one stretch of memory.
    pub(super) tenants: Option<HashMap<String, HashMap<String, Group>>>,
    /// For a text index: how it reads text (`match: {text}`, `{text_any}`, `{phrase}`).
    pub(super) text: Option<Box<TextOptions>>,
}

/// One tenant's code rows (as in [`DenseIndex::codes`]) for one dense vector, in no particular
/// order, with the slot each row belongs to.
#[derive(Default)]
pub(super) struct Group {
    pub(super) slots: Vec<u32>,
    pub(super) codes: Vec<u8>,
    /// Where each slot's row is.
    pub(super) rows: HashMap<u32, u32>,
}

impl Group {
    /// Adds or replaces `slot`'s row.
    pub(super) fn put(&mut self, slot: u32, row: &[u8]) {
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
    pub(super) fn take(&mut self, slot: u32) {
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

    pub(super) fn rows(&self) -> impl Iterator<Item = (u32, &[u8])> {
        let width = self.codes.len() / self.slots.len().max(1);
        self.slots
            .iter()
            .copied()
            .zip(self.codes.chunks_exact(width.max(1)))
    }
}

impl PayloadIndex {
    /// An empty index; a text index's options must have been checked by [`TextOptions::parse`]
    /// (ones that fail it here read text with the defaults).
    pub(super) fn new(schema: &str, params: Value) -> Self {
        let tenant = params["is_tenant"].as_bool() == Some(true);
        let text =
            (schema == "text").then(|| Box::new(TextOptions::parse(&params).unwrap_or_default()));
        Self {
            schema: schema.to_string(),
            params,
            values: HashMap::new(),
            points: HashSet::new(),
            tenants: tenant.then(HashMap::new),
            text,
        }
    }

    pub(super) fn add(
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

    pub(super) fn remove(&mut self, slot: u32, key: &str, payload: &Map<String, Value>) {
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

    pub(super) fn info(&self) -> Value {
        let mut info = json!({"data_type": self.schema, "points": self.points.len()});
        if self.params.is_object() {
            info["params"] = self.params.clone();
        }
        info
    }
}
