//! Full-text matching as a Qdrant text index configures it: the tokenizer, lower-casing, token
//! lengths, stop words (NLTK's lists, from the `stop-words` crate, which are the lists Qdrant's
//! languages name) and a Snowball stemmer (`rust-stemmers`). A field without a text index is read
//! with the defaults: words, lower-cased.

use std::collections::HashSet;

use serde_json::Value;

use crate::error::VecError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokenizer {
    /// Runs of letters and digits.
    Word,
    /// Runs of anything but whitespace.
    Whitespace,
    /// Words, each indexed with its prefixes: a query word matches a word it begins.
    Prefix,
    /// Words as Unicode's word boundaries (UAX #29) find them, for scripts without spaces.
    Multilingual,
}

/// How a text index turns text into tokens.
pub struct TextOptions {
    tokenizer: Tokenizer,
    lowercase: bool,
    min_len: Option<usize>,
    max_len: Option<usize>,
    stopwords: HashSet<String>,
    stemmer: Option<rust_stemmers::Stemmer>,
}

impl std::fmt::Debug for TextOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextOptions")
            .field("tokenizer", &self.tokenizer)
            .field("lowercase", &self.lowercase)
            .field("stopwords", &self.stopwords.len())
            .field("stemmer", &self.stemmer.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            tokenizer: Tokenizer::Word,
            lowercase: true,
            min_len: None,
            max_len: None,
            stopwords: HashSet::new(),
            stemmer: None,
        }
    }
}

fn bad(message: impl std::fmt::Display) -> VecError {
    VecError::bad_request(format!("Format error in JSON body: {message}"))
}

/// Qdrant's stop-word languages (by name, or by ISO 639-1 code) and the code NLTK's list is under.
fn language_code(name: &str) -> Option<&'static str> {
    const LANGUAGES: [(&str, &str); 30] = [
        ("arabic", "ar"),
        ("azerbaijani", "az"),
        ("basque", "eu"),
        ("bengali", "bn"),
        ("catalan", "ca"),
        ("chinese", "zh"),
        ("danish", "da"),
        ("dutch", "nl"),
        ("english", "en"),
        ("finnish", "fi"),
        ("french", "fr"),
        ("german", "de"),
        ("greek", "el"),
        ("hebrew", "he"),
        ("hinglish", "hinglish"),
        ("hungarian", "hu"),
        ("indonesian", "id"),
        ("italian", "it"),
        ("kazakh", "kk"),
        ("nepali", "ne"),
        ("norwegian", "no"),
        ("portuguese", "pt"),
        ("romanian", "ro"),
        ("russian", "ru"),
        ("slovene", "sl"),
        ("spanish", "es"),
        ("swedish", "sv"),
        ("tajik", "tg"),
        ("turkish", "tr"),
        ("albanian", "sq"),
    ];
    let name = name.to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(n, code)| *n == name || *code == name)
        .map(|(_, code)| *code)
}

fn stemmer_language(name: &str) -> Option<rust_stemmers::Algorithm> {
    use rust_stemmers::Algorithm::*;
    Some(match name.to_ascii_lowercase().as_str() {
        "arabic" | "ar" => Arabic,
        "danish" | "da" => Danish,
        "dutch" | "nl" => Dutch,
        "english" | "en" => English,
        "finnish" | "fi" => Finnish,
        "french" | "fr" => French,
        "german" | "de" => German,
        "greek" | "el" => Greek,
        "hungarian" | "hu" => Hungarian,
        "italian" | "it" => Italian,
        "norwegian" | "no" => Norwegian,
        "portuguese" | "pt" => Portuguese,
        "romanian" | "ro" => Romanian,
        "russian" | "ru" => Russian,
        "spanish" | "es" => Spanish,
        "swedish" | "sv" => Swedish,
        "tamil" | "ta" => Tamil,
        "turkish" | "tr" => Turkish,
        _ => return None,
    })
}

fn usize_option(params: &Value, name: &str) -> Result<Option<usize>, VecError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
    }
}

