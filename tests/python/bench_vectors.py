"""Vector store benchmark: edgerag's embedded store (through qdrant-client) against Chroma (through
chromadb's HTTP client) and Qdrant's own engine in-process (qdrant-edge-py), same data, same queries,
same run.

Usage: bench_vectors.py --n 100000 --edgerag URL --api-key KEY [--edgerag-pid PID] [--edgerag-data DIR]
                        [--chroma URL] [--qdrant-edge DIR] [--queries 300]
       bench_vectors.py --scifact DIR --models URL --models-key KEY --cache FILE --edgerag ... [--chroma ...]

Data: clustered synthetic 384-dim vectors (random centres, Gaussian spread), each tagged with one of
100 projects. Queries: a perturbed data vector each, top-10 within one project (the filter a RAG
application always sends). Recall@10 is against exact search computed here with numpy.

With --scifact: the SciFact corpus (title and abstract of each of its 5,183 documents) and its queries
embedded with all-MiniLM-L6-v2 by edgerag's embedded model server (cached in FILE after the first
run), the documents spread over 10 projects.
"""

import argparse
import http.client
import json
import os
import time
import urllib.parse

import numpy as np

DIM = 384
PROJECTS = 100


def make_data(n, seed=7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)
    assignment = rng.integers(0, len(centres), size=n)
    data = centres[assignment] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    projects = rng.integers(0, PROJECTS, size=n)
    return data, projects


def make_queries(data, projects, count, seed=11):
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=count)
    queries = data[picks] + 0.2 * rng.normal(size=(count, DIM)).astype(np.float32) / np.sqrt(DIM)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, projects[picks]


def embed_scifact(directory, models_url, models_key, cache):
    """SciFact's documents and queries as unit vectors, from the embeddings endpoint (or the cache)."""
    import json
    import os
    import urllib.request

    if cache and os.path.exists(cache):
        saved = np.load(cache)
        return saved["docs"], saved["queries"]

    def read(name):
        with open(os.path.join(directory, name)) as f:
            return [json.loads(line) for line in f if line.strip()]

    def embed(texts):
        out = []
        for start in range(0, len(texts), 64):
            body = json.dumps({"model": "all-MiniLM-L6-v2", "input": texts[start:start + 64]}).encode()
            request = urllib.request.Request(
                models_url.rstrip("/") + "/v1/embeddings", data=body,
                headers={"content-type": "application/json", "authorization": f"Bearer {models_key}"})
            with urllib.request.urlopen(request, timeout=600) as reply:
                out.extend(item["embedding"] for item in json.load(reply)["data"])
        return np.array(out, dtype=np.float32)

    started = time.perf_counter()
    docs = embed([(d.get("title", "") + " " + d.get("text", "")).strip() for d in read("corpus.jsonl")])
    queries = embed([q["text"] for q in read("queries.jsonl")])
    print(f"embedded SciFact: {len(docs)} documents and {len(queries)} queries in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    if cache:
        np.savez(cache, docs=docs, queries=queries)
    return docs, queries


def exact_top10(data, projects, queries, query_projects):
    truth = []
    for q, p in zip(queries, query_projects):
        members = np.flatnonzero(projects == p)
        scores = data[members] @ q
        truth.append(set(members[np.argsort(-scores)[:10]].tolist()))
    return truth


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def disk_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / 2**20


def percentiles(seconds):
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.3f} ms p99 {np.percentile(ms, 99):.3f} ms"


def summarize(name, latencies, found, truth, build_s, n, built="build"):
    lat = np.array(latencies) * 1000
    recall = np.mean([len(f & t) / 10 for f, t in zip(found, truth)])
    print(f"{name}: n={n} {built} {build_s:.1f} s ({n / build_s:,.0f} vectors/s); "
          f"filtered top-10 p50 {np.percentile(lat, 50):.2f} ms p99 {np.percentile(lat, 99):.2f} ms; "
          f"recall@10 {recall:.3f}", flush=True)


