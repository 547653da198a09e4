//! Bytes to clean text: character encodings detected and converted, then Unicode NFC with whitespace
//! and control characters normalised, so that what is chunked, hashed and embedded is the same text
//! however the file was saved.

use encoding_rs::Encoding;
use unicode_normalization::UnicodeNormalization;

/// Why bytes could not be read as text (the client sees a 415 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "the body looks binary (it holds NUL bytes), not text; send text, Markdown, HTML or PDF"
    )]
    Binary,
    #[error("the declared charset `{0}` is not one we know")]
    UnknownCharset(String),
    #[error("the body is not valid {0}")]
    Invalid(&'static str),
    #[error(
        "the text is neither UTF-8 nor UTF-16 with a byte-order mark, nor in a single-byte encoding that decodes cleanly; convert it to UTF-8"
    )]
    Undetected,
}

/// Decodes `bytes` to a string: a byte-order mark (UTF-8, UTF-16LE/BE) wins, then a `charset` the
/// client declared, then UTF-8, then a legacy single-byte encoding detected by chardetng (the
/// detector Firefox uses), accepted only when it decodes without a replacement character.
pub fn decode(bytes: &[u8], declared_charset: Option<&str>) -> Result<String, DecodeError> {
    if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return if had_errors {
            Err(DecodeError::Invalid(encoding.name()))
        } else {
            Ok(text.into_owned())
        };
    }
    if bytes.contains(&0) {
        return Err(DecodeError::Binary);
    }
    if let Some(label) = declared_charset.map(str::trim).filter(|l| !l.is_empty()) {
        let encoding = Encoding::for_label(label.as_bytes())
            .ok_or_else(|| DecodeError::UnknownCharset(label.to_string()))?;
        let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
        return if had_errors {
            Err(DecodeError::Invalid(encoding.name()))
        } else {
            Ok(text.into_owned())
        };
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    if had_errors || !encoding.is_single_byte() {
        return Err(DecodeError::Undetected);
    }
    Ok(text.into_owned())
}

/// The `charset` parameter of a `content-type` value, if any.
pub fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Normalises text for everything downstream: NFC, `\r\n` and `\r` to `\n`, other control and format
/// characters dropped (tab becomes a space), Unicode spaces to a plain space, runs of spaces collapsed,
/// spaces at line ends removed and no more than one blank line in a row.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0usize;
    let mut pending_space = false;
    // Most text is already NFC (all ASCII text is): then composing it again would only cost time.
    let composed: std::borrow::Cow<str> = if text.is_ascii()
        || unicode_normalization::is_nfc_quick(text.chars())
            == unicode_normalization::IsNormalized::Yes
    {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.nfc().collect())
    };
    let mut chars = composed.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    continue;
                }
                '\n'
            }
            '\n' | '\u{2028}' | '\u{2029}' => '\n',
            '\t' => ' ',
            c if c.is_control() || is_format(c) => continue,
            c if c.is_whitespace() => ' ',
            c => c,
        };
        match c {
            '\n' => {
                pending_space = false;
                newlines += 1;
            }
            ' ' => pending_space = true,
            c => {
                if !out.is_empty() {
                    if newlines > 0 {
                        out.push_str(if newlines > 1 { "\n\n" } else { "\n" });
                    } else if pending_space {
                        out.push(' ');
                    }
                }
                newlines = 0;
                pending_space = false;
                out.push(c);
            }
        }
    }
    out
}

/// Collapses all whitespace (newlines too) to single spaces: the text of one paragraph or cell.
pub fn one_line(text: &str) -> String {
    let cleaned = clean(text);
    let mut out = String::with_capacity(cleaned.len());
    for word in cleaned.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Invisible format characters (zero-width spaces and joiners, bidi marks, the BOM) that only get in the
/// way of matching.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_decode(bytes: &[u8], charset: Option<&str>, expected: Result<&str, DecodeError>) {
        let expected = expected.map(str::to_string);
        assert_eq!(decode(bytes, charset), expected, "{bytes:?}");
    }

    #[test]
    fn encodings_are_detected_and_converted() {
        check_decode("héllo".as_bytes(), None, Ok("héllo"));
        check_decode(b"\xEF\xBB\xBFh\xC3\xA9", None, Ok("hé"));
        check_decode(b"\xFF\xFEh\x00\xE9\x00", None, Ok("hé"));
        check_decode(b"\xFE\xFF\x00h\x00\xE9", None, Ok("hé"));
        check_decode(b"caf\xE9", Some("iso-8859-1"), Ok("café"));
        check_decode(
            b"caf\xE9",
            Some("klingon"),
            Err(DecodeError::UnknownCharset("klingon".into())),
        );
        check_decode(
            b"caf\xE9",
            Some("utf-8"),
            Err(DecodeError::Invalid("UTF-8")),
        );
        check_decode(b"a\x00b", None, Err(DecodeError::Binary));
        // Windows-1252 French prose without a declared charset.
        let french = b"Le caf\xE9 est ferm\xE9 le lundi. Les \xE9l\xE8ves arrivent \xE0 huit heures, apr\xE8s la pri\xE8re du matin, et repartent \xE0 midi.";
        let text = decode(french, None).unwrap();
        assert!(text.starts_with("Le café est fermé"), "{text}");
    }

    fn check_clean(input: &str, expected: &str) {
        assert_eq!(clean(input), expected, "{input:?}");
    }

    #[test]
    fn cleaning_normalises_unicode_whitespace_and_controls() {
        check_clean("e\u{301}t\u{E9}", "\u{E9}t\u{E9}");
        check_clean("a\r\nb\rc", "a\nb\nc");
        check_clean("  a \t b\u{A0}\u{200B}c  \n\n\n\n d \n", "a b c\n\nd");
        check_clean("x\u{7}y\u{FEFF}z", "xyz");
        check_clean("", "");
        assert_eq!(one_line(" a\n b\n\n c "), "a b c");
        assert_eq!(
            charset("text/plain; charset=\"ISO-8859-1\""),
            Some("ISO-8859-1")
        );
        assert_eq!(charset("text/plain"), None);
    }
}
