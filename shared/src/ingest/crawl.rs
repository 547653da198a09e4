//! What a crawl decides without fetching anything: which URLs belong to a source, the links and
//! canonical URL of a page, the URLs a sitemap lists, what robots.txt allows, how often a source
//! syncs.
//!
//! Libraries for the formats: `url` (the WHATWG URL standard, as browsers resolve links), `scraper`
//! (html5ever, the HTML parser ingest already extracts text with), `texting_robots` (a robots.txt
//! parser tested against Google's own robots.txt test cases), `roxmltree` (a small conforming XML
//! parser, for sitemaps) and `globset` (path patterns).

use globset::{Glob, GlobSet, GlobSetBuilder};
use scraper::{Html, Selector};
use url::Url;

/// The user agent edgerag's crawler names itself by (robots.txt rules for it apply).
pub const USER_AGENT: &str = "edgerag";
/// The full `user-agent` header.
pub const USER_AGENT_HEADER: &str = "edgerag/0.1 (+https://example.invalid/edgerag; crawler)";
/// Most URLs read from one sitemap (the sitemap protocol's own limit).
pub const MAX_SITEMAP_URLS: usize = 50_000;

/// A URL in the form pages are told apart by: no fragment, the host lowercased and default ports
/// dropped (both done by parsing), an empty path as `/`.
pub fn normalize(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_fragment(None);
    if url.path().is_empty() {
        url.set_path("/");
    }
    url
}

/// Which URLs a website source may visit.
#[derive(Debug, Clone)]
pub struct Scope {
    host: String,
    /// The start URL's explicit port, which links must keep (a site on :8080 is not the one on :80).
    port: Option<u16>,
    subdomains: bool,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern `{pattern}` must start with `/`"));
        }
        set.add(Glob::new(pattern).map_err(|e| format!("path pattern `{pattern}`: {e}"))?);
    }
    set.build().map(Some).map_err(|e| e.to_string())
}

impl Scope {
    /// The scope of a crawl from `start`: its host (and its subdomains when asked), paths matching
    /// an `include` pattern when any is given and no `exclude` pattern (globs: `/docs/**`).
    pub fn new(
        start: &Url,
        subdomains: bool,
        include: &[String],
        exclude: &[String],
    ) -> Result<Self, String> {
        Ok(Self {
            host: start.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: start.port(),
            subdomains,
            include: globs(include)?,
            exclude: globs(exclude)?,
        })
    }

    pub fn contains(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let bare = self.host.trim_start_matches("www.");
        let host_ok = host == self.host
            || (self.subdomains && (host == bare || host.ends_with(&format!(".{bare}"))));
        let port_ok = self
            .port
            .is_none_or(|port| url.port_or_known_default() == Some(port));
        let path = url.path();
        host_ok
            && port_ok
            && matches!(url.scheme(), "http" | "https")
            && self.include.as_ref().is_none_or(|set| set.is_match(path))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }
}

/// The files of a repository a source takes: path globs (`docs/**/*.md`), matched against the
/// path from the repository's root.
#[derive(Debug, Clone)]
pub struct Files(GlobSet);

/// What a repository source takes when it names no globs: the formats ingest reads.
pub const DEFAULT_FILE_GLOBS: &[&str] = &[
    "**/*.md",
    "**/*.markdown",
    "**/*.mdx",
    "**/*.txt",
    "**/*.html",
    "**/*.htm",
    "**/*.pdf",
];

impl Files {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("path glob `{pattern}`: {e}"))?;
            set.add(glob);
        }
        set.build().map(Self).map_err(|e| e.to_string())
    }

    pub fn contains(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// What a page says about crawling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLinks {
    /// Absolute, normalised links, in document order, without repeats.
    pub links: Vec<Url>,
    /// `<link rel="canonical">`, resolved.
    pub canonical: Option<Url>,
    /// `<meta name="robots" content="noindex">`: not to be indexed.
    pub noindex: bool,
    /// `<meta name="robots" content="nofollow">`: its links are not followed.
    pub nofollow: bool,
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).expect("a valid selector")
}

