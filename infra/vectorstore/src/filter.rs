//! Qdrant's payload filters: parsing from the request JSON and checking a point against them.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::VecError;
use crate::point_id::PointId;
use crate::text::TextOptions;

/// A filter: every `must` holds, at least one `should` (when there are any) holds, no `must_not`
/// holds, and `min_should.min_count` of its conditions hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
    pub min_should: Option<(Vec<Condition>, usize)>,
}

#[derive(Debug, Clone)]
pub enum Condition {
    Field {
        key: String,
        check: FieldCheck,
    },
    HasId(HashSet<PointId>),
    /// `{"slice": {"total": n, "index": i}}`: the point is in part `i` of the collection cut into
    /// `n` parts by a stable hash of its id.
    Slice {
        total: u64,
        index: u64,
    },
    /// `{"has_vector": name}`: the point holds a vector of that name.
    HasVector(String),
    IsEmpty(String),
    IsNull(String),
    Nested(Filter),
    /// `{"nested": {"key": k, "filter": f}}`: some item of the array at `k` satisfies `f` on its own,
    /// `f`'s keys read from that item.
    NestedItems {
        key: String,
        filter: Filter,
    },
}

#[derive(Debug, Clone)]
pub enum FieldCheck {
    /// `match: {value}`: a keyword, integer or boolean equal to the value.
    Value(Value),
    /// `match: {any}`: equal to one of the values.
    Any(Vec<Value>),
    /// `match: {except}`: equal to none of the values.
    Except(Vec<Value>),
    /// `match: {text}`: the field's text holds every token of the query, both read as the field's
    /// text index reads text (see [`TextOptions`]); a query of no tokens matches nothing.
    Text(String),
    /// `match: {text_any}`: the field's text holds one of the query's tokens.
    TextAny(String),
    /// `match: {phrase}`: the field's tokens hold the query's tokens in order, next to each other.
    Phrase(String),
    /// `match: {prefix}`: a string value starts with it (the empty prefix: any string value).
    Prefix(String),
    /// `values_count`: how many values the field holds (an array's length, 1 for a scalar) is within
    /// the bounds.
    Count {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    /// `range`: a number within the bounds.
    Range {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    /// `range` with datetime bounds: a datetime string within them (microseconds since the epoch).
    DateRange {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
}

/// Which of `total` slices a point is in: the first 8 bytes of the SHA-256 of its id as JSON.
fn slice_of(id: &PointId, total: u64) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.to_json().to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first) % total
}

/// A datetime as Qdrant reads one, in microseconds since the epoch: RFC 3339
/// (`2024-05-01T10:00:00Z`, `...+02:00`), the same with a space for the `T`, without seconds, or
/// without a zone (taken as UTC), or a plain date. Parsed by chrono, not by hand.
pub(crate) fn datetime_micros(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

fn bad(message: impl Into<String>) -> VecError {
    VecError::bad_request(format!("Format error in JSON body: {}", message.into()))
}

/// Parses a `filter` object; `null` means no filter.
pub fn parse(value: &Value) -> Result<Option<Filter>, VecError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(object) => parse_filter(object).map(Some),
        _ => Err(bad("filter must be an object")),
    }
}

fn parse_filter(object: &Map<String, Value>) -> Result<Filter, VecError> {
    let mut filter = Filter::default();
    for (name, value) in object {
        match name.as_str() {
            "must" => filter.must = parse_conditions(value)?,
            "should" => filter.should = parse_conditions(value)?,
            "must_not" => filter.must_not = parse_conditions(value)?,
            "min_should" => {
                if value.is_null() {
                    continue;
                }
                let conditions = parse_conditions(&value["conditions"])?;
                let min_count = value["min_count"]
                    .as_u64()
                    .ok_or_else(|| bad("min_should.min_count must be a non-negative integer"))?;
                filter.min_should = Some((conditions, min_count as usize));
            }
            other => return Err(bad(format!("unknown field `{other}` in filter"))),
        }
    }
    Ok(filter)
}

