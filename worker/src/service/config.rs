//! `thumbd worker` flags, and their validation into a [`Config`] before any client is built:
//! a typo in a subscription name must fail in milliseconds with exit code 2, not after a
//! minute of credential lookups.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use thumbd_engine::{Limits, Request};

use crate::cli::ImageArgs;
use crate::resources::Resources;

/// What an engine thread adds to the idle process while it works, beyond the image it holds:
/// the thread-local resizer's buffers (at most `RETAINED_RESIZER_BYTES`, 4 MiB, between
/// images), mimalloc's per-thread heap keeping freed pages for reuse, the touched stack. Part
/// of the process floor (see [`Budget`]).
pub const ENGINE_THREAD_BYTES: u64 = 16 << 20;

/// What I/O adds to the idle process under load: HTTP/gRPC buffers, encoded thumbnails being
/// written, colour-transform caches. Part of the process floor.
pub const IO_BYTES: u64 = 16 << 20;

/// The least admitted to images, even when the floor eats the whole budget (one image at a
/// time still runs).
pub const MIN_ADMISSION_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Pub/Sub subscription to pull Cloud Storage notifications (or JSON jobs) from.
    #[arg(
        long,
        env = "THUMBD_SUBSCRIPTION",
        value_name = "projects/P/subscriptions/S"
    )]
    pub subscription: Option<String>,

    /// Bucket the thumbnails are written to [default: the source object's bucket]. A bucket
    /// without a notification is recommended: in the source bucket, every thumbnail written
    /// comes back as a notification to pull and skip.
    #[arg(long, env = "THUMBD_OUTPUT_BUCKET", value_name = "BUCKET")]
    pub output_bucket: Option<String>,

    /// Buckets jobs may name (repeatable, or comma-separated in the env var). A job for any
    /// other bucket is acked with a `forbidden_bucket` failure event, so whoever can publish to
    /// the subscription's topic cannot make the worker read other buckets. With
    /// --output-bucket, at most one: thumbnails are named by object name only.
    #[arg(
        long = "source-bucket",
        env = "THUMBD_SOURCE_BUCKETS",
        value_delimiter = ',',
        value_name = "BUCKET"
    )]
    pub source_buckets: Vec<String>,

    /// Object-name prefix of every thumbnail, as a folder (`thumbs` means `thumbs/`); objects
    /// under it in the output bucket are never thumbnailed.
    #[arg(
        long,
        env = "THUMBD_OUTPUT_PREFIX",
        default_value = "thumbs/",
        value_name = "PREFIX"
    )]
    pub output_prefix: String,

    /// Topic for "thumbnails ready" / "thumbnail failed" events (optional).
    #[arg(long, env = "THUMBD_EVENTS_TOPIC", value_name = "projects/P/topics/T")]
    pub events_topic: Option<String>,

    /// Local mode: watch this folder instead of a subscription (no cloud account needed).
    #[arg(
        long,
        env = "THUMBD_WATCH",
        value_name = "DIR",
        conflicts_with = "subscription"
    )]
    pub watch: Option<PathBuf>,

    /// Local mode: write thumbnails under this folder as `<OUT>/<relative path>/<size>.<ext>`.
    #[arg(long, env = "THUMBD_OUT", value_name = "DIR")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Engine threads [default: the container's CPUs, from the smallest cgroup CPU quota on
    /// the way up from the process's group].
    #[arg(long, env = "THUMBD_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// Images queued for the engine beyond the running ones [default: 2 × threads].
    #[arg(long, env = "THUMBD_QUEUE", value_name = "N")]
    pub queue: Option<usize>,

    /// Memory the worker may use in total, in bytes [default: 70% of the smallest cgroup memory
    /// limit on the way up from the process's group, or of the host's memory]. Images are
    /// admitted against this minus the process floor, using each image's header to estimate
    /// what the engine will hold for it.
    #[arg(long, env = "THUMBD_MEMORY_BUDGET", value_name = "BYTES")]
    pub memory_budget: Option<u64>,

    /// The part of the budget the process needs without any image, in bytes [default: the
    /// resident memory measured once the clients are built, plus 16 MiB per engine thread and
    /// 16 MiB for I/O].
    #[arg(long, env = "THUMBD_MEMORY_FLOOR", value_name = "BYTES")]
    pub memory_floor: Option<u64>,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(
        long,
        env = "THUMBD_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Seconds in-flight work may take to finish after SIGTERM before the rest is nacked
    /// (keep it under the pod's terminationGracePeriodSeconds, 30 by default on GKE).
    #[arg(
        long,
        env = "THUMBD_SHUTDOWN_TIMEOUT",
        default_value_t = 20,
        value_name = "SECS"
    )]
    pub shutdown_timeout: u64,

    /// Lease extension asked of Pub/Sub per message, in seconds (10–600): how soon a message
    /// held by a crashed worker is redelivered.
    #[arg(
        long,
        env = "THUMBD_LEASE_EXTENSION",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub lease_extension: u64,

    /// Seconds a storage call is retried (on 5xx, timeouts, connection errors) before the
    /// message is nacked for redelivery.
    #[arg(
        long,
        env = "THUMBD_STORAGE_RETRY",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub storage_retry: u64,

    /// Cache-Control header of every thumbnail.
    #[arg(
        long,
        env = "THUMBD_CACHE_CONTROL",
        default_value = "public, max-age=86400"
    )]
    pub cache_control: String,

    /// Local mode: how often the folder is scanned, in milliseconds.
    #[arg(long, env = "THUMBD_POLL_MS", default_value_t = 500, value_name = "MS")]
    pub poll_ms: u64,

    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, env = "THUMBD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where messages come from and where thumbnails go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    PubSub {
        subscription: String,
        output_bucket: Option<String>,
        events_topic: Option<String>,
        /// Empty: any bucket (logged as a warning at start).
        source_buckets: Vec<String>,
    },
    Watch {
        dir: PathBuf,
        out: PathBuf,
    },
}

