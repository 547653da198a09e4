//! The host, end to end: real `.wasm` components served by the real host over real loopback HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tests::{
    Options, get, probe_p2_source, probe_source, send, send_request, start, wasm_path,
    workspace_root, write_manifest,
};

/// A loopback HTTP server answering `from target` to everything; it counts the connections made to it.
async fn from_target_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"from target"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (target, connections)
}

fn probe_app(routes: &[(&str, &str)], extra: &str) -> String {
    let mut text = String::from("spin_manifest_version = 2\n[application]\nname = \"probe-app\"\n");
    let mut components = Vec::new();
    for (route, component) in routes {
        text.push_str(&format!(
            "[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n"
        ));
        if !components.contains(component) {
            components.push(component);
        }
    }
    for component in components {
        text.push_str(&format!(
            "[component.{component}]\nsource = \"{}\"\n[component.{component}.variables]\nname = \"{component}\"\n",
            probe_source()
        ));
    }
    text.push_str(extra);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_manifest_serves_every_function_health_route() {
    let host = start(&workspace_root().join("spin.toml"), Options::default())
        .await
        .unwrap();
    for name in ["auth", "ingest", "search", "respond"] {
        let reply = get(host.addr, &format!("/v1/{name}/health")).await.unwrap();
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["service"], name);
        assert_eq!(body["status"], "ok");
        assert_eq!(reply.headers["content-type"], "application/json");

        let missing = get(host.addr, &format!("/v1/{name}/no-such-endpoint"))
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
        assert_eq!(missing.json()["error"]["code"], "not_found");

        let wrong_method = send(host.addr, "DELETE", &format!("/v1/{name}/health"), "")
            .await
            .unwrap();
        assert_eq!(wrong_method.status, 405);
        assert_eq!(wrong_method.headers["allow"], "GET");
    }
    let unrouted = get(host.addr, "/v2/elsewhere").await.unwrap();
    assert_eq!(unrouted.status, 404);
    assert_eq!(unrouted.json()["error"]["code"], "not_found");
    host.stop().await;
}

