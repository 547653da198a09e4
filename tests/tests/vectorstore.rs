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

/// Qdrant's own REST suite (reference data, read in place) for every file the README claims; the
/// suite's other files are each listed with their reason in `tests::qdrant_suite::LEFT_OUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_s_own_suite_passes_for_every_claimed_file() {
    let Some(suite) = tests::qdrant_suite::suite_dir() else {
        return;
    };
    let outcome = tests::qdrant_suite::run(&suite, tests::qdrant_suite::CLAIMED, 2)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "qdrant suite, {} claimed files: {} in {:.1} s",
        tests::qdrant_suite::CLAIMED.len(),
        outcome.summary,
        outcome.elapsed.as_secs_f64()
    );
    assert!(
        outcome.failed + outcome.errors == 0 && outcome.passed > 0,
        "{}\n{}",
        outcome.problems.join("\n"),
        outcome.output
    );
}

#[test]
fn every_file_of_qdrant_s_suite_is_claimed_or_left_out_with_a_reason() {
    let Some(suite) = tests::qdrant_suite::suite_dir() else {
        return;
    };
    let mut files: Vec<String> = std::fs::read_dir(suite.join("tests/openapi"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("test_") && n.ends_with(".py"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = tests::qdrant_suite::CLAIMED
        .iter()
        .map(|f| f.to_string())
        .chain(
            tests::qdrant_suite::LEFT_OUT
                .iter()
                .map(|(f, _)| f.to_string()),
        )
        .collect();
    listed.sort();
    assert_eq!(files, listed, "each file once, in CLAIMED or LEFT_OUT");
    assert!(
        tests::qdrant_suite::LEFT_OUT
            .iter()
            .all(|(_, why)| !why.is_empty())
    );
}
