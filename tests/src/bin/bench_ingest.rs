//! Benchmarks ingest (run it with `scripts/bench-ingest [N]`), through the real host serving the
//! project's spin.toml with the embedded stores, in-process, over loopback:
//!
//! 1. SciFact's first N abstracts (default 1,000; `all` for 5,183) through `edgerag ingest`'s client
//!    into a fresh project with the embedded all-MiniLM-L6-v2: documents/s and chunks/s end to end;
//! 2. in the same run, the embedding server alone on the same chunk texts, sent straight to
//!    `/v1/embeddings` in the same batches at the same concurrency as ingest sends them:
//!    the ceiling the pipeline is measured against;
//! 3. the pipeline alone: the same corpus into a second host whose embedding model is this
//!    benchmark's own instant OpenAI-API server (fixed vectors, benchmark only): chunks/s;
//! 4. the peer a team would otherwise write, on the same abstracts: LangChain's splitter,
//!    sentence-transformers and Chroma (`tests/python/bench_ingest_langchain.py`): documents/s.
//!
//! With `--large` it uploads one ~10 MiB Markdown file and reports time to ready and peak memory;
//! `--large-pdf` the same for a ~10 MiB PDF.
//! With `--cut` it times extraction and chunking of the whole corpus natively.
//! With `--pipeline-only` it runs only 3 (quick, for profiling the pipeline).
//! With `--pdf FILE...` it times PDF extraction and chunking natively instead.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tests::accounts::{OPERATOR, Owner};
use tests::{Options, start, temp_dir, workspace_root};

const CONCURRENCY: usize = 4;
/// Documents per request, as `edgerag ingest` sends JSONL by default.
const BATCH: usize = 32;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

fn corpus(n: Option<usize>) -> anyhow::Result<(PathBuf, Vec<Value>)> {
    let scifact = tests::reference_data_root().join("scifact/corpus.jsonl");
    let text = std::fs::read_to_string(&scifact)
        .with_context(|| format!("cannot read {}", scifact.display()))?;
    let docs: Vec<Value> = text
        .lines()
        .take(n.unwrap_or(usize::MAX))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let path = temp_dir("bench-ingest").join("corpus.jsonl");
    let lines: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n"))?;
    Ok((path, docs))
}

async fn host(extra: &[(&str, String)]) -> anyhow::Result<(host::RunningHost, PathBuf)> {
    let data_dir = temp_dir("bench-ingest-host");
    let mut env = BTreeMap::from([
        (
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        ),
        (
            "SPIN_VARIABLE_AUTH_KEY_PER_MINUTE".to_string(),
            "100000000".to_string(),
        ),
    ]);
    for (name, value) in extra {
        env.insert(name.to_string(), value.clone());
    }
    let options = Options {
        env,
        data_dir: Some(data_dir.clone()),
        request_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    Ok((
        start(&workspace_root().join("spin.toml"), options).await?,
        data_dir,
    ))
}

/// Runs `edgerag ingest`'s client over the corpus into a fresh project of `host`; with `sample`,
/// then sends batches of those documents again (under new ids) one at a time and reports where
/// their time went.
async fn ingest(
    host: &host::RunningHost,
    corpus: &Path,
    sample: Option<&[Value]>,
) -> anyhow::Result<(host::bulk::Summary, String)> {
    let owner = Owner::new(host.addr, "bench@example.com").await;
    let key = owner.key(host.addr, &["ingest", "search"]).await;
    let summary = host::bulk::run(host::bulk::Options {
        url: format!("http://{}", host.addr),
        project: owner.project.clone(),
        api_key: key.trim_start_matches("Bearer ").to_string(),
        paths: vec![corpus.to_path_buf()],
        concurrency: CONCURRENCY,
        tags: Vec::new(),
        batch: BATCH,
    })
    .await?;
    anyhow::ensure!(
        summary.failed.is_empty(),
        "failures: {:?}",
        &summary.failed[..summary.failed.len().min(3)]
    );
    let phases = match sample {
        Some(docs) => phases(host.addr, &owner.project, &key, docs).await?,
        None => String::new(),
    };
    Ok((summary, phases))
}

/// Sends BATCH-document batches one after the other and prints the mean of each phase of ingest's
/// answer (`timings`), beside the client's own time per request.
async fn phases(
    addr: SocketAddr,
    project: &str,
    key: &str,
    docs: &[Value],
) -> anyhow::Result<String> {
    let rounds = (docs.len() / BATCH).min(8);
    let mut sums: Vec<(String, f64)> = Vec::new();
    let mut client_ms = 0.0;
    let mut chunks = 0u64;
    for round in 0..rounds {
        let batch: Vec<Value> = docs[round * BATCH..(round + 1) * BATCH]
            .iter()
            .map(|d| json!({"id": format!("again-{}", d["_id"].as_str().unwrap_or_default()), "title": d["title"], "text": d["text"]}))
            .collect();
        let started = Instant::now();
        let reply = tests::accounts::call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/documents"),
            Some(key),
            Some(Value::Array(batch)),
        )
        .await;
        client_ms += started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(reply.status == 200, "batch {round}: {}", reply.text());
        let body = reply.json();
        chunks += body["chunks"].as_u64().unwrap_or(0);
        for (name, ms) in body["timings"].as_object().into_iter().flatten() {
            let ms = ms.as_f64().unwrap_or(0.0);
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += ms,
                None => sums.push((name.clone(), ms)),
            }
        }
    }
    let n = rounds.max(1) as f64;
    let mut out = format!(
        "{rounds} batches of {BATCH} documents ({:.0} chunks each) one at a time, mean ms per batch:\nclient {:.1}",
        chunks as f64 / n,
        client_ms / n
    );
    for (name, total) in sums {
        out.push_str(&format!(", {name} {:.1}", total / n));
    }
    Ok(out)
}

