//! The capacity model, its check against measurement, and pod sizing for a target rate.
//!
//! Model: an image of class *c* costs its class's mean engine time `s_c(t)` on one of the pod's
//! `t` threads, measured with `t` threads busy (so memory-bandwidth and SMT contention are in
//! it). A pod whose threads never idle serves `t / Σ f_c·s_c(t)` images/s for a mix with
//! shares `f_c`. The check predicts each whole-corpus run from the per-class runs alone (the
//! corpus's own mix) and compares with what that run measured. A burst goes through the
//! simulated HPA of [`crate::autoscale`]; cost follows from images/s per vCPU and a price.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use thumbd::resources::Resources;
use thumbd::service::config::{Budget, Tuning};
use thumbd_benches::SizeClass;

use crate::autoscale::{self, Autoscaling, Load, Outcome, Range, Second};
use crate::measure::{ClassKey, Measurements};

/// Allowed gap between predicted and measured throughput (issue 5: within 15 %).
pub const TOLERANCE_PCT: f64 = 15.0;

/// One row of the model check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCheck {
    /// Pool size.
    pub threads: usize,
    /// `t / Σ f_c·s_c(t)` from the class runs.
    pub predicted_images_per_s: f64,
    /// The whole-corpus run's median.
    pub measured_images_per_s: f64,
    /// `(predicted − measured) / measured`, percent.
    pub error_pct: f64,
    /// `|error_pct| <= 15`.
    pub within_tolerance: bool,
}

/// Predicted images/s of a pool of `threads` threads on `mix` (shares summing to 1), and the
/// mean input MP per image of that mix.
pub fn predict(m: &Measurements, mix: &[(ClassKey, f64)], threads: usize) -> Result<(f64, f64)> {
    let mut service_ms = 0.0;
    let mut mp = 0.0;
    for &(key, share) in mix {
        let class = m.class(key, threads).with_context(|| {
            format!(
                "the mix has {} {} images but the corpus has none of that class to measure",
                key.0, key.1
            )
        })?;
        // Beyond the measured thread counts, per-thread cost is taken as at the highest one.
        service_ms += share * class.figures.mean_ms;
        mp += share * class.mean_mp;
    }
    if service_ms <= 0.0 {
        bail!("the mix has no measured cost");
    }
    Ok((threads as f64 * 1000.0 / service_ms, mp))
}

/// Predicts every whole-corpus run from the class runs and compares.
pub fn check(m: &Measurements) -> Result<Vec<ModelCheck>> {
    let mix: Vec<(ClassKey, f64)> = m.corpus_mix.iter().map(|(k, v)| (*k, *v)).collect();
    m.runs
        .iter()
        .map(|run| {
            let (predicted, _) = predict(m, &mix, run.threads)?;
            let measured = run.images_per_s;
            let error_pct = (predicted - measured) / measured * 100.0;
            Ok(ModelCheck {
                threads: run.threads,
                predicted_images_per_s: predicted,
                measured_images_per_s: measured,
                error_pct,
                within_tolerance: error_pct.abs() <= TOLERANCE_PCT,
            })
        })
        .collect()
}

/// `corpus/mix.toml`: the traffic a deployment expects.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Shares per input format and size class (normalised to sum to 1).
    #[serde(rename = "class")]
    pub classes: Vec<MixClass>,
    /// Burst to plan for.
    #[serde(default)]
    pub burst: Burst,
    /// The autoscaler (defaults: the HPA of `deploy/gke/hpa.yaml`).
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Pod shape.
    #[serde(default)]
    pub pod: Pod,
    /// Prices for the cost per million images (none: no cost in the report).
    #[serde(default)]
    pub price: Option<Price>,
}

/// One class of the mix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MixClass {
    /// `jpeg` or `png`.
    pub format: String,
    /// `small`, `mid` or `large`.
    pub size_class: String,
    /// Relative share of the traffic.
    pub share: f64,
}

