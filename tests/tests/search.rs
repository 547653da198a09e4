//! Search through the real host running the real search component (composed with auth) and respond
//! (composed with auth and search), against the embedded stores and the embedded embedding model:
//! the three modes, filters, highlights, live versions only, another project's documents never, bad
//! input named, an embedder outage answered by keyword, and evaluations.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tests::accounts::{OPERATOR, Owner, call};
use tests::{Options, Reply, start, temp_dir, workspace_root};

async fn host_with(vars: &[(&str, String)]) -> (host::RunningHost, PathBuf) {
    let data_dir = temp_dir("search");
    let mut env = BTreeMap::from([(
        "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
        OPERATOR.to_string(),
    )]);
    for (name, value) in vars {
        env.insert(name.to_string(), value.clone());
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

fn ok(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    reply.json()
}

fn documents() -> Vec<Value> {
    vec![
        json!({"id": "refunds", "title": "Refund policy", "tags": ["billing", "public"],
               "metadata": {"year": 2024, "lang": "en"},
               "text": "# Refunds\n\nWe refund purchases within thirty days. Refunds go back to the card you paid with and take five working days.\n\n# Exceptions\n\nGift cards cannot be refunded."}),
        json!({"id": "shipping", "title": "Shipping", "tags": ["logistics", "public"],
               "metadata": {"year": 2022, "lang": "en"},
               "text": "Parcels leave our warehouse within two days. International delivery takes up to three weeks and customs fees are paid by the recipient."}),
        json!({"id": "passwords", "title": "Resetting your password", "tags": ["account"],
               "metadata": {"year": 2025, "lang": "de"},
               "text": "To reset a forgotten password, open the sign-in page and choose 'Forgot password'. We mail a link that is valid for one hour."}),
    ]
}

async fn search(addr: SocketAddr, key: &str, project: &str, body: Value) -> Reply {
    call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/search"),
        Some(key),
        Some(body),
    )
    .await
}

fn ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn ingest(addr: SocketAddr, key: &str, project: &str, docs: Vec<Value>) {
    for doc in docs {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/documents"),
            Some(key),
            Some(doc),
        )
        .await;
        assert!(
            matches!(reply.status, 200 | 201),
            "ingest: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_finds_filters_and_highlights_live_versions_only() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search", "respond"]).await;
    let p = &owner.project;
    ingest(addr, &key, p, documents()).await;

    // Every mode finds the refund policy for a question about money back; keyword matches stems.
    for mode in ["hybrid", "semantic", "keyword"] {
        let reply = search(
            addr,
            &key,
            p,
            json!({"query": "how do I get my money refunded?", "mode": mode, "top_k": 3}),
        )
        .await;
        let body = ok(&reply, 200, mode);
        assert_eq!(ids(&body)[0], "refunds", "{mode}: {body}");
        assert_eq!(body["mode"], mode);
        let hit = &body["hits"][0];
        for field in [
            "chunk_id",
            "text",
            "score",
            "heading_path",
            "start",
            "end",
            "sha256",
            "signals",
        ] {
            assert!(!hit[field].is_null(), "{mode}: hit lacks {field}: {hit}");
        }
        assert_eq!(hit["document"]["title"], "Refund policy");
        assert_eq!(hit["document"]["tags"], json!(["billing", "public"]));
        assert!(body["took_ms"].as_f64().unwrap() > 0.0);
        let timing = reply
            .headers
            .get("server-timing")
            .unwrap()
            .to_str()
            .unwrap();
        for part in ["auth;dur=", "embed;dur=", "store;dur=", "total;dur="] {
            assert!(timing.contains(part), "{timing}");
        }
        let signals = &hit["signals"];
        match mode {
            "keyword" => assert!(
                signals["semantic"].is_null() && signals["keyword"]["rank"].as_u64().is_some()
            ),
            "semantic" => assert!(
                signals["keyword"].is_null() && signals["semantic"]["rank"].as_u64().is_some()
            ),
            _ => {}
        }
    }

    // Highlights mark the query's words as keyword search saw them (stemmed), as byte ranges.
    let body = ok(
        &search(
            addr,
            &key,
            p,
            json!({"query": "refund card", "mode": "keyword", "highlight": true}),
        )
        .await,
        200,
        "highlight",
    );
    let hit = &body["hits"][0];
    let text = hit["text"].as_str().unwrap();
    let marked: Vec<String> = hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            text[s[0].as_u64().unwrap() as usize..s[1].as_u64().unwrap() as usize].to_lowercase()
        })
        .collect();
    assert!(
        marked.iter().any(|m| m == "refund" || m == "refunds"),
        "{marked:?}"
    );
    assert!(marked.iter().any(|m| m == "card"), "{marked:?}");

    // Filters: tags any and all, metadata equality and ranges, documents, dates.
    let filtered = |filter: Value| {
        let key = key.clone();
        async move {
            let body = ok(&search(addr, &key, p, json!({"query": "delivery refund password", "mode": "keyword", "filter": filter})).await, 200, "filter");
            let mut found = ids(&body);
            found.sort();
            found.dedup();
            found
        }
    };
    assert_eq!(filtered(json!({"tags": ["account"]})).await, ["passwords"]);
    assert_eq!(
        filtered(json!({"tags": {"all": ["public", "billing"]}})).await,
        ["refunds"]
    );
    assert_eq!(
        filtered(json!({"metadata": {"year": {"gte": 2023}}})).await,
        ["passwords", "refunds"]
    );
    assert_eq!(
        filtered(json!({"metadata": {"lang": "en", "year": {"lt": 2024}}})).await,
        ["shipping"]
    );
    assert_eq!(
        filtered(json!({"documents": ["shipping", "passwords"]})).await,
        ["passwords", "shipping"]
    );
    assert_eq!(
        filtered(json!({"indexed_after": "2000-01-01"})).await.len(),
        3
    );
    assert!(
        filtered(json!({"indexed_before": "2000-01-01"}))
            .await
            .is_empty()
    );

    // A quick look over GET.
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{p}/search?q=parcel%20customs&mode=keyword&top_k=1"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(ids(&ok(&reply, 200, "GET search")), ["shipping"]);

    // Only the live version is ever returned: a new version replaces the old text at once.
    let reply = call(addr, "PUT", &format!("/v1/projects/{p}/documents/shipping"), Some(&key),
        Some(json!({"title": "Shipping", "text": "Parcels now travel by zeppelin and arrive within a week."}))).await;
    assert!(matches!(reply.status, 200 | 201), "{}", reply.text());
    let body = ok(
        &search(
            addr,
            &key,
            p,
            json!({"query": "customs fees warehouse zeppelin", "mode": "keyword", "top_k": 10}),
        )
        .await,
        200,
        "after update",
    );
    let texts: Vec<&str> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("zeppelin")), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("customs")),
        "an old version came back: {texts:?}"
    );

    // respond's retrieval is search's own code, reached through the composed `retrieve` interface.
    let via_respond = ok(
        &call(
            addr,
            "GET",
            &format!("/v1/respond/projects/{p}/context?q=forgotten%20password&top_k=2"),
            Some(&key),
            None,
        )
        .await,
        200,
        "respond context",
    );
    let via_search = ok(
        &search(
            addr,
            &key,
            p,
            json!({"query": "forgotten password", "top_k": 2}),
        )
        .await,
        200,
        "search",
    );
    assert_eq!(ids(&via_respond), ids(&via_search));
    assert_eq!(ids(&via_respond)[0], "passwords");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_another_project_stays_invisible() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    let alice = Owner::new(addr, "alice@example.com").await;
    let bob = Owner::new(addr, "bob@example.com").await;
    let alice_key = alice.key(addr, &["ingest", "search"]).await;
    let bob_key = bob.key(addr, &["ingest", "search"]).await;
    ingest(addr, &alice_key, &alice.project, documents()).await;
    ingest(addr, &bob_key, &bob.project, vec![json!({"id": "bob-only", "title": "Bob's secret", "text": "The refund policy of Bob's shop is secret."})]).await;

    let cases = [
        (json!({"query": ""}), "query"),
        (json!({"query": "a".repeat(2_001)}), "query"),
        (json!({"query": "a", "top_k": 0}), "top_k"),
        (json!({"query": "a", "top_k": 101}), "top_k"),
        (json!({"query": "a", "mode": "fuzzy"}), "mode"),
        (json!({"query": "a", "filter": {"tags": 7}}), "filter.tags"),
        (
            json!({"query": "a", "filter": {"metadata": {"year": {"gte": "new"}}}}),
            "filter.metadata.year.gte",
        ),
        (
            json!({"query": "a", "filter": {"metadata": {"year": [1.5]}}}),
            "filter.metadata.year",
        ),
        (
            json!({"query": "a", "filter": {"project": bob.project}}),
            "filter.project",
        ),
        (json!(["query"]), "JSON object"),
    ];
    for (body, field) in cases {
        let reply = search(addr, &alice_key, &alice.project, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let error = reply.json();
        assert_eq!(error["error"]["code"], "bad_request", "{body}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {error}"
        );
    }
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{}/search", alice.project),
        Some(&alice_key),
        None,
    )
    .await;
    assert_eq!(reply.status, 400);

    // Crafted filters naming Bob's document find nothing in Alice's project, in every mode.
    for mode in ["hybrid", "semantic", "keyword"] {
        let body = ok(
            &search(
                addr,
                &alice_key,
                &alice.project,
                json!({"query": "Bob's secret refund policy", "mode": mode,
            "filter": {"documents": ["bob-only"]}}),
            )
            .await,
            200,
            mode,
        );
        assert!(
            body["hits"].as_array().unwrap().is_empty(),
            "{mode}: {body}"
        );
        let body = ok(
            &search(
                addr,
                &alice_key,
                &alice.project,
                json!({"query": "Bob's secret refund policy", "mode": mode, "top_k": 100}),
            )
            .await,
            200,
            mode,
        );
        assert!(
            !ids(&body).contains(&"bob-only".to_string()),
            "{mode}: {body}"
        );
    }
    // Alice's key cannot search Bob's project, nor can no key at all.
    let reply = search(addr, &alice_key, &bob.project, json!({"query": "secret"})).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{}/search", alice.project),
        None,
        Some(json!({"query": "refund"})),
    )
    .await;
    assert_eq!(reply.status, 401);
    host.stop().await;
}

