//! The HorizontalPodAutoscaler of `deploy/gke/hpa.yaml` on the Pub/Sub backlog, simulated in
//! one-second steps, so the report's burst section shows what that autoscaler does rather than
//! assuming a reaction time.
//!
//! What is modelled, and where it comes from:
//! - The metric: `pubsub.googleapis.com/subscription/num_undelivered_messages`, which Cloud
//!   Monitoring samples every 60 s and which is "not visible for up to 120 seconds" after
//!   sampling (Cloud Monitoring's metrics list, Pub/Sub). The simulation takes the documented
//!   bound: a sample is seen 120 s after it was taken.
//! - The controller (kube-controller-manager's `podautoscaler`): every sync period (15 s) it
//!   proposes ⌈metric / target⌉ replicas for an External AverageValue target, unless the ratio
//!   to the current replicas is within the tolerance (10 %); with a CPU metric too, the larger
//!   proposal wins. The proposal is then stabilised (the lowest over the scale-up window, the
//!   highest over the scale-down window), limited by the scaling policies (the most permissive
//!   policy over its period, counted from the replicas at the period's start) and bounded by
//!   min/max replicas, as `normalizeDesiredReplicasWithBehaviors` does.
//! - The pods: a pod added by a scale-up serves after a new node boots and the pod starts; a
//!   scale-down removes the pods that are not serving yet first, then the newest. Each serving
//!   pod takes `pod_rate` images/s off the backlog (the report's measured pod throughput).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The autoscaler and the cluster around it (`[autoscaling]` of the mix file). The defaults
/// are the HPA that `deploy/gke/hpa.yaml` declares (the deployment contract) and the documented
/// delays around it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Autoscaling {
    /// Target CPU utilisation (0–1): the headroom kept at steady state, and the share of a
    /// pod's throughput its backlog target counts on.
    pub target_cpu_utilization: f64,
    /// Seconds of work a pod's share of the backlog may hold: the per-pod target (AverageValue
    /// of `num_undelivered_messages`) is ⌊pod images/s × utilisation × this⌋.
    pub target_drain_s: f64,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// `behavior.scaleUp.stabilizationWindowSeconds`.
    pub scale_up_stabilization_s: u32,
    /// Scale-up Percent policy: add this % of the replicas per period.
    pub scale_up_percent: u32,
    /// Scale-up Pods policy: add this many pods per period.
    pub scale_up_pods: u32,
    /// Period of both scale-up policies (`selectPolicy: Max`), seconds.
    pub scale_up_period_s: u32,
    /// `behavior.scaleDown.stabilizationWindowSeconds`.
    pub scale_down_stabilization_s: u32,
    /// Scale-down Percent policy: remove this % of the replicas per period.
    pub scale_down_percent: u32,
    /// Period of the scale-down policy, seconds.
    pub scale_down_period_s: u32,
    /// Also scale on CPU (a Resource metric at `target_cpu_utilization`), as hpa.yaml does.
    pub cpu_metric: bool,
    /// The CPU the HPA sees: the serving pods' mean over this many seconds (metrics-server's
    /// resolution plus the kubelet's rate window; an assumption).
    pub cpu_metric_window_s: u32,
    /// HPA sync period (kube-controller-manager `--horizontal-pod-autoscaler-sync-period`).
    pub sync_period_s: u32,
    /// HPA tolerance: no change while metric / target is within 1 ± this.
    pub tolerance: f64,
    /// Cloud Monitoring samples the Pub/Sub metric every this many seconds.
    pub metric_sample_period_s: u32,
    /// A sample becomes visible this many seconds after it was taken (documented: up to 120).
    pub metric_delay_s: u32,
    /// Seconds for a new node to boot before an added pod can start (GKE: 80–120 s when no
    /// node has room; 0 with spare capacity provisioned).
    pub node_startup_s: u32,
    /// Seconds from a pod's scheduling until it serves: image pull and start (the worker
    /// itself is ready in well under a second).
    pub pod_startup_s: u32,
}

