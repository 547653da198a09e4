use super::collection::*;
use super::distance::*;
use super::points::*;
use super::query::*;
use super::sparse::*;
use super::store::*;
use crate::filter::{self, Filter};
use crate::point_id::*;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgerag-vec-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("vectors.sqlite")
}

/// Reproducible numbers in [-1, 1) (xorshift).
fn numbers(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f32 / 500.0 - 1.0
    }
}

fn point(id: u64, vector: Vec<f32>, project: &str) -> NewPoint {
    NewPoint {
        id: PointId::Num(id),
        payload: json!({"project": project}).as_object().unwrap().clone(),
        vectors: PointVectors {
            dense: BTreeMap::from([(String::new(), vector)]),
            sparse: BTreeMap::new(),
            multi: BTreeMap::new(),
        },
    }
}

#[test]
fn ids_parse_and_order_like_qdrant() {
    assert_eq!(PointId::parse(&json!(7)).unwrap(), PointId::Num(7));
    assert_eq!(
        PointId::parse(&json!("550E8400E29B41D4A716446655440000")).unwrap(),
        PointId::Uuid("550e8400-e29b-41d4-a716-446655440000".into())
    );
    assert!(PointId::parse(&json!(-1)).is_err());
    assert!(PointId::parse(&json!("not-a-uuid")).is_err());
    assert!(PointId::Num(u64::MAX) < PointId::Uuid("0".into()));
    let key = PointId::Num(42).storage_key();
    assert_eq!(PointId::from_storage_key(&key), Some(PointId::Num(42)));
}

#[test]
fn vectors_round_trip_through_storage_encoding() {
    let vectors = PointVectors {
        dense: BTreeMap::from([("a".into(), vec![1.0, -2.5]), (String::new(), vec![0.25])]),
        sparse: BTreeMap::from([(
            "s".into(),
            SparseVector {
                indices: vec![3, 9],
                values: vec![0.5, 1.5],
            },
        )]),
        multi: BTreeMap::from([("m".into(), vec![vec![1.0, 2.0], vec![-3.0, 0.5]])]),
    };
    let decoded = PointVectors::decode(&vectors.encode()).unwrap();
    assert_eq!(decoded.dense, vectors.dense);
    assert_eq!(decoded.sparse, vectors.sparse);
    assert!(PointVectors::decode(&[0, 1]).is_none());
}