/// A burst of `factor` × the target rate lasting `seconds`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    /// Multiple of the target rate.
    pub factor: f64,
    /// Duration, seconds.
    pub seconds: f64,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            factor: 3.0,
            seconds: 300.0,
        }
    }
}

/// What a vCPU and a GiB of memory cost per hour (`[price]` of the mix file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// What is priced: product, region, pricing model.
    pub what: String,
    /// Where the prices were read, and when.
    pub source: String,
    /// Per vCPU-hour.
    pub vcpu_hour: f64,
    /// Per GiB-hour of memory.
    pub gib_hour: f64,
    /// Memory billed per vCPU at least (GKE Autopilot's general-purpose Pods round memory up
    /// to 1 GiB per vCPU).
    #[serde(default)]
    pub min_gib_per_vcpu: f64,
}

/// Pod shape to size for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Whole vCPUs per pod (= engine threads).
    pub cpus: usize,
}

impl Default for Pod {
    fn default() -> Self {
        Pod { cpus: 2 }
    }
}

impl Mix {
    /// Reads and validates a mix file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mix: Mix =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if mix.classes.is_empty() {
            bail!("{}: no [[class]] entries", path.display());
        }
        for c in &mix.classes {
            if !matches!(c.format.as_str(), "jpeg" | "png") {
                bail!(
                    "{}: format {:?} is not jpeg or png",
                    path.display(),
                    c.format
                );
            }
            if SizeClass::parse(&c.size_class).is_none() {
                bail!(
                    "{}: size_class {:?} is not small, mid or large",
                    path.display(),
                    c.size_class
                );
            }
            if !(c.share.is_finite() && c.share >= 0.0) {
                bail!("{}: share {} must be ≥ 0", path.display(), c.share);
            }
        }
        if mix.classes.iter().map(|c| c.share).sum::<f64>() <= 0.0 {
            bail!("{}: shares sum to 0", path.display());
        }
        if let Err(e) = mix.autoscaling.check() {
            bail!("{}: [autoscaling]: {e}", path.display());
        }
        if mix.pod.cpus == 0
            || mix.burst.factor < 1.0
            || mix.burst.seconds.is_nan()
            || mix.burst.seconds < 1.0
        {
            bail!(
                "{}: need pod.cpus ≥ 1, burst.factor ≥ 1, burst.seconds ≥ 1",
                path.display()
            );
        }
        if let Some(p) = &mix.price {
            if !(p.vcpu_hour >= 0.0 && p.gib_hour >= 0.0 && p.min_gib_per_vcpu >= 0.0) {
                bail!("{}: [price] values must be ≥ 0", path.display());
            }
        }
        Ok(mix)
    }

    /// Normalised shares keyed like the measurements.
    pub fn shares(&self) -> Vec<(ClassKey, f64)> {
        let total: f64 = self.classes.iter().map(|c| c.share).sum();
        self.classes
            .iter()
            .map(|c| {
                let format = if c.format == "png" { "png" } else { "jpeg" };
                let class = SizeClass::parse(&c.size_class).expect("validated");
                ((format, class), c.share / total)
            })
            .collect()
    }
}

/// Kubernetes resources of one pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodShape {
    /// vCPUs requested (= limit: whole CPUs, no CFS throttling surprises).
    pub cpu_request: usize,
    /// vCPU limit.
    pub cpu_limit: usize,
    /// Memory request, bytes (= limit: Guaranteed QoS, predictable bin packing).
    pub memory_request_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
}

