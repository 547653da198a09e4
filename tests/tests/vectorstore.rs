//! The embedded vector store against Qdrant's REST API, checked by Qdrant's own Python client
//! (`qdrant-client` in remote mode, installed by scripts/install) over a real socket.

const API_KEY: &str = "vector-store-conformance-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_client_passes_the_conformance_checks() {
    let store = vectorstore::start(vectorstore::Config {
        dir: tests::temp_dir("vectorstore"),
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key: API_KEY.into(),
    })
    .await
    .unwrap();
    let url = store.url();
    let result = tokio::task::spawn_blocking(move || {
        tests::run_python("qdrant_conformance.py", &[&url, API_KEY])
    })
    .await
    .unwrap();
    let output = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(output.contains("checks passed"), "{output}");
    store.stop().await;
}
