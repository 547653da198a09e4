//! Counting tokens as the embedded model counts them: BERT's uncased normaliser and pre-tokeniser,
//! then greedy longest-match WordPiece over all-MiniLM-L6-v2's vocabulary (shared/data/minilm-vocab.txt,
//! the model's own `vocab.txt`). Chunks are sized with this count so the model never cuts one: it keeps
//! 256 tokens, two of which are its `[CLS]` and `[SEP]` markers.

use std::collections::HashSet;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// The model's vocabulary, one token per line in id order.
const MINILM_VOCAB: &str = include_str!("../../data/minilm-vocab.txt");

/// Tokens the embedded model reads per text, its two special tokens included.
pub const MINILM_MAX_TOKENS: usize = 256;

/// A word longer than this (in chars) is one unknown token, as in BERT.
const MAX_WORD_CHARS: usize = 100;

/// FNV-1a: the vocabulary's keys are short and fixed, so a simple hash beats SipHash's
/// flood resistance, which nothing here needs (building and probing the sets was a tenth of
/// chunking's time with it).
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FnvSet = HashSet<&'static str, std::hash::BuildHasherDefault<Fnv>>;

/// A WordPiece vocabulary, split into word-initial pieces and `##` continuations.
#[derive(Debug)]
pub struct WordPiece {
    initial: FnvSet,
    continuation: FnvSet,
}

impl WordPiece {
    /// all-MiniLM-L6-v2's vocabulary (bert-base-uncased's), parsed once.
    pub fn minilm() -> &'static WordPiece {
        static VOCAB: OnceLock<WordPiece> = OnceLock::new();
        VOCAB.get_or_init(|| Self::from_vocab(MINILM_VOCAB))
    }

    pub fn from_vocab(vocab: &'static str) -> Self {
        let mut initial = FnvSet::default();
        let mut continuation = FnvSet::default();
        for token in vocab.lines() {
            match token.strip_prefix("##") {
                Some(rest) => continuation.insert(rest),
                None => initial.insert(token),
            };
        }
        Self {
            initial,
            continuation,
        }
    }

    /// How many word pieces `text` becomes, without the model's special tokens.
    pub fn count(&self, text: &str) -> usize {
        let mut total = 0;
        let mut word = String::new();
        for c in normalise(text) {
            if c.is_whitespace() {
                total += self.word_pieces(&word);
                word.clear();
            } else if is_punctuation(c) {
                total += self.word_pieces(&word);
                word.clear();
                // A punctuation mark is a word of its own: one piece, or one `[UNK]`.
                total += 1;
            } else {
                word.push(c);
            }
        }
        total + self.word_pieces(&word)
    }

    fn word_pieces(&self, word: &str) -> usize {
        if word.is_empty() {
            return 0;
        }
        if word.chars().count() > MAX_WORD_CHARS {
            return 1;
        }
        let mut pieces = 0;
        let mut start = 0;
        while start < word.len() {
            let vocab = if start == 0 {
                &self.initial
            } else {
                &self.continuation
            };
            let rest = &word[start..];
            let Some(end) = rest
                .char_indices()
                .map(|(i, c)| i + c.len_utf8())
                .rev()
                .find(|&end| vocab.contains(&rest[..end]))
            else {
                // No piece matches: the whole word is one `[UNK]`.
                return 1;
            };
            pieces += 1;
            start += end;
        }
        pieces
    }
}

/// BERT's normaliser with `lowercase` on: control characters dropped, whitespace to spaces, CJK
/// ideographs spaced out, accents stripped (NFD without combining marks) and lowercased.
///
/// ASCII text (most of it) skips the Unicode tables: none of its characters decompose, combine or
/// is CJK, and its categories are known.
fn normalise(text: &str) -> Box<dyn Iterator<Item = char> + '_> {
    if text.is_ascii() {
        return Box::new(
            text.bytes()
                .filter(|&b| !(b == 0 || is_control(char::from(b))))
                .map(|b| match b {
                    b'\t' | b'\n' | b'\r' => ' ',
                    b => char::from(b.to_ascii_lowercase()),
                }),
        );
    }
    Box::new(
        text.chars()
            .filter(|&c| !(c == '\0' || c == '\u{FFFD}' || is_control(c)))
            .flat_map(|c| {
                let c = if is_whitespace(c) { ' ' } else { c };
                if is_cjk(c) {
                    [Some(' '), Some(c), Some(' ')]
                } else {
                    [Some(c), None, None]
                }
            })
            .flatten()
            .nfd()
            .filter(|&c| c.is_ascii() || c.general_category() != GeneralCategory::NonspacingMark)
            .flat_map(char::to_lowercase),
    )
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
        || (!c.is_ascii() && c.general_category() == GeneralCategory::SpaceSeparator)
}

fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
    )
}

/// BERT splits every ASCII symbol off as punctuation, and anything Unicode calls punctuation.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    c.general_category_group() == GeneralCategoryGroup::Punctuation
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: usize) {
        assert_eq!(WordPiece::minilm().count(text), expected, "{text:?}");
    }

    // The expected counts are what the model's own tokenizer (Hugging Face tokenizers on its
    // tokenizer.json) produces; tests/tests/chunking.rs compares the two over SciFact as a whole.
    #[test]
    fn counts_follow_bert_uncased_wordpiece() {
        check("", 0);
        check("hello world", 2);
        check("Hello, World!", 4);
        check("embeddings", 4);
        check("café", 1);
        check("東京", 2);
        check("a\u{0}b", 1);
        check("Ünïcödé naïve résumé — “quotes” … 3.14%", 12);
        check("pneumonoultramicroscopicsilicovolcanoconiosis", 17);
        check(&"x".repeat(120), 1);
        check("🙂 emoji ☃", 5);
        check("ﬁnance ①", 4);
    }
}
