//! `thumbd serve` flags, validated into a [`ServeConfig`] before any client is built (a bad
//! value is one log line and exit code 2, as for the worker).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::ImageArgs;
use crate::naming::normalize_prefix;
use crate::service::config::{is_resource_name, LogFormat};
use crate::service::message::is_bucket_name;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Local mode: uploads in DIR/uploads, thumbnails in DIR/thumbs, and the `--watch` worker
    /// in this process. Nothing else is needed.
    #[arg(long, env = "THUMBD_LOCAL", value_name = "DIR",
          conflicts_with_all = ["upload_bucket", "thumbnail_bucket", "events_subscription"])]
    pub local: Option<PathBuf>,

    /// Cloud mode: the bucket uploads are written to (the worker's source bucket).
    #[arg(long, env = "THUMBD_UPLOAD_BUCKET", value_name = "BUCKET")]
    pub upload_bucket: Option<String>,

    /// Object-name prefix of uploads, as a folder (`uploads` means `uploads/`).
    #[arg(
        long,
        env = "THUMBD_UPLOAD_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub upload_prefix: String,

    /// Cloud mode: the bucket the worker writes thumbnails to (its --output-bucket).
    #[arg(long, env = "THUMBD_THUMBNAIL_BUCKET", value_name = "BUCKET")]
    pub thumbnail_bucket: Option<String>,

    /// Prefix of thumbnails in the thumbnail bucket (the worker's --output-prefix).
    #[arg(
        long,
        env = "THUMBD_THUMBNAIL_PREFIX",
        default_value = "thumbs/",
        value_name = "PREFIX"
    )]
    pub thumbnail_prefix: String,

    /// Cloud mode: a subscription to the worker's events topic, the source of the live
    /// updates (`GET /api/events`). Give this service its own subscription.
    #[arg(
        long,
        env = "THUMBD_EVENTS_SUBSCRIPTION",
        value_name = "projects/P/subscriptions/S"
    )]
    pub events_subscription: Option<String>,

    /// Bearer token required for uploads and the event stream (`Authorization: Bearer T`;
    /// `?access_token=T` for the event stream, which browsers cannot give headers). Without
    /// it anyone who reaches the port may upload: in production, also put the service behind
    /// IAP or an authenticating proxy.
    #[arg(
        long,
        env = "THUMBD_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// Largest upload body in bytes (413 beyond; the body is never buffered past it).
    #[arg(long, env = "THUMBD_MAX_UPLOAD_BYTES", default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_upload_bytes: u64,

    /// Bytes of upload bodies held at once across all clients; an upload that would go over
    /// is answered 503 with Retry-After [default: half the container's memory limit].
    #[arg(long, env = "THUMBD_UPLOAD_MEMORY", value_name = "BYTES")]
    pub upload_memory: Option<u64>,

    /// Seconds an upload may wait for its next bytes before it is answered 408.
    #[arg(
        long,
        env = "THUMBD_READ_TIMEOUT",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub read_timeout: u64,

    /// Uploads one client address may run at once (429 beyond).
    #[arg(
        long,
        env = "THUMBD_UPLOADS_PER_CLIENT",
        default_value_t = 4,
        value_name = "N"
    )]
    pub uploads_per_client: usize,

    /// Address of the page, the API and /healthz /readyz /metrics.
    #[arg(
        long,
        env = "THUMBD_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Local mode: engine threads of the embedded worker [default: the container's CPUs].
    #[arg(long, env = "THUMBD_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// Seconds open uploads and the embedded worker get to finish after SIGTERM (event
    /// streams end at once); what is still open then is closed.
    #[arg(
        long,
        env = "THUMBD_SHUTDOWN_TIMEOUT",
        default_value_t = 20,
        value_name = "SECS"
    )]
    pub shutdown_timeout: u64,

    /// Seconds a storage call is retried before the request is answered 503.
    #[arg(
        long,
        env = "THUMBD_STORAGE_RETRY",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub storage_retry: u64,

    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, env = "THUMBD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where uploads and thumbnails live, and where live updates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Local {
        dir: PathBuf,
    },
    Cloud {
        upload_bucket: String,
        thumbnail_bucket: String,
        events_subscription: String,
    },
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub mode: Mode,
    pub upload_prefix: String,
    pub thumbnail_prefix: String,
    pub auth_token: Option<String>,
    pub max_upload_bytes: u64,
    pub upload_memory: Option<u64>,
    pub read_timeout: Duration,
    pub uploads_per_client: usize,
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub storage_retry: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServeConfigError {
    #[error("give --local DIR, or --upload-bucket, --thumbnail-bucket and --events-subscription")]
    NoMode,
    #[error("cloud mode needs --{0} as well")]
    Missing(&'static str),
    #[error("`{0}` is not a valid bucket name")]
    BadBucket(String),
    #[error("`{0}` is not a subscription name (projects/P/subscriptions/S)")]
    BadSubscription(String),
    #[error("--upload-memory must hold at least one upload of --max-upload-bytes")]
    SmallUploadMemory,
    #[error("--auth-token is empty")]
    EmptyToken,
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error("--upload-prefix is {0} bytes; at most 512 leave room for the names under it")]
    LongPrefix(usize),
    #[error("--upload-prefix `{0}` and --thumbnail-prefix `{1}` overlap in one folder")]
    Overlap(String, String),
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServeConfig, ServeConfigError> {
        let mode = match (&self.local, &self.upload_bucket, &self.thumbnail_bucket) {
            (Some(dir), ..) => Mode::Local { dir: dir.clone() },
            (None, None, None) if self.events_subscription.is_none() => {
                return Err(ServeConfigError::NoMode)
            }
            (None, uploads, thumbs) => {
                let uploads = uploads
                    .clone()
                    .ok_or(ServeConfigError::Missing("upload-bucket"))?;
                let thumbs = thumbs
                    .clone()
                    .ok_or(ServeConfigError::Missing("thumbnail-bucket"))?;
                let subscription = self
                    .events_subscription
                    .clone()
                    .ok_or(ServeConfigError::Missing("events-subscription"))?;
                for bucket in [&uploads, &thumbs] {
                    if !is_bucket_name(bucket) {
                        return Err(ServeConfigError::BadBucket(bucket.clone()));
                    }
                }
                if !is_resource_name(&subscription, "subscriptions") {
                    return Err(ServeConfigError::BadSubscription(subscription));
                }
                // One bucket for both is allowed if the folders are apart (the worker skips
                // its own outputs by prefix).
                let (up, th) = (
                    normalize_prefix(&self.upload_prefix),
                    normalize_prefix(&self.thumbnail_prefix),
                );
                if uploads == thumbs && (up.starts_with(&th) || th.starts_with(&up)) {
                    return Err(ServeConfigError::Overlap(up, th));
                }
                Mode::Cloud {
                    upload_bucket: uploads,
                    thumbnail_bucket: thumbs,
                    events_subscription: subscription,
                }
            }
        };
        if self.upload_prefix.len() > 512 {
            return Err(ServeConfigError::LongPrefix(self.upload_prefix.len()));
        }
        if self.auth_token.as_deref() == Some("") {
            return Err(ServeConfigError::EmptyToken);
        }
        if self.max_upload_bytes == 0 {
            return Err(ServeConfigError::Zero("max-upload-bytes"));
        }
        if self
            .upload_memory
            .is_some_and(|m| m < self.max_upload_bytes)
        {
            return Err(ServeConfigError::SmallUploadMemory);
        }
        if self.uploads_per_client == 0 {
            return Err(ServeConfigError::Zero("uploads-per-client"));
        }
        if self.read_timeout == 0 {
            return Err(ServeConfigError::Zero("read-timeout"));
        }
        let local = matches!(mode, Mode::Local { .. });
        Ok(ServeConfig {
            mode,
            // Local mode keeps each in its own folder: no prefixes.
            upload_prefix: if local {
                String::new()
            } else {
                normalize_prefix(&self.upload_prefix)
            },
            thumbnail_prefix: if local {
                String::new()
            } else {
                normalize_prefix(&self.thumbnail_prefix)
            },
            auth_token: self.auth_token.clone(),
            max_upload_bytes: self.max_upload_bytes,
            upload_memory: self.upload_memory,
            read_timeout: Duration::from_secs(self.read_timeout),
            uploads_per_client: self.uploads_per_client,
            listen: self.listen,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            storage_retry: Duration::from_secs(self.storage_retry),
            log_format: self.log_format,
        })
    }
}
