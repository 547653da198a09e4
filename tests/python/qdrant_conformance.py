"""Drives a Qdrant REST endpoint with Qdrant's own Python client and checks what edgerag relies on.

Usage: qdrant_conformance.py URL API_KEY
Results are checked against exact answers computed here with numpy. Exits non-zero on the first
difference.
"""

import sys
import warnings

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

checks = 0
warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def status_of(call):
    try:
        call()
    except UnexpectedResponse as error:
        return error.status_code
    raise AssertionError("expected an error response, the call succeeded")


def main():
    url, api_key = sys.argv[1:3]
    client = QdrantClient(url=url, api_key=api_key, prefer_grpc=False, https=False, timeout=30)

    # Credentials: a wrong key and no key are refused.
    wrong = QdrantClient(url=url, api_key="wrong", https=False, check_compatibility=False)
    check(status_of(lambda: wrong.get_collections()) == 401, "a wrong api-key is refused")
    check(httpx.get(url + "/collections").status_code == 401, "no api-key is refused")

    name = "conformance"
    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(
        name,
        vectors_config={"dense": models.VectorParams(size=16, distance=models.Distance.COSINE)},
        sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    check(client.collection_exists(name), "the collection exists")
    check(status_of(lambda: client.create_collection(
        name, vectors_config={"dense": models.VectorParams(size=16, distance=models.Distance.COSINE)})) == 409,
        "creating it again conflicts")
    # The project is the tenant (Qdrant's multitenancy setting); filtered searches below go through it.
    client.create_payload_index(name, "project", models.KeywordIndexParams(
        type=models.KeywordIndexType.KEYWORD, is_tenant=True))

    rng = np.random.default_rng(42)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    words = ["edge", "wasm", "vector", "search", "rust", "spin", "qdrant", "couch"]
    points = []
    for i in range(500):
        chosen = sorted({int(w) for w in rng.choice(len(words), size=3)})
        points.append(models.PointStruct(
            id=i,
            vector={
                "dense": vectors[i].tolist(),
                "words": models.SparseVector(indices=chosen, values=[1.0] * len(chosen)),
            },
            payload={
                "project": f"p{i % 5}",
                "year": 2000 + i % 25,
                "text": " ".join(words[c] for c in chosen),
                "tags": ["even" if i % 2 == 0 else "odd"],
            },
        ))
    result = client.upsert(name, points=points, wait=True)
    check(result.status == models.UpdateStatus.COMPLETED, f"upsert completed: {result}")
    uuid = "550e8400-e29b-41d4-a716-446655440000"
    client.upsert(name, points=[models.PointStruct(
        id=uuid, vector={"dense": [1.0] * 16}, payload={"project": "uuid"})], wait=True)

    info = client.get_collection(name)
    check(info.points_count == 501, f"points_count {info.points_count}")
    check(info.config.params.vectors["dense"].size == 16, "the dense vector config is reported")
    check("project" in info.payload_schema, f"the payload index is reported: {info.payload_schema}")
    check(info.payload_schema["project"].params.is_tenant is True, "the tenant index reports is_tenant")
    check(info.payload_schema["project"].points == 501, "the tenant index counts its points")
    check(client.count(name, exact=True).count == 501, "count")
    in_p1 = models.Filter(must=[models.FieldCondition(key="project", match=models.MatchValue(value="p1"))])
    check(client.count(name, count_filter=in_p1).count == 100, "filtered count")

    # Retrieve, by integer and UUID id.
    got = client.retrieve(name, ids=[3, uuid, 99999], with_vectors=True)
    check(sorted(str(p.id) for p in got) == sorted(["3", uuid]), f"retrieve skips missing ids: {got}")
    three = next(p for p in got if p.id == 3)
    stored = np.array(three.vector["dense"])
    check(np.allclose(stored, vectors[3] / np.linalg.norm(vectors[3]), atol=1e-5),
          "cosine vectors come back normalised")
    check(three.payload["project"] == "p3", "payload comes back")

    # Dense search against numpy's exact answer, unfiltered and filtered.
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = rng.normal(size=16).astype(np.float32)
    scores = normed @ (query / np.linalg.norm(query))
    hits = client.query_points(name, query=query.tolist(), using="dense", limit=10, with_payload=False).points
    expected = list(np.argsort(-scores)[:10])
    check([h.id for h in hits] == expected, f"dense top 10 {[h.id for h in hits]} vs {expected}")
    check(all(abs(h.score - scores[h.id]) < 1e-4 for h in hits), "dense scores are cosine similarities")
    check(hits[0].payload is None, "no payload when with_payload is false")

    filtered = client.query_points(name, query=query.tolist(), using="dense", limit=5,
                                   query_filter=in_p1, with_payload=True).points
    expected = [i for i in np.argsort(-scores) if i % 5 == 1][:5]
    check([h.id for h in filtered] == expected, "filtered top 5 matches the exact answer")
    check(all(h.payload["project"] == "p1" for h in filtered), "filtered hits satisfy the filter")

    paged = client.query_points(name, query=query.tolist(), using="dense", limit=5, offset=5).points
    check([h.id for h in paged] == list(np.argsort(-scores)[5:10]), "offset skips the first hits")
    threshold = float(scores[np.argsort(-scores)[3]])
    above = client.query_points(name, query=query.tolist(), using="dense", limit=50,
                                score_threshold=threshold).points
    check(len(above) == 4, f"score_threshold keeps the 4 hits at or above it, got {len(above)}")

    # Filter kinds: should, must_not, match any, text, range, has_id.
    complex_filter = models.Filter(
        must=[models.FieldCondition(key="year", range=models.Range(gte=2010, lt=2015))],
        should=[models.FieldCondition(key="project", match=models.MatchAny(any=["p0", "p2"]))],
        must_not=[models.FieldCondition(key="tags", match=models.MatchValue(value="odd"))],
    )
    expected_ids = {i for i in range(500)
                    if 2010 <= 2000 + i % 25 < 2015 and i % 5 in (0, 2) and i % 2 == 0}
    got_ids = set()
    offset = None
    while True:
        page, offset = client.scroll(name, scroll_filter=complex_filter, limit=7, offset=offset)
        got_ids |= {p.id for p in page}
        if offset is None:
            break
    check(got_ids == expected_ids, "scrolling with a compound filter returns exactly the matching points")
    text_filter = models.Filter(must=[models.FieldCondition(key="text", match=models.MatchText(text="wasm rust"))])
    expected_text = sum(1 for p in points if {"wasm", "rust"} <= set(p.payload["text"].split()))
    check(client.count(name, count_filter=text_filter).count == expected_text, "full-text match")
    has_id = models.Filter(must=[models.HasIdCondition(has_id=[1, 2, 3])])
    check(client.count(name, count_filter=has_id).count == 3, "has_id")

    # Sparse search with the idf modifier, and hybrid search with reciprocal rank fusion.
    sparse_query = models.SparseVector(indices=[1, 4], values=[1.0, 1.0])
    sparse_hits = client.query_points(name, query=sparse_query, using="words", limit=10).points
    check(len(sparse_hits) == 10, "sparse search returns hits")
    best = client.retrieve(name, ids=[sparse_hits[0].id])[0]
    check({"wasm", "rust"} <= set(best.payload["text"].split()), "the best sparse hit has both words")
    check(sparse_hits[0].score >= sparse_hits[-1].score, "sparse hits are ordered")
    fused = client.query_points(
        name,
        prefetch=[
            models.Prefetch(query=query.tolist(), using="dense", limit=20),
            models.Prefetch(query=sparse_query, using="words", limit=20),
        ],
        query=models.FusionQuery(fusion=models.Fusion.RRF),
        limit=10,
    ).points
    check(len(fused) == 10, "fusion returns the limit")
    check(all(a.score >= b.score for a, b in zip(fused, fused[1:])), "fused hits are ordered")
    dense_ids = [h.id for h in client.query_points(name, query=query.tolist(), using="dense", limit=20).points]
    sparse_ids = [h.id for h in client.query_points(name, query=sparse_query, using="words", limit=20).points]
    both = set(dense_ids) & set(sparse_ids)
    if both:
        check(fused[0].id in both or fused[0].id == dense_ids[0] or fused[0].id == sparse_ids[0],
              "the top fused hit is ranked well by both lists")

    # Bad input: each a clear 4xx in Qdrant's error shape.
    check(status_of(lambda: client.query_points(name, query=[0.1] * 3, using="dense")) == 400,
          "a dimension mismatch is a 400")
    check(status_of(lambda: client.upsert(name, points=[models.PointStruct(
        id=1, vector={"dense": [0.1] * 15})])) == 400, "a wrong-sized vector is refused")
    check(status_of(lambda: client.query_points("missing", query=[0.1] * 16)) == 404,
          "an unknown collection is a 404")
    headers = {"api-key": api_key, "content-type": "application/json"}
    bad_json = httpx.put(f"{url}/collections/{name}/points", headers=headers, content=b"{not json")
    check(bad_json.status_code == 400 and "error" in bad_json.json()["status"], "malformed JSON is a 400")
    nan = httpx.put(f"{url}/collections/{name}/points", headers=headers,
                    content=b'{"points":[{"id":1,"vector":{"dense":[NaN' + b',0' * 15 + b']}}]}')
    check(nan.status_code == 400, "NaN in a vector is a 400")
    huge = httpx.put(f"{url}/collections/{name}/points", headers=headers,
                     content=b'{"points":[{"id":1,"vector":{"dense":[1e39' + b',0' * 15 + b']}}]}')
    check(huge.status_code == 400, "a value beyond f32 is a 400")
    wrong_type = httpx.put(f"{url}/collections/{name}/points", headers=headers,
                           json={"points": [{"id": -5, "vector": {"dense": [0] * 16}}]})
    check(wrong_type.status_code == 400, "a negative id is a 400")
    check(client.count(name).count == 501, "refused writes changed nothing")
    for schema in ({"type": "integer", "is_tenant": True}, {"type": "keyword", "is_tenant": "yes"}):
        bad_index = httpx.put(f"{url}/collections/{name}/index", headers=headers,
                              json={"field_name": "year", "field_schema": schema})
        check(bad_index.status_code == 400 and "error" in bad_index.json()["status"],
              f"a bad index schema is a 400: {schema}")
    check("year" not in client.get_collection(name).payload_schema, "refused indexes are not created")

    # Deletes: by id and by filter.
    client.delete(name, points_selector=models.PointIdsList(points=[0, 1, uuid]), wait=True)
    check(client.count(name).count == 498, "delete by ids")
    client.delete(name, points_selector=models.FilterSelector(filter=in_p1), wait=True)
    check(client.count(name, count_filter=in_p1).count == 0, "delete by filter")
    check(client.count(name).count == 399, "delete by filter removes only the matching points")
    remaining = client.query_points(name, query=query.tolist(), using="dense", limit=400).points
    check(all(h.id % 5 != 1 and h.id not in (0, 1) for h in remaining), "deleted points are not found")

    client.delete_collection(name)
    check(not client.collection_exists(name), "the collection is deleted")
    print(f"qdrant conformance: {checks} checks passed")


if __name__ == "__main__":
    main()