/// Concurrency and memory, derived from the container and overridable by flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Engine (rayon) threads.
    pub threads: usize,
    /// Bound of the crossbeam channel feeding the engine.
    pub queue: usize,
    /// Messages fetched or processed at once (threads + queue).
    pub max_in_flight: usize,
    /// Total memory budget.
    pub memory_budget: u64,
    /// `--memory-floor`, if given (else measured at start, see [`Budget::derive`]).
    pub memory_floor: Option<u64>,
}

impl Tuning {
    /// Derives the settings from the container's resources; flags win.
    pub fn derive(
        res: Resources,
        threads: Option<usize>,
        queue: Option<usize>,
        budget: Option<u64>,
        floor: Option<u64>,
    ) -> Self {
        let threads = threads.unwrap_or(res.cpus).max(1);
        let queue = queue.unwrap_or(threads * 2).max(1);
        // Without any known limit, assume a small pod rather than an unbounded one.
        let memory = res.memory_bytes.unwrap_or(1 << 30);
        let memory_budget = budget.unwrap_or(memory / 10 * 7);
        Tuning {
            threads,
            queue,
            max_in_flight: threads + queue,
            memory_budget,
            memory_floor: floor,
        }
    }
}

/// How the memory budget is spent, decided at start once the clients are built:
///
/// ```text
/// memory budget = floor + slack + input pool + engine pool
/// floor         = resident memory after start-up + 16 MiB × threads + 16 MiB  (or --memory-floor)
/// slack         = 1/4 of the rest: the allocator's resident overhead above live bytes
/// input pool    = 1/4 of what remains: compressed originals fetched and not yet thumbnailed
/// engine pool   = 3/4 of what remains: each image's engine estimate (super::estimate)
/// ```
///
/// The slack is measured: with a counting allocator, a burst of the largest corpus photos at
/// 1024 px (`bench-worker --memory-budget 268435456 --min-mp 8 --copies 10 --size 1024`,
/// mimalloc purging at once, see `alloc.rs`) was 1.25× resident over live heap with
/// transparent huge pages on. That burst now peaks at 157 MiB resident against its 256 MiB
/// budget. It used to end 5–9 MiB over: heaptrack (on a build with the system allocator)
/// showed 100 MiB of its 259 MiB peak heap in the two engine threads' resizer buffers, kept
/// from earlier images; the engine now frees them after an image that needed more than 4 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub memory_budget: u64,
    /// Resident memory measured after start-up (0 if unknown or overridden).
    pub idle_rss: u64,
    pub floor: u64,
    pub slack: u64,
    pub input_bytes: u64,
    pub engine_bytes: u64,
}

