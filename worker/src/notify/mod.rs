//! `thumbd notify`: a second, independent consumer of the worker's events. It pulls a
//! subscription on `--events-topic` and mails one message per ready or failed image.
//!
//! Delivery: a message is acked only once the mail server accepted its mail (lettre's `send`
//! returned `Ok`); an SMTP failure nacks it after a pause that grows while the server keeps
//! failing, so Pub/Sub redelivers it. A message that is not an event is acked without a mail
//! (it would fail the same way forever). Copies of an event already mailed are skipped through
//! [`dedupe`], in memory.
//!
//! # Layout
//! - [`config`] — flags and env vars, validated before any client is built;
//! - [`mail`] — an event → its mail;
//! - [`dedupe`] — the bounded set of events already mailed;
//! - this module — the pull (shared with the worker), sending, acking, metrics.

pub mod config;
pub mod dedupe;
pub mod mail;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::service::fate::Fate;
use crate::service::metrics::FateLabels;
use crate::service::shutdown::Shutdown;
use crate::service::source::pubsub::{self, Pull};
use crate::service::{emulator_env, http, init_logging, WorkerError};
use config::{Config, ConfigError, NotifyArgs, SmtpTls, PASSWORD_VAR};
use dedupe::{Claim, Dedupe, Key};
use mail::{Addresses, Notice};

/// Why `thumbd notify` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Invalid flags or environment: exit code 2.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Service(#[from] WorkerError),
}

/// Validates, sets up logging, and runs until shutdown.
pub fn run(args: NotifyArgs) -> Result<(), NotifyError> {
    let config = args.validate(std::env::var(PASSWORD_VAR).ok())?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(WorkerError::from)?;
    Ok(runtime.block_on(serve(config))?)
}

async fn serve(config: Config) -> Result<(), WorkerError> {
    let metrics = Metrics::new();
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let ready = Arc::new(AtomicBool::new(false));
    let (addr, _server) =
        http::serve(config.listen, metrics.registry.clone(), ready.clone()).await?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics");

    let transport =
        transport(&config).map_err(|e| WorkerError::Client(format!("SMTP transport: {e}")))?;
    tracing::info!(
        smtp = %format!("{}:{}", config.host, config.port),
        tls = ?config.tls,
        auth = config.credentials.is_some(),
        from = %config.addresses.from,
        recipients = config.addresses.to.len(),
        "mailing events"
    );
    // A warning only: mails wait (nacked) until the server answers.
    tokio::spawn({
        let transport = transport.clone();
        async move {
            match transport.test_connection().await {
                Ok(true) => tracing::info!("the mail server answers"),
                Ok(false) => tracing::warn!("the mail server did not answer NOOP"),
                Err(error) => tracing::warn!(%error, "the mail server is not reachable yet"),
            }
        }
    });

    let pubsub_endpoint = emulator_env("PUBSUB_EMULATOR_HOST")?;
    if let Some(endpoint) = &pubsub_endpoint {
        tracing::info!(
            pubsub = endpoint,
            "emulator endpoint (anonymous credentials)"
        );
    }
    let client = pubsub::subscriber(pubsub_endpoint.as_deref()).await?;
    let mailer = Arc::new(Mailer {
        transport,
        addresses: config.addresses.clone(),
        slots: tokio::sync::Semaphore::new(config.concurrency),
        dedupe: Dedupe::new(config.dedupe_keys),
        backoff: Backoff::default(),
        metrics,
        shutdown: shutdown.clone(),
    });
    let settings = Pull {
        subscription: &config.subscription,
        lease_extension: config.lease_extension,
        max_outstanding_messages: (config.concurrency * 2) as i64,
        // Events are small; the message count bounds them.
        max_outstanding_bytes: 64 << 20,
        shutdown_timeout: config.shutdown_timeout,
    };
    let result = pubsub::pull(client, settings, &shutdown, ready, {
        let mailer = mailer.clone();
        move |message, handler| {
            let mailer = mailer.clone();
            async move { mailer.handle(message, handler).await }
        }
    })
    .await;
    // Says QUIT on the pooled connections.
    mailer.transport.shutdown().await;
    result
}

