//! Extracted text to chunks: the passages that are embedded, searched and cited.
//!
//! Chunks follow the document's structure. A heading starts a new chunk and names the ones under it;
//! blocks (paragraphs, list items, code, table rows) are packed whole while they fit; a block too large
//! for one chunk is split at sentence ends (code at line ends), and only a sentence too large for one
//! chunk at word boundaries. A table's rows never split and every chunk of a table starts with its
//! header row. Each chunk's size is counted in the embedding model's own tokens, its context (title and
//! heading path) included, so the model never cuts one.

use sha2::{Digest, Sha256};
use unicode_segmentation::UnicodeSegmentation;

use super::extract::{BlockKind, Extracted};
use super::wordpiece::{MINILM_MAX_TOKENS, WordPiece};

/// How documents are cut into chunks; a project setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkConfig {
    /// Most tokens in a chunk's embedded text (context included).
    pub max_tokens: usize,
    /// Tokens of the previous chunk's end repeated at the start of the next one in the same section.
    pub overlap_tokens: usize,
    /// Most chunks one document may make (more is refused, as a mistake or an attack).
    pub max_chunks: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 32,
            max_chunks: 20_000,
        }
    }
}

/// Why a document could not be chunked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("the document has no text")]
    Empty,
    #[error("the document makes more than {0} chunks")]
    TooManyChunks(usize),
    #[error("max_tokens must be 32 to {most} and overlap_tokens below half of it")]
    BadConfig { most: usize },
}

impl ChunkConfig {
    /// The largest chunk the embedded model reads whole: its window less its two special tokens.
    pub const MOST_TOKENS: usize = MINILM_MAX_TOKENS - 2;

    pub fn validate(&self) -> Result<(), ChunkError> {
        if !(32..=Self::MOST_TOKENS).contains(&self.max_tokens)
            || self.overlap_tokens * 2 >= self.max_tokens
            || self.max_chunks == 0
        {
            return Err(ChunkError::BadConfig {
                most: Self::MOST_TOKENS,
            });
        }
        Ok(())
    }
}

/// One passage of a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub ordinal: u32,
    /// The passage: a slice of the extracted text, after its table's header row when it holds rows.
    pub text: String,
    /// The headings the passage sits under, outermost first.
    pub heading_path: Vec<String>,
    /// Byte range of the passage in the extracted text.
    pub start: usize,
    pub end: usize,
    /// PDF page of its first block.
    pub page: Option<u32>,
    /// Model tokens of [`Chunk::embed_text`].
    pub tokens: usize,
    /// SHA-256 of `text`, hex.
    pub sha256: String,
    /// What is embedded before the text: the title and heading path (may be empty).
    pub context: String,
}

impl Chunk {
    /// What the embedding model reads: the context line, then the passage.
    pub fn embed_text(&self) -> String {
        if self.context.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.context, self.text)
        }
    }
}

/// A piece of a block that fits a chunk.
#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    table: Option<u32>,
    page: Option<u32>,
}

/// Cuts a document's extracted text into chunks. `title` (the document's) leads every chunk's context.
pub fn chunk(
    extracted: &Extracted,
    title: &str,
    config: &ChunkConfig,
) -> Result<Vec<Chunk>, ChunkError> {
    config.validate()?;
    let vocab = WordPiece::minilm();
    let mut chunker = Chunker {
        extracted,
        vocab,
        config,
        title: super::text::one_line(title),
        headings: Vec::new(),
        context: (String::new(), 0),
        headers: Vec::new(),
        current: Vec::new(),
        chunks: Vec::new(),
    };
    chunker.context = chunker.make_context();
    for block in &extracted.blocks {
        let text = extracted.block_text(block);
        match block.kind {
            BlockKind::Heading(level) => {
                chunker.flush(false);
                chunker.headings.retain(|(l, _)| *l < level);
                chunker.headings.push((level, text.to_string()));
                chunker.context = chunker.make_context();
            }
            BlockKind::TableHeader { table } => {
                chunker.headers.push((
                    table,
                    Unit {
                        start: block.start,
                        end: block.end,
                        tokens: vocab.count(text),
                        table: Some(table),
                        page: block.page,
                    },
                ));
            }
            ref kind => {
                let table = match kind {
                    BlockKind::TableRow { table } => Some(*table),
                    _ => None,
                };
                let budget = chunker.budget(table);
                let whole = Unit {
                    start: block.start,
                    end: block.end,
                    tokens: vocab.count(text),
                    table,
                    page: block.page,
                };
                if whole.tokens <= budget {
                    chunker.add(whole)?;
                } else {
                    let code = matches!(kind, BlockKind::Code);
                    for unit in split(text, block.start, budget, code, vocab) {
                        chunker.add(Unit {
                            table,
                            page: block.page,
                            ..unit
                        })?;
                    }
                }
            }
        }
    }
    chunker.flush(false);
    if chunker.chunks.is_empty() {
        return Err(ChunkError::Empty);
    }
    if chunker.chunks.len() > config.max_chunks {
        return Err(ChunkError::TooManyChunks(config.max_chunks));
    }
    Ok(chunker.chunks)
}