/// The links of an HTML page at `base` (its `<base href>` respected); `rel="nofollow"` links and
/// non-http(s) ones are left out.
pub fn links(html: &str, base: &Url) -> PageLinks {
    let document = Html::parse_document(html);
    let base = document
        .select(&selector("base[href]"))
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|href| base.join(href).ok())
        .unwrap_or_else(|| base.clone());
    let mut page = PageLinks::default();
    for meta in document.select(&selector("meta[name][content]")) {
        let name = meta.value().attr("name").unwrap_or_default();
        if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(USER_AGENT) {
            let content = meta
                .value()
                .attr("content")
                .unwrap_or_default()
                .to_ascii_lowercase();
            for directive in content.split(',').map(str::trim) {
                match directive {
                    "noindex" | "none" => page.noindex = true,
                    _ => {}
                }
                if matches!(directive, "nofollow" | "none") {
                    page.nofollow = true;
                }
            }
        }
    }
    page.canonical = document
        .select(&selector("link[rel][href]"))
        .find(|l| {
            l.value()
                .attr("rel")
                .unwrap_or_default()
                .split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("canonical"))
        })
        .and_then(|l| base.join(l.value().attr("href")?).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(|u| normalize(&u));
    let mut seen = std::collections::HashSet::new();
    for anchor in document.select(&selector("a[href]")) {
        let rel = anchor.value().attr("rel").unwrap_or_default();
        if rel
            .split_ascii_whitespace()
            .any(|r| r.eq_ignore_ascii_case("nofollow"))
        {
            continue;
        }
        let Some(href) = anchor.value().attr("href") else {
            continue;
        };
        let Ok(url) = base.join(href.trim()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        let url = normalize(&url);
        if seen.insert(url.as_str().to_string()) {
            page.links.push(url);
        }
    }
    page
}

/// What a sitemap lists: page URLs (`<urlset>`) or further sitemaps (`<sitemapindex>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sitemap {
    pub pages: Vec<Url>,
    pub sitemaps: Vec<Url>,
}

