//! The wiring of the embedded default services: which to start (those whose URL variable the
//! environment leaves unset), their data folders and generated secrets under the data directory, and
//! the variables that point components at them. The services themselves are their own crates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use embedded::{Credentials, Embedded};

use crate::EnvLookup;
use crate::variables;

/// The embedded default services and the variables that point components at them.
#[derive(Debug, Default)]
pub struct Defaults {
    pub services: Vec<Embedded>,
    pub variables: BTreeMap<String, String>,
}

/// Where `start_defaults` finds the embedded models.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub dir: PathBuf,
    pub preload: bool,
}

/// Starts each embedded default service whose URL variable is not set in the environment (a set
/// `SPIN_VARIABLE_DOCSTORE_URL` means an external store is used instead), each on a loopback port
/// with a secret generated on first start and kept under `data_dir`. The model server starts when
/// `models` is given and the embeddings or LLM URL is not set.
pub async fn start_defaults(
    data_dir: &Path,
    models: Option<&ModelSource>,
    env: &EnvLookup,
) -> anyhow::Result<Defaults> {
    create_private_dir(data_dir)?;
    let mut defaults = Defaults::default();
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse()?;

    // The functions' own secrets, kept with the stores': the key access tokens are signed with, and the
    // operator key for the auth admin routes (the mail outbox). `SPIN_VARIABLE_*` still overrides both.
    let signing = embedded::load_or_create_secret(data_dir, "auth-signing")?;
    defaults.provide("auth_signing_keys", format!("local:{signing}"));
    defaults.provide(
        "auth_operator_key",
        embedded::load_or_create_secret(data_dir, "operator")?,
    );
    // Webhook endpoints' secrets are derived from this key, so the document store never holds them.
    defaults.provide(
        "webhook_key",
        embedded::load_or_create_secret(data_dir, "webhook")?,
    );

    if !external(env, "docstore_url", "document store") {
        let credentials = Credentials {
            user: "admin".into(),
            secret: embedded::load_or_create_secret(data_dir, "docstore")?,
        };
        let store = docstore::start(docstore::Config {
            dir: data_dir.join("docstore"),
            addr: loopback,
            credentials: credentials.clone(),
        })
        .await?;
        tracing::info!("document store (CouchDB API) on {}", store.url());
        defaults.provide("docstore_url", store.url());
        defaults.provide("docstore_user", credentials.user);
        defaults.provide("docstore_password", credentials.secret);
        defaults.services.push(store);
    }

    if !external(env, "objectstore_url", "object store") {
        let credentials = Credentials {
            user: OBJECTSTORE_ACCESS_KEY.into(),
            secret: embedded::load_or_create_secret(data_dir, "objectstore")?,
        };
        let store = objectstore::start(objectstore::Config {
            dir: data_dir.join("objects"),
            addr: loopback,
            credentials: credentials.clone(),
            buckets: vec![OBJECTSTORE_BUCKET.into()],
        })
        .await?;
        tracing::info!("object store (S3 API) on {}", store.url());
        defaults.provide("objectstore_url", store.url());
        defaults.provide("objectstore_access_key", credentials.user);
        defaults.provide("objectstore_secret_key", credentials.secret);
        defaults.provide("objectstore_region", objectstore::REGION.into());
        defaults.provide("objectstore_bucket", OBJECTSTORE_BUCKET.into());
        defaults.services.push(store);
    }

    if !external(env, "vectorstore_url", "vector store") {
        let api_key = embedded::load_or_create_secret(data_dir, "vectorstore")?;
        let store = vectorstore::start(vectorstore::Config {
            dir: data_dir.join("vectors"),
            addr: loopback,
            api_key: api_key.clone().into(),
        })
        .await?;
        tracing::info!("vector store (Qdrant API) on {}", store.url());
        defaults.provide("vectorstore_url", store.url());
        defaults.provide("vectorstore_api_key", api_key);
        defaults.services.push(store);
    }

    if let Some(source) = models {
        let which = models::Which {
            embeddings: !external(env, "embeddings_url", "embedding model"),
            chat: !external(env, "llm_url", "chat model"),
            preload: source.preload,
        };
        if which.embeddings || which.chat {
            let api_key = embedded::load_or_create_secret(data_dir, "models")?;
            let server = models::start(models::Config {
                dir: source.dir.clone(),
                addr: loopback,
                api_key: api_key.clone().into(),
                which,
            })
            .await?;
            tracing::info!("models (OpenAI API) on {}/v1", server.url());
            // Origins, as `allowed_outbound_hosts` takes them; the paths are variables of their own.
            let base = server.url();
            if which.embeddings {
                defaults.provide("embeddings_url", base.clone());
                defaults.provide("embeddings_api_key", api_key.clone());
                defaults.provide("embeddings_model", models::EMBEDDING_MODEL.into());
            }
            if which.chat {
                defaults.provide("llm_url", base);
                defaults.provide("llm_api_key", api_key);
                defaults.provide("llm_model", models::CHAT_MODEL.into());
            }
            defaults.services.push(server);
        }
    }

    write_endpoints(data_dir, &defaults.services)?;
    Ok(defaults)
}

/// The access key and bucket of the embedded object store.
const OBJECTSTORE_ACCESS_KEY: &str = "edgerag";
const OBJECTSTORE_BUCKET: &str = "edgerag";

impl Defaults {
    fn provide(&mut self, name: &str, value: String) {
        self.variables.insert(name.to_string(), value);
    }
}

/// Whether the URL variable `name` is set in the environment, so an external server replaces the
/// embedded `what`.
fn external(env: &EnvLookup, name: &str, what: &str) -> bool {
    let set = env(&variables::env_name(name)).is_some();
    if set {
        tracing::info!(
            "{what}: {} is set; not starting the embedded one",
            variables::env_name(name)
        );
    }
    set
}

/// Records where the embedded services listen in `<data_dir>/endpoints.json` (never their secrets),
/// for operators and tools; written whole, then renamed, so a reader never sees half a file.
fn write_endpoints(data_dir: &Path, services: &[Embedded]) -> anyhow::Result<()> {
    let endpoints: serde_json::Map<String, serde_json::Value> = services
        .iter()
        .map(|s| (s.name.to_string(), serde_json::Value::String(s.url())))
        .collect();
    let path = data_dir.join("endpoints.json");
    let partial = data_dir.join("endpoints.json.partial");
    std::fs::write(&partial, serde_json::Value::Object(endpoints).to_string())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}