impl Default for Autoscaling {
    fn default() -> Self {
        Autoscaling {
            target_cpu_utilization: 0.7,
            target_drain_s: 60.0,
            min_replicas: 1,
            max_replicas: 60,
            scale_up_stabilization_s: 0,
            scale_up_percent: 100,
            scale_up_pods: 4,
            scale_up_period_s: 15,
            scale_down_stabilization_s: 300,
            scale_down_percent: 10,
            scale_down_period_s: 60,
            cpu_metric: true,
            cpu_metric_window_s: 30,
            sync_period_s: 15,
            tolerance: 0.1,
            metric_sample_period_s: 60,
            metric_delay_s: 120,
            node_startup_s: 120,
            pod_startup_s: 10,
        }
    }
}

impl Autoscaling {
    /// Why these settings cannot describe an autoscaler, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let u = self.target_cpu_utilization;
        if !(u > 0.0 && u <= 1.0) {
            return Err("need 0 < target_cpu_utilization ≤ 1".into());
        }
        if !(self.target_drain_s.is_finite() && self.target_drain_s > 0.0) {
            return Err("need target_drain_s > 0".into());
        }
        if self.min_replicas == 0 || self.max_replicas < self.min_replicas {
            return Err("need 1 ≤ min_replicas ≤ max_replicas".into());
        }
        if self.scale_up_percent == 0 && self.scale_up_pods == 0 {
            return Err("scale-up policies allow no change".into());
        }
        if self.scale_down_percent > 100 {
            return Err("need scale_down_percent ≤ 100".into());
        }
        if [
            self.scale_up_period_s,
            self.scale_down_period_s,
            self.sync_period_s,
            self.metric_sample_period_s,
            self.cpu_metric_window_s,
        ]
        .contains(&0)
        {
            return Err("periods and windows must be at least 1 s".into());
        }
        if !(self.tolerance >= 0.0 && self.tolerance < 1.0) {
            return Err("need 0 ≤ tolerance < 1".into());
        }
        Ok(())
    }

    /// The per-pod AverageValue target of `num_undelivered_messages` for pods serving
    /// `pod_rate` images/s, taken as the report prints it (0.1 images/s), so the manifest's
    /// figure can be checked by hand from the report.
    pub fn target_per_pod(&self, pod_rate: f64) -> u64 {
        let printed = (pod_rate * 10.0).round() / 10.0;
        (printed * self.target_cpu_utilization * self.target_drain_s).floor() as u64
    }

    /// Seconds from a scale-up until the added pod serves.
    pub fn pod_ready_after_s(&self) -> u32 {
        self.node_startup_s + self.pod_startup_s
    }
}

/// Traffic: `steady` images/s, and `burst` images/s from t = 0 for `burst_s` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Images/s outside the burst.
    pub steady: f64,
    /// Images/s during the burst.
    pub burst: f64,
    /// Length of the burst, seconds.
    pub burst_s: i64,
}

impl Load {
    /// Images published during second `t`.
    pub fn at(&self, t: i64) -> f64 {
        if (0..self.burst_s).contains(&t) {
            self.burst
        } else {
            self.steady
        }
    }
}

/// One simulated second.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Seconds since the burst began.
    pub t: i64,
    /// Images published during this second.
    pub arrivals: f64,
    /// Images the serving pods finished during this second.
    pub served: f64,
    /// Images queued in Pub/Sub at the end of this second.
    pub backlog: f64,
    /// The backlog value the HPA sees (the latest visible sample).
    pub metric: Option<f64>,
    /// The HPA's recommendation before stabilisation, at a sync during this second.
    pub recommendation: Option<u32>,
    /// The Deployment's replicas after this second's sync.
    pub replicas: u32,
    /// Pods serving during this second.
    pub serving: u32,
}

/// The CPU view of the HPA at a sync.
struct Cpu {
    serving: u32,
    starting: u32,
    mean_utilisation: f64,
}

