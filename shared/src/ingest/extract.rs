//! Documents to structured text: plain text, Markdown (pulldown-cmark, the CommonMark parser rustdoc
//! uses) and HTML (html5ever through scraper, a browser-grade parser, keeping the main content only).
//! The result is the extracted text and its blocks (headings, paragraphs, list items, code, table
//! rows) with their byte ranges in that text, which chunks and citations point into.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use scraper::{ElementRef, Html, Node};

use super::text::{clean, one_line};

/// What a block of text is; chunking keeps each kind together in its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    /// A heading of level 1 to 6: it names the section until the next heading of its level or above.
    Heading(u8),
    Paragraph,
    ListItem,
    /// A fenced or indented code block, kept whole where it fits.
    Code,
    /// A table's header row: repeated at the top of every chunk that holds rows of its table.
    TableHeader {
        table: u32,
    },
    /// One table row, never split from itself.
    TableRow {
        table: u32,
    },
}

/// One block of the extracted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// Byte range in [`Extracted::text`].
    pub start: usize,
    pub end: usize,
    /// The PDF page it is on (1-based), for PDFs.
    pub page: Option<u32>,
}

/// A document's text and its structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The blocks' texts, separated by blank lines.
    pub text: String,
    pub blocks: Vec<Block>,
    /// The title the document gives itself (HTML `<title>`, the first level-1 heading), if any.
    pub title: Option<String>,
}

impl Extracted {
    /// The text of `block`.
    pub fn block_text(&self, block: &Block) -> &str {
        &self.text[block.start..block.end]
    }

    /// Appends a block (after cleaning; empty text adds nothing).
    pub fn push(&mut self, kind: BlockKind, text: &str, page: Option<u32>) {
        let text = match kind {
            BlockKind::Code => clean_code(text),
            _ => one_line(text),
        };
        if text.is_empty() {
            return;
        }
        if let BlockKind::Heading(1) = kind {
            self.title.get_or_insert_with(|| text.clone());
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(&text);
        self.blocks.push(Block {
            kind,
            start,
            end: self.text.len(),
            page,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Code keeps its indentation: only NFC, line ends and control characters are normalised.
fn clean_code(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let text: String = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .nfc()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

/// Plain text: paragraphs are separated by blank lines; single line breaks are kept inside them.
pub fn plain(text: &str) -> Extracted {
    let mut out = Extracted::default();
    for paragraph in clean(text).split("\n\n") {
        out.push(BlockKind::Paragraph, paragraph, None);
    }
    out
}

/// Markdown, with its headings, lists, code blocks and tables (GitHub's syntax) kept as blocks.
pub fn markdown(text: &str) -> Extracted {
    let mut out = Extracted::default();
    let mut buffer = String::new();
    let mut kind = BlockKind::Paragraph;
    let mut tables = 0u32;
    let mut row: Vec<String> = Vec::new();
    let mut in_cell = false;
    let mut items = 0usize;
    let mut list_numbers: Vec<Option<u64>> = Vec::new();
    let flush = |out: &mut Extracted, buffer: &mut String, kind: &BlockKind| {
        out.push(kind.clone(), buffer, None);
        buffer.clear();
    };
    let text = text.replace("\r\n", "\n");
    for event in Parser::new_ext(
        &text,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    ) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut out, &mut buffer, &kind);
                kind = BlockKind::Heading(level as u8);
            }
            Event::End(TagEnd::Heading(_)) => {
                flush(&mut out, &mut buffer, &kind);
                kind = BlockKind::Paragraph;
            }
            Event::Start(Tag::Paragraph) if items == 0 => {
                flush(&mut out, &mut buffer, &kind);
                kind = BlockKind::Paragraph;
            }
            Event::End(TagEnd::Paragraph) if items == 0 => flush(&mut out, &mut buffer, &kind),
            Event::End(TagEnd::Paragraph) => buffer.push(' '),
            Event::Start(Tag::List(first)) => {
                flush(&mut out, &mut buffer, &kind);
                list_numbers.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                list_numbers.pop();
            }
            Event::Start(Tag::Item) => {
                flush(&mut out, &mut buffer, &kind);
                items += 1;
                kind = BlockKind::ListItem;
                let depth = list_numbers.len().saturating_sub(1);
                buffer.push_str(&"  ".repeat(depth));
                match list_numbers.last_mut() {
                    Some(Some(n)) => {
                        buffer.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => buffer.push_str("- "),
                }
            }
            Event::End(TagEnd::Item) => {
                flush(&mut out, &mut buffer, &kind);
                items -= 1;
                kind = if items > 0 {
                    BlockKind::ListItem
                } else {
                    BlockKind::Paragraph
                };
            }
            Event::Start(Tag::CodeBlock(fence)) => {
                flush(&mut out, &mut buffer, &kind);
                kind = BlockKind::Code;
                buffer.push_str("```");
                if let CodeBlockKind::Fenced(lang) = fence {
                    buffer.push_str(&lang);
                }
                buffer.push('\n');
            }
            Event::End(TagEnd::CodeBlock) => {
                if !buffer.ends_with('\n') {
                    buffer.push('\n');
                }
                buffer.push_str("```");
                flush(&mut out, &mut buffer, &kind);
                kind = if items > 0 {
                    BlockKind::ListItem
                } else {
                    BlockKind::Paragraph
                };
            }
            Event::Start(Tag::Table(_)) => {
                flush(&mut out, &mut buffer, &kind);
                tables += 1;
            }
            Event::Start(Tag::TableHead | Tag::TableRow) => row.clear(),
            Event::End(TagEnd::TableHead) => {
                out.push(
                    BlockKind::TableHeader { table: tables },
                    &table_row(&row),
                    None,
                );
            }
            Event::End(TagEnd::TableRow) => {
                out.push(
                    BlockKind::TableRow { table: tables },
                    &table_row(&row),
                    None,
                );
            }
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                row.push(String::new());
            }
            Event::End(TagEnd::TableCell) => in_cell = false,
            Event::Text(text) | Event::Code(text) | Event::InlineMath(text) => {
                if in_cell {
                    if let Some(cell) = row.last_mut() {
                        cell.push_str(&text);
                    }
                } else {
                    buffer.push_str(&text);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if in_cell {
                    if let Some(cell) = row.last_mut() {
                        cell.push(' ');
                    }
                } else if kind == BlockKind::Code {
                    buffer.push('\n');
                } else {
                    buffer.push(' ');
                }
            }
            _ => {}
        }
    }
    flush(&mut out, &mut buffer, &kind);
    out
}

fn table_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| one_line(c)).collect();
    format!("| {} |", cells.join(" | "))
}

/// Elements that are never a page's content: scripts, styles and the site's chrome.
const BOILERPLATE: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "button", "select", "svg", "iframe", "object", "canvas", "head", "menu", "dialog",
];

