//! What a document is as edgerag stores it: the checks on what clients send (ids, tags, metadata,
//! content types), the records kept in the document store, and the deterministic names of its pieces
//! in the other stores (point ids, object keys), which make every step of an ingest idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::chunk::hex;
use super::extract::{self, Extracted};
use super::text;
use crate::ApiError;

/// Longest client-given document id.
pub const MAX_ID_CHARS: usize = 128;
/// Most bytes of a document's metadata, as JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Most tags on a document, and the longest tag.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
/// Longest title.
pub const MAX_TITLE_CHARS: usize = 512;

/// The formats ingest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    #[serde(rename = "text/plain")]
    Text,
    #[serde(rename = "text/markdown")]
    Markdown,
    #[serde(rename = "text/html")]
    Html,
    #[serde(rename = "application/pdf")]
    Pdf,
}

impl ContentType {
    /// The format a `content-type` value names (parameters ignored), or a 415 listing what is read.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let media = value.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "text/plain" => Ok(Self::Text),
            "text/markdown" | "text/x-markdown" => Ok(Self::Markdown),
            "text/html" | "application/xhtml+xml" => Ok(Self::Html),
            "application/pdf" => Ok(Self::Pdf),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "documents are text/plain, text/markdown, text/html or application/pdf, not `{media}`"
            ))),
        }
    }

    /// From a file name's extension, for multipart parts and the bulk client.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Self::Text),
            "md" | "markdown" | "mdx" => Some(Self::Markdown),
            "html" | "htm" | "xhtml" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
        }
    }
}

/// Bytes to extracted text, by format. Text formats are decoded first (415 when they cannot be).
pub fn extract(
    content_type: ContentType,
    bytes: &[u8],
    charset: Option<&str>,
) -> Result<Extracted, ApiError> {
    let decoded =
        || text::decode(bytes, charset).map_err(|e| ApiError::UnsupportedMediaType(e.to_string()));
    let extracted = match content_type {
        ContentType::Text => extract::plain(&decoded()?),
        ContentType::Markdown => extract::markdown(&decoded()?),
        ContentType::Html => extract::html(&decoded()?),
        ContentType::Pdf => super::pdf::extract(bytes)?,
    };
    if extracted.is_empty() {
        return Err(ApiError::Unprocessable("the document has no text".into()));
    }
    Ok(extracted)
}

/// A document id: 1 to 128 of `A-Z a-z 0-9 . _ ~ -`, so it is safe in URLs and store keys alike.
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a document id is 1 to {MAX_ID_CHARS} of A-Z, a-z, 0-9, `.`, `_`, `~` and `-`"
        )))
    }
}

