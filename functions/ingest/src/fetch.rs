//! Fetching a page on a user's behalf: http(s) only, no credentials in URLs, public addresses only
//! (checked here on the URL, and by the host on the address it connects to), at most five redirects,
//! each hop checked again, a size limit, a deadline, and conditional requests for re-syncs.

use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use http_body_util::{BodyExt, Full, Limited};
use shared::ingest::crawl::USER_AGENT_HEADER;
use url::Url;

/// Redirects followed before a fetch gives up.
pub const MAX_REDIRECTS: usize = 5;
/// The largest page read (bigger ones are a per-page error).
pub const MAX_PAGE_BYTES: usize = 5 << 20;
/// How long one fetch (all its hops) may take unless `crawl_fetch_timeout` says otherwise.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// What a fetch gave.
#[derive(Debug)]
pub enum Fetched {
    /// 200: the body, the final URL after redirects, and the validators for the next sync.
    Page {
        url: Url,
        content_type: String,
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 304: the page has not changed since the validators sent.
    NotModified,
    /// 404 or 410: the page is gone.
    Gone(u16),
}

/// The validators of a page fetched before.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Where fetches may go: public addresses, and the one origin the operator listed explicitly in
/// `crawl_allowed_origin` (an intranet site, or a test's site on loopback).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allowed_origins: Vec<url::Origin>,
    /// The GitHub API repository sources are read through (`github_api_url`).
    pub github_api: String,
    /// Its token (`github_token`), if any.
    pub github_token: Option<String>,
    /// How long one fetch may take (`crawl_fetch_timeout`, whole seconds).
    pub timeout: Duration,
}

fn origin_of(text: &str) -> Option<url::Origin> {
    Url::parse(text.trim())
        .ok()
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
}

impl Policy {
    pub async fn load() -> Self {
        let crawl = guest::vars::optional("crawl_allowed_origin", "").await;
        let github_api = guest::vars::optional("github_api_url", "https://api.github.com").await;
        let token = guest::vars::optional("github_token", "").await;
        Self {
            allowed_origins: [origin_of(&crawl), origin_of(&github_api)]
                .into_iter()
                .flatten()
                .collect(),
            github_api: github_api.trim().trim_end_matches('/').to_string(),
            github_token: Some(token.trim().to_string()).filter(|t| !t.is_empty()),
            timeout: guest::vars::optional("crawl_fetch_timeout", "20")
                .await
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=120).contains(s))
                .map_or(FETCH_TIMEOUT, Duration::from_secs),
        }
    }

    /// The headers a request to the GitHub API carries.
    pub fn github_headers(&self, accept: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("accept", accept.to_string()),
            ("x-github-api-version", "2022-11-28".to_string()),
        ];
        if let Some(token) = &self.github_token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        headers
    }

    /// `text` parsed, or why it may not be fetched.
    pub fn check(&self, text: &str) -> Result<Url, String> {
        if let Ok(url) = Url::parse(text.trim())
            && self.allowed_origins.contains(&url.origin())
        {
            if !url.username().is_empty() || url.password().is_some() {
                return Err("a URL to fetch must not carry credentials".into());
            }
            return Ok(url);
        }
        shared::net::check_url(text)
    }
}

fn describe(error: &str) -> String {
    if error.contains("DestinationIpProhibited") {
        "refused: the host resolves to an address that is not public".into()
    } else if error.contains("HttpRequestDenied") {
        "refused: not an allowed outbound host".into()
    } else if error.contains("DnsError") || error.contains("DestinationNotFound") {
        "the host name does not resolve".into()
    } else if error.contains("ConnectionRefused") || error.contains("Connect") {
        "the connection was refused".into()
    } else if error.contains("Timeout") {
        "the server did not answer in time".into()
    } else {
        format!("the fetch failed: {error}")
    }
}

async fn exchange(
    url: &Url,
    headers: &[(&str, String)],
    validators: &Validators,
) -> Result<(u16, http::HeaderMap, Bytes), String> {
    let mut request = http::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .header("user-agent", USER_AGENT_HEADER);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    if let Some(etag) = &validators.etag {
        request = request.header("if-none-match", etag.as_str());
    }
    if let Some(modified) = &validators.last_modified {
        request = request.header("if-modified-since", modified.as_str());
    }
    let request = request
        .header("content-length", "0")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("the URL cannot be requested: {e}"))?;
    let response = spin_sdk::http::send(request)
        .await
        .map_err(|e| describe(&format!("{e:?}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if let Some(length) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > MAX_PAGE_BYTES as u64
    {
        return Err(format!(
            "the page is {length} bytes, more than the {MAX_PAGE_BYTES} read"
        ));
    }
    if !(200..300).contains(&status) {
        return Ok((status, headers, Bytes::new()));
    }
    let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the page is larger than the {MAX_PAGE_BYTES} bytes read")
            } else {
                format!("reading the page failed: {e}")
            }
        })?
        .to_bytes();
    Ok((status, headers, body))
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn follow(
    policy: &Policy,
    start: &Url,
    headers: &[(&str, String)],
    validators: &Validators,
) -> Result<Fetched, String> {
    let mut url = start.clone();
    for _ in 0..=MAX_REDIRECTS {
        let checked = policy.check(url.as_str())?;
        // A credential goes to the origin it was given for, never on to where a redirect points.
        let sent: Vec<(&str, String)> = headers
            .iter()
            .filter(|(name, _)| *name != "authorization" || checked.origin() == start.origin())
            .cloned()
            .collect();
        let (status, headers, body) = exchange(&checked, &sent, validators).await?;
        match status {
            200..=299 => {
                return Ok(Fetched::Page {
                    url: checked,
                    content_type: header(&headers, "content-type").unwrap_or_default(),
                    body,
                    etag: header(&headers, "etag"),
                    last_modified: header(&headers, "last-modified"),
                });
            }
            304 => return Ok(Fetched::NotModified),
            404 | 410 => return Ok(Fetched::Gone(status)),
            301 | 302 | 303 | 307 | 308 => {
                let location = header(&headers, "location")
                    .ok_or_else(|| format!("HTTP {status} without a location"))?;
                url = checked
                    .join(location.trim())
                    .map_err(|e| format!("HTTP {status} to a bad location: {e}"))?;
            }
            other => return Err(format!("HTTP {other}")),
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Fetches `url` (following redirects) with `headers` besides the user agent (`accept`, a token),
/// within the policy's timeout.
pub async fn fetch(
    policy: &Policy,
    url: &Url,
    headers: &[(&str, String)],
    validators: &Validators,
) -> Result<Fetched, String> {
    let work = Box::pin(follow(policy, url, headers, validators));
    let deadline = Box::pin(spin_sdk::time::sleep(policy.timeout));
    match select(work, deadline).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(format!("no answer within {} s", policy.timeout.as_secs())),
    }
}