fn transport(
    config: &Config,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let tls = match config.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(TlsParameters::new(config.host.clone())?),
        SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(config.host.clone())?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
        .port(config.port)
        .tls(tls)
        .timeout(Some(config.smtp_timeout))
        .pool_config(PoolConfig::new().max_size(config.concurrency as u32));
    if let Some(c) = &config.credentials {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            c.username.clone(),
            c.password.clone(),
        ));
    }
    Ok(builder.build())
}

/// Everything a message's task needs.
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    addresses: Addresses,
    /// Mails being sent at once (`--concurrency`).
    slots: tokio::sync::Semaphore,
    dedupe: Dedupe,
    backoff: Backoff,
    metrics: Metrics,
    shutdown: Shutdown,
}

impl Mailer {
    async fn handle(&self, message: Message, handler: Handler) {
        self.metrics.received.inc();
        let id = message.message_id.as_str();
        let (fate, reason) = self.mail(id, &message.data).await;
        self.metrics
            .settled
            .get_or_create(&FateLabels {
                fate: fate.as_str(),
                reason,
            })
            .inc();
        if let Err(error) = pubsub::settle(handler, fate).await {
            tracing::warn!(message_id = id, fate = fate.as_str(), %error, "not confirmed");
            self.metrics
                .ack_failures
                .get_or_create(&FateLabels {
                    fate: fate.as_str(),
                    reason,
                })
                .inc();
        }
    }

    /// Mails one event; returns the message's fate and its metrics reason.
    async fn mail(&self, id: &str, data: &[u8]) -> (Fate, &'static str) {
        let notice = match Notice::parse(data) {
            Ok(notice) => notice,
            Err(error) => {
                tracing::warn!(message_id = id, %error, "not a thumbd event: acked without a mail");
                return (Fate::Ack, "malformed");
            }
        };
        let mail = match mail::message(&notice, &self.addresses) {
            Ok(mail) => mail,
            Err(error) => {
                tracing::warn!(message_id = id, %error, "no mail can be made of this event: acked");
                return (Fate::Ack, "malformed");
            }
        };
        let (kind, event) = (notice.kind.as_str(), &notice.event);
        let waited = tokio::select! {
            biased;
            _ = self.shutdown.wait() => None,
            slot = self.slots.acquire() => slot.ok(),
        };
        let Some(_slot) = waited else {
            return (Fate::Nack, "shutdown");
        };
        let claim = tokio::select! {
            biased;
            _ = self.shutdown.wait() => return (Fate::Nack, "shutdown"),
            claim = self.dedupe.claim(Key::of(&notice)) => claim,
        };
        let claimed = match claim {
            Claim::Duplicate => {
                tracing::info!(message_id = id, event = kind, bucket = %event.bucket, name = %event.name, generation = ?event.generation, "already mailed: acked without a mail");
                return (Fate::Ack, "duplicate");
            }
            Claim::Mail(claimed) => claimed,
        };
        let started = Instant::now();
        let sent = self.transport.send(mail).await;
        self.metrics
            .send_seconds
            .observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(response) => {
                claimed.sent();
                self.backoff.succeeded();
                tracing::info!(message_id = id, event = kind, bucket = %event.bucket, name = %event.name, generation = ?event.generation, code = %response.code(), "mailed");
                (Fate::Ack, "sent")
            }
            Err(error) => {
                // Released before the pause: a copy of the event may go ahead.
                drop(claimed);
                let class = smtp_error_class(&error);
                self.metrics
                    .smtp_errors
                    .get_or_create(&SmtpErrorLabels { class })
                    .inc();
                let pause = self.backoff.failed();
                tracing::warn!(message_id = id, event = kind, name = %event.name, %error, class, ?pause, "the mail server did not take the mail: nacked after a pause");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.shutdown.wait() => {}
                }
                (Fate::Nack, "smtp_error")
            }
        }
    }
}

