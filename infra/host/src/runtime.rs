//! The Wasm side of the host: one wasmtime engine with the pooling allocator and a compilation cache,
//! each component compiled once at start, and a fresh instance for every request.
//!
//! Two kinds of component are served, chosen by what each exports: WASI 0.3 ones
//! (`wasi:http/handler@0.3`, spin-sdk 6 and later) and WASI 0.2 ones (`wasi:http/incoming-handler@0.2`,
//! spin-sdk 2 to 5 and every other Spin SDK). Each kind gets its own linker, because the same Spin
//! interface (`spin:variables/variables@3.0.0`) is an `async func` for the one and a plain `func` for
//! the other, and wasmtime links exactly what the component declares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use wasmtime::component::{Accessor, Component, GuestTaskId, HasData, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::outbound::{AllowedHosts, Grant};

mod spin_variables {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/spin-variables@3.0.0",
        inline: "package edgerag:host; world spin-host { import spin:variables/variables@3.0.0; }",
    });
}

use spin_variables::spin::variables::variables;

/// The synchronous variables interfaces of WASI 0.2 Spin components: Spin 2's and Spin 3's.
mod spin_variables_sync {
    wasmtime::component::bindgen!({
        inline: "
            package edgerag:host-p2;
            world spin-host-p2 {
                import fermyon:spin/variables@2.0.0;
                import spin:variables/variables@3.0.0;
            }
            package fermyon:spin@2.0.0 {
                interface variables {
                    get: func(name: string) -> result<string, error>;
                    variant error { invalid-name(string), undefined(string), provider(string), other(string) }
                }
            }
            package spin:variables@3.0.0 {
                interface variables {
                    get: func(name: string) -> result<string, error>;
                    variant error { invalid-name(string), undefined(string), provider(string), other(string) }
                }
            }
        ",
    });
}

use spin_variables_sync::fermyon::spin::variables as variables_v2;
use spin_variables_sync::spin::variables::variables as variables_v3_sync;

/// Settings for the engine and for every request.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory for wasmtime's compilation cache; `None` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// Time a component has to produce a response's head.
    pub request_timeout: Duration,
    /// Time a component has, after the head, to finish streaming the body.
    pub stream_timeout: Duration,
    /// Bytes of each linear memory a freed pool slot keeps resident (reset with memset rather than
    /// returned to the kernel): fewer page faults for the next instance, at the price of the memset.
    pub keep_resident_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 1000,
            max_memory_bytes: 512 << 20,
            request_timeout: Duration::from_secs(30),
            stream_timeout: Duration::from_secs(600),
            keep_resident_bytes: 0,
        }
    }
}

/// Per-instance state: WASI, WASI HTTP, and what the manifest grants this component.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: Outbound,
    variables: Arc<BTreeMap<String, String>>,
    instantiate_micros: u64,
    memory: MemoryUse,
}