/// The texts ingest embeds for each document, cut exactly as ingest cuts them.
fn embed_texts(docs: &[Value]) -> anyhow::Result<Vec<Vec<String>>> {
    let config = shared::ingest::chunk::ChunkConfig::default();
    docs.iter()
        .map(|doc| {
            let text = doc["text"].as_str().unwrap_or_default();
            let title = doc["title"].as_str().unwrap_or_default();
            let extracted = shared::ingest::extract::plain(text);
            let chunks = shared::ingest::chunk::chunk(&extracted, title, &config)?;
            Ok(chunks.iter().map(|c| c.embed_text()).collect())
        })
        .collect()
}

/// Sends the chunk texts to `/v1/embeddings` exactly as ingest does for `edgerag ingest`'s requests:
/// the texts of BATCH documents per request, in batches of 32 texts with 4 in flight, CONCURRENCY
/// requests at once. Returns chunks/s.
async fn embed_alone(url: SocketAddr, api_key: &str, texts: &[Vec<String>]) -> anyhow::Result<f64> {
    let groups: Vec<Vec<String>> = texts.chunks(BATCH).map(|g| g.concat()).collect();
    let total: usize = groups.iter().map(Vec::len).sum();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(groups.into_iter()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let queue = queue.clone();
        let api_key = api_key.to_string();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(group) = queue.lock().await.next() else {
                    return anyhow::Ok(());
                };
                tests::embed_as_ingest_does(url, &api_key, &group).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// An OpenAI-API embeddings server that answers at once. A text's 384-dimension vector is the sum
/// of its words' pseudo-random vectors (seeded by the word), normalised: texts that share words lie
/// close together, as real embeddings of related texts do, so the vector store's graph is built
/// over data shaped like a corpus (unrelated random vectors, the worst case for a graph, made each
/// insert about 3x dearer natively).
async fn instant_embedder() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let input: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let texts: Vec<&str> = input["input"]
                            .as_array()
                            .map(|a| a.iter().map(|t| t.as_str().unwrap_or_default()).collect())
                            .unwrap_or_default();
                        // The numbers written as the f32s they are (Display is the shortest
                        // form that reads back the same), as embedding servers write them.
                        let mut answer =
                            String::from(r#"{"object":"list","model":"instant","data":["#);
                        for (index, text) in texts.iter().enumerate() {
                            if index > 0 {
                                answer.push(',');
                            }
                            let numbers: Vec<String> =
                                seeded_vector(text).iter().map(f32::to_string).collect();
                            answer.push_str(&format!(
                                r#"{{"object":"embedding","index":{index},"embedding":[{}]}}"#,
                                numbers.join(",")
                            ));
                        }
                        answer.push_str("]}");
                        Ok::<_, hyper::Error>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                                .expect("a response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The bag-of-words vector of `text` (see [`instant_embedder`]); each word's vector is made once.
fn seeded_vector(text: &str) -> Vec<f32> {
    use std::hash::{Hash, Hasher};
    static WORDS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut words = WORDS.lock().unwrap_or_else(|p| p.into_inner());
    let mut vector = vec![0f32; 384];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        let seeded = words.entry(word).or_insert_with_key(|word| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            word.hash(&mut hasher);
            let mut state = hasher.finish() | 1;
            (0..384)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2001) as f32 / 1000.0 - 1.0
                })
                .collect()
        });
        vector
            .iter_mut()
            .zip(seeded.iter())
            .for_each(|(x, y)| *x += y);
    }
    let norm = vector
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn rate(summary: &host::bulk::Summary) -> (f64, f64) {
    let secs = summary.elapsed.as_secs_f64();
    (
        summary.documents() as f64 / secs,
        summary.chunks as f64 / secs,
    )
}

