//! One search, from a checked request to the reply: the query embedded and analysed, both signals'
//! candidates fetched from the vector store in one round trip, then `shared`'s ranking. The search
//! route, the `retrieve` interface and evaluations all run this.

use std::time::Instant;

use guest::couch::Couch;
use guest::embed::Embedder;
use guest::vars::{optional, variable};
use guest::vectors::{DENSE, KEYWORD, Qdrant};
use serde_json::{Value, json};
use shared::ApiError;
use shared::auth::records::ProjectSettings;
use shared::ingest::{sparse, visibility};
use shared::search::query::mode_name;
use shared::search::{Filter, Fusion, Mode, Ranked, SearchRequest, highlight, rank, rerank};

/// The database evaluations are kept in.
pub const DATABASE: &str = guest::couch::SEARCH_DATABASE;

/// What search reads from.
pub struct Stores {
    pub vectors: Qdrant,
    pub embedder: Embedder,
    pub couch: Couch,
    pub reranker: Option<Reranker>,
}

/// A cross-encoder behind the common `/rerank` protocol (`reranker_url`; none when blank).
pub struct Reranker {
    url: String,
    api_key: String,
    model: String,
    /// How many of the fused best candidates it scores.
    pub candidates: usize,
}

impl Reranker {
    async fn from_variables() -> Option<Self> {
        let base = optional("reranker_url", "").await;
        if base.is_empty() {
            return None;
        }
        let path = optional("reranker_path", "/rerank").await;
        Some(Self {
            url: format!("{}{path}", base.trim_end_matches('/')),
            api_key: optional("reranker_api_key", "").await,
            model: optional("reranker_model", "").await,
            candidates: optional("reranker_candidates", "")
                .await
                .parse()
                .unwrap_or(rerank::DEFAULT_CANDIDATES)
                .clamp(1, 1000),
        })
    }

    /// Each text's relevance to `query`, in order.
    async fn score(&self, query: &str, texts: &[&str]) -> Result<Vec<Option<f32>>, String> {
        let body = rerank::request(&self.model, query, texts);
        let bearer = format!("Bearer {}", self.api_key);
        let mut headers = Vec::new();
        if !self.api_key.is_empty() {
            headers.push(("authorization", bearer.as_str()));
        }
        let answer = guest::outbound::send_json("POST", &self.url, &headers, Some(&body)).await?;
        if !answer.ok() {
            return Err(format!("the reranker answered {}", answer.status));
        }
        rerank::scores(&answer.json(), texts.len())
    }
}

impl Stores {
    pub async fn load() -> Result<Self, ApiError> {
        Ok(Self {
            reranker: Reranker::from_variables().await,
            vectors: Qdrant::from_variables().await?,
            embedder: Embedder::from_variables().await?,
            couch: Couch::new(
                &variable("docstore_url").await?,
                &variable("docstore_user").await?,
                &variable("docstore_password").await?,
                DATABASE,
            ),
        })
    }
}

/// Milliseconds spent, for `Server-Timing` and `took_ms`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub embed_ms: f64,
    pub store_ms: f64,
    /// Zero when nothing was reranked.
    pub rerank_ms: f64,
}

/// Both signals' candidates for one query.
#[derive(Debug, Default)]
pub struct Lists {
    pub semantic: Vec<Value>,
    pub keyword: Vec<Value>,
    /// Why a signal is missing, when it is.
    pub degraded: Option<String>,
}

/// The payload fields ranking needs: candidates travel light.
pub const RANK_PAYLOAD: &[&str] = &["document", "version", "chunk_id", "ordinal", "sha256"];