fn service(host: &host::RunningHost, name: &str) -> SocketAddr {
    host.services.iter().find(|s| s.name == name).unwrap().addr
}

fn secret(data_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(data_dir.join("secrets").join(name))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_search_still_answers_when_the_embedder_is_down() {
    let (host, data_dir) = host_with(&[]).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    ingest(addr, &key, &owner.project, documents()).await;

    // A second host on the same stores whose embedding model does not answer.
    let (outage, _) = host_with(&[
        (
            "SPIN_VARIABLE_DOCSTORE_URL",
            format!("http://{}", service(&host, "docstore")),
        ),
        (
            "SPIN_VARIABLE_DOCSTORE_PASSWORD",
            secret(&data_dir, "docstore"),
        ),
        (
            "SPIN_VARIABLE_VECTORSTORE_URL",
            format!("http://{}", service(&host, "vectorstore")),
        ),
        (
            "SPIN_VARIABLE_VECTORSTORE_API_KEY",
            secret(&data_dir, "vectorstore"),
        ),
        (
            "SPIN_VARIABLE_EMBEDDINGS_URL",
            "http://127.0.0.1:9".to_string(),
        ),
        (
            "SPIN_VARIABLE_EMBEDDINGS_API_KEY",
            "nothing-listens-there".to_string(),
        ),
    ])
    .await;
    let p = &owner.project;
    let body = ok(
        &search(
            outage.addr,
            &key,
            p,
            json!({"query": "refund card", "mode": "hybrid"}),
        )
        .await,
        200,
        "degraded hybrid",
    );
    assert_eq!(ids(&body)[0], "refunds");
    assert!(
        body["degraded"]
            .as_str()
            .unwrap()
            .contains("keyword results only"),
        "{body}"
    );
    let reply = search(
        outage.addr,
        &key,
        p,
        json!({"query": "refund card", "mode": "semantic"}),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.headers.get("retry-after").is_some());
    assert_eq!(reply.json()["error"]["code"], "unavailable");
    outage.stop().await;

    // With the vector store gone too, search is 503 with Retry-After.
    let (no_store, _) = host_with(&[
        (
            "SPIN_VARIABLE_DOCSTORE_URL",
            format!("http://{}", service(&host, "docstore")),
        ),
        (
            "SPIN_VARIABLE_DOCSTORE_PASSWORD",
            secret(&data_dir, "docstore"),
        ),
        (
            "SPIN_VARIABLE_VECTORSTORE_URL",
            "http://127.0.0.1:9".to_string(),
        ),
        (
            "SPIN_VARIABLE_VECTORSTORE_API_KEY",
            "nothing-listens-there".to_string(),
        ),
    ])
    .await;
    let reply = search(
        no_store.addr,
        &key,
        p,
        json!({"query": "refund", "mode": "keyword"}),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.headers.get("retry-after").is_some());
    no_store.stop().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_score_every_mode_and_are_kept() {
    let (host, _data) = host_with(&[]).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    ingest(addr, &key, p, documents()).await;
    let body = json!({
        "name": "smoke",
        "queries": [
            {"id": "q1", "text": "money back for a purchase"},
            {"id": "q2", "text": "forgot my password"},
            {"id": "q3", "text": "how long does international delivery take"},
        ],
        "qrels": {"q1": {"refunds": 1}, "q2": {"passwords": 2}, "q3": {"shipping": 1}},
        "k": 3,
    });
    let evaluation = ok(
        &call(
            addr,
            "POST",
            &format!("/v1/projects/{p}/evaluations"),
            Some(&key),
            Some(body.clone()),
        )
        .await,
        201,
        "evaluate",
    );
    for mode in ["keyword", "semantic", "hybrid"] {
        let scores = &evaluation["results"][mode];
        assert_eq!(scores["queries"], 3, "{evaluation}");
        // Three documents, each query's answer among them: every mode finds them in the top 3.
        assert_eq!(scores["recall"], 1.0, "{mode}: {evaluation}");
        assert!(
            scores["ndcg"].as_f64().unwrap() > 0.6,
            "{mode}: {evaluation}"
        );
    }
    let id = evaluation["id"].as_str().unwrap();
    let listed = ok(
        &call(
            addr,
            "GET",
            &format!("/v1/projects/{p}/evaluations"),
            Some(&key),
            None,
        )
        .await,
        200,
        "list",
    );
    assert_eq!(listed["evaluations"][0]["id"], id);
    let kept = ok(
        &call(
            addr,
            "GET",
            &format!("/v1/projects/{p}/evaluations/{id}"),
            Some(&key),
            None,
        )
        .await,
        200,
        "get",
    );
    assert_eq!(kept["results"], evaluation["results"]);

    // More queries than one request scores: a job, in steps, with the same means as the three
    // queries asked once (each is asked 167 times under its own id).
    let texts = body["queries"].as_array().unwrap().clone();
    let (mut queries, mut qrels) = (Vec::new(), serde_json::Map::new());
    for i in 0..167 {
        for q in &texts {
            let id = format!("{}-{i}", q["id"].as_str().unwrap());
            qrels.insert(id.clone(), body["qrels"][q["id"].as_str().unwrap()].clone());
            queries.push(json!({"id": id, "text": q["text"]}));
        }
    }
    let large = json!({"name": "large", "queries": queries, "qrels": qrels, "k": 3});
    let evaluations = format!("/v1/projects/{p}/evaluations");
    let started = call(addr, "POST", &evaluations, Some(&key), Some(large)).await;
    assert_eq!(started.status, 202, "{}", started.text());
    let job = started.json();
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["queries"], 501, "{job}");
    let location = started.headers["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!("{evaluations}/{}", job["id"].as_str().unwrap())
    );
    assert!(
        job.get("token").is_none(),
        "the step token is not shown: {job}"
    );
    let step = call(addr, "POST", &format!("{location}/step"), Some(&key), None).await;
    assert_eq!(step.status, 401, "{}", step.text());
    let mut done = Value::Null;
    for _ in 0..600 {
        let polled = ok(
            &call(addr, "GET", &location, Some(&key), None).await,
            200,
            "poll",
        );
        assert_ne!(polled["status"], "failed", "{polled}");
        if polled["status"] == "done" {
            done = polled;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(done["queries_done"], 501, "the job did not finish: {done}");
    for mode in ["keyword", "semantic", "hybrid"] {
        let (stepped, once) = (&done["results"][mode], &evaluation["results"][mode]);
        assert_eq!(stepped["queries"], 501, "{done}");
        for metric in ["ndcg", "recall", "recall_100", "mrr"] {
            let (a, b) = (
                stepped[metric].as_f64().unwrap(),
                once[metric].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-9, "{mode} {metric}: {a} against {b}");
        }
    }
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{p}/evaluations"),
        Some(&key),
        Some(json!({"queries": [], "qrels": {}})),
    )
    .await;
    assert_eq!(reply.status, 400);
    let other = Owner::new(addr, "other@example.com").await;
    let other_key = other.key(addr, &["search"]).await;
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{p}/evaluations/{id}"),
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(reply.status, 403);
    host.stop().await;
}

/// A reranking server that speaks the common `/rerank` protocol (a stand-in for Text Embeddings
/// Inference or Cohere, which edgerag does not ship): it scores a passage by how often it says
/// "password", and answers 503 while `down` is set. Returns its origin and what it was sent.
async fn reranker(
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let received: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, down) = (log.clone(), down.clone());
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (log, down) = (log.clone(), down.clone());
                    async move {
                        use http_body_util::BodyExt;
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                        log.lock().unwrap().push(body.clone());
                        let (status, reply) = if down.load(std::sync::atomic::Ordering::SeqCst) {
                            (503, json!({"error": "loading"}))
                        } else {
                            let results: Vec<Value> = body["documents"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .enumerate()
                                .map(|(index, d)| {
                                    let said = d
                                        .as_str()
                                        .unwrap()
                                        .to_lowercase()
                                        .matches("password")
                                        .count();
                                    json!({"index": index, "relevance_score": said as f64 / 10.0})
                                })
                                .collect();
                            (200, json!({"results": results}))
                        };
                        let mut response = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(reply.to_string()),
                        ));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (origin, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_reranker_reorders_the_fused_best_and_its_outage_is_survived() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (origin, received) = reranker(down.clone()).await;
    let (host, _data) = host_with(&[
        ("SPIN_VARIABLE_RERANKER_URL", origin),
        ("SPIN_VARIABLE_RERANKER_MODEL", "test-reranker".into()),
        ("SPIN_VARIABLE_RERANKER_CANDIDATES", "20".into()),
    ])
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = &owner.project;
    ingest(addr, &key, p, documents()).await;

    // Fusion puts the refund policy first for this question; the reranker prefers the password page.
    let question = json!({"query": "how do refunds work", "mode": "hybrid", "top_k": 3});
    let reply = search(addr, &key, p, question.clone()).await;
    let body = ok(&reply, 200, "reranked");
    assert_eq!(body["reranked"], true, "{body}");
    assert_eq!(ids(&body)[0], "passwords", "{body}");
    let first = &body["hits"][0];
    assert_eq!(first["signals"]["rerank"]["rank"], 1);
    assert_eq!(first["score"], first["signals"]["rerank"]["score"]);
    let timing = reply
        .headers
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(timing.contains("rerank;dur="), "{timing}");
    let sent = received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["model"], "test-reranker");
    assert_eq!(sent["query"], "how do refunds work");
    let documents = sent["documents"].as_array().unwrap();
    assert!(!documents.is_empty() && documents.len() <= 20, "{sent}");
    assert_eq!(sent["top_n"], documents.len());

    // The reranker down: the fused order, said so.
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let body = ok(&search(addr, &key, p, question).await, 200, "reranker down");
    assert_eq!(body["reranked"], false);
    assert_eq!(ids(&body)[0], "refunds", "{body}");
    assert!(
        body["degraded"].as_str().unwrap().contains("reranker"),
        "{body}"
    );
}
