//! Prometheus metrics, served on `/metrics`. Names are documented in the README (section "The worker").

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FateLabels {
    /// `ack` or `nack`.
    pub fate: &'static str,
    /// Why (see the fates table in the README).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

/// All metrics; cheap to clone (every field is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub received: Counter,
    pub settled: Family<FateLabels, Counter>,
    /// Acks or nacks the server refused (exactly-once subscriptions confirm each one).
    pub ack_failures: Family<FateLabels, Counter>,
    pub images: Counter,
    pub in_flight_images: Gauge,
    pub in_flight_bytes: Gauge,
    pub queue_depth: Gauge,
    pub admission_budget_bytes: Gauge,
    pub stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
}

fn stage_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// The worker's metrics, and whatever `more` registers beside them on the same `/metrics`
    /// (`thumbd serve` adds its own).
    pub fn with(more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("thumbd");
        more(&mut registry);
        let received = Counter::default();
        let settled = Family::<FateLabels, Counter>::default();
        let ack_failures = Family::<FateLabels, Counter>::default();
        let images = Counter::default();
        let in_flight_images = Gauge::default();
        let in_flight_bytes = Gauge::default();
        let queue_depth = Gauge::default();
        let admission_budget_bytes = Gauge::default();
        let stage_seconds =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                stage_histogram,
            );
        registry.register(
            "messages_received",
            "Messages received from the source",
            received.clone(),
        );
        registry.register(
            "messages",
            "Messages settled, by fate (ack/nack) and reason",
            settled.clone(),
        );
        registry.register(
            "ack_failures",
            "Acks or nacks not confirmed by an exactly-once subscription (the message will be \
             redelivered), by fate and the reason the message was settled with",
            ack_failures.clone(),
        );
        registry.register(
            "images",
            "Source images whose thumbnails were all written (rate() gives images/s)",
            images.clone(),
        );
        registry.register(
            "in_flight_images",
            "Messages holding an in-flight slot (fetching, queued, decoding or writing)",
            in_flight_images.clone(),
        );
        registry.register(
            "in_flight_bytes",
            "Bytes of the admission budget currently reserved by admitted decodes",
            in_flight_bytes.clone(),
        );
        registry.register(
            "queue_depth",
            "Images waiting in the engine's channel",
            queue_depth.clone(),
        );
        registry.register(
            "admission_budget_bytes",
            "The admission budget for decodes, derived from the memory limit",
            admission_budget_bytes.clone(),
        );
        registry.register(
            "stage_seconds",
            "Latency per stage: fetch, queue (wait for admission and a thread), engine, write, event",
            stage_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            received,
            settled,
            ack_failures,
            images,
            in_flight_images,
            in_flight_bytes,
            queue_depth,
            admission_budget_bytes,
            stage_seconds,
        }
    }

    pub fn observe(&self, stage: &'static str, elapsed: Duration) {
        self.stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(elapsed.as_secs_f64());
    }

    pub fn settled(&self, fate: &'static str, reason: &'static str) {
        self.settled
            .get_or_create(&FateLabels { fate, reason })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// The OpenMetrics text exposition of any registry (the worker's or `thumbd notify`'s).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_documented_metrics() {
        let m = Metrics::new();
        m.received.inc();
        m.settled("ack", "done");
        m.observe("engine", Duration::from_millis(5));
        let text = m.encode();
        for name in [
            "thumbd_messages_received_total 1",
            "thumbd_messages_total{fate=\"ack\",reason=\"done\"} 1",
            "thumbd_images_total",
            "thumbd_in_flight_images",
            "thumbd_in_flight_bytes",
            "thumbd_queue_depth",
            "thumbd_admission_budget_bytes",
            "thumbd_stage_seconds_count{stage=\"engine\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