/// `--cut`: SciFact's extraction and chunking natively (what ingest does to each document before
/// anything is embedded or stored), chunks/s over the whole corpus.
fn cut(docs: &[Value]) -> anyhow::Result<()> {
    let config = shared::ingest::chunk::ChunkConfig::default();
    let started = Instant::now();
    let mut chunks = 0;
    for doc in docs {
        let text = doc["text"].as_str().unwrap_or_default();
        let title = doc["title"].as_str().unwrap_or_default();
        let extracted = shared::ingest::document::extract(
            shared::ingest::document::ContentType::Text,
            text.as_bytes(),
            None,
        )?;
        chunks += shared::ingest::chunk::chunk(&extracted, title, &config)?.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "extraction and chunking natively: {} documents, {chunks} chunks in {secs:.2} s: {:.0} chunks/s",
        docs.len(),
        chunks as f64 / secs
    );
    Ok(())
}

/// `--large`: one Markdown file of just under the host's 10 MiB body limit (SciFact's abstracts as
/// sections under their titles) uploaded raw, with the instant embedder: time until it is ready, and
/// the most linear memory an ingest instance held meanwhile (the host's
/// `edgerag_instance_memory_peak_bytes`).
async fn large(docs: &[Value]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(LARGE + 4096);
    'fill: loop {
        for doc in docs {
            let section = format!(
                "## {}\n\n{}\n\n",
                doc["title"].as_str().unwrap_or_default(),
                doc["text"].as_str().unwrap_or_default()
            );
            if text.len() + section.len() > LARGE {
                break 'fill;
            }
            text.push_str(&section);
        }
    }
    upload_large("Markdown", "text/markdown", text.into_bytes()).await
}

/// Just under the host's 10 MiB body limit.
const LARGE: usize = (10 << 20) - (64 << 10);

