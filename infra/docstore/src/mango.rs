//! Mango, CouchDB's query language: selectors, sort specifications and field projection, evaluated on
//! JSON documents in CouchDB's collation order.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Why a selector, sort or field list was refused (CouchDB answers these with 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MangoError(pub String);

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    And(Vec<Selector>),
    Or(Vec<Selector>),
    Nor(Vec<Selector>),
    Not(Box<Selector>),
    Field(Vec<String>, Condition),
}

/// A condition on one field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Size(u64),
    All(Vec<Condition>),
    Not(Box<Condition>),
}

fn path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

impl Selector {
    pub fn parse(value: &Value) -> Result<Self, MangoError> {
        let Value::Object(map) = value else {
            return Err(MangoError("selector must be a JSON object".into()));
        };
        let mut parts = Vec::new();
        for (key, value) in map {
            parts.push(match key.as_str() {
                "$and" => Selector::And(parse_list(key, value)?),
                "$or" => Selector::Or(parse_list(key, value)?),
                "$nor" => Selector::Nor(parse_list(key, value)?),
                "$not" => Selector::Not(Box::new(Selector::parse(value)?)),
                op if op.starts_with('$') => {
                    return Err(MangoError(format!(
                        "invalid operator {op} at the top level"
                    )));
                }
                field => Selector::Field(path(field), Condition::parse(value)?),
            });
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Selector::And(parts)
        })
    }

    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Selector::And(all) => all.iter().all(|s| s.matches(doc)),
            Selector::Or(any) => any.iter().any(|s| s.matches(doc)),
            Selector::Nor(none) => !none.iter().any(|s| s.matches(doc)),
            Selector::Not(inner) => !inner.matches(doc),
            Selector::Field(path, condition) => condition.matches(lookup(doc, path)),
        }
    }

    /// Conditions this selector requires (through `$and`) on `field`: what an index on it can use.
    pub fn required_conditions<'a>(&'a self, field: &[String], out: &mut Vec<&'a Condition>) {
        match self {
            Selector::And(all) => all.iter().for_each(|s| s.required_conditions(field, out)),
            Selector::Field(path, Condition::All(conditions)) if path == field => {
                out.extend(conditions.iter())
            }
            Selector::Field(path, condition) if path == field => out.push(condition),
            _ => {}
        }
    }
}

fn parse_list(op: &str, value: &Value) -> Result<Vec<Selector>, MangoError> {
    match value {
        Value::Array(items) => items.iter().map(Selector::parse).collect(),
        _ => Err(MangoError(format!("{op} requires an array"))),
    }
}

impl Condition {
    fn parse(value: &Value) -> Result<Self, MangoError> {
        let Value::Object(map) = value else {
            return Ok(Condition::Eq(value.clone()));
        };
        if !map.keys().any(|k| k.starts_with('$')) {
            return Ok(Condition::Eq(value.clone()));
        }
        let mut conditions = Vec::new();
        for (op, arg) in map {
            conditions.push(match op.as_str() {
                "$eq" => Condition::Eq(arg.clone()),
                "$ne" => Condition::Ne(arg.clone()),
                "$gt" => Condition::Gt(arg.clone()),
                "$gte" => Condition::Gte(arg.clone()),
                "$lt" => Condition::Lt(arg.clone()),
                "$lte" => Condition::Lte(arg.clone()),
                "$in" => Condition::In(array_arg(op, arg)?),
                "$nin" => Condition::Nin(array_arg(op, arg)?),
                "$exists" => match arg {
                    Value::Bool(b) => Condition::Exists(*b),
                    _ => return Err(MangoError("$exists requires a boolean".into())),
                },
                "$size" => match arg.as_u64() {
                    Some(n) => Condition::Size(n),
                    None => return Err(MangoError("$size requires a non-negative integer".into())),
                },
                "$not" => Condition::Not(Box::new(Condition::parse(arg)?)),
                other => return Err(MangoError(format!("unknown operator {other}"))),
            });
        }
        Ok(if conditions.len() == 1 {
            conditions.pop().expect("one condition")
        } else {
            Condition::All(conditions)
        })
    }

    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Condition::Exists(want), v) => v.is_some() == *want,
            (Condition::Not(inner), v) => v.is_some() && !inner.matches(v),
            (Condition::All(all), v) => all.iter().all(|c| c.matches(v)),
            (_, None) => false,
            (Condition::Eq(x), Some(v)) => collate(v, x) == Ordering::Equal,
            (Condition::Ne(x), Some(v)) => collate(v, x) != Ordering::Equal,
            (Condition::Gt(x), Some(v)) => collate(v, x) == Ordering::Greater,
            (Condition::Gte(x), Some(v)) => collate(v, x) != Ordering::Less,
            (Condition::Lt(x), Some(v)) => collate(v, x) == Ordering::Less,
            (Condition::Lte(x), Some(v)) => collate(v, x) != Ordering::Greater,
            (Condition::In(xs), Some(v)) => xs.iter().any(|x| collate(v, x) == Ordering::Equal),
            (Condition::Nin(xs), Some(v)) => xs.iter().all(|x| collate(v, x) != Ordering::Equal),
            (Condition::Size(n), Some(Value::Array(items))) => items.len() as u64 == *n,
            (Condition::Size(_), Some(_)) => false,
        }
    }
}

fn array_arg(op: &str, arg: &Value) -> Result<Vec<Value>, MangoError> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(MangoError(format!("{op} requires an array"))),
    }
}

