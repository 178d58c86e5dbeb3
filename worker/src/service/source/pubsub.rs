//! The Pub/Sub source: one long-lived streaming pull, one task per message, fate applied by
//! [`Pipeline::settle`](crate::service::process::Pipeline::settle). [`pull`] and [`settle`]
//! also serve `thumbd notify`.
//!
//! Flow control is set on the stream (max outstanding messages/bytes) to spare the server,
//! but the emulator ignores it, so the real bound is the pipeline's admission control: a
//! message waiting for a slot costs only its small notification.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::ShutdownBehavior;
use tokio::task::JoinSet;

use crate::service::config::{Config, Tuning};
use crate::service::fate::{Fate, JobError, Outcome, Skip};
use crate::service::message::{self, Ignored};
use crate::service::metrics::FateLabels;
use crate::service::process::Pipeline;
use crate::service::shutdown::Shutdown;
use crate::service::store::Store;
use crate::service::WorkerError;

/// Anonymous credentials for an emulator endpoint; ADC otherwise.
pub fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Builds the subscriber client (endpoint + anonymous credentials under the emulator).
pub async fn subscriber(endpoint: Option<&str>) -> Result<Subscriber, WorkerError> {
    let mut builder = Subscriber::builder();
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(anonymous());
    }
    builder
        .build()
        .await
        .map_err(|e| WorkerError::Client(format!("Pub/Sub subscriber: {e}")))
}

/// How a streaming pull runs and drains; the worker and `thumbd notify` share [`pull`].
#[derive(Debug, Clone, Copy)]
pub struct Pull<'a> {
    pub subscription: &'a str,
    /// Lease extension asked per message: how soon a message held by a crashed process comes back.
    pub lease_extension: Duration,
    pub max_outstanding_messages: i64,
    pub max_outstanding_bytes: i64,
    /// Time in-flight messages get to be settled after shutdown starts.
    pub shutdown_timeout: Duration,
}

/// The worker's pull: one task per message, fate applied by `Pipeline::settle`.
pub async fn run<S: Store>(
    config: &Config,
    subscription: &str,
    client: Subscriber,
    pipeline: Arc<Pipeline<S>>,
    ready: Arc<AtomicBool>,
) -> Result<(), WorkerError> {
    let Tuning {
        max_in_flight,
        memory_budget,
        ..
    } = config.tuning;
    let settings = Pull {
        subscription,
        lease_extension: config.lease_extension,
        max_outstanding_messages: (max_in_flight * 2) as i64,
        max_outstanding_bytes: memory_budget.min(i64::MAX as u64) as i64,
        shutdown_timeout: config.shutdown_timeout,
    };
    let shutdown = pipeline.shutdown.clone();
    pull(
        client,
        settings,
        &shutdown,
        ready,
        move |message, handler| {
            let pipeline = pipeline.clone();
            async move { handle_message(&pipeline, message, handler).await }
        },
    )
    .await
}