#[test]
fn exact_and_graph_search_agree_and_survive_reopen() {
    let path = temp_db("search");
    let store = Store::open(&path).unwrap();
    store
        .create_collection(
            "c",
            &json!({"vectors": {"size": 8, "distance": "Cosine"},
                    "hnsw_config": {"full_scan_threshold": 0}}),
        )
        .unwrap();
    let mut random = numbers(7);
    let points: Vec<NewPoint> = (0..2000)
        .map(|i| {
            let v: Vec<f32> = (0..8).map(|_| random()).collect();
            point(i, v, if i % 4 == 0 { "a" } else { "b" })
        })
        .collect();
    store.upsert("c", points).unwrap();
    store
        .create_index("c", "project", &json!("keyword"))
        .unwrap();
    let query: Vec<f32> = (0..8).map(|_| random()).collect();
    let search = |exact: bool, filter: Option<Filter>| Search {
        using: String::new(),
        query: QueryVector::Dense(query.clone()),
        filter,
        limit: 10,
        offset: 0,
        score_threshold: None,
        ef: Some(200),
        exact,
    };
    let shared = store.collection("c").unwrap();
    let collection = shared.read().unwrap();
    let exact = collection.search(&search(true, None)).unwrap();
    let graph = collection.search(&search(false, None)).unwrap();
    let overlap = graph
        .iter()
        .filter(|g| exact.iter().any(|e| e.0 == g.0))
        .count();
    assert!(
        overlap >= 9,
        "graph search found {overlap}/10 of the exact top 10"
    );
    assert!(exact.windows(2).all(|w| w[0].1 >= w[1].1));

    let only_a =
        filter::parse(&json!({"must": [{"key": "project", "match": {"value": "a"}}]})).unwrap();
    let filtered = collection.search(&search(false, only_a)).unwrap();
    assert_eq!(filtered.len(), 10);
    for (slot, _) in &filtered {
        let PointId::Num(id) = collection.id_of(*slot).unwrap() else {
            panic!()
        };
        assert_eq!(id % 4, 0);
    }
    // The index decides this filter alone; with a condition it cannot answer, every candidate
    // is checked against the payload. Both must give the same answer.
    let checked = filter::parse(&json!({
        "must": [{"key": "project", "match": {"value": "a"}}],
        "must_not": [{"key": "project", "match": {"value": "none"}}]
    }))
    .unwrap();
    assert_eq!(
        collection.search(&search(false, checked)).unwrap(),
        filtered
    );
    // The scan ranked by codes and rescored finds what the scan over full vectors finds.
    let only_a =
        filter::parse(&json!({"must": [{"key": "project", "match": {"value": "a"}}]})).unwrap();
    assert_eq!(collection.search(&search(true, only_a)).unwrap(), filtered);
    // Two indexed conditions narrow to the slots both allow.
    let both = filter::parse(&json!({"must": [
        {"key": "project", "match": {"any": ["a", "b"]}},
        {"key": "project", "match": {"value": "a"}}
    ]}))
    .unwrap();
    assert_eq!(collection.search(&search(false, both)).unwrap(), filtered);
    assert_eq!(intersect_sorted(&[1, 3, 5, 9], &[2, 3, 9, 11]), vec![3, 9]);
    // A filter keeping a quarter of 2,000 points is scanned; no filter walks the graph.
    assert!(collection.prefer_exact(8, 500, 10));
    assert!(!collection.prefer_exact(8, 2000, 10));
    drop(collection);
    drop(store);

    let reopened = Store::open(&path).unwrap();
    let shared = reopened.collection("c").unwrap();
    let collection = shared.read().unwrap();
    assert_eq!(collection.len(), 2000);
    assert_eq!(collection.search(&search(true, None)).unwrap(), exact);
}

#[test]
fn manhattan_distances_rank_smallest_first_in_the_graph_as_exactly() {
    let store = Store::open(&temp_db("manhattan")).unwrap();
    store
        .create_collection(
            "m",
            &json!({"vectors": {"size": 8, "distance": "Manhattan"},
                    "hnsw_config": {"full_scan_threshold": 0}}),
        )
        .unwrap();
    let mut random = numbers(3);
    let points: Vec<NewPoint> = (0..2000)
        .map(|i| point(i, (0..8).map(|_| random()).collect(), "a"))
        .collect();
    store.upsert("m", points).unwrap();
    let query: Vec<f32> = (0..8).map(|_| random()).collect();
    let search = |exact: bool| Search {
        using: String::new(),
        query: QueryVector::Dense(query.clone()),
        filter: None,
        limit: 10,
        offset: 0,
        score_threshold: None,
        ef: Some(200),
        exact,
    };
    let shared = store.collection("m").unwrap();
    let collection = shared.read().unwrap();
    let exact = collection.search(&search(true)).unwrap();
    let graph = collection.search(&search(false)).unwrap();
    assert!(exact.windows(2).all(|w| w[0].1 <= w[1].1), "{exact:?}");
    let (slot, score) = exact[0];
    let nearest = collection.point_vectors(slot).unwrap().dense[""].clone();
    let expected: f32 = query.iter().zip(&nearest).map(|(a, b)| (a - b).abs()).sum();
    assert!(
        (score - expected).abs() < 1e-4,
        "{score} against {expected}"
    );
    let overlap = graph
        .iter()
        .filter(|g| exact.iter().any(|e| e.0 == g.0))
        .count();
    assert!(
        overlap >= 9,
        "the graph found {overlap}/10 of the exact top 10"
    );
    assert_eq!(l1(&[0.0, 1.0], &[1.0, 1.0]), 1.0);
    assert_eq!(l1(&[-1.0, -1.0], &[1.0, 1.0]), 4.0);
}

