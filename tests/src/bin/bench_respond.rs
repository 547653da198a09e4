//! Benchmarks respond (`scripts/bench-respond`) with SciFact as the project's knowledge (the project
//! `scripts/eval-scifact` left in its data directory) and the embedded models:
//!
//! 1. the answer threshold: for SciFact's 300 claims, the best passage's similarity in the SciFact
//!    project and in a project of other documents (edgerag's own docs); per threshold, the share of
//!    on-topic claims answered and of off-topic claims given the fallback;
//! 2. time to first token through respond against the chat model's own first token for the same
//!    final prompt sent straight to its `/v1/chat/completions`, alternating, and streamed tokens/s;
//! 3. four concurrent conversations: first-token p50/p99;
//! 4. citation quality: the share of claims whose citations include a document judged relevant,
//!    against the share for search's own top-k in the same run.
//!
//! Claims are asked as questions ("Is it true that ...?").
//!
//! Usage: bench-respond [DATA_DIR] [--questions N] [--concurrent N] [--citations N]

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::auth::records::ProjectSettings;
use shared::respond::prompt::{self, Budget};
use shared::respond::{CompletionStream, Passage, Streamed, completion_request, retrieval_request};
use tests::accounts::{OPERATOR, Owner, call};
use tests::{Options, start, workspace_root};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    values
}

/// One streamed exchange: when the first text arrived, when it ended, and the body.
struct Timed {
    first: Option<Duration>,
    total: Duration,
    body: String,
}

/// POSTs `body` to `path` and times the stream; `has_text` says whether a frame carried answer text.
async fn timed(
    addr: SocketAddr,
    path: &str,
    credential: &str,
    body: &Value,
    has_text: impl Fn(&str, &mut CompletionStream) -> bool,
) -> anyhow::Result<Timed> {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", credential)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))?;
    let started = Instant::now();
    let response = tests::send_request(addr, request).await?;
    anyhow::ensure!(
        response.status() == 200,
        "{path} answered {}",
        response.status()
    );
    let mut stream = response.into_body();
    let mut reader = CompletionStream::default();
    let mut first = None;
    let mut text = String::new();
    while let Some(frame) = stream.frame().await {
        if let Some(data) = frame?.data_ref() {
            let piece = String::from_utf8_lossy(data).into_owned();
            if first.is_none() && has_text(&piece, &mut reader) {
                first = Some(started.elapsed());
            }
            text.push_str(&piece);
        }
    }
    Ok(Timed {
        first,
        total: started.elapsed(),
        body: text,
    })
}

/// The `done` event's data of a chat stream.
fn done_event(body: &str) -> Value {
    body.split("\n\n")
        .find_map(|block| {
            let mut lines = block.lines();
            (lines.next() == Some("event: done"))
                .then(|| lines.next())
                .flatten()
                .and_then(|d| d.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
        })
        .unwrap_or(Value::Null)
}

/// A nonce of the form respond's is (16 random hex digits): its tokens are part of the prompt's
/// length, so a fixed, more compressible one would make the direct prompt shorter than respond's.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let value = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{value:016x}")
}

/// A SciFact claim asked as a visitor would: "Is it true that ...?".
fn as_question(claim: &str) -> String {
    let claim = claim.trim().trim_end_matches('.');
    let mut chars = claim.chars();
    let first = chars.next().unwrap_or_default();
    // Lowercased only when it is an ordinary word ("Vitamin" yes, "ALDH1" no).
    let lower = chars.next().is_some_and(char::is_lowercase);
    let first = if lower {
        first.to_lowercase().to_string()
    } else {
        first.to_string()
    };
    format!(
        "Is it true that {first}{}?",
        &claim[claim.chars().next().map_or(0, char::len_utf8)..]
    )
}