async fn access(
    addr: std::net::SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> tests::Reply {
    let mut request = http::Request::get(path).header("host", addr.to_string());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = send_request(
        addr,
        request.body(http_body_util::Empty::<Bytes>::new()).unwrap(),
    )
    .await
    .unwrap();
    let (parts, body) = response.into_parts();
    tests::Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_ask_the_composed_auth_component() {
    let host = start(&workspace_root().join("spin.toml"), Options::default())
        .await
        .unwrap();
    for name in ["ingest", "search", "respond"] {
        let path = format!("/v1/{name}/projects/p1/access");
        let missing = access(host.addr, &path, None).await;
        assert_eq!(missing.status, 401, "{name}");
        assert_eq!(missing.json()["error"]["code"], "unauthenticated");
        assert!(
            missing.text().contains("missing credential"),
            "{}",
            missing.text()
        );

        let forged = access(host.addr, &path, Some("Bearer not-a-token")).await;
        assert_eq!(forged.status, 401, "{name}");
        assert!(
            forged.text().contains("access token is not valid"),
            "{}",
            forged.text()
        );

        let other_scheme = access(host.addr, &path, Some("Basic dTpw")).await;
        assert_eq!(other_scheme.status, 401, "{name}");

        let bad_project = access(
            host.addr,
            &format!("/v1/{name}/projects/a.b/access"),
            Some("Bearer x"),
        )
        .await;
        assert_eq!(bad_project.status, 400, "{name}: {}", bad_project.text());
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncomposed_function_is_refused_for_its_missing_auth_import() {
    let manifest = write_manifest(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"raw\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"search\"\n[component.search]\nsource = \"{}\"\n",
        wasm_path("search").display()
    ));
    let error = format!(
        "{:#}",
        start(&manifest, Options::default()).await.unwrap_err()
    );
    assert!(error.contains("edgerag:platform/auth"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_route_wins() {
    let manifest = write_manifest(&probe_app(
        &[
            ("/...", "wide"),
            ("/api/...", "mid"),
            ("/api/v2/...", "narrow"),
            ("/api/v2/whoami", "exact"),
            ("/users/:id/whoami", "param"),
        ],
        "",
    ));
    let host = start(&manifest, Options::default()).await.unwrap();
    for (path, expected) in [
        ("/whoami", "wide"),
        ("/other/whoami", "wide"),
        ("/api/whoami", "mid"),
        ("/api2/whoami", "wide"),
        ("/api/v1/whoami", "mid"),
        ("/api/v2/x/whoami", "narrow"),
        ("/api/v2/whoami", "exact"),
        ("/users/7/whoami", "param"),
        ("/users/7/8/whoami", "wide"),
    ] {
        let reply = get(host.addr, path).await.unwrap();
        assert_eq!((path, reply.text().as_str()), (path, expected));
    }

    let headers = get(host.addr, "/api/v2/deep/path/headers")
        .await
        .unwrap()
        .json();
    assert_eq!(headers["spin-matched-route"], "/api/v2/...");
    assert_eq!(headers["spin-raw-component-route"], "/api/v2/...");
    assert_eq!(headers["spin-component-route"], "/api/v2");
    assert_eq!(headers["spin-path-info"], "/deep/path/headers");
    assert_eq!(headers["spin-base-path"], "/");
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{}/api/v2/deep/path/headers", host.addr)
    );
    assert!(
        headers["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_spin_headers_are_replaced() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let host = start(&manifest, Options::default()).await.unwrap();
    let request = http::Request::get("/p/headers")
        .header("host", host.addr.to_string())
        .header("spin-path-info", "/forged")
        .header("spin-forged", "yes")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = send_request(host.addr, request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let headers: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(headers["spin-path-info"], "/headers");
    assert!(headers.get("spin-forged").is_none(), "{headers}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_defaults_templates_and_overrides() {
    let extra = r#"
[variables]
greeting = { default = "hello" }
region = { default = "eu" }
token = { required = true, secret = true }
[component.probe.variables]
phrase = "{{ greeting }} from {{region}}"
token = "{{ token }}"
"#;
    let text = probe_app(&[("/p/...", "probe")], "")
        .replace("[component.probe.variables]\nname = \"probe\"\n", "")
        + extra;
    let manifest = write_manifest(&text);

    let mut options = Options {
        env: BTreeMap::from([("SPIN_VARIABLE_TOKEN".to_string(), "s3cret".to_string())]),
        ..Options::default()
    };
    let host = start(&manifest, options.clone()).await.unwrap();
    assert_eq!(
        get(host.addr, "/p/var/phrase").await.unwrap().text(),
        "hello from eu"
    );
    assert_eq!(
        get(host.addr, "/p/var/token").await.unwrap().text(),
        "s3cret"
    );
    // A variable the component did not declare is undefined to it, even if the app has it.
    let undeclared = get(host.addr, "/p/var/region").await.unwrap();
    assert_eq!(undeclared.status, 404);
    assert!(
        undeclared.text().contains("Undefined"),
        "{}",
        undeclared.text()
    );
    let invalid = get(host.addr, "/p/var/Bad-Name").await.unwrap();
    assert!(invalid.text().contains("InvalidName"), "{}", invalid.text());
    host.stop().await;

    options
        .env
        .insert("SPIN_VARIABLE_REGION".to_string(), "us".to_string());
    let host = start(&manifest, options).await.unwrap();
    assert_eq!(
        get(host.addr, "/p/var/phrase").await.unwrap().text(),
        "hello from us"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_variable_stops_start_up_with_a_clear_message() {
    let extra = "[variables]\napi_key = { required = true, secret = true }\n";
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], extra));
    let error = start(&manifest, Options::default()).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("`api_key`"), "{message}");
    assert!(message.contains("SPIN_VARIABLE_API_KEY"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_follow_allowed_outbound_hosts() {
    // A loopback server that counts connections: the denied call must never reach it.
    let (target, connections) = from_target_server().await;

    let extra = format!(
        "[variables]\ntarget = {{ default = \"127.0.0.1:{}\" }}\n[component.open]\nsource = \"{}\"\nallowed_outbound_hosts = [\"http://{{{{ target }}}}\"]\n",
        target.port(),
        probe_source()
    );
    let text = probe_app(&[("/closed/...", "closed")], &extra)
        + "[[trigger.http]]\nroute = \"/open/...\"\ncomponent = \"open\"\n";
    let manifest = write_manifest(&text);
    let host = start(&manifest, Options::default()).await.unwrap();

    let allowed = get(host.addr, &format!("/open/outbound?url=http://{target}/x"))
        .await
        .unwrap();
    assert_eq!(allowed.text(), "200 from target");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let denied = get(
        host.addr,
        &format!("/closed/outbound?url=http://{target}/x"),
    )
    .await
    .unwrap();
    assert_eq!(denied.status, 502);
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    // Another port on the same host is not allowed either.
    let other_port = get(host.addr, "/open/outbound?url=http://127.0.0.1:1/x")
        .await
        .unwrap();
    assert!(
        other_port.text().contains("HttpRequestDenied"),
        "{}",
        other_port.text()
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a denied request reached the network"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_gets_a_json_500_and_the_host_keeps_serving() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let host = start(&manifest, Options::default()).await.unwrap();
    for _ in 0..3 {
        let reply = get(host.addr, "/p/trap").await.unwrap();
        assert_eq!(reply.status, 500);
        let body = reply.json();
        assert_eq!(body["error"]["code"], "component_failed");
        let request_id = body["error"]["request_id"].as_str().unwrap().to_string();
        assert!(!request_id.is_empty());
        assert_eq!(reply.headers["x-request-id"], request_id.as_str());
        assert!(
            !reply.text().contains("asked to trap"),
            "guest panic text leaked"
        );
        assert_eq!(
            get(host.addr, "/p/hello").await.unwrap().text(),
            "hello from probe"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_whether_declared_or_streamed() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let options = Options {
        max_body_bytes: 64 * 1024,
        ..Options::default()
    };
    let host = start(&manifest, options).await.unwrap();

    let within = send(host.addr, "POST", "/p/count", vec![7u8; 64 * 1024])
        .await
        .unwrap();
    assert_eq!(within.text(), "65536");

    let declared = send(host.addr, "POST", "/p/count", vec![7u8; 64 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(declared.status, 413);
    assert_eq!(declared.json()["error"]["code"], "payload_too_large");

    // A client that writes a large body before reading still gets the answer, not a broken pipe.
    let large = send(host.addr, "POST", "/p/count", vec![7u8; 8 << 20])
        .await
        .unwrap();
    assert_eq!(large.status, 413);

    // No content-length: the body is cut off as it streams past the limit.
    let chunks = futures::stream::iter((0..128).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![1u8; 64 * 1024])))
    }));
    let request = http::Request::post("/p/count")
        .header("host", host.addr.to_string())
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = send_request(host.addr, request).await.unwrap();
    assert_eq!(response.status(), 413);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_spinning_guests_time_out_with_504() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let options = Options {
        request_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let host = start(&manifest, options).await.unwrap();
    assert_eq!(get(host.addr, "/p/sleep/10").await.unwrap().status, 200);
    for path in ["/p/sleep/5000", "/p/spin"] {
        let reply = get(host.addr, path).await.unwrap();
        assert_eq!(reply.status, 504, "{path}");
        assert_eq!(reply.json()["error"]["code"], "timeout");
    }
    // The spinning instance is stopped and the host still answers.
    assert_eq!(get(host.addr, "/p/hello").await.unwrap().status, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_stream_and_request_bodies_stream_in() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let host = start(&manifest, Options::default()).await.unwrap();

    // The probe sends 5 chunks 100 ms apart; the first must arrive long before the last is produced.
    let request = http::Request::get("/p/stream/5")
        .header("host", host.addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let mut body = send_request(host.addr, request).await.unwrap().into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push(started.elapsed());
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert_eq!(text, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    let (first, last) = (arrivals[0], *arrivals.last().unwrap());
    assert!(
        last - first >= Duration::from_millis(300),
        "chunks were buffered: first at {first:?}, last at {last:?}"
    );

    // A request body sent slowly in pieces reaches the guest whole.
    let (tx, rx) =
        futures::channel::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut tx = tx;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = futures::SinkExt::send(
                &mut tx,
                Ok(http_body::Frame::data(Bytes::from(vec![0u8; 1000]))),
            )
            .await;
        }
    });
    let request = http::Request::post("/p/count")
        .header("host", host.addr.to_string())
        .body(StreamBody::new(rx))
        .unwrap();
    let response = send_request(host.addr, request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"4000");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_instance() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let host = start(&manifest, Options::default()).await.unwrap();
    let addr = host.addr;
    let started = Instant::now();
    let requests: Vec<_> = (0..40)
        .map(|_| tokio::spawn(async move { get(addr, "/p/sleep/200").await.unwrap() }))
        .collect();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 200 ms");
        // Each instance counts the requests it served: a reused one would say 2 or more.
        assert_eq!(reply.headers["x-probe-served"], "1");
    }
    // Forty 200 ms sleeps one after another would take 8 s; concurrently they overlap.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "requests ran one at a time: {:?}",
        started.elapsed()
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_per_component() {
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let host = start(&manifest, Options::default()).await.unwrap();
    get(host.addr, "/p/hello").await.unwrap();
    get(host.addr, "/p/hello").await.unwrap();
    get(host.addr, "/p/trap").await.unwrap();
    let metrics = get(host.addr, "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("edgerag_requests_total{component=\"probe\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgerag_requests_total{component=\"probe\",status=\"500\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgerag_instantiation_seconds_count{component=\"probe\"} 3"),
        "{metrics}"
    );
    // An instance's memory is counted when it is dropped, just after its response.
    let peak = |metrics: &str| -> Option<u64> {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("edgerag_instance_memory_peak_bytes{component=\"probe\"} ")
            })
            .and_then(|n| n.parse().ok())
    };
    let started = std::time::Instant::now();
    let mut metrics = metrics;
    while peak(&metrics).is_none() && started.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        metrics = get(host.addr, "/metrics").await.unwrap().text();
    }
    let bytes = peak(&metrics).unwrap_or(0);
    assert!(
        (64 << 10..512 << 20).contains(&bytes),
        "an instance's linear memory is at least one page and within the limit: {metrics}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_reach_the_embedded_document_store_through_variables() {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "docstore-wiring"
[variables]
docstore_url = {{ required = true }}
[[trigger.http]]
route = "/p/..."
component = "probe"
[component.probe]
source = "{}"
allowed_outbound_hosts = ["{{{{ docstore_url }}}}"]
[component.probe.variables]
url = "{{{{ docstore_url }}}}"
"#,
        probe_source()
    );
    let host = start(&write_manifest(&text), Options::default())
        .await
        .unwrap();
    let docstore = service(&host, "docstore").expect("the embedded document store runs");
    let url = get(host.addr, "/p/var/url").await.unwrap().text();
    assert_eq!(url, docstore.url());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let up = get(host.addr, &format!("/p/outbound?url={url}/_up"))
        .await
        .unwrap();
    assert!(up.text().starts_with("200 "), "{}", up.text());
    // The store requires its secret: the component did not send it.
    let locked = get(host.addr, &format!("/p/outbound?url={url}/_all_dbs"))
        .await
        .unwrap();
    assert!(locked.text().starts_with("401 "), "{}", locked.text());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_docstore_url_replaces_the_embedded_store() {
    let extra = "[variables]\ndocstore_url = { required = true }\n";
    let text = probe_app(&[("/p/...", "probe")], extra).replace(
        "name = \"probe\"\n",
        "name = \"probe\"\nurl = \"{{ docstore_url }}\"\n",
    );
    let options = Options {
        env: BTreeMap::from([(
            "SPIN_VARIABLE_DOCSTORE_URL".to_string(),
            "https://couch.example.test".to_string(),
        )]),
        ..Options::default()
    };
    let host = start(&write_manifest(&text), options).await.unwrap();
    assert!(
        service(&host, "docstore").is_none(),
        "the embedded store was started anyway"
    );
    assert!(service(&host, "objectstore").is_some());
    assert_eq!(
        get(host.addr, "/p/var/url").await.unwrap().text(),
        "https://couch.example.test"
    );
    host.stop().await;
}

fn service<'a>(host: &'a host::RunningHost, name: &str) -> Option<&'a embedded::Embedded> {
    host.services.iter().find(|s| s.name == name)
}

/// Header names of a reply, sorted.
fn header_names(reply: &tests::Reply) -> Vec<String> {
    let mut names: Vec<String> = reply.headers.keys().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_s_response_carries_only_its_own_headers() {
    let text = probe_app(&[("/p/...", "probe")], "")
        + &format!(
            "[[trigger.http]]\nroute = \"/old/...\"\ncomponent = \"old\"\n\
             [component.old]\nsource = \"{}\"\n",
            probe_p2_source()
        );
    let manifest = write_manifest(&text);
    let host = start(&manifest, Options::default()).await.unwrap();
    // A 0.2 component's response: its own header, and HTTP/1's framing of a body it streams.
    let reply = send(host.addr, "POST", "/old/echo", "12345").await.unwrap();
    assert_eq!(
        header_names(&reply),
        ["date", "transfer-encoding", "x-probe"]
    );
    assert_eq!(reply.text(), "12345");
    let reply = get(host.addr, "/p/hello").await.unwrap();
    assert_eq!(reply.status, 200);
    // A 0.3 body has no length the host knows, so HTTP/1 frames it chunked; hyper adds `date`.
    // Nothing else: no request id, no server banner.
    assert_eq!(header_names(&reply), ["date", "transfer-encoding"]);
    // The host's own answers keep the request id, in the body and the header.
    let missing = get(host.addr, "/nowhere").await.unwrap();
    assert_eq!(missing.status, 404);
    let id = missing.json()["error"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(missing.headers["x-request-id"], id.as_str());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_parameters_and_path_info_arrive_as_spin_names_them() {
    let manifest = write_manifest(&probe_app(
        &[
            ("/base/:path_segment/:path_end/...", "shape"),
            ("/users/:id/...", "users"),
        ],
        "",
    ));
    let host = start(&manifest, Options::default()).await.unwrap();
    let headers = get(host.addr, "/base/path/end/rest/headers")
        .await
        .unwrap()
        .json();
    assert_eq!(headers["spin-path-match-path-segment"], "path");
    assert_eq!(headers["spin-path-match-path-end"], "end");
    assert!(headers.get("spin-path-match-path_segment").is_none());
    assert_eq!(headers["spin-path-info"], "/rest/headers");
    assert_eq!(
        headers["spin-component-route"],
        "/base/:path_segment/:path_end"
    );
    // A trailing slash stays in the path info; the probe answers `headers` for any path ending so, so
    // ask for the path info through a route whose wildcard matched nothing.
    let headers = get(host.addr, "/users/headers/").await.unwrap().json();
    assert_eq!(headers["spin-path-match-id"], "headers");
    assert_eq!(headers["spin-path-info"], "/");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_0_2_components_get_routes_variables_outbound_and_fresh_instances() {
    let (target, _) = from_target_server().await;
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"p2\"\n\
         [variables]\ngreeting = {{ default = \"hi\" }}\ntarget = {{ default = \"127.0.0.1:{port}\" }}\n\
         [[trigger.http]]\nroute = \"/old/:thing/...\"\ncomponent = \"old\"\n\
         [[trigger.http]]\nroute = \"/new/...\"\ncomponent = \"new\"\n\
         [component.old]\nsource = \"{p2}\"\nallowed_outbound_hosts = [\"http://{{{{ target }}}}\"]\n\
         [component.old.variables]\nname = \"old\"\nmessage = \"{{{{ greeting }}}} from 0.2\"\n\
         [component.new]\nsource = \"{p3}\"\n[component.new.variables]\nname = \"new\"\n",
        port = target.port(),
        p2 = probe_p2_source(),
        p3 = probe_source(),
    );
    let manifest = write_manifest(&text);
    let host = start(&manifest, Options::default()).await.unwrap();

    // Both kinds side by side, each chosen by what it exports.
    assert_eq!(
        get(host.addr, "/old/x/hello").await.unwrap().text(),
        "hello from probe-p2"
    );
    assert_eq!(
        get(host.addr, "/new/hello").await.unwrap().text(),
        "hello from probe"
    );
    // Variables through fermyon:spin/variables@2.0.0 and the synchronous spin:variables@3.0.0.
    assert_eq!(
        get(host.addr, "/old/x/var/message").await.unwrap().text(),
        "hi from 0.2"
    );
    assert_eq!(
        get(host.addr, "/old/x/var3/message").await.unwrap().text(),
        "hi from 0.2"
    );
    let undefined = get(host.addr, "/old/x/var/greeting").await.unwrap();
    assert_eq!(undefined.status, 404);
    assert!(
        undefined.text().contains("Undefined"),
        "{}",
        undefined.text()
    );
    let invalid = get(host.addr, "/old/x/var3/Not-Snake").await.unwrap();
    assert!(invalid.text().contains("InvalidName"), "{}", invalid.text());
    // Spin's headers, named as for a 0.3 component.
    let headers = get(host.addr, "/old/thing-1/deep/headers")
        .await
        .unwrap()
        .json();
    assert_eq!(headers["spin-path-match-thing"], "thing-1");
    assert_eq!(headers["spin-path-info"], "/deep/headers");
    assert_eq!(headers["spin-matched-route"], "/old/:thing/...");
    // Outbound HTTP through wasi:http@0.2, inside allowed_outbound_hosts only.
    let allowed = get(host.addr, &format!("/old/x/outbound?url=http://{target}/y"))
        .await
        .unwrap();
    assert_eq!(allowed.text(), "200 from target");
    let denied = get(host.addr, "/old/x/outbound?url=http://127.0.0.1:1/y")
        .await
        .unwrap();
    assert_eq!(denied.status, 502);
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    // The body comes back whole, with the component's headers and no host header.
    let echoed = send(host.addr, "POST", "/old/x/echo", "a body")
        .await
        .unwrap();
    assert_eq!(echoed.text(), "a body");
    assert_eq!(echoed.headers["x-probe"], "p2");
    assert!(echoed.headers.get("x-request-id").is_none());
    // A fresh instance for every request, concurrent or not.
    let addr = host.addr;
    let replies: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get(addr, "/old/x/instance").await.unwrap() }))
        .collect();
    for reply in replies {
        assert_eq!(reply.await.unwrap().text(), "1");
    }
    // A trap is the same JSON 500, and the host goes on.
    let trapped = get(host.addr, "/old/x/trap").await.unwrap();
    assert_eq!(trapped.status, 500);
    assert_eq!(trapped.json()["error"]["code"], "component_failed");
    assert_eq!(
        get(host.addr, "/old/x/hello").await.unwrap().text(),
        "hello from probe-p2"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_0_2_bodies_over_the_limit_get_413() {
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"p2\"\n\
         [[trigger.http]]\nroute = \"/old/...\"\ncomponent = \"old\"\n\
         [component.old]\nsource = \"{}\"\n",
        probe_p2_source()
    );
    let manifest = write_manifest(&text);
    let options = Options {
        max_body_bytes: 1000,
        ..Options::default()
    };
    let host = start(&manifest, options).await.unwrap();
    let small = send(host.addr, "POST", "/old/echo", "x".repeat(1000))
        .await
        .unwrap();
    assert_eq!(small.status, 200);
    let large = send(host.addr, "POST", "/old/echo", "x".repeat(1001))
        .await
        .unwrap();
    assert_eq!(large.status, 413);
    assert_eq!(large.json()["error"]["code"], "payload_too_large");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_chaining_is_in_process_allowed_by_name_and_bounded() {
    let mut text = String::from("spin_manifest_version = 2\n[application]\nname = \"chain\"\n");
    for (route, component) in [
        ("/caller/...", "caller"),
        ("/target/...", "target"),
        ("/wild/...", "wild"),
        ("/closed/...", "closed"),
        ("/looping/...", "looping"),
    ] {
        text.push_str(&format!(
            "[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n"
        ));
    }
    text.push_str("[[trigger.http]]\nroute = { private = true }\ncomponent = \"hidden\"\n");
    let grants = [
        (
            "caller",
            probe_source(),
            "[\"http://target.spin.internal\"]",
        ),
        ("target", probe_p2_source(), "[]"),
        ("wild", probe_source(), "[\"http://*.spin.internal\"]"),
        ("closed", probe_source(), "[]"),
        (
            "looping",
            probe_source(),
            "[\"http://looping.spin.internal\"]",
        ),
        ("hidden", probe_source(), "[]"),
    ];
    for (component, source, allowed) in grants {
        text.push_str(&format!(
            "[component.{component}]\nsource = \"{source}\"\nallowed_outbound_hosts = {allowed}\n\
             [component.{component}.variables]\nname = \"{component}\"\n"
        ));
    }
    let manifest = write_manifest(&text);
    let host = start(&manifest, Options::default()).await.unwrap();

    // Allowed by name: served in-process by a fresh instance of the target (a WASI 0.2 one here),
    // under the target's own route. `target.spin.internal` resolves nowhere, so this never left.
    let reply = get(
        host.addr,
        "/caller/outbound?url=http://target.spin.internal/target/x/headers",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (status, body) = reply
        .text()
        .split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(status, "200");
    let headers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(headers["spin-matched-route"], "/target/...");
    assert_eq!(headers["spin-path-info"], "/x/headers");
    assert_eq!(
        headers["spin-full-url"],
        "http://target.spin.internal/target/x/headers"
    );
    assert_eq!(headers["spin-client-addr"], "0.0.0.0:0");
    // A path outside the target's routes gets Spin's synthetic `/...` match, as on Spin.
    let reply = get(
        host.addr,
        "/caller/outbound?url=http://target.spin.internal/elsewhere/hello",
    )
    .await
    .unwrap();
    assert_eq!(reply.text(), "200 hello from probe-p2");
    // Not listed: denied like any other host, even though `target` exists.
    let denied = get(
        host.addr,
        "/closed/outbound?url=http://target.spin.internal/target/hello",
    )
    .await
    .unwrap();
    assert_eq!(denied.status, 502);
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    // caller may reach target only, not the private component.
    let denied = get(
        host.addr,
        "/caller/outbound?url=http://hidden.spin.internal/hello",
    )
    .await
    .unwrap();
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    // `*.spin.internal` reaches any component, a private one included; an unknown one is a 404.
    let reply = get(
        host.addr,
        "/wild/outbound?url=http://hidden.spin.internal/hello",
    )
    .await
    .unwrap();
    assert_eq!(reply.text(), "200 hello from probe");
    let reply = get(
        host.addr,
        "/wild/outbound?url=http://nobody.spin.internal/hello",
    )
    .await
    .unwrap();
    assert!(reply.text().starts_with("404 "), "{}", reply.text());
    // The private component has no public route.
    assert_eq!(get(host.addr, "/hello").await.unwrap().status, 404);
    // A component calling itself forever ends with a 508 at the depth bound, quickly.
    let started = Instant::now();
    let reply = get(host.addr, "/looping/chain-self").await.unwrap();
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert_eq!(
        text.matches("200 ").count(),
        host::server::MAX_CHAIN_DEPTH as usize,
        "{text}"
    );
    assert!(
        text.contains("508 ") && text.contains("chain_too_deep"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_a_self_signed_pair() {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = write_manifest("").with_file_name("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let files = host::tls::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, pair.cert.pem()).unwrap();
    std::fs::write(&files.key, pair.signing_key.serialize_pem()).unwrap();
    let manifest = write_manifest(&probe_app(&[("/p/...", "probe")], ""));
    let options = Options {
        tls: Some(files.clone()),
        embedded: false,
        ..Options::default()
    };
    let host = start(&manifest, options).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pair.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/p/headers")
        .header("host", format!("localhost:{}", host.addr.port()))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let headers: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        headers["spin-full-url"],
        format!("https://localhost:{}/p/headers", host.addr.port())
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(get(host.addr, "/p/hello").await.is_err());
    host.stop().await;

    // A key that is not the certificate's stops start-up, saying so.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&files.key, other.signing_key.serialize_pem()).unwrap();
    let options = Options {
        tls: Some(files.clone()),
        embedded: false,
        ..Options::default()
    };
    let error = start(&manifest, options).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("does not fit the certificate"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_grants_reach_public_addresses_only() {
    // A loopback server that counts connections: no refused request may reach it.
    let (target, connections) = from_target_server().await;
    let port = target.port();
    let extra = format!(
        "[component.listed]\nsource = \"{}\"\nallowed_outbound_hosts = [\"http://*:*\", \"http://127.0.0.1:{port}\"]\n",
        probe_source()
    );
    let text = probe_app(&[("/open/...", "open")], "").replace(
        "[component.open]\n",
        "[component.open]\nallowed_outbound_hosts = [\"http://*:*\", \"https://*:*\"]\n",
    ) + &extra
        + "[[trigger.http]]\nroute = \"/listed/...\"\ncomponent = \"listed\"\n";
    let manifest = write_manifest(&text);
    let host = start(&manifest, Options::default()).await.unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        // Names and spellings that resolve to loopback: only the address connected to tells.
        format!("http://localhost:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://[::1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://0.0.0.0/".to_string(),
    ] {
        let reply = get(host.addr, &format!("/open/outbound?url={url}"))
            .await
            .unwrap();
        assert_eq!(reply.status, 502, "{url}: {}", reply.text());
        assert!(
            reply.text().contains("DestinationIpProhibited"),
            "{url}: {}",
            reply.text()
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused request reached the network"
    );
    // Listed by name, the same address is allowed; the wildcard does not grant chaining either.
    let listed = get(
        host.addr,
        &format!("/listed/outbound?url=http://127.0.0.1:{port}/x"),
    )
    .await
    .unwrap();
    assert_eq!(listed.text(), "200 from target");
    let chained = get(
        host.addr,
        "/open/outbound?url=http://listed.spin.internal/listed/instance",
    )
    .await
    .unwrap();
    assert!(
        chained.text().contains("HttpRequestDenied"),
        "{}",
        chained.text()
    );
    host.stop().await;
}