/// A list of conditions, or one condition on its own (Qdrant accepts both).
fn parse_conditions(value: &Value) -> Result<Vec<Condition>, VecError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(parse_condition).collect(),
        Value::Object(_) => Ok(vec![parse_condition(value)?]),
        _ => Err(bad("conditions must be an object or a list of objects")),
    }
}

fn parse_condition(value: &Value) -> Result<Condition, VecError> {
    let object = value
        .as_object()
        .ok_or_else(|| bad("a condition must be an object"))?;
    if let Some(ids) = object.get("has_id") {
        let ids = ids
            .as_array()
            .ok_or_else(|| bad("has_id must be a list of point ids"))?;
        let ids = ids
            .iter()
            .map(PointId::parse)
            .collect::<Result<HashSet<_>, _>>()?;
        return Ok(Condition::HasId(ids));
    }
    if let Some(slice) = object.get("slice") {
        let number = |name: &str| slice[name].as_u64();
        let total = number("total")
            .filter(|t| *t >= 1)
            .ok_or_else(|| bad("slice.total must be a positive integer"))?;
        let index =
            number("index").ok_or_else(|| bad("slice.index must be a non-negative integer"))?;
        if index >= total {
            return Err(VecError::validation(format!(
                "[slice.index: must be less than total ({total})]"
            )));
        }
        return Ok(Condition::Slice { total, index });
    }
    if let Some(name) = object.get("has_vector") {
        let name = name
            .as_str()
            .ok_or_else(|| bad("has_vector must be a vector name"))?;
        return Ok(Condition::HasVector(name.to_string()));
    }
    // Two spellings, as in Qdrant: `{"is_empty": {"key": k}}`, and the field condition's
    // `{"key": k, "is_empty": true}` (`false` asks for the opposite). The same for `is_null`.
    for (name, make) in [
        ("is_empty", Condition::IsEmpty as fn(String) -> Condition),
        ("is_null", Condition::IsNull),
    ] {
        match object.get(name) {
            None => {}
            Some(Value::Bool(wanted)) => {
                let condition = make(key_of(value)?);
                return Ok(if *wanted {
                    condition
                } else {
                    Condition::Nested(Filter {
                        must_not: vec![condition],
                        ..Filter::default()
                    })
                });
            }
            Some(inner) => return Ok(make(key_of(inner)?)),
        }
    }
    if object.contains_key("must")
        || object.contains_key("should")
        || object.contains_key("must_not")
        || object.contains_key("min_should")
    {
        return Ok(Condition::Nested(parse_filter(object)?));
    }
    if let Some(nested) = object.get("nested") {
        let nested = nested
            .as_object()
            .ok_or_else(|| bad("nested must be an object"))?;
        let key = key_of(&Value::Object(nested.clone()))?;
        let filter = nested
            .get("filter")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("nested needs a `filter` object"))?;
        let filter = parse_filter(filter)?;
        if filter.uses_has_id() {
            return Err(bad("has_id is not allowed inside a nested filter"));
        }
        let key = key.strip_suffix("[]").unwrap_or(&key).to_string();
        return Ok(Condition::NestedItems { key, filter });
    }
    if let Some(filter) = object.get("filter") {
        let filter = filter
            .as_object()
            .ok_or_else(|| bad("nested filter must be an object"))?;
        return Ok(Condition::Nested(parse_filter(filter)?));
    }
    let key = key_of(value)?;
    if let Some(matching) = object.get("match") {
        let matching = matching
            .as_object()
            .ok_or_else(|| bad("match must be an object"))?;
        let check = if let Some(value) = matching.get("value") {
            scalar(value)?;
            FieldCheck::Value(value.clone())
        } else if let Some(any) = matching.get("any") {
            FieldCheck::Any(scalars(any)?)
        } else if let Some(except) = matching.get("except") {
            FieldCheck::Except(scalars(except)?)
        } else if let Some(text) = matching.get("text") {
            let text = text
                .as_str()
                .ok_or_else(|| bad("match.text must be a string"))?;
            FieldCheck::Text(text.to_string())
        } else if let Some(text) = matching.get("text_any") {
            let text = text
                .as_str()
                .ok_or_else(|| bad("match.text_any must be a string"))?;
            FieldCheck::TextAny(text.to_string())
        } else if let Some(phrase) = matching.get("phrase") {
            let phrase = phrase
                .as_str()
                .ok_or_else(|| bad("match.phrase must be a string"))?;
            FieldCheck::Phrase(phrase.to_string())
        } else if let Some(prefix) = matching.get("prefix") {
            let prefix = prefix
                .as_str()
                .ok_or_else(|| bad("match.prefix must be a string"))?;
            FieldCheck::Prefix(prefix.to_string())
        } else {
            return Err(bad(
                "match needs one of `value`, `any`, `except`, `text`, `text_any`, `phrase` or `prefix`",
            ));
        };
        return Ok(Condition::Field { key, check });
    }
    let counting = object.get("values_count");
    if let Some(range) = object.get("range").or(counting) {
        let range = range
            .as_object()
            .ok_or_else(|| bad("range and values_count must be objects"))?;
        let counts = counting.is_some() && object.get("range").is_none();
        // Bounds are all numbers, or (a range only) all datetimes.
        let dates = !counts && range.values().any(Value::is_string);
        let bound = |name: &str| -> Result<Option<f64>, VecError> {
            match range.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if !dates => Ok(n.as_f64()),
                Some(Value::String(text)) if dates => datetime_micros(text)
                    .map(|m| Some(m as f64))
                    .ok_or_else(|| {
                        bad(format!(
                            "range.{name}: `{text}` is not a datetime (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]])"
                        ))
                    }),
                Some(_) if dates => Err(bad(format!(
                    "range.{name} must be a datetime like the other bounds"
                ))),
                Some(_) => Err(bad(format!("range.{name} must be a number"))),
            }
        };
        let (gt, gte, lt, lte) = (bound("gt")?, bound("gte")?, bound("lt")?, bound("lte")?);
        let check = if counts {
            FieldCheck::Count { gt, gte, lt, lte }
        } else if dates {
            FieldCheck::DateRange { gt, gte, lt, lte }
        } else {
            FieldCheck::Range { gt, gte, lt, lte }
        };
        return Ok(Condition::Field { key, check });
    }
    if object.len() == 1 {
        return Err(VecError::validation(format!(
            "At least one field condition must be specified (the condition on `{key}` has only its key)"
        )));
    }
    Err(bad(
        "a field condition needs `match`, `range` or `values_count` (geo is not supported)",
    ))
}

