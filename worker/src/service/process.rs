//! One job from fetch to written thumbnails: the part shared by every source.
//!
//! ```text
//! slot ─▶ reserve input bytes ─▶ fetch ─▶ probe (header) ─▶ reserve engine bytes ─▶ crossbeam
//!                                                                                     │
//!          ack ◀─ event ◀─ conditional writes ◀─ oneshot ◀─ rayon: engine ◀───────────┘
//! ```

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use thumbd_engine::{ImageInfo, Limits, Request, Thumbnail};
use tokio::sync::oneshot;

use super::admission::Admission;
use super::estimate::{estimate, estimate_declined, EstimateParts};
use super::events::{Event, Events, OutputInfo, FAILED, READY};
use super::fate::{decide, Fate, JobError, Outcome, Skip};
use super::message::Job;
use super::metrics::Metrics;
use super::shutdown::Shutdown;
use super::store::{output_key, Put, SourceRef, Store, StoreError};

type EngineResult = Result<Vec<Thumbnail>, thumbd_engine::Error>;

struct Task {
    data: Arc<Vec<u8>>,
    /// The decode's allowance, `Limits::max_decode_bytes`.
    allowance: u64,
    reply: oneshot::Sender<EngineResult>,
}

/// The engine's rayon pool, fed by a bounded crossbeam channel. CPU work never runs on the
/// tokio threads, and the channel's bound keeps queued originals (and their memory) finite.
#[derive(Clone)]
pub struct EnginePool {
    tx: Sender<Task>,
    request: Arc<Request>,
    metrics: Metrics,
    /// Kept for clarity: the threads live as long as their loops, i.e. the senders.
    _pool: Arc<rayon::ThreadPool>,
}

impl EnginePool {
    pub fn start(
        threads: usize,
        queue: usize,
        request: Request,
        limits: Limits,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("thumbd-engine-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (tx, rx) = crossbeam_channel::bounded::<Task>(queue);
        let request = Arc::new(request);
        // One long-lived loop per thread: the pool ends when every sender is dropped.
        for _ in 0..threads {
            let rx = rx.clone();
            let request = request.clone();
            let metrics = metrics.clone();
            pool.spawn(move || {
                while let Ok(task) = rx.recv() {
                    metrics.queue_depth.dec();
                    let limits = Limits {
                        max_decode_bytes: task.allowance,
                        ..limits
                    };
                    let result = thumbd_engine::thumbnail(&task.data, &request, &limits);
                    drop(task.data);
                    let _ = task.reply.send(result);
                }
            });
        }
        Ok(EnginePool {
            tx,
            request,
            metrics,
            _pool: Arc::new(pool),
        })
    }

    /// The request every image is thumbnailed with.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Runs the engine on `data`, its decode within `allowance` bytes, and waits for the result
    /// without blocking tokio.
    pub async fn run(&self, data: Arc<Vec<u8>>, allowance: u64) -> Result<EngineResult, JobError> {
        let (reply, result) = oneshot::channel();
        self.metrics.queue_depth.inc();
        let task = Task {
            data,
            allowance,
            reply,
        };
        match self.tx.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(task)) => {
                // Admission slots keep the queue under its bound; this is only a fallback.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(task))
                    .await
                    .map_err(|_| JobError::ShuttingDown)?
                    .map_err(|_| JobError::ShuttingDown)?;
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                return Err(JobError::ShuttingDown);
            }
        }
        result.await.map_err(|_| JobError::ShuttingDown)
    }
}

/// Settings of the pipeline that do not change per message.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: write next to the source, in its bucket.
    pub output_bucket: Option<String>,
    pub output_prefix: String,
    pub limits: Limits,
    pub cache_control: String,
}

/// Everything a job needs; shared by all in-flight jobs.
pub struct Pipeline<S> {
    pub store: S,
    pub settings: Settings,
    pub pool: EnginePool,
    pub admission: Admission,
    pub events: Events,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
}