/// Roles that mark chrome rather than content.
const BOILERPLATE_ROLES: &[&str] = &[
    "navigation",
    "banner",
    "contentinfo",
    "complementary",
    "search",
    "menu",
    "menubar",
    "dialog",
];

/// HTML: the page's main content (`<main>`, else `<article>`, else `role=main`, else `<body>`),
/// without scripts, styles, navigation, headers, footers, asides, forms or hidden elements.
pub fn html(text: &str) -> Extracted {
    let document = Html::parse_document(text);
    let mut out = Extracted::default();
    let select = |css: &str| {
        scraper::Selector::parse(css)
            .ok()
            .and_then(|s| document.select(&s).next())
    };
    let page_title = select("title").map(|t| one_line(&t.text().collect::<String>()));
    let root = select("main")
        .or_else(|| select("article"))
        .or_else(|| select("[role=main]"))
        .or_else(|| select("body"))
        .unwrap_or_else(|| document.root_element());
    let mut walker = HtmlWalker {
        out: &mut out,
        buffer: String::new(),
        kind: BlockKind::Paragraph,
        tables: 0,
    };
    walker.walk(root);
    walker.flush();
    if let Some(title) = page_title.filter(|t| !t.is_empty()) {
        out.title = Some(title);
    }
    out
}

struct HtmlWalker<'a> {
    out: &'a mut Extracted,
    buffer: String,
    kind: BlockKind,
    tables: u32,
}