impl TextOptions {
    /// The options of a text index's `field_schema` object (Qdrant's `TextIndexParams`).
    pub fn parse(params: &Value) -> Result<Self, VecError> {
        let mut options = Self::default();
        if !params.is_object() {
            return Ok(options);
        }
        options.tokenizer = match params.get("tokenizer") {
            None | Some(Value::Null) => Tokenizer::Word,
            Some(t) => match t.as_str() {
                Some("word") => Tokenizer::Word,
                Some("whitespace") => Tokenizer::Whitespace,
                Some("prefix") => Tokenizer::Prefix,
                Some("multilingual") => Tokenizer::Multilingual,
                _ => {
                    return Err(bad(format!(
                        "unknown tokenizer {t}: expected word, whitespace, prefix or multilingual"
                    )));
                }
            },
        };
        options.lowercase = match params.get("lowercase") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("lowercase must be a boolean")),
        };
        options.min_len = usize_option(params, "min_token_len")?;
        options.max_len = usize_option(params, "max_token_len")?;
        if let Some(folding) = params.get("ascii_folding").filter(|v| !v.is_null())
            && folding != &Value::Bool(false)
        {
            return Err(bad("ascii_folding is not supported by this store"));
        }
        let mut languages = Vec::new();
        let mut custom = Vec::new();
        match params.get("stopwords") {
            None | Some(Value::Null) => {}
            Some(Value::String(language)) => languages.push(language.clone()),
            Some(Value::Object(set)) => {
                for (name, list) in [("languages", &mut languages), ("custom", &mut custom)] {
                    match set.get(name) {
                        None | Some(Value::Null) => {}
                        Some(Value::Array(items)) => {
                            for item in items {
                                let word = item.as_str().ok_or_else(|| {
                                    bad(format!("stopwords.{name} must be a list of strings"))
                                })?;
                                list.push(word.to_string());
                            }
                        }
                        Some(_) => return Err(bad(format!("stopwords.{name} must be a list"))),
                    }
                }
            }
            Some(_) => return Err(bad("stopwords must be a language or {languages, custom}")),
        }
        for language in &languages {
            let code = language_code(language)
                .ok_or_else(|| bad(format!("unknown stopwords language `{language}`")))?;
            let words = stop_words::lookup(code)
                .ok_or_else(|| bad(format!("no stop words for `{language}`")))?;
            custom.extend(words.iter().map(|w| w.to_string()));
        }
        options.stopwords = custom
            .into_iter()
            .map(|w| {
                if options.lowercase {
                    w.to_lowercase()
                } else {
                    w
                }
            })
            .collect();
        options.stemmer = match params.get("stemmer") {
            None | Some(Value::Null) => None,
            Some(stemmer) => {
                if stemmer["type"] != "snowball" {
                    return Err(bad("stemmer.type must be \"snowball\""));
                }
                let language = stemmer["language"].as_str().unwrap_or_default();
                let algorithm = stemmer_language(language)
                    .ok_or_else(|| bad(format!("no Snowball stemmer for language `{language}`")))?;
                Some(rust_stemmers::Stemmer::create(algorithm))
            }
        };
        Ok(options)
    }

    /// The tokens of `text`, in order (repeats kept), as both the points' text and the query's are
    /// read; a prefix index's prefixes are not listed: [`TextOptions::has`] looks for them.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let raw: Box<dyn Iterator<Item = &str>> = match self.tokenizer {
            Tokenizer::Word | Tokenizer::Prefix => Box::new(
                text.split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty()),
            ),
            Tokenizer::Whitespace => Box::new(text.split_whitespace()),
            Tokenizer::Multilingual => Box::new(
                unicode_segmentation::UnicodeSegmentation::unicode_words(text)
                    .filter(|w| !w.is_empty()),
            ),
        };
        raw.map(|w| {
            if self.lowercase {
                w.to_lowercase()
            } else {
                w.to_string()
            }
        })
        .filter(|w| !self.stopwords.contains(w))
        .filter(|w| {
            // A prefix index keeps every word, indexed by its prefixes of the allowed lengths.
            self.tokenizer == Tokenizer::Prefix || self.length_allowed(w)
        })
        .map(|w| match &self.stemmer {
            Some(stemmer) => stemmer.stem(&w).into_owned(),
            None => w,
        })
        .collect()
    }

    fn length_allowed(&self, token: &str) -> bool {
        let length = token.chars().count();
        self.min_len.is_none_or(|min| length >= min) && self.max_len.is_none_or(|max| length <= max)
    }

    /// Whether a text's `tokens` hold the query token `wanted`: the same token, or for a prefix
    /// index one it begins (within the index's prefix lengths).
    pub fn has(&self, tokens: &[String], wanted: &str) -> bool {
        if self.tokenizer == Tokenizer::Prefix {
            self.length_allowed(wanted) && tokens.iter().any(|t| t.starts_with(wanted))
        } else {
            tokens.iter().any(|t| t == wanted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_words_tokenizers_and_case_follow_the_index_options() {
        let english = TextOptions::parse(&json!({"type": "text", "stopwords": "english"})).unwrap();
        assert_eq!(english.tokens("Robot of the Star"), ["robot", "star"]);
        let custom = TextOptions::parse(&json!({
            "type": "text", "lowercase": false,
            "stopwords": {"custom": ["the", "The", "LAZY"]},
        }))
        .unwrap();
        assert_eq!(custom.tokens("The lazy LAZY dog"), ["lazy", "dog"]);
        let prefix = TextOptions::parse(&json!({"type": "text", "tokenizer": "prefix"})).unwrap();
        let tokens = prefix.tokens("Little Lost Robot");
        assert!(prefix.has(&tokens, &prefix.tokens("ROBO")[0]));
        assert!(!prefix.has(&tokens, "obot"));
        let whitespace =
            TextOptions::parse(&json!({"type": "text", "tokenizer": "whitespace"})).unwrap();
        assert_eq!(whitespace.tokens("Half-Breed x"), ["half-breed", "x"]);
        let stemmed = TextOptions::parse(&json!({
            "type": "text", "stemmer": {"type": "snowball", "language": "english"},
        }))
        .unwrap();
        assert_eq!(stemmed.tokens("running dogs"), ["run", "dog"]);
        let short = TextOptions::parse(&json!({"type": "text", "min_token_len": 3})).unwrap();
        assert_eq!(short.tokens("a bb ccc"), ["ccc"]);
        for bad in [
            json!({"type": "text", "tokenizer": "letters"}),
            json!({"type": "text", "stopwords": "klingon"}),
            json!({"type": "text", "stopwords": {"custom": [1]}}),
            json!({"type": "text", "lowercase": "yes"}),
            json!({"type": "text", "stemmer": {"type": "snowball", "language": "klingon"}}),
        ] {
            assert!(TextOptions::parse(&bad).is_err(), "{bad}");
        }
    }
}