/// Parses a sitemap (the sitemaps.org XML protocol, or the plain-text one-URL-a-line form).
/// Entries that are not absolute http(s) URLs are skipped; at most [`MAX_SITEMAP_URLS`] are read.
pub fn sitemap(text: &str) -> Result<Sitemap, String> {
    let mut found = Sitemap::default();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('<') {
        for line in trimmed.lines().take(MAX_SITEMAP_URLS) {
            if let Ok(url) = Url::parse(line.trim())
                && matches!(url.scheme(), "http" | "https")
            {
                found.pages.push(normalize(&url));
            }
        }
        return Ok(found);
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let document = roxmltree::Document::parse_with_options(trimmed, options)
        .map_err(|e| format!("the sitemap is not well-formed XML: {e}"))?;
    let root = document.root_element();
    let index = match root.tag_name().name() {
        "urlset" => false,
        "sitemapindex" => true,
        other => {
            return Err(format!(
                "a sitemap is <urlset> or <sitemapindex>, not <{other}>"
            ));
        }
    };
    let entry = if index { "sitemap" } else { "url" };
    for node in root
        .children()
        .filter(|n| n.has_tag_name(entry))
        .take(MAX_SITEMAP_URLS)
    {
        let Some(loc) = node
            .children()
            .find(|n| n.has_tag_name("loc"))
            .and_then(|n| n.text())
        else {
            continue;
        };
        let Ok(url) = Url::parse(loc.trim()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        let url = normalize(&url);
        if index {
            found.sitemaps.push(url);
        } else {
            found.pages.push(url);
        }
    }
    Ok(found)
}

/// robots.txt for edgerag's crawler.
#[derive(Debug)]
pub struct Robots {
    robot: Option<texting_robots::Robot>,
}

impl Robots {
    /// From the body of `/robots.txt`; an unreadable file allows everything (as crawlers treat it).
    pub fn parse(body: &[u8]) -> Self {
        Self {
            robot: texting_robots::Robot::new(USER_AGENT, body).ok(),
        }
    }

    /// No robots.txt (404 and the like): everything is allowed.
    pub fn allow_all() -> Self {
        Self { robot: None }
    }

    pub fn allowed(&self, url: &Url) -> bool {
        self.robot.as_ref().is_none_or(|r| r.allowed(url.as_str()))
    }

    /// The sitemaps robots.txt names.
    pub fn sitemaps(&self) -> Vec<Url> {
        self.robot
            .as_ref()
            .map(|r| {
                r.sitemaps
                    .iter()
                    .filter_map(|s| Url::parse(s).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `Crawl-delay`, in seconds.
    pub fn delay(&self) -> Option<f32> {
        self.robot.as_ref().and_then(|r| r.delay)
    }
}

/// A `sync_every` interval (`6h`, `30m`, `1d`), at least five minutes and at most 30 days.
pub fn sync_interval(text: &str) -> Result<u64, String> {
    let seconds = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`sync_every` `{text}`: {e} (e.g. `6h`, `30m`, `1d`)"))?
        .as_secs();
    if !(300..=30 * 86_400).contains(&seconds) {
        return Err(format!("`sync_every` is between 5m and 30d, not `{text}`"));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn links_are_resolved_deduplicated_and_fragment_free() {
        let html = r##"<html><head><link rel="canonical" href="/guide/"></head><body>
            <a href="/docs/a#part">A</a> <a href="b">B</a> <a href="/docs/a">A again</a>
            <a href="mailto:x@example.com">mail</a> <a href="javascript:void(0)">js</a>
            <a href="https://other.example/x">other</a> <a rel="nofollow" href="/private">p</a>
            </body></html>"##;
        let page = links(html, &url("https://docs.example.com/docs/index.html"));
        let got: Vec<&str> = page.links.iter().map(Url::as_str).collect();
        assert_eq!(
            got,
            [
                "https://docs.example.com/docs/a",
                "https://docs.example.com/docs/b",
                "https://other.example/x"
            ]
        );
        assert_eq!(
            page.canonical.as_ref().map(Url::as_str),
            Some("https://docs.example.com/guide/")
        );
        assert!(!page.noindex && !page.nofollow);
    }

    #[test]
    fn base_href_and_robots_meta_are_honoured() {
        let html = r#"<head><base href="https://cdn.example.com/v2/"><meta name="robots" content="noindex, nofollow"></head><a href="page">x</a>"#;
        let page = links(html, &url("https://docs.example.com/"));
        assert_eq!(page.links[0].as_str(), "https://cdn.example.com/v2/page");
        assert!(page.noindex && page.nofollow);
    }

    #[test]
    fn scope_keeps_to_the_host_and_the_patterns() {
        let start = url("https://docs.example.com/");
        let scope = Scope::new(
            &start,
            false,
            &["/guide/**".into()],
            &["/guide/old/**".into()],
        )
        .unwrap();
        assert!(scope.contains(&url("https://docs.example.com/guide/setup")));
        assert!(!scope.contains(&url("https://docs.example.com/guide/old/setup")));
        assert!(!scope.contains(&url("https://docs.example.com/blog/")));
        assert!(!scope.contains(&url("https://api.docs.example.com/guide/x")));
        let wide = Scope::new(&start, true, &[], &[]).unwrap();
        assert!(wide.contains(&url("https://api.docs.example.com/guide/x")));
        assert!(!wide.contains(&url("https://example.com.evil.test/")));
        assert!(Scope::new(&start, false, &["guide".into()], &[]).is_err());
        let local = Scope::new(&url("http://127.0.0.1:8080/"), false, &[], &[]).unwrap();
        assert!(local.contains(&url("http://127.0.0.1:8080/a")));
        assert!(!local.contains(&url("http://127.0.0.1:5984/_all_dbs")));
    }

    #[test]
    fn sitemaps_and_indexes_are_read() {
        let set = r#"<?xml version="1.0" encoding="UTF-8"?>
            <urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
              <url><loc>https://example.com/a?x=1&amp;y=2</loc><lastmod>2026-01-01</lastmod></url>
              <url><loc> https://example.com/b#frag </loc></url>
              <url><loc>ftp://example.com/c</loc></url>
            </urlset>"#;
        let found = sitemap(set).unwrap();
        let pages: Vec<&str> = found.pages.iter().map(Url::as_str).collect();
        assert_eq!(
            pages,
            ["https://example.com/a?x=1&y=2", "https://example.com/b"]
        );
        let index = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <sitemap><loc>https://example.com/s1.xml</loc></sitemap></sitemapindex>"#;
        assert_eq!(sitemap(index).unwrap().sitemaps.len(), 1);
        assert!(sitemap("<urlset><url><loc>x</url>").is_err());
        assert!(sitemap("<html></html>").is_err());
        assert_eq!(sitemap("https://example.com/t\n").unwrap().pages.len(), 1);
    }

    #[test]
    fn robots_rules_for_our_agent_apply() {
        let robots = Robots::parse(
            b"User-agent: *\nDisallow: /private/\n\nUser-agent: edgerag\nDisallow: /drafts/\nCrawl-delay: 2\nSitemap: https://example.com/sitemap.xml\n",
        );
        assert!(!robots.allowed(&url("https://example.com/drafts/x")));
        // The group for our agent replaces the `*` group.
        assert!(robots.allowed(&url("https://example.com/private/x")));
        assert!(robots.allowed(&url("https://example.com/docs/")));
        assert_eq!(robots.delay(), Some(2.0));
        assert_eq!(robots.sitemaps().len(), 1);
        assert!(Robots::allow_all().allowed(&url("https://example.com/anything")));
    }

    #[test]
    fn repository_globs_match_whole_paths() {
        let defaults: Vec<String> = DEFAULT_FILE_GLOBS.iter().map(|g| g.to_string()).collect();
        let files = Files::new(&defaults).unwrap();
        assert!(files.contains("README.md"));
        assert!(files.contains("docs/guide/setup.md"));
        assert!(!files.contains("src/main.rs"));
        let docs = Files::new(&["docs/*.md".into()]).unwrap();
        assert!(docs.contains("docs/a.md"));
        assert!(!docs.contains("docs/deep/a.md"));
        assert!(Files::new(&["docs/[".into()]).is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(sync_interval("6h"), Ok(21_600));
        assert_eq!(sync_interval("1d"), Ok(86_400));
        assert!(sync_interval("10s").is_err());
        assert!(sync_interval("often").is_err());
    }
}
