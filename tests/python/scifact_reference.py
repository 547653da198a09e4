"""SciFact's reference pipeline, independent of edgerag: BM25 (bm25s, Snowball English stemming, English
stop words), all-MiniLM-L6-v2 through sentence-transformers (title and abstract, cut at the model's 256
tokens), and their reciprocal rank fusion (k = 60, top 1,000 of each), scored by pytrec_eval.

Usage: python scifact_reference.py SCIFACT_DIR MODEL_DIR. Prints one JSON line per pipeline:
{"pipeline", "ndcg_10", "recall_100", "seconds"}.
"""

import json
import sys
import time

import bm25s
import numpy as np
import pytrec_eval
import Stemmer
from sentence_transformers import SentenceTransformer


def load(root):
    corpus = [json.loads(line) for line in open(f"{root}/corpus.jsonl")]
    queries = {}
    for line in open(f"{root}/queries.jsonl"):
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels = {}
    for line in list(open(f"{root}/qrels/test.tsv"))[1:]:
        q, d, g = line.strip().split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    queries = {q: queries[q] for q in qrels}
    return corpus, queries, qrels


def score(run, qrels):
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    results = evaluator.evaluate(run)
    n = len(qrels)
    ndcg = sum(r["ndcg_cut_10"] for r in results.values()) / n
    recall = sum(r["recall_100"] for r in results.values()) / n
    return ndcg, recall


def main():
    root, model_dir = sys.argv[1], sys.argv[2]
    corpus, queries, qrels = load(root)
    ids = [d["_id"] for d in corpus]
    texts = [f"{d['title']} {d['text']}" for d in corpus]
    qids = list(queries)
    depth = 1000

    started = time.time()
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                            show_progress=False)
    docs, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    bm25 = {q: {ids[d]: float(s) for d, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}
    report("bm25 (bm25s, Snowball)", bm25, qrels, started)

    started = time.time()
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    doc_vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    query_vectors = model.encode([queries[q] for q in qids], batch_size=32, normalize_embeddings=True)
    similarity = query_vectors @ doc_vectors.T
    dense = {}
    for i, q in enumerate(qids):
        top = np.argsort(-similarity[i])[:depth]
        dense[q] = {ids[d]: float(similarity[i][d]) for d in top}
    report("all-MiniLM-L6-v2 (sentence-transformers)", dense, qrels, started)

    started = time.time()
    fused = {}
    for q in qids:
        total = {}
        for run in (bm25[q], dense[q]):
            ranked = sorted(run, key=run.get, reverse=True)
            for rank, d in enumerate(ranked, start=1):
                total[d] = total.get(d, 0.0) + 1.0 / (60 + rank)
        fused[q] = total
    report("RRF k=60 of the two", fused, qrels, started)


def report(name, run, qrels, started):
    ndcg, recall = score(run, qrels)
    print(json.dumps({"pipeline": name, "ndcg_10": round(ndcg, 4), "recall_100": round(recall, 4),
                      "seconds": round(time.time() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