/// `thumbd worker` settings for that pod, and the memory split the worker derives in it
/// (`thumbd::service::config::Budget`, the same code the worker runs at start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// `--threads` (= pod vCPUs).
    pub threads: usize,
    /// `--queue`: one ready image per thread.
    pub queue_bound: usize,
    /// Messages fetched or processed at once (threads + queue).
    pub max_in_flight: usize,
    /// The memory budget the worker derives from the pod's limit (no `--memory-budget`).
    pub memory_budget_bytes: u64,
    /// The floor it keeps for the process without images (idle RSS assumed = the measured
    /// floor of this report).
    pub floor_bytes: u64,
    /// Its engine pool: the engine estimates of the images admitted at once.
    pub engine_pool_bytes: u64,
    /// Its input pool: compressed originals fetched and not yet thumbnailed.
    pub input_pool_bytes: u64,
    /// The largest engine estimate among the mix's classes.
    pub worst_estimate_bytes: u64,
    /// How many of those the engine pool admits at once (≥ threads by construction).
    pub worst_images_at_once: u64,
}

/// What a burst does to the deployment, through the simulated HPA
/// ([`crate::autoscale`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BurstPlan {
    /// Multiple of the target rate.
    pub factor: f64,
    /// Duration, seconds.
    pub seconds: f64,
    /// Images/s before and after the burst (the sizing's target rate).
    pub steady_rate: f64,
    /// Images/s during the burst.
    pub burst_rate: f64,
    /// The autoscaler simulated.
    pub autoscaling: Autoscaling,
    /// Its per-pod AverageValue target of `num_undelivered_messages`.
    pub target_per_pod: u64,
    /// Pods the burst rate needs at the target utilisation.
    pub pods_for_burst_at_target: usize,
    /// Pods that would absorb the burst with no backlog at 100 % CPU (as a `minReplicas`).
    pub pods_without_backlog: usize,
    /// Start times tried (the burst meets the steady state at different points of its
    /// cycle); `outcome` and `timeline` are those of the start where an image published
    /// during the burst waits longest.
    pub start_times: i64,
    /// What the burst did at that start.
    pub outcome: Outcome,
    /// Smallest and largest peak backlog over all start times, images.
    pub peak_backlog_range: Range<f64>,
    /// Shortest and longest wait of an image published during the burst over all start
    /// times, seconds (`None`: longer than the simulation).
    pub burst_worst_wait_range_s: Range<i64>,
    /// Earliest and latest time the backlog emptied over all start times (`None`: not within
    /// the simulation).
    pub backlog_empty_range_s: Range<i64>,
    /// The worst start, sampled for the report's table.
    pub timeline: Vec<TimelineRow>,
    /// The same burst with the autoscaler changed.
    pub variants: Vec<Variant>,
    /// The worst start, every second (for the chart).
    #[serde(skip)]
    pub per_second: Vec<Second>,
}

/// The simulation at one time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineRow {
    /// Seconds since the burst began.
    pub t: i64,
    /// Images published per second.
    pub arrivals_per_s: f64,
    /// The backlog the HPA sees (the latest visible Cloud Monitoring sample).
    pub metric: Option<f64>,
    /// The replicas the HPA's metrics ask for, before stabilisation and policies (at a sync).
    pub recommendation: Option<u32>,
    /// Replicas the HPA has set.
    pub replicas: u32,
    /// Pods serving.
    pub serving: u32,
    /// Images queued in Pub/Sub.
    pub backlog: f64,
}

/// The burst through a changed autoscaler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// What changed.
    pub name: String,
    /// What the burst did at its worst start time.
    pub outcome: Outcome,
}

/// Compute cost per million images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cost {
    /// The prices used.
    pub price: Price,
    /// Images/s one vCPU serves (pod throughput / pod vCPUs).
    pub images_per_s_per_vcpu: f64,
    /// Memory billed per vCPU, GiB (the pod's limit per vCPU, at least the price's minimum).
    pub billed_gib_per_vcpu: f64,
    /// What a vCPU-hour of the pod costs with its memory.
    pub per_vcpu_hour: f64,
    /// Per million images with every vCPU busy.
    pub per_million_busy: f64,
    /// Per million images at the target utilisation.
    pub per_million_at_target: f64,
}

