//! Times each candidate on each file: pages with text, text bytes, milliseconds (best of three).

use std::time::Instant;

type Extract = fn(&[u8]) -> Result<Vec<String>, String>;

fn main() {
    let candidates: [(&str, Extract); 3] = [
        ("lopdf (ingest's)", pdf_candidates::lopdf),
        ("pdf-extract 0.12.1", pdf_candidates::pdf_extract),
        ("pdf_oxide 0.3.78", pdf_candidates::pdf_oxide),
    ];
    println!("| file | library | pages with text | text bytes | ms (best of 3) |");
    println!("|---|---|---|---|---|");
    for file in std::env::args().skip(1) {
        let bytes = std::fs::read(&file).expect("a readable file");
        let name = std::path::Path::new(&file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (library, extract) in candidates {
            let mut best = f64::INFINITY;
            let mut outcome = Err(String::new());
            for _ in 0..3 {
                let started = Instant::now();
                outcome = std::panic::catch_unwind(|| extract(&bytes))
                    .unwrap_or_else(|_| Err("panicked".into()));
                best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            }
            match outcome {
                Ok(pages) => {
                    let with_text = pages.iter().filter(|p| !p.trim().is_empty()).count();
                    let bytes: usize = pages.iter().map(|p| p.trim().len()).sum();
                    println!("| {name} | {library} | {with_text} | {bytes} | {best:.0} |");
                }
                Err(error) => println!("| {name} | {library} | fails: {error} | | {best:.0} |"),
            }
        }
    }
}