impl HtmlWalker<'_> {
    fn flush(&mut self) {
        self.out.push(self.kind.clone(), &self.buffer, None);
        self.buffer.clear();
        self.kind = BlockKind::Paragraph;
    }

    fn walk(&mut self, element: ElementRef<'_>) {
        for child in element.children() {
            match child.value() {
                Node::Text(text) => self.buffer.push_str(text),
                Node::Element(_) => {
                    if let Some(child) = ElementRef::wrap(child) {
                        self.element(child);
                    }
                }
                _ => {}
            }
        }
    }

    fn element(&mut self, element: ElementRef<'_>) {
        let value = element.value();
        let name = value.name();
        let hidden = value.attr("hidden").is_some()
            || value.attr("aria-hidden") == Some("true")
            || value
                .attr("role")
                .is_some_and(|r| BOILERPLATE_ROLES.contains(&r.trim()));
        if hidden || BOILERPLATE.contains(&name) {
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let level = name.as_bytes()[1] - b'0';
                self.kind = BlockKind::Heading(level);
                self.walk(element);
                self.flush();
            }
            "pre" => {
                self.flush();
                self.kind = BlockKind::Code;
                self.buffer = format!("```\n{}\n```", element.text().collect::<String>());
                self.flush();
            }
            "li" | "dt" | "dd" => {
                self.flush();
                self.kind = BlockKind::ListItem;
                self.buffer.push_str("- ");
                self.walk(element);
                self.flush();
            }
            "table" => {
                self.flush();
                self.table(element);
            }
            "br" => self.buffer.push(' '),
            "p" | "div" | "section" | "article" | "main" | "body" | "blockquote" | "ul" | "ol"
            | "dl" | "figure" | "figcaption" | "address" | "details" | "summary" | "hr"
            | "caption" => {
                let kind = self.kind.clone();
                self.flush();
                self.walk(element);
                self.flush();
                self.kind = kind;
            }
            _ => self.walk(element),
        }
    }

    /// A table's rows: the first row made of `<th>` cells (or the `<thead>`'s) is its header.
    fn table(&mut self, table: ElementRef<'_>) {
        self.tables += 1;
        let table_id = self.tables;
        let Ok(rows) = scraper::Selector::parse("tr") else {
            return;
        };
        let Ok(cells) = scraper::Selector::parse("th, td") else {
            return;
        };
        let mut header_seen = false;
        for row in table.select(&rows) {
            let texts: Vec<String> = row
                .select(&cells)
                .map(|cell| cell.text().collect::<String>())
                .collect();
            if texts.iter().all(|t| t.trim().is_empty()) {
                continue;
            }
            let in_head = row
                .parent()
                .and_then(ElementRef::wrap)
                .is_some_and(|p| p.value().name() == "thead");
            let all_th = row.select(&cells).all(|cell| cell.value().name() == "th");
            let kind = if !header_seen && (in_head || all_th) {
                header_seen = true;
                BlockKind::TableHeader { table: table_id }
            } else {
                header_seen = true;
                BlockKind::TableRow { table: table_id }
            };
            self.out.push(kind, &table_row(&texts), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocks of `extracted` as (kind, text) pairs.
    fn blocks(extracted: &Extracted) -> Vec<(BlockKind, &str)> {
        extracted
            .blocks
            .iter()
            .map(|b| (b.kind.clone(), extracted.block_text(b)))
            .collect()
    }

    #[test]
    fn plain_text_is_split_into_paragraphs() {
        let e = plain("First  line\nsecond line.\r\n\r\n\r\nNext paragraph.\n");
        assert_eq!(
            blocks(&e),
            vec![
                (BlockKind::Paragraph, "First line second line."),
                (BlockKind::Paragraph, "Next paragraph.")
            ]
        );
        assert_eq!(e.text, "First line second line.\n\nNext paragraph.");
        assert!(plain(" \n\t\n").is_empty());
    }

    #[test]
    fn markdown_keeps_headings_lists_code_and_tables() {
        let md = "# Guide\n\nIntro *text*.\n\n## Install\n\n- one\n- two\n  1. nested\n\n```sh\ncargo  build\n    indented\n```\n\n| Plan | Price |\n|---|---|\n| Free | 0 |\n| Pro | 10 |\n";
        let e = markdown(md);
        use BlockKind::*;
        assert_eq!(
            blocks(&e),
            vec![
                (Heading(1), "Guide"),
                (Paragraph, "Intro text."),
                (Heading(2), "Install"),
                (ListItem, "- one"),
                (ListItem, "- two"),
                (ListItem, "1. nested"),
                (Code, "```sh\ncargo  build\n    indented\n```"),
                (TableHeader { table: 1 }, "| Plan | Price |"),
                (TableRow { table: 1 }, "| Free | 0 |"),
                (TableRow { table: 1 }, "| Pro | 10 |"),
            ]
        );
        assert_eq!(e.title.as_deref(), Some("Guide"));
        for block in &e.blocks {
            assert_eq!(&e.text[block.start..block.end], e.block_text(block));
        }
    }

    #[test]
    fn html_keeps_the_main_content_only() {
        let page = r#"<!doctype html><html><head><title>Help: Billing</title><style>p{}</style></head>
            <body><header><nav><a href="/">Home</a></nav></header>
            <div class="cookie" role="dialog">We use cookies</div>
            <main><h1>Billing</h1><p>Invoices are sent <b>monthly</b>.<script>track()</script></p>
            <ul><li>Card</li><li>Bank transfer</li></ul>
            <pre>curl -X GET
  /invoices</pre>
            <table><thead><tr><th>Plan</th><th>Price</th></tr></thead>
            <tbody><tr><td>Free</td><td>0</td></tr></tbody></table>
            <div hidden>secret</div></main>
            <footer>© Example</footer></body></html>"#;
        let e = html(page);
        use BlockKind::*;
        assert_eq!(
            blocks(&e),
            vec![
                (Heading(1), "Billing"),
                (Paragraph, "Invoices are sent monthly."),
                (ListItem, "- Card"),
                (ListItem, "- Bank transfer"),
                (Code, "```\ncurl -X GET\n  /invoices\n```"),
                (TableHeader { table: 1 }, "| Plan | Price |"),
                (TableRow { table: 1 }, "| Free | 0 |"),
            ]
        );
        assert_eq!(e.title.as_deref(), Some("Help: Billing"));
        // Without <main>, the body minus its chrome.
        let e = html("<body><nav>Menu</nav><p>Only this</p><footer>f</footer></body>");
        assert_eq!(blocks(&e), vec![(Paragraph, "Only this")]);
    }
}
