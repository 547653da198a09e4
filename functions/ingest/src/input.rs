//! What a client sends, parsed and checked before anything is written.

use serde::Deserialize;
use serde_json::{Map, Value};
use shared::ApiError;
use shared::ingest::document::{
    ContentType, Kind, validate_id, validate_metadata, validate_tags, validate_title,
};
use shared::request::query_pairs;

/// The largest document body accepted (the host may set a lower limit of its own).
pub const MAX_DOCUMENT_BYTES: usize = 32 << 20;
/// The largest body of a source's or a webhook's settings.
pub const MAX_SETTINGS_BYTES: usize = 64 << 10;
/// Most Q&A pairs in one request.
pub const MAX_QA_PAIRS: usize = 500;
/// Longest source URI.
const MAX_URI_CHARS: usize = 2048;

/// A document to write, checked.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: Option<String>,
    pub title: Option<String>,
    pub content_type: ContentType,
    pub charset: Option<String>,
    pub bytes: Vec<u8>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub source_uri: Option<String>,
    pub kind: Kind,
    pub answer: Option<String>,
}

/// What a document carries besides its bytes: kept with a job so that its steps can cut the stored
/// bytes again exactly as the request did.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Meta {
    pub id: Option<String>,
    pub title: Option<String>,
    pub content_type: ContentType,
    pub charset: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub source_uri: Option<String>,
    pub kind: Kind,
    pub answer: Option<String>,
    pub bytes: u64,
}

impl NewDocument {
    pub fn meta(&self) -> Meta {
        Meta {
            id: self.id.clone(),
            title: self.title.clone(),
            content_type: self.content_type,
            charset: self.charset.clone(),
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
            source_uri: self.source_uri.clone(),
            kind: self.kind,
            answer: self.answer.clone(),
            bytes: self.bytes.len() as u64,
        }
    }

    /// The document again from its metadata and stored bytes (a job's step).
    pub fn from_meta(meta: Meta, bytes: Vec<u8>) -> Self {
        Self {
            id: meta.id,
            title: meta.title,
            content_type: meta.content_type,
            charset: meta.charset,
            bytes,
            tags: meta.tags,
            metadata: meta.metadata,
            source_uri: meta.source_uri,
            kind: meta.kind,
            answer: meta.answer,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDocument {
    id: Option<String>,
    title: Option<String>,
    text: String,
    content_type: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
    source_uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPair {
    id: Option<String>,
    question: String,
    answer: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

fn media(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn source_uri(uri: Option<String>) -> Result<Option<String>, ApiError> {
    match uri.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
        Some(uri) if uri.chars().count() > MAX_URI_CHARS || uri.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(format!(
                "source_uri is at most {MAX_URI_CHARS} characters of one line"
            )))
        }
        other => Ok(other),
    }
}

fn checked(mut doc: NewDocument) -> Result<NewDocument, ApiError> {
    if let Some(id) = &doc.id {
        validate_id(id)?;
    }
    doc.title = doc
        .title
        .as_deref()
        .map(validate_title)
        .transpose()?
        .filter(|t| !t.is_empty());
    doc.tags = validate_tags(&doc.tags)?;
    validate_metadata(&doc.metadata)?;
    doc.source_uri = source_uri(doc.source_uri)?;
    if doc.bytes.is_empty() {
        return Err(ApiError::Unprocessable("the document is empty".into()));
    }
    Ok(doc)
}

/// A document from a request body: JSON `{text, ...}`, or the raw bytes of a text, Markdown, HTML or
/// PDF file with its options in the query string.
pub fn document(
    content_type: Option<&str>,
    query: &str,
    body: Vec<u8>,
) -> Result<NewDocument, ApiError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_DOCUMENT_BYTES as u64,
        });
    }
    if media(content_type) == "application/json" {
        let json: JsonDocument =
            shared::request::json_body(content_type, &body, MAX_DOCUMENT_BYTES)?;
        return from_json(json);
    }
    let Some(header) = content_type else {
        return Err(ApiError::UnsupportedMediaType(
            "send a content-type: application/json, text/plain, text/markdown, text/html or application/pdf".into(),
        ));
    };
    let format = ContentType::parse(header)?;
    let mut doc = NewDocument {
        id: None,
        title: None,
        content_type: format,
        charset: shared::ingest::text::charset(header).map(str::to_string),
        bytes: body,
        tags: Vec::new(),
        metadata: Map::new(),
        source_uri: None,
        kind: Kind::Document,
        answer: None,
    };
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "id" => doc.id = Some(value),
            "title" => doc.title = Some(value),
            "tags" | "tag" => doc.tags.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            "source_uri" => doc.source_uri = Some(value),
            _ => {}
        }
    }
    checked(doc)
}

/// Most documents in one batch request.
pub const MAX_BATCH: usize = 500;

/// Whether a body is a JSON array (a batch of documents).
pub fn is_batch(content_type: Option<&str>, body: &[u8]) -> bool {
    media(content_type) == "application/json"
        && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// A batch of documents from a JSON array of `{id?, title?, text, content_type?, tags?, metadata?,
/// source_uri?}`.
pub fn documents(content_type: Option<&str>, body: &[u8]) -> Result<Vec<NewDocument>, ApiError> {
    let docs: Vec<JsonDocument> =
        shared::request::json_body(content_type, body, MAX_DOCUMENT_BYTES)?;
    if docs.is_empty() || docs.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "a batch holds 1 to {MAX_BATCH} documents"
        )));
    }
    docs.into_iter().map(from_json).collect()
}