/// The HPA controller's state for one HorizontalPodAutoscaler.
struct Controller<'a> {
    settings: &'a Autoscaling,
    target: f64,
    replicas: u32,
    /// (time, recommendation before stabilisation), as the controller keeps them.
    recommendations: Vec<(i64, u32)>,
    /// (time, replica change): positive for scale-ups.
    events: Vec<(i64, i64)>,
}

impl Controller<'_> {
    fn within_tolerance(&self, ratio: f64) -> bool {
        (1.0 - ratio).abs() <= self.settings.tolerance
    }

    /// External metric, AverageValue target (`GetExternalPerPodMetricReplicas`).
    fn backlog_proposal(&self, backlog: f64) -> u32 {
        let ratio = backlog / (self.target * self.replicas as f64);
        if self.within_tolerance(ratio) {
            self.replicas
        } else {
            (backlog / self.target).ceil() as u32
        }
    }

    /// Resource metric, CPU utilisation target (`GetResourceReplicas`): pods still starting
    /// have no metrics, and count as using nothing on a scale-up and the target on a
    /// scale-down.
    fn cpu_proposal(&self, cpu: &Cpu) -> Option<u32> {
        if cpu.serving == 0 {
            return None;
        }
        let u = self.settings.target_cpu_utilization;
        let usage = cpu.mean_utilisation * cpu.serving as f64;
        let ratio = usage / (u * cpu.serving as f64);
        if cpu.starting == 0 {
            return Some(if self.within_tolerance(ratio) {
                self.replicas
            } else {
                (ratio * cpu.serving as f64).ceil() as u32
            });
        }
        let pods = (cpu.serving + cpu.starting) as f64;
        let filled = if ratio < 1.0 {
            usage + u * cpu.starting as f64
        } else {
            usage
        };
        let new_ratio = filled / (u * pods);
        if self.within_tolerance(new_ratio)
            || (ratio < 1.0 && new_ratio > 1.0)
            || (ratio > 1.0 && new_ratio < 1.0)
        {
            return Some(self.replicas);
        }
        let proposal = (new_ratio * pods).ceil() as u32;
        let wrong_way = (new_ratio < 1.0 && proposal > self.replicas)
            || (new_ratio > 1.0 && proposal < self.replicas);
        Some(if wrong_way { self.replicas } else { proposal })
    }

    /// Replicas at the start of the policy period ending at `t`.
    fn period_start(&self, t: i64, period_s: u32) -> f64 {
        let changed: i64 = self
            .events
            .iter()
            .filter(|&&(at, _)| at > t - period_s as i64)
            .map(|&(_, change)| change)
            .sum();
        (self.replicas as i64 - changed) as f64
    }

    /// One sync at `t`: the recommendation before stabilisation, if any metric was available.
    fn sync(&mut self, t: i64, backlog: Option<f64>, cpu: Option<Cpu>) -> Option<u32> {
        let s = self.settings;
        let current = self.replicas;
        let backlog = backlog.map(|b| self.backlog_proposal(b));
        let cpu = cpu.and_then(|c| self.cpu_proposal(&c));
        let desired = backlog.into_iter().chain(cpu).max()?;

        let up_cutoff = t - s.scale_up_stabilization_s as i64;
        let down_cutoff = t - s.scale_down_stabilization_s as i64;
        let (mut up, mut down) = (desired, desired);
        for &(at, r) in &self.recommendations {
            if at > up_cutoff {
                up = up.min(r);
            }
            if at > down_cutoff {
                down = down.max(r);
            }
        }
        self.recommendations
            .retain(|&(at, _)| at > up_cutoff.min(down_cutoff));
        self.recommendations.push((t, desired));
        let stabilised = current.max(up).min(down);

        let next = if stabilised > current {
            let start = self.period_start(t, s.scale_up_period_s);
            let by_percent = (start * (1.0 + s.scale_up_percent as f64 / 100.0)).ceil();
            let limit = by_percent.max(start + s.scale_up_pods as f64) as u32;
            stabilised.min(limit.max(current).min(s.max_replicas))
        } else if stabilised < current {
            let start = self.period_start(t, s.scale_down_period_s);
            let limit = (start * (1.0 - s.scale_down_percent as f64 / 100.0)) as u32;
            stabilised.max(limit.min(current).max(s.min_replicas))
        } else {
            current
        };
        if next != current {
            self.events.push((t, next as i64 - current as i64));
            self.replicas = next;
        }
        self.events
            .retain(|&(at, _)| at > t - s.scale_up_period_s.max(s.scale_down_period_s) as i64);
        Some(desired)
    }
}