/// Pulls until shutdown, spawning `handle` for each message (it must ack or nack through the
/// handler; a dropped handler nacks), then drains: in-flight work gets the shutdown timeout,
/// the rest is nacked, and pending acks are flushed before returning. `shutdown` is
/// triggered once the stream stops, so tasks waiting for a slot can nack themselves.
pub async fn pull<F, Fut>(
    client: Subscriber,
    settings: Pull<'_>,
    shutdown: &Shutdown,
    ready: Arc<AtomicBool>,
    handle: F,
) -> Result<(), WorkerError>
where
    F: Fn(Message, Handler) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let subscription = settings.subscription;
    let mut stream = client
        .subscribe(subscription)
        .set_max_lease_extension(settings.lease_extension)
        .set_max_outstanding_messages(settings.max_outstanding_messages)
        .set_max_outstanding_bytes(settings.max_outstanding_bytes)
        .set_shutdown_behavior(ShutdownBehavior::WaitForProcessing)
        .build();
    let token = stream.shutdown_token();
    let mut tasks = JoinSet::new();
    // Message ids by task, so the drain can name what is still in flight.
    let mut ids: HashMap<tokio::task::Id, String> = HashMap::new();
    ready.store(true, Ordering::SeqCst);
    tracing::info!(subscription, "pulling");

    let mut failure = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            next = stream.next() => next,
        };
        match next {
            Some(Ok((message, handler))) => {
                let id = message.message_id.clone();
                ids.insert(tasks.spawn(handle(message, handler)).id(), id);
            }
            Some(Err(e)) => {
                failure = Some(WorkerError::Stream(e.to_string()));
                break;
            }
            None => {
                failure = Some(WorkerError::Stream("the stream ended".into()));
                break;
            }
        }
        forget_finished(&mut tasks, &mut ids);
    }

    ready.store(false, Ordering::SeqCst);
    // Stop reading from the gRPC stream first, so no message is taken while draining (leases
    // of delivered messages are still extended, and their acks and nacks still sent). The
    // official emulator still holds the nacks below until their ack deadline before another
    // worker gets them (measured: 10 s with the tests' deadline); nothing is lost.
    let stream_closed = tokio::spawn({
        let token = token.clone();
        async move { token.shutdown().await }
    });
    // Tasks still waiting for a slot see the shutdown and nack themselves.
    shutdown.trigger();
    // Name only the messages still being handled, not finished tasks not yet joined. (A task
    // may already have settled its message since the signal, which it sees at once, and not
    // yet be joined: it is named here, and its settlement logged just before this line.)
    forget_finished(&mut tasks, &mut ids);
    let mut in_flight_ids: Vec<&str> = ids.values().map(String::as_str).collect();
    in_flight_ids.sort_unstable();
    tracing::info!(
        in_flight = tasks.len(),
        in_flight_ids = %in_flight_ids.join(","),
        timeout = ?settings.shutdown_timeout,
        "draining"
    );
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "shutdown timeout reached, nacking the remaining messages"
        );
        // Dropping a task drops its handler, which nacks the message.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Flush acks/nacks; bounded, so a dead emulator cannot hold the pod past its grace period.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream_closed).await;
    drop(stream);
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Joins the tasks that have finished and drops their message ids.
fn forget_finished(tasks: &mut JoinSet<()>, ids: &mut HashMap<tokio::task::Id, String>) {
    while let Some(joined) = tasks.try_join_next_with_id() {
        let id = match joined {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        ids.remove(&id);
    }
}

/// Acks or nacks. On an exactly-once subscription only a confirmed ack means the message will
/// not come back, so the server's confirmation is awaited: `Ok(true)` confirmed, `Err` refused
/// (the message is redelivered); `Ok(false)` on other subscriptions (nothing to confirm).
pub async fn settle(handler: Handler, fate: Fate) -> Result<bool, String> {
    match handler {
        Handler::ExactlyOnce(h) => match fate {
            Fate::Ack => h.confirmed_ack().await,
            Fate::Nack => h.confirmed_nack().await,
        }
        .map(|()| true)
        .map_err(|e| e.to_string()),
        handler => {
            match fate {
                Fate::Ack => handler.ack(),
                Fate::Nack => handler.nack(),
            }
            Ok(false)
        }
    }
}

async fn handle_message<S: Store>(pipeline: &Pipeline<S>, message: Message, handler: Handler) {
    pipeline.metrics.received.inc();
    let (job, result) = match message::parse(&message.attributes, &message.data) {
        Err(malformed) => (None, Err(JobError::from(malformed))),
        Ok(Err(Ignored::EventType)) => (None, Ok(Outcome::Skipped(Skip::EventType))),
        Ok(Ok(job)) => {
            let result = pipeline.handle(&job).await;
            (Some(job), result)
        }
    };
    tracing::debug!(message_id = %message.message_id, attempt = ?handler.delivery_attempt(), "handled");
    let (fate, reason) = pipeline
        .settle(&message.message_id, job.as_ref(), &result)
        .await;
    match settle(handler, fate).await {
        Ok(true) => {
            tracing::debug!(message_id = %message.message_id, fate = fate.as_str(), "confirmed by the exactly-once subscription");
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(message_id = %message.message_id, fate = fate.as_str(), %error, "not confirmed");
            pipeline
                .metrics
                .ack_failures
                .get_or_create(&FateLabels {
                    fate: fate.as_str(),
                    reason,
                })
                .inc();
        }
    }
}
