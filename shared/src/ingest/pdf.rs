//! PDF text, page by page, through lopdf (pure Rust, builds for wasm32-wasip2, and bounds every
//! stream it inflates, so a decompression bomb fails instead of filling memory).

use super::extract::{BlockKind, Extracted};
use super::text::clean;
use crate::ApiError;

/// Most bytes any one PDF stream (or one page's content) may inflate to.
pub const MAX_STREAM_BYTES: usize = 32 << 20;
/// Most bytes of text a PDF may yield in all.
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// One page's text: the strings its text-showing operators draw, in content order, decoded by the
/// page's fonts, with a line break wherever the text moves to a new line or a text object ends.
/// lopdf's `extract_text` reads a page the same way, but it walks the whole page tree again on every
/// call: one call per page made a 10,890-page PDF take 43 s to read, quadratic in its pages.
fn page_text(document: &lopdf::Document, page: lopdf::ObjectId) -> lopdf::Result<String> {
    use lopdf::Object;
    let encodings = document
        .get_page_fonts(page)?
        .into_iter()
        .map(|(name, font)| {
            Ok((
                name,
                font.get_font_encoding_with_limit(document, MAX_STREAM_BYTES)?,
            ))
        })
        .collect::<lopdf::Result<std::collections::BTreeMap<_, _>>>()?;
    let content = lopdf::content::Content::decode(
        &document.get_page_content_with_limit(page, MAX_STREAM_BYTES)?,
    )?;
    fn line_break(text: &mut String) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
    }
    fn show(
        text: &mut String,
        encoding: &lopdf::Encoding<'_>,
        operands: &[Object],
    ) -> lopdf::Result<()> {
        for operand in operands {
            match operand {
                Object::String(bytes, _) => {
                    text.push_str(&lopdf::Document::decode_text(encoding, bytes)?)
                }
                // TJ's array: strings and kerning; a gap wider than a tenth of an em is a space.
                Object::Array(parts) => {
                    show(text, encoding, parts)?;
                    if !text.ends_with(char::is_whitespace) {
                        text.push(' ');
                    }
                }
                Object::Integer(gap) if *gap < -100 => text.push(' '),
                Object::Real(gap) if *gap < -100.0 => text.push(' '),
                _ => {}
            }
        }
        Ok(())
    }
    let mut text = String::new();
    let mut encoding = None;
    for operation in &content.operations {
        let operands = &operation.operands[..];
        let shown = match operation.operator.as_str() {
            "Tf" => {
                encoding = operands
                    .first()
                    .and_then(|font| font.as_name().ok())
                    .and_then(|font| encodings.get(font));
                continue;
            }
            "Tj" | "TJ" => operands,
            "'" => {
                line_break(&mut text);
                operands
            }
            "\"" => {
                line_break(&mut text);
                operands.get(2..).unwrap_or_default()
            }
            "T*" | "ET" => {
                line_break(&mut text);
                continue;
            }
            // A move down (or up) the page starts a new line; one along it does not.
            "Td" | "TD" => {
                if operands
                    .get(1)
                    .and_then(|y| y.as_float().ok())
                    .is_some_and(|y| y != 0.0)
                {
                    line_break(&mut text);
                }
                continue;
            }
            _ => continue,
        };
        if let Some(encoding) = encoding {
            show(&mut text, encoding, shown)?;
        }
    }
    Ok(text)
}

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
    for (page, id) in document.get_pages() {
        let text = match page_text(&document, id) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};

    /// A PDF whose pages draw these operations with one Helvetica font named F1.
    fn pdf(pages: Vec<Vec<Operation>>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
        let mut kids: Vec<Object> = Vec::new();
        for operations in pages {
            let content = Content { operations }.encode().unwrap();
            let content_id = doc.add_object(Stream::new(dictionary! {}, content));
            let page = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            });
            kids.push(page.into());
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    fn op(operator: &str, operands: Vec<Object>) -> Operation {
        Operation::new(operator, operands)
    }

    fn text(s: &str) -> Object {
        Object::string_literal(s)
    }

    #[test]
    fn pages_read_as_drawn_with_line_moves_kerning_and_page_numbers() {
        let font = || op("Tf", vec!["F1".into(), 11.into()]);
        let bytes = pdf(vec![
            vec![
                op("BT", vec![]),
                font(),
                op("Td", vec![50.into(), 780.into()]),
                op("Tj", vec![text("First line,")]),
                // A move along the line keeps the line; one down the page starts the next.
                op("Td", vec![60.into(), 0.into()]),
                op("Tj", vec![text(" same line.")]),
                op("Td", vec![(-60).into(), (-14).into()]),
                // TJ: a kerning gap wider than a tenth of an em reads as a space.
                op(
                    "TJ",
                    vec![Object::Array(vec![
                        text("Second"),
                        (-250).into(),
                        text("line"),
                        (-20).into(),
                        text("s"),
                    ])],
                ),
                op("'", vec![text("Third line.")]),
                op("ET", vec![]),
            ],
            vec![
                op("BT", vec![]),
                // Text before any font is set has no encoding to read it by.
                op("Tj", vec![text("unreadable")]),
                font(),
                op("Tj", vec![text("Page two.")]),
                op("T*", vec![]),
                op("\"", vec![0.into(), 0.into(), text("Its second line.")]),
                op("ET", vec![]),
            ],
        ]);
        let extracted = extract(&bytes).unwrap();
        let blocks: Vec<(&str, Option<u32>)> = extracted
            .blocks
            .iter()
            .map(|b| (extracted.block_text(b), b.page))
            .collect();
        // Lines of one paragraph are joined by cleaning; a page is at least one paragraph.
        assert_eq!(
            blocks,
            vec![
                ("First line, same line. Second lines Third line.", Some(1)),
                ("Page two. Its second line.", Some(2)),
            ]
        );
        // The line breaks themselves, before cleaning.
        let document = lopdf::Document::load_mem(&bytes).unwrap();
        let first = document.get_pages()[&1];
        assert_eq!(
            page_text(&document, first).unwrap(),
            "First line, same line.\nSecond lines \nThird line.\n"
        );
    }
}