fn key_of(value: &Value) -> Result<String, VecError> {
    match value.get("key") {
        Some(Value::String(key)) if !key.is_empty() => Ok(key.clone()),
        _ => Err(bad("a condition needs a non-empty string `key`")),
    }
}

fn scalar(value: &Value) -> Result<(), VecError> {
    match value {
        Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
        _ => Err(bad("match values must be strings, integers or booleans")),
    }
}

fn scalars(value: &Value) -> Result<Vec<Value>, VecError> {
    let items = value
        .as_array()
        .ok_or_else(|| bad("match.any and match.except take a list"))?;
    items.iter().try_for_each(scalar)?;
    Ok(items.clone())
}

/// The values at `key` in `payload`: a dotted path, where `name[]` (or any array on the way)
/// fans out over the array's elements; arrays at the end yield their elements.
pub fn values_at<'a>(payload: &'a Map<String, Value>, key: &str) -> Vec<&'a Value> {
    // Qdrant's paths: `a.b` looks into objects only; `a[].b` also looks into each item of the array
    // at `a` (issue 16, item 3). An array at the end of the path is its items either way.
    let mut current: Vec<&Value> = Vec::new();
    for (i, part) in key.split('.').enumerate() {
        let (name, into_items) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        let mut next = Vec::new();
        if i == 0 {
            next.extend(payload.get(name));
        } else {
            next.extend(current.iter().filter_map(|value| value.get(name)));
        }
        current = if into_items {
            next.into_iter()
                .flat_map(|value| match value {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    other => vec![other],
                })
                .collect()
        } else {
            next
        };
    }
    let mut flat = Vec::new();
    for value in current {
        match value {
            Value::Array(items) => flat.extend(items.iter()),
            other => flat.push(other),
        }
    }
    flat
}