/// Simulates seconds `from..to` (t = 0 is the start of the burst): `start_pods` pods serve
/// from `from` with an empty backlog, and the HPA has just been created.
pub fn simulate(
    settings: &Autoscaling,
    pod_rate: f64,
    load: &Load,
    start_pods: u32,
    from: i64,
    to: i64,
) -> Vec<Second> {
    let start_pods = start_pods.clamp(settings.min_replicas, settings.max_replicas);
    let mut hpa = Controller {
        settings,
        target: settings.target_per_pod(pod_rate).max(1) as f64,
        replicas: start_pods,
        // A new HPA starts its scale-down window at the current replicas.
        recommendations: vec![(from, start_pods)],
        events: Vec::new(),
    };
    let sample_period = settings.metric_sample_period_s as i64;
    let sync_period = settings.sync_period_s as i64;
    let ready_after = settings.pod_ready_after_s() as i64;
    // When each pod of the Deployment serves (ascending: the newest last).
    let mut serves_from: Vec<i64> = vec![from; start_pods as usize];
    let mut samples: VecDeque<(i64, f64)> = VecDeque::new();
    let mut metric = None;
    let mut utilisation: VecDeque<f64> = VecDeque::new();
    let mut backlog = 0.0;
    let mut seconds = Vec::with_capacity((to - from).max(0) as usize);
    for t in from..to {
        if t.rem_euclid(sample_period) == 0 {
            samples.push_back((t + settings.metric_delay_s as i64, backlog));
        }
        while let Some(&(visible, value)) = samples.front() {
            if visible > t {
                break;
            }
            metric = Some(value);
            samples.pop_front();
        }
        let serving = serves_from.iter().filter(|&&s| s <= t).count() as u32;
        let mut recommendation = None;
        if t.rem_euclid(sync_period) == 0 {
            let cpu = (settings.cpu_metric && !utilisation.is_empty()).then(|| Cpu {
                serving,
                starting: hpa.replicas - serving,
                mean_utilisation: utilisation.iter().sum::<f64>() / utilisation.len() as f64,
            });
            recommendation = hpa.sync(t, metric, cpu);
            let wanted = hpa.replicas as usize;
            if wanted > serves_from.len() {
                serves_from.resize(wanted, t + ready_after);
            } else {
                // Pods not serving yet go first, then the newest.
                serves_from.truncate(wanted);
            }
        }
        let serving = serves_from.iter().filter(|&&s| s <= t).count() as u32;
        let arrivals = load.at(t);
        let capacity = serving as f64 * pod_rate;
        let served = (backlog + arrivals).min(capacity);
        backlog = backlog + arrivals - served;
        if serving > 0 {
            utilisation.push_back(served / capacity);
            if utilisation.len() > settings.cpu_metric_window_s as usize {
                utilisation.pop_front();
            }
        }
        seconds.push(Second {
            t,
            arrivals,
            served,
            backlog,
            metric,
            recommendation,
            replicas: hpa.replicas,
            serving,
        });
    }
    seconds
}