struct Chunker<'a> {
    extracted: &'a Extracted,
    vocab: &'static WordPiece,
    config: &'a ChunkConfig,
    title: String,
    headings: Vec<(u8, String)>,
    /// The current section's context line and its tokens.
    context: (String, usize),
    /// Header rows of the tables seen so far.
    headers: Vec<(u32, Unit)>,
    current: Vec<Unit>,
    chunks: Vec<Chunk>,
}

impl Chunker<'_> {
    /// The context line for the current section, kept to a quarter of a chunk (outer headings go
    /// first when it is longer).
    fn make_context(&self) -> (String, usize) {
        let mut parts: Vec<&str> = Vec::new();
        if !self.title.is_empty() {
            parts.push(&self.title);
        }
        for (_, heading) in &self.headings {
            if parts.last() != Some(&heading.as_str()) {
                parts.push(heading);
            }
        }
        loop {
            let line = parts.join(" > ");
            let tokens = self.vocab.count(&line);
            if tokens <= self.config.max_tokens / 4 || parts.is_empty() {
                return (line, tokens);
            }
            parts.remove(0);
        }
    }

    fn header(&self, table: u32) -> Option<&Unit> {
        self.headers
            .iter()
            .rev()
            .find(|(t, _)| *t == table)
            .map(|(_, unit)| unit)
    }

    /// Tokens left for a chunk's blocks once its context (and table header) are counted.
    fn budget(&self, table: Option<u32>) -> usize {
        let header = table.and_then(|t| self.header(t)).map_or(0, |h| h.tokens);
        self.config
            .max_tokens
            .saturating_sub(self.context.1 + header)
            .max(8)
    }

    fn used(&self) -> usize {
        self.current.iter().map(|u| u.tokens).sum()
    }

    fn add(&mut self, unit: Unit) -> Result<(), ChunkError> {
        let table_changed = self.current.last().is_some_and(|last| {
            last.table != unit.table && (last.table.is_some() || unit.table.is_some())
        });
        if !self.current.is_empty()
            && (table_changed || self.used() + unit.tokens > self.budget(unit.table))
        {
            // Overlap carries prose on, not table rows (each table chunk has its header instead).
            self.flush(unit.table.is_none() && !table_changed);
        }
        self.current.push(unit);
        if self.chunks.len() > self.config.max_chunks {
            return Err(ChunkError::TooManyChunks(self.config.max_chunks));
        }
        Ok(())
    }

    /// Emits the current chunk; with `overlap`, its last units (up to the overlap) start the next one.
    fn flush(&mut self, overlap: bool) {
        if self.current.is_empty() {
            return;
        }
        let units = std::mem::take(&mut self.current);
        let (context, context_tokens) = self.context.clone();
        let first = &units[0];
        let last = &units[units.len() - 1];
        let mut text = String::new();
        let mut tokens = context_tokens;
        if let Some(header) = first.table.and_then(|t| self.header(t)) {
            text.push_str(&self.extracted.text[header.start..header.end]);
            text.push_str("\n\n");
            tokens += header.tokens;
        }
        text.push_str(&self.extracted.text[first.start..last.end]);
        tokens += units.iter().map(|u| u.tokens).sum::<usize>();
        self.chunks.push(Chunk {
            ordinal: self.chunks.len() as u32,
            sha256: hex_sha256(&text),
            text,
            heading_path: self.headings.iter().map(|(_, h)| h.clone()).collect(),
            start: first.start,
            end: last.end,
            page: first.page,
            tokens,
            context,
        });
        if overlap && self.config.overlap_tokens > 0 {
            let mut carried = 0;
            let mut keep = units.len();
            while keep > 1 && carried + units[keep - 1].tokens <= self.config.overlap_tokens {
                keep -= 1;
                carried += units[keep].tokens;
            }
            self.current = units[keep..].to_vec();
        }
    }
}

