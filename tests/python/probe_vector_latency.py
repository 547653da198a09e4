"""Where a filtered query's time goes: the store's own `time`, raw HTTP from Python, and qdrant-client.

Usage (against a running `edgerag up`, from the repository root):
  target/bench-venv/bin/python tests/python/probe_vector_latency.py URL API_KEY N PROJECTS [tenant]
Loads N random unit vectors (384 dims) spread over PROJECTS projects with a keyword index on `project` (a tenant
index with `tenant`), then times 600 top-10 queries each way, filtered to one project.
"""
import json, sys, time, http.client, numpy as np
from qdrant_client import QdrantClient, models
url, key, n, projects = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tenant = sys.argv[5:] == ["tenant"]
host, port = url.replace("http://", "").split(":")
client = QdrantClient(url=url, api_key=key, https=False, timeout=600)
rng = np.random.default_rng(1)
data = rng.normal(size=(n, 384)).astype(np.float32); data /= np.linalg.norm(data, axis=1, keepdims=True)
proj = rng.integers(0, projects, size=n)
client.create_collection("p", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
client.create_payload_index("p", "project", models.KeywordIndexParams(
    type=models.KeywordIndexType.KEYWORD, is_tenant=tenant))
for s in range(0, n, 2000):
    client.upsert("p", wait=True, points=models.Batch(ids=list(range(s, min(n, s+2000))), vectors=data[s:s+2000].tolist(), payloads=[{"project": f"p{x}"} for x in proj[s:s+2000]]))
print("uploaded", flush=True); time.sleep(2)
conn = http.client.HTTPConnection(host, int(port))
lat, srv, cl = [], [], []
for i in range(600):
    q = data[i].tolist()
    body = json.dumps({"query": q, "filter": {"must": [{"key": "project", "match": {"value": f"p{proj[i]}"}}]}, "limit": 10})
    t = time.perf_counter()
    conn.request("POST", "/collections/p/points/query", body, {"api-key": key, "content-type": "application/json"})
    r = json.loads(conn.getresponse().read())
    lat.append(time.perf_counter() - t); srv.append(r["time"])
    flt = models.Filter(must=[models.FieldCondition(key="project", match=models.MatchValue(value=f"p{proj[i]}"))])
    t = time.perf_counter()
    client.query_points("p", query=q, query_filter=flt, limit=10, with_payload=False)
    cl.append(time.perf_counter() - t)
def ms(xs):
    return f"p50 {np.percentile(xs, 50)*1000:.2f} ms p99 {np.percentile(xs, 99)*1000:.2f} ms"
print(f"tenant index {tenant}: raw http {ms(lat)}; server time {ms(srv)}; qdrant-client {ms(cl)}")
