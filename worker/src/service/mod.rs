//! `thumbd worker`: the streaming service.
//!
//! # Layout, in the order data flows
//! - [`config`] — flags and env vars, validated before any client is built;
//! - [`source`] — where messages come from: [`source::pubsub`] (streaming pull) or
//!   [`source::watch`] (a local folder);
//! - [`message`] — Cloud Storage notification or plain JSON job → [`message::Job`];
//! - [`admission`] — slots and a decode-bytes budget derived from the memory limit, with
//!   [`estimate`] sizing each image's reservation from its header;
//! - [`process`] — fetch → probe → engine on the rayon pool → conditional writes → event;
//! - [`store`] — Cloud Storage or a local folder, behind one trait;
//! - [`events`] — "thumbnails ready" / "thumbnail failed";
//! - [`fate`] — the one place that turns a result into ack or nack;
//! - [`metrics`], [`http`], [`shutdown`] — operations.

pub mod admission;
pub mod config;
pub mod estimate;
pub mod events;
pub mod fate;
pub mod http;
pub mod message;
pub mod metrics;
pub mod process;
pub mod shutdown;
pub mod source;
pub mod store;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use google_cloud_pubsub::client::Publisher;

use crate::resources::Detection;
use config::{emulator_endpoint, Budget, Config, ConfigError, LogFormat, Source, WorkerArgs};
use events::Events;
use metrics::Metrics;
use process::{EnginePool, Pipeline, Settings};
use shutdown::Shutdown;
use store::{DirStore, GcsStore};

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Invalid flags or environment: exit code 2.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("building a client: {0}")]
    Client(String),
    #[error("the Pub/Sub stream failed: {0}")]
    Stream(String),
}