impl<S: Store> Pipeline<S> {
    /// Objects under the output prefix in the output bucket are our own thumbnails: processing
    /// them would loop forever (each thumbnail's notification making more thumbnails).
    pub fn is_output_object(&self, job: &Job) -> bool {
        let out_bucket = self
            .settings
            .output_bucket
            .as_deref()
            .unwrap_or(&job.bucket);
        out_bucket == job.bucket && job.name.starts_with(&self.settings.output_prefix)
    }

    /// Processes one job to its outcome. Returns only after every output is written and the
    /// ready event published, so the caller may ack on `Ok`.
    pub async fn handle(&self, job: &Job) -> Result<Outcome, JobError> {
        if self.is_output_object(job) {
            return Ok(Outcome::Skipped(Skip::OutputObject));
        }
        let cap = self.settings.limits.max_input_bytes;
        if let Some(size) = job.size.filter(|&s| s > cap) {
            return Err(StoreError::TooLarge { size, limit: cap }.into());
        }
        // A message still waiting for a slot when SIGTERM arrives is nacked, not started.
        let slot = tokio::select! {
            slot = self.admission.slot() => slot,
            _ = self.shutdown.wait() => return Err(JobError::ShuttingDown),
        };

        // The compressed original counts from before its fetch until the engine is done with
        // it. Its size comes from the notification; a job without one reserves after fetching.
        let mut input = match job.size {
            Some(size) => Some(tokio::select! {
                r = self.admission.reserve_input(size) => r,
                _ = self.shutdown.wait() => return Err(JobError::ShuttingDown),
            }),
            None => None,
        };

        let t = Instant::now();
        let fetched = match self
            .store
            .fetch(&job.bucket, &job.name, job.generation, cap)
            .await
        {
            // The generation named by the notification is gone: the object was overwritten
            // or deleted since, and that later event has (or will have) its own message.
            Err(StoreError::NotFound) if job.generation.is_some() => {
                return Ok(Outcome::Skipped(Skip::StaleGeneration))
            }
            result => result?,
        };
        self.metrics.observe("fetch", t.elapsed());
        let len = fetched.data.len() as u64;
        if input.as_ref().is_none_or(|r| r.bytes() < len) {
            // Release before reserving again: never hold one input reservation while waiting
            // for another.
            drop(input.take());
            input = Some(self.admission.reserve_input(len).await);
        }

        // Header only: refuses oversized images before any decode and sizes the reservation.
        let info = thumbd_engine::probe(&fetched.data, &self.settings.limits)?;
        let estimate = estimate(&info, &fetched.data, self.pool.request());
        let source = SourceRef {
            bucket: job.bucket.clone(),
            name: job.name.clone(),
            generation: fetched.generation,
        };
        let thumbs = self.engine(job, &info, fetched.data, estimate).await?;
        drop(input);

        let t = Instant::now();
        let bucket = self
            .settings
            .output_bucket
            .clone()
            .unwrap_or_else(|| job.bucket.clone());
        let mut outputs = Vec::with_capacity(thumbs.len());
        for thumb in &thumbs {
            let key = output_key(&self.settings.output_prefix, &job.name, thumb);
            match self
                .store
                .put(&bucket, &key, thumb, &source, &self.settings.cache_control)
                .await?
            {
                Put::Written => {}
                Put::Superseded => return Ok(Outcome::Skipped(Skip::Superseded)),
            }
            outputs.push(OutputInfo {
                bucket: bucket.clone(),
                name: key,
                size: thumb.size,
                width: thumb.width,
                height: thumb.height,
                content_type: thumb.format.mime_type(),
                bytes: thumb.data.len(),
            });
        }
        self.metrics.observe("write", t.elapsed());
        drop(slot);

        let t = Instant::now();
        let count = outputs.len();
        self.events
            .publish(&Event {
                event: READY,
                bucket: job.bucket.clone(),
                name: job.name.clone(),
                generation: Some(source.generation),
                outputs,
                reason: None,
                error: None,
            })
            .await
            .map_err(JobError::Event)?;
        self.metrics.observe("event", t.elapsed());
        self.metrics.images.inc();
        Ok(Outcome::Done { outputs: count })
    }
}