impl Budget {
    /// `idle_rss`: the process's resident memory with its clients and threads up.
    pub fn derive(tuning: &Tuning, idle_rss: Option<u64>) -> Self {
        let floor = tuning.memory_floor.unwrap_or_else(|| {
            // Unknown RSS (no /proc): assume a generous idle process.
            idle_rss.unwrap_or(64 << 20) + tuning.threads as u64 * ENGINE_THREAD_BYTES + IO_BYTES
        });
        let rest = tuning.memory_budget.saturating_sub(floor);
        let slack = rest / 4;
        let images = (rest - slack).max(MIN_ADMISSION_BYTES);
        let input_bytes = images / 4;
        Budget {
            memory_budget: tuning.memory_budget,
            idle_rss: idle_rss.unwrap_or(0),
            floor,
            slack,
            input_bytes,
            engine_bytes: images - input_bytes,
        }
    }
}

/// A validated worker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub output_prefix: String,
    pub request: Request,
    pub limits: Limits,
    pub tuning: Tuning,
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub lease_extension: Duration,
    pub storage_retry: Duration,
    pub cache_control: String,
    pub poll_interval: Duration,
    pub log_format: LogFormat,
}

/// Why the configuration was refused (exit code 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("give either --subscription (Pub/Sub) or --watch DIR --out DIR (local folder)")]
    NoSource,
    #[error("--watch needs --out DIR")]
    WatchNeedsOut,
    #[error("--{flag} is only for the Pub/Sub source, not with --watch")]
    PubSubOnly { flag: &'static str },
    #[error("--watch {0}: not a folder")]
    WatchNotDir(PathBuf),
    #[error("--subscription `{0}` is not of the form projects/PROJECT/subscriptions/NAME")]
    BadSubscription(String),
    #[error("--events-topic `{0}` is not of the form projects/PROJECT/topics/NAME")]
    BadTopic(String),
    #[error("--output-bucket `{0}` is not a valid bucket name (3-222 of a-z 0-9 . _ -)")]
    BadBucket(String),
    #[error(
        "--output-prefix is empty and thumbnails go to the source bucket: every thumbnail \
         would trigger another notification (a thumbnail loop); set a prefix or --output-bucket"
    )]
    LoopingPrefix,
    #[error(
        "--output-prefix is empty, so every object of --output-bucket `{0}` counts as a \
         thumbnail: name the source buckets with --source-bucket, none of them `{0}`, or set a \
         prefix"
    )]
    EmptyPrefixInSourceBucket(String),
    #[error("--source-bucket `{0}` is not a valid bucket name")]
    BadSourceBucket(String),
    #[error(
        "--output-bucket with {0} source buckets: thumbnails are named `<prefix><object>/...` \
         without the bucket, so same-named objects of two buckets would share them; run one \
         worker (or prefix) per source bucket"
    )]
    SharedOutputBucket(usize),
    #[error("invalid image settings: {0}")]
    Request(String),
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("{var} `{value}` is not host:port or http://host:port")]
    BadEmulatorHost { var: &'static str, value: String },
}

impl WorkerArgs {
    /// Checks everything that can be checked without the network.
    pub fn validate(&self, res: Resources) -> Result<Config, ConfigError> {
        let source = match (&self.subscription, &self.watch) {
            (Some(sub), None) => {
                if !is_resource_name(sub, "subscriptions") {
                    return Err(ConfigError::BadSubscription(sub.clone()));
                }
                if let Some(topic) = &self.events_topic {
                    if !is_resource_name(topic, "topics") {
                        return Err(ConfigError::BadTopic(topic.clone()));
                    }
                }
                if let Some(bucket) = &self.output_bucket {
                    if !is_bucket_name(bucket) {
                        return Err(ConfigError::BadBucket(bucket.clone()));
                    }
                }
                if let Some(bad) = self.source_buckets.iter().find(|b| !is_bucket_name(b)) {
                    return Err(ConfigError::BadSourceBucket(bad.clone()));
                }
                match &self.output_bucket {
                    None if self.output_prefix.is_empty() => {
                        return Err(ConfigError::LoopingPrefix)
                    }
                    Some(out)
                        if self.output_prefix.is_empty()
                            && (self.source_buckets.is_empty()
                                || self.source_buckets.contains(out)) =>
                    {
                        return Err(ConfigError::EmptyPrefixInSourceBucket(out.clone()))
                    }
                    Some(_) if self.source_buckets.len() > 1 => {
                        return Err(ConfigError::SharedOutputBucket(self.source_buckets.len()))
                    }
                    _ => {}
                }
                for (var, value) in emulator_vars() {
                    emulator_endpoint(var, &value)?;
                }
                Source::PubSub {
                    subscription: sub.clone(),
                    output_bucket: self.output_bucket.clone(),
                    events_topic: self.events_topic.clone(),
                    source_buckets: self.source_buckets.clone(),
                }
            }
            (None, Some(dir)) => {
                let out = self.out.clone().ok_or(ConfigError::WatchNeedsOut)?;
                if self.output_bucket.is_some() {
                    return Err(ConfigError::PubSubOnly {
                        flag: "output-bucket",
                    });
                }
                if self.events_topic.is_some() {
                    return Err(ConfigError::PubSubOnly {
                        flag: "events-topic",
                    });
                }
                if !self.source_buckets.is_empty() {
                    return Err(ConfigError::PubSubOnly {
                        flag: "source-bucket",
                    });
                }
                if !dir.is_dir() {
                    return Err(ConfigError::WatchNotDir(dir.clone()));
                }
                Source::Watch {
                    dir: dir.clone(),
                    out,
                }
            }
            _ => return Err(ConfigError::NoSource),
        };
        let request = self.image.request();
        let limits = self.image.limits();
        request
            .validate(&limits)
            .map_err(|e| ConfigError::Request(e.to_string()))?;
        for (flag, value) in [("threads", self.threads), ("queue", self.queue)] {
            if value == Some(0) {
                return Err(ConfigError::Zero { flag });
            }
        }
        if self.poll_ms == 0 {
            return Err(ConfigError::Zero { flag: "poll-ms" });
        }
        Ok(Config {
            source,
            output_prefix: crate::naming::normalize_prefix(&self.output_prefix),
            request,
            limits,
            tuning: Tuning::derive(
                res,
                self.threads,
                self.queue,
                self.memory_budget,
                self.memory_floor,
            ),
            listen: self.listen,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            lease_extension: Duration::from_secs(self.lease_extension.clamp(10, 600)),
            storage_retry: Duration::from_secs(self.storage_retry.max(1)),
            cache_control: self.cache_control.clone(),
            poll_interval: Duration::from_millis(self.poll_ms),
            log_format: self.log_format,
        })
    }
}

