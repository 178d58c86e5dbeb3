//! `thumbd serve`: the application in front of the worker. Clients upload through it, it
//! stores each checked image in the upload bucket (or folder), and the worker's events come
//! back to the page as live updates.
//!
//! # Layout, in the order data flows
//! - [`config`] — flags and env vars, validated before any client is built;
//! - [`upload`] — the body, streamed under limits, its header checked with the engine's probe;
//! - [`objects`] — the buckets (Cloud Storage or folders): create-only writes, lists, reads;
//! - [`images`] — an upload's state (`pending`, `ready`, `failed`) read from storage alone;
//! - [`live`] — worker events → Server-Sent Events, with catch-up for reconnecting clients;
//! - [`api`] — the HTTP handlers; the page's files are embedded below.

pub mod api;
pub mod config;
pub mod images;
pub mod live;
pub mod objects;
pub mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::resources::Detection;
use crate::service::config::WorkerArgs;
use crate::service::events::Events;
use crate::service::metrics::Metrics;
use crate::service::shutdown::Shutdown;
use crate::service::{Surroundings, WorkerError};
use api::App;
use config::{Mode, ServeArgs, ServeConfig, ServeConfigError};
use images::Catalog;
use live::Hub;
use objects::{Bucket, DirBucket, Gcs};

/// Why `thumbd serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Invalid flags or environment: exit code 2.
    #[error("invalid configuration: {0}")]
    Config(#[from] ServeConfigError),
    #[error("the embedded worker: {0}")]
    Worker(#[from] WorkerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("building a client: {0}")]
    Client(String),
}

impl ServeError {
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ServeError::Config(_) | ServeError::Worker(WorkerError::Config(_))
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `accepted` or the error kind.
    outcome: &'static str,
}

/// The application's metrics, beside the embedded worker's on one `/metrics`.
#[derive(Clone, Debug)]
pub struct AppMetrics {
    uploads: Family<OutcomeLabels, Counter>,
    upload_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub upload_bytes: Counter,
    pub event_streams: Gauge,
}

impl AppMetrics {
    fn new() -> AppMetrics {
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        }
        AppMetrics {
            uploads: Family::default(),
            upload_seconds: Family::new_with_constructor(histogram),
            upload_bytes: Counter::default(),
            event_streams: Gauge::default(),
        }
    }

    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "uploads",
            "Upload requests by outcome (accepted, or the error kind)",
            self.uploads.clone(),
        );
        registry.register(
            "upload_seconds",
            "Upload request latency by outcome, body read to stored",
            self.upload_seconds.clone(),
        );
        registry.register(
            "upload_bytes",
            "Bytes of accepted uploads",
            self.upload_bytes.clone(),
        );
        registry.register(
            "event_streams",
            "Open /api/events streams",
            self.event_streams.clone(),
        );
    }

    pub fn upload(&self, outcome: &'static str, elapsed: Duration) {
        let labels = OutcomeLabels { outcome };
        self.uploads.get_or_create(&labels).inc();
        self.upload_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// Validates, sets up logging, and serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = args.validate()?;
    crate::service::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, config))
}