/// `--large-pdf`: the PDF counterpart of `--large`: SciFact's abstracts one to a page (the title,
/// then the text in lines of at most 90 columns, in ASCII as the standard Helvetica font's encoding
/// holds it), content streams compressed as PDF writers do, as many pages as fit under the limit.
async fn large_pdf(docs: &[Value]) -> anyhow::Result<()> {
    let pages: Vec<String> = docs
        .iter()
        .map(|doc| {
            let ascii = |v: &Value| -> String {
                v.as_str()
                    .unwrap_or_default()
                    .chars()
                    .map(|c| {
                        if c.is_ascii() && !c.is_ascii_control() {
                            c
                        } else {
                            ' '
                        }
                    })
                    .collect()
            };
            let mut page = ascii(&doc["title"]);
            let mut line = String::new();
            for word in ascii(&doc["text"]).split_whitespace() {
                if !line.is_empty() && line.len() + 1 + word.len() > 90 {
                    page.push('\n');
                    page.push_str(&line);
                    line.clear();
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
            }
            page.push('\n');
            page.push_str(&line);
            page
        })
        .collect();
    // Estimate the pages that fit from a first file, then shrink until it does.
    let build = |n: usize| {
        let texts: Vec<&str> = pages.iter().cycle().take(n).map(String::as_str).collect();
        tests::stores::pdf(&texts)
    };
    let sample = build(pages.len());
    let mut n = pages.len() * LARGE / sample.len();
    let mut file = build(n);
    while file.len() > LARGE {
        n = n * LARGE / file.len() * 99 / 100;
        file = build(n);
    }
    let saved = temp_dir("bench-ingest-pdf").join("large.pdf");
    std::fs::write(&saved, &file)?;
    println!(
        "PDF: {n} pages, {} bytes, saved as {}",
        file.len(),
        saved.display()
    );
    upload_large("PDF", "application/pdf", file).await
}

/// Uploads one large file into a fresh project of a fresh host with the instant embedder and waits
/// for its job: time to ready and the ingest instance's peak memory.
async fn upload_large(kind: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let embedder = instant_embedder().await?;
    let (host, _) = host(&[
        ("SPIN_VARIABLE_EMBEDDINGS_URL", format!("http://{embedder}")),
        ("SPIN_VARIABLE_EMBEDDINGS_API_KEY", "unused".to_string()),
        // A compressed PDF of abstracts holds 1.6 times the Markdown file's text: more chunks
        // than the default cap of one document.
        ("SPIN_VARIABLE_MAX_CHUNKS_PER_DOCUMENT", "50000".to_string()),
    ])
    .await?;
    let owner = Owner::new(host.addr, "large@example.com").await;
    let key = owner.key(host.addr, &["ingest", "search"]).await;
    let before = host::runtime::memory_peaks()
        .get("ingest")
        .copied()
        .unwrap_or(0);
    let started = Instant::now();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/projects/{}/documents?id=large&title=Large",
            owner.project
        ))
        .header("authorization", &key)
        .header("content-type", content_type)
        .header("host", host.addr.to_string())
        .body(Full::new(Bytes::from(body.clone())))?;
    let (status, answer) = tests::read_json(tests::send_request(host.addr, request).await?).await?;
    anyhow::ensure!(status == 202, "upload: {status} {answer}");
    let accepted = started.elapsed();
    let job = answer["job"]["id"].as_str().unwrap_or_default().to_string();
    let done = loop {
        let reply = tests::accounts::call(
            host.addr,
            "GET",
            &format!("/v1/projects/{}/jobs/{job}", owner.project),
            Some(&key),
            None,
        )
        .await;
        let job = reply.json();
        if job["status"] != "running" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready = started.elapsed();
    anyhow::ensure!(done["status"] == "done", "job: {done}");
    let peak = host::runtime::memory_peaks()
        .get("ingest")
        .copied()
        .unwrap_or(0);
    println!(
        "{kind}, {} bytes: accepted (202) in {:.2} s, ready in {:.1} s, {} chunks ({:.0} chunks/s); \
         the largest ingest instance held {:.1} MiB of linear memory (before this upload: {:.1} MiB)",
        body.len(),
        accepted.as_secs_f64(),
        ready.as_secs_f64(),
        done["chunks_done"],
        done["chunks_done"].as_f64().unwrap_or(0.0) / ready.as_secs_f64(),
        peak as f64 / (1 << 20) as f64,
        before as f64 / (1 << 20) as f64,
    );
    host.stop().await;
    Ok(())
}

