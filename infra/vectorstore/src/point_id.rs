use serde_json::{Value, json};

use crate::error::{Result, VecError};

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

    pub(crate) fn storage_key(&self) -> String {
        match self {
            PointId::Num(n) => format!("n{n:020}"),
            PointId::Uuid(u) => format!("u{u}"),
        }
    }

    pub(crate) fn from_storage_key(key: &str) -> Option<Self> {
        match key.split_at_checked(1)? {
            ("n", n) => n.parse().ok().map(PointId::Num),
            ("u", u) => Some(PointId::Uuid(u.to_string())),
            _ => None,
        }
    }
}

pub(crate) fn canonical_uuid(text: &str) -> Option<String> {
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
