//! edgerag's host: a Spin-compatible runner on wasmtime that serves the application's HTTP routes from
//! its WebAssembly components, one fresh instance per request.
//!
//! The host is infrastructure only. It holds no edgerag domain logic (that lives in `shared` and the
//! functions), and components reach nothing but what their manifest grants: declared variables and
//! `allowed_outbound_hosts`.

#![forbid(unsafe_code)]

pub mod docstore;
pub mod embedded;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod objectstore;
pub mod outbound;
pub mod router;
pub mod runtime;
pub mod server;
pub mod variables;
pub mod vectorstore;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::embedded::{Credentials, Embedded};
use crate::manifest::App;
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use crate::router::Router;
use crate::runtime::{ComponentRuntime, Grants, RuntimeConfig};
use crate::server::{Frontend, Limits};
use crate::variables::AppVariables;

/// Looks up an environment variable; tests pass their own instead of touching the process's.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything `edgerag up` needs to run an application.
#[derive(Clone)]
pub struct UpConfig {
    pub manifest: PathBuf,
    pub listen: SocketAddr,
    pub runtime: RuntimeConfig,
    pub max_body_bytes: u64,
    /// Variable values supplied by the host itself, below `SPIN_VARIABLE_*`.
    pub provided_variables: BTreeMap<String, String>,
    pub env: EnvLookup,
    /// Where the embedded default services keep their data and secrets; `None` starts none of them.
    pub data_dir: Option<PathBuf>,
    /// Where the embedded models are (the unpacked wheels); `None` starts no model server.
    pub models_dir: Option<PathBuf>,
    /// Load the embedded models at start rather than on first use.
    pub preload_models: bool,
}

impl std::fmt::Debug for UpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpConfig")
            .field("manifest", &self.manifest)
            .field("listen", &self.listen)
            .field("runtime", &self.runtime)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("data_dir", &self.data_dir)
            .field("models_dir", &self.models_dir)
            .finish_non_exhaustive()
    }
}

impl UpConfig {
    /// Defaults like Fermyon Cloud's: 10 MiB bodies, 30 s to answer; the process environment.
    pub fn new(manifest: PathBuf, listen: SocketAddr) -> Self {
        Self {
            manifest,
            listen,
            runtime: RuntimeConfig::default(),
            max_body_bytes: 10 << 20,
            provided_variables: BTreeMap::new(),
            env: Arc::new(|name| std::env::var(name).ok()),
            data_dir: None,
            models_dir: None,
            preload_models: false,
        }
    }
}

/// A host that is serving.
#[derive(Debug)]
pub struct RunningHost {
    /// The address it listens on (useful when asked for port 0).
    pub addr: SocketAddr,
    /// Time from `start` to ready.
    pub startup: Duration,
    pub frontend: Arc<Frontend>,
    /// The embedded default services it started.
    pub services: Vec<Embedded>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningHost {
    /// Stops accepting connections, waits for the accept loop to end, and stops the embedded services.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        for service in self.services {
            service.stop().await;
        }
    }
}

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

    if !external(env, "docstore_url", "document store") {
        let credentials = Credentials {
            user: "admin".into(),
            secret: embedded::load_or_create_secret(data_dir, "docstore")?,
        };
        let store =
            docstore::start(&data_dir.join("docstore"), loopback, credentials.clone()).await?;
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
        let store = objectstore::start(
            &data_dir.join("objects"),
            loopback,
            credentials.clone(),
            &[OBJECTSTORE_BUCKET],
        )
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
        let store =
            vectorstore::start(&data_dir.join("vectors"), loopback, api_key.clone()).await?;
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
            let server = models::start(&source.dir, loopback, api_key.clone(), which).await?;
            tracing::info!("models (OpenAI API) on {}/v1", server.url());
            let base = format!("{}/v1", server.url());
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

/// Loads the manifest, resolves variables, compiles every routed component, and starts serving.
pub async fn start(config: UpConfig) -> anyhow::Result<RunningHost> {
    let started = Instant::now();
    let app = App::load(&config.manifest)?;
    let models = config.models_dir.clone().map(|dir| ModelSource {
        dir,
        preload: config.preload_models,
    });
    let defaults = match &config.data_dir {
        Some(dir) => start_defaults(dir, models.as_ref(), &config.env).await?,
        None => Defaults::default(),
    };
    match serve_app(&config, &app, &defaults.variables).await {
        Ok((addr, frontend, shutdown, task)) => Ok(RunningHost {
            addr,
            startup: started.elapsed(),
            frontend,
            services: defaults.services,
            shutdown,
            task,
        }),
        Err(error) => {
            for service in defaults.services {
                service.stop().await;
            }
            Err(error)
        }
    }
}

type Serving = (
    SocketAddr,
    Arc<Frontend>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

async fn serve_app(
    config: &UpConfig,
    app: &App,
    defaults: &BTreeMap<String, String>,
) -> anyhow::Result<Serving> {
    let env = config.env.clone();
    let mut provided = defaults.clone();
    provided.extend(config.provided_variables.clone());
    let variables = AppVariables::resolve(&app.manifest, |name| env(name), &provided)?;
    let router = Router::build(&app.http)?;
    let engine = runtime::engine(&config.runtime)?;

    let mut loads = Vec::new();
    let mut seen = Vec::new();
    for trigger in &app.http {
        if seen.contains(&trigger.component) {
            continue;
        }
        seen.push(trigger.component.clone());
        let id = trigger.component.clone();
        let declared = app
            .component(&id)
            .with_context(|| format!("no component `{id}`"))?;
        let grants = grants(&variables, declared).with_context(|| format!("component `{id}`"))?;
        let path = app.source_path(&id)?;
        let engine = engine.clone();
        let runtime_config = config.runtime.clone();
        loads.push(tokio::task::spawn_blocking(move || {
            ComponentRuntime::load(&engine, &runtime_config, &id, &path, grants)
        }));
    }
    let mut dispatchers = HashMap::new();
    for load in loads {
        let component = load.await.context("component compilation panicked")??;
        dispatchers.insert(component.id().to_string(), runtime::dispatcher(component));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let limits = Limits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.runtime.request_timeout,
    };
    let frontend = Arc::new(Frontend::new(
        router,
        dispatchers,
        limits,
        Arc::new(Metrics::default()),
    ));
    let (shutdown, watcher) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, frontend.clone(), watcher));
    Ok((addr, frontend, shutdown, task))
}

fn grants(variables: &AppVariables, component: &manifest::Component) -> anyhow::Result<Grants> {
    let hosts = component
        .allowed_outbound_hosts
        .iter()
        .map(|entry| variables.expand(entry))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        // An optional endpoint left empty (`mail_url = ""`) grants nothing rather than failing start-up.
        .filter(|host| !host.trim().is_empty())
        .collect::<Vec<_>>();
    Ok(Grants {
        variables: variables.for_component(&component.variables)?,
        allowed_hosts: AllowedHosts::parse(&hosts)?,
        environment: component.environment.clone(),
    })
}
