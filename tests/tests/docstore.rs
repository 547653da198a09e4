//! The embedded document store against CouchDB's HTTP API: one conformance suite that runs, with the
//! same assertions, against the embedded store and against pouchdb-server (a real CouchDB-API server,
//! installed by scripts/install), plus the stricter CouchDB behaviours pouchdb-server does not share.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const SECRET: &str = "conformance-secret";

/// A CouchDB-API server under test, spoken to over real HTTP.
struct Couch {
    addr: SocketAddr,
    authorization: Option<String>,
}

impl Couch {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            authorization: Some(tests::basic_auth("admin", SECRET)),
        }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> (u16, Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = tests::send_request(self.addr, request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: not JSON: {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let request = tests::json_request(
            self.addr,
            method,
            path,
            self.authorization.as_deref(),
            body.as_ref(),
        )
        .unwrap();
        tests::read_json(tests::send_request(self.addr, request).await.unwrap())
            .await
            .unwrap()
    }
}

fn ids(docs: &Value) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn row_ids(rows: &Value) -> Vec<String> {
    rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str().or(r["key"].as_str()))
        .filter(|id| !id.starts_with("_design/"))
        .map(str::to_string)
        .collect()
}

/// The assertions both servers must pass.
async fn conformance(couch: &Couch) {
    let db = "/conformance";
    let (status, welcome) = couch.call("GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(welcome.is_object());

    // Databases.
    assert_eq!(
        couch.call("PUT", db, None).await,
        (201, json!({"ok": true}))
    );
    let (status, body) = couch.call("PUT", db, None).await;
    assert_eq!((status, body["error"].as_str()), (412, Some("file_exists")));
    let (status, info) = couch.call("GET", db, None).await;
    assert_eq!(status, 200);
    assert_eq!(info["db_name"], "conformance");
    assert_eq!(info["doc_count"], 0);
    let (_, all) = couch.call("GET", "/_all_dbs", None).await;
    assert!(all.as_array().unwrap().contains(&json!("conformance")));
    let (status, body) = couch.call("GET", "/nonexistent-db", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // Documents and revisions.
    let (status, created) = couch
        .call("PUT", "/conformance/a", Some(json!({"n": 1})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (created["ok"].clone(), created["id"].clone()),
        (json!(true), json!("a"))
    );
    let rev1 = created["rev"].as_str().unwrap().to_string();
    assert!(rev1.starts_with("1-"), "{rev1}");
    let (status, body) = couch
        .call("PUT", "/conformance/a", Some(json!({"n": 2})))
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let (status, updated) = couch
        .call("PUT", "/conformance/a", Some(json!({"_rev": rev1, "n": 2})))
        .await;
    assert_eq!(status, 201);
    let rev2 = updated["rev"].as_str().unwrap().to_string();
    assert!(rev2.starts_with("2-"), "{rev2}");
    let (status, body) = couch
        .call(
            "PUT",
            &format!("/conformance/a?rev={rev1}"),
            Some(json!({"n": 3})),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let (status, doc) = couch.call("GET", "/conformance/a", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc, json!({"_id": "a", "_rev": rev2, "n": 2}));
    let (status, body) = couch.call("GET", "/conformance/missing", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, posted) = couch
        .call("POST", db, Some(json!({"n": 0, "generated": true})))
        .await;
    assert_eq!(status, 201);
    let generated = posted["id"].as_str().unwrap().to_string();
    assert!(!generated.is_empty());
    let (status, deleted) = couch
        .call(
            "DELETE",
            &format!(
                "/conformance/{generated}?rev={}",
                posted["rev"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(deleted["rev"].as_str().unwrap().starts_with("2-"));
    let (status, _) = couch
        .call("GET", &format!("/conformance/{generated}"), None)
        .await;
    assert_eq!(status, 404);

    // Bulk writes: each document gets its own result, a conflict does not stop the others.
    let docs: Vec<Value> = ["b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"_id": id, "n": i + 10, "kind": if i % 2 == 0 { "even" } else { "odd" }}))
        .chain([json!({"_id": "a", "n": 99})])
        .collect();
    let (status, results) = couch
        .call(
            "POST",
            "/conformance/_bulk_docs",
            Some(json!({"docs": docs})),
        )
        .await;
    assert_eq!(status, 201);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert!(results[..5].iter().all(|r| r["ok"] == json!(true)));
    assert_eq!(
        (results[5]["id"].as_str(), results[5]["error"].as_str()),
        (Some("a"), Some("conflict"))
    );

    // _all_docs: ordered by id, ranges, keys, descending, include_docs.
    let (status, all) = couch.call("GET", "/conformance/_all_docs", None).await;
    assert_eq!(status, 200);
    assert_eq!(row_ids(&all), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(all["total_rows"], 6);
    let (_, range) = couch
        .call(
            "GET",
            "/conformance/_all_docs?include_docs=true&startkey=%22c%22&endkey=%22e%22&limit=2",
            None,
        )
        .await;
    assert_eq!(row_ids(&range), ["c", "d"]);
    assert_eq!(range["rows"][0]["doc"]["n"], 11);
    let (_, inclusive) = couch
        .call(
            "GET",
            "/conformance/_all_docs?startkey=%22c%22&endkey=%22e%22&inclusive_end=false",
            None,
        )
        .await;
    assert_eq!(row_ids(&inclusive), ["c", "d"]);
    let (_, descending) = couch
        .call(
            "GET",
            "/conformance/_all_docs?descending=true&limit=2",
            None,
        )
        .await;
    assert_eq!(row_ids(&descending), ["f", "e"]);
    let (_, keyed) = couch
        .call(
            "POST",
            "/conformance/_all_docs",
            Some(json!({"keys": ["d", "zz", "b"]})),
        )
        .await;
    let rows = keyed["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], "d");
    assert_eq!(
        (rows[1]["key"].as_str(), rows[1]["error"].as_str()),
        (Some("zz"), Some("not_found"))
    );
    assert_eq!(rows[2]["id"], "b");

    // _find with Mango selectors.
    for (selector, expected) in [
        (json!({"n": 12}), vec!["d"]),
        (json!({"n": {"$eq": 12}}), vec!["d"]),
        // On a field every document has: for a missing field CouchDB's $ne does not match and
        // pouchdb-server's does (the engine's unit tests pin CouchDB's behaviour).
        (json!({"n": {"$ne": 12}}), vec!["a", "b", "c", "e", "f"]),
        (json!({"n": {"$gt": 12}}), vec!["e", "f"]),
        (json!({"n": {"$gte": 12, "$lt": 14}}), vec!["d", "e"]),
        (json!({"n": {"$lte": 10}}), vec!["a", "b"]),
        (json!({"n": {"$in": [10, 14, 1000]}}), vec!["b", "f"]),
        (
            json!({"$and": [{"kind": "even"}, {"n": {"$gt": 10}}]}),
            vec!["d", "f"],
        ),
        (json!({"$or": [{"n": 2}, {"n": 13}]}), vec!["a", "e"]),
        (json!({"kind": {"$exists": false}}), vec!["a"]),
    ] {
        let (status, found) = couch
            .call(
                "POST",
                "/conformance/_find",
                Some(json!({"selector": selector})),
            )
            .await;
        assert_eq!(status, 200, "{selector}: {found}");
        assert_eq!(ids(&found["docs"]), expected, "{selector}");
    }

    // Indexes, sort, limit, skip and fields.
    let index = json!({"index": {"fields": ["n"]}, "name": "by-n", "type": "json"});
    let (status, created) = couch
        .call("POST", "/conformance/_index", Some(index.clone()))
        .await;
    assert_eq!((status, created["result"].as_str()), (200, Some("created")));
    let (_, again) = couch.call("POST", "/conformance/_index", Some(index)).await;
    assert_eq!(again["result"], "exists");
    let (status, sorted) = couch
        .call(
            "POST",
            "/conformance/_find",
            Some(json!({"selector": {"n": {"$gt": 0}}, "sort": [{"n": "desc"}], "limit": 2, "skip": 1, "fields": ["_id", "n"]})),
        )
        .await;
    assert_eq!(status, 200, "{sorted}");
    assert_eq!(
        sorted["docs"],
        json!([{"_id": "e", "n": 13}, {"_id": "d", "n": 12}])
    );

    // _changes: every document once, at its latest sequence; since and limit.
    let (status, changes) = couch.call("GET", "/conformance/_changes", None).await;
    assert_eq!(status, 200);
    let results = changes["results"].as_array().unwrap();
    let changed: Vec<&str> = results
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .filter(|id| !id.starts_with("_design/"))
        .collect();
    assert_eq!(changed.len(), 7, "{changes}");
    assert!(changed.contains(&generated.as_str()));
    let deleted_change = results
        .iter()
        .find(|r| r["id"] == json!(generated))
        .unwrap();
    assert_eq!(deleted_change["deleted"], true);
    let last_seq = changes["last_seq"].clone();
    let since = match &last_seq {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (_, none) = couch
        .call("GET", &format!("/conformance/_changes?since={since}"), None)
        .await;
    assert_eq!(none["results"], json!([]));
    let (_, two) = couch
        .call("GET", "/conformance/_changes?limit=2", None)
        .await;
    assert_eq!(two["results"].as_array().unwrap().len(), 2);

    // Deleting the database.
    assert_eq!(
        couch.call("DELETE", db, None).await,
        (200, json!({"ok": true}))
    );
    let (status, _) = couch.call("GET", db, None).await;
    assert_eq!(status, 404);
}

async fn embedded(dir: &std::path::Path) -> embedded::Embedded {
    let credentials = embedded::Credentials {
        user: "admin".into(),
        secret: SECRET.into(),
    };
    docstore::start(docstore::Config {
        dir: dir.to_path_buf(),
        addr: "127.0.0.1:0".parse().unwrap(),
        credentials,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_couchdb_suite() {
    let store = embedded(&tests::temp_dir("docstore")).await;
    conformance(&Couch::new(store.addr)).await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pouchdb_server_passes_the_same_suite() {
    let server = tests::pouchdb::start(SECRET).await.unwrap();
    conformance(&Couch::new(server.addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_refuses_bad_input_as_couchdb_does() {
    let store = embedded(&tests::temp_dir("docstore-strict")).await;
    let couch = Couch::new(store.addr);

    let anonymous = Couch {
        addr: store.addr,
        authorization: None,
    };
    let (status, body) = anonymous.call("GET", "/_all_dbs", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = anonymous.call("GET", "/", None).await;
    assert_eq!(status, 200, "the welcome route is public, as in CouchDB");
    let wrong = Couch {
        addr: store.addr,
        authorization: Some("Basic YWRtaW46bm9wZQ==".into()),
    };
    let (status, body) = wrong.call("PUT", "/x", None).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("Name or password is incorrect."))
    );

    for name in ["Upper", "1digit", "_underscore", "sp%20ace"] {
        let (status, body) = couch.call("PUT", &format!("/{name}"), None).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    assert_eq!(couch.call("PUT", "/strict", None).await.0, 201);
    let (status, body) = couch
        .raw(
            "PUT",
            "/strict/doc",
            Some("application/json"),
            Bytes::from_static(b"{not json"),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = couch.call("PUT", "/strict/doc", Some(json!([1, 2]))).await;
    assert_eq!(status, 400, "a document must be an object");
    let (status, _) = couch.call("PUT", "/strict/_secret", Some(json!({}))).await;
    assert_eq!(status, 400, "ids may not start with an underscore");
    let (status, body) = couch
        .raw(
            "POST",
            "/strict/_find",
            Some("text/plain"),
            Bytes::from_static(b"{\"selector\":{}}"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("bad_content_type"))
    );
    let (status, _) = couch
        .call(
            "POST",
            "/strict/_find",
            Some(json!({"selector": {"n": {"$bogus": 1}}})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = couch
        .call("POST", "/strict/_find", Some(json!({"limit": 1})))
        .await;
    assert_eq!(status, 400, "a selector is required");
    let (status, body) = couch
        .call(
            "POST",
            "/strict/_find",
            Some(json!({"selector": {"n": 1}, "sort": ["n"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("no_usable_index"))
    );
    let big = Bytes::from(vec![b' '; (64 << 20) + 1]);
    let (status, _) = couch
        .raw("POST", "/strict/_bulk_docs", Some("application/json"), big)
        .await;
    assert_eq!(status, 413);
    let (status, _) = couch
        .call("GET", "/strict/_changes?since=banana", None)
        .await;
    assert_eq!(status, 400);

    // Deleting a database that does not exist is a 404 in CouchDB (pouchdb-server answers 200).
    let (status, body) = couch.call("DELETE", "/never-created", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // A rejected write leaves the previous state intact.
    let (_, ok) = couch
        .call("PUT", "/strict/kept", Some(json!({"v": 1})))
        .await;
    let (status, _) = couch
        .call(
            "PUT",
            "/strict/kept",
            Some(json!({"_rev": "1-0000", "v": 2})),
        )
        .await;
    assert_eq!(status, 409);
    let (_, kept) = couch.call("GET", "/strict/kept", None).await;
    assert_eq!(
        (kept["v"].clone(), kept["_rev"].clone()),
        (json!(1), ok["rev"].clone())
    );
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_survive_a_restart() {
    let dir = tests::temp_dir("docstore-restart");
    let store = embedded(&dir).await;
    let couch = Couch::new(store.addr);
    couch.call("PUT", "/kept", None).await;
    let (_, written) = couch
        .call("PUT", "/kept/doc", Some(json!({"v": "durable"})))
        .await;
    couch
        .call(
            "POST",
            "/kept/_index",
            Some(json!({"index": {"fields": ["v"]}})),
        )
        .await;
    store.stop().await;

    let store = embedded(&dir).await;
    let couch = Couch::new(store.addr);
    let (status, doc) = couch.call("GET", "/kept/doc", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (doc["v"].clone(), doc["_rev"].clone()),
        (json!("durable"), written["rev"].clone())
    );
    let (_, found) = couch
        .call(
            "POST",
            "/kept/_find",
            Some(json!({"selector": {"v": "durable"}})),
        )
        .await;
    assert_eq!(ids(&found["docs"]), ["doc"]);
    assert!(
        found.get("warning").is_none(),
        "the index survived too: {found}"
    );
    store.stop().await;
}