fn from_json(json: JsonDocument) -> Result<NewDocument, ApiError> {
    let format = match json.content_type.as_deref() {
        None => ContentType::Text,
        Some(value) => match ContentType::parse(value)? {
            ContentType::Pdf => {
                return Err(ApiError::UnsupportedMediaType(
                    "a PDF is sent as the raw body with `content-type: application/pdf`, not inside JSON".into(),
                ));
            }
            format => format,
        },
    };
    checked(NewDocument {
        id: json.id,
        title: json.title,
        content_type: format,
        charset: None,
        bytes: json.text.into_bytes(),
        tags: json.tags,
        metadata: json.metadata,
        source_uri: json.source_uri,
        kind: Kind::Document,
        answer: None,
    })
}

/// Most files in one multipart upload.
pub const MAX_FILES: usize = 100;

/// Whether a body is `multipart/form-data`.
pub fn is_multipart(content_type: Option<&str>) -> bool {
    media(content_type) == "multipart/form-data"
}

/// A document id from a file name: characters ids do not allow become `-`.
fn id_from_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let id: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._~-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    id.trim_matches('.').to_string()
}

/// The files of a `multipart/form-data` upload, each a document (id from its file name, format from
/// its part's content type or its extension); text fields `tags` (comma separated) and `source_uri`
/// apply to every file. Parsed by multer.
pub async fn multipart(content_type: &str, body: Vec<u8>) -> Result<Vec<NewDocument>, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?;
    let stream = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(body))
    });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut files: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
    let mut tags: Vec<String> = Vec::new();
    let mut source_uri = None;
    let bad = |e: multer::Error| ApiError::BadRequest(format!("multipart: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(file_name) => {
                if files.len() == MAX_FILES {
                    return Err(ApiError::BadRequest(format!(
                        "at most {MAX_FILES} files per upload"
                    )));
                }
                let declared = field.content_type().map(|m| m.essence_str().to_string());
                let bytes = field.bytes().await.map_err(bad)?;
                files.push((file_name, declared, bytes.to_vec()));
            }
            None => {
                let value = field.text().await.map_err(bad)?;
                match name.as_str() {
                    "tags" | "tag" => tags.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_string),
                    ),
                    "source_uri" => source_uri = Some(value),
                    _ => {}
                }
            }
        }
    }
    if files.is_empty() {
        return Err(ApiError::BadRequest(
            "the upload holds no file parts".into(),
        ));
    }
    files
        .into_iter()
        .map(|(file_name, declared, bytes)| {
            let format = declared
                .as_deref()
                .filter(|d| *d != "application/octet-stream")
                .and_then(|d| ContentType::parse(d).ok())
                .or_else(|| ContentType::from_file_name(&file_name))
                .ok_or_else(|| {
                    ApiError::UnsupportedMediaType(format!(
                        "{file_name}: documents are text, Markdown, HTML or PDF files"
                    ))
                })?;
            checked(NewDocument {
                id: Some(id_from_file_name(&file_name)),
                title: None,
                content_type: format,
                charset: declared
                    .as_deref()
                    .and_then(shared::ingest::text::charset)
                    .map(str::to_string),
                bytes,
                tags: tags.clone(),
                metadata: Map::new(),
                source_uri: source_uri.clone(),
                kind: Kind::Document,
                answer: None,
            })
            .map_err(|e| match e {
                ApiError::BadRequest(m) => ApiError::BadRequest(format!("{file_name}: {m}")),
                ApiError::Unprocessable(m) => ApiError::Unprocessable(format!("{file_name}: {m}")),
                other => other,
            })
        })
        .collect()
}

/// Q&A pairs from `[{question, answer, tags?, id?, metadata?}]`.
pub fn qa_pairs(content_type: Option<&str>, body: &[u8]) -> Result<Vec<NewDocument>, ApiError> {
    let pairs: Vec<JsonPair> = shared::request::json_body(content_type, body, 4 << 20)?;
    if pairs.is_empty() || pairs.len() > MAX_QA_PAIRS {
        return Err(ApiError::BadRequest(format!(
            "send 1 to {MAX_QA_PAIRS} pairs"
        )));
    }
    pairs
        .into_iter()
        .map(|pair| {
            let question = shared::ingest::text::one_line(&pair.question);
            let answer = shared::ingest::text::clean(&pair.answer);
            if question.is_empty() || answer.is_empty() {
                return Err(ApiError::Unprocessable(
                    "every pair needs a question and an answer".into(),
                ));
            }
            let id = pair.id.unwrap_or_else(|| {
                let hash =
                    shared::ingest::document::content_hash(question.to_lowercase().as_bytes());
                format!("qa-{}", &hash[..20])
            });
            checked(NewDocument {
                id: Some(id),
                title: Some(question.clone()),
                content_type: ContentType::Text,
                charset: None,
                bytes: question.into_bytes(),
                tags: pair.tags,
                metadata: pair.metadata,
                source_uri: None,
                kind: Kind::Qa,
                answer: Some(answer),
            })
        })
        .collect()
}
