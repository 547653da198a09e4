//! Request input checks every function applies the same way: JSON bodies (type, size, encoding,
//! shape) and query strings.

use serde::de::DeserializeOwned;

use crate::ApiError;

/// The largest JSON body the account and management routes accept.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Parses a JSON request body: `application/json` (415 otherwise), at most `limit` bytes (413), UTF-8 and
/// well-formed (400), and of the expected shape (400 naming the field serde complained about).
pub fn json_body<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<T, ApiError> {
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge {
            limit: limit as u64,
        });
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as `content-type: application/json`".into(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body is not valid UTF-8".into()))?;
    serde_json::from_str(text).map_err(|error| {
        let what = if error.is_syntax() || error.is_eof() {
            "the body is not valid JSON"
        } else {
            "the body has the wrong shape"
        };
        ApiError::BadRequest(format!("{what}: {error}"))
    })
}

/// The query string's `name=value` pairs, percent-decoded (`+` as space). Pairs that do not decode to
/// UTF-8 are a 400.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest("the query string has a bad %-escape".into())
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("the query string is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
    }

    fn check(content_type: Option<&str>, body: &str, expected: Result<&str, u16>) {
        let got = json_body::<Body>(content_type, body.as_bytes(), 32);
        match (got, expected) {
            (Ok(b), Ok(name)) => assert_eq!(b.name, name),
            (Err(e), Err(status)) => assert_eq!(e.status(), status, "{body}: {e}"),
            (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn json_bodies() {
        let json = Some("application/json; charset=utf-8");
        check(json, r#"{"name":"a"}"#, Ok("a"));
        check(Some("text/plain"), r#"{"name":"a"}"#, Err(415));
        check(None, r#"{"name":"a"}"#, Err(415));
        check(json, r#"{"name":"#, Err(400));
        check(json, r#"{"name":1}"#, Err(400));
        check(json, r#"{"name":"a","extra":1}"#, Err(400));
        check(
            json,
            &format!(r#"{{"name":"{}"}}"#, "a".repeat(40)),
            Err(413),
        );
        let invalid_utf8 = json_body::<Body>(json, b"{\"name\":\"\xff\"}", 32).unwrap_err();
        assert!(invalid_utf8.to_string().contains("UTF-8"));
    }

    #[test]
    fn query_strings() {
        let pairs = query_pairs("to=a%40b.com&after=x+y&flag").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("to".into(), "a@b.com".into()),
                ("after".into(), "x y".into()),
                ("flag".into(), String::new())
            ]
        );
        assert!(query_pairs("a=%zz").is_err());
        assert!(query_pairs("a=%ff").is_err());
    }
}
