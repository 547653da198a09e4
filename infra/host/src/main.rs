//! The `edgerag` command.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use host::UpConfig;

#[derive(Debug, Parser)]
#[command(
    name = "edgerag",
    version,
    about = "Run edgerag's WebAssembly components on a Spin-compatible host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the application described by a Spin manifest.
    Up {
        /// The Spin manifest (spin_manifest_version = 2).
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Where edgerag keeps its data: compilation cache, embedded stores and their secrets.
        #[arg(long, default_value = ".edgerag")]
        data_dir: PathBuf,
        /// Seconds a component has to start answering; slower requests get 504.
        #[arg(long, default_value_t = 30)]
        request_timeout: u64,
        /// Largest request body accepted, in bytes; larger ones get 413.
        #[arg(long, default_value_t = 10 << 20)]
        max_body_bytes: u64,
        /// Instances that may run at once.
        #[arg(long, default_value_t = 1000)]
        max_instances: u32,
        /// Do not use wasmtime's compilation cache.
        #[arg(long)]
        no_cache: bool,
        /// Where the embedded models are (scripts/install unpacks them); default <data-dir>/models.
        #[arg(long)]
        models_dir: Option<PathBuf>,
        /// Load the embedded models on first use instead of at start.
        #[arg(long)]
        lazy_models: bool,
        /// Serve HTTPS: the PEM certificate chain (with --tls-key).
        #[arg(long, requires = "tls_key", env = "SPIN_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// Serve HTTPS: the PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert", env = "SPIN_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Start the source syncs that are due this often (e.g. 15m): a ticker that sends
        /// `POST /v1/admin/sync-due` with the operator key, like a cron job would.
        #[arg(long, value_parser = humantime::parse_duration)]
        sync_interval: Option<Duration>,
    },
    /// Upload files, directories (recursively) and JSONL (`{id, title, text, tags?}` per line) to a
    /// project; what it already holds with the same content is skipped, so a re-run continues.
    Ingest {
        /// The API's origin, e.g. http://127.0.0.1:3000.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The project's id.
        #[arg(long)]
        project: String,
        /// A key of the project with the `ingest` and `search` actions.
        #[arg(long, env = "EDGERAG_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Uploads in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// A tag for every document (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// JSONL documents sent per request.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Files and directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGERAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Ingest {
            url,
            project,
            api_key,
            concurrency,
            tags,
            batch,
            paths,
        } => runtime.block_on(async {
            let summary = host::bulk::run(host::bulk::Options {
                url,
                project,
                api_key,
                paths,
                concurrency,
                tags,
                batch,
            })
            .await?;
            let secs = summary.elapsed.as_secs_f64().max(0.001);
            println!(
                "{} documents ({} added, {} updated, {} unchanged, {} failed), {} chunks in {:.1} s: {:.1} documents/s, {:.1} chunks/s",
                summary.documents(),
                summary.added,
                summary.updated,
                summary.unchanged,
                summary.failed.len(),
                summary.chunks,
                secs,
                summary.documents() as f64 / secs,
                summary.chunks as f64 / secs,
            );
            if summary.failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} documents failed (listed above)", summary.failed.len())
            }
        }),
        Command::Up {
            manifest,
            listen,
            data_dir,
            request_timeout,
            max_body_bytes,
            max_instances,
            no_cache,
            models_dir,
            lazy_models,
            tls_cert,
            tls_key,
            sync_interval,
        } => runtime.block_on(async {
            let mut config = UpConfig::new(manifest, listen);
            config.max_body_bytes = max_body_bytes;
            config.runtime.request_timeout = Duration::from_secs(request_timeout);
            config.runtime.max_instances = max_instances;
            if !no_cache {
                config.runtime.cache_dir = Some(data_dir.join("wasmtime-cache"));
            }
            config.models_dir = Some(models_dir.unwrap_or_else(|| data_dir.join("models")));
            config.preload_models = !lazy_models;
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                config.tls = Some(host::tls::TlsFiles { cert, key });
            }
            config.data_dir = Some(data_dir.clone());
            let host = host::start(config).await?;
            if let Some(every) = sync_interval {
                let operator_key = match std::env::var("SPIN_VARIABLE_AUTH_OPERATOR_KEY") {
                    Ok(key) if !key.is_empty() => key,
                    _ => embedded::load_or_create_secret(&data_dir, "operator")?,
                };
                tracing::info!("starting due source syncs every {}", humantime::format_duration(every));
                tokio::spawn(host::server::sync_ticker(
                    std::sync::Arc::downgrade(&host.frontend),
                    every,
                    operator_key,
                ));
            }
            for (route, component) in host.frontend.router.describe() {
                tracing::info!("route {route} -> {component}");
            }
            tracing::info!(
                "edgerag serving on {}://{} (ready in {} ms)",
                host.frontend.scheme,
                host.addr,
                host.startup.as_millis()
            );
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for ctrl-c")?;
            tracing::info!("shutting down");
            host.stop().await;
            Ok(())
        }),
    }
}
