//! Reading the embedded stores directly, as an operator would, to check what the functions left in
//! them: every database of the document store, every collection of the vector store, every object
//! file of the object store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::accounts::call;

/// The embedded stores of one running host.
#[derive(Debug, Clone)]
pub struct Inspector {
    docstore: SocketAddr,
    docstore_auth: String,
    vectorstore: SocketAddr,
    vector_key: String,
    objects: PathBuf,
}

/// How much each store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub documents: u64,
    pub points: u64,
    pub objects: u64,
}

impl Inspector {
    pub fn new(host: &host::RunningHost, data_dir: &Path) -> Self {
        let service = |name: &str| {
            host.services
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no embedded {name}"))
                .addr
        };
        let secret = |name: &str| secret(data_dir, name);
        Self {
            docstore: service("docstore"),
            docstore_auth: crate::basic_auth("admin", &secret("docstore")),
            vectorstore: service("vectorstore"),
            vector_key: secret("vectorstore"),
            objects: data_dir.join("objects"),
        }
    }

    /// The embedded stores of an `edgerag up` process, found as an operator finds them: in
    /// `<data_dir>/endpoints.json`, with the secrets beside it.
    pub fn from_endpoints(data_dir: &Path) -> Self {
        let text =
            std::fs::read_to_string(data_dir.join("endpoints.json")).expect("endpoints.json");
        let endpoints: Value = serde_json::from_str(&text).expect("endpoints.json is JSON");
        let addr = |name: &str| -> SocketAddr {
            endpoints[name]
                .as_str()
                .and_then(|url| url.trim_start_matches("http://").parse().ok())
                .unwrap_or_else(|| panic!("no embedded {name} in endpoints.json"))
        };
        let secret = |name: &str| secret(data_dir, name);
        Self {
            docstore: addr("docstore"),
            docstore_auth: crate::basic_auth("admin", &secret("docstore")),
            vectorstore: addr("vectorstore"),
            vector_key: secret("vectorstore"),
            objects: data_dir.join("objects"),
        }
    }

    /// A call to the document store's CouchDB API.
    pub async fn couch(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = call(self.docstore, method, path, Some(&self.docstore_auth), body).await;
        reply.json()
    }

    /// A call to the vector store's Qdrant API.
    pub async fn qdrant(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("api-key", &self.vector_key)
            .header("content-type", "application/json");
        request = request.header("host", self.vectorstore.to_string());
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply = crate::exchange(self.vectorstore, request.body(body).expect("request"))
            .await
            .expect("the vector store answers");
        reply.json()
    }

    /// Every document of every database, every point payload of every collection and every object
    /// path that mentions `needle`: where a deleted thing would still be.
    pub async fn traces(&self, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        let dbs = self.couch("GET", "/_all_dbs", None).await;
        for db in dbs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let rows = self
                .couch("GET", &format!("/{db}/_all_docs?include_docs=true"), None)
                .await;
            for row in rows["rows"].as_array().into_iter().flatten() {
                if row.to_string().contains(needle) {
                    found.push(format!("docstore {db}/{}", row["id"]));
                }
            }
        }
        let collections = self.qdrant("GET", "/collections", None).await;
        for c in collections["result"]["collections"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = c["name"].as_str().unwrap_or_default();
            let points = self.scroll(name, json!({})).await;
            for point in points {
                if point.to_string().contains(needle) {
                    found.push(format!("vectorstore {name}/{}", point["id"]));
                }
            }
        }
        for path in files(&self.objects) {
            if path.to_string_lossy().contains(needle) {
                found.push(format!("objectstore {}", path.display()));
            }
        }
        found
    }

    /// Every point of a collection matching `filter`, with payloads.
    pub async fn scroll(&self, collection: &str, filter: Value) -> Vec<Value> {
        let mut points = Vec::new();
        let mut offset = Value::Null;
        loop {
            let mut body = json!({"limit": 1000, "with_payload": true, "filter": filter});
            if !offset.is_null() {
                body["offset"] = offset.clone();
            }
            let page = self
                .qdrant(
                    "POST",
                    &format!("/collections/{collection}/points/scroll"),
                    Some(body),
                )
                .await;
            points.extend(
                page["result"]["points"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            offset = page["result"]["next_page_offset"].clone();
            if offset.is_null() {
                return points;
            }
        }
    }

    /// What the knowledge path holds: records in ingest's database (auth's counters and audit
    /// entries change with every request and are not counted), points and object files.
    pub async fn counts(&self) -> Counts {
        let documents = self.couch("GET", "/edgerag_ingest", None).await["doc_count"]
            .as_u64()
            .unwrap_or(0);
        let mut points = 0;
        let collections = self.qdrant("GET", "/collections", None).await;
        for c in collections["result"]["collections"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = c["name"].as_str().unwrap_or_default();
            points += self
                .qdrant(
                    "POST",
                    &format!("/collections/{name}/points/count"),
                    Some(json!({"exact": true})),
                )
                .await["result"]["count"]
                .as_u64()
                .unwrap_or(0);
        }
        Counts {
            documents,
            points,
            objects: files(&self.objects).len() as u64,
        }
    }
}

/// Every file under `dir`.
/// A store's secret as `edgerag up` keeps it, in `<data_dir>/secrets`.
fn secret(data_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(data_dir.join("secrets").join(name))
        .expect("the store's secret")
        .trim()
        .to_string()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A PDF with one page per text (Helvetica, one line each), as a real writer makes it.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let mut kids: Vec<Object> = Vec::new();
    for text in pages {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![50.into(), 780.into()]),
        ];
        for line in text.lines() {
            operations.push(Operation::new("Tj", vec![Object::string_literal(line)]));
            operations.push(Operation::new("T*", vec![]));
        }
        operations.push(Operation::new("ET", vec![]));
        let content = Content { operations };
        let mut stream = Stream::new(dictionary! {}, content.encode().expect("content"));
        let _ = stream.compress();
        let content_id = doc.add_object(stream);
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("a PDF");
    bytes
}
