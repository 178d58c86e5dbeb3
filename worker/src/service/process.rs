//! One job from fetch to written thumbnails: the part shared by every source.
//!
//! ```text
//! allowed bucket, size, type ─▶ slot ─▶ open (metadata + first 64 KiB) ─▶ reserve input bytes
//!   ─▶ probe (header) ─▶ read the rest ─▶ reserve engine bytes ─▶ crossbeam
//! (a notification states the size: its input bytes are reserved before the open, and the
//!  open and the rest are one request)
//!                                                                                     │
//!          ack ◀─ event ◀─ conditional writes ◀─ oneshot ◀─ rayon: engine ◀───────────┘
//! ```

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use thumbd_engine::{ErrorKind, ImageInfo, Limits, Request, Thumbnail};
use tokio::sync::oneshot;

use super::admission::Admission;
use super::estimate::{estimate, estimate_declined, EstimateParts};
use super::events::{Event, Events, OutputInfo, FAILED, READY};
use super::fate::{decide, Fate, JobError, Outcome, Skip};
use super::message::{Job, Origin};
use super::metrics::Metrics;
use super::shutdown::Shutdown;
use super::store::{Put, SourceRef, Store, StoreError};
use crate::naming::{
    failure_key, is_under_prefix, thumbnail_key, thumbnails_folder, FailureRecord,
};

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
    /// A folder prefix (see [`crate::naming::normalize_prefix`]).
    pub output_prefix: String,
    /// Buckets jobs may name; empty means any.
    pub source_buckets: Vec<String>,
    pub limits: Limits,
    pub cache_control: String,
}

/// Bytes read before the header check: the headers of almost every image fit (a JPEG's frame
/// header follows its EXIF and ICC segments); when they don't, the probe runs on the whole file.
pub const HEAD_BYTES: u64 = 64 << 10;

/// Content types that say "not an image". The format always comes from the bytes, so a
/// missing type, `application/octet-stream` or a wrong `image/*` type are read and probed;
/// anything else (text, video, PDF, JSON...) is refused without reading the object.
pub fn is_non_image_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    !(essence.is_empty()
        || essence.starts_with("image/")
        || essence == "application/octet-stream"
        || essence == "binary/octet-stream")
}

