//! A website on loopback for crawl tests and the crawl benchmark: generated pages linked as a tree,
//! robots.txt, a sitemap, redirects, validators (ETag and Last-Modified, answered with 304), and
//! pages the test changes or removes between syncs. Every request is logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;

/// One resource the site serves.
#[derive(Debug, Clone)]
pub struct Resource {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra headers (a redirect's location).
    pub headers: Vec<(String, String)>,
    /// Whether it carries validators and answers conditional requests with 304.
    pub validators: bool,
    /// Whether its validators include an ETag (without one, Last-Modified alone).
    pub etag: bool,
    /// How long the site waits before answering (a server that hangs).
    pub delay: std::time::Duration,
    /// Bumped when the body changes: the ETag and Last-Modified follow it.
    pub revision: u32,
}

impl Resource {
    pub fn html(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: body.into().into_bytes(),
            headers: Vec::new(),
            validators: true,
            etag: true,
            delay: std::time::Duration::ZERO,
            revision: 1,
        }
    }

    pub fn text(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
            validators: false,
            etag: true,
            delay: std::time::Duration::ZERO,
            revision: 1,
        }
    }

    pub fn redirect(status: u16, location: &str) -> Self {
        Self {
            status,
            content_type: "text/plain".into(),
            body: Vec::new(),
            headers: vec![("location".into(), location.into())],
            validators: false,
            etag: true,
            delay: std::time::Duration::ZERO,
            revision: 1,
        }
    }
}

/// What the site serves and what it was asked.
#[derive(Debug, Default)]
pub struct State {
    pub resources: BTreeMap<String, Resource>,
    /// `(path, status answered)` per request, in order.
    pub log: Vec<(String, u16)>,
    /// An `authorization` value every request must carry (401 otherwise), as an API would.
    pub authorization: Option<String>,
}

/// The running site.
#[derive(Debug, Clone)]
pub struct Site {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Site {
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn put(&self, path: &str, resource: Resource) {
        let mut state = self.state.lock().unwrap();
        let revision = state.resources.get(path).map_or(0, |r| r.revision) + 1;
        state.resources.insert(
            path.into(),
            Resource {
                revision,
                ..resource
            },
        );
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().resources.remove(path);
    }

    /// Requests for `path` since the log was last cleared, with the statuses answered.
    pub fn requests(&self, path: &str) -> Vec<u16> {
        let state = self.state.lock().unwrap();
        state
            .log
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| *s)
            .collect()
    }

    pub fn log(&self) -> Vec<(String, u16)> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn answer(
    state: &Mutex<State>,
    request: &http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let mut state = state.lock().unwrap();
    let found = state.resources.get(&path).cloned();
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let refused = state
        .authorization
        .as_deref()
        .is_some_and(|wanted| presented != Some(wanted));
    let found = if refused {
        Some(Resource {
            status: 401,
            validators: false,
            ..Resource::text("application/json", "{\"message\": \"Bad credentials\"}")
        })
    } else {
        found
    };
    let response = match found {
        None => http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap(),
        Some(resource) => {
            let etag = format!("\"r{}\"", resource.revision);
            // A fixed date per revision: enough for If-Modified-Since to be compared as text.
            let modified = format!(
                "Mon, {:02} Jan 2026 00:00:00 GMT",
                resource.revision.min(28)
            );
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let fresh = resource.validators
                && if resource.etag {
                    header("if-none-match").as_deref() == Some(etag.as_str())
                } else {
                    header("if-modified-since").as_deref() == Some(modified.as_str())
                };
            let mut builder = http::Response::builder();
            if resource.validators {
                builder = builder.header("last-modified", &modified);
                if resource.etag {
                    builder = builder.header("etag", &etag);
                }
            }
            for (name, value) in &resource.headers {
                builder = builder.header(name, value);
            }
            if fresh {
                builder.status(304).body(Full::new(Bytes::new())).unwrap()
            } else {
                builder
                    .status(resource.status)
                    .header("content-type", &resource.content_type)
                    .body(Full::new(Bytes::from(resource.body.clone())))
                    .unwrap()
            }
        }
    };
    state.log.push((path, response.status().as_u16()));
    response
}

fn delay_of(
    state: &Mutex<State>,
    request: &http::Request<hyper::body::Incoming>,
) -> std::time::Duration {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    state
        .lock()
        .unwrap()
        .resources
        .get(path)
        .map_or(std::time::Duration::ZERO, |r| r.delay)
}

/// Starts an empty site on a loopback port.
pub async fn start() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = shared.clone();
            let service = hyper::service::service_fn(move |request| {
                let delay = delay_of(&state, &request);
                let response = answer(&state, &request);
                async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    Site { addr, state }
}

/// A paragraph of filler about `topic`, different for every `n`, about `words` words long.
pub fn prose(topic: &str, n: usize, words: usize) -> String {
    const VOCABULARY: &[&str] = &[
        "configure",
        "account",
        "billing",
        "invoice",
        "project",
        "member",
        "widget",
        "answer",
        "search",
        "document",
        "upload",
        "export",
        "schedule",
        "archive",
        "restore",
        "permission",
        "token",
        "webhook",
        "crawler",
        "sitemap",
        "language",
        "region",
        "storage",
        "limit",
        "quota",
        "report",
        "dashboard",
        "session",
        "support",
        "release",
    ];
    let mut out = format!("{topic} ");
    let mut state = n as u64 * 2_654_435_761 + 1;
    for i in 0..words {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(VOCABULARY[(state >> 33) as usize % VOCABULARY.len()]);
        out.push(if i % 15 == 14 { '.' } else { ' ' });
        if i % 15 == 14 {
            out.push(' ');
        }
    }
    out
}

/// Fills `site` with `pages` pages linked as a tree from `/` (each page links to up to `fanout`
/// children), each of about `words` words, and a sitemap listing them all.
pub fn generate(site: &Site, pages: usize, fanout: usize, words: usize) {
    let path = |i: usize| {
        if i == 0 {
            "/".to_string()
        } else {
            format!("/docs/page-{i}")
        }
    };
    let mut sitemap = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for i in 0..pages {
        let children: String = (1..=fanout)
            .map(|k| i * fanout + k)
            .filter(|c| *c < pages)
            .map(|c| format!("<li><a href=\"{}\">Page {c}</a></li>", path(c)))
            .collect();
        let body = format!(
            "<html><head><title>Page {i}</title></head><body><nav><a href=\"/\">Home</a></nav>\
             <main><h1>Page {i}</h1><p>{}</p><h2>Details</h2><p>{}</p><ul>{children}</ul></main>\
             <footer>Copyright</footer></body></html>",
            prose(&format!("Topic {i}."), i, words / 2),
            prose(&format!("More on topic {i}."), i + 100_000, words / 2),
        );
        site.put(&path(i), Resource::html(body));
        sitemap.push_str(&format!("<url><loc>{}</loc></url>\n", site.url(&path(i))));
    }
    sitemap.push_str("</urlset>\n");
    site.put("/sitemap.xml", Resource::text("application/xml", sitemap));
}