/// The payload fields a hit shows (the vectors never travel back), read for the page's hits only.
const PAYLOAD: &[&str] = &[
    "document",
    "version",
    "kind",
    "ordinal",
    "chunk_id",
    "text",
    "title",
    "source_uri",
    "tags",
    "metadata",
    "heading_path",
    "start",
    "end",
    "page",
    "sha256",
    "answer",
    "content_type",
];

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Fetches the candidates of several queries: their embeddings in one request when `semantic`, then
/// one vector store round trip for all their searches. When the embedder is down and `keyword` is
/// wanted too, the keyword lists still come back, marked degraded.
pub async fn candidates(
    stores: &Stores,
    project: &str,
    queries: &[String],
    filter: &Filter,
    semantic: bool,
    keyword: bool,
    limit: u32,
) -> Result<(Vec<Lists>, Timing), ApiError> {
    let mut timing = Timing::default();
    let started = Instant::now();
    let mut degraded = None;
    let vectors = if semantic {
        match stores.embedder.embed(queries).await {
            Ok(vectors) => Some(vectors),
            Err(error) if keyword => {
                eprintln!("search: embedding failed, answering by keyword only: {error:?}");
                degraded = Some(
                    "the embedding model is unavailable: these are keyword results only"
                        .to_string(),
                );
                None
            }
            Err(error) => return Err(error),
        }
    } else {
        None
    };
    timing.embed_ms = ms(started);
    let store_filter = filter.to_store(project);
    let search = |using: &str, query: Value| {
        json!({
            "query": query,
            "using": using,
            "filter": store_filter,
            "limit": limit,
            "with_payload": RANK_PAYLOAD,
        })
    };
    let mut searches = Vec::new();
    for (i, text) in queries.iter().enumerate() {
        if let Some(vectors) = &vectors {
            searches.push(search(
                DENSE,
                json!(vectors.get(i).cloned().unwrap_or_default()),
            ));
        }
        if keyword {
            let sparse = sparse::query_vector(text);
            searches.push(search(KEYWORD, json!(sparse)));
        }
    }
    let started = Instant::now();
    let mut results = stores.vectors.query_batch(&searches).await?.into_iter();
    timing.store_ms = ms(started);
    let lists = queries
        .iter()
        .map(|_| Lists {
            semantic: if vectors.is_some() {
                results.next().unwrap_or_default()
            } else {
                Vec::new()
            },
            keyword: if keyword {
                results.next().unwrap_or_default()
            } else {
                Vec::new()
            },
            degraded: degraded.clone(),
        })
        .collect();
    Ok((lists, timing))
}

/// The ranked chunks of `lists` for `mode`, every candidate kept (pages cut them).
pub fn ranking(lists: &Lists, mode: Mode, fusion: &Fusion) -> Vec<Ranked> {
    let (semantic, keyword): (&[Value], &[Value]) = match mode {
        Mode::Semantic => (&lists.semantic, &[]),
        Mode::Keyword => (&[], &lists.keyword),
        Mode::Hybrid => (&lists.semantic, &lists.keyword),
    };
    // While a new version is being promoted both may be live for a moment: only the newest counts.
    let candidates = visibility::keep_latest(rank::candidates(semantic, keyword), |c| {
        (
            c.document.as_str(),
            c.payload["version"].as_u64().unwrap_or(0) as u32,
        )
    });
    rank::rank(candidates, mode, fusion)
}

fn signal(signal: Option<rank::Signal>) -> Value {
    signal.map_or(Value::Null, |s| json!({"score": s.score, "rank": s.rank}))
}

/// A hit as the API shows it.
fn hit(ranked: &Ranked, terms: Option<&std::collections::HashSet<String>>) -> Value {
    let c = &ranked.candidate;
    let p = &c.payload;
    let mut hit = json!({
        "chunk_id": c.chunk,
        "text": c.text,
        "score": ranked.score,
        "document_score": ranked.document_score,
        "document": {
            "id": c.document,
            "title": p["title"],
            "source_uri": p["source_uri"],
            "tags": p["tags"],
            "version": p["version"],
            "kind": p["kind"],
            "metadata": p["metadata"],
        },
        "heading_path": p["heading_path"],
        "start": p["start"],
        "end": p["end"],
        "page": p["page"],
        "sha256": p["sha256"],
        "signals": {"semantic": signal(c.semantic), "keyword": signal(c.keyword), "rerank": signal(c.rerank)},
    });
    if p["answer"].is_string() {
        hit["answer"] = p["answer"].clone();
    }
    if let Some(terms) = terms {
        let spans: Vec<[usize; 2]> = highlight::spans(&c.text, terms)
            .into_iter()
            .map(|(s, e)| [s, e])
            .collect();
        hit["highlights"] = json!(spans);
    }
    hit
}