/// Splits an oversized block into units of at most `budget` tokens: at sentence ends (line ends for
/// code), and a sentence that alone is too large at word boundaries.
fn split(text: &str, offset: usize, budget: usize, code: bool, vocab: &WordPiece) -> Vec<Unit> {
    let pieces: Vec<(usize, &str)> = if code {
        text.split_inclusive('\n')
            .scan(0, |at, line| {
                let start = *at;
                *at += line.len();
                Some((start, line))
            })
            .collect()
    } else {
        text.split_sentence_bound_indices().collect()
    };
    let mut units = Vec::new();
    let mut current: Option<Unit> = None;
    let push = |unit: Unit, units: &mut Vec<Unit>, current: &mut Option<Unit>| match current {
        Some(open) if open.tokens + unit.tokens <= budget => {
            open.end = unit.end;
            open.tokens += unit.tokens;
        }
        _ => {
            if let Some(done) = current.take() {
                units.push(done);
            }
            *current = Some(unit);
        }
    };
    for (at, piece) in pieces {
        let tokens = vocab.count(piece);
        if tokens <= budget {
            // Sentences (and code lines) stay units of their own, for the packer and its overlap.
            if let Some(done) = current.take() {
                units.push(done);
            }
            units.push(unit(offset + at, piece, tokens));
            continue;
        }
        for (word_at, word) in piece.split_word_bound_indices() {
            let tokens = vocab.count(word);
            push(
                unit(offset + at + word_at, word, tokens),
                &mut units,
                &mut current,
            );
        }
        if let Some(done) = current.take() {
            units.push(done);
        }
    }
    if let Some(done) = current {
        units.push(done);
    }
    // Units start and end on text, not on the spaces between sentences.
    for unit in &mut units {
        let slice = &text[unit.start - offset..unit.end - offset];
        unit.start += slice.len() - slice.trim_start().len();
        unit.end -= slice.len() - slice.trim_end().len();
    }
    units.retain(|u| u.end > u.start);
    units
}

fn unit(start: usize, piece: &str, tokens: usize) -> Unit {
    Unit {
        start,
        end: start + piece.len(),
        tokens,
        table: None,
        page: None,
    }
}

