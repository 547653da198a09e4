//! Where a hit's text holds the query's terms, analysed as keyword search analyses them (lowercased,
//! stemmed words), so a highlight marks exactly what matched: "refunds" lights up "refunded".

use std::collections::HashSet;

use unicode_segmentation::UnicodeSegmentation;

use crate::ingest::sparse;

/// A highlighted span: byte offsets into the hit's text, end exclusive.
pub type Span = (usize, usize);

/// The query's terms, to highlight many hits with.
pub fn query_terms(query: &str) -> HashSet<String> {
    sparse::terms(query).into_iter().collect()
}

/// The spans of `text` whose words are query terms; adjacent matched words (only spaces between)
/// join into one span.
pub fn spans(text: &str, terms: &HashSet<String>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (start, word) in text.unicode_word_indices() {
        let matched = sparse::terms(word).iter().any(|t| terms.contains(t));
        if !matched {
            continue;
        }
        let end = start + word.len();
        match out.last_mut() {
            Some(last) if text[last.1..start].chars().all(|c| c == ' ') => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_mark_stemmed_matches_and_join_neighbours() {
        let text = "Refunds are refunded to the card; Card payments take days.";
        let spans = spans(text, &query_terms("refund card"));
        let marked: Vec<&str> = spans.iter().map(|(s, e)| &text[*s..*e]).collect();
        assert_eq!(marked, ["Refunds", "refunded", "card", "Card"]);
        let joined = super::spans("reset the password now", &query_terms("reset password the"));
        assert_eq!(joined, [(0, 18)]);
    }

    #[test]
    fn offsets_are_bytes_into_unicode_text() {
        let text = "Café prices: café";
        let spans = spans(text, &query_terms("CAFÉ"));
        assert_eq!(spans, [(0, 5), (14, 19)]);
        assert_eq!(&text[14..19], "café");
    }
}