impl Filter {
    fn uses_has_id(&self) -> bool {
        let conditions = self
            .must
            .iter()
            .chain(&self.should)
            .chain(&self.must_not)
            .chain(self.min_should.iter().flat_map(|(c, _)| c));
        conditions.into_iter().any(|c| match c {
            Condition::HasId(_) => true,
            Condition::Nested(f) | Condition::NestedItems { filter: f, .. } => f.uses_has_id(),
            _ => false,
        })
    }

    /// Whether a point with no vectors, in a collection without text indexes, matches (tests of
    /// the payload logic).
    pub fn matches(&self, id: &PointId, payload: &Map<String, Value>) -> bool {
        self.matches_point(
            id,
            payload,
            &Context {
                has_vector: &|_| false,
                text: &|_| None,
            },
        )
    }

    /// Whether the point matches.
    pub fn matches_point(
        &self,
        id: &PointId,
        payload: &Map<String, Value>,
        context: &Context<'_>,
    ) -> bool {
        let test = |c: &Condition| c.matches(id, payload, context);
        self.must.iter().all(test)
            && (self.should.is_empty() || self.should.iter().any(test))
            && !self.must_not.iter().any(test)
            && self.min_should.as_ref().is_none_or(|(conditions, min)| {
                conditions.iter().filter(|c| test(c)).count() >= *min
            })
    }
}

fn within(x: f64, gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64>) -> bool {
    gt.is_none_or(|b| x > b)
        && gte.is_none_or(|b| x >= b)
        && lt.is_none_or(|b| x < b)
        && lte.is_none_or(|b| x <= b)
}

/// What checking a point needs besides its id and payload.
pub struct Context<'a> {
    /// Whether the point holds a vector of a name.
    pub has_vector: &'a dyn Fn(&str) -> bool,
    /// The text index options of a payload key, when it has a text index.
    pub text: &'a dyn Fn(&str) -> Option<&'a TextOptions>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

static DEFAULT_TEXT: std::sync::LazyLock<TextOptions> =
    std::sync::LazyLock::new(TextOptions::default);