/// An instance's linear memory, all of its memories together (a composed component has several):
/// what it holds now and the most it held. Growth beyond a memory's maximum is refused, as it would
/// be without this limiter.
#[derive(Debug, Default)]
struct MemoryUse {
    now: usize,
    peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryUse {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.now = self.now.saturating_sub(current).saturating_add(desired);
        self.peak = self.peak.max(self.now);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// The largest linear memory any instance of each component has held, since the process started
/// (`edgerag_instance_memory_peak_bytes`).
static MEMORY_PEAKS: std::sync::Mutex<BTreeMap<String, u64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Each component's largest instance so far, in bytes of linear memory.
pub fn memory_peaks() -> BTreeMap<String, u64> {
    MEMORY_PEAKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Why a variable lookup failed, before it is put in whichever interface's error type asked.
enum Missing {
    InvalidName(String),
    Undefined(String),
}

impl StoreState {
    fn variable(&self, name: String) -> Result<String, Missing> {
        if crate::manifest::SnakeId::try_from(name.clone()).is_err() {
            return Err(Missing::InvalidName(name));
        }
        self.variables
            .get(&name)
            .cloned()
            .ok_or(Missing::Undefined(name))
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("component", &self.outbound.component)
            .finish_non_exhaustive()
    }
}

fn http_view(state: &mut StoreState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// Outbound HTTP for one instance: the component's `allowed_outbound_hosts` enforced before any
/// connection is made, and requests to `http://<component>.spin.internal` served in-process.
struct Outbound {
    component: Arc<str>,
    allowed: Arc<AllowedHosts>,
    chain: ChainLink,
    /// How many chained requests led to this instance's request (0 for one from outside).
    depth: u32,
    /// Set once the instance has returned its response: a chained request it makes after that is
    /// not nested in anyone's request (a job's next step, say) and starts a new chain.
    responded: Arc<AtomicBool>,
    /// The request being served; the server marks it answered the moment the response arrives.
    meta: Option<Arc<RequestMeta>>,
}

/// How long a chained request waits to learn whether its caller has answered already. A guest that
/// starts work after returning its response (a job's next step) has done so within microseconds;
/// one that waits for the chained answer before responding never will, and is nested.
const ANSWERED_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The way from an instance back to the application's front, for chained requests: set once the
/// front exists, and weak, so instances do not keep a stopped host alive.
pub type ChainLink = Arc<OnceLock<Weak<crate::server::Frontend>>>;

/// Local service chaining's domain, as Spin names it.
const CHAINING_SUFFIX: &str = ".spin.internal";

/// The component a chained request is for: `http://<id>.spin.internal/...` gives `<id>`.
fn chaining_target(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let id = host.strip_suffix(CHAINING_SUFFIX)?;
    (!id.is_empty() && !id.contains('.')).then(|| id.to_string())
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let target = chaining_target(request.uri());
        let Some(grant) = self.allowed.grant(request.uri()) else {
            tracing::warn!(
                component = %self.component,
                scheme = request.uri().scheme_str().unwrap_or(""),
                host = request.uri().host().unwrap_or(""),
                port = request.uri().port_u16(),
                "outbound request denied: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        if target.is_some() && grant == Grant::Public {
            // `*://*:*` grants the internet, not the application's own components.
            tracing::warn!(component = %self.component, "chained request denied: `<id>.spin.internal` is not listed");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some(target) = target {
            let front = self.chain.get().and_then(Weak::upgrade);
            let nested = self.depth + 1;
            let flags = (self.responded.clone(), self.meta.clone());
            return Box::new(async move {
                let Some(front) = front else {
                    return Err(wasmtime_wasi_http::Error::DestinationUnavailable);
                };
                // The guest's response and its next request race through different tasks of the
                // host: give the response its moment before counting this request as nested.
                let answered = || {
                    flags.0.load(Ordering::Relaxed)
                        || flags
                            .1
                            .as_ref()
                            .is_some_and(|m| m.responded.load(Ordering::Relaxed))
                };
                let waited = Instant::now();
                while !answered() && waited.elapsed() < ANSWERED_WAIT {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                let depth = if answered() { 1 } else { nested };
                let response = crate::server::chained(&front, &target, request, depth).await;
                Ok((response, Box::new(async { Ok(()) }) as IoFuture))
            });
        }
        if grant == Grant::Public {
            return Box::new(crate::public::send(request, options));
        }
        if crate::pool::takes(&request, options.as_ref()) {
            return Box::new(async move {
                let response = crate::pool::send(request).await?;
                Ok((response, Box::new(async { Ok(()) }) as IoFuture))
            });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

struct VariablesHost;

impl HasData for VariablesHost {
    type Data<'a> = &'a mut StoreState;
}

impl variables::Host for &mut StoreState {}

impl<U> variables::HostWithStore<U> for VariablesHost {
    async fn get(store: &Accessor<U, Self>, name: String) -> Result<String, variables::Error> {
        store.with(|mut access| {
            access
                .get()
                .variable(name)
                .map_err(|missing| match missing {
                    Missing::InvalidName(name) => variables::Error::InvalidName(name),
                    Missing::Undefined(name) => variables::Error::Undefined(name),
                })
        })
    }
}

impl variables_v2::Host for StoreState {
    fn get(&mut self, name: String) -> Result<String, variables_v2::Error> {
        self.variable(name).map_err(|missing| match missing {
            Missing::InvalidName(name) => variables_v2::Error::InvalidName(name),
            Missing::Undefined(name) => variables_v2::Error::Undefined(name),
        })
    }
}

impl variables_v3_sync::Host for StoreState {
    fn get(&mut self, name: String) -> Result<String, variables_v3_sync::Error> {
        self.variable(name).map_err(|missing| match missing {
            Missing::InvalidName(name) => variables_v3_sync::Error::InvalidName(name),
            Missing::Undefined(name) => variables_v3_sync::Error::Undefined(name),
        })
    }
}

/// Builds the engine: component model with async, the pooling allocator, epoch interruption (so a
/// guest stuck in a loop still yields and can be timed out), and the compilation cache.
pub fn engine(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(config.max_instances)
        .total_core_instances(config.max_instances.saturating_mul(8))
        .total_memories(config.max_instances.saturating_mul(2))
        .total_tables(config.max_instances.saturating_mul(4))
        .total_stacks(config.max_instances)
        .max_memory_size(config.max_memory_bytes)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(256 << 10);
    wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    // For profiling the guests with `perf`: names for the compiled code in /tmp/perf-PID.map.
    if std::env::var_os("EDGERAG_PERF_MAP").is_some() {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(dir) = &config.cache_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let dir = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(dir);
        wasm.cache(Some(
            wasmtime::Cache::new(cache).map_err(|e| anyhow::anyhow!("{e:#}"))?,
        ));
    }
    let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // Epoch ticks give every running guest a chance to yield to the scheduler.
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .context("cannot start the epoch ticker")?;
    Ok(engine)
}

/// The kind of HTTP component, by what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `wasi:http/handler@0.3.x`.
    P3,
    /// `wasi:http/incoming-handler@0.2.x`.
    P2,
}

fn kind(engine: &Engine, component: &Component) -> Kind {
    let p2 = component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@0.2"));
    if p2 { Kind::P2 } else { Kind::P3 }
}

fn linker(engine: &Engine, kind: Kind) -> anyhow::Result<Linker<StoreState>> {
    let wasmtime = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    let mut linker = Linker::new(engine);
    // Rust std in a 0.3 guest still imports the WASI 0.2 interfaces, next to the 0.3 ones spin-sdk uses.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime)?;
    match kind {
        Kind::P3 => {
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(wasmtime)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(wasmtime)?;
            variables::add_to_linker::<_, VariablesHost>(&mut linker, |state| state)
                .map_err(wasmtime)?;
        }
        Kind::P2 => {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasmtime)?;
            variables_v2::add_to_linker::<_, VariablesHost>(&mut linker, |state| state)
                .map_err(wasmtime)?;
            variables_v3_sync::add_to_linker::<_, VariablesHost>(&mut linker, |state| state)
                .map_err(wasmtime)?;
        }
    }
    Ok(linker)
}

/// What a component may do, from the manifest. The default grants nothing.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub variables: BTreeMap<String, String>,
    pub allowed_hosts: AllowedHosts,
    pub environment: BTreeMap<String, String>,
}

/// A compiled component, ready to be instantiated for each request.
pub struct ComponentRuntime {
    id: Arc<str>,
    engine: Engine,
    pre: ProxyPre<StoreState>,
    variables: Arc<BTreeMap<String, String>>,
    allowed: Arc<AllowedHosts>,
    chain: ChainLink,
    environment: Vec<(String, String)>,
    request_timeout: Duration,
    stream_timeout: Duration,
}

impl std::fmt::Debug for ComponentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentRuntime")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ComponentRuntime {
    /// Compiles (or loads from the cache) and links a component that exports `wasi:http/handler@0.3`
    /// or `wasi:http/incoming-handler@0.2`. `chain` is how its chained requests reach the front.
    pub fn load(
        engine: &Engine,
        config: &RuntimeConfig,
        id: &str,
        path: &Path,
        grants: Grants,
        chain: ChainLink,
    ) -> anyhow::Result<Self> {
        let component = Component::from_file(engine, path)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("component `{id}`: cannot compile {}", path.display()))?;
        let kind = kind(engine, &component);
        let prerelease: Vec<String> = component
            .component_type()
            .imports(engine)
            .chain(component.component_type().exports(engine))
            .map(|(name, _)| name.to_string())
            .filter(|name| name.contains("@0.2.0-rc-"))
            .collect();
        if !prerelease.is_empty() {
            bail!(
                "component `{id}` uses pre-release WASI 0.2 interfaces ({}), as spin-sdk 2 and other \
                 SDKs of early 2024 built them; this host serves WASI 0.2.0 and later: rebuild it with \
                 spin-sdk 3 or later",
                prerelease.join(", ")
            );
        }
        let instance_pre = linker(engine, kind)?
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| {
                format!("component `{id}` imports something this host does not provide")
            })?;
        let pre = match kind {
            Kind::P2 => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
                Ok(pre) => ProxyPre::P2(pre),
                Err(error) => bail!(
                    "component `{id}`: its wasi:http/incoming-handler@0.2 export cannot be used: {error:#}"
                ),
            },
            Kind::P3 => match wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre) {
                Ok(pre) => ProxyPre::P3(pre),
                Err(error) => bail!(
                    "component `{id}` exports neither wasi:http/handler@0.3.0 (spin-sdk 6 and later) nor \
                     wasi:http/incoming-handler@0.2.x (spin-sdk 2 to 5): {error:#}"
                ),
            },
        };
        Ok(Self {
            id: id.into(),
            engine: engine.clone(),
            pre,
            variables: Arc::new(grants.variables),
            allowed: Arc::new(grants.allowed_hosts),
            chain,
            environment: grants.environment.into_iter().collect(),
            request_timeout: config.request_timeout,
            stream_timeout: config.stream_timeout,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Per-request facts the instance reports back to the server.
#[derive(Debug, Default)]
pub struct RequestMeta {
    /// Microseconds spent creating the store and instantiating, for this request's instance.
    pub instantiate_micros: AtomicU64,
    /// Chained requests that led to this one (0 for a request from outside).
    pub depth: u32,
    /// Set when the component's response has reached the server.
    pub responded: AtomicBool,
}

/// The shared, cloneable handle that dispatches requests to fresh instances of one component.
pub type Dispatcher = ProxyHandler<ComponentRuntime>;

pub fn dispatcher(component: ComponentRuntime) -> Dispatcher {
    ProxyHandler::new(component)
}

impl HandlerState for ComponentRuntime {
    type StoreData = StoreState;
    type WorkerExpiration = Expiration;
    type WorkerState = OneShot;

    async fn instantiate(&self) -> wasmtime::Result<Instance<StoreState, Expiration, OneShot>> {
        let started = Instant::now();
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.environment).inherit_stderr();
        let responded = Arc::new(AtomicBool::new(false));
        let state = StoreState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: Outbound {
                component: self.id.clone(),
                allowed: self.allowed.clone(),
                chain: self.chain.clone(),
                depth: 0,
                responded: responded.clone(),
                meta: None,
            },
            variables: self.variables.clone(),
            instantiate_micros: 0,
            memory: MemoryUse::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        store.data_mut().instantiate_micros = started.elapsed().as_micros() as u64;
        Ok(Instance {
            store,
            proxy,
            view: http_view,
            expiration: Expiration::new(self.request_timeout, self.stream_timeout, responded),
            state: OneShot,
        })
    }
}

/// Each instance serves exactly one request: no state leaks from one request (or tenant) to the next.
#[derive(Debug)]
pub struct OneShot;

impl WorkerState for OneShot {
    type StoreData = StoreState;
    type RequestData = Arc<RequestMeta>;

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, StoreState>,
        meta: Arc<RequestMeta>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        meta.instantiate_micros
            .store(store.data().instantiate_micros, Ordering::Relaxed);
        store.data_mut().outbound.depth = meta.depth;
        store.data_mut().outbound.meta = Some(meta.clone());
        // The server enforces the response-head deadline itself; this future never expires the
        // request, and `Expiration` stops the instance.
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<StoreState>, result: wasmtime::Result<()>) {
        let state = store.data();
        let peak = state.memory.peak as u64;
        let mut peaks = MEMORY_PEAKS.lock().unwrap_or_else(|p| p.into_inner());
        let known = peaks
            .entry(state.outbound.component.to_string())
            .or_default();
        *known = (*known).max(peak);
        drop(peaks);
        if let Err(error) = result {
            tracing::debug!("instance ended with an error: {error:#}");
        }
    }
}

const EXPIRY_GRACE: Duration = Duration::from_millis(250);

/// Stops an instance that outlives its time: the request timeout while it owes a response, the stream
/// timeout while it streams the body, and at once when it is idle.
pub struct Expiration {
    request_timeout: Duration,
    stream_timeout: Duration,
    responded: Arc<AtomicBool>,
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl Expiration {
    fn new(
        request_timeout: Duration,
        stream_timeout: Duration,
        responded: Arc<AtomicBool>,
    ) -> Self {
        Self {
            request_timeout,
            stream_timeout,
            responded,
            timer: None,
        }
    }
}

impl std::fmt::Debug for Expiration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expiration")
            .field("request_timeout", &self.request_timeout)
            .field("stream_timeout", &self.stream_timeout)
            .finish_non_exhaustive()
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => return Poll::Ready(()),
            // The server answers 504 at the request timeout; the instance gets a little longer so that
            // answer is never pre-empted by the instance being torn down.
            WorkerStatus::Requests => self.request_timeout + EXPIRY_GRACE,
            WorkerStatus::PostReturn => {
                self.responded.store(true, Ordering::Relaxed);
                self.stream_timeout
            }
        };
        let deadline = start + limit;
        let this = &mut *self;
        let reset = !matches!(&this.timer, Some((at, _)) if *at == deadline);
        if reset {
            this.timer = Some((
                deadline,
                Box::pin(tokio::time::sleep_until(deadline.into())),
            ));
        }
        match &mut this.timer {
            Some((_, sleep)) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