/// The answer to `--target-rate R --mix FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sizing {
    /// Images/s to sustain.
    pub target_rate: f64,
    /// The normalised mix.
    pub mix: Vec<MixClass>,
    /// Mean engine ms per image of the mix at the pod's thread count.
    pub mean_service_ms: f64,
    /// Mean input MP per image of the mix.
    pub mean_input_mp: f64,
    /// Images/s one pod serves with every thread busy.
    pub pod_capacity_images_per_s: f64,
    /// vCPUs fully busy at the target rate.
    pub vcpus_busy: f64,
    /// vCPUs to provision at the target utilisation.
    pub vcpus_needed: f64,
    /// Memory of all steady-state pods, bytes.
    pub memory_needed_bytes: u64,
    /// Measured working set of the mix's largest image, bytes (peak over the floor, 1 thread).
    pub bytes_per_in_flight_image: u64,
    /// Pod resources.
    pub pod: PodShape,
    /// Worker settings.
    pub worker: WorkerSettings,
    /// HPA target utilisation used.
    pub target_cpu_utilization: f64,
    /// Pods at the target rate.
    pub steady_pods: usize,
    /// The burst (simulated again from the mix whenever the report is written).
    #[serde(skip_deserializing)]
    pub burst: BurstPlan,
    /// Compute cost per million images, with the mix's `[price]`.
    #[serde(default, skip_deserializing)]
    pub cost: Option<Cost>,
}

const MIB: u64 = 1024 * 1024;

/// Sizes a deployment for `target_rate` images/s of `mix`.
pub fn size(m: &Measurements, mix: &Mix, target_rate: f64) -> Result<Sizing> {
    if !(target_rate.is_finite() && target_rate > 0.0) {
        bail!("--target-rate must be > 0");
    }
    let shares = mix.shares();
    let t = mix.pod.cpus;
    let (capacity, mean_mp) = predict(m, &shares, t)?;
    let mean_service_ms = t as f64 * 1000.0 / capacity;
    let u = mix.autoscaling.target_cpu_utilization;

    // Memory: the floor plus `t` of the mix's largest images decoding at once, the queued
    // images' compressed bytes, and 25 % headroom for allocator fragmentation.
    let base = m.run(1).map_or(0, |r| r.base_rss_bytes);
    let mut worst_working_set = 0u64;
    let mut worst_estimate = 0u64;
    let mut worst_input = 0u64;
    let mut mean_input_bytes = 0.0;
    for &(key, share) in &shares {
        let one = m.class(key, 1).context("class measured at 1 thread")?;
        worst_working_set = worst_working_set.max(
            one.figures
                .peak_rss_bytes
                .saturating_sub(one.figures.base_rss_bytes),
        );
        worst_estimate = worst_estimate.max(one.max_estimate_bytes);
        worst_input = worst_input.max(one.max_input_bytes);
        mean_input_bytes += share * one.mean_input_bytes;
    }
    let queue_bound = t;
    let queued_bytes = (queue_bound as f64 * mean_input_bytes) as u64;
    let measured = ((base + t as u64 * worst_working_set + queued_bytes) as f64 * 1.25) as u64;
    // The worker admits against the budget it derives from the limit, so the limit must also
    // leave room for `t` of the largest estimates in its engine pool (and their inputs in its
    // input pool), or the pool would run fewer images than threads.
    let mut memory_limit_bytes = measured.div_ceil(64 * MIB) * 64 * MIB;
    let split = loop {
        let tuning = Tuning::derive(
            Resources {
                cpus: t,
                memory_bytes: Some(memory_limit_bytes),
            },
            Some(t),
            Some(queue_bound),
            None,
            None,
        );
        let split = Budget::derive(&tuning, Some(base));
        let fits = split.engine_bytes >= t as u64 * worst_estimate
            && split.input_bytes >= t as u64 * worst_input;
        if fits || memory_limit_bytes >= 1 << 50 {
            break split;
        }
        memory_limit_bytes += 64 * MIB;
    };

    let steady_pods = (target_rate / (capacity * u)).ceil().max(1.0) as usize;
    let vcpus_busy = target_rate * mean_service_ms / 1000.0;

    let burst = burst_plan(capacity, steady_pods, target_rate, mix);
    let cost = mix
        .price
        .as_ref()
        .map(|p| cost(p, capacity, t, memory_limit_bytes, u));

    Ok(Sizing {
        target_rate,
        mix: shares
            .iter()
            .map(|&((format, class), share)| MixClass {
                format: format.into(),
                size_class: class.name().into(),
                share,
            })
            .collect(),
        mean_service_ms,
        mean_input_mp: mean_mp,
        pod_capacity_images_per_s: capacity,
        vcpus_busy,
        vcpus_needed: vcpus_busy / u,
        memory_needed_bytes: steady_pods as u64 * memory_limit_bytes,
        bytes_per_in_flight_image: worst_working_set,
        pod: PodShape {
            cpu_request: t,
            cpu_limit: t,
            memory_request_bytes: memory_limit_bytes,
            memory_limit_bytes,
        },
        worker: WorkerSettings {
            threads: t,
            queue_bound,
            max_in_flight: t + queue_bound,
            memory_budget_bytes: split.memory_budget,
            floor_bytes: split.floor,
            engine_pool_bytes: split.engine_bytes,
            input_pool_bytes: split.input_bytes,
            worst_estimate_bytes: worst_estimate,
            worst_images_at_once: split.engine_bytes / worst_estimate.max(1),
        },
        target_cpu_utilization: u,
        steady_pods,
        burst,
        cost,
    })
}