/// `permanent` (5xx: a rejected sender, recipient or login), `transient` (4xx), `timeout`,
/// `tls` (the handshake failed: an untrusted or expired certificate, a wrong host name), or
/// `connection` (refused, reset, DNS, anything else).
fn smtp_error_class(error: &lettre::transport::smtp::Error) -> &'static str {
    if error.is_permanent() {
        "permanent"
    } else if error.is_transient() {
        "transient"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_tls() || is_handshake_failure(error) {
        "tls"
    } else {
        "connection"
    }
}

/// lettre reports a failed TLS handshake as a connection error; its cause is the rustls error
/// inside an I/O error.
fn is_handshake_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(e) = cause {
        let rustls = e.is::<rustls::Error>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>());
        if rustls {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The pause before a failed mail's message is nacked: 0.5 s, doubling with every consecutive
/// failure up to 30 s, back to 0.5 s after a success. It keeps a down mail server from
/// turning redeliveries into a busy loop (Pub/Sub redelivers a nack at once unless the
/// subscription has a retry policy).
#[derive(Debug, Default)]
struct Backoff {
    failures: AtomicU32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    fn failed(&self) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::SeqCst).min(16);
        (Self::FIRST * 2u32.pow(n)).min(Self::MAX)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SmtpErrorLabels {
    class: &'static str,
}

/// `thumbd notify`'s metrics (README, "thumbd notify").
#[derive(Clone, Debug)]
struct Metrics {
    registry: Arc<Registry>,
    received: Counter,
    settled: Family<FateLabels, Counter>,
    ack_failures: Family<FateLabels, Counter>,
    smtp_errors: Family<SmtpErrorLabels, Counter>,
    send_seconds: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("thumbd_notify");
        let received = Counter::default();
        let settled = Family::<FateLabels, Counter>::default();
        let ack_failures = Family::<FateLabels, Counter>::default();
        let smtp_errors = Family::<SmtpErrorLabels, Counter>::default();
        // 1 ms .. ~65 s.
        let send_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "messages_received",
            "Messages received from the subscription",
            received.clone(),
        );
        registry.register(
            "messages",
            "Messages settled, by fate and reason: ack/sent (mailed), ack/duplicate (already \
             mailed), ack/malformed (not an event), nack/smtp_error, nack/shutdown",
            settled.clone(),
        );
        registry.register(
            "ack_failures",
            "Acks or nacks not confirmed by an exactly-once subscription",
            ack_failures.clone(),
        );
        registry.register(
            "smtp_errors",
            "Mails the server did not take, by class: permanent (5xx), transient (4xx), \
             timeout, tls, connection",
            smtp_errors.clone(),
        );
        registry.register(
            "send_seconds",
            "Time to hand one mail to the server (connection included when none was open)",
            send_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            received,
            settled,
            ack_failures,
            smtp_errors,
            send_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_its_cap_and_resets() {
        let b = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.succeeded();
        assert_eq!(b.failed(), Backoff::FIRST);
    }

    #[test]
    fn exposition_names_the_documented_metrics() {
        let m = Metrics::new();
        m.received.inc();
        m.settled
            .get_or_create(&FateLabels {
                fate: "ack",
                reason: "sent",
            })
            .inc();
        m.smtp_errors
            .get_or_create(&SmtpErrorLabels {
                class: "connection",
            })
            .inc();
        let text = crate::service::metrics::encode(&m.registry);
        for name in [
            "thumbd_notify_messages_received_total 1",
            "thumbd_notify_messages_total{fate=\"ack\",reason=\"sent\"} 1",
            "thumbd_notify_smtp_errors_total{class=\"connection\"} 1",
            "thumbd_notify_send_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
