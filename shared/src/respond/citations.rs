//! Which passages an answer used. The passages it cites by number (`[2]`, `[1, 3]`, `[1][2]`) when
//! it cites any; otherwise (small models seldom cite) each answer sentence is attributed to the
//! passage whose words it shares most, when it shares enough. Either way a citation only ever names
//! a passage that was in the prompt.

use std::collections::HashSet;

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use super::prompt::Passage;
use crate::ingest::sparse;

/// How the citations were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The answer named them.
    Marker,
    /// Sentences matched to passages by shared words.
    Attribution,
    /// The answer is the passage (a stored Q&A answer, or an extractive answer).
    Verbatim,
}

/// A citation as the API shows it: enough for a UI to open the exact passage.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Citation {
    pub number: usize,
    pub chunk_id: String,
    pub document: String,
    pub title: String,
    pub source_uri: Option<String>,
    pub heading_path: Vec<String>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub page: Option<u64>,
    pub sha256: String,
    pub snippet: String,
}

/// Characters of a passage a citation quotes.
pub const SNIPPET_CHARS: usize = 280;

impl Citation {
    pub fn of(passage: &Passage) -> Self {
        let text = passage.text.trim();
        let mut snippet: String = text.chars().take(SNIPPET_CHARS).collect();
        if snippet.len() < text.len() {
            snippet.push('…');
        }
        Self {
            number: passage.number,
            chunk_id: passage.chunk_id.clone(),
            document: passage.document.clone(),
            title: passage.title.clone(),
            source_uri: passage.source_uri.clone(),
            heading_path: passage.heading_path.clone(),
            start: passage.start,
            end: passage.end,
            page: passage.page,
            sha256: passage.sha256.clone(),
            snippet,
        }
    }
}

/// The passage numbers an answer cites, in order of first mention, limited to `1..=passages`.
pub fn markers(answer: &str, passages: usize) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let inside = &rest[..close];
        if inside.len() <= 32
            && inside
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            for number in inside
                .split(',')
                .filter_map(|n| n.trim().parse::<usize>().ok())
            {
                if (1..=passages).contains(&number) && !found.contains(&number) {
                    found.push(number);
                }
            }
        }
        rest = &rest[close..];
    }
    found
}

/// Words too common to show that a sentence came from a passage.
const COMMON: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "doe", "for",
    "from", "has", "have", "in", "is", "it", "its", "may", "not", "of", "on", "or", "that", "the",
    "their", "there", "these", "this", "to", "was", "were", "which", "with", "you", "your", "will",
    "would",
];

fn content_terms(text: &str) -> HashSet<String> {
    sparse::terms(text)
        .into_iter()
        .filter(|t| !COMMON.contains(&t.as_str()))
        .collect()
}

/// Least content words a sentence needs for attribution to say anything.
const ATTRIBUTION_MIN_TERMS: usize = 3;
/// Least share of a sentence's content words that a passage must hold to be credited with it.
const ATTRIBUTION_MIN_SHARE: f32 = 0.5;

/// Attributes each sentence of `answer` to the passage holding most of its content words, when that
/// passage holds at least half of them. Passage numbers in order of first use.
pub fn attribute(answer: &str, passages: &[Passage]) -> Vec<usize> {
    let passage_terms: Vec<HashSet<String>> =
        passages.iter().map(|p| content_terms(&p.text)).collect();
    let mut found = Vec::new();
    for sentence in answer.unicode_sentences() {
        let terms = content_terms(sentence);
        if terms.len() < ATTRIBUTION_MIN_TERMS {
            continue;
        }
        let best = passage_terms
            .iter()
            .enumerate()
            .map(|(i, p)| (i, terms.intersection(p).count()))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some((i, shared)) = best
            && shared as f32 >= ATTRIBUTION_MIN_SHARE * terms.len() as f32
        {
            let number = passages[i].number;
            if !found.contains(&number) {
                found.push(number);
            }
        }
    }
    found
}

/// The citations of an answer grounded in `passages` (the prompt's): by marker when there are any,
/// else by attribution.
pub fn cite(answer: &str, passages: &[Passage]) -> (Vec<Citation>, Method) {
    let by_number = |numbers: Vec<usize>| -> Vec<Citation> {
        numbers
            .into_iter()
            .filter_map(|n| passages.iter().find(|p| p.number == n))
            .map(Citation::of)
            .collect()
    };
    let named = markers(answer, passages.len());
    if !named.is_empty() {
        return (by_number(named), Method::Marker);
    }
    (by_number(attribute(answer, passages)), Method::Attribution)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(number: usize, text: &str) -> Passage {
        Passage {
            number,
            chunk_id: format!("c{number}"),
            document: format!("d{number}"),
            title: format!("T{number}"),
            source_uri: None,
            heading_path: Vec::new(),
            start: None,
            end: None,
            page: None,
            sha256: String::new(),
            text: text.into(),
            similarity: None,
            answer: None,
        }
    }

    #[test]
    fn marker_cases() {
        let check = |answer: &str, n: usize, expected: &[usize]| {
            assert_eq!(markers(answer, n), expected, "{answer}");
        };
        check("Yes [2]. Also [1].", 3, &[2, 1]);
        check("Both [1, 3] and [3][2].", 3, &[1, 3, 2]);
        // A number beyond the prompt's passages is never a citation.
        check("See [7] and [0].", 3, &[]);
        check("No markers here, just [brackets].", 3, &[]);
        check("Unclosed [2", 3, &[]);
        check("[1]", 0, &[]);
    }

    #[test]
    fn attribution_credits_the_passage_a_sentence_comes_from() {
        let passages = [
            passage(
                1,
                "Vitamin D supplements did not reduce fractures in older adults.",
            ),
            passage(
                2,
                "Aspirin lowers the risk of heart attacks in middle-aged men.",
            ),
        ];
        let answer = "Aspirin reduces heart attack risk in middle-aged men. \
                      Vitamin D supplementation did not lower fracture rates. Thanks!";
        assert_eq!(attribute(answer, &passages), vec![2, 1]);
        // A sentence that shares too little is credited to no one.
        assert!(attribute("The weather in Paris is mild in spring.", &passages).is_empty());
    }

    #[test]
    fn cite_prefers_markers_and_never_names_a_missing_passage() {
        let passages = [
            passage(1, "alpha beta gamma"),
            passage(2, "delta epsilon zeta"),
        ];
        let (cited, method) = cite("It is delta [2] and [5].", &passages);
        assert_eq!(method, Method::Marker);
        assert_eq!(cited.len(), 1);
        assert_eq!(cited[0].chunk_id, "c2");
        let (cited, method) = cite("delta epsilon zeta indeed", &passages);
        assert_eq!(method, Method::Attribution);
        assert_eq!(cited[0].number, 2);
    }

    #[test]
    fn snippets_are_cut_on_a_character_boundary() {
        let text = "é".repeat(400);
        let citation = Citation::of(&passage(1, &text));
        assert_eq!(citation.snippet.chars().count(), SNIPPET_CHARS + 1);
        assert!(citation.snippet.ends_with('…'));
    }
}