/// Validates, sets up logging, and runs until shutdown.
pub fn run(args: WorkerArgs) -> Result<(), WorkerError> {
    let detected = Detection::current();
    let resources = detected.resources;
    let config = args.validate(resources)?;
    init_logging(config.log_format);
    // mimalloc's purge delay was set to 0 in `main` (both commands); the worker also turns
    // transparent huge pages off, which the batch keeps for speed (see `alloc.rs`).
    if crate::alloc::disable_thp() {
        tracing::info!("transparent huge pages off for this process (MIMALLOC_ALLOW_THP wins)");
    }
    let t = config.tuning;
    tracing::info!(
        cpus = resources.cpus,
        cpus_source = %detected.cpus_source,
        memory_limit = resources.memory_bytes,
        memory_limit_source = %detected.memory_source,
        threads = t.threads,
        queue = t.queue,
        max_in_flight = t.max_in_flight,
        memory_budget = t.memory_budget,
        "derived settings (flags override)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // I/O only: the engine has its own pool.
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

/// Logs on stderr as text or JSON lines; the level from `RUST_LOG` (default info).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests calling run twice) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config: Config) -> Result<(), WorkerError> {
    let metrics = Metrics::new();
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let ready = Arc::new(AtomicBool::new(false));
    let (addr, _server) =
        http::serve(config.listen, metrics.registry.clone(), ready.clone()).await?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics");
    work(
        &config,
        Surroundings {
            metrics,
            shutdown,
            ready,
            local_events: Events::Stdout,
        },
    )
    .await
}

/// What the pipeline runs within: the worker's own process, or `thumbd serve --local`, which
/// embeds the watch mode and takes its events in-process.
pub struct Surroundings {
    pub metrics: Metrics,
    pub shutdown: Shutdown,
    /// Set once work is being pulled.
    pub ready: Arc<AtomicBool>,
    /// Where the watch mode's events go (the Pub/Sub mode publishes to `--events-topic`).
    pub local_events: Events,
}

/// Runs the pipeline from `config`'s source until shutdown.
pub async fn work(config: &Config, around: Surroundings) -> Result<(), WorkerError> {
    let Surroundings {
        metrics,
        shutdown,
        ready,
        local_events,
    } = around;
    let t = config.tuning;
    let pool = EnginePool::start(
        t.threads,
        t.queue,
        config.request.clone(),
        config.limits,
        metrics.clone(),
    )?;

    match &config.source {
        Source::PubSub {
            subscription,
            output_bucket,
            events_topic,
            source_buckets,
        } => {
            if source_buckets.is_empty() {
                tracing::warn!(
                    "no --source-bucket: a job may name any bucket the service account can read"
                );
            }
            let pubsub_endpoint = emulator_env("PUBSUB_EMULATOR_HOST")?;
            let storage_endpoint = emulator_env("STORAGE_EMULATOR_HOST")?;
            if pubsub_endpoint.is_some() || storage_endpoint.is_some() {
                tracing::info!(
                    pubsub = pubsub_endpoint.as_deref(),
                    storage = storage_endpoint.as_deref(),
                    "emulator endpoints (anonymous credentials)"
                );
            }
            let store = GcsStore::connect(storage_endpoint.as_deref(), config.storage_retry)
                .await
                .map_err(|e| WorkerError::Client(format!("Cloud Storage: {e}")))?;
            let events = match events_topic {
                None => Events::Disabled,
                Some(topic) => {
                    let mut builder = Publisher::builder(topic.clone())
                        .set_delay_threshold(std::time::Duration::from_millis(5));
                    if let Some(endpoint) = &pubsub_endpoint {
                        builder = builder
                            .with_endpoint(endpoint.clone())
                            .with_credentials(source::pubsub::anonymous());
                    }
                    Events::PubSub(
                        builder
                            .build()
                            .await
                            .map_err(|e| WorkerError::Client(format!("Pub/Sub publisher: {e}")))?,
                    )
                }
            };
            let client = source::pubsub::subscriber(pubsub_endpoint.as_deref()).await?;
            let admission = admit(config, &metrics);
            let pipeline = Arc::new(Pipeline {
                store,
                settings: Settings {
                    output_bucket: output_bucket.clone(),
                    output_prefix: config.output_prefix.clone(),
                    source_buckets: source_buckets.clone(),
                    limits: config.limits,
                    cache_control: config.cache_control.clone(),
                },
                pool,
                admission,
                events,
                metrics,
                shutdown,
            });
            source::pubsub::run(config, subscription, client, pipeline, ready).await
        }
        Source::Watch { dir, out } => {
            std::fs::create_dir_all(out)?;
            let admission = admit(config, &metrics);
            let pipeline = Arc::new(Pipeline {
                store: DirStore {
                    input: dir.clone(),
                    output: out.clone(),
                },
                settings: Settings {
                    // A distinct "bucket" per folder: nothing in the watched folder is ours
                    // (the output folder is excluded from the scan instead).
                    output_bucket: Some(out.display().to_string()),
                    output_prefix: String::new(),
                    source_buckets: Vec::new(),
                    limits: config.limits,
                    cache_control: config.cache_control.clone(),
                },
                pool,
                admission,
                events: local_events,
                metrics,
                shutdown,
            });
            source::watch::run(
                pipeline,
                config.poll_interval,
                config.shutdown_timeout,
                ready,
            )
            .await;
            Ok(())
        }
    }
}

/// Splits the memory budget once everything but the images is up: the resident memory now is
/// the process floor's measured part ([`config::Budget`]).
fn admit(config: &Config, metrics: &Metrics) -> admission::Admission {
    let t = config.tuning;
    let budget = Budget::derive(&t, crate::resources::current_rss());
    if budget.floor + budget.slack + budget.input_bytes + budget.engine_bytes > budget.memory_budget
    {
        tracing::warn!(
            memory_budget = budget.memory_budget,
            floor = budget.floor,
            "the process floor leaves less than the minimum for images: one image at a time, \
             and the budget may be exceeded (raise --memory-budget)"
        );
    }
    let max_input_bytes = config.limits.max_input_bytes.min(budget.input_bytes);
    tracing::info!(
        memory_budget = budget.memory_budget,
        max_input_bytes,
        idle_rss = budget.idle_rss,
        floor = budget.floor,
        slack = budget.slack,
        input_bytes = budget.input_bytes,
        engine_bytes = budget.engine_bytes,
        "memory budget split (floor measured after start-up unless --memory-floor; originals \
         over max_input_bytes, the smaller of --max-input-bytes and the input pool, are refused)"
    );
    admission::Admission::new(
        t.max_in_flight,
        budget.input_bytes,
        budget.engine_bytes,
        metrics.clone(),
    )
}

/// Reads an emulator variable; set and non-empty means "use this endpoint anonymously".
pub(crate) fn emulator_env(var: &'static str) -> Result<Option<String>, WorkerError> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(Some(emulator_endpoint(var, &value)?)),
        _ => Ok(None),
    }
}