impl Condition {
    fn matches(&self, id: &PointId, payload: &Map<String, Value>, context: &Context<'_>) -> bool {
        match self {
            Condition::HasId(ids) => ids.contains(id),
            Condition::Slice { total, index } => slice_of(id, *total) == *index,
            Condition::HasVector(name) => (context.has_vector)(name),
            Condition::Nested(filter) => filter.matches_point(id, payload, context),
            Condition::NestedItems { key, filter } => {
                // Keys inside read from each item; their text indexes are named `key[].inner`.
                let text = |inner: &str| (context.text)(&format!("{key}[].{inner}"));
                let inside = Context {
                    has_vector: context.has_vector,
                    text: &text,
                };
                values_at(payload, key)
                    .into_iter()
                    .filter_map(Value::as_object)
                    .any(|item| filter.matches_point(id, item, &inside))
            }
            Condition::IsEmpty(key) => values_at(payload, key).iter().all(|v| v.is_null()),
            Condition::IsNull(key) => {
                let values = values_at(payload, key);
                !values.is_empty() && values.iter().all(|v| v.is_null())
            }
            Condition::Field { key, check } => {
                let values = values_at(payload, key);
                match check {
                    FieldCheck::Value(expected) => values.contains(&expected),
                    FieldCheck::Any(options) => values.iter().any(|v| options.contains(v)),
                    FieldCheck::Except(options) => {
                        !values.is_empty() && values.iter().all(|v| !options.contains(v))
                    }
                    FieldCheck::Text(query) | FieldCheck::TextAny(query) => {
                        let options = (context.text)(key).unwrap_or(&DEFAULT_TEXT);
                        let wanted = options.tokens(query);
                        let any = matches!(check, FieldCheck::TextAny(_));
                        !wanted.is_empty()
                            && values.iter().any(|v| {
                                v.as_str().is_some_and(|text| {
                                    let have = options.tokens(text);
                                    let holds = |w: &String| options.has(&have, w);
                                    if any {
                                        wanted.iter().any(holds)
                                    } else {
                                        wanted.iter().all(holds)
                                    }
                                })
                            })
                    }
                    FieldCheck::Prefix(prefix) => values.iter().any(|v| {
                        v.as_str()
                            .is_some_and(|text| text.starts_with(prefix.as_str()))
                    }),
                    FieldCheck::Phrase(query) => {
                        let options = (context.text)(key).unwrap_or(&DEFAULT_TEXT);
                        let wanted = options.tokens(query);
                        !wanted.is_empty()
                            && values.iter().any(|v| {
                                v.as_str().is_some_and(|text| {
                                    options
                                        .tokens(text)
                                        .windows(wanted.len())
                                        .any(|w| w == wanted.as_slice())
                                })
                            })
                    }
                    FieldCheck::Range { gt, gte, lt, lte } => values
                        .iter()
                        .any(|v| v.as_f64().is_some_and(|x| within(x, *gt, *gte, *lt, *lte))),
                    FieldCheck::DateRange { gt, gte, lt, lte } => values.iter().any(|v| {
                        v.as_str()
                            .and_then(datetime_micros)
                            .is_some_and(|m| within(m as f64, *gt, *gte, *lt, *lte))
                    }),
                    FieldCheck::Count { gt, gte, lt, lte } => {
                        let count = values.iter().filter(|v| !v.is_null()).count();
                        within(count as f64, *gt, *gte, *lt, *lte)
                    }
                }
            }
        }
    }