/// `--pdf FILE...`: extraction and chunking of real PDFs natively (what ingest runs, without the
/// WebAssembly and the stores): pages, text, chunks and the time each step takes.
fn pdfs(files: &[String]) -> anyhow::Result<()> {
    println!("| file | bytes | pages with text | text bytes | chunks | extract ms | chunk ms |");
    println!("|---|---|---|---|---|---|---|");
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        let started = Instant::now();
        let extracted =
            shared::ingest::pdf::extract(&bytes).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let extract_ms = started.elapsed().as_secs_f64() * 1000.0;
        let pages: std::collections::BTreeSet<u32> =
            extracted.blocks.iter().filter_map(|b| b.page).collect();
        let started = Instant::now();
        let chunks = shared::ingest::chunk::chunk(&extracted, "", &Default::default())?;
        let chunk_ms = started.elapsed().as_secs_f64() * 1000.0;
        let name = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "| {name} | {} | {} | {} | {} | {extract_ms:.0} | {chunk_ms:.0} |",
            bytes.len(),
            pages.len(),
            extracted.text.len(),
            chunks.len()
        );
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--pdf") {
        return pdfs(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--cut") {
        return cut(&corpus(None)?.1);
    }
    if args.first().is_some_and(|a| a == "--large") {
        return large(&corpus(None)?.1).await;
    }
    if args.first().is_some_and(|a| a == "--large-pdf") {
        return large_pdf(&corpus(None)?.1).await;
    }
    let pipeline_only = args.iter().any(|a| a == "--pipeline-only");
    let arg = args.iter().find(|a| !a.starts_with("--"));
    let n = match arg.map(String::as_str) {
        Some("all") => None,
        Some(n) => Some(n.parse().context("N is a number or `all`")?),
        None => Some(1000),
    };
    let (path, docs) = corpus(n)?;
    println!("# edgerag ingest benchmark");
    println!(
        "machine: {} cores; SciFact, first {} abstracts; host in-process, embedded stores, loopback; {CONCURRENCY} uploads in flight",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        docs.len()
    );
    let texts = embed_texts(&docs)?;
    let chunks: usize = texts.iter().map(Vec::len).sum();
    println!(
        "chunks: {chunks} ({:.2} per document, default chunking)",
        chunks as f64 / docs.len() as f64
    );
    println!();

    // 3 first: the instant embedder makes it quick, and the model is not loaded yet to compete.
    let embedder = instant_embedder().await?;
    let (instant_host, _) = host(&[
        ("SPIN_VARIABLE_EMBEDDINGS_URL", format!("http://{embedder}")),
        ("SPIN_VARIABLE_EMBEDDINGS_API_KEY", "unused".to_string()),
    ])
    .await?;
    let (pipeline, phases) =
        ingest(&instant_host, &path, pipeline_only.then_some(&docs[..])).await?;
    instant_host.stop().await;
    let (pipeline_docs, pipeline_chunks) = rate(&pipeline);
    if pipeline_only {
        println!(
            "| pipeline alone (instant embedder) | {pipeline_docs:.1} documents/s, {pipeline_chunks:.1} chunks/s ({} chunks in {:.2} s) |",
            pipeline.chunks,
            pipeline.elapsed.as_secs_f64()
        );
        println!();
        println!("{phases}");
        return Ok(());
    }

    let (real_host, data_dir) = host(&[]).await?;
    let models = real_host
        .services
        .iter()
        .find(|s| s.name == "models")
        .context("no embedded models")?
        .addr;
    let models_key = std::fs::read_to_string(data_dir.join("secrets/models"))?
        .trim()
        .to_string();
    // Warm the model (its first request loads it) so neither measurement pays for the load.
    embed_alone(models, &models_key, &[vec!["warm up".to_string()]]).await?;
    let alone = embed_alone(models, &models_key, &texts).await?;
    let (end_to_end, _) = ingest(&real_host, &path, None).await?;
    let (e2e_docs, e2e_chunks) = rate(&end_to_end);
    let alone_again = embed_alone(models, &models_key, &texts).await?;
    real_host.stop().await;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| end to end (edgerag ingest, embedded model) | {e2e_docs:.1} documents/s, {e2e_chunks:.1} chunks/s ({} chunks in {:.1} s) |",
        end_to_end.chunks,
        end_to_end.elapsed.as_secs_f64()
    );
    println!(
        "| embedding server alone, same texts and batches, before / after | {alone:.1} / {alone_again:.1} chunks/s |"
    );
    let ceiling = (alone + alone_again) / 2.0;
    println!(
        "| end to end / embedder alone (mean of both) | {:.0}% (target >= 90%) |",
        100.0 * e2e_chunks / ceiling
    );
    println!(
        "| pipeline alone (instant embedder) | {pipeline_docs:.1} documents/s, {pipeline_chunks:.1} chunks/s (target >= 2,000 chunks/s) |"
    );
    peer(&path, docs.len(), e2e_docs)
}

/// The peer a team would otherwise write (LangChain's splitter, sentence-transformers, Chroma), on
/// the same abstracts in the same run, when `scripts/bench-venv --peer` has installed it.
fn peer(corpus: &Path, n: usize, edgerag_docs: f64) -> anyhow::Result<()> {
    let python = workspace_root().join("target/peer-venv/bin/python");
    if !python.exists() {
        println!(
            "| LangChain + sentence-transformers + Chroma | not run: scripts/bench-venv --peer installs it |"
        );
        return Ok(());
    }
    let output = std::process::Command::new(&python)
        .arg(workspace_root().join("tests/python/bench_ingest_langchain.py"))
        .arg(tests::models_dir())
        .arg(corpus)
        .arg(n.to_string())
        .stderr(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(output.status.success(), "the LangChain peer failed");
    let result: Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|line| line.starts_with(b"{"))
            .context("no result from the LangChain peer")?,
    )?;
    let peer_docs = result["documents_per_s"].as_f64().unwrap_or(0.0);
    println!(
        "| LangChain splitter + sentence-transformers + Chroma, same abstracts | {peer_docs:.1} documents/s, {} chunks/s ({} chunks in {} s: split {} s, embed {} s, add {} s, torch threads {}) |",
        result["chunks_per_s"],
        result["chunks"],
        result["seconds"],
        result["split_s"],
        result["embed_s"],
        result["add_s"],
        result["torch_threads"],
    );
    println!(
        "| edgerag end to end / the peer | {:.2}x documents/s |",
        edgerag_docs / peer_docs.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