/// Tags: at most 32, each 1 to 64 characters without control characters; duplicates dropped.
pub fn validate_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::BadRequest(format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(ApiError::BadRequest(format!(
                "a tag is 1 to {MAX_TAG_CHARS} characters without control characters"
            )));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

/// Metadata: a flat object of string, number and boolean values, keys of 1 to 64 word characters, at
/// most 8 KiB as JSON.
pub fn validate_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in metadata {
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
        if !key_ok {
            return Err(ApiError::BadRequest(format!(
                "metadata key `{key}`: keys are 1 to 64 of A-Z, a-z, 0-9, `_` and `-`"
            )));
        }
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(ApiError::BadRequest(format!(
                "metadata `{key}`: values are strings, numbers or booleans (metadata is flat)"
            )));
        }
    }
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!(
            "metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// A title: trimmed to one line, at most 512 characters.
pub fn validate_title(title: &str) -> Result<String, ApiError> {
    let title = text::one_line(title);
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a title is at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

/// SHA-256 of bytes, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The vector store point id of one chunk: a UUID made from a hash of its full name, so writing the
/// same chunk twice writes the same point.
pub fn point_id(project: &str, document: &str, version: u32, ordinal: u32) -> String {
    let digest = Sha256::digest(format!("{project}\n{document}\n{version}\n{ordinal}").as_bytes());
    let h = hex(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Where a version's original bytes live in the object store.
pub fn object_key(project: &str, document: &str, version: u32) -> String {
    format!("{}{version}", object_prefix(project, document))
}

/// The prefix of every object of one document.
pub fn object_prefix(project: &str, document: &str) -> String {
    format!("projects/{project}/documents/{document}/")
}

/// The prefix of every object of one project.
pub fn project_object_prefix(project: &str) -> String {
    format!("projects/{project}/")
}

/// The document store id of a document's record.
pub fn record_id(project: &str, document: &str) -> String {
    format!("document:{project}:{document}")
}

/// The prefix of every record id of one project in the ingest database.
pub fn project_record_prefix(project: &str) -> String {
    format!("document:{project}:")
}

/// The document store id of one chunk's record.
pub fn chunk_record_id(project: &str, document: &str, version: u32, ordinal: u32) -> String {
    format!("chunk:{project}:{document}:{version:08}:{ordinal:08}")
}

/// The prefix of the chunk records of one version (or, without a version, of every version).
pub fn chunk_record_prefix(project: &str, document: &str, version: Option<u32>) -> String {
    match version {
        Some(version) => format!("chunk:{project}:{document}:{version:08}:"),
        None => format!("chunk:{project}:{document}:"),
    }
}

/// What kind of knowledge a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Document,
    /// A question and its answer: the question is embedded, the answer given verbatim.
    Qa,
}

/// Where a document's latest write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A version is being written; the previous one (if any) is what search sees.
    Processing,
    /// The live version is complete and searchable.
    Ready,
    /// The latest write failed; the previous version (if any) is still live.
    Failed,
}

/// One version of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub content_type: ContentType,
    pub content_sha256: String,
    pub bytes: u64,
    pub chunks: u32,
    pub created_at: u64,
    /// Whether its original bytes and chunk records are still kept.
    pub kept: bool,
}

/// A document's record in the document store: what it is, and every version it has had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    #[serde(rename = "_id")]
    pub record_id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub project: String,
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub source_uri: Option<String>,
    pub status: Status,
    /// The version search sees, once one is complete.
    pub live_version: Option<u32>,
    /// The version being written (while `processing`).
    pub pending_version: Option<u32>,
    pub versions: Vec<Version>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The latest failure, when `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For Q&A pairs: the answer given verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl DocumentRecord {
    pub fn live(&self) -> Option<&Version> {
        let live = self.live_version?;
        self.versions.iter().find(|v| v.version == live)
    }

    /// The number the next version gets.
    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_tags_and_metadata_are_checked() {
        for id in ["a", "doc-1", "A.b_c~d", &"x".repeat(128)] {
            assert!(validate_id(id).is_ok(), "{id}");
        }
        for id in ["", "a/b", "a b", "é", "..", &"x".repeat(129), "a%2F"] {
            assert!(validate_id(id).is_err(), "{id}");
        }
        assert_eq!(
            validate_tags(&["a".into(), " a ".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(validate_tags(&["".into()]).is_err());
        assert!(validate_tags(&vec!["t".to_string(); 33]).is_err());
        let flat = json!({"lang": "en", "year": 2024, "public": true});
        assert!(validate_metadata(flat.as_object().unwrap()).is_ok());
        for bad in [
            json!({"nested": {"a": 1}}),
            json!({"list": [1]}),
            json!({"null": null}),
            json!({"bad key": 1}),
            json!({"big": "x".repeat(9000)}),
        ] {
            assert!(
                validate_metadata(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_deterministic_and_distinct() {
        let a = point_id("p", "d", 1, 0);
        assert_eq!(a, point_id("p", "d", 1, 0));
        assert_ne!(a, point_id("p", "d", 2, 0));
        assert_ne!(a, point_id("p", "d", 1, 1));
        assert_eq!(a.len(), 36);
        assert!(
            chunk_record_id("p", "d", 2, 3).starts_with(&chunk_record_prefix("p", "d", Some(2)))
        );
        assert!(chunk_record_id("p", "d", 2, 3).starts_with(&chunk_record_prefix("p", "d", None)));
        // A document id that is a prefix of another does not share its prefix.
        assert!(
            !chunk_record_id("p", "d1", 1, 0).starts_with(&chunk_record_prefix("p", "d", None))
        );
        assert!(!object_key("p", "d1", 1).starts_with(&object_prefix("p", "d")));
    }

    #[test]
    fn content_types_are_read_from_headers_and_names() {
        assert_eq!(
            ContentType::parse("text/markdown; charset=utf-8").unwrap(),
            ContentType::Markdown
        );
        assert_eq!(ContentType::parse("TEXT/HTML").unwrap(), ContentType::Html);
        assert_eq!(ContentType::parse("image/png").unwrap_err().status(), 415);
        assert_eq!(
            ContentType::from_file_name("a/b/Guide.MD"),
            Some(ContentType::Markdown)
        );
        assert_eq!(ContentType::from_file_name("x.docx"), None);
    }
}
