//! SciFact (BEIR) through edgerag: the corpus into a project with `edgerag ingest`'s client, the 300
//! test queries through the evaluation endpoint, and fusion variants scored with the product's own
//! ranking code on candidates fetched once from the vector store. Used by the CI gate
//! (tests/tests/scifact.rs) and by `scripts/eval-scifact`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shared::ingest::{sparse, visibility};
use shared::search::metrics::{self, Judgements, QueryScores};
use shared::search::{Fusion, FusionMethod, Mode, rank};

use crate::accounts::call;

pub fn root() -> PathBuf {
    crate::reference_data_root().join("scifact")
}

/// Queries as `(id, text)`, and their judgements by query id.
pub type Judged = (Vec<(String, String)>, BTreeMap<String, Judgements>);

/// The test queries that have judgements, `(id, text)`, and the judgements.
pub fn queries() -> anyhow::Result<Judged> {
    let root = root();
    let mut qrels: BTreeMap<String, Judgements> = BTreeMap::new();
    let tsv = std::fs::read_to_string(root.join("qrels/test.tsv"))
        .with_context(|| format!("cannot read {}", root.display()))?;
    for line in tsv.lines().skip(1) {
        if let [q, d, g] = line.split('\t').collect::<Vec<_>>().as_slice() {
            qrels
                .entry((*q).to_string())
                .or_default()
                .insert((*d).to_string(), g.trim().parse()?);
        }
    }
    let mut queries = Vec::new();
    for line in std::fs::read_to_string(root.join("queries.jsonl"))?.lines() {
        let q: Value = serde_json::from_str(line)?;
        let id = q["_id"].as_str().unwrap_or_default().to_string();
        if qrels.contains_key(&id) {
            queries.push((id, q["text"].as_str().unwrap_or_default().to_string()));
        }
    }
    Ok((queries, qrels))
}

/// Uploads the corpus to `project` (what is already there is skipped).
pub async fn ingest(
    addr: SocketAddr,
    project: &str,
    key: &str,
) -> anyhow::Result<host::bulk::Summary> {
    host::bulk::run(host::bulk::Options {
        url: format!("http://{addr}"),
        project: project.to_string(),
        api_key: key.trim_start_matches("Bearer ").to_string(),
        paths: vec![root().join("corpus.jsonl")],
        concurrency: 2,
        tags: Vec::new(),
        batch: 8,
    })
    .await
}

/// Runs the 300 test queries through `POST /v1/projects/:project/evaluations` in every mode.
pub async fn evaluate(addr: SocketAddr, project: &str, key: &str) -> anyhow::Result<Value> {
    let (queries, qrels) = queries()?;
    let body = json!({
        "name": "SciFact test",
        "queries": queries.iter().map(|(id, text)| json!({"id": id, "text": text})).collect::<Vec<_>>(),
        "qrels": qrels,
        "modes": ["keyword", "semantic", "hybrid"],
        "k": 10,
    });
    let reply = call(
        addr,
        "POST",
        &format!("/v1/projects/{project}/evaluations"),
        Some(key),
        Some(body),
    )
    .await;
    if reply.status != 201 {
        bail!("the evaluation answered {}: {}", reply.status, reply.text());
    }
    Ok(reply.json())
}

/// Where the vector store and the embedding model are, with their keys.
pub struct Backends {
    pub store: SocketAddr,
    pub store_key: String,
    pub models: SocketAddr,
    pub models_key: String,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("store", &self.store)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

async fn post(
    addr: SocketAddr,
    path: &str,
    header: (&str, &str),
    body: &Value,
) -> anyhow::Result<Value> {
    send_json(addr, "POST", path, header, body).await
}

/// Sends `body` as JSON with one credential header; anything but 200 is an error.
pub async fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    header: (&str, &str),
    body: &Value,
) -> anyhow::Result<Value> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header(header.0, header.1)
        .body(body.to_string())?;
    let reply = crate::exchange(addr, request).await?;
    if reply.status != 200 {
        bail!("{path} answered {}: {}", reply.status, reply.text());
    }
    Ok(reply.json())
}

/// Both signals' candidates for one query.
#[derive(Debug)]
pub struct Lists {
    pub semantic: Vec<Value>,
    pub keyword: Vec<Value>,
}

