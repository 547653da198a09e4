//! `edgerag ingest`: uploads files, directories and JSONL to a project, several at a time, with a
//! progress bar, skipping what the project already holds so a re-run continues where one stopped.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// What to upload where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The API's origin, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    pub project: String,
    pub api_key: String,
    pub paths: Vec<PathBuf>,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// Tags added to every document.
    pub tags: Vec<String>,
    /// JSONL documents sent per request.
    pub batch: usize,
}

/// One document to upload.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    /// What is shown when it fails.
    label: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    File {
        path: PathBuf,
        content_type: &'static str,
    },
    Json {
        title: Option<String>,
        text: String,
        tags: Vec<String>,
    },
}

/// How a run went.
#[derive(Debug, Default)]
pub struct Summary {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: Vec<(String, String)>,
    pub chunks: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn documents(&self) -> u64 {
        self.added + self.updated + self.unchanged + self.failed.len() as u64
    }
}

fn content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "text" => "text/plain",
        "md" | "markdown" | "mdx" => "text/markdown",
        "html" | "htm" | "xhtml" => "text/html",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// A document id from a relative path: characters ids do not allow become `-`, and a path too long
/// keeps its end after a hash of the whole.
fn id_from_path(relative: &str) -> String {
    let id: String = relative
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._~-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = id.trim_matches('.').to_string();
    if id.len() <= 128 {
        return id;
    }
    let hash = hex(&Sha256::digest(relative.as_bytes()));
    format!("{}-{}", &hash[..16], &id[id.len() - 100..])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every document under `paths`: files by extension, directories recursively (in name order), and
/// each line of a `.jsonl` file (`{id or _id, title?, text, tags?}`).
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for root in paths {
        let meta =
            std::fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for path in entries.into_iter().rev() {
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
            files.sort();
        } else {
            files.push(root.clone());
        }
        for path in files {
            let relative = if meta.is_dir() {
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned()
            } else {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            if path.extension().is_some_and(|e| e == "jsonl") {
                items.extend(jsonl(&path)?);
            } else if let Some(content_type) = content_type(&path) {
                items.push(Item {
                    id: id_from_path(&relative),
                    label: path.display().to_string(),
                    body: Body::File { path, content_type },
                });
            } else if !meta.is_dir() {
                bail!(
                    "{}: not a text, Markdown, HTML, PDF or JSONL file",
                    path.display()
                );
            }
        }
    }
    Ok(items)
}

fn jsonl(path: &Path) -> anyhow::Result<Vec<Item>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let where_ = format!("{}:{}", path.display(), n + 1);
        let doc: Value =
            serde_json::from_str(line).with_context(|| format!("{where_}: not JSON"))?;
        let id = doc.get("id").or_else(|| doc.get("_id"));
        let id = match id {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => bail!("{where_}: no `id` (or `_id`)"),
        };
        let text = doc["text"]
            .as_str()
            .with_context(|| format!("{where_}: no `text`"))?;
        items.push(Item {
            id: id_from_path(&id),
            label: where_,
            body: Body::Json {
                title: doc["title"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
                text: text.to_string(),
                tags: doc["tags"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        });
    }
    Ok(items)
}

/// A keep-alive HTTP/1 connection to the API, reopened when it breaks.
struct Client {
    authority: String,
    api_key: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(u16, Value)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("cannot connect to {}", self.authority))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.api_key));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = sender.send_request(request.body(Full::new(body))?).await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                self.sender = None;
                return Err(error.into());
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// The outcome of one document.
enum Outcome {
    Added(u64),
    Updated(u64),
    Unchanged,
}