/// Runs header work (probe, estimate) under the same panic guard as the engine: a panic is an
/// `internal` failure of this image (acked with a failure event), never a lost handler.
pub fn guarded<T>(
    stage: &str,
    f: impl FnOnce() -> Result<T, thumbd_engine::Error>,
) -> Result<T, thumbd_engine::Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Err(thumbd_engine::Error::Internal(format!(
            "panic in {stage}: {message}"
        )))
    })
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
        out_bucket == job.bucket && is_under_prefix(&self.settings.output_prefix, &job.name)
    }

    /// The largest original admitted: `--max-input-bytes`, or the input pool when it is
    /// smaller (a reservation is never clamped to the pool and then exceeded).
    pub fn input_cap(&self) -> (u64, &'static str) {
        let pool = self.admission.input_capacity();
        let limit = self.settings.limits.max_input_bytes;
        if pool < limit {
            (
                pool,
                " (this pod's input pool; raise the memory limit or --memory-budget)",
            )
        } else {
            (limit, "")
        }
    }

    fn too_large(&self, size: u64) -> Option<JobError> {
        let (limit, why) = self.input_cap();
        (size > limit).then(|| StoreError::TooLarge { size, limit, why }.into())
    }

    /// The object (at the job's generation) is gone: a notification's object was overwritten
    /// or deleted since (that event has its own message), and so was a plain job's if any
    /// generation exists; otherwise the job named nothing that exists.
    async fn missing(&self, job: &Job) -> Result<Outcome, JobError> {
        let stale = match (job.origin, job.generation) {
            (_, None) => false,
            (Origin::Notification, Some(_)) => true,
            (Origin::Plain, Some(_)) => self.store.exists(&job.bucket, &job.name).await?,
        };
        if stale {
            Ok(Outcome::Skipped(Skip::StaleGeneration))
        } else {
            Err(StoreError::NotFound.into())
        }
    }

    /// Whether a permanent failure of `job` gets a failure record: not for a bucket the worker
    /// does not serve, nor for a name that cannot name objects, nor for its own outputs (each
    /// would write into a place that is not this job's).
    fn records(&self, job: &Job, error: &JobError) -> bool {
        !matches!(
            error,
            JobError::ForbiddenBucket(_) | JobError::InvalidName(_) | JobError::Malformed(_)
        ) && !self.is_output_object(job)
    }

    /// Writes the failure record of `job` beside where its thumbnails would be.
    async fn record_failure(
        &self,
        job: &Job,
        reason: &str,
        error: &JobError,
    ) -> Result<(), StoreError> {
        let bucket = self
            .settings
            .output_bucket
            .as_deref()
            .unwrap_or(&job.bucket);
        let record = FailureRecord {
            source_bucket: job.bucket.clone(),
            source_object: job.name.clone(),
            generation: job.generation,
            reason: reason.to_string(),
            message: error.to_string(),
        };
        let key = failure_key(&self.settings.output_prefix, &job.name);
        self.store.record_failure(bucket, &key, &record).await
    }

    /// Processes one job to its outcome. Returns only after every output is written and the
    /// ready event published, so the caller may ack on `Ok`.
    pub async fn handle(&self, job: &Job) -> Result<Outcome, JobError> {
        let settings = &self.settings;
        if !settings.source_buckets.is_empty() && !settings.source_buckets.contains(&job.bucket) {
            return Err(JobError::ForbiddenBucket(job.bucket.clone()));
        }
        if self.is_output_object(job) {
            return Ok(Outcome::Skipped(Skip::OutputObject));
        }
        // What the notification says is checked before any byte is read.
        if let Some(err) = job.size.and_then(|size| self.too_large(size)) {
            return Err(err);
        }
        if let Some(t) = job.content_type.as_deref().filter(|t| is_non_image_type(t)) {
            return Err(JobError::NotAnImage(t.to_string()));
        }
        // A message still waiting for a slot when SIGTERM arrives is nacked, not started.
        let slot = tokio::select! {
            slot = self.admission.slot() => slot,
            _ = self.shutdown.wait() => return Err(JobError::ShuttingDown),
        };

        // The compressed original counts from before the bulk of its bytes arrives until the
        // engine is done with it. A notification states its size: reserved before the read,
        // which then takes one request for the whole object (`whole`). Otherwise the object's
        // metadata and first bytes come first, and its size (or the cap) is reserved from them.
        let (cap, why) = self.input_cap();
        let reserved_first = match job.size {
            Some(size) => Some(tokio::select! {
                r = self.admission.reserve_input(size) => r,
                _ = self.shutdown.wait() => return Err(JobError::ShuttingDown),
            }),
            None => None,
        };
        // Its size, type and header are checked before the rest is read.
        let t = Instant::now();
        let mut opened = match self
            .store
            .open(
                &job.bucket,
                &job.name,
                job.generation,
                HEAD_BYTES,
                reserved_first.is_some(),
            )
            .await
        {
            Err(StoreError::NotFound) => return self.missing(job).await,
            result => result?,
        };
        // A store that does not state the size (an emulator) is read up to the cap, which is
        // reserved whole; the notification's size is used when there is one.
        let size = opened.size.or(job.size);
        if let Some(err) = size.and_then(|size| self.too_large(size)) {
            return Err(err);
        }
        if let Some(t) = opened
            .content_type
            .as_deref()
            .filter(|t| is_non_image_type(t))
        {
            return Err(JobError::NotAnImage(t.to_string()));
        }
        let needed = size.unwrap_or(cap);
        let input = match reserved_first {
            Some(reserved) if reserved.bytes() >= needed => reserved,
            // The object is larger than its notification said (another generation): the rest
            // of the same read waits until the larger reservation is made.
            smaller => {
                drop(smaller);
                tokio::select! {
                    r = self.admission.reserve_input(needed) => r,
                    _ = self.shutdown.wait() => return Err(JobError::ShuttingDown),
                }
            }
        };
        let mut data = std::mem::take(&mut opened.head);
        let partial = size.is_none_or(|size| (data.len() as u64) < size);
        // Header only: refuses bombs and unsupported files before reading the rest.
        let early = match partial {
            true => match guarded("probe", || thumbd_engine::probe(&data, &settings.limits)) {
                // The header goes on past the first bytes: probe the whole file below.
                Err(e) if e.kind() == ErrorKind::Truncated => None,
                result => Some(result?),
            },
            false => None,
        };
        if partial {
            let limit = size.unwrap_or(cap).min(cap);
            // The whole original in one allocation, of the bytes reserved for it, from the size
            // the open stated or, when the store leaves it out (fake-gcs-server), the
            // notification's. Grown by doubling instead: copies, fresh pages, and up to twice
            // the reservation held at once.
            if let Some(size) = size {
                data.reserve_exact((size.min(limit) as usize).saturating_sub(data.len()));
            }
            match self
                .store
                .read_rest(
                    &job.bucket,
                    &job.name,
                    opened.generation,
                    limit,
                    &mut data,
                    opened.rest.take(),
                )
                .await
            {
                Err(StoreError::NotFound) => return self.missing(job).await,
                Err(StoreError::TooLarge { size, limit, .. }) => {
                    return Err(StoreError::TooLarge { size, limit, why }.into())
                }
                result => result?,
            }
        }
        self.metrics.observe("fetch", t.elapsed());
        let info = match early {
            Some(info) => info,
            None => guarded("probe", || thumbd_engine::probe(&data, &settings.limits))?,
        };
        let estimate = guarded("estimate", || {
            Ok(estimate(&info, &data, self.pool.request()))
        })?;
        let source = SourceRef {
            bucket: job.bucket.clone(),
            name: job.name.clone(),
            generation: opened.generation,
        };
        let thumbs = self.engine(job, &info, data, estimate).await?;
        drop(input);

        let t = Instant::now();
        let bucket = settings
            .output_bucket
            .clone()
            .unwrap_or_else(|| job.bucket.clone());
        let mut outputs = Vec::with_capacity(thumbs.len());
        for thumb in &thumbs {
            let key = thumbnail_key(
                &settings.output_prefix,
                &job.name,
                thumb.size,
                thumb.format.extension(),
            );
            match self
                .store
                .put(&bucket, &key, thumb, &source, &settings.cache_control)
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
                content_type: thumb.format.mime_type().into(),
                bytes: thumb.data.len(),
            });
        }
        self.store
            .finish(
                &bucket,
                &thumbnails_folder(&settings.output_prefix, &job.name),
                &source,
            )
            .await?;
        self.metrics.observe("write", t.elapsed());
        drop(slot);

        let t = Instant::now();
        let count = outputs.len();
        self.events
            .publish(&Event {
                event: READY.into(),
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

impl<S: Store> Pipeline<S> {
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
            // The decode may use what its path was estimated at, even when that is more than
            // the whole pool: such an image holds the whole pool and runs alone (the burst's
            // progressive photos at 1024 px). Only a path the estimate did not foresee, the
            // full-size fallback of a declined reduced decode, is refused and re-reserved.
            let allowance = estimate.decode_bytes;
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
    /// failure. Returns the fate for the source to carry out (ack or nack) and its reason. If
    /// the failure event cannot be published the message is nacked, so the failure is not lost
    /// either.
    pub async fn settle(
        &self,
        message_id: &str,
        job: Option<&Job>,
        result: &Result<Outcome, JobError>,
    ) -> (Fate, &'static str) {
        let decision = decide(result);
        let (bucket, name, generation) = job.map_or(("", "", None), |j| {
            (j.bucket.as_str(), j.name.as_str(), j.generation)
        });
        let mut fate = decision.fate;
        // Why a permanent failure was nacked after all: its report could not be made.
        let mut unreported = decision.reason;
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
                if let Some(job) = job.filter(|j| decision.failure_event && self.records(j, error))
                {
                    if let Err(e) = self.record_failure(job, decision.reason, error).await {
                        tracing::warn!(message_id, error = %e, "failure record not written, nacking");
                        fate = Fate::Nack;
                        unreported = "failure_record";
                    }
                }
                if decision.failure_event && fate == Fate::Ack {
                    let event = Event {
                        event: FAILED.into(),
                        bucket: bucket.to_string(),
                        name: name.to_string(),
                        generation,
                        outputs: Vec::new(),
                        reason: Some(decision.reason.into()),
                        error: Some(error.to_string()),
                    };
                    if let Err(e) = self.events.publish(&event).await {
                        tracing::warn!(message_id, error = %e, "failure event not published, nacking");
                        fate = Fate::Nack;
                        unreported = "event_publish";
                    }
                }
            }
        }
        let reason = unreported;
        self.metrics.settled(fate.as_str(), reason);
        (fate, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_header_work_is_an_internal_failure_of_that_image() {
        let err = guarded::<()>("probe", || panic!("index out of bounds")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(
            err.to_string()
                .contains("panic in probe: index out of bounds"),
            "{err}"
        );
        // Which the fate logic acks with a failure event, instead of a dropped handler.
        let decision = decide(&Err(JobError::Image(err)));
        assert_eq!(
            (decision.fate, decision.reason, decision.failure_event),
            (Fate::Ack, "internal", true)
        );
        assert_eq!(guarded("estimate", || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn obvious_non_images_are_known_by_their_content_type() {
        for image in [
            "image/jpeg",
            "IMAGE/PNG; q=1",
            "application/octet-stream",
            "",
            " ",
        ] {
            assert!(!is_non_image_type(image), "{image}");
        }
        for other in [
            "text/plain",
            "application/pdf",
            "video/mp4",
            "application/json",
        ] {
            assert!(is_non_image_type(other), "{other}");
        }
    }
}