async fn serve(args: ServeArgs, config: ServeConfig) -> Result<(), ServeError> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let app_metrics = AppMetrics::new();
    let metrics = Metrics::with(|registry| app_metrics.register(registry));
    let ready = Arc::new(AtomicBool::new(false));
    let hub = Arc::new(Hub::new());
    let request = args.image.request();
    let extension = request.format.extension();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;

    let mut background = tokio::task::JoinSet::new();
    let catalog = match &config.mode {
        Mode::Local { dir } => {
            let (uploads, thumbs) = (dir.join("uploads"), dir.join("thumbs"));
            std::fs::create_dir_all(&uploads)?;
            std::fs::create_dir_all(&thumbs)?;
            let catalog = Arc::new(Catalog::new(
                Bucket::Dir(DirBucket {
                    root: uploads.clone(),
                }),
                Bucket::Dir(DirBucket {
                    root: thumbs.clone(),
                }),
                "",
                "",
                request.sizes.clone(),
                extension,
            ));
            let worker = local_worker(&args, &config, uploads, thumbs)?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            background.spawn(live::relay_local(catalog.clone(), hub.clone(), rx));
            let around = Surroundings {
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                ready: ready.clone(),
                local_events: Events::Channel(tx),
            };
            background.spawn(async move {
                if let Err(e) = crate::service::work(&worker, around).await {
                    tracing::error!(error = %e, "the embedded worker stopped");
                }
            });
            catalog
        }
        Mode::Cloud {
            upload_bucket,
            thumbnail_bucket,
            events_subscription,
        } => {
            let pubsub = crate::service::emulator_env("PUBSUB_EMULATOR_HOST")?;
            let storage = crate::service::emulator_env("STORAGE_EMULATOR_HOST")?;
            let gcs = Gcs::connect(storage.as_deref(), config.storage_retry)
                .await
                .map_err(|e| ServeError::Client(format!("Cloud Storage: {e}")))?;
            let catalog = Arc::new(Catalog::new(
                gcs.bucket(upload_bucket),
                gcs.bucket(thumbnail_bucket),
                &config.upload_prefix,
                &config.thumbnail_prefix,
                request.sizes.clone(),
                extension,
            ));
            let client = crate::service::source::pubsub::subscriber(pubsub.as_deref()).await?;
            background.spawn(live::relay_subscription(
                client,
                events_subscription.clone(),
                upload_bucket.clone(),
                catalog.clone(),
                hub.clone(),
                shutdown.clone(),
            ));
            // Ready once the clients are built: uploads need storage only.
            ready.store(true, Ordering::SeqCst);
            catalog
        }
    };

    let upload_memory = config.upload_memory.unwrap_or_else(|| {
        // Half the memory limit (or 1 GiB when none is known), and room for one largest upload.
        let memory = Detection::current()
            .resources
            .memory_bytes
            .unwrap_or(2 << 30);
        (memory / 2).max(config.max_upload_bytes)
    });
    tracing::info!(upload_memory, "bytes of uploads held at once (503 beyond)");
    let app = Arc::new(App {
        upload_memory: api::UploadMemory::new(upload_memory),
        catalog,
        hub,
        auth_token: config.auth_token.clone(),
        max_upload_bytes: config.max_upload_bytes,
        read_timeout: config.read_timeout,
        limits: args.image.limits(),
        uploads_per_client: config.uploads_per_client,
        uploads_by_client: Mutex::new(HashMap::new()),
        metrics: app_metrics,
        shutdown: shutdown.clone(),
    });
    let router = router(app, metrics, ready.clone());
    tracing::info!(
        url = %format!("http://{addr}/"),
        mode = match config.mode { Mode::Local { .. } => "local", Mode::Cloud { .. } => "cloud" },
        auth = config.auth_token.is_some(),
        "serving the gallery, the API and /healthz /readyz /metrics"
    );
    eprintln!("thumbd serve: open http://{addr}/");
    let drain = shutdown.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { drain.wait().await });
    // After SIGTERM, open requests (event streams end at once) get the shutdown timeout.
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        served = server => served?,
        _ = deadline => tracing::warn!("shutdown timeout reached with requests still open; closing them"),
    }
    ready.store(false, Ordering::SeqCst);
    // Requests are done; the embedded worker drains within its own shutdown timeout.
    let _ = tokio::time::timeout(config.shutdown_timeout + Duration::from_secs(5), async {
        while background.join_next().await.is_some() {}
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The `--watch` worker of local mode, configured as `thumbd worker --watch DIR/uploads
/// --out DIR/thumbs` with the same image settings.
fn local_worker(
    args: &ServeArgs,
    config: &ServeConfig,
    uploads: std::path::PathBuf,
    thumbs: std::path::PathBuf,
) -> Result<crate::service::config::Config, ServeError> {
    let worker = WorkerArgs {
        subscription: None,
        output_bucket: None,
        source_buckets: Vec::new(),
        output_prefix: String::new(),
        events_topic: None,
        watch: Some(uploads),
        out: Some(thumbs),
        image: args.image.clone(),
        threads: args.threads,
        queue: None,
        memory_budget: None,
        memory_floor: None,
        // Unused: the application serves /healthz /readyz /metrics for both.
        listen: config.listen,
        shutdown_timeout: config.shutdown_timeout.as_secs(),
        lease_extension: 60,
        storage_retry: config.storage_retry.as_secs(),
        cache_control: "public, max-age=86400".into(),
        poll_ms: 200,
        log_format: config.log_format,
    };
    let resources = Detection::current().resources;
    Ok(worker.validate(resources).map_err(WorkerError::from)?)
}

/// The Content-Security-Policy of the page: only its own files, no inline code.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

fn router(app: Arc<App>, metrics: Metrics, ready: Arc<AtomicBool>) -> Router {
    let asset = |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_SECURITY_POLICY, CSP),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::REFERRER_POLICY, "no-referrer"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
        })
    };
    let api = Router::new()
        .route("/api/images", get(api::list_images).post(api::post_image))
        .route("/api/images/{id}", get(api::get_image))
        .route(
            "/api/images/{id}/thumbnails/{size}",
            get(api::get_thumbnail),
        )
        .route("/api/events", get(api::events))
        // Upload bodies are limited while they stream (upload.rs), not by axum's default.
        .layer(DefaultBodyLimit::disable())
        .with_state(app);
    let ops = crate::service::http::router(metrics.registry.clone(), ready);
    Router::new()
        .route("/", asset("text/html; charset=utf-8", INDEX_HTML))
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", APP_JS),
        )
        .route("/assets/app.css", asset("text/css; charset=utf-8", APP_CSS))
        .merge(api)
        .merge(ops)
        .layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                r.headers_mut()
                    .entry(header::X_CONTENT_TYPE_OPTIONS)
                    .or_insert(HeaderValue::from_static("nosniff"));
                r
            },
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_fits_its_budget() {
        let total = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len();
        assert!(total <= 100 * 1024, "the page is {total} bytes");
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
    }
}