/// Simulates the mix's burst through its autoscaler, for pods serving `capacity` images/s
/// and `steady_pods` of them serving at the start of the warm-up.
pub fn burst_plan(capacity: f64, steady_pods: usize, target_rate: f64, mix: &Mix) -> BurstPlan {
    let a = &mix.autoscaling;
    let burst_rate = target_rate * mix.burst.factor;
    let load = Load {
        steady: target_rate,
        burst: burst_rate,
        burst_s: mix.burst.seconds.round() as i64,
    };
    let pods_without_backlog = (burst_rate / capacity).ceil() as usize;
    let run = |settings: &Autoscaling| {
        autoscale::worst_start(settings, capacity, &load, steady_pods as u32)
    };
    let worst = run(a);

    let mut changes: Vec<(String, Autoscaling)> = Vec::new();
    let spare = Autoscaling {
        node_startup_s: 0,
        ..a.clone()
    };
    let spare_name = format!(
        "spare node capacity (added pods serve after {} s)",
        a.pod_startup_s
    );
    if a.node_startup_s > 0 {
        changes.push((spare_name.clone(), spare.clone()));
    }
    if a.cpu_metric {
        changes.push((
            "backlog metric alone (no CPU metric)".into(),
            Autoscaling {
                cpu_metric: false,
                ..a.clone()
            },
        ));
    } else {
        let cpu = format!("+ CPU metric at {:.0} %", a.target_cpu_utilization * 100.0);
        changes.push((
            cpu.clone(),
            Autoscaling {
                cpu_metric: true,
                ..a.clone()
            },
        ));
        if a.node_startup_s > 0 {
            changes.push((
                format!("{cpu}, {spare_name}"),
                Autoscaling {
                    cpu_metric: true,
                    ..spare
                },
            ));
        }
    }
    let floor = (pods_without_backlog as u32).min(a.max_replicas);
    if floor > a.min_replicas {
        changes.push((
            format!("minReplicas {floor}"),
            Autoscaling {
                min_replicas: floor,
                ..a.clone()
            },
        ));
    }
    let variants = changes
        .into_iter()
        .map(|(name, settings)| Variant {
            name,
            outcome: run(&settings).outcome,
        })
        .collect();

    BurstPlan {
        factor: mix.burst.factor,
        seconds: mix.burst.seconds,
        steady_rate: target_rate,
        burst_rate,
        autoscaling: a.clone(),
        target_per_pod: a.target_per_pod(capacity),
        pods_for_burst_at_target: (burst_rate / (capacity * a.target_cpu_utilization)).ceil()
            as usize,
        pods_without_backlog,
        start_times: autoscale::PHASES,
        timeline: timeline(&worst.seconds, &worst.outcome, a, load.burst_s),
        outcome: worst.outcome,
        peak_backlog_range: worst.peak_backlog,
        burst_worst_wait_range_s: worst.burst_worst_wait_s,
        backlog_empty_range_s: worst.backlog_empty_at_s,
        variants,
        per_second: worst.seconds,
    }
}

