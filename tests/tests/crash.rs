//! Durability: `kill -9` of a real `edgerag up` while writes stream into its document store; after a
//! restart every acknowledged write is there and the store answers consistently.

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
    let _ = std::fs::remove_file(data_dir.join("endpoints.json"));
    let child = Command::new(tests::edgerag_binary().unwrap())
        .current_dir(tests::workspace_root())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("EDGERAG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

async fn docstore_url(data_dir: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(data_dir.join("endpoints.json"))
            && let Ok(endpoints) = serde_json::from_str::<Value>(&text)
            && let Some(url) = endpoints["docstore"].as_str()
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

#[derive(Clone)]
struct Client {
    addr: std::net::SocketAddr,
    authorization: String,
}

impl Client {
    fn new(url: &str, data_dir: &Path) -> Self {
        let secret = std::fs::read_to_string(data_dir.join("secrets/docstore")).unwrap();
        Self {
            addr: url.trim_start_matches("http://").parse().unwrap(),
            authorization: tests::basic_auth("admin", secret.trim()),
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
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("edgerag-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);

    let mut process = spawn(&data_dir);
    let client = Client::new(&docstore_url(&data_dir).await, &data_dir);
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    process.0.kill().unwrap();
    process.0.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    drop(process);

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
    let client = Client::new(&docstore_url(&data_dir).await, &data_dir);
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