/// Fetches every query's candidates as search does: the query embedded, both signals from the store.
pub async fn candidates(
    backends: &Backends,
    project: &str,
    queries: &[(String, String)],
    limit: u32,
) -> anyhow::Result<Vec<Lists>> {
    let mut out = Vec::new();
    let filter = visibility::live_filter(project);
    let bearer = format!("Bearer {}", backends.models_key);
    for slice in queries.chunks(50) {
        let texts: Vec<&str> = slice.iter().map(|(_, t)| t.as_str()).collect();
        let embedded = post(
            backends.models,
            "/v1/embeddings",
            ("authorization", &bearer),
            &json!({"model": "all-MiniLM-L6-v2", "input": texts}),
        )
        .await?;
        let mut searches = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let search = |using: &str, query: Value| {
                json!({"query": query, "using": using, "filter": filter, "limit": limit,
                       "with_payload": ["document", "chunk_id", "ordinal", "sha256"]})
            };
            searches.push(search("dense", embedded["data"][i]["embedding"].clone()));
            searches.push(search("keyword", json!(sparse::query_vector(text))));
        }
        let result = post(
            backends.store,
            "/collections/edgerag_chunks/points/query/batch",
            ("api-key", &backends.store_key),
            &json!({"searches": searches}),
        )
        .await?;
        let lists = result["result"].as_array().context("no result list")?;
        for pair in lists.chunks(2) {
            let points = |v: &Value| v["points"].as_array().cloned().unwrap_or_default();
            out.push(Lists {
                semantic: points(&pair[0]),
                keyword: points(&pair[1]),
            });
        }
    }
    Ok(out)
}

/// Each query's scores at 10 for `mode` with `fusion`.
pub fn scores(
    lists: &[Lists],
    judged: &[&Judgements],
    mode: Mode,
    fusion: &Fusion,
) -> Vec<QueryScores> {
    lists
        .iter()
        .zip(judged)
        .map(|(l, judged)| {
            let (s, k): (&[Value], &[Value]) = match mode {
                Mode::Semantic => (&l.semantic, &[]),
                Mode::Keyword => (&[], &l.keyword),
                Mode::Hybrid => (&l.semantic, &l.keyword),
            };
            let ranked = rank::rank(rank::candidates(s, k), mode, fusion);
            metrics::score_query(&rank::documents(&ranked), judged, 10)
        })
        .collect()
}

/// Mean nDCG of the even-numbered (`parity` 0) or odd-numbered (1) queries: one half of a two-fold
/// cross-validation.
pub fn half_ndcg(scores: &[QueryScores], parity: usize) -> f64 {
    let part: Vec<QueryScores> = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == parity)
        .map(|(_, q)| *q)
        .collect();
    metrics::mean(&part).ndcg
}

/// The project and key `scripts/eval-scifact` left in `data_dir`.
pub fn saved_project(data_dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("eval-scifact.json")).context(
            "run scripts/eval-scifact first: it leaves the SciFact project this measures",
        )?,
    )?;
    let field = |name: &str| state[name].as_str().unwrap_or_default().to_string();
    Ok((field("project"), field("key")))
}

/// One line of the variants table.
#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub scores: metrics::Scores,
}

/// Every fusion variant tried (RRF over k, convex over the semantic weight, each signal alone), and
/// for each family the two-fold cross-validated nDCG@10: parameters chosen on the even-numbered
/// queries scored on the odd ones, and the other way round, averaged.
pub fn variants(
    lists: &[Lists],
    judged: &[&Judgements],
    candidates: u32,
) -> (Vec<Variant>, Vec<String>) {
    let base = Fusion {
        candidates,
        ..Fusion::default()
    };
    let mut tried: Vec<(String, Mode, Fusion)> = vec![
        ("keyword alone".into(), Mode::Keyword, base),
        ("semantic alone".into(), Mode::Semantic, base),
    ];
    for k in [1.0, 5.0, 10.0, 20.0, 40.0, 60.0, 100.0] {
        let fusion = Fusion {
            method: FusionMethod::Rrf,
            rrf_k: k,
            semantic_weight: 0.5,
            ..base
        };
        tried.push((format!("rrf k={k}"), Mode::Hybrid, fusion));
    }
    for w in 1..=9 {
        let w = w as f32 / 10.0;
        let fusion = Fusion {
            method: FusionMethod::Convex,
            semantic_weight: w,
            ..base
        };
        tried.push((format!("convex w={w:.1}"), Mode::Hybrid, fusion));
    }
    let per_query: Vec<Vec<QueryScores>> = tried
        .iter()
        .map(|(_, mode, fusion)| scores(lists, judged, *mode, fusion))
        .collect();
    let variants = tried
        .iter()
        .zip(&per_query)
        .map(|((name, _, _), s)| Variant {
            name: name.clone(),
            scores: metrics::mean(s),
        })
        .collect();
    let half = half_ndcg;
    let mut lines = Vec::new();
    for family in ["rrf", "convex"] {
        let members: Vec<usize> = (0..tried.len())
            .filter(|i| tried[*i].0.starts_with(family))
            .collect();
        let mut held_out = Vec::new();
        for parity in [0, 1] {
            let best = members
                .iter()
                .copied()
                .max_by(|a, b| {
                    half(&per_query[*a], parity).total_cmp(&half(&per_query[*b], parity))
                })
                .unwrap_or(0);
            let other = half(&per_query[best], 1 - parity);
            lines.push(format!(
                "{family}: chosen on half {parity}: {} ({:.4} there), {other:.4} on the other half",
                tried[best].0,
                half(&per_query[best], parity)
            ));
            held_out.push(other);
        }
        lines.push(format!(
            "{family}: two-fold cross-validated nDCG@10 {:.4}",
            held_out.iter().sum::<f64>() / 2.0
        ));
    }
    (variants, lines)
}