/// Longest wait of an image published in `range` (seconds since the burst) if Pub/Sub
/// delivered in publishing order: the time until the pods had served as many images as had
/// been published by then. Pub/Sub is not FIFO, so an unlucky image may wait longer.
/// `None` if some image in the range is still queued when the simulation ends.
pub fn worst_wait_s(seconds: &[Second], range: std::ops::Range<i64>) -> Option<i64> {
    // A thousandth of an image: far above the rounding of sums of millions of images.
    const EPSILON: f64 = 1e-3;
    let mut published = 0.0;
    let mut served = 0.0;
    let mut cursor = 0;
    let mut worst = 0;
    for (i, s) in seconds.iter().enumerate() {
        published += s.arrivals;
        if !range.contains(&s.t) {
            continue;
        }
        // Served counts up to the end of second `cursor`.
        while cursor < seconds.len() && served + EPSILON < published {
            served += seconds[cursor].served;
            cursor += 1;
        }
        if served + EPSILON < published {
            return None;
        }
        worst = worst.max(cursor as i64 - 1 - i as i64);
    }
    Some(worst)
}

/// What one simulated burst did, in seconds since the burst began.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Outcome {
    /// Fewest pods serving in the `STEADY_S` seconds before the burst.
    pub steady_min_pods: u32,
    /// Most pods serving then.
    pub steady_max_pods: u32,
    /// Largest backlog then, images.
    pub steady_max_backlog: f64,
    /// Longest wait (in publishing order) of an image published then, seconds.
    pub steady_worst_wait_s: Option<i64>,
    /// First sync that raised the replicas after the burst began.
    pub first_scale_up_s: Option<i64>,
    /// When the pods that sync added serve.
    pub first_added_pod_serving_s: Option<i64>,
    /// Largest backlog from the burst until it emptied, images.
    pub peak_backlog: f64,
    /// When it was reached.
    pub peak_backlog_at_s: i64,
    /// Most pods serving for the burst: until the last pod the HPA could have added for it
    /// serves (it sees the backlog up to a sampling period plus the metric delay late).
    pub peak_pods: u32,
    /// When they first served.
    pub peak_pods_at_s: i64,
    /// First second after the burst ended with no backlog left (`None`: not within the
    /// simulation).
    pub backlog_empty_at_s: Option<i64>,
    /// Longest wait (in publishing order) of an image published during the burst, seconds.
    pub burst_worst_wait_s: Option<i64>,
}

/// Seconds before the burst that describe the steady state.
pub const STEADY_S: i64 = 1800;

/// Summarises a simulation of `settings` whose burst lasted `burst_s` seconds.
pub fn outcome(seconds: &[Second], burst_s: i64, settings: &Autoscaling) -> Outcome {
    let steady: Vec<&Second> = seconds
        .iter()
        .filter(|s| (-STEADY_S..0).contains(&s.t))
        .collect();
    let from_burst: Vec<&Second> = seconds.iter().filter(|s| s.t >= 0).collect();
    let start_replicas = steady.last().map_or(0, |s| s.replicas);
    let empty_at = from_burst
        .iter()
        .find(|s| s.t >= burst_s && s.backlog <= 0.0)
        .map(|s| s.t);
    let backlog_end = empty_at.unwrap_or(i64::MAX);
    let pods_end = backlog_end.saturating_add(
        (settings.metric_sample_period_s + settings.metric_delay_s + settings.pod_ready_after_s())
            as i64,
    );
    let peak_backlog = from_burst
        .iter()
        .filter(|s| s.t <= backlog_end)
        .max_by(|a, b| a.backlog.total_cmp(&b.backlog));
    let peak_pods = from_burst
        .iter()
        .filter(|s| s.t <= pods_end)
        .max_by_key(|s| (s.serving, -s.t));
    let first_scale_up_s = from_burst
        .iter()
        .scan(start_replicas, |previous, s| {
            let up = s.replicas > *previous;
            *previous = s.replicas;
            Some((s.t, up))
        })
        .find(|&(_, up)| up)
        .map(|(t, _)| t);
    Outcome {
        steady_min_pods: steady.iter().map(|s| s.serving).min().unwrap_or(0),
        steady_max_pods: steady.iter().map(|s| s.serving).max().unwrap_or(0),
        steady_max_backlog: steady.iter().map(|s| s.backlog).fold(0.0, f64::max),
        steady_worst_wait_s: worst_wait_s(seconds, -STEADY_S..0),
        first_scale_up_s,
        first_added_pod_serving_s: first_scale_up_s
            .map(|t| t + settings.pod_ready_after_s() as i64),
        peak_backlog: peak_backlog.map_or(0.0, |s| s.backlog),
        peak_backlog_at_s: peak_backlog.map_or(0, |s| s.t),
        peak_pods: peak_pods.map_or(0, |s| s.serving),
        peak_pods_at_s: peak_pods.map_or(0, |s| s.t),
        backlog_empty_at_s: empty_at,
        burst_worst_wait_s: worst_wait_s(seconds, 0..burst_s),
    }
}