/// `projects/P/<kind>/NAME` with non-empty P and NAME.
pub fn is_resource_name(s: &str, kind: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && !parts[1].is_empty()
        && parts[2] == kind
        && !parts[3].is_empty()
}

use super::message::is_bucket_name;

fn emulator_vars() -> Vec<(&'static str, String)> {
    ["PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"]
        .into_iter()
        .filter_map(|var| {
            let value = std::env::var(var).ok()?;
            (!value.is_empty()).then_some((var, value))
        })
        .collect()
}

/// The endpoint URL for an emulator variable: `host:port` or `http(s)://host:port`, as the Go
/// and Python clients accept.
pub fn emulator_endpoint(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadEmulatorHost {
        var,
        value: value.to_string(),
    };
    let value = value.trim().trim_end_matches('/');
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some(_) => return Err(bad()),
        None => ("http", value),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: WorkerArgs,
    }

    fn parse(args: &[&str]) -> WorkerArgs {
        let mut all = vec!["thumbd"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().args
    }

    const RES: Resources = Resources {
        cpus: 2,
        memory_bytes: Some(1 << 30),
    };

    #[test]
    fn a_valid_pubsub_config() {
        let c = parse(&[
            "--subscription",
            "projects/p/subscriptions/s",
            "--size",
            "64,256",
        ])
        .validate(RES)
        .unwrap();
        assert_eq!(c.request.sizes, vec![64, 256]);
        assert_eq!(c.tuning.threads, 2);
        assert_eq!(c.tuning.queue, 4);
        assert_eq!(c.tuning.max_in_flight, 6);
        assert_eq!(c.tuning.memory_budget, (1u64 << 30) / 10 * 7);
        assert_eq!(c.tuning.memory_floor, None);
    }

    #[test]
    fn bad_configs_are_refused() {
        let err = |args: &[&str]| parse(args).validate(RES).unwrap_err();
        assert_eq!(err(&[]), ConfigError::NoSource);
        assert!(matches!(
            err(&["--subscription", "my-sub"]),
            ConfigError::BadSubscription(_)
        ));
        assert!(matches!(
            err(&[
                "--subscription",
                "projects/p/subscriptions/s",
                "--events-topic",
                "projects/p/subscriptions/t"
            ]),
            ConfigError::BadTopic(_)
        ));
        assert_eq!(
            err(&[
                "--subscription",
                "projects/p/subscriptions/s",
                "--output-prefix",
                ""
            ]),
            ConfigError::LoopingPrefix
        );
        assert!(matches!(
            err(&[
                "--subscription",
                "projects/p/subscriptions/s",
                "--output-bucket",
                "A B"
            ]),
            ConfigError::BadBucket(_)
        ));
        let sub = ["--subscription", "projects/p/subscriptions/s"];
        let with = |extra: &[&str]| err(&[&sub[..], extra].concat());
        assert_eq!(
            with(&["--output-bucket", "out-bkt", "--output-prefix", ""]),
            ConfigError::EmptyPrefixInSourceBucket("out-bkt".into()),
            "an empty prefix needs the source buckets named"
        );
        assert_eq!(
            with(&[
                "--output-bucket",
                "out-bkt",
                "--output-prefix",
                "",
                "--source-bucket",
                "uploads,out-bkt"
            ]),
            ConfigError::EmptyPrefixInSourceBucket("out-bkt".into())
        );
        assert_eq!(
            with(&[
                "--output-bucket",
                "out-bkt",
                "--source-bucket",
                "eu-bkt,us-bkt"
            ]),
            ConfigError::SharedOutputBucket(2)
        );
        assert_eq!(
            with(&["--source-bucket", "Bad/Name"]),
            ConfigError::BadSourceBucket("Bad/Name".into())
        );
        assert_eq!(err(&["--watch", "/"]), ConfigError::WatchNeedsOut);
        assert!(matches!(
            err(&["--watch", "/nonexistent-thumbd", "--out", "/tmp"]),
            ConfigError::WatchNotDir(_)
        ));
        assert_eq!(
            err(&[
                "--subscription",
                "projects/p/subscriptions/s",
                "--threads",
                "0"
            ]),
            ConfigError::Zero { flag: "threads" }
        );
    }

    #[test]
    fn prefixes_are_folders_and_an_empty_one_is_allowed_with_named_sources() {
        let c = parse(&[
            "--subscription",
            "projects/p/subscriptions/s",
            "--output-prefix",
            "thumbs",
        ])
        .validate(RES)
        .unwrap();
        assert_eq!(c.output_prefix, "thumbs/");
        let c = parse(&[
            "--subscription",
            "projects/p/subscriptions/s",
            "--output-bucket",
            "out",
            "--output-prefix",
            "",
            "--source-bucket",
            "uploads",
        ])
        .validate(RES)
        .unwrap();
        assert_eq!(c.output_prefix, "");
    }

    #[test]
    fn flags_override_derived_tuning() {
        let t = Tuning::derive(RES, Some(3), Some(1), Some(200 << 20), None);
        assert_eq!((t.threads, t.queue, t.max_in_flight), (3, 1, 4));
        assert_eq!(t.memory_budget, 200 << 20);
    }

    #[test]
    fn the_floor_comes_off_the_budget_before_images() {
        const MIB: u64 = 1 << 20;
        let t = Tuning::derive(RES, Some(2), None, Some(256 * MIB), None);
        // Measured floor: idle RSS + 16 MiB per engine thread + 16 MiB of I/O.
        let b = Budget::derive(&t, Some(40 * MIB));
        assert_eq!(b.floor, (40 + 2 * 16 + 16) * MIB);
        // A quarter of the rest is left to the allocator's overhead.
        assert_eq!(b.slack, 42 * MIB);
        assert_eq!(b.input_bytes + b.engine_bytes, 168 * MIB - b.slack);
        assert_eq!(b.input_bytes, (168 * MIB - b.slack) / 4);
        assert_eq!(
            b.floor + b.slack + b.input_bytes + b.engine_bytes,
            t.memory_budget,
            "nothing admitted beyond the budget"
        );
        // --memory-floor wins over the measurement.
        let t = Tuning::derive(RES, Some(2), None, Some(256 * MIB), Some(100 * MIB));
        assert_eq!(Budget::derive(&t, Some(40 * MIB)).floor, 100 * MIB);
        // A budget smaller than the floor still admits one image at a time.
        let t = Tuning::derive(RES, Some(2), None, Some(64 * MIB), None);
        let b = Budget::derive(&t, Some(60 * MIB));
        assert_eq!(b.input_bytes + b.engine_bytes, MIN_ADMISSION_BYTES);
    }

    #[test]
    fn emulator_hosts_in_both_forms() {
        let ep = |v| emulator_endpoint("X", v);
        assert_eq!(ep("localhost:8085").unwrap(), "http://localhost:8085");
        assert_eq!(
            ep("http://127.0.0.1:4443/").unwrap(),
            "http://127.0.0.1:4443"
        );
        assert_eq!(ep("https://h:1").unwrap(), "https://h:1");
        assert!(ep("localhost").is_err());
        assert!(ep("ftp://h:1").is_err());
        assert!(ep("h:notaport").is_err());
    }
}