/// SHA-256 of `text` as lowercase hex.
pub fn hex_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::super::extract::{markdown, plain};
    use super::*;

    fn config(max_tokens: usize, overlap_tokens: usize) -> ChunkConfig {
        ChunkConfig {
            max_tokens,
            overlap_tokens,
            max_chunks: 1000,
        }
    }

    /// Every chunk fits, points at its text, and hashes it.
    fn check_invariants(extracted: &Extracted, chunks: &[Chunk], config: &ChunkConfig) {
        let vocab = WordPiece::minilm();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.ordinal as usize, i);
            assert!(chunk.tokens <= config.max_tokens, "{chunk:?}");
            assert_eq!(vocab.count(&chunk.embed_text()), chunk.tokens, "{chunk:?}");
            assert!(
                chunk
                    .text
                    .ends_with(&extracted.text[chunk.start..chunk.end])
            );
            assert_eq!(chunk.sha256, hex_sha256(&chunk.text));
        }
    }

    #[test]
    fn headings_start_chunks_and_name_them() {
        let e = markdown(
            "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### Linux\n\nApt.\n\n## Use\n\nCall it.",
        );
        let c = chunk(&e, "Guide", &config(64, 0)).unwrap();
        let got: Vec<(&str, Vec<&str>, &str)> = c
            .iter()
            .map(|c| {
                (
                    c.text.as_str(),
                    c.heading_path.iter().map(String::as_str).collect(),
                    c.context.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Intro.", vec!["Guide"], "Guide"),
                ("Run it.", vec!["Guide", "Install"], "Guide > Install"),
                (
                    "Apt.",
                    vec!["Guide", "Install", "Linux"],
                    "Guide > Install > Linux"
                ),
                ("Call it.", vec!["Guide", "Use"], "Guide > Use"),
            ]
        );
        check_invariants(&e, &c, &config(64, 0));
    }

    #[test]
    fn long_text_splits_at_sentences_within_budget_with_overlap() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
        let e = plain(&sentence.repeat(40));
        let cfg = config(60, 16);
        let c = chunk(&e, "", &cfg).unwrap();
        assert!(c.len() > 5, "{}", c.len());
        check_invariants(&e, &c, &cfg);
        for chunk in &c {
            assert!(chunk.text.starts_with("The quick") && chunk.text.ends_with("bank."));
        }
        // Overlap: each chunk after the first starts before the previous one ends.
        for pair in c.windows(2) {
            assert!(pair[1].start < pair[0].end, "{:?} {:?}", pair[0], pair[1]);
        }
        let no_overlap = chunk(&e, "", &config(60, 0)).unwrap();
        for pair in no_overlap.windows(2) {
            assert!(pair[1].start > pair[0].end);
        }
    }

    #[test]
    fn a_sentence_longer_than_a_chunk_splits_at_words() {
        let e = plain(&"word ".repeat(500));
        let cfg = config(40, 0);
        let c = chunk(&e, "", &cfg).unwrap();
        check_invariants(&e, &c, &cfg);
        assert!(c.len() >= 12);
    }

    #[test]
    fn table_rows_stay_whole_and_every_part_has_the_header() {
        let mut md = String::from("# Prices\n\n| Plan | Monthly price | Notes |\n|---|---|---|\n");
        for i in 0..40 {
            md.push_str(&format!(
                "| Plan {i} | {i}0 euros | includes {i} seats and support |\n"
            ));
        }
        md.push_str("\nAfter the table.\n");
        let e = markdown(&md);
        let cfg = config(80, 16);
        let c = chunk(&e, "Prices", &cfg).unwrap();
        check_invariants(&e, &c, &cfg);
        let tables: Vec<&Chunk> = c.iter().filter(|c| c.text.contains("| Plan ")).collect();
        assert!(tables.len() > 2);
        for chunk in &tables {
            assert!(
                chunk.text.starts_with("| Plan | Monthly price | Notes |"),
                "{}",
                chunk.text
            );
            for line in chunk.text.lines().filter(|l| !l.is_empty()) {
                assert!(
                    line.starts_with("| ") && line.ends_with(" |"),
                    "a row was cut: {line}"
                );
            }
        }
        assert_eq!(c.last().unwrap().text, "After the table.");
    }

    #[test]
    fn code_blocks_stay_whole_where_they_fit() {
        let e = markdown(
            "Text before.\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\nText after.",
        );
        let cfg = config(200, 0);
        let c = chunk(&e, "", &cfg).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c[0].text.contains("fn main() {\n    println!(\"hi\");\n}"));
        let big = format!("```\n{}```", "let x = compute(a, b, c);\n".repeat(100));
        let e = markdown(&big);
        let c = chunk(&e, "", &config(64, 0)).unwrap();
        check_invariants(&e, &c, &config(64, 0));
        for chunk in &c {
            assert!(
                chunk
                    .text
                    .lines()
                    .all(|l| l.is_empty() || l.starts_with("let x") || l.starts_with("```")),
                "{}",
                chunk.text
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            chunk(&plain(""), "", &ChunkConfig::default()),
            Err(ChunkError::Empty)
        );
        let e = plain(&"Many words here. ".repeat(400));
        let cfg = ChunkConfig {
            max_chunks: 3,
            ..config(40, 0)
        };
        assert_eq!(chunk(&e, "", &cfg), Err(ChunkError::TooManyChunks(3)));
        assert!(config(300, 0).validate().is_err());
        assert!(config(64, 32).validate().is_err());
        assert!(ChunkConfig::default().validate().is_ok());
    }
}