/// The report's table: every 30 s (60 s if that makes over 40 rows) from a minute before
/// the burst until the backlog has emptied and the scale-down window has passed.
fn timeline(seconds: &[Second], o: &Outcome, a: &Autoscaling, burst_s: i64) -> Vec<TimelineRow> {
    let last = seconds.last().map_or(0, |s| s.t);
    let settled = o.backlog_empty_at_s.unwrap_or(last).max(burst_s)
        + a.scale_down_stabilization_s as i64
        + 120;
    let end = settled.min(last);
    let step = if (end + 60) / 30 > 40 { 60 } else { 30 };
    seconds
        .iter()
        .filter(|s| s.t >= -60 && s.t <= end && s.t.rem_euclid(step) == 0)
        .map(|s| TimelineRow {
            t: s.t,
            arrivals_per_s: s.arrivals,
            metric: s.metric,
            recommendation: s.recommendation,
            replicas: s.replicas,
            serving: s.serving,
            backlog: s.backlog,
        })
        .collect()
}

/// Compute cost per million images: a vCPU serves `capacity / cpus` images/s, and a
/// vCPU-hour costs its price plus the memory billed with it.
fn cost(price: &Price, capacity: f64, cpus: usize, memory_limit_bytes: u64, u: f64) -> Cost {
    let per_vcpu = capacity / cpus as f64;
    let gib =
        (memory_limit_bytes as f64 / (1u64 << 30) as f64 / cpus as f64).max(price.min_gib_per_vcpu);
    let per_vcpu_hour = price.vcpu_hour + gib * price.gib_hour;
    let busy = 1e6 / (3600.0 * per_vcpu) * per_vcpu_hour;
    Cost {
        price: price.clone(),
        images_per_s_per_vcpu: per_vcpu,
        billed_gib_per_vcpu: gib,
        per_vcpu_hour,
        per_million_busy: busy,
        per_million_at_target: busy / u,
    }
}