/// The pods start at `start_pods` with an empty backlog this long before the burst.
pub const WARM_UP_S: i64 = 3600;
/// The simulation runs this long after the burst ends.
pub const AFTER_S: i64 = 1800;
/// Start times tried: the burst begins after warm-ups this far apart, so it meets the
/// steady state at different points of its cycle (the HPA on the backlog alone need not
/// settle).
pub const PHASES: i64 = 30;
/// Seconds between those start times (a multiple of the sampling and sync periods keeps the
/// burst just after a sample: the first sample that sees it comes a full period later).
pub const PHASE_STEP_S: i64 = 60;

/// Smallest and largest of a figure over the start times; `None` where it did not happen
/// within the simulation (for a wait or an emptying time, `None` is the largest).
pub type Range<T> = (Option<T>, Option<T>);

/// A burst met at its worst start time.
#[derive(Debug, Clone)]
pub struct Worst {
    /// The simulation of that start, from `WARM_UP_S` s before the burst.
    pub seconds: Vec<Second>,
    /// Its outcome.
    pub outcome: Outcome,
    /// Peak backlog over all start times, images.
    pub peak_backlog: Range<f64>,
    /// Longest wait of an image published during the burst over all start times, seconds.
    pub burst_worst_wait_s: Range<i64>,
    /// When the backlog emptied over all start times.
    pub backlog_empty_at_s: Range<i64>,
}

/// Widens `range` by `value` (`None`: did not happen, larger than any value).
fn widen<T: PartialOrd + Copy>(range: &mut Range<T>, value: Option<T>, first: bool) {
    let Some(v) = value else {
        range.1 = None;
        if first {
            range.0 = None;
        }
        return;
    };
    if first || range.0.is_none_or(|lo| v < lo) {
        range.0 = Some(v);
    }
    if first || range.1.is_some_and(|hi| v > hi) {
        range.1 = Some(v);
    }
}