def store_times(url, api_key, name, queries, query_projects, filtered=True):
    """The store's own `time` for each query (after 10 to warm up), over one kept-alive connection."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    times = []
    for i, (q, p) in enumerate(zip(queries, query_projects)):
        body = {"query": q.tolist(), "limit": 10, "with_payload": False}
        if filtered:
            body["filter"] = {"must": [{"key": "project", "match": {"value": f"p{p}"}}]}
        connection.request("POST", f"/collections/{name}/points/query", body=json.dumps(body),
                           headers={"content-type": "application/json", "api-key": api_key})
        reply = json.loads(connection.getresponse().read())
        if i >= 10:
            times.append(reply["time"])
    connection.close()
    return times


def bench_edgerag(url, api_key, data, projects, queries, query_projects, truth, pid=None, data_dir=None):
    import warnings

    from qdrant_client import QdrantClient, models

    warnings.filterwarnings("ignore")
    client = QdrantClient(url=url, api_key=api_key, https=False, timeout=600)
    name = "bench"
    if client.collection_exists(name):
        client.delete_collection(name)
    before = resident_mib(pid) if pid else None
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    # The project is the tenant: Qdrant's multitenancy guide indexes it with is_tenant, which keeps
    # each project's vectors together.
    tenant = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    client.create_payload_index(name, "project", tenant)
    started = time.perf_counter()
    batch = 2000
    for start in range(0, len(data), batch):
        end = min(start + batch, len(data))
        client.upsert(name, wait=True, points=models.Batch(
            ids=list(range(start, end)),
            vectors=data[start:end].tolist(),
            payloads=[{"project": f"p{p}"} for p in projects[start:end]],
        ))
    build = time.perf_counter() - started

    def filtered():
        latencies, found = [], []
        for i, (q, p) in enumerate(zip(queries, query_projects)):
            flt = models.Filter(must=[models.FieldCondition(key="project", match=models.MatchValue(value=f"p{p}"))])
            t = time.perf_counter()
            hits = client.query_points(name, query=q.tolist(), query_filter=flt, limit=10, with_payload=False).points
            if i >= 10:
                latencies.append(time.perf_counter() - t)
                found.append({h.id for h in hits})
        return latencies, found

    latencies, found = filtered()
    summarize("edgerag", latencies, found, truth[10:], build, len(data))
    print(f"edgerag store's own time, filtered top-10 (tenant index): "
          f"{percentiles(store_times(url, api_key, name, queries, query_projects))}; "
          f"unfiltered: {percentiles(store_times(url, api_key, name, queries, query_projects, False))}",
          flush=True)
    if pid:
        print(f"edgerag memory gained by building and querying: {resident_mib(pid) - before:,.0f} MiB"
              + (f"; vector store on disk {disk_mib(data_dir):,.0f} MiB" if data_dir else ""), flush=True)
    # The same queries with a plain keyword index on the project, as the baseline for the tenant index.
    started = time.perf_counter()
    client.create_payload_index(name, "project", models.PayloadSchemaType.KEYWORD)
    reindex = time.perf_counter() - started
    latencies, found = filtered()
    summarize("edgerag (plain keyword index)", latencies, found, truth[10:], reindex, len(data), "index")
    # Unfiltered top-10 too, to show the graph itself (no filter, so the HNSW path).
    exact_all = []
    for q in queries[:50]:
        exact_all.append(set(np.argsort(-(data @ q))[:10].tolist()))
    lat, got = [], []
    for q in queries[:50]:
        t = time.perf_counter()
        hits = client.query_points(name, query=q.tolist(), limit=10, with_payload=False).points
        lat.append(time.perf_counter() - t)
        got.append({h.id for h in hits})
    lat = np.array(lat) * 1000
    recall = np.mean([len(a & b) / 10 for a, b in zip(got, exact_all)])
    print(f"edgerag unfiltered (HNSW): p50 {np.percentile(lat, 50):.2f} ms p99 {np.percentile(lat, 99):.2f} ms; "
          f"recall@10 {recall:.3f}", flush=True)


def bench_qdrant_edge(path, data, projects, queries, query_projects, truth):
    """Qdrant's engine in this process: the same collection (cosine, the project as a tenant
    keyword index), built and optimised (HNSW), then the same queries timed around the call."""
    import gc

    import qdrant_edge as qe

    gc.collect()
    before = resident_mib(os.getpid())
    shard = qe.EdgeShard.create(path, qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)))
    shard.update(qe.UpdateOperation.create_field_index("project", qe.KeywordIndexParams(is_tenant=True)))
    started = time.perf_counter()
    batch = 2000
    for start in range(0, len(data), batch):
        end = min(start + batch, len(data))
        shard.update(qe.UpdateOperation.upsert_points([
            qe.Point(i, data[i].tolist(), {"project": f"p{projects[i]}"}) for i in range(start, end)]))
    shard.optimize()
    shard.flush()
    build = time.perf_counter() - started

    def run(filtered):
        latencies, found = [], []
        for i, (q, p) in enumerate(zip(queries, query_projects)):
            flt = qe.Filter(must=[qe.FieldCondition(key="project", match=qe.MatchValue(value=f"p{p}"))])
            request = qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()),
                                      filter=flt if filtered else None, with_payload=False)
            t = time.perf_counter()
            hits = shard.query(request)
            if i >= 10:
                latencies.append(time.perf_counter() - t)
                found.append({h.id for h in hits})
        return latencies, found

    latencies, found = run(True)
    info = shard.info()
    summarize("qdrant-edge", latencies, found, truth[10:], build, len(data), "build + optimize")
    unfiltered, _ = run(False)
    gc.collect()
    print(f"qdrant-edge in-process time, filtered top-10: {percentiles(latencies)}; unfiltered: "
          f"{percentiles(unfiltered)}; segments {info.segments_count}, indexed vectors "
          f"{info.indexed_vectors_count}", flush=True)
    print(f"qdrant-edge memory gained by building and querying: {resident_mib(os.getpid()) - before:,.0f} MiB; "
          f"on disk {disk_mib(path):,.0f} MiB", flush=True)
    shard.close()


def bench_chroma(url, data, projects, queries, query_projects, truth):
    import chromadb

    host, port = url.replace("http://", "").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    try:
        client.delete_collection("bench")
    except Exception:
        pass
    collection = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    started = time.perf_counter()
    batch = 2000
    for start in range(0, len(data), batch):
        end = min(start + batch, len(data))
        collection.add(
            ids=[str(i) for i in range(start, end)],
            embeddings=data[start:end],
            metadatas=[{"project": f"p{p}"} for p in projects[start:end]],
        )
    build = time.perf_counter() - started
    latencies, found = [], []
    for i, (q, p) in enumerate(zip(queries, query_projects)):
        t = time.perf_counter()
        result = collection.query(query_embeddings=[q], n_results=10, where={"project": f"p{p}"}, include=[])
        if i >= 10:
            latencies.append(time.perf_counter() - t)
            found.append({int(x) for x in result["ids"][0]})
    summarize("chroma", latencies, found, truth[10:], build, len(data))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=310)
    parser.add_argument("--edgerag")
    parser.add_argument("--api-key")
    parser.add_argument("--edgerag-pid", type=int, help="the edgerag process, to read its memory")
    parser.add_argument("--edgerag-data", help="the vector store's data directory, to size it")
    parser.add_argument("--chroma")
    parser.add_argument("--qdrant-edge", help="an empty directory for Qdrant's engine (qdrant-edge-py)")
    parser.add_argument("--scifact", help="SciFact directory: embed it instead of synthetic data")
    parser.add_argument("--models", help="edgerag's model server, for --scifact")
    parser.add_argument("--models-key")
    parser.add_argument("--cache", help="where to keep SciFact's vectors between runs")
    args = parser.parse_args()
    if args.scifact:
        data, all_queries = embed_scifact(args.scifact, args.models, args.models_key, args.cache)
        rng = np.random.default_rng(5)
        projects = rng.integers(0, 10, size=len(data))
        queries = all_queries[:args.queries]
        query_projects = rng.integers(0, 10, size=len(queries))
    else:
        data, projects = make_data(args.n)
        queries, query_projects = make_queries(data, projects, args.queries)
    truth = exact_top10(data, projects, queries, query_projects)
    if args.edgerag:
        bench_edgerag(args.edgerag, args.api_key, data, projects, queries, query_projects, truth,
                      args.edgerag_pid, args.edgerag_data)
    if args.qdrant_edge:
        bench_qdrant_edge(args.qdrant_edge, data, projects, queries, query_projects, truth)
    if args.chroma:
        bench_chroma(args.chroma, data, projects, queries, query_projects, truth)


if __name__ == "__main__":
    main()
