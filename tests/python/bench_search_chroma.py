"""The peer of scripts/bench-search --chunks N: Chroma answering SciFact's text queries over the same
chunks (the same dense vectors, texts and project) with the same project filter, top 10, at
concurrency 1 and 8, each query embedded for real per search.

Chroma's default embedding function downloads its ONNX model at first use, which this machine cannot;
the query is embedded instead by the same all-MiniLM-L6-v2 server edgerag's search uses (its
`/v1/embeddings`), over HTTP as edgerag's search does, so both sides pay the same model.

Usage: bench_search_chroma.py --vectors F --texts F --queries F --project P --models URL --chroma-dir D
       (the model server's key in EDGERAG_MODELS_KEY)
"""

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import time
import urllib.request

import numpy as np

DIM = 384


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedder(models_url, key):
    def embed(text):
        body = json.dumps({"model": "all-MiniLM-L6-v2", "input": [text]}).encode()
        request = urllib.request.Request(
            models_url.rstrip("/") + "/v1/embeddings", data=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.load(reply)["data"][0]["embedding"]
    return embed


def percentile(values, q):
    return float(np.percentile(np.array(values) * 1000, q)) if values else 0.0


def main():
    parser = argparse.ArgumentParser()
    for name in ["--vectors", "--texts", "--queries", "--project", "--models", "--chroma-dir"]:
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    import chromadb

    data = np.fromfile(args.vectors, dtype="<f4").reshape(-1, DIM)
    with open(args.texts) as f:
        texts = [json.loads(line) for line in f]
    with open(args.queries) as f:
        queries = [json.loads(line)["text"] for line in f if line.strip()][:300]
    port = free_port()
    chroma_bin = os.path.join(os.path.dirname(os.path.abspath(__import__("sys").executable)), "chroma")
    server = subprocess.Popen(
        [chroma_bin, "run", "--path", args.chroma_dir, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        collection = client.create_collection("chunks", metadata={"hnsw:space": "cosine"})
        started = time.perf_counter()
        for start in range(0, len(data), 2000):
            end = min(start + 2000, len(data))
            collection.add(
                ids=[str(i) for i in range(start, end)],
                embeddings=data[start:end],
                documents=texts[start:end],
                metadatas=[{"project": args.project, "live": True}] * (end - start),
            )
        build = time.perf_counter() - started
        print(f"chroma: {len(data)} chunks added in {build:.1f} s", flush=True)
        embed = embedder(args.models, os.environ.get("EDGERAG_MODELS_KEY", ""))
        where = {"$and": [{"project": args.project}, {"live": True}]}

        def search(text):
            t = time.perf_counter()
            collection.query(query_embeddings=[embed(text)], n_results=10, where=where,
                             include=["documents", "metadatas", "distances"])
            return time.perf_counter() - t

        for text in queries[:50]:
            search(text)
        for concurrency in [1, 8]:
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                latencies = list(pool.map(search, queries))
            rate = len(latencies) / (time.perf_counter() - started)
            print(f"chroma concurrency {concurrency}: {rate:.1f} searches/s; client p50 "
                  f"{percentile(latencies, 50):.1f} ms p99 {percentile(latencies, 99):.1f} ms "
                  f"(semantic only: Chroma has no keyword signal to fuse)", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