/// Runs the burst from `PHASES` start times and keeps the one where an image published during
/// the burst waits longest (what the users of the thumbnails notice).
pub fn worst_start(settings: &Autoscaling, pod_rate: f64, load: &Load, start_pods: u32) -> Worst {
    let end = load.burst_s + AFTER_S;
    let wait_key = |o: &Outcome| o.burst_worst_wait_s.unwrap_or(i64::MAX);
    let mut worst: Option<(Vec<Second>, Outcome)> = None;
    let (mut peak, mut wait, mut empty) = ((None, None), (None, None), (None, None));
    for phase in 0..PHASES {
        let from = -WARM_UP_S - phase * PHASE_STEP_S;
        let mut seconds = simulate(settings, pod_rate, load, start_pods, from, end);
        // Before trimming: waits count from an empty backlog.
        let o = outcome(&seconds, load.burst_s, settings);
        seconds.drain(..(phase * PHASE_STEP_S) as usize);
        let first = phase == 0;
        widen(&mut peak, Some(o.peak_backlog), first);
        widen(&mut wait, o.burst_worst_wait_s, first);
        widen(&mut empty, o.backlog_empty_at_s, first);
        if worst
            .as_ref()
            .is_none_or(|(_, w)| wait_key(&o) > wait_key(w))
        {
            worst = Some((seconds, o));
        }
    }
    let (seconds, outcome) = worst.expect("PHASES > 0");
    Worst {
        seconds,
        outcome,
        peak_backlog: peak,
        burst_worst_wait_s: wait,
        backlog_empty_at_s: empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod of 100 images/s: target 0.5 × 60 × 100 = 3000 messages per pod. The backlog
    /// metric alone, whose delays these tests follow; the CPU metric is tested on its own.
    fn settings() -> Autoscaling {
        Autoscaling {
            target_cpu_utilization: 0.5,
            max_replicas: 8,
            cpu_metric: false,
            ..Autoscaling::default()
        }
    }

    const BURST: Load = Load {
        steady: 100.0,
        burst: 600.0,
        burst_s: 300,
    };

    fn first_change(seconds: &[Second], from: i64) -> Option<i64> {
        let before = seconds.iter().find(|s| s.t == from - 1)?.replicas;
        seconds
            .iter()
            .find(|s| s.t >= from && s.replicas != before)
            .map(|s| s.t)
    }

    #[test]
    fn the_contract_target_is_pod_rate_times_utilisation_times_drain_time() {
        // The report's pod throughput, 18.7 images/s as printed (perf/reports/2vcpu-256-1024):
        // deploy/gke/hpa.yaml's 785; and the 256 px-only report's 163.9 would give 6883.
        assert_eq!(
            Autoscaling::default().target_per_pod(18.665266284729384),
            785
        );
        assert_eq!(
            Autoscaling::default().target_per_pod(163.9067655420632),
            6883
        );
        assert_eq!(settings().target_per_pod(100.0), 3000);
    }

    #[test]
    fn every_image_published_is_served_or_still_queued() {
        for cpu_metric in [false, true] {
            let s = Autoscaling {
                cpu_metric,
                ..settings()
            };
            let seconds = simulate(&s, 100.0, &BURST, 2, -600, 1200);
            let published: f64 = seconds.iter().map(|s| s.arrivals).sum();
            let served: f64 = seconds.iter().map(|s| s.served).sum();
            let left = seconds.last().unwrap().backlog;
            assert!(
                (published - served - left).abs() < 1e-6,
                "{published} published, {served} served, {left} left"
            );
            assert!(seconds.iter().all(|s| s.backlog >= 0.0));
            // Pods never serve more than their throughput.
            assert!(seconds
                .iter()
                .all(|s| s.served <= s.serving as f64 * 100.0 + 1e-9));
        }
    }

    #[test]
    fn no_scale_up_before_the_first_sample_of_the_burst_is_visible() {
        // Two idle pods that keep up before the burst: nothing moves until the sample taken
        // 60 s into the burst becomes visible 120 s later.
        let s = Autoscaling {
            min_replicas: 2,
            ..settings()
        };
        let seconds = simulate(&s, 100.0, &BURST, 2, -600, 900);
        let up = first_change(&seconds, 0).expect("the burst scales up");
        assert_eq!(up, 60 + 120, "first scale-up at {up} s");
        let at = |t: i64| seconds.iter().find(|s| s.t == t).unwrap();
        // 60 s of 400 images/s over capacity: ⌈24000 / 3000⌉ = 8 pods wanted; the policies
        // allow +4 (more than +100 % of 2) per 15 s.
        assert_eq!(at(180).recommendation, Some(8));
        assert_eq!(at(180).replicas, 6);
        // The added pods serve after a node and a pod start-up (130 s), not before.
        assert_eq!(at(180 + 129).serving, 2);
        assert_eq!(at(180 + 130).serving, 6);
    }

    #[test]
    fn replicas_stay_within_bounds_and_policies() {
        let s = settings();
        let heavy = Load {
            burst: 5000.0,
            ..BURST
        };
        // Long enough to drain the backlog and scale down to minReplicas again.
        let seconds = simulate(&s, 100.0, &heavy, 1, -600, 4000);
        assert!(seconds
            .iter()
            .all(|x| (s.min_replicas..=s.max_replicas).contains(&x.replicas)));
        assert_eq!(seconds.iter().map(|x| x.replicas).max(), Some(8));
        assert_eq!(seconds.last().unwrap().replicas, 1);
        for (i, x) in seconds.iter().enumerate() {
            // Any 15 s: at most doubled or +4; any 60 s: at most 10 % (rounded up) fewer.
            let up_start = seconds[i.saturating_sub(14)..=i]
                .iter()
                .map(|y| y.replicas)
                .min()
                .unwrap();
            assert!(x.replicas <= (2 * up_start).max(up_start + 4), "t={}", x.t);
            let window = &seconds[i.saturating_sub(59)..=i];
            let down_start = window.iter().map(|y| y.replicas).max().unwrap();
            let floor = down_start - down_start.div_ceil(10);
            assert!(x.replicas >= floor, "t={}: {} < {floor}", x.t, x.replicas);
        }
    }

    #[test]
    fn no_scale_down_within_the_stabilisation_window_of_a_higher_recommendation() {
        let s = settings();
        let seconds = simulate(&s, 100.0, &BURST, 2, -600, 2400);
        let mut scaled_down = false;
        for (i, x) in seconds.iter().enumerate().skip(1) {
            if x.replicas >= seconds[i - 1].replicas {
                continue;
            }
            scaled_down = true;
            // Every recommendation in the last 300 s was at most the new replica count.
            let highest = seconds
                .iter()
                .filter(|y| y.t > x.t - 300 && y.t <= x.t)
                .filter_map(|y| y.recommendation)
                .max()
                .unwrap();
            assert!(
                highest <= x.replicas,
                "t={}: down to {} with {highest} recommended in the window",
                x.t,
                x.replicas
            );
        }
        assert!(scaled_down, "the burst's pods are removed again");
    }

    #[test]
    fn a_cpu_metric_holds_the_steady_pods_that_the_backlog_alone_does_not() {
        // 150 images/s on pods of 100: two pods at 75 % keep up, so the backlog reads 0
        // and the backlog metric alone asks for minReplicas.
        let steady = Load {
            steady: 150.0,
            burst: 150.0,
            burst_s: 0,
        };
        let alone = simulate(&settings(), 100.0, &steady, 2, -3600, 0);
        let with_cpu = Autoscaling {
            cpu_metric: true,
            target_cpu_utilization: 0.8,
            ..settings()
        };
        let held = simulate(&with_cpu, 100.0, &steady, 2, -3600, 0);
        let last_hour = |s: &[Second]| s.iter().skip(600).map(|x| x.serving).min().unwrap();
        assert_eq!(
            last_hour(&alone),
            1,
            "the backlog metric alone drops to 1 pod"
        );
        assert_eq!(last_hour(&held), 2);
        assert!(held.iter().skip(600).all(|x| x.backlog == 0.0));
    }

    #[test]
    fn ranges_count_never_as_the_largest() {
        let mut r = (None, None);
        for (i, v) in [Some(3), None, Some(1), Some(5)].into_iter().enumerate() {
            widen(&mut r, v, i == 0);
        }
        assert_eq!(r, (Some(1), None));
        let mut r = (None, None);
        for (i, v) in [None, Some(2)].into_iter().enumerate() {
            widen(&mut r, v, i == 0);
        }
        assert_eq!(r, (Some(2), None));
    }

    #[test]
    fn waits_follow_publishing_order() {
        let second = |t, arrivals, served| Second {
            t,
            arrivals,
            served,
            ..Second::default()
        };
        // 10 images at t=0, 5 served per second from t=2: the last waits until t=3.
        let s = vec![
            second(0, 10.0, 0.0),
            second(1, 0.0, 0.0),
            second(2, 0.0, 5.0),
            second(3, 0.0, 5.0),
        ];
        assert_eq!(worst_wait_s(&s, 0..1), Some(3));
        assert_eq!(worst_wait_s(&s[..3], 0..1), None);
        let outcome = outcome(&s, 1, &Autoscaling::default());
        assert_eq!(outcome.burst_worst_wait_s, Some(3));
    }
}
