//! The embedded object store against S3, checked by AWS's own client (boto3, installed by
//! scripts/install) over a real socket.

const ACCESS_KEY: &str = "edgerag";
const SECRET_KEY: &str = "object-store-conformance-secret";

async fn start(dir: &std::path::Path) -> embedded::Embedded {
    let credentials = embedded::Credentials {
        user: ACCESS_KEY.into(),
        secret: SECRET_KEY.into(),
    };
    objectstore::start(objectstore::Config {
        dir: dir.to_path_buf(),
        addr: "127.0.0.1:0".parse().unwrap(),
        credentials,
        buckets: vec!["edgerag".into()],
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_passes_the_s3_conformance_checks() {
    let dir = tests::temp_dir("objectstore");
    let store = start(&dir).await;
    let url = store.url();
    let result = tokio::task::spawn_blocking(move || {
        tests::run_python("s3_conformance.py", &[&url, ACCESS_KEY, SECRET_KEY])
    })
    .await
    .unwrap();
    let output = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(output.contains("checks passed"), "{output}");
    store.stop().await;
}