async fn upload(
    client: &mut Client,
    project: &str,
    tags: &[String],
    item: &Item,
) -> anyhow::Result<Outcome> {
    let (bytes, content_type, query) = match &item.body {
        Body::File { path, content_type } => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut query = String::new();
            if !tags.is_empty() {
                query = format!("?tags={}", encode(&tags.join(",")));
            }
            (Bytes::from(bytes), *content_type, query)
        }
        Body::Json { text, .. } => (
            Bytes::from(text.clone().into_bytes()),
            "application/json",
            String::new(),
        ),
    };
    let hash = hex(&Sha256::digest(&bytes));
    let path = format!("/v1/projects/{project}/documents/{}", item.id);
    // Resumable: what the project already holds with the same content is skipped.
    let (status, existing) = client.send("GET", &path, None, Bytes::new()).await?;
    if status == 200 && existing["content_sha256"] == hash && existing["status"] == "ready" {
        return Ok(Outcome::Unchanged);
    }
    let body = match &item.body {
        Body::Json {
            title,
            text,
            tags: own,
        } => {
            let mut all = own.clone();
            all.extend(tags.iter().cloned());
            Bytes::from(json!({"title": title, "text": text, "tags": all}).to_string())
        }
        Body::File { .. } => bytes,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, answer) = client
            .send(
                "PUT",
                &format!("{path}{query}"),
                Some(content_type),
                body.clone(),
            )
            .await?;
        let chunks = answer["chunks"].as_u64().unwrap_or(0);
        match status {
            201 => return Ok(Outcome::Added(chunks)),
            200 if answer["unchanged"] == true => return Ok(Outcome::Unchanged),
            200 => return Ok(Outcome::Updated(chunks)),
            429 | 503 | 409 if attempt < RETRIES => tokio::time::sleep(backoff(attempt)).await,
            _ => bail!(
                "{status}: {}",
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("no error message")
            ),
        }
    }
}

/// Tries of a request the server answers "busy" (429, 503, 409): enough to outlast a key's
/// per-minute limit, whose window is a minute.
const RETRIES: u32 = 8;

/// Waits 1, 2, 4 ... seconds between tries, at most 20.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((500u64 << attempt.min(6)).min(20_000))
}