/// What an in-memory keyword signal scores: ingest's chunks, or whole abstracts (title and text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Chunk,
    Abstract,
}

/// SciFact's corpus as scoring units: `(document id, chunk id, content hash, terms)`.
pub type Units = Vec<(String, String, String, Vec<String>)>;

/// The corpus cut into `unit`s, each analysed as ingest analyses a chunk for its sparse vector.
pub fn units(unit: Unit) -> anyhow::Result<Units> {
    use shared::ingest::chunk::{ChunkConfig, chunk};
    let corpus = std::fs::read_to_string(root().join("corpus.jsonl"))?;
    let mut out = Vec::new();
    for line in corpus.lines() {
        let doc: Value = serde_json::from_str(line)?;
        let id = doc["_id"].as_str().unwrap_or_default().to_string();
        let title = doc["title"].as_str().unwrap_or_default();
        let text = doc["text"].as_str().unwrap_or_default();
        let extracted = shared::ingest::extract::plain(text);
        if extracted.is_empty() {
            continue;
        }
        match unit {
            Unit::Chunk => {
                for c in chunk(&extracted, title, &ChunkConfig::default())? {
                    let terms = sparse::terms(&c.embed_text());
                    out.push((id.clone(), format!("{id}:{}", c.ordinal), c.sha256, terms));
                }
            }
            Unit::Abstract => {
                let whole = format!("{title}\n{text}");
                let hash = shared::ingest::chunk::hex_sha256(&whole);
                out.push((id.clone(), format!("{id}:all"), hash, sparse::terms(&whole)));
            }
        }
    }
    Ok(out)
}

/// Each query's best `limit` units by BM25 with `bm25`'s weights, scored as the vector store scores
/// sparse vectors (dot product, Qdrant's idf), as the store's points would come back.
pub fn keyword_lists(
    units: &Units,
    bm25: &sparse::Bm25,
    queries: &[(String, String)],
    limit: usize,
) -> Vec<Vec<Value>> {
    let mut postings: std::collections::HashMap<u32, Vec<(usize, f32)>> = Default::default();
    for (slot, unit) in units.iter().enumerate() {
        let vector = sparse::weighted(&unit.3, bm25);
        for (index, value) in vector.indices.into_iter().zip(vector.values) {
            postings.entry(index).or_default().push((slot, value));
        }
    }
    let n = units.len() as f32;
    queries
        .iter()
        .map(|(_, text)| {
            let mut totals = vec![0f32; units.len()];
            for index in sparse::query_vector(text).indices {
                let Some(list) = postings.get(&index) else {
                    continue;
                };
                let df = list.len() as f32;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                for (slot, value) in list {
                    totals[*slot] += idf * value;
                }
            }
            let mut hits: Vec<(usize, f32)> = totals
                .into_iter()
                .enumerate()
                .filter(|(_, t)| *t > 0.0)
                .collect();
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.truncate(limit);
            hits.into_iter()
                .map(|(slot, score)| {
                    let (document, chunk, hash, _) = &units[slot];
                    json!({"id": slot, "score": score, "payload": {
                        "document": document, "version": 1, "chunk_id": chunk, "sha256": hash}})
                })
                .collect()
        })
        .collect()
}