/// The value at a dotted path, if present.
pub fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = doc;
    for key in path {
        current = current.as_object()?.get(key)?;
    }
    Some(current)
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// CouchDB's view collation: null < false < true < numbers < strings < arrays < objects. Strings
/// compare by code point (as PouchDB does; CouchDB's ICU order differs only for mixed case and accents).
pub fn collate(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match collate(p, q) {
                    Ordering::Equal => continue,
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                match kp.cmp(kq).then_with(|| collate(vp, vq)) {
                    Ordering::Equal => continue,
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// A sort specification: fields with directions. CouchDB requires one direction for all fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub fields: Vec<Vec<String>>,
    pub descending: bool,
}

impl Sort {
    pub fn parse(value: &Value) -> Result<Self, MangoError> {
        let Value::Array(items) = value else {
            return Err(MangoError("sort must be an array".into()));
        };
        let mut fields = Vec::new();
        let mut directions = Vec::new();
        for item in items {
            match item {
                Value::String(field) => {
                    fields.push(path(field));
                    directions.push(false);
                }
                Value::Object(map) if map.len() == 1 => {
                    let (field, direction) = map.iter().next().expect("one entry");
                    let descending = match direction.as_str() {
                        Some("asc") => false,
                        Some("desc") => true,
                        _ => {
                            return Err(MangoError(
                                "sort direction must be \"asc\" or \"desc\"".into(),
                            ));
                        }
                    };
                    fields.push(path(field));
                    directions.push(descending);
                }
                _ => return Err(MangoError("invalid sort field".into())),
            }
        }
        let descending = directions.first().copied().unwrap_or(false);
        if directions.iter().any(|d| *d != descending) {
            return Err(MangoError(
                "sorts currently only support a single direction for all fields".into(),
            ));
        }
        Ok(Self { fields, descending })
    }

    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        for field in &self.fields {
            let ordering = match (lookup(a, field), lookup(b, field)) {
                (Some(x), Some(y)) => collate(x, y),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if ordering != Ordering::Equal {
                return if self.descending {
                    ordering.reverse()
                } else {
                    ordering
                };
            }
        }
        Ordering::Equal
    }
}

/// Keeps only `fields` (dotted paths) of a document, preserving nesting.
pub fn project(doc: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields {
        let parts = path(field);
        if let Some(value) = lookup(doc, &parts) {
            insert_path(&mut out, &parts, value.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(out: &mut Map<String, Value>, parts: &[String], value: Value) {
    match parts {
        [] => {}
        [last] => {
            out.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = out
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                insert_path(map, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(selector: Value, doc: Value, expected: bool) {
        let parsed = Selector::parse(&selector).unwrap();
        assert_eq!(parsed.matches(&doc), expected, "{selector} on {doc}");
    }

    #[test]
    fn operators() {
        let doc = json!({"n": 5, "s": "b", "tags": ["x", "y"], "o": {"k": true}, "z": null});
        check(json!({"n": 5}), doc.clone(), true);
        check(json!({"n": {"$eq": 5}}), doc.clone(), true);
        check(json!({"n": {"$ne": 5}}), doc.clone(), false);
        check(json!({"n": {"$gt": 4, "$lt": 6}}), doc.clone(), true);
        check(json!({"n": {"$gte": 5}}), doc.clone(), true);
        check(json!({"n": {"$lte": 4}}), doc.clone(), false);
        check(json!({"s": {"$in": ["a", "b"]}}), doc.clone(), true);
        check(json!({"s": {"$nin": ["a", "b"]}}), doc.clone(), false);
        check(json!({"o.k": true}), doc.clone(), true);
        check(json!({"missing": {"$exists": false}}), doc.clone(), true);
        check(json!({"z": {"$exists": true}}), doc.clone(), true);
        check(json!({"missing": {"$ne": 1}}), doc.clone(), false);
        check(json!({"tags": {"$size": 2}}), doc.clone(), true);
        check(json!({"$or": [{"n": 1}, {"s": "b"}]}), doc.clone(), true);
        check(json!({"$and": [{"n": 5}, {"s": "c"}]}), doc.clone(), false);
        check(json!({"$nor": [{"n": 1}, {"s": "c"}]}), doc.clone(), true);
        check(json!({"n": {"$not": {"$gt": 10}}}), doc.clone(), true);
        check(json!({"n": 5, "s": "b"}), doc, true);
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for bad in [
            json!([]),
            json!({"$bogus": 1}),
            json!({"a": {"$in": 3}}),
            json!({"a": {"$exists": 1}}),
        ] {
            assert!(Selector::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn collation_orders_types_then_values() {
        let ordered = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1),
            json!(2.5),
            json!("A"),
            json!("a"),
            json!([1]),
            json!({"a": 1}),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                collate(&pair[0], &pair[1]),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn sort_and_projection() {
        let sort = Sort::parse(&json!([{"n": "desc"}])).unwrap();
        assert_eq!(
            sort.compare(&json!({"n": 1}), &json!({"n": 2})),
            Ordering::Greater
        );
        assert!(Sort::parse(&json!([{"a": "asc"}, {"b": "desc"}])).is_err());
        assert_eq!(
            project(
                &json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4}),
                &["a".into(), "b.c".into()]
            ),
            json!({"a": 1, "b": {"c": 2}})
        );
    }
}