#[test]
fn text_conditions_read_text_as_the_fields_text_index_does() {
    let store = Store::open(&temp_db("text")).unwrap();
    store
        .create_collection("t", &json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .unwrap();
    let titled = |id: u64, title: &str| NewPoint {
        id: PointId::Num(id),
        payload: json!({"title": title}).as_object().unwrap().clone(),
        vectors: PointVectors {
            dense: BTreeMap::from([(String::new(), vec![1.0, 0.0])]),
            sparse: BTreeMap::new(),
            multi: BTreeMap::new(),
        },
    };
    store
        .upsert(
            "t",
            vec![
                titled(1, "Little Lost Robot"),
                titled(2, "The Portable Star"),
                titled(3, "Robot Dreams"),
            ],
        )
        .unwrap();
    let ids = |condition: Value| -> Vec<u64> {
        let filter = filter::parse(&json!({"must": [condition]})).unwrap();
        let shared = store.collection("t").unwrap();
        let collection = shared.read().unwrap();
        let mut ids: Vec<u64> = (0..3)
            .filter(|slot| collection.matches(*slot, filter.as_ref()))
            .map(|slot| match collection.id_of(slot).unwrap() {
                PointId::Num(n) => *n,
                PointId::Uuid(_) => panic!(),
            })
            .collect();
        ids.sort();
        ids
    };
    let text = |t: &str| json!({"key": "title", "match": {"text": t}});
    let any = |t: &str| json!({"key": "title", "match": {"text_any": t}});
    // Without a text index: whole words, lower-cased.
    assert_eq!(ids(text("ROBOT")), [1, 3]);
    assert!(ids(text("ROBO")).is_empty());
    assert_eq!(ids(any("robot star")), [1, 2, 3]);
    store
        .create_index(
            "t",
            "title",
            &json!({"type": "text", "tokenizer": "prefix", "stopwords": "english"}),
        )
        .unwrap();
    assert_eq!(ids(text("ROBO")), [1, 3]);
    assert_eq!(ids(text("robo dre")), [3]);
    // Stop words leave the query: "the" alone asks for nothing, and matches nothing.
    assert!(ids(text("the")).is_empty());
    assert_eq!(ids(any("the port")), [2]);
    assert!(
        store
            .create_index(
                "t",
                "title",
                &json!({"type": "text", "tokenizer": "letters"})
            )
            .is_err()
    );
}

#[test]
fn a_patch_changes_what_it_can_and_refuses_the_rest_by_name() {
    let store = Store::open(&temp_db("patch")).unwrap();
    store
        .create_collection(
            "p",
            &json!({"vectors": {"d": {"size": 8, "distance": "Cosine"}},
                    "sparse_vectors": {"s": {"modifier": "idf"}},
                    "hnsw_config": {"full_scan_threshold": 0}}),
        )
        .unwrap();
    let mut random = numbers(5);
    let points: Vec<NewPoint> = (0..500)
        .map(|i| NewPoint {
            id: PointId::Num(i),
            payload: serde_json::Map::new(),
            vectors: PointVectors {
                dense: BTreeMap::from([("d".to_string(), (0..8).map(|_| random()).collect())]),
                sparse: BTreeMap::new(),
                multi: BTreeMap::new(),
            },
        })
        .collect();
    store.upsert("p", points).unwrap();
    let query: Vec<f32> = (0..8).map(|_| random()).collect();
    let search = |exact: bool| Search {
        using: "d".into(),
        query: QueryVector::Dense(query.clone()),
        filter: None,
        limit: 10,
        offset: 0,
        score_threshold: None,
        ef: Some(200),
        exact,
    };
    let top = |exact: bool| {
        let shared = store.collection("p").unwrap();
        let collection = shared.read().unwrap();
        collection.search(&search(exact)).unwrap()
    };
    let exact = top(true);
    store
        .update_collection(
            "p",
            &json!({"sparse_vectors": {"s": {"modifier": "none"}}, "hnsw_config": {"m": 8}}),
        )
        .unwrap();
    {
        let shared = store.collection("p").unwrap();
        let collection = shared.read().unwrap();
        assert!(!collection.sparse["s"].idf);
        assert_eq!(collection.config.hnsw.m, 8);
        assert_eq!(
            collection.dense["d"].graph.size(),
            500,
            "the graph was rebuilt whole"
        );
    }
    let graph = top(false);
    let overlap = graph
        .iter()
        .filter(|g| exact.iter().any(|e| e.0 == g.0))
        .count();
    assert!(overlap >= 9, "the rebuilt graph found {overlap}/10");
    for refused in [
        json!({"optimizers_config": {"indexing_threshold": 10}}),
        json!({"sparse_vectors": {"s": {"index": {"on_disk": true}}}}),
        json!({"hnsw_config": {"on_disk": true}}),
        json!({"sparse_vectors": {"nope": {"modifier": "idf"}}}),
    ] {
        let error = store.update_collection("p", &refused).unwrap_err();
        assert_eq!(error.status, 400, "{refused}: {}", error.message);
    }
    // Metadata is merged key by key; a null removes a key.
    store
        .update_collection("p", &json!({"metadata": {"model": "minilm", "v": 1}}))
        .unwrap();
    store
        .update_collection("p", &json!({"metadata": {"v": null, "lang": "en"}}))
        .unwrap();
    // Kept across a restart.
    let path = store.db().path().map(std::path::PathBuf::from).unwrap();
    drop(store);
    let reopened = Store::open(&path).unwrap();
    let shared = reopened.collection("p").unwrap();
    let collection = shared.read().unwrap();
    assert!(!collection.sparse["s"].idf);
    assert_eq!(
        collection.info()["config"]["metadata"],
        json!({"model": "minilm", "lang": "en"})
    );
}

#[test]
fn the_code_scan_is_exact_among_near_equal_vectors() {
    let store = Store::open(&temp_db("ties")).unwrap();
    store
        .create_collection("c", &json!({"vectors": {"size": 8, "distance": "Cosine"}}))
        .unwrap();
    // Thirteen directions repeated: hundreds of exact duplicates and near-duplicates per query.
    let points: Vec<NewPoint> = (0..3000u64)
        .map(|id| {
            let mut v: Vec<f32> = (0..8).map(|d| ((id + d) % 13) as f32 + 1.0).collect();
            normalize(&mut v);
            point(id, v, "a")
        })
        .collect();
    store.upsert("c", points).unwrap();
    let shared = store.collection("c").unwrap();
    let collection = shared.read().unwrap();
    for probe in 0..13u64 {
        let query: Vec<f32> = (0..8).map(|d| ((probe + d) % 13) as f32 + 1.0).collect();
        let search = |exact: bool| Search {
            using: String::new(),
            query: QueryVector::Dense(query.clone()),
            filter: None,
            limit: 5,
            offset: 0,
            score_threshold: None,
            ef: None,
            exact,
        };
        let scores = |found: Vec<(u32, f32)>| found.iter().map(|f| f.1).collect::<Vec<_>>();
        let chosen = scores(collection.search(&search(false)).unwrap());
        assert_eq!(chosen, scores(collection.search(&search(true)).unwrap()));
        assert!((chosen[0] - 1.0).abs() < 1e-5, "{chosen:?}");
    }
}

#[test]
fn upserts_replace_and_deletes_remove_everywhere() {
    let store = Store::open(&temp_db("replace")).unwrap();
    store
        .create_collection("c", &json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .unwrap();
    store
        .create_index("c", "project", &json!("keyword"))
        .unwrap();
    store
        .upsert(
            "c",
            vec![point(1, vec![1.0, 0.0], "a"), point(2, vec![0.0, 1.0], "a")],
        )
        .unwrap();
    store
        .upsert("c", vec![point(1, vec![0.0, 2.0], "b")])
        .unwrap();
    let search = Search {
        using: String::new(),
        query: QueryVector::Dense(vec![0.0, 1.0]),
        filter: None,
        limit: 10,
        offset: 0,
        score_threshold: None,
        ef: None,
        exact: false,
    };
    {
        let shared = store.collection("c").unwrap();
        let c = shared.read().unwrap();
        let hits = c.search(&search).unwrap();
        assert_eq!(c.id_of(hits[0].0), Some(&PointId::Num(1)));
        assert_eq!(hits[0].1, 2.0);
        let in_a = filter::parse(&json!({"must": {"key": "project", "match": {"value": "a"}}}))
            .unwrap()
            .unwrap();
        assert_eq!(c.scan(Some(&in_a), None).count(), 1);
    }
    store
        .delete_points("c", Selector::Ids(vec![PointId::Num(1)]))
        .unwrap();
    assert_eq!(store.stored_count("c").unwrap(), 1);
    let shared = store.collection("c").unwrap();
    let c = shared.read().unwrap();
    let hits = c.search(&search).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(c.id_of(hits[0].0), Some(&PointId::Num(2)));
}

#[test]
fn a_tenant_index_finds_what_a_plain_index_finds() {
    let path = temp_db("tenant");
    let store = Store::open(&path).unwrap();
    for name in ["plain", "tenant"] {
        store
            .create_collection(
                name,
                &json!({"vectors": {"size": 16, "distance": "Cosine"}}),
            )
            .unwrap();
    }
    store
        .create_index("plain", "project", &json!("keyword"))
        .unwrap();
    let mut random = numbers(11);
    // One tenant large enough for the two-thread scan, small ones, and points in two tenants.
    let project = |id: u64| match id % 10 {
        0..=6 => json!("big"),
        7 => json!("a"),
        8 => json!("b"),
        _ => json!(["a", "b"]),
    };
    let mut make = |id: u64, project: Value| {
        let mut p = point(id, (0..16).map(|_| random()).collect(), "");
        p.payload.insert("project".into(), project);
        p
    };
    let first: Vec<NewPoint> = (0..7000).map(|id| make(id, project(id))).collect();
    // Half before the tenant index exists (built from the points), half after (kept up).
    for name in ["plain", "tenant"] {
        store.upsert(name, first[..3500].to_vec()).unwrap();
    }
    let tenant = json!({"type": "keyword", "is_tenant": true});
    store.create_index("tenant", "project", &tenant).unwrap();
    // Moves between tenants, new vectors, deletes.
    let changes: Vec<NewPoint> = (0..600).map(|i| make(i * 11, project(i * 7 + 3))).collect();
    let gone: Vec<PointId> = (0..300).map(|i| PointId::Num(i * 13 + 5)).collect();
    for name in ["plain", "tenant"] {
        store.upsert(name, first[3500..].to_vec()).unwrap();
        store.upsert(name, changes.clone()).unwrap();
        store
            .delete_points(name, Selector::Ids(gone.clone()))
            .unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..16).map(|_| random()).collect())
        .collect();
    let filters = [
        json!({"must": [{"key": "project", "match": {"value": "big"}}]}),
        json!({"must": [{"key": "project", "match": {"value": "a"}}]}),
        json!({"must": [{"key": "project", "match": {"any": ["a", "b"]}}]}),
        json!({"must": [{"key": "project", "match": {"value": "nobody"}}]}),
        json!({"must": [{"key": "project", "match": {"value": "b"}}],
               "must_not": [{"has_id": [8, 18, 28]}]}),
    ];
    let check = |store: &Store| {
        let plain = store.collection("plain").unwrap();
        let plain = plain.read().unwrap();
        let tenant = store.collection("tenant").unwrap();
        let tenant = tenant.read().unwrap();
        assert_eq!(tenant.len(), plain.len());
        // Every group holds exactly its tenant's points, each row the slot's current codes.
        let index = &tenant.indexes["project"];
        let dense = &tenant.dense[""];
        let groups = index.tenants.as_ref().unwrap();
        assert_eq!(groups.len(), 3);
        for (value, slots) in &index.values {
            let group = &groups[value][""];
            let mut held = group.slots.clone();
            held.sort_unstable();
            assert_eq!(held, slots.iter().copied().collect::<Vec<_>>(), "{value}");
            for (slot, row) in group.rows() {
                assert_eq!(Some(row), dense.code_bytes(slot));
            }
        }
        let ids = |c: &Collection, found: Vec<(u32, f32)>| {
            found
                .into_iter()
                .map(|(slot, score)| (c.id_of(slot).unwrap().clone(), score))
                .collect::<Vec<_>>()
        };
        for query in &queries {
            for f in &filters {
                let search = |exact: bool| Search {
                    using: String::new(),
                    query: QueryVector::Dense(query.clone()),
                    filter: filter::parse(f).unwrap(),
                    limit: 10,
                    offset: 0,
                    score_threshold: None,
                    ef: None,
                    exact,
                };
                let found = ids(&tenant, tenant.search(&search(false)).unwrap());
                assert_eq!(
                    found,
                    ids(&plain, plain.search(&search(false)).unwrap()),
                    "{f}"
                );
                assert_eq!(
                    found,
                    ids(&tenant, tenant.search(&search(true)).unwrap()),
                    "{f}"
                );
            }
        }
        assert_eq!(
            tenant.info()["payload_schema"]["project"]["params"]["is_tenant"],
            json!(true)
        );
    };
    check(&store);
    drop(store);
    check(&Store::open(&path).unwrap());

    let store = Store::open(&path).unwrap();
    for bad in [
        json!({"type": "integer", "is_tenant": true}),
        json!({"type": "keyword", "is_tenant": "yes"}),
    ] {
        let error = store.create_index("tenant", "other", &bad).unwrap_err();
        assert_eq!(error.status, 400, "{bad}");
    }
}

#[test]
fn a_store_from_before_index_params_opens_with_its_indexes() {
    let path = temp_db("old-schema");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE collections (name TEXT PRIMARY KEY, config TEXT NOT NULL);
             CREATE TABLE payload_indexes (collection TEXT NOT NULL, field TEXT NOT NULL,
                 schema TEXT NOT NULL, PRIMARY KEY (collection, field));
             INSERT INTO collections VALUES ('c', '{\"vectors\": {\"size\": 2, \"distance\": \"Dot\"}}');
             INSERT INTO payload_indexes VALUES ('c', 'project', 'keyword');",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    store
        .upsert("c", vec![point(1, vec![1.0, 0.0], "a")])
        .unwrap();
    let shared = store.collection("c").unwrap();
    let info = shared.read().unwrap().info();
    assert_eq!(
        info["payload_schema"]["project"],
        json!({"data_type": "keyword", "points": 1})
    );
    drop(shared);
    let tenant = json!({"type": "keyword", "is_tenant": true});
    store.create_index("c", "project", &tenant).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let shared = store.collection("c").unwrap();
    let info = shared.read().unwrap().info();
    assert_eq!(info["payload_schema"]["project"]["params"], tenant);
}

#[test]
fn invalid_collection_and_index_settings_get_qdrants_422() {
    // Issue 16's invalid inputs, answered as Qdrant answers them.
    let store = Store::open(&temp_db("invalid")).unwrap();
    let vectors = json!({"size": 4, "distance": "Dot"});
    for field in [
        "shard_number",
        "replication_factor",
        "write_consistency_factor",
    ] {
        // Below 1 is Qdrant's validation error; a negative number is not even a count (400).
        let error = store
            .create_collection("c", &json!({"vectors": vectors, field: -1}))
            .unwrap_err();
        assert_eq!(error.status, 400, "{field}: {}", error.message);
        let error = store
            .create_collection("c", &json!({"vectors": vectors, field: 0}))
            .unwrap_err();
        assert!(error.message.contains(field), "{}", error.message);
        assert_eq!(error.status, 422);
    }
    for body in [
        json!({"vectors": vectors, "shard_number": 0}),
        json!({"vectors": vectors, "hnsw_config": {"ef_construct": 0}}),
    ] {
        let error = store.create_collection("c", &body).unwrap_err();
        assert_eq!(error.status, 422, "{body}");
        assert!(
            error.message.starts_with("Validation error"),
            "{}",
            error.message
        );
    }
    store
        .create_collection("c", &json!({"vectors": vectors, "shard_number": 2}))
        .unwrap();
    let error = store
        .create_index(
            "c",
            "year",
            &json!({"type": "integer", "lookup": false, "range": false}),
        )
        .unwrap_err();
    assert_eq!(error.status, 422);
    assert!(error.message.contains(
        "Validation error: the 'lookup' and 'range' capabilities can't be both disabled"
    ));
    store
        .create_index(
            "c",
            "year",
            &json!({"type": "integer", "lookup": false, "range": true}),
        )
        .unwrap();
}

#[test]
fn payload_changes_apply_persist_and_keep_indexes_right() {
    // Issue 16: set / overwrite / delete / clear payload, by ids or by filter.
    let path = temp_db("payload");
    let store = Store::open(&path).unwrap();
    store
        .create_collection("c", &json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .unwrap();
    store
        .upsert(
            "c",
            (1..=3).map(|i| point(i, vec![1.0, 0.0], "a")).collect(),
        )
        .unwrap();
    store
        .create_index("c", "project", &json!("keyword"))
        .unwrap();
    let payload_of = |store: &Store, id: u64| -> Value {
        let shared = store.collection("c").unwrap();
        let collection = shared.read().unwrap();
        let slot = collection.slot_of(&PointId::Num(id)).unwrap();
        let with = With::parse(&json!(true), &Value::Null, true).unwrap();
        collection.record(slot, &with).unwrap()["payload"].clone()
    };
    let in_project = |store: &Store, project: &str| -> usize {
        let shared = store.collection("c").unwrap();
        let collection = shared.read().unwrap();
        let filter =
            filter::parse(&json!({"must": [{"key": "project", "match": {"value": project}}]}))
                .unwrap()
                .unwrap();
        collection.scan(Some(&filter), None).count()
    };
    let ids = |ids: &[u64]| Selector::Ids(ids.iter().map(|i| PointId::Num(*i)).collect());
    let map = |v: Value| v.as_object().unwrap().clone();

    store
        .update_payload(
            "c",
            ids(&[1]),
            &PayloadChange::Set {
                values: map(json!({"lang": "en", "project": "b"})),
                key: None,
            },
        )
        .unwrap();
    assert_eq!(payload_of(&store, 1), json!({"project": "b", "lang": "en"}));
    assert_eq!(
        (in_project(&store, "a"), in_project(&store, "b")),
        (2, 1),
        "the index follows"
    );
    store
        .update_payload(
            "c",
            ids(&[1]),
            &PayloadChange::Set {
                values: map(json!({"page": 3})),
                key: Some("meta.source".into()),
            },
        )
        .unwrap();
    assert_eq!(
        payload_of(&store, 1)["meta"],
        json!({"source": {"page": 3}})
    );
    // Into one item of an array, into every item, and past its end (nothing).
    store
        .update_payload(
            "c",
            ids(&[1]),
            &PayloadChange::Set {
                values: map(json!({"parts": [{"a": 1}, {"b": 2}]})),
                key: Some("meta".into()),
            },
        )
        .unwrap();
    for (key, values) in [
        ("meta.parts[1]", json!({"b": 3})),
        ("meta.parts[].seen", json!({"yes": true})),
        ("meta.parts[5]", json!({"c": 4})),
    ] {
        store
            .update_payload(
                "c",
                ids(&[1]),
                &PayloadChange::Set {
                    values: map(values),
                    key: Some(key.into()),
                },
            )
            .unwrap();
    }
    assert_eq!(
        payload_of(&store, 1)["meta"]["parts"],
        json!([{"a": 1, "seen": {"yes": true}}, {"b": 3, "seen": {"yes": true}}])
    );
    store
        .update_payload(
            "c",
            ids(&[1]),
            &PayloadChange::Delete(vec!["meta.parts".into()]),
        )
        .unwrap();
    store
        .update_payload(
            "c",
            ids(&[1]),
            &PayloadChange::Delete(vec!["meta.source.page".into(), "lang".into()]),
        )
        .unwrap();
    assert_eq!(
        payload_of(&store, 1),
        json!({"project": "b", "meta": {"source": {}}})
    );
    let by_filter = Selector::Filter(
        filter::parse(&json!({"must": [{"key": "project", "match": {"value": "a"}}]}))
            .unwrap()
            .unwrap(),
    );
    store
        .update_payload(
            "c",
            by_filter,
            &PayloadChange::Overwrite(map(json!({"project": "c"}))),
        )
        .unwrap();
    assert_eq!(payload_of(&store, 2), json!({"project": "c"}));
    assert_eq!((in_project(&store, "a"), in_project(&store, "c")), (0, 2));
    store
        .update_payload("c", ids(&[3]), &PayloadChange::Clear)
        .unwrap();
    assert_eq!(payload_of(&store, 3), json!({}));
    // A missing id is a 404 and changes nothing, even for the ids beside it.
    let error = store
        .update_payload("c", ids(&[2, 99]), &PayloadChange::Clear)
        .unwrap_err();
    assert_eq!(error.status, 404);
    assert_eq!(payload_of(&store, 2), json!({"project": "c"}));
    // Committed: a reopened store reads the same payloads and rebuilds the same index.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        payload_of(&store, 1),
        json!({"project": "b", "meta": {"source": {}}})
    );
    assert_eq!(payload_of(&store, 3), json!({}));
    assert_eq!((in_project(&store, "b"), in_project(&store, "c")), (1, 1));
}

#[test]
fn a_scan_an_index_narrows_finds_what_a_full_scan_finds_in_id_order() {
    // A write by filter (ingest's promotion of one document's points) must not read every point of
    // the collection; what it finds, and the order of a scroll, must be what checking every point
    // finds.
    let store = Store::open(&temp_db("narrow")).unwrap();
    store
        .create_collection("c", &json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .unwrap();
    let points = (1..=400u64)
        .rev()
        .map(|i| {
            let mut p = point(i, vec![1.0, 0.0], if i % 2 == 0 { "a" } else { "b" });
            p.payload
                .insert("document".into(), json!(format!("d{}", i % 40)));
            p.payload.insert("version".into(), json!(i % 3));
            p
        })
        .collect();
    store.upsert("c", points).unwrap();
    let filters = [
        json!({"must": [{"key": "document", "match": {"value": "d7"}}]}),
        json!({"must": [
            {"key": "project", "match": {"value": "b"}},
            {"key": "document", "match": {"any": ["d7", "d9", "d12"]}},
            {"key": "version", "match": {"value": 1}},
        ]}),
        json!({"must": [{"key": "document", "match": {"value": "d9"}}],
               "must_not": [{"key": "version", "match": {"value": 0}}]}),
        json!({"must": [{"key": "document", "match": {"value": "absent"}}]}),
    ];
    let full = |store: &Store, filter: &Filter, from: Option<&PointId>| -> Vec<PointId> {
        let shared = store.collection("c").unwrap();
        let c = shared.read().unwrap();
        c.scan(Some(filter), from)
            .map(|slot| c.id_of(slot).unwrap().clone())
            .collect()
    };
    let from = PointId::Num(200);
    let mut before = Vec::new();
    for f in &filters {
        let f = filter::parse(f).unwrap().unwrap();
        before.push((full(&store, &f, None), full(&store, &f, Some(&from))));
    }
    for field in ["project", "document", "version"] {
        let schema = if field == "version" {
            "integer"
        } else {
            "keyword"
        };
        store.create_index("c", field, &json!(schema)).unwrap();
    }
    for (f, (all, paged)) in filters.iter().zip(before) {
        let f = filter::parse(f).unwrap().unwrap();
        let narrowed = full(&store, &f, None);
        assert_eq!(narrowed, all, "{f:?}");
        assert!(narrowed.windows(2).all(|w| w[0] < w[1]), "id order");
        assert_eq!(full(&store, &f, Some(&from)), paged, "{f:?} from 200");
    }
}
