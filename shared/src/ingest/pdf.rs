//! PDF text, page by page, through lopdf (pure Rust, builds for wasm32-wasip2, and bounds every
//! stream it inflates, so a decompression bomb fails instead of filling memory).

use super::extract::{BlockKind, Extracted};
use super::text::clean;
use crate::ApiError;

/// Most bytes any one PDF stream (or one page's content) may inflate to.
pub const MAX_STREAM_BYTES: usize = 32 << 20;
/// Most bytes of text a PDF may yield in all.
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// The text of every page, as paragraphs that know their page number.
pub fn extract(bytes: &[u8]) -> Result<Extracted, ApiError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ApiError::Unprocessable(
            "the body is not a PDF (it does not start with `%PDF-`)".into(),
        ));
    }
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(MAX_STREAM_BYTES),
        ..lopdf::LoadOptions::default()
    };
    let document = lopdf::Document::load_mem_with_options(bytes, options)
        .map_err(|e| ApiError::Unprocessable(format!("the PDF cannot be read: {e}")))?;
    if document.is_encrypted() {
        return Err(ApiError::Unprocessable(
            "the PDF is encrypted; send it without a password".into(),
        ));
    }
    let mut out = Extracted::default();
    let mut total = 0usize;
    for page in document.get_pages().into_keys() {
        let text = match document.extract_text_with_limit(&[page], MAX_STREAM_BYTES) {
            Ok(text) => text,
            Err(lopdf::Error::Decompress(_)) => {
                return Err(ApiError::Unprocessable(format!(
                    "page {page} of the PDF inflates past {} MiB",
                    MAX_STREAM_BYTES >> 20
                )));
            }
            // A page whose content cannot be read (an unsupported font encoding, say) is skipped,
            // as a viewer shows the rest.
            Err(_) => continue,
        };
        total += text.len();
        if total > MAX_TEXT_BYTES {
            return Err(ApiError::Unprocessable(format!(
                "the PDF holds more than {} MiB of text",
                MAX_TEXT_BYTES >> 20
            )));
        }
        for paragraph in clean(&text).split("\n\n") {
            out.push(BlockKind::Paragraph, paragraph, Some(page));
        }
    }
    if out.is_empty() {
        return Err(ApiError::Unprocessable(
            "the PDF has no extractable text (a scan needs OCR first)".into(),
        ));
    }
    Ok(out)
}