    /// The exact values this condition requires of `key`, when it is an equality on one field: what
    /// a payload index can answer without looking at the points.
    pub fn indexable(&self) -> Option<(&str, Vec<&Value>)> {
        match self {
            Condition::Field {
                key,
                check: FieldCheck::Value(value),
            } => Some((key, vec![value])),
            Condition::Field {
                key,
                check: FieldCheck::Any(values),
            } => Some((key, values.iter().collect())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, payload: Value) -> bool {
        let filter = parse(&filter).unwrap().unwrap();
        filter.matches(&PointId::Num(1), payload.as_object().unwrap())
    }

    #[test]
    fn match_phrase_wants_the_words_in_order_and_together_where_text_wants_them_anywhere() {
        let payload = json!({"t": "The quick brown fox jumps"});
        let phrase = |p: &str| json!({"must": [{"key": "t", "match": {"phrase": p}}]});
        let text = |p: &str| json!({"must": [{"key": "t", "match": {"text": p}}]});
        assert!(check(phrase("quick brown"), payload.clone()));
        assert!(check(phrase("QUICK brown fox"), payload.clone()));
        assert!(!check(phrase("brown quick"), payload.clone()));
        assert!(!check(phrase("quick fox"), payload.clone()));
        assert!(!check(phrase(""), payload.clone()));
        assert!(check(text("fox quick"), payload.clone()));
    }

    #[test]
    fn slices_partition_the_points_and_are_checked() {
        let slice = |total: u64, index: u64| {
            parse(&json!({"must": [{"slice": {"total": total, "index": index}}]}))
                .unwrap()
                .unwrap()
        };
        let ids: Vec<PointId> = (0..200u64)
            .map(PointId::Num)
            .chain((0..50).map(|i| PointId::Uuid(format!("00000000-0000-0000-0000-{i:012}"))))
            .collect();
        let empty = Map::new();
        let mut sizes = Vec::new();
        for id in &ids {
            let parts: Vec<u64> = (0..4)
                .filter(|i| slice(4, *i).matches(id, &empty))
                .collect();
            assert_eq!(parts.len(), 1, "{id:?} is in exactly one slice");
            sizes.push(parts[0]);
        }
        for part in 0..4 {
            let n = sizes.iter().filter(|p| **p == part).count();
            assert!((30..=95).contains(&n), "slice {part} holds {n} of 250");
        }
        for (body, status) in [
            (json!({"total": 4, "index": 4}), 422),
            (json!({"total": 0, "index": 0}), 400),
        ] {
            let error = parse(&json!({"must": [{"slice": body}]})).unwrap_err();
            assert_eq!(error.status, status, "{body}");
        }
    }

    #[test]
    fn match_prefix_wants_a_string_value_that_starts_with_it() {
        let prefix = |p: &str| json!({"must": [{"key": "url", "match": {"prefix": p}}]});
        let urls = json!({"url": ["http://example.com", "https://qdrant.tech/blog"]});
        assert!(check(prefix("https://q"), urls.clone()));
        assert!(check(prefix(""), urls.clone()));
        assert!(!check(prefix("ftp://"), urls));
        assert!(!check(prefix(""), json!({"url": 5})));
        assert!(!check(prefix("h"), json!({})));
        assert!(parse(&json!({"must": [{"key": "url", "match": {"prefix": 1}}]})).is_err());
    }

    #[test]
    fn datetime_ranges_compare_instants_whatever_the_format() {
        let range = |r: Value| json!({"must": [{"key": "at", "range": r}]});
        let at = |t: &str| json!({"at": t});
        // 08:00 at +02:00 is 06:00 UTC; a value without a zone is UTC, without seconds :00.
        let six = json!({"gte": "2015-02-01T06:00:00", "lte": "2015-02-01 06:00"});
        assert!(check(range(six.clone()), at("2015-02-01T08:00:00+02:00")));
        assert!(check(range(six.clone()), at("2015-02-01T06:00")));
        assert!(!check(range(six), at("2015-02-01T06:00:01Z")));
        assert!(check(
            range(json!({"lt": "2015-01-02"})),
            at("2015-01-01T23:59:59.9Z")
        ));
        assert!(!check(range(json!({"gt": "2015-01-01"})), at("not a date")));
        for wrong in [
            json!({"gte": "Thu, 01 Jan 2015 01:00:00 +0100"}),
            json!({"gte": "1420070400"}),
            json!({"gte": "2015-01-01", "lte": 5}),
        ] {
            assert!(parse(&range(wrong.clone())).is_err(), "{wrong}");
        }
    }

    #[test]
    fn must_should_and_must_not_combine() {
        let payload = json!({"project": "p1", "lang": "en", "year": 2021, "tags": ["a", "b"]});
        assert!(check(
            json!({"must": [{"key": "project", "match": {"value": "p1"}}]}),
            payload.clone()
        ));
        assert!(!check(
            json!({"must": {"key": "project", "match": {"value": "p2"}}}),
            payload.clone()
        ));
        assert!(check(
            json!({"should": [{"key": "lang", "match": {"value": "fr"}}, {"key": "tags", "match": {"value": "b"}}]}),
            payload.clone()
        ));
        assert!(!check(
            json!({"must_not": [{"key": "tags", "match": {"any": ["b", "z"]}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "year", "range": {"gte": 2020, "lt": 2022}}]}),
            payload.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "year", "range": {"gt": 2021}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "lang", "match": {"except": ["fr"]}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"has_id": [1, 2]}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"is_empty": {"key": "missing"}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"must_not": [{"key": "project", "match": {"value": "p9"}}]}]}),
            payload
        ));
    }

    #[test]
    fn dotted_keys_look_into_arrays_only_with_brackets() {
        // Issue 16, item 3.
        let payload = json!({"country": {"cities": [{"population": 3.7}, {"population": 1.5}]}});
        let population = |key: &str| -> Vec<Value> {
            values_at(payload.as_object().unwrap(), key)
                .into_iter()
                .cloned()
                .collect()
        };
        assert!(population("country.cities.population").is_empty());
        assert_eq!(
            population("country.cities[].population"),
            vec![json!(3.7), json!(1.5)]
        );
        assert!(!check(
            json!({"must": [{"key": "country.cities.population", "range": {"gt": 3}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "country.cities[].population", "range": {"gt": 3}}]}),
            payload
        ));
    }

    #[test]
    fn nested_filters_hold_within_one_array_item() {
        // Issue 16, item 5: both conditions must hold for the same city.
        let payload = json!({"country": {"cities": [
            {"name": "Berlin", "population": 3.7, "sightseeing": ["Brandenburg Gate"]},
            {"name": "Munich", "population": 1.5, "sightseeing": ["Marienplatz"]}]}});
        let nested = |must: Value| json!({"must": [{"nested": {"key": "country.cities[]", "filter": {"must": must}}}]});
        assert!(check(
            nested(json!([{"key": "population", "range": {"gte": 3.0}},
                          {"key": "name", "match": {"value": "Berlin"}}])),
            payload.clone()
        ));
        // Berlin is big and Munich has Marienplatz, but no one city has both.
        assert!(!check(
            nested(json!([{"key": "population", "range": {"gte": 3.0}},
                          {"key": "sightseeing", "match": {"value": "Marienplatz"}}])),
            payload.clone()
        ));
        // The key may leave out the brackets.
        assert!(check(
            json!({"must": [{"nested": {"key": "country.cities",
                "filter": {"must": [{"key": "name", "match": {"value": "Munich"}}]}}}]}),
            payload.clone()
        ));
        assert!(
            parse(&json!({"must": [{"nested": {"key": "country.cities",
            "filter": {"must": [{"has_id": [1]}]}}}]}))
            .is_err()
        );
        // values_count counts an array's items.
        assert!(check(
            json!({"must": [{"key": "country.cities[].sightseeing", "values_count": {"gte": 2}}]}),
            payload.clone()
        ));
        assert!(!check(
            nested(json!([{"key": "sightseeing", "values_count": {"gt": 1}}])),
            payload.clone()
        ));
        // A condition with only a key is Qdrant's 422.
        let error = parse(&json!({"must": [{"key": "city"}]})).unwrap_err();
        assert_eq!(error.status, 422);
        assert!(
            error
                .message
                .contains("At least one field condition must be specified")
        );
    }

    #[test]
    fn is_empty_and_is_null_in_the_field_condition_form() {
        // Issue 16, item 4: `{"key": k, "is_empty": true}` means `{"is_empty": {"key": k}}`.
        let payload = json!({"city": [], "name": null, "lang": "en"});
        for (filter, expected) in [
            (json!({"must": [{"key": "city", "is_empty": true}]}), true),
            (json!({"must": [{"key": "lang", "is_empty": true}]}), false),
            (json!({"must": [{"key": "lang", "is_empty": false}]}), true),
            (json!({"must": [{"key": "city", "is_empty": false}]}), false),
            (json!({"must": [{"key": "name", "is_null": true}]}), true),
            (json!({"must": [{"key": "lang", "is_null": true}]}), false),
            (json!({"must": [{"key": "lang", "is_null": false}]}), true),
        ] {
            assert_eq!(check(filter.clone(), payload.clone()), expected, "{filter}");
        }
    }

    #[test]
    fn nested_keys_and_text_match() {
        let payload = json!({"meta": {"source": "docs", "sections": [{"title": "Install"}, {"title": "Usage"}]},
                             "text": "Edge functions scale to zero."});
        assert!(check(
            json!({"must": [{"key": "meta.source", "match": {"value": "docs"}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "meta.sections[].title", "match": {"value": "Usage"}}]}),
            payload.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "text", "match": {"text": "scale ZERO"}}]}),
            payload.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "text", "match": {"text": "scale one"}}]}),
            payload
        ));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            json!({"must": [{"key": "x"}]}),
            json!({"must": [{"key": "x", "match": {"value": 1.5}}]}),
            json!({"must": [{"key": "x", "range": {"gt": "a"}}]}),
            json!({"musts": []}),
            json!("text"),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