/// Runs a search and returns its JSON reply and timing.
pub async fn search(
    stores: &Stores,
    project: &str,
    settings: &ProjectSettings,
    request: &SearchRequest,
) -> Result<(Value, Timing), ApiError> {
    let started = Instant::now();
    let fusion = settings.fusion;
    let limit = fusion.candidates.max(request.top_k);
    let (semantic, keyword) = match request.mode {
        Mode::Semantic => (true, false),
        Mode::Keyword => (false, true),
        Mode::Hybrid => (true, true),
    };
    let queries = [request.query.clone()];
    let (lists, mut timing) = candidates(
        stores,
        project,
        &queries,
        &request.filter,
        semantic,
        keyword,
        limit,
    )
    .await?;
    let lists = lists.into_iter().next().unwrap_or_default();
    // Keyword results only, when the embedder failed in a hybrid search.
    let mode = if lists.degraded.is_some() {
        Mode::Keyword
    } else {
        request.mode
    };
    let mut ranked = ranking(&lists, mode, &fusion);
    // The page's payloads: enough of the best candidates that de-duplication, grouping and the
    // threshold still fill `top_k`, read in one more (small) round trip.
    let reranking = stores.reranker.as_ref().map_or(0, |r| r.candidates);
    let wanted = (request.top_k as usize * 4 + 20)
        .max(reranking)
        .min(ranked.len());
    ranked.truncate(wanted);
    let started_read = Instant::now();
    let ids: Vec<Value> = ranked.iter().map(|r| r.candidate.point.clone()).collect();
    let mut payloads = stores.vectors.retrieve(&ids, PAYLOAD).await?;
    timing.store_ms += ms(started_read);
    for r in &mut ranked {
        if let Some(payload) = payloads.remove(&r.candidate.point.to_string()) {
            r.candidate.text = payload["text"].as_str().unwrap_or_default().to_string();
            r.candidate.payload = payload;
        }
    }
    let mut degraded = lists.degraded;
    let mut reranked = false;
    if let Some(reranker) = &stores.reranker
        && !ranked.is_empty()
    {
        let started_rerank = Instant::now();
        let n = reranker.candidates.min(ranked.len());
        let texts: Vec<&str> = ranked[..n]
            .iter()
            .map(|r| r.candidate.text.as_str())
            .collect();
        match reranker.score(&request.query, &texts).await {
            Ok(scores) => {
                ranked = rerank::apply(ranked, &scores);
                reranked = true;
            }
            Err(why) => {
                eprintln!("search: reranking failed, answering in fused order: {why}");
                let note = "the reranker is unavailable: these are the fused results";
                degraded = Some(match degraded {
                    Some(earlier) => format!("{earlier}; {note}"),
                    None => note.to_string(),
                });
            }
        }
        timing.rerank_ms = ms(started_rerank);
    }
    let page = rank::page(
        ranked,
        request.top_k as usize,
        request.score_threshold,
        request.per_document,
    );
    let terms = request
        .highlight
        .then(|| highlight::query_terms(&request.query));
    let hits: Vec<Value> = page.iter().map(|r| hit(r, terms.as_ref())).collect();
    let mut reply = json!({
        "query": request.query,
        "mode": mode_name(request.mode),
        "hits": hits,
        "took_ms": (ms(started) * 10.0).round() / 10.0,
        "reranked": reranked,
    });
    if let Some(why) = degraded {
        reply["degraded"] = json!(why);
    }
    Ok((reply, timing))
}