impl<S> Pipeline<S> {
    /// Runs the engine on `data` within an engine reservation of `estimate`, the decode within
    /// the estimate's bound for it. A JPEG whose reduced decode is declined at decode time
    /// (damage inside its scans, which the header check cannot see) needs a full-size decode
    /// instead; the engine refuses it (`OverBudget`) before allocating, the reservation grows
    /// to that path's estimate (waiting for the pool) and the engine runs again. A decode that
    /// needs more than the whole engine pool fails as too large for this pod.
    async fn engine(
        &self,
        job: &Job,
        info: &ImageInfo,
        data: Vec<u8>,
        mut estimate: EstimateParts,
    ) -> Result<Vec<Thumbnail>, JobError> {
        let data = Arc::new(data);
        let mut declined = false;
        loop {
            let t = Instant::now();
            let reservation = self.admission.reserve_engine(estimate.engine_bytes).await;
            let queued = t.elapsed();
            let t = Instant::now();
            let allowance = estimate.decode_bytes.min(reservation.bytes());
            let result = self.pool.run(data.clone(), allowance).await?;
            // Engine time includes the wait for a free thread; split the admission wait out.
            self.metrics.observe("queue", queued);
            self.metrics.observe("engine", t.elapsed());
            match result {
                Err(thumbd_engine::Error::OverBudget { needed, allowed }) if !declined => {
                    let pool = self.admission.engine_pool_bytes();
                    if needed > pool {
                        return Err(JobError::TooLargeForPod { needed, pool });
                    }
                    drop(reservation);
                    estimate = estimate_declined(info, &data, self.pool.request());
                    declined = true;
                    tracing::info!(
                        bucket = job.bucket,
                        object = job.name,
                        needed,
                        allowed,
                        reserve = estimate.engine_bytes,
                        "decode declined at reduced scale: growing the engine reservation for \
                         a full-size decode"
                    );
                }
                result => return result.map_err(JobError::from),
            }
        }
    }

    /// Applies [`decide`]: logs, counts, and publishes the failure event of a permanent
    /// failure. Returns the fate for the source to carry out (ack or nack). If the failure
    /// event cannot be published the message is nacked, so the failure is not lost either.
    pub async fn settle(
        &self,
        message_id: &str,
        job: Option<&Job>,
        result: &Result<Outcome, JobError>,
    ) -> Fate {
        let decision = decide(result);
        let (bucket, name, generation) = job.map_or(("", "", None), |j| {
            (j.bucket.as_str(), j.name.as_str(), j.generation)
        });
        let mut fate = decision.fate;
        match result {
            Ok(outcome) => tracing::info!(
                message_id,
                bucket,
                object = name,
                generation,
                ?outcome,
                fate = fate.as_str(),
                "settled"
            ),
            Err(error) if error.is_transient() => tracing::warn!(
                message_id,
                bucket,
                object = name,
                generation,
                reason = decision.reason,
                %error,
                "transient failure, nacking for redelivery"
            ),
            Err(error) => {
                tracing::warn!(
                    message_id,
                    bucket,
                    object = name,
                    generation,
                    reason = decision.reason,
                    %error,
                    "permanent failure, acking"
                );
                if decision.failure_event {
                    let event = Event {
                        event: FAILED,
                        bucket: bucket.to_string(),
                        name: name.to_string(),
                        generation,
                        outputs: Vec::new(),
                        reason: Some(decision.reason),
                        error: Some(error.to_string()),
                    };
                    if let Err(e) = self.events.publish(&event).await {
                        tracing::warn!(message_id, error = %e, "failure event not published, nacking");
                        fate = Fate::Nack;
                    }
                }
            }
        }
        let reason = if fate == decision.fate {
            decision.reason
        } else {
            "event_publish"
        };
        self.metrics.settled(fate.as_str(), reason);
        fate
    }
}
