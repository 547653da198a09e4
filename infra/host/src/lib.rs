//! edgerag's host: a Spin-compatible runner on wasmtime that serves the application's HTTP routes from
//! its WebAssembly components, one fresh instance per request.
//!
//! The host is infrastructure only. It holds no edgerag domain logic (that lives in `shared` and the
//! functions), and components reach nothing but what their manifest grants: declared variables and
//! `allowed_outbound_hosts`.
//!
//! It runs the embedded default services but does not contain them: each is its own crate
//! (`docstore`, `vectorstore`, `objectstore`, `models`) that knows nothing of wasmtime or manifests;
//! [`start_defaults`] starts them and hands their URLs and secrets to components as variables.

#![forbid(unsafe_code)]

pub mod bulk;
mod defaults;
pub mod manifest;
pub mod metrics;
pub mod outbound;
mod pool;
mod public;
pub mod router;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod variables;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use embedded::Embedded;

pub use crate::defaults::{Defaults, ModelSource, start_defaults};
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
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<tls::TlsFiles>,
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
            .field("tls", &self.tls)
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
            tls: None,
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
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let engine = runtime::engine(&config.runtime)?;

    let chain = runtime::ChainLink::default();
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
        let chain = chain.clone();
        loads.push(tokio::task::spawn_blocking(move || {
            ComponentRuntime::load(&engine, &runtime_config, &id, &path, grants, chain)
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
    let mut frontend = Frontend::new(router, dispatchers, limits, Arc::new(Metrics::default()));
    if tls.is_some() {
        frontend.scheme = "https";
    }
    let frontend = Arc::new(frontend);
    let _ = chain.set(Arc::downgrade(&frontend));
    let (shutdown, watcher) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, frontend.clone(), tls, watcher));
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
