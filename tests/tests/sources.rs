//! Sources kept in sync, through the real host running the real ingest component against the
//! embedded stores and model: a website crawled on loopback (robots.txt, a sitemap, redirects,
//! canonical URLs, validators), re-synced with nothing changed, with a page changed and one gone;
//! signed webhooks (Standard Webhooks and GitHub); the operator's sync-due; SSRF refusals; bad input.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::ingest::webhook;
use tests::accounts::{OPERATOR, Owner, bearer, call};
use tests::site::{self, Resource, Site};
use tests::stores::Inspector;
use tests::{Options, exchange, start, temp_dir, workspace_root};

async fn host_for(site: &Site) -> host::RunningHost {
    host_with(site, &[]).await
}

async fn host_with(site: &Site, vars: &[(&str, String)]) -> host::RunningHost {
    host_in(site, vars, &temp_dir("sources")).await
}

async fn host_in(
    site: &Site,
    vars: &[(&str, String)],
    data_dir: &std::path::Path,
) -> host::RunningHost {
    let mut env = BTreeMap::from([
        (
            "SPIN_VARIABLE_AUTH_OPERATOR_KEY".to_string(),
            OPERATOR.to_string(),
        ),
        (
            "SPIN_VARIABLE_CRAWL_ALLOWED_ORIGIN".to_string(),
            site.origin(),
        ),
    ]);
    for (name, value) in vars {
        env.insert(name.to_string(), value.clone());
    }
    let options = Options {
        env,
        data_dir: Some(data_dir.to_path_buf()),
        request_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    start(&workspace_root().join("spin.toml"), options)
        .await
        .unwrap()
}

/// Polls a job until it is no longer running.
async fn finished(addr: SocketAddr, key: &str, project: &str, job: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = call(
            addr,
            "GET",
            &format!("/v1/projects/{project}/jobs/{job}"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        if body["status"] != "running" {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "job {job} still running: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sync(addr: SocketAddr, key: &str, project: &str, source: &str) -> Value {
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources/{source}/sync"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let job = reply.json()["job"]["id"].as_str().unwrap().to_string();
    let done = finished(addr, key, project, &job).await;
    assert_eq!(done["status"], "done", "{done}");
    done
}

async fn documents(addr: SocketAddr, key: &str, project: &str) -> Vec<Value> {
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/documents?limit=200"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["documents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn uris(docs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = docs
        .iter()
        .filter_map(|d| d["source_uri"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// The site: `/` links to three pages, one of them through a redirect and one a duplicate under
/// another URL; robots.txt keeps us out of /private/; the sitemap lists an orphan page.
fn build(site: &Site) {
    let page = |title: &str, body: &str| {
        Resource::html(format!(
            "<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{body}</p></main></body></html>"
        ))
    };
    site.put("/", Resource::html(
        "<html><head><title>Home</title></head><body><main><h1>Home</h1><p>Welcome to the help centre of the lighthouse company.</p>\
         <a href=\"/guide\">Guide</a> <a href=\"/old-pricing\">Pricing</a> <a href=\"/guide?ref=nav#top\">Guide again</a>\
         <a href=\"/private/secret\">Secret</a> <a href=\"/logo.png\">Logo</a> <a href=\"/to-store\">Store</a>\
         <a href=\"/to-metadata\">Metadata</a> <a href=\"/loop\">Loop</a></main></body></html>"));
    site.put(
        "/guide",
        page(
            "Guide",
            "To install the lamp, unscrew the lens cap and insert two batteries.",
        ),
    );
    site.put("/guide?ref=nav", Resource::html(
        "<html><head><title>Guide</title><link rel=\"canonical\" href=\"/guide\"></head><body><p>To install the lamp, unscrew the lens cap.</p></body></html>"));
    site.put("/old-pricing", Resource::redirect(301, "/pricing"));
    site.put(
        "/pricing",
        page(
            "Pricing",
            "The lamp costs forty euros and ships within two days.",
        ),
    );
    site.put(
        "/orphan",
        page(
            "Warranty",
            "The warranty lasts three years from the date of purchase.",
        ),
    );
    site.put(
        "/private/secret",
        page("Secret", "Nobody should index this page."),
    );
    site.put(
        "/logo.png",
        Resource::text("image/png", vec![0x89, b'P', b'N', b'G']),
    );
    site.put("/loop", Resource::redirect(302, "/loop"));
    site.put(
        "/robots.txt",
        Resource::text("text/plain", "User-agent: *\nDisallow: /private/\n"),
    );
    site.put("/sitemap.xml", Resource::text("application/xml", format!(
        "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"><url><loc>{}</loc></url><url><loc>{}</loc></url></urlset>",
        site.url("/orphan"), site.url("/guide"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_is_crawled_and_kept_in_sync() {
    let site = site::start().await;
    build(&site);
    let host = host_for(&site).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "crawl@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();
    // Redirects to the embedded stores and to the metadata service are refused per page.
    let store_port = host
        .services
        .iter()
        .find(|s| s.name == "docstore")
        .map(|s| s.addr.port())
        .unwrap();
    site.put(
        "/to-store",
        Resource::redirect(302, &format!("http://127.0.0.1:{store_port}/_all_dbs")),
    );
    site.put(
        "/to-metadata",
        Resource::redirect(302, "http://169.254.169.254/latest/meta-data/"),
    );

    let reply = call(addr, "POST", &format!("/v1/projects/{project}/sources"), Some(&key), Some(json!({
        "id": "help", "kind": "website", "url": site.url("/"), "max_pages": 50, "tags": ["help"],
    }))).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let job = reply.json()["job"]["id"].as_str().unwrap().to_string();
    let first = finished(addr, &key, &project, &job).await;
    assert_eq!(first["status"], "done", "{first}");
    let summary = &first["summary"];
    assert_eq!(summary["added"], 4, "home, guide, pricing, orphan: {first}");
    assert_eq!(summary["removed"], 0, "{first}");
    let errors = first["page_errors"].to_string();
    for expected in [
        "logo.png",
        "image/png",
        "to-store",
        "only public addresses",
        "to-metadata",
        "loop",
        "redirects",
    ] {
        assert!(errors.contains(expected), "{expected} in {errors}");
    }
    assert!(
        site.requests("/private/secret").is_empty(),
        "robots.txt was not honoured"
    );
    let docs = documents(addr, &key, &project).await;
    assert_eq!(
        uris(&docs),
        [
            site.url("/"),
            site.url("/guide"),
            site.url("/orphan"),
            site.url("/pricing")
        ]
    );
    assert!(
        docs.iter().all(|d| d["tags"] == json!(["help"])),
        "{docs:?}"
    );

    // The source shows its pages and the last sync.
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/sources/help"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let source = reply.json();
    assert_eq!(source["last_sync"]["summary"]["added"], 4, "{source}");
    assert!(
        source["page_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "failed")
    );

    // Nothing changed: every page answers 304 or hashes the same; no document gets a new version.
    site.clear_log();
    let again = sync(addr, &key, &project, "help").await;
    assert_eq!(again["summary"]["added"], 0, "{again}");
    assert_eq!(again["summary"]["updated"], 0, "{again}");
    assert_eq!(again["summary"]["removed"], 0, "{again}");
    assert!(
        again["summary"]["unchanged"].as_u64().unwrap() >= 4,
        "{again}"
    );
    assert_eq!(
        site.requests("/guide"),
        [304],
        "conditional requests: {:?}",
        site.log()
    );
    let versions: Vec<Value> = documents(addr, &key, &project)
        .await
        .iter()
        .map(|d| d["version"].clone())
        .collect();
    assert!(versions.iter().all(|v| *v == 1), "{versions:?}");

    // One page changes, one disappears, one is no longer linked.
    site.put("/guide", Resource::html("<html><head><title>Guide</title></head><body><p>To install the lamp, unscrew the lens cap and insert three batteries.</p></body></html>"));
    site.remove("/pricing");
    site.remove("/old-pricing");
    let third = sync(addr, &key, &project, "help").await;
    assert_eq!(third["summary"]["updated"], 1, "{third}");
    assert_eq!(third["summary"]["removed"], 1, "{third}");
    let docs = documents(addr, &key, &project).await;
    assert_eq!(
        uris(&docs),
        [site.url("/"), site.url("/guide"), site.url("/orphan")]
    );
    let guide = docs
        .iter()
        .find(|d| d["source_uri"] == site.url("/guide"))
        .unwrap();
    assert_eq!(guide["version"], 2, "{guide}");

    // A sync while one runs is a conflict; deleting the source removes its documents.
    let reply = call(
        addr,
        "DELETE",
        &format!("/v1/projects/{project}/sources/help"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["documents_removed"], 3, "{}", reply.text());
    assert!(documents(addr, &key, &project).await.is_empty());
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/sources/help"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_refuse_bad_input_and_other_projects() {
    let site = site::start().await;
    build(&site);
    let data_dir = temp_dir("sources");
    let host = host_in(&site, &[], &data_dir).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "refuse@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let reader = owner.key(addr, &["search"]).await;
    let project = owner.project.clone();
    let path = format!("/v1/projects/{project}/sources");
    for (body, needle) in [
        (json!({"kind": "website"}), "`url`"),
        (
            json!({"kind": "ftp", "url": "ftp://example.com/"}),
            "`kind`",
        ),
        (
            json!({"kind": "url", "url": "ftp://example.com/x"}),
            "http and https",
        ),
        (
            json!({"kind": "url", "url": "http://127.0.0.1:5984/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://2130706433/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://0177.0.0.1/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://[::1]:6333/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://169.254.169.254/latest/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://10.0.0.1/"}),
            "only public addresses",
        ),
        (
            json!({"kind": "url", "url": "http://localhost:3000/"}),
            "not a public host",
        ),
        (
            json!({"kind": "url", "url": "http://ingest.spin.internal/"}),
            "not a public host",
        ),
        (
            json!({"kind": "url", "url": "https://user:pw@example.com/"}),
            "credentials",
        ),
        (
            json!({"kind": "website", "url": site.url("/"), "max_pages": 9999}),
            "max_pages",
        ),
        (
            json!({"kind": "website", "url": site.url("/"), "sync_every": "1s"}),
            "sync_every",
        ),
        (
            json!({"kind": "website", "url": site.url("/"), "include": ["docs"]}),
            "start with",
        ),
        (
            json!({"kind": "website", "url": site.url("/"), "colour": "red"}),
            "unknown field",
        ),
    ] {
        let reply = call(addr, "POST", &path, Some(&key), Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(
            reply.text().contains(needle),
            "{body}: {} lacks {needle}",
            reply.text()
        );
    }
    let reply = call(
        addr,
        "POST",
        &path,
        Some(&reader),
        Some(json!({"kind": "url", "url": site.url("/guide")})),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    // Settings are small: a body of more than 64 KiB is refused before it is read whole.
    for path in [path.clone(), format!("/v1/projects/{project}/webhooks")] {
        let padded = json!({"kind": "url", "url": site.url("/guide"), "title": "x".repeat(70_000)});
        let reply = call(addr, "POST", &path, Some(&key), Some(padded)).await;
        assert_eq!(reply.status, 413, "{path}: {}", reply.text());
        assert_eq!(
            reply.json()["error"]["code"],
            "payload_too_large",
            "{}",
            reply.text()
        );
    }
    let listed = call(addr, "GET", &path, Some(&key), None).await;
    assert_eq!(listed.json()["sources"], json!([]), "{}", listed.text());
    assert!(documents(addr, &key, &project).await.is_empty());

    // A url source, then another project's credentials see nothing of it.
    let reply = call(
        addr,
        "POST",
        &path,
        Some(&key),
        Some(json!({"id": "one", "kind": "url", "url": site.url("/guide"), "sync_every": "6h"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(reply.json()["source"]["next_sync_at"].as_u64().is_some());
    let job = reply.json()["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        finished(addr, &key, &project, &job).await["summary"]["added"],
        1
    );
    let other = Owner::new(addr, "other@example.com").await;
    let other_key = other.key(addr, &["ingest", "search"]).await;
    for (method, suffix) in [
        ("GET", "sources/one"),
        ("POST", "sources/one/sync"),
        ("DELETE", "sources/one"),
        ("GET", &format!("jobs/{job}")),
    ] {
        let reply = call(
            addr,
            method,
            &format!("/v1/projects/{}/{suffix}", other.project),
            Some(&other_key),
            None,
        )
        .await;
        assert_eq!(reply.status, 404, "{method} {suffix}: {}", reply.text());
        let reply = call(
            addr,
            method,
            &format!("/v1/projects/{project}/{suffix}"),
            Some(&other_key),
            None,
        )
        .await;
        assert!(
            matches!(reply.status, 403 | 404),
            "{method} {suffix}: {}",
            reply.text()
        );
    }
    // The operator's sync-due: nothing is due yet, and it takes the operator key only.
    let reply = call(addr, "POST", "/v1/admin/sync-due", Some(&key), None).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let reply = call(
        addr,
        "POST",
        "/v1/admin/sync-due",
        Some(&bearer(OPERATOR)),
        None,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json()["started"], json!([]), "{}", reply.text());
    // The schedule keeps an entry per scheduled source, ordered by time, so that sync-due reads
    // only what is due.
    let stores = tests::stores::Inspector::new(&host, &data_dir);
    let path = format!("/edgerag_ingest/source:{project}:one");
    let entry = |at: u64| format!("/edgerag_ingest/due:{at:015}:{project}:one");
    let mut record = stores.couch("GET", &path, None).await;
    let at = record["next_sync_at"].as_u64().unwrap();
    let scheduled = stores.couch("GET", &entry(at), None).await;
    assert!(scheduled["_rev"].is_string(), "{scheduled}");
    // Once its time has come (set back in the store here, rather than waiting six hours), and in a
    // store from before the schedule (the record's time alone: no entry, no marker), the
    // operator's call starts it, and moves its next time on.
    let rev = scheduled["_rev"].as_str().unwrap();
    stores
        .couch("DELETE", &format!("{}?rev={rev}", entry(at)), None)
        .await;
    let marker = stores
        .couch("GET", "/edgerag_ingest/schedule:v1", None)
        .await;
    let rev = marker["_rev"].as_str().unwrap();
    stores
        .couch(
            "DELETE",
            &format!("/edgerag_ingest/schedule:v1?rev={rev}"),
            None,
        )
        .await;
    record["next_sync_at"] = json!(1);
    stores.couch("PUT", &path, Some(record)).await;
    let reply = call(
        addr,
        "POST",
        "/v1/admin/sync-due",
        Some(&bearer(OPERATOR)),
        None,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let started = reply.json()["started"].clone();
    assert_eq!(started.as_array().map(Vec::len), Some(1), "{started}");
    assert_eq!(started[0]["source"], "one", "{started}");
    let job = started[0]["job"].as_str().unwrap().to_string();
    assert_eq!(
        finished(addr, &key, &project, &job).await["summary"]["unchanged"],
        1
    );
    let record = stores.couch("GET", &path, None).await;
    let next = record["next_sync_at"].as_u64().unwrap();
    assert!(next > 1_000_000, "{record}");
    assert!(stores.couch("GET", &entry(next), None).await["_rev"].is_string());
    assert_eq!(
        stores.couch("GET", &entry(1), None).await["error"],
        "not_found"
    );
    let reply = call(
        addr,
        "POST",
        "/v1/admin/sync-due",
        Some(&bearer(OPERATOR)),
        None,
    )
    .await;
    assert_eq!(reply.json()["started"], json!([]), "{}", reply.text());
    host.stop().await;
}

async fn deliver(
    addr: SocketAddr,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> tests::Reply {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    exchange(addr, request.body(body.to_string()).unwrap())
        .await
        .unwrap()
}

fn standard(secret: &str, id: &str, body: &str, at: u64) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", at.to_string()),
        (
            "webhook-signature",
            webhook::sign_standard(secret, id, at, body.as_bytes()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_drive_syncs_and_documents() {
    let site = site::start().await;
    build(&site);
    let host = host_for(&site).await;
    let addr = host.addr;
    let owner = Owner::new(addr, "hooks@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources"),
        Some(&key),
        Some(json!({"id": "guide", "kind": "url", "url": site.url("/guide")})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    finished(
        addr,
        &key,
        &project,
        reply.json()["job"]["id"].as_str().unwrap(),
    )
    .await;

    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/webhooks"),
        Some(&key),
        Some(json!({"sources": ["guide"]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let hook = reply.json();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let url = format!("/v1/hooks/{}", hook["id"].as_str().unwrap());
    assert!(hook["url"].as_str().unwrap().ends_with(&url), "{hook}");
    let listed = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/webhooks"),
        Some(&key),
        None,
    )
    .await;
    assert!(
        !listed.text().contains(&secret),
        "the secret is shown once only"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // source.sync: accepted within a second, with the job; a replay does nothing.
    let body = json!({"type": "source.sync", "data": {"source": "guide"}}).to_string();
    let started = Instant::now();
    let reply = deliver(addr, &url, &standard(&secret, "msg_1", &body, now), &body).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let job = reply.json()["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(finished(addr, &key, &project, &job).await["status"], "done");
    let replay = deliver(addr, &url, &standard(&secret, "msg_1", &body, now), &body).await;
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["replayed"], true);

    // Refused: no signature, a wrong one, another endpoint's secret, a stale timestamp.
    let unsigned = deliver(addr, &url, &[], &body).await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.text());
    let mut forged = standard(&secret, "msg_2", &body, now);
    forged[2].1 = webhook::sign_standard(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "msg_2",
        now,
        body.as_bytes(),
    );
    assert_eq!(deliver(addr, &url, &forged, &body).await.status, 401);
    let stale = deliver(
        addr,
        &url,
        &standard(&secret, "msg_3", &body, now - 600),
        &body,
    )
    .await;
    assert_eq!(stale.status, 401, "{}", stale.text());
    let tampered = deliver(
        addr,
        &url,
        &standard(&secret, "msg_4", &body, now),
        &body.replace("guide", "other"),
    )
    .await;
    assert_eq!(tampered.status, 401, "{}", tampered.text());
    // Signed but malformed: 400.
    for bad in [
        "not json",
        "{\"data\": {}}",
        "{\"type\": \"source.sync\", \"data\": {}}",
        "{\"type\": \"user.created\", \"data\": {}}",
    ] {
        let reply = deliver(
            addr,
            &url,
            &standard(&secret, &format!("bad-{}", bad.len()), bad, now),
            bad,
        )
        .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }

    // document.upsert and document.delete.
    let body = json!({"type": "document.upsert", "data": {"id": "faq-1", "title": "Opening hours", "text": "The shop opens at nine and closes at six."}}).to_string();
    let reply = deliver(addr, &url, &standard(&secret, "msg_5", &body, now), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/documents/faq-1"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // By URL: fetched as a crawl fetches, so a private address is refused.
    let body =
        json!({"type": "document.upsert", "data": {"id": "guide-copy", "url": site.url("/guide")}})
            .to_string();
    let reply = deliver(addr, &url, &standard(&secret, "msg_8", &body, now), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["document"]["source_uri"], site.url("/guide"));
    let body = json!({"type": "document.upsert", "data": {"id": "meta", "url": "http://169.254.169.254/latest/"}}).to_string();
    let reply = deliver(addr, &url, &standard(&secret, "msg_9", &body, now), &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = json!({"type": "document.delete", "data": {"id": "faq-1"}}).to_string();
    let reply = deliver(addr, &url, &standard(&secret, "msg_6", &body, now), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/documents/faq-1"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());

    // GitHub's scheme: ping, then a push that syncs the endpoint's sources.
    let ping = "{\"zen\": \"Keep it logically awesome.\"}";
    let github = |event: &str, delivery: &str, body: &str| {
        vec![
            ("x-github-event", event.to_string()),
            ("x-github-delivery", delivery.to_string()),
            (
                "x-hub-signature-256",
                webhook::sign_github(&secret, body.as_bytes()),
            ),
        ]
    };
    let reply = deliver(addr, &url, &github("ping", "gh-1", ping), ping).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let push = "{\"ref\": \"refs/heads/main\", \"commits\": []}";
    let reply = deliver(addr, &url, &github("push", "gh-2", push), push).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let mut wrong = github("push", "gh-3", push);
    wrong[2].1 = webhook::sign_github("not the secret", push.as_bytes());
    assert_eq!(deliver(addr, &url, &wrong, push).await.status, 401);

    // Unknown endpoints are 404; a deleted endpoint takes nothing.
    assert_eq!(
        deliver(addr, "/v1/hooks/wh000000000000000000000000", &[], "{}")
            .await
            .status,
        404
    );
    let reply = call(
        addr,
        "DELETE",
        &format!(
            "/v1/projects/{project}{}",
            url.replace("/v1/hooks", "/webhooks")
        ),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = json!({"type": "source.sync", "data": {"source": "guide"}}).to_string();
    assert_eq!(
        deliver(addr, &url, &standard(&secret, "msg_7", &body, now), &body)
            .await
            .status,
        404
    );
    host.stop().await;
}

/// Where a source's documents would still be (jobs keep their history and are not counted).
async fn remains(inspector: &Inspector, source: &str) -> Vec<String> {
    inspector
        .traces(&format!("{source}-"))
        .await
        .into_iter()
        .filter(|trace| !trace.contains("\"job:"))
        .collect()
}

async fn create_source(addr: SocketAddr, key: &str, project: &str, body: Value) -> String {
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources"),
        Some(key),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["job"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_syncs_finish_and_deleting_a_source_leaves_nothing_even_mid_sync() {
    // 300 pages are ten steps of 32 and more: each step starts the next after answering, so the
    // host must not count them as one ever deeper chain (its loop guard stops at 8).
    let site = site::start().await;
    site::generate(&site, 300, 8, 40);
    let data_dir = temp_dir("sources");
    let host = host_in(&site, &[], &data_dir).await;
    let addr = host.addr;
    let inspector = Inspector::new(&host, &data_dir);
    let owner = Owner::new(addr, "long@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();
    let spec = |id: &str| json!({"id": id, "kind": "website", "url": site.url("/"), "max_pages": 300, "max_depth": 5});
    let job = create_source(addr, &key, &project, spec("bigzq")).await;
    let done = finished(addr, &key, &project, &job).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["summary"]["added"], 300, "{done}");

    // A second source over the same site, deleted while its sync is half way: the sync stops,
    // and nothing of that source stays in any store, whatever its steps wrote.
    let job = create_source(addr, &key, &project, spec("midzq")).await;
    let started = Instant::now();
    loop {
        let reply = call(
            addr,
            "GET",
            &format!("/v1/projects/{project}/jobs/{job}"),
            Some(&key),
            None,
        )
        .await;
        let body = reply.json();
        assert_eq!(body["status"], "running", "the sync ended first: {body}");
        if body["items_done"].as_u64().unwrap_or(0) >= 96 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = call(
        addr,
        "DELETE",
        &format!("/v1/projects/{project}/sources/midzq"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        reply.status,
        202,
        "more than 64 pages go by a job: {}",
        reply.text()
    );
    let removal = reply.json()["job"]["id"].as_str().unwrap().to_string();
    // A sync of a source being deleted is refused.
    let again = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources/midzq/sync"),
        Some(&key),
        None,
    )
    .await;
    assert!(
        [404, 409].contains(&again.status),
        "{} {}",
        again.status,
        again.text()
    );
    let cancelled = finished(addr, &key, &project, &job).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let removed = finished(addr, &key, &project, &removal).await;
    assert_eq!(removed["status"], "done", "{removed}");
    let gone = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/sources/midzq"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(remains(&inspector, "midzq").await, Vec::<String>::new());
    // The other source over the same pages kept all of its documents.
    let big = call(
        addr,
        "GET",
        &format!("/v1/projects/{project}/sources/bigzq?limit=1"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(big.json()["pages"], 300, "{}", big.text());
    let points = inspector.counts().await.points;
    assert!(points >= 300, "{points}");

    // The large source goes by a job too, and the stores end empty of knowledge.
    let reply = call(
        addr,
        "DELETE",
        &format!("/v1/projects/{project}/sources/bigzq"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let removal = reply.json()["job"]["id"].as_str().unwrap().to_string();
    let removed = finished(addr, &key, &project, &removal).await;
    assert_eq!(removed["status"], "done", "{removed}");
    assert_eq!(removed["documents_removed"], 300, "{removed}");
    assert_eq!(remains(&inspector, "bigzq").await, Vec::<String>::new());
    assert_eq!(inspector.counts().await.points, 0);
    host.stop().await;
}

/// A repository tree as GitHub's API lists it (`git/trees/:branch?recursive=1`).
fn tree(files: &[(&str, &str)]) -> Resource {
    let mut entries: Vec<Value> = files
        .iter()
        .map(|(path, sha)| json!({"path": path, "mode": "100644", "type": "blob", "sha": sha, "size": 40}))
        .collect();
    entries.push(json!({"path": "docs", "mode": "040000", "type": "tree", "sha": "d0"}));
    Resource::text(
        "application/json",
        json!({"sha": "t", "truncated": false, "tree": entries}).to_string(),
    )
}

fn file(text: &str) -> Resource {
    Resource::text("application/vnd.github.raw", text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_repository_is_synced_and_follows_pushes() {
    let site = site::start().await;
    // A fake of GitHub's REST API (a third party we do not ship), which wants the token.
    let github = site::start().await;
    github.state.lock().unwrap().authorization = Some("Bearer test-token".into());
    let contents = |path: &str| format!("/repos/acme/docs/contents/{path}?ref=main");
    github.put(
        "/repos/acme/docs/git/trees/main?recursive=1",
        tree(&[
            ("README.md", "a1"),
            ("docs/setup.md", "b1"),
            ("docs/faq.md", "f1"),
            ("src/main.rs", "c1"),
        ]),
    );
    github.put(
        &contents("README.md"),
        file("# Acme docs\n\nThe lamp manual lives here."),
    );
    github.put(
        &contents("docs/setup.md"),
        file("# Setup\n\nInsert two batteries and close the lid."),
    );
    github.put(
        &contents("docs/faq.md"),
        file("# FAQ\n\nThe lamp is waterproof to one metre."),
    );
    github.put(&contents("src/main.rs"), file("fn main() {}"));
    let host = host_with(
        &site,
        &[
            ("SPIN_VARIABLE_GITHUB_API_URL", github.origin()),
            ("SPIN_VARIABLE_GITHUB_TOKEN", "test-token".to_string()),
        ],
    )
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "repo@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();
    for (body, needle) in [
        (json!({"kind": "github", "repo": "acme"}), "owner/name"),
        (
            json!({"kind": "github", "repo": "acme/docs", "branch": "a b"}),
            "branch",
        ),
        (
            json!({"kind": "github", "repo": "acme/docs", "paths": ["docs/["]}),
            "glob",
        ),
    ] {
        let reply = call(
            addr,
            "POST",
            &format!("/v1/projects/{project}/sources"),
            Some(&key),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(reply.text().contains(needle), "{body}: {}", reply.text());
    }
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources"),
        Some(&key),
        Some(json!({
            "id": "repo", "kind": "github", "repo": "acme/docs",
        })),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let done = finished(
        addr,
        &key,
        &project,
        reply.json()["job"]["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["summary"]["added"], 3, "{done}");
    assert!(
        github.requests(&contents("src/main.rs")).is_empty(),
        "a file outside the globs was read"
    );
    let uris = uris(&documents(addr, &key, &project).await);
    assert!(
        uris.contains(&format!(
            "{}/acme/docs/blob/main/docs/setup.md",
            github.origin()
        )),
        "{uris:?}"
    );

    // A push: setup.md changed, README.md removed, new.md added, faq.md untouched.
    github.put(
        "/repos/acme/docs/git/trees/main?recursive=1",
        tree(&[
            ("docs/setup.md", "b2"),
            ("docs/faq.md", "f1"),
            ("docs/new.md", "n1"),
            ("src/main.rs", "c1"),
        ]),
    );
    github.put(
        &contents("docs/setup.md"),
        file("# Setup\n\nInsert three batteries and close the lid."),
    );
    github.put(
        &contents("docs/new.md"),
        file("# Recycling\n\nReturn old lamps to any shop."),
    );
    github.clear_log();
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/webhooks"),
        Some(&key),
        Some(json!({"events": ["github.push"]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let hook = reply.json();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let url = format!("/v1/hooks/{}", hook["id"].as_str().unwrap());
    let push =
        json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/docs"}}).to_string();
    let headers = |delivery: &str, body: &str| {
        vec![
            ("x-github-event", "push".to_string()),
            ("x-github-delivery", delivery.to_string()),
            (
                "x-hub-signature-256",
                webhook::sign_github(&secret, body.as_bytes()),
            ),
        ]
    };
    let reply = deliver(addr, &url, &headers("push-1", &push), &push).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let job = reply.json()["jobs"][0]["id"].as_str().unwrap().to_string();
    let done = finished(addr, &key, &project, &job).await;
    let summary = &done["summary"];
    let counts = ["added", "updated", "removed", "unchanged"].map(|k| summary[k].as_u64());
    assert_eq!(counts, [Some(1); 4], "{done}");
    assert!(
        github.requests(&contents("docs/faq.md")).is_empty(),
        "an unchanged blob was fetched again"
    );
    assert_eq!(documents(addr, &key, &project).await.len(), 3);
    // A push to another branch syncs nothing.
    let other =
        json!({"ref": "refs/heads/dev", "repository": {"full_name": "acme/docs"}}).to_string();
    let reply = deliver(addr, &url, &headers("push-2", &other), &other).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json()["jobs"], json!([]), "{}", reply.text());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pages_slow_servers_sitemaps_and_robots_are_per_page_errors() {
    let site = site::start().await;
    site.put("/", Resource::html(
        "<html><head><title>Home</title></head><body><p>The home page of a site with broken parts.</p>\
         <a href=\"/huge\">Huge</a> <a href=\"/empty\">Empty</a> <a href=\"/gone\">Gone</a> <a href=\"/dated\">Dated</a> <a href=\"/slow\">Slow</a></body></html>"));
    // A server that never answers in time.
    site.put(
        "/slow",
        Resource {
            delay: Duration::from_secs(6),
            ..Resource::html("<html><body><p>Too late.</p></body></html>")
        },
    );
    // A page that gives Last-Modified but no ETag.
    site.put(
        "/dated",
        Resource {
            etag: false,
            ..Resource::html(
                "<html><body><p>Opening hours change with the seasons.</p></body></html>",
            )
        },
    );
    site.put(
        "/huge",
        Resource::html(format!(
            "<html><body><p>{}</p></body></html>",
            "big ".repeat(1_600_000)
        )),
    );
    site.put(
        "/empty",
        Resource::html("<html><body><nav>menu</nav></body></html>"),
    );
    site.put(
        "/robots.txt",
        Resource::text(
            "text/plain",
            vec![0xff, 0xfe, 0x00, b'\n', b'D', b'i', b's'],
        ),
    );
    site.put(
        "/sitemap.xml",
        Resource::text("application/xml", "<urlset><url><loc>http://x/</url>"),
    );
    let host = host_with(
        &site,
        &[("SPIN_VARIABLE_CRAWL_FETCH_TIMEOUT", "2".to_string())],
    )
    .await;
    let addr = host.addr;
    let owner = Owner::new(addr, "broken@example.com").await;
    let key = owner.key(addr, &["ingest", "search"]).await;
    let project = owner.project.clone();
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/sources"),
        Some(&key),
        Some(json!({
            "kind": "website", "url": site.url("/"),
        })),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let done = finished(
        addr,
        &key,
        &project,
        reply.json()["job"]["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["summary"]["added"], 2, "{done}");
    let errors = done["page_errors"].to_string();
    for needle in [
        "/huge",
        "more than the 5242880",
        "/empty",
        "no text",
        "sitemap",
        "not well-formed",
        "/slow",
        "no answer within 2 s",
    ] {
        assert!(errors.contains(needle), "{needle} in {errors}");
    }
    // A page that is 404 from the start is no error and no document.
    assert!(!errors.contains("/gone"), "{errors}");
    assert_eq!(documents(addr, &key, &project).await.len(), 2);
    // A host that cannot be reached is the page's error, for one URL and for a whole website.
    for kind in ["url", "website"] {
        let job = create_source(
            addr,
            &key,
            &project,
            json!({"kind": kind, "url": "http://edgerag-unreachable.invalid/start"}),
        )
        .await;
        let done = finished(addr, &key, &project, &job).await;
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["summary"]["added"], 0, "{done}");
        let start = done["page_errors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == "http://edgerag-unreachable.invalid/start");
        assert!(
            start.is_some_and(|e| e["error"] == "the host name does not resolve"),
            "{done}"
        );
    }
    assert_eq!(documents(addr, &key, &project).await.len(), 2);
    // The re-sync asks with If-Modified-Since alone, and the page answers 304.
    let source = done["source"].as_str().unwrap().to_string();
    site.clear_log();
    sync(addr, &key, &project, &source).await;
    assert_eq!(site.requests("/dated"), [304], "{:?}", site.log());
    host.stop().await;
}