/// Sends JSONL documents as one batch request; a batch the server finds too large is halved.
fn upload_batch<'a>(
    client: &'a mut Client,
    project: &'a str,
    tags: &'a [String],
    items: &'a [Item],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Vec<Outcome>>> + Send + 'a>>
{
    Box::pin(async move {
        let docs: Vec<Value> = items
            .iter()
            .map(|item| match &item.body {
                Body::Json {
                    title,
                    text,
                    tags: own,
                } => {
                    let mut all = own.clone();
                    all.extend(tags.iter().cloned());
                    json!({"id": item.id, "title": title, "text": text, "tags": all})
                }
                Body::File { .. } => Value::Null,
            })
            .collect();
        let body = Bytes::from(Value::Array(docs).to_string());
        let path = format!("/v1/projects/{project}/documents");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, answer) = client
                .send("POST", &path, Some("application/json"), body.clone())
                .await?;
            match status {
                200 => {
                    return Ok(answer["documents"]
                        .as_array()
                        .map(|docs| {
                            docs.iter()
                                .map(|d| {
                                    let chunks = d["chunks"].as_u64().unwrap_or(0);
                                    match d["status"].as_str() {
                                        Some("created") => Outcome::Added(chunks),
                                        Some("updated") => Outcome::Updated(chunks),
                                        _ => Outcome::Unchanged,
                                    }
                                })
                                .collect()
                        })
                        .unwrap_or_default());
                }
                422 if items.len() > 1
                    && answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("fewer documents")) =>
                {
                    let (a, b) = items.split_at(items.len() / 2);
                    let mut outcomes = upload_batch(client, project, tags, a).await?;
                    outcomes.extend(upload_batch(client, project, tags, b).await?);
                    return Ok(outcomes);
                }
                429 | 503 | 409 if attempt < RETRIES => tokio::time::sleep(backoff(attempt)).await,
                _ => bail!(
                    "{status}: {}",
                    answer["error"]["message"]
                        .as_str()
                        .unwrap_or("no error message")
                ),
            }
        }
    })
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Uploads everything under `options.paths` and reports how it went.
pub async fn run(options: Options) -> anyhow::Result<Summary> {
    let authority = options
        .url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("--url is an http:// origin (put a TLS proxy in front for https)")?
        .to_string();
    if authority.contains('/') {
        bail!("--url is an origin without a path, e.g. http://127.0.0.1:3000");
    }
    let items = collect(&options.paths)?;
    if items.is_empty() {
        bail!("nothing to upload under the given paths");
    }
    let total = items.len() as u64;
    let started = Instant::now();
    // JSONL documents travel in batches; files one by one (each its own format and size).
    let mut work: Vec<Vec<Item>> = Vec::new();
    for item in items {
        match (&item.body, work.last_mut()) {
            (Body::Json { .. }, Some(last))
                if last.len() < options.batch.max(1)
                    && matches!(last[0].body, Body::Json { .. }) =>
            {
                last.push(item)
            }
            _ => work.push(vec![item]),
        }
    }
    let queue = Arc::new(Mutex::new(work.into_iter()));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let done = Arc::new(AtomicU64::new(0));
    let chunks = Arc::new(AtomicU64::new(0));
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(total);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} documents, {msg} [{elapsed_precise}, ETA {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let queue = queue.clone();
        let summary = summary.clone();
        let done = done.clone();
        let chunks = chunks.clone();
        let bar = bar.clone();
        let options = options.clone();
        let mut client = Client {
            authority: authority.clone(),
            api_key: options.api_key.clone(),
            sender: None,
        };
        workers.push(tokio::spawn(async move {
            loop {
                let Some(items) = queue.lock().await.next() else {
                    return;
                };
                let outcomes: Vec<(String, anyhow::Result<Outcome>)> =
                    if matches!(items[0].body, Body::Json { .. }) {
                        match upload_batch(&mut client, &options.project, &options.tags, &items)
                            .await
                        {
                            Ok(outcomes) => items
                                .iter()
                                .map(|i| i.label.clone())
                                .zip(outcomes.into_iter().map(Ok))
                                .collect(),
                            Err(error) => items
                                .iter()
                                .map(|i| (i.label.clone(), Err(anyhow::anyhow!("{error:#}"))))
                                .collect(),
                        }
                    } else {
                        let item = &items[0];
                        vec![(
                            item.label.clone(),
                            upload(&mut client, &options.project, &options.tags, item).await,
                        )]
                    };
                let count = items.len() as u64;
                let mut summary = summary.lock().await;
                for (label, outcome) in outcomes {
                    match outcome {
                        Ok(Outcome::Added(n)) => {
                            summary.added += 1;
                            chunks.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(Outcome::Updated(n)) => {
                            summary.updated += 1;
                            chunks.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(Outcome::Unchanged) => summary.unchanged += 1,
                        Err(error) => {
                            bar.suspend(|| eprintln!("failed: {label}: {error:#}"));
                            summary.failed.push((label, format!("{error:#}")));
                        }
                    }
                }
                drop(summary);
                let n = done.fetch_add(count, Ordering::Relaxed) + count;
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let c = chunks.load(Ordering::Relaxed);
                let message = format!(
                    "{c} chunks, {:.1} documents/s, {:.1} chunks/s",
                    n as f64 / secs,
                    c as f64 / secs
                );
                bar.set_position(n);
                bar.set_message(message.clone());
                if !terminal && (n / 100 != (n - count) / 100 || n == total) {
                    eprintln!("{n}/{total} documents, {message}");
                }
            }
        }));
    }
    for worker in workers {
        worker.await.context("an upload worker panicked")?;
    }
    bar.finish_and_clear();
    let mut summary = std::mem::take(&mut *summary.lock().await);
    summary.chunks = chunks.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_paths_and_stay_valid() {
        assert_eq!(id_from_path("docs/guide.md"), "docs-guide.md");
        assert_eq!(id_from_path("a b/ü.txt"), "a-b--.txt");
        let long = format!("{}/x.md", "d".repeat(200));
        let id = id_from_path(&long);
        assert!(id.len() <= 128 && id.ends_with("x.md"), "{id}");
        assert_ne!(id, id_from_path(&format!("{}/x.md", "e".repeat(200))));
    }
}
