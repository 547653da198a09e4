//! Durability: `kill -9` of a real `edgerag up` while writes stream into its embedded stores; after a
//! restart every acknowledged write is there and each store answers consistently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data_dir: &Path) -> Process {
    spawn_with(data_dir, "127.0.0.1:0", &[])
}

/// `edgerag up` on `listen`, with these `SPIN_VARIABLE_*` settings besides its own.
fn spawn_with(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Process {
    let _ = std::fs::remove_file(data_dir.join("endpoints.json"));
    let child = Command::new(tests::edgerag_binary().unwrap())
        .current_dir(tests::workspace_root())
        .args(["up", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .arg("--models-dir")
        .arg(tests::models_dir())
        .arg("--lazy-models")
        .env("EDGERAG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

async fn endpoint(data_dir: &Path, service: &str) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(data_dir.join("endpoints.json"))
            && let Ok(endpoints) = serde_json::from_str::<Value>(&text)
            && let Some(url) = endpoints[service].as_str()
        {
            return url.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "edgerag did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secret(data_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(data_dir.join("secrets").join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerag-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits until `enough` says the writers have had acknowledged writes to lose (at least 1.5 s, at
/// most a minute, so a loaded machine still gets a meaningful test), then kills the process with
/// SIGKILL.
async fn kill_when(mut process: Process, enough: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while !enough() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.0.kill().unwrap();
    process.0.wait().unwrap();
}

/// Kills the process under the writers once `enough` holds and waits for every writer to notice
/// (a writer stops at its first failed request).
async fn kill_under_writers(
    process: Process,
    writers: Vec<tokio::task::JoinHandle<()>>,
    enough: impl Fn() -> bool,
) {
    kill_when(process, enough).await;
    for writer in writers {
        writer.await.unwrap();
    }
}

#[derive(Clone)]
struct Client {
    addr: std::net::SocketAddr,
    authorization: String,
}

impl Client {
    fn new(url: &str, data_dir: &Path) -> Self {
        let secret = secret(data_dir, "docstore");
        Self::with_authorization(url, tests::basic_auth("admin", &secret))
    }

    fn with_authorization(url: &str, authorization: String) -> Self {
        Self {
            addr: url.trim_start_matches("http://").parse().unwrap(),
            authorization,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let request = tests::json_request(
            self.addr,
            method,
            path,
            Some(&self.authorization),
            body.as_ref(),
        )?;
        tests::read_json(tests::send_request(self.addr, request).await?).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let data_dir = fresh_dir("crash");

    let process = spawn(&data_dir);
    let client = Client::new(&endpoint(&data_dir, "docstore").await, &data_dir);
    assert_eq!(client.call("PUT", "/crash", None).await.unwrap().0, 201);

    // Writers stream documents (and updates of earlier ones) until the process dies under them.
    let acknowledged: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..4u64 {
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut last: Option<(String, String)> = None;
            for n in 0u64.. {
                let (id, body) = match (&last, n % 3) {
                    (Some((id, rev)), 2) => {
                        (id.clone(), json!({"_rev": rev, "writer": writer, "n": n}))
                    }
                    _ => (format!("w{writer}-{n}"), json!({"writer": writer, "n": n})),
                };
                match client
                    .call("PUT", &format!("/crash/{id}"), Some(body))
                    .await
                {
                    Ok((201, reply)) => {
                        let rev = reply["rev"].as_str().unwrap().to_string();
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((id.clone(), rev.clone(), n));
                        last = Some((id, rev));
                    }
                    Ok((status, reply)) => panic!("write refused: {status} {reply}"),
                    Err(_) => break,
                }
            }
        }));
    }
    let seen = acknowledged.clone();
    kill_under_writers(process, writers, move || {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|(id, _, _)| id)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 100
    })
    .await;

    // The latest acknowledged revision of every document, and the value it carried.
    let mut latest = std::collections::BTreeMap::new();
    for (id, rev, n) in acknowledged.lock().unwrap().iter() {
        latest.insert(id.clone(), (rev.clone(), *n));
    }
    assert!(
        latest.len() > 50,
        "too few writes before the kill: {}",
        latest.len()
    );

    let _process = spawn(&data_dir);
    let client = Client::new(&endpoint(&data_dir, "docstore").await, &data_dir);
    for (id, (rev, n)) in &latest {
        let (status, doc) = client
            .call("GET", &format!("/crash/{id}"), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{id} lost after kill -9");
        // A write may have committed without its answer arriving, so the stored revision is the
        // acknowledged one (with its value) or one generation later.
        let stored = doc["_rev"].as_str().unwrap();
        let generation = |r: &str| r.split('-').next().unwrap().parse::<u32>().unwrap();
        if stored == rev {
            assert_eq!(doc["n"], json!(n), "{id}");
        } else {
            assert_eq!(
                generation(stored),
                generation(rev) + 1,
                "{id}: {stored} vs {rev}"
            );
        }
    }
    let (_, all) = client.call("GET", "/crash/_all_docs", None).await.unwrap();
    assert!(all["total_rows"].as_u64().unwrap() >= latest.len() as u64);
    let (_, info) = client.call("GET", "/crash", None).await.unwrap();
    assert_eq!(info["doc_count"], all["total_rows"]);
    let (status, changes) = client.call("GET", "/crash/_changes", None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        changes["results"].as_array().unwrap().len() as u64,
        info["doc_count"].as_u64().unwrap()
    );
    // And it still takes writes.
    assert_eq!(
        client
            .call("PUT", "/crash/after", Some(json!({"ok": 1})))
            .await
            .unwrap()
            .0,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_vectors_survive_kill_9() {
    let data_dir = fresh_dir("crash-vectors");
    let process = spawn(&data_dir);
    let url = endpoint(&data_dir, "vectorstore").await;
    let client =
        Client::with_authorization(&url, format!("Bearer {}", secret(&data_dir, "vectorstore")));
    let config = json!({"vectors": {"size": 8, "distance": "Cosine"}});
    let (status, reply) = client
        .call("PUT", "/collections/crash", Some(config))
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");

    // Writers upsert batches (some rewriting earlier ids) until the process dies under them.
    let acknowledged: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for round in 0u64.. {
                let ids: Vec<u64> = (0..20).map(|i| writer * 1_000_000 + (round * 20 + i) % 5_000).collect();
                let points: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        let vector: Vec<f32> = (0..8).map(|d| ((id + d + round) % 13) as f32 + 1.0).collect();
                        json!({"id": id, "vector": vector, "payload": {"round": round, "writer": writer}})
                    })
                    .collect();
                match client
                    .call("PUT", "/collections/crash/points?wait=true", Some(json!({"points": points})))
                    .await
                {
                    Ok((200, _)) => acknowledged.lock().unwrap().extend(ids.iter().map(|id| (*id, round))),
                    Ok((status, reply)) => panic!("upsert refused: {status} {reply}"),
                    Err(_) => break,
                }
            }
        }));
    }
    let seen = acknowledged.clone();
    kill_under_writers(process, writers, move || {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|(id, _)| id)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 200
    })
    .await;

    let mut latest = std::collections::BTreeMap::new();
    for (id, round) in acknowledged.lock().unwrap().iter() {
        latest.insert(*id, *round);
    }
    assert!(
        latest.len() > 100,
        "too few writes before the kill: {}",
        latest.len()
    );

    let _process = spawn(&data_dir);
    let client = Client::with_authorization(
        &endpoint(&data_dir, "vectorstore").await,
        format!("Bearer {}", secret(&data_dir, "vectorstore")),
    );
    let ids: Vec<u64> = latest.keys().copied().collect();
    let (status, reply) = client
        .call(
            "POST",
            "/collections/crash/points",
            Some(json!({"ids": ids, "with_payload": true})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let records = reply["result"].as_array().unwrap();
    assert_eq!(
        records.len(),
        latest.len(),
        "acknowledged points lost after kill -9"
    );
    for record in records {
        let id = record["id"].as_u64().unwrap();
        // A batch may have committed without its answer arriving: the stored round is the
        // acknowledged one or a later one.
        let round = record["payload"]["round"].as_u64().unwrap();
        assert!(
            round >= latest[&id],
            "point {id}: round {round} older than acknowledged {}",
            latest[&id]
        );
    }
    let (_, count) = client
        .call("POST", "/collections/crash/points/count", Some(json!({})))
        .await
        .unwrap();
    let (_, info) = client
        .call("GET", "/collections/crash", None)
        .await
        .unwrap();
    assert_eq!(count["result"]["count"], info["result"]["points_count"]);
    // The graph was rebuilt from what was stored: a stored vector finds itself first.
    let probe = ids[ids.len() / 2];
    let (_, stored) = client
        .call(
            "POST",
            "/collections/crash/points",
            Some(json!({"ids": [probe], "with_vector": true})),
        )
        .await
        .unwrap();
    let vector = stored["result"][0]["vector"].clone();
    let (status, found) = client
        .call(
            "POST",
            "/collections/crash/points/query",
            Some(json!({"query": vector, "limit": 1, "params": {"exact": false}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{found}");
    let top = &found["result"]["points"][0];
    assert!(
        (top["score"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_objects_survive_kill_9() {
    let data_dir = fresh_dir("crash-objects");
    let process = spawn(&data_dir);
    let url = endpoint(&data_dir, "objectstore").await;
    let key = secret(&data_dir, "objectstore");
    let log = data_dir.join("acknowledged.log");
    // boto3 writes objects and logs each acknowledged key until the store dies under it.
    let writer = Command::new(tests::workspace_root().join(".venv/bin/python"))
        .arg(tests::workspace_root().join("tests/python/s3_crash.py"))
        .args(["write", &url, "edgerag", &key])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut writer = Process(writer);
    let written = log.clone();
    kill_when(process, move || {
        let lines = std::fs::read_to_string(&written).unwrap_or_default();
        lines
            .lines()
            .filter_map(|l| l.split(' ').next())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 40
    })
    .await;
    let _ = writer.0.wait();

    let _process = spawn(&data_dir);
    let url = endpoint(&data_dir, "objectstore").await;
    let verified = tests::run_python(
        "s3_crash.py",
        &["verify", &url, "edgerag", &key, log.to_str().unwrap()],
    );
    let output = verified.unwrap_or_else(|e| panic!("{e}"));
    assert!(output.contains("objects intact"), "{output}");
}

/// Waits until the host answers its health route.
async fn healthy(addr: std::net::SocketAddr) {
    let started = Instant::now();
    loop {
        let request = http::Request::builder()
            .uri("/v1/ingest/health")
            .body(String::new())
            .unwrap();
        if let Ok(reply) = tests::exchange(addr, request).await
            && reply.status == 200
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "edgerag did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_job_killed_mid_way_resumes_and_leaves_no_orphans() {
    use tests::accounts::{Owner, call};
    let data_dir = fresh_dir("crash-ingest");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    // Steps of two chunks, one round each: the job runs long enough to be killed in the middle.
    let env = [
        ("SPIN_VARIABLE_AUTH_OPERATOR_KEY", tests::accounts::OPERATOR),
        ("SPIN_VARIABLE_INLINE_CHUNKS", "2"),
        ("SPIN_VARIABLE_JOB_STEP_CHUNKS", "2"),
        ("SPIN_VARIABLE_JOB_STEP_MS", "0"),
    ];
    let process = spawn_with(&data_dir, &listen, &env);
    healthy(addr).await;
    let owner = Owner::new(addr, "owner@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let p = owner.project.clone();
    let doc = format!("/v1/projects/{p}/documents/manual");
    let first = call(
        addr,
        "PUT",
        &doc,
        Some(&key),
        Some(json!({"text": "The first edition of the manual."})),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let text: String = (0..1500)
        .map(|i| format!("Paragraph {i}: the warehouse ships parcel number {i} on weekdays."))
        .collect::<Vec<_>>()
        .join("\n\n");
    let second = call(addr, "PUT", &doc, Some(&key), Some(json!({"text": text}))).await;
    assert_eq!(second.status, 202, "{}", second.text());
    let body = second.json();
    let total = body["chunks"].as_u64().unwrap();
    let job = body["job"]["id"].as_str().unwrap().to_string();
    let job_path = format!("/v1/projects/{p}/jobs/{job}");
    // Killed once a few steps are in, and well before the last.
    let started = Instant::now();
    loop {
        let state = call(addr, "GET", &job_path, Some(&key), None).await.json();
        let done = state["chunks_done"].as_u64().unwrap_or(0);
        assert_eq!(
            state["status"], "running",
            "finished before it could be killed: {state}"
        );
        assert!(
            done < total / 2,
            "the job ran too fast to kill mid-way: {state}"
        );
        if done >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job is stuck: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill_when(process, || true).await;

    let _process = spawn_with(&data_dir, &listen, &env);
    healthy(addr).await;
    let inspector = tests::stores::Inspector::from_endpoints(&data_dir);
    let versions = |points: &[Value]| -> std::collections::BTreeSet<u64> {
        points
            .iter()
            .filter(|pt| pt["payload"]["live"] == json!(true))
            .map(|pt| pt["payload"]["version"].as_u64().unwrap())
            .collect()
    };
    let of_manual = json!({"must": [{"key": "document", "match": {"value": "manual"}}]});
    // After the restart, search still sees the first version and only it.
    let points = inspector.scroll("edgerag_chunks", of_manual.clone()).await;
    assert_eq!(versions(&points), [1].into(), "{points:?}");
    let record = call(addr, "GET", &doc, Some(&key), None).await.json();
    assert_eq!(record["status"], "processing", "{record}");
    // The job goes on from its cursor when asked to.
    let resumed = call(
        addr,
        "POST",
        &format!("{job_path}/resume"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(resumed.status, 202, "{}", resumed.text());
    let started = Instant::now();
    let finished = loop {
        let state = call(addr, "GET", &job_path, Some(&key), None).await.json();
        if state["status"] != "running" {
            break state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the job is stuck: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["chunks_done"], total);
    let record = call(addr, "GET", &doc, Some(&key), None).await.json();
    assert_eq!(record["status"], "ready", "{record}");
    assert_eq!(record["chunks"], total);
    // No orphans: every point of the document is the second version's, each chunk once.
    let points = inspector.scroll("edgerag_chunks", of_manual).await;
    assert_eq!(points.len() as u64, total, "points left behind");
    assert_eq!(versions(&points), [2].into());
    let ordinals: std::collections::BTreeSet<u64> = points
        .iter()
        .map(|pt| pt["payload"]["ordinal"].as_u64().unwrap())
        .collect();
    assert_eq!(ordinals.len() as u64, total);
    let chunks = call(
        addr,
        "GET",
        &format!("{doc}/chunks?limit=500"),
        Some(&key),
        None,
    )
    .await
    .json();
    assert_eq!(
        chunks["chunks"].as_array().map(Vec::len),
        Some(total as usize),
        "{chunks}"
    );
}