/// Simulates the burst and prices the cost again for a measured sizing (from `report.json`),
/// with the autoscaler, burst and price of `mix`. The mix's classes, pod vCPUs and target
/// utilisation must be the ones the sizing was measured for.
pub fn replan(s: &mut Sizing, mix: &Mix) -> Result<()> {
    let shares = mix.shares();
    let same_mix = shares.len() == s.mix.len()
        && shares
            .iter()
            .zip(&s.mix)
            .all(|(((format, class), share), c)| {
                *format == c.format
                    && class.name() == c.size_class
                    && (share - c.share).abs() < 1e-9
            });
    if !same_mix
        || mix.pod.cpus != s.worker.threads
        || mix.autoscaling.target_cpu_utilization != s.target_cpu_utilization
    {
        bail!(
            "the mix's classes, pod.cpus or target_cpu_utilization differ from the report's \
             sizing: measure again with `thumbd-perf report`"
        );
    }
    s.burst = burst_plan(
        s.pod_capacity_images_per_s,
        s.steady_pods,
        s.target_rate,
        mix,
    );
    s.cost = mix.price.as_ref().map(|p| {
        cost(
            p,
            s.pod_capacity_images_per_s,
            s.pod.cpu_limit,
            s.pod.memory_limit_bytes,
            s.target_cpu_utilization,
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{ClassFigures, Figures};

    fn class(format: &str, size: SizeClass, threads: usize, mean_ms: f64) -> ClassFigures {
        ClassFigures {
            format: format.into(),
            size_class: size.name().into(),
            files: 10,
            mean_mp: 1.0,
            mean_input_bytes: 1e6,
            max_estimate_bytes: 50 << 20,
            max_input_bytes: 4 << 20,
            figures: Figures {
                threads,
                images: 10,
                images_per_s: 0.0,
                input_mp_per_s: 0.0,
                images_per_s_per_core: 0.0,
                input_mp_per_s_per_core: 0.0,
                mean_ms,
                p50_ms: mean_ms,
                p95_ms: mean_ms,
                p99_ms: mean_ms,
                peak_rss_bytes: 108 << 20,
                base_rss_bytes: 8 << 20,
                reps_images_per_s: Vec::new(),
            },
        }
    }

    fn measurements() -> Measurements {
        let mut classes = Vec::new();
        for t in 1..=2 {
            classes.push(class("jpeg", SizeClass::Mid, t, 100.0));
            classes.push(class("png", SizeClass::Small, t, 10.0));
        }
        Measurements {
            runs: Vec::new(),
            classes,
            corpus_mix: [
                (("jpeg", SizeClass::Mid), 0.5),
                (("png", SizeClass::Small), 0.5),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn mix(factor: f64) -> Mix {
        toml::from_str(&format!(
            "[[class]]\nformat = \"jpeg\"\nsize_class = \"mid\"\nshare = 1\n\
             [[class]]\nformat = \"png\"\nsize_class = \"small\"\nshare = 1\n\
             [burst]\nfactor = {factor}\nseconds = 300\n\
             [autoscaling]\ntarget_cpu_utilization = 0.5\n\
             [price]\nwhat = \"test\"\nsource = \"test\"\nvcpu_hour = 0.04\ngib_hour = 0.005\n\
             min_gib_per_vcpu = 1\n"
        ))
        .unwrap()
    }

    #[test]
    fn pool_throughput_is_threads_over_mean_cost() {
        let m = measurements();
        let shares = mix(1.0).shares();
        let (x, mp) = predict(&m, &shares, 2).unwrap();
        assert!((x - 2000.0 / 55.0).abs() < 1e-9);
        assert_eq!(mp, 1.0);
        // Beyond the measured thread counts, per-thread cost stays as at 2 threads.
        let (x4, _) = predict(&m, &shares, 4).unwrap();
        assert!((x4 - 2.0 * x).abs() < 1e-9);
        let missing = [(("png", SizeClass::Large), 1.0)];
        assert!(predict(&m, &missing, 1).is_err());
    }

    #[test]
    fn steady_pods_and_bursts() {
        let m = measurements();
        // Pod: 2 threads, 36.4 images/s; at 50 % utilisation 18.2 per pod.
        let s = size(&m, &mix(2.0), 100.0).unwrap();
        assert_eq!(s.steady_pods, 6);
        assert_eq!(
            s.burst.pods_without_backlog, 6,
            "6 pods at 100 % absorb 200/s"
        );
        assert_eq!(s.bytes_per_in_flight_image, 100 << 20);
        assert_eq!(s.pod.memory_limit_bytes % (64 << 20), 0);
        assert!(s.pod.memory_limit_bytes >= (8 << 20) + 2 * (100 << 20));
        // The budget the worker derives in that pod admits a worst image on every thread.
        assert!(s.worker.worst_images_at_once >= 2, "{:?}", s.worker);
        assert!(s.worker.engine_pool_bytes >= 2 * (50 << 20));
        assert!(s.worker.memory_budget_bytes < s.pod.memory_limit_bytes);

        let s = size(&m, &mix(3.0), 100.0).unwrap();
        let b = &s.burst;
        // ⌊36.4 images/s (36.36 as the report prints it) × 0.5 × 60 s⌋ messages per pod.
        assert_eq!(b.target_per_pod, 1092);
        assert_eq!(b.pods_for_burst_at_target, 17);
        assert_eq!(b.pods_without_backlog, 9);
        assert_eq!(b.burst_rate, 300.0);
        // The CPU metric reacts at the first sync of the burst; the backlog metric alone,
        // at the worst start, only once a sample of the burst is visible.
        let first = b.outcome.first_scale_up_s.unwrap();
        assert!(first <= 30, "first scale-up at {first} s");
        let alone = b
            .variants
            .iter()
            .find(|v| v.name == "backlog metric alone (no CPU metric)")
            .unwrap();
        let first = alone.outcome.first_scale_up_s.unwrap();
        assert!(
            first >= 60 + 120,
            "backlog alone: first scale-up at {first} s"
        );
        assert!(b.outcome.peak_pods <= 60 && b.outcome.peak_backlog > 0.0);
        assert!(alone.outcome.backlog_empty_at_s.unwrap() > 300);
        assert!(b.outcome.peak_backlog < alone.outcome.peak_backlog);
        assert!(!b.timeline.is_empty() && !b.per_second.is_empty());
        // minReplicas at the no-backlog pod count absorbs the burst.
        let floor = b
            .variants
            .iter()
            .find(|v| v.name == "minReplicas 9")
            .unwrap();
        assert!(floor.outcome.peak_backlog < 1.0, "{:?}", floor.outcome);
    }

    #[test]
    fn the_example_mix_states_the_hpa_of_the_manifests() {
        // corpus/mix.toml spells out every [autoscaling] value; they are the defaults, which
        // are the settings of deploy/gke/hpa.yaml.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/mix.toml");
        let mix = Mix::load(&path).unwrap();
        assert_eq!(mix.autoscaling, Autoscaling::default());
        let text = std::fs::read_to_string(&path).unwrap();
        let section = text.split("[autoscaling]").nth(1).unwrap();
        let section = section.split("\n[").next().unwrap();
        let stated: toml::Table = toml::from_str(section).unwrap();
        let all = toml::Table::try_from(Autoscaling::default()).unwrap();
        assert_eq!(stated.len(), all.len(), "every setting is written out");
        assert!(mix.price.is_some());
    }

    #[test]
    fn cost_per_million_images_from_throughput_per_vcpu_and_price() {
        let m = measurements();
        let s = size(&m, &mix(3.0), 100.0).unwrap();
        let c = s.cost.unwrap();
        // 18.2 images/s per vCPU; memory billed at the 1 GiB/vCPU minimum.
        assert!((c.images_per_s_per_vcpu - 1000.0 / 55.0).abs() < 1e-9);
        assert_eq!(c.billed_gib_per_vcpu, 1.0);
        let busy = 1e6 / (3600.0 * 1000.0 / 55.0) * (0.04 + 0.005);
        assert!((c.per_million_busy - busy).abs() < 1e-9);
        assert!((c.per_million_at_target - busy / 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_measured_sizing_is_planned_again_from_its_json() {
        let m = measurements();
        let s = size(&m, &mix(3.0), 100.0).unwrap();
        let mut again: Sizing = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        replan(&mut again, &mix(3.0)).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
        // Another burst changes the plan; another traffic mix needs a new measurement.
        replan(&mut again, &mix(2.0)).unwrap();
        assert_eq!(again.burst.burst_rate, 200.0);
        let mut other = mix(3.0);
        other.classes[0].share = 3.0;
        assert!(replan(&mut again, &other).is_err());
    }
}
