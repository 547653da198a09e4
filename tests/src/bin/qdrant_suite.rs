//! Runs Qdrant's own REST test suite against a fresh embedded vector store and prints its counts.
//!
//! `qdrant-suite` runs the files the README claims (`tests::qdrant_suite::CLAIMED`); `qdrant-suite --all`
//! every file of the suite; `qdrant-suite test_fts.py test_group.py` just those. `--workers N` runs N
//! pytest processes (default 2); `--verbose` prints pytest's whole output. Exits 1 when any test failed or errored.

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let mut workers = 2;
    let mut all = false;
    let mut verbose = false;
    let mut files: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--all" => all = true,
            "--verbose" => verbose = true,
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--workers needs a number"))?
            }
            file => files.push(file.to_string()),
        }
    }
    let Some(suite) = tests::qdrant_suite::suite_dir() else {
        anyhow::bail!("Qdrant's suite is not in the reference data");
    };
    let chosen: Vec<&str> = if all {
        Vec::new()
    } else if files.is_empty() {
        tests::qdrant_suite::CLAIMED.to_vec()
    } else {
        files.iter().map(String::as_str).collect()
    };
    let outcome = tests::qdrant_suite::run(&suite, &chosen, workers).await?;
    if verbose {
        println!("{}", outcome.output);
    }
    for problem in &outcome.problems {
        println!("{problem}");
    }
    println!(
        "qdrant suite ({}): {} passed, {} failed, {} errors, {} skipped in {:.1} s ({workers} workers)",
        if all {
            "every file".to_string()
        } else {
            format!("{} files", chosen.len())
        },
        outcome.passed,
        outcome.failed,
        outcome.errors,
        outcome.skipped,
        outcome.elapsed.as_secs_f64()
    );
    Ok(if outcome.failed + outcome.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