fn best_similarity(reply: &Value) -> f64 {
    reply["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["signals"]["semantic"]["score"].as_f64())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .unwrap_or(f64::NEG_INFINITY)
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data_dir = workspace_root().join("target/eval-scifact");
    let (mut questions, mut citation_claims, mut concurrent_answers) = (30usize, 100usize, 16usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--questions" => questions = args.next().context("--questions N")?.parse()?,
            "--citations" => citation_claims = args.next().context("--citations N")?.parse()?,
            "--concurrent" => {
                concurrent_answers = args.next().context("--concurrent N")?.parse()?;
            }
            other => data_dir = PathBuf::from(other),
        }
    }
    let (project, _) = tests::scifact::saved_project(&data_dir)?;
    let options = Options {
        env: BTreeMap::from([(
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        )]),
        data_dir: Some(data_dir.clone()),
        request_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options).await?;
    let addr = host.addr;
    // The SciFact project's owner (eval-scifact's account) makes a key that may respond.
    let login = call(
        addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"email": "scifact@example.com", "password": "a long enough password"})),
    )
    .await;
    anyhow::ensure!(login.status == 200, "login: {}", login.text());
    let token = login.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let owner = Owner {
        token,
        org: String::new(),
        project: project.clone(),
    };
    let key = owner.key(addr, &["search", "respond"]).await;
    let models = host
        .services
        .iter()
        .find(|s| s.name == "models")
        .context("no embedded models")?
        .addr;
    let models_key = format!(
        "Bearer {}",
        std::fs::read_to_string(data_dir.join("secrets/models"))?.trim()
    );
    let (claims, qrels) = tests::scifact::queries()?;
    let claims: Vec<(String, String)> = claims
        .into_iter()
        .map(|(id, claim)| (id, as_question(&claim)))
        .collect();
    let settings = ProjectSettings::default();
    println!(
        "SciFact project {project}; embedded all-MiniLM-L6-v2 and SmolLM2-135M-Instruct; default settings (top_k {}, max_tokens {}, window {})",
        settings.top_k, settings.max_tokens, settings.context_tokens
    );

    // 1. The answer threshold.
    let other = Owner::new(
        addr,
        &format!("bench-respond-{}@example.com", std::process::id()),
    )
    .await;
    let other_key = other.key(addr, &["ingest", "search", "respond"]).await;
    let root = workspace_root();
    let mut other_docs = 0;
    for name in [
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "../shared/HOUSE_STYLE.md",
    ] {
        let Ok(text) = std::fs::read_to_string(root.join(name)) else {
            continue;
        };
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{}/documents", other.project),
            Some(&other_key),
            Some(json!({"title": name, "text": text})),
        )
        .await;
        anyhow::ensure!(
            matches!(reply.status, 200..=202),
            "{name}: {}",
            reply.text()
        );
        other_docs += 1;
    }
    let search = |project: String, credential: String, query: String| async move {
        let body = retrieval_request(&query, settings.top_k, None);
        call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/search"),
            Some(&credential),
            Some(body),
        )
        .await
        .json()
    };
    let mut on_topic = Vec::new();
    let mut off_topic = Vec::new();
    for (_, claim) in &claims {
        on_topic.push(best_similarity(
            &search(project.clone(), key.clone(), claim.clone()).await,
        ));
        off_topic.push(best_similarity(
            &search(other.project.clone(), other_key.clone(), claim.clone()).await,
        ));
    }
    println!(
        "\nanswer threshold: best passage similarity of {} claims, SciFact project vs a project of {other_docs} other documents (edgerag's docs)",
        claims.len()
    );
    println!("| threshold | SciFact claims answered | off-topic claims given the fallback |");
    println!("|---|---|---|");
    for step in 0..=10 {
        let t = 0.10 + 0.05 * f64::from(step);
        let answered = on_topic.iter().filter(|s| **s >= t).count() as f64 / on_topic.len() as f64;
        let fallback = off_topic.iter().filter(|s| **s < t).count() as f64 / off_topic.len() as f64;
        println!(
            "| {t:.2} | {:.1}% | {:.1}% |",
            answered * 100.0,
            fallback * 100.0
        );
    }

    // 2. First token and tokens/s, respond against the model alone, alternating.
    let chat_path = format!("/v1/projects/{project}/chat");
    let mut respond_first = Vec::new();
    let mut model_first = Vec::new();
    let mut overhead = Vec::new();
    let mut respond_rate = Vec::new();
    let mut model_rate = Vec::new();
    // Respond's own account of each answer (its `done` event), to place the overhead.
    let mut own_retrieve = Vec::new();
    let mut own_first = Vec::new();
    let (mut respond_prompt, mut model_prompt) = (Vec::new(), Vec::new());
    for (i, (_, claim)) in claims.iter().take(questions).enumerate() {
        let via_respond = async {
            let t = timed(
                addr,
                &chat_path,
                &key,
                &json!({"message": claim}),
                |piece, _| piece.contains("event: delta"),
            )
            .await?;
            let done = done_event(&t.body);
            let tokens = done["usage"]["completion_tokens"].as_f64().unwrap_or(0.0);
            own_retrieve.push(done["timings"]["retrieve_ms"].as_f64().unwrap_or(f64::NAN));
            own_first.push(
                done["timings"]["first_token_ms"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
            respond_prompt.push(done["usage"]["prompt_tokens"].as_f64().unwrap_or(f64::NAN));
            anyhow::ensure!(
                done["source"] == "model",
                "respond did not call the model: {done}"
            );
            anyhow::Ok((t, tokens))
        };
        let direct = async {
            // The same retrieval and the same prompt (but for the per-request nonce) as respond builds.
            let hits = search(project.clone(), key.clone(), claim.clone()).await;
            let passages: Vec<Passage> = hits["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, h)| Passage::from_hit(h, i + 1))
                .collect();
            let built = prompt::build(
                &settings.system_prompt,
                &[],
                &passages,
                claim,
                Budget::new(
                    settings.context_tokens as usize,
                    settings.max_tokens as usize,
                ),
                &nonce(),
            );
            let body = completion_request(models::CHAT_MODEL, &built, &settings, true);
            let t = timed(
                models,
                "/v1/chat/completions",
                &models_key,
                &body,
                |piece, reader| {
                    reader
                        .feed(piece.as_bytes())
                        .iter()
                        .any(|s| matches!(s, Streamed::Text(_)))
                },
            )
            .await?;
            let mut reader = CompletionStream::default();
            reader.feed(t.body.as_bytes());
            let tokens = reader.completion_tokens.unwrap_or(0) as f64;
            model_prompt.push(reader.prompt_tokens.map_or(f64::NAN, |n| n as f64));
            anyhow::Ok((t, tokens))
        };
        let ((r, r_tokens), (m, m_tokens)) = if i % 2 == 0 {
            let r = via_respond.await?;
            (r, direct.await?)
        } else {
            let m = direct.await?;
            (via_respond.await?, m)
        };
        let (Some(rf), Some(mf)) = (r.first, m.first) else {
            continue;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        respond_first.push(ms(rf));
        model_first.push(ms(mf));
        overhead.push(ms(rf) - ms(mf));
        if r_tokens > 1.0 {
            respond_rate.push((r_tokens - 1.0) / (r.total - rf).as_secs_f64());
        }
        if m_tokens > 1.0 {
            model_rate.push((m_tokens - 1.0) / (m.total - mf).as_secs_f64());
        }
    }
    let (rf, mf, oh) = (sorted(respond_first), sorted(model_first), sorted(overhead));
    let (rr, mr) = (sorted(respond_rate), sorted(model_rate));
    println!(
        "\nfirst token, {} claims, one at a time (respond and the model alone alternating):",
        rf.len()
    );
    println!("| measure | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| first token through respond (ms) | {:.0} | {:.0} |",
        percentile(&rf, 0.5),
        percentile(&rf, 0.99)
    );
    println!(
        "| first token, same prompt straight to the model (ms) | {:.0} | {:.0} |",
        percentile(&mf, 0.5),
        percentile(&mf, 0.99)
    );
    println!(
        "| respond's overhead (ms, per claim) | {:.1} | {:.1} |",
        percentile(&oh, 0.5),
        percentile(&oh, 0.99)
    );
    let (own_retrieve, own_first) = (sorted(own_retrieve), sorted(own_first));
    println!(
        "| respond's own retrieval, as its `done` event says (ms) | {:.1} | {:.1} |",
        percentile(&own_retrieve, 0.5),
        percentile(&own_retrieve, 0.99)
    );
    println!(
        "| respond's own first token, from its handler's start (ms) | {:.0} | {:.0} |",
        percentile(&own_first, 0.5),
        percentile(&own_first, 0.99)
    );
    let (respond_prompt, model_prompt) = (sorted(respond_prompt), sorted(model_prompt));
    println!(
        "| prompt tokens, through respond / straight to the model | {:.0} / {:.0} | {:.0} / {:.0} |",
        percentile(&respond_prompt, 0.5),
        percentile(&model_prompt, 0.5),
        percentile(&respond_prompt, 0.99),
        percentile(&model_prompt, 0.99)
    );
    println!(
        "streamed tokens/s (median): respond {:.1}, model alone {:.1}, ratio {:.1}%",
        percentile(&rr, 0.5),
        percentile(&mr, 0.5),
        100.0 * percentile(&rr, 0.5) / percentile(&mr, 0.5)
    );

    // 3. Four conversations at once.
    let started = Instant::now();
    let mut workers = Vec::new();
    let concurrent: Vec<String> = claims
        .iter()
        .skip(questions)
        .take(concurrent_answers)
        .map(|(_, c)| c.clone())
        .collect();
    for w in 0..4 {
        let mine: Vec<String> = concurrent.iter().skip(w).step_by(4).cloned().collect();
        let (path, key) = (chat_path.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for claim in mine {
                if let Ok(t) = timed(addr, &path, &key, &json!({"message": claim}), |piece, _| {
                    piece.contains("event: delta")
                })
                .await
                    && let Some(first) = t.first
                {
                    firsts.push(first.as_secs_f64() * 1000.0);
                }
            }
            firsts
        }));
    }
    let mut firsts = Vec::new();
    for worker in workers {
        firsts.extend(worker.await?);
    }
    let firsts = sorted(firsts);
    println!(
        "\n4 concurrent conversations, {} answers in {:.1} s: first token p50 {:.0} ms, p99 {:.0} ms",
        firsts.len(),
        started.elapsed().as_secs_f64(),
        percentile(&firsts, 0.5),
        percentile(&firsts, 0.99)
    );

    // 4. Citation quality through the whole path.
    let (mut cited_relevant, mut searched_relevant, mut asked) = (0, 0, 0);
    let mut methods: BTreeMap<String, u32> = BTreeMap::new();
    for (id, claim) in claims.iter().take(citation_claims) {
        let relevant: HashSet<&String> = qrels
            .get(id)
            .map(|j| j.iter().filter(|(_, g)| **g > 0).map(|(d, _)| d).collect())
            .unwrap_or_default();
        let hits = search(project.clone(), key.clone(), claim.clone()).await;
        if hits["hits"].as_array().into_iter().flatten().any(|h| {
            h["document"]["id"]
                .as_str()
                .is_some_and(|d| relevant.iter().any(|r| r.as_str() == d))
        }) {
            searched_relevant += 1;
        }
        let reply = call(
            addr,
            "POST",
            &chat_path,
            Some(&key),
            Some(json!({"message": claim, "stream": false})),
        )
        .await;
        let answer = reply.json();
        let method = if answer["citations"].as_array().is_some_and(|c| c.is_empty()) {
            "none".to_string()
        } else {
            answer["citation_method"]
                .as_str()
                .unwrap_or("error")
                .to_string()
        };
        *methods.entry(method).or_default() += 1;
        if answer["citations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["document"]
                    .as_str()
                    .is_some_and(|d| relevant.iter().any(|r| r.as_str() == d))
            })
        {
            cited_relevant += 1;
        }
        asked += 1;
    }
    println!(
        "\ncitation quality, {asked} claims: answers citing a relevant document {:.1}%; search's own top {} holding one {:.1}%",
        100.0 * f64::from(cited_relevant) / f64::from(asked.max(1)),
        settings.top_k,
        100.0 * f64::from(searched_relevant) / f64::from(asked.max(1))
    );
    println!("citations found by: {methods:?}");
    Ok(())
}
