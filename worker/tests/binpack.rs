//! Bin-packed pods, proven on one machine (issue 11, item 4). The worker is started exactly as
//! the rendered Deployment starts it (`kubectl kustomize deploy/gke`: command, args, env,
//! memory limit), with only the emulator endpoints, the cloud project's resource names and
//! the listen port swapped, in pods made of its own cgroups (`common::cgroup`). Two such pods
//! drain a burst of the largest committed corpus photos while one of them is `kill -9`ed and
//! restarted in the same groups, as the kubelet restarts a container.
//!
//! Asserted: each pod sees its limits, no pod is OOM-killed, each pod's peak memory stays
//! under its limit, every upload gets all its thumbnails (dimensions, metadata) and a ready
//! event, the killed pod's messages are redelivered and finished, nothing is dead-lettered,
//! and the pods exit cleanly on SIGTERM.
//!
//! Reported (`cargo test -p thumbd --test binpack -- --nocapture`, lines starting `binpack:`):
//! drain time and throughput, CPU seconds per image against `thumbd thumbnail --threads 2` on
//! the same files (efficiency, bar ≥ 0.85), upload → ready-event latency, peak memory against
//! the limit (bar ≤ 90 %). The bars are printed PASS/MISS, not asserted: both emulators share
//! the two cores, so CPU seconds are the fair measure and they vary from run to run.
//!
//! Skipped, with a message, where the test cannot make cgroups (not root).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::cgroup::PodCgroup;
use common::deployment::{self, Container};
use common::*;

const DEPLOYMENT: &str = "thumbd-worker";
const CONTAINER: &str = "worker";
const PODS: usize = 2;
/// Each pod's CPU quota. The Deployment's pod shape is 2 vCPU; this machine has 2 cores, so
/// two pods of 1 CPU bin-pack it (and each worker sizes itself to one engine thread).
const POD_CPU_MILLIS: u64 = 1000;
const BURST: usize = 60;
/// "Large": the committed corpus files of at least this many pixels that must decode.
const MIN_PIXELS: u64 = 4_000_000;
/// The Deployment's terminationGracePeriodSeconds (contract), before the kubelet's SIGKILL.
const GRACE: Duration = Duration::from_secs(30);
/// The PATH a container runtime gives a process whose image sets none beyond the default.
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Settings naming cloud resources: the only ones whose project is swapped.
const RESOURCE_SETTINGS: [&str; 4] = [
    "THUMBD_SUBSCRIPTION",
    "THUMBD_SOURCE_BUCKETS",
    "THUMBD_OUTPUT_BUCKET",
    "THUMBD_EVENTS_TOPIC",
];
const DEAD_LETTER_TOPIC: &str = "thumbd-dead-letter";

/// The largest committed corpus files that must become thumbnails, with their bytes.
fn large_photos() -> Vec<(String, Vec<u8>)> {
    let mut large: Vec<_> = thumbd_tests::manifest()
        .into_iter()
        .filter(|e| e.must_decode() && e.pixels().unwrap_or(0) >= MIN_PIXELS)
        .collect();
    large.sort_by_key(|e| std::cmp::Reverse(e.pixels()));
    assert!(large.len() >= 2, "too few large corpus files: {large:?}");
    large
        .into_iter()
        .map(|e| {
            let data = std::fs::read(e.path()).unwrap();
            (e.file, data)
        })
        .collect()
}

/// The Deployment's settings with the resources of its cloud project renamed into the
/// emulators' (`projects/PROJECT_ID/…` → `projects/thumbd-test/…`, `PROJECT_ID-thumbd-uploads`
/// → `thumbd-test-thumbd-uploads`). Any other mention of the project fails the test, so a new
/// setting that reaches the cloud cannot slip through unswapped.
fn swap_resources(container: &Container) -> BTreeMap<String, String> {
    let subscription = container
        .env
        .get("THUMBD_SUBSCRIPTION")
        .expect("the Deployment sets THUMBD_SUBSCRIPTION");
    let project = subscription
        .split('/')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("THUMBD_SUBSCRIPTION `{subscription}` names no project"));
    let mut env = container.env.clone();
    for (key, value) in env.iter_mut() {
        if RESOURCE_SETTINGS.contains(&key.as_str()) {
            *value = value.replace(project, PROJECT);
        } else {
            assert!(
                !value.contains(project),
                "{key}={value} names the cloud project; the test does not know how to swap it"
            );
        }
    }
    for arg in container.command.iter().chain(&container.args) {
        assert!(
            !arg.contains(project) && !arg.contains("projects/"),
            "the container's argument `{arg}` names a cloud resource; the test swaps only env"
        );
    }
    env
}

fn setting<'a>(env: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    env.get(key)
        .unwrap_or_else(|| panic!("the Deployment does not set {key}"))
}

fn last_segment(resource: &str) -> &str {
    resource.rsplit('/').next().unwrap()
}

/// A pod: the worker, its groups, and how often it was started. (Fields drop in order: the
/// worker is killed before its groups are removed.)
struct Pod {
    label: String,
    worker: Worker,
    group: PodCgroup,
    starts: usize,
}

/// Starts the container's process in `group`: the Deployment's command (its binary mapped to
/// this build's `thumbd`) and args, and only `env` (the runtime adds PATH and HOSTNAME).
fn spawn(
    group: &PodCgroup,
    container: &Container,
    env: &BTreeMap<String, String>,
    label: &str,
    log: &Path,
) -> Proc {
    let mut cmd = group.command(Path::new(env!("CARGO_BIN_EXE_thumbd")));
    cmd.args(&container.command[1..])
        .args(&container.args)
        .env_clear()
        .envs(env)
        .env("PATH", CONTAINER_PATH)
        .env("HOSTNAME", label);
    Proc::spawn(label, cmd, log.to_path_buf())
}

impl Pod {
    async fn start(
        label: &str,
        group: PodCgroup,
        container: &Container,
        env: &BTreeMap<String, String>,
        dir: &Path,
    ) -> Pod {
        let port = free_port();
        let mut env = env.clone();
        env.insert("THUMBD_LISTEN".into(), format!("127.0.0.1:{port}"));
        let proc = spawn(
            &group,
            container,
            &env,
            label,
            &dir.join(format!("{label}-0.log")),
        );
        let mut worker = Worker {
            proc,
            metrics_port: port,
        };
        worker.wait_ready().await;
        Pod {
            label: label.into(),
            worker,
            group,
            starts: 1,
        }
    }

    /// `kill -9`, then the same container again in the same groups, port and environment.
    async fn kill_and_restart(
        &mut self,
        container: &Container,
        env: &BTreeMap<String, String>,
        dir: &Path,
    ) {
        self.worker.proc.kill();
        let mut env = env.clone();
        env.insert(
            "THUMBD_LISTEN".into(),
            format!("127.0.0.1:{}", self.worker.metrics_port),
        );
        let log = dir.join(format!("{}-{}.log", self.label, self.starts));
        self.worker.proc = spawn(&self.group, container, &env, &self.label, &log);
        self.starts += 1;
        self.worker.wait_ready().await;
    }

    async fn metric(&self, sample: &str) -> f64 {
        self.worker.metric(sample).await.unwrap_or(0.0)
    }
}

/// What the worker logged about its derived settings (JSON logs): the CPUs and memory limit
/// it found in its cgroup.
fn derived_limits(log: &str) -> Option<(u64, u64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            let f = &v["fields"];
            Some((f["cpus"].as_u64()?, f["memory_limit"].as_u64()?))
        })
}

/// The first THUMBNAILS_READY event's publish time per uploaded object.
fn first_ready(events: &Collector, bucket: &str) -> HashMap<String, SystemTime> {
    let mut first: HashMap<String, SystemTime> = HashMap::new();
    for m in events.snapshot() {
        let attr = |k: &str| m.attributes.get(k).map(String::as_str);
        if attr("eventType") != Some("THUMBNAILS_READY") || attr("bucketId") != Some(bucket) {
            continue;
        }
        let published = SystemTime::try_from(m.publish_time.expect("publish_time"))
            .expect("a representable publish time");
        let entry = first
            .entry(attr("objectId").unwrap_or_default().to_string())
            .or_insert(published);
        *entry = (*entry).min(published);
    }
    first
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mark(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bin_packed_pods_drain_a_burst_of_large_photos_and_lose_nothing_to_a_kill() {
    let rendered = deployment::render(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gke"));
    let container = deployment::container(&rendered, DEPLOYMENT, CONTAINER);
    assert!(
        container.command[0].ends_with("/thumbd"),
        "the Deployment runs {:?}; the test maps only thumbd to this build",
        container.command
    );
    let groups: Result<Vec<PodCgroup>, String> = (0..PODS)
        .map(|i| {
            PodCgroup::create(
                &format!("pod{i}"),
                Some(container.memory_limit),
                Some(POD_CPU_MILLIS),
            )
        })
        .collect();
    let groups = match groups {
        Ok(groups) => groups,
        Err(why) => {
            println!(
                "binpack: SKIPPED, the bin-packed pods test needs to make cgroups (root, with \
                 writable cgroup v2 memory+cpu or v1 memory, cpu, cpuacct): {why}"
            );
            return;
        }
    };
    let batch_group = PodCgroup::create("batch", None, None).expect("a group for the batch");

    // The Deployment's settings, in the emulators' project.
    let env = swap_resources(&container);
    let uploads_bucket = setting(&env, "THUMBD_SOURCE_BUCKETS")
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let thumbs_bucket = setting(&env, "THUMBD_OUTPUT_BUCKET").to_string();
    let prefix = env
        .get("THUMBD_OUTPUT_PREFIX")
        .map_or("thumbs/", String::as_str)
        .to_string();
    let sizes: Vec<u32> = setting(&env, "THUMBD_SIZE")
        .split(',')
        .map(|s| s.trim().parse().expect("THUMBD_SIZE is a list of sizes"))
        .collect();
    assert!(
        sizes.contains(&256) && sizes.iter().any(|&s| s > 256),
        "the burst asks for 256 px and a larger size; the ConfigMap has {sizes:?}"
    );
    assert_eq!(
        env.get("THUMBD_FORMAT").map_or("jpeg", String::as_str),
        "jpeg",
        "the checks read JPEG thumbnails"
    );
    let subscription = last_segment(setting(&env, "THUMBD_SUBSCRIPTION")).to_string();
    let events_topic = last_segment(setting(&env, "THUMBD_EVENTS_TOPIC")).to_string();

    // Emulators; only the uploads bucket notifies (the thumbnails bucket has no notification).
    let emu = Env::start_with(false, Some(uploads_bucket.as_str())).await;
    emu.gcs.create_bucket(&uploads_bucket).await;
    emu.gcs.create_bucket(&thumbs_bucket).await;
    emu.pubsub.create_topic(&events_topic).await;
    emu.pubsub.create_topic(DEAD_LETTER_TOPIC).await;
    // The work subscription as setup.sh makes it (dead letters after 5 deliveries). Its ack
    // deadline does not decide how soon a killed pod's messages come again: the worker's
    // streaming pull asks for its own lease, THUMBD_LEASE_EXTENSION (60 s by default).
    emu.pubsub
        .create_subscription(GCS_TOPIC, &subscription, Some((DEAD_LETTER_TOPIC, 5)))
        .await;
    let events_sub = emu
        .pubsub
        .create_subscription(&events_topic, "binpack-events", None)
        .await;
    let dead_sub = emu
        .pubsub
        .create_subscription(DEAD_LETTER_TOPIC, "binpack-dead-letters", None)
        .await;
    let events = emu.pubsub.collect(&events_sub).await;
    let dead_letters = emu.pubsub.collect(&dead_sub).await;
    let mut pod_env = env.clone();
    pod_env.insert("PUBSUB_EMULATOR_HOST".into(), emu.pubsub.host());
    pod_env.insert("STORAGE_EMULATOR_HOST".into(), emu.gcs.endpoint());

    let files = large_photos();
    let dir = emu.dir.path().to_path_buf();

    // The batch CLI on the same files, with the Deployment's image settings (THUMBD_SIZE,
    // THUMBD_FORMAT, THUMBD_QUALITY, ... apply to `thumbd thumbnail` too), in a group of its
    // own to count its CPU seconds the way the pods' are counted. Run before the pods start.
    let batch_in = dir.join("batch-in");
    let batch_out = dir.join("batch-out");
    std::fs::create_dir_all(&batch_in).unwrap();
    for i in 0..BURST {
        let (name, data) = &files[i % files.len()];
        std::fs::write(batch_in.join(format!("{i:02}-{name}")), data).unwrap();
    }
    let mut batch = batch_group.command(Path::new(env!("CARGO_BIN_EXE_thumbd")));
    batch
        .args(["thumbnail", "--threads", "2", "-o"])
        .arg(&batch_out)
        .arg(&batch_in)
        .env_clear()
        .envs(&env)
        .env("PATH", CONTAINER_PATH);
    let cpu_before = batch_group.cpu_seconds();
    let started = Instant::now();
    let out = batch.output().expect("running thumbd thumbnail");
    let batch_wall = started.elapsed().as_secs_f64();
    let batch_cpu = batch_group.cpu_seconds() - cpu_before;
    assert!(
        out.status.success(),
        "thumbd thumbnail failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let made = walk_files(&batch_out);
    assert_eq!(made, BURST * sizes.len(), "the batch's outputs");
    let n = BURST as f64;
    let batch_per_image = batch_cpu / n;
    println!(
        "binpack: batch `thumbd thumbnail --threads 2`: {batch_wall:.1} s, {:.2} images/s, \
         {batch_cpu:.1} CPU s = {batch_per_image:.3} CPU s/image",
        n / batch_wall
    );

    // The pods.
    let mut pods = Vec::new();
    for (i, group) in groups.into_iter().enumerate() {
        pods.push(Pod::start(&format!("pod{i}"), group, &container, &pod_env, &dir).await);
    }
    for pod in &pods {
        let (cpus, memory) = derived_limits(&pod.worker.proc.log_text())
            .unwrap_or_else(|| panic!("{}: no derived settings logged", pod.label));
        assert_eq!(
            (cpus, memory),
            (POD_CPU_MILLIS.div_ceil(1000), container.memory_limit),
            "{} derives its CPUs and memory limit from its cgroup",
            pod.label
        );
    }

    let bench = Bench {
        gcs: &emu.gcs,
        events: &events,
        container: &container,
        pod_env: &pod_env,
        files: &files,
        uploads_bucket: &uploads_bucket,
        dir: &dir,
        // Plus room for a killed pod's messages: each waits out its lease (the worker's
        // THUMBD_LEASE_EXTENSION, 60 s) before redelivery, and a busy machine may need two.
        drain_timeout: Duration::from_secs_f64(4.0 * batch_wall + 240.0),
    };
    // A clean burst for the figures, then one in which a pod is killed (its lost work and the
    // wait for its messages' redelivery would otherwise be in the figures).
    let clean = bench.burst(&mut pods, "burst-a", false).await;
    clean.report(batch_per_image);
    let killed = bench.burst(&mut pods, "burst-b", true).await;
    killed.report(batch_per_image);
    let kill = killed.kill.as_ref().unwrap();

    // Nothing lost: every upload's thumbnails with the right dimensions and metadata, its
    // ready event (checked by `burst`), no failure and no dead letter; the messages the killed
    // pod held came again.
    let written = Written {
        bucket: &thumbs_bucket,
        prefix: &prefix,
        sizes: &sizes,
    };
    let expected: Vec<Vec<(u32, u32)>> = files
        .iter()
        .map(|(_, data)| expected_dims(data, &sizes))
        .collect();
    for upload in clean.uploads.iter().chain(&killed.uploads) {
        assert_thumbnails(
            &emu.gcs,
            &written,
            &uploads_bucket,
            &upload.name,
            &expected[upload.file],
            upload.generation,
        )
        .await;
    }
    let failed = event_bodies(&events, "THUMBNAIL_FAILED");
    assert!(failed.is_empty(), "failure events: {failed:?}");
    let mut received = kill.received_before;
    for pod in &pods {
        received += pod
            .worker
            .metric_total("thumbd_messages_received_total")
            .await
            .unwrap_or(0.0);
    }
    let uploads = (2 * BURST) as f64;
    assert!(
        received >= uploads + kill.held,
        "the {} messages pod{} held at the kill were not all delivered again: {received} \
         deliveries for {uploads} uploads",
        kill.held,
        kill.pod
    );

    // A clean exit on SIGTERM within the grace period.
    for pod in &mut pods {
        pod.worker.proc.signal("TERM");
        let status = pod.worker.proc.wait_timeout(GRACE).unwrap_or_else(|| {
            panic!(
                "{} did not exit within the grace period:\n{}",
                pod.label,
                pod.worker.proc.log_text()
            )
        });
        assert!(
            status.success(),
            "{} exit {status}:\n{}",
            pod.label,
            pod.worker.proc.log_text()
        );
    }
    let dead = dead_letters.snapshot();
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");

    // The report.
    let limit = container.memory_limit;
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    println!(
        "binpack: Deployment {DEPLOYMENT}/{CONTAINER}: {:?} {:?}, limits cpu {} memory {} \
         ({limit} B), env {:?}",
        container.command,
        container.args,
        container.cpu_limit_text,
        container.memory_limit_text,
        container.env
    );
    println!(
        "binpack: cgroup {}; {PODS} pods of {} CPU and {} each (the Deployment's pod shape is \
         {} vCPU; this machine has {} cores)",
        pods[0].group.version(),
        POD_CPU_MILLIS as f64 / 1000.0,
        container.memory_limit_text,
        container.cpu_limit_text,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "binpack: bursts of {BURST} uploads ({} files x {}: {names:?}), sizes {sizes:?}",
        files.len(),
        BURST.div_ceil(files.len()),
    );
    println!(
        "binpack: burst-b: kill -9 of pod{} at {:.1} s holding {} messages ({} in flight), \
         restarted at once; {received} deliveries in all for {uploads} uploads",
        kill.pod,
        kill.at.as_secs_f64(),
        kill.held,
        kill.in_flight
    );
    for pod in &pods {
        let peak = pod.group.peak_memory();
        let share = peak as f64 / limit as f64;
        println!(
            "binpack: {}: peak {:.1} MiB of {:.0} MiB ({:.1} %, bar <= 90 %: {}), oom_kill {}, \
             limit hits {}, started {} times",
            pod.label,
            peak as f64 / MIB,
            limit as f64 / MIB,
            share * 100.0,
            mark(share <= 0.9),
            pod.group.oom_kills(),
            pod.group.limit_hits(),
            pod.starts
        );
    }
    // Memory: no OOM kill, peak under the limit.
    for pod in &pods {
        assert_eq!(pod.group.oom_kills(), 0, "{} was OOM-killed", pod.label);
        assert!(
            pod.group.peak_memory() < limit,
            "{} reached its memory limit",
            pod.label
        );
    }
}

/// What the bursts share.
struct Bench<'a> {
    gcs: &'a FakeGcs,
    events: &'a Collector,
    container: &'a Container,
    pod_env: &'a BTreeMap<String, String>,
    files: &'a [(String, Vec<u8>)],
    uploads_bucket: &'a str,
    dir: &'a Path,
    /// How long a burst may take: from the batch's time on the same files (a slow build or a
    /// busy machine slows both), plus the wait for a killed pod's messages.
    drain_timeout: Duration,
}

struct Upload {
    name: String,
    /// Index in the files.
    file: usize,
    generation: i64,
    /// When the upload's response came.
    at: SystemTime,
}

struct Kill {
    /// Index of the killed pod.
    pod: usize,
    at: Duration,
    in_flight: f64,
    /// Messages received and not settled: what must come again.
    held: f64,
    received_before: f64,
}

struct Burst {
    tag: String,
    uploads: Vec<Upload>,
    /// Upload → first ready event, seconds, sorted.
    latencies: Vec<f64>,
    /// First upload sent → last first ready event.
    drain: f64,
    /// The pods' CPU seconds from the first upload to the last ready event.
    cpu: f64,
    kill: Option<Kill>,
}

impl Bench<'_> {
    /// Uploads `BURST` large photos at once under `tag/` and waits for every ready event;
    /// with `kill`, `kill -9`s the first pod that holds messages once a quarter of the burst
    /// is done, and restarts it.
    async fn burst(&self, pods: &mut [Pod], tag: &str, kill: bool) -> Burst {
        let cpu_start: Vec<f64> = pods.iter().map(|p| p.group.cpu_seconds()).collect();
        let done_start = self.images_done(pods).await;
        let start = SystemTime::now();
        let clock = Instant::now();
        let uploads: Vec<Upload> = futures::future::join_all((0..BURST).map(|i| {
            let file = i % self.files.len();
            let name = format!("{tag}/{i:02}-{}", self.files[file].0);
            let data = self.files[file].1.clone();
            async move {
                let generation = self.gcs.upload(self.uploads_bucket, &name, data).await;
                Upload {
                    name,
                    file,
                    generation,
                    at: SystemTime::now(),
                }
            }
        }))
        .await;

        let mut killed = None;
        let ready = loop {
            for pod in pods.iter_mut() {
                if let Some(status) = pod.worker.proc.wait_timeout(Duration::ZERO) {
                    panic!(
                        "{} exited during {tag} ({status}, oom_kill {}):\n{}",
                        pod.label,
                        pod.group.oom_kills(),
                        pod.worker.proc.log_text()
                    );
                }
            }
            let ready = first_ready(self.events, self.uploads_bucket);
            if uploads.iter().all(|u| ready.contains_key(&u.name)) {
                break ready;
            }
            // A failed image never gets its ready event: say so now, not at the timeout.
            let failed: Vec<_> = event_bodies(self.events, "THUMBNAIL_FAILED")
                .into_iter()
                .filter(|e| uploads.iter().any(|u| e["name"] == u.name.as_str()))
                .collect();
            assert!(failed.is_empty(), "{tag}: failure events {failed:?}");
            if kill && killed.is_none() {
                let done = self.images_done(pods).await - done_start;
                if done >= (BURST / 4) as f64 {
                    // The first pod holding messages (received, not settled) is killed: which
                    // pod still has work after the first quarter is up to the Pub/Sub
                    // emulator's delivery, and one pod alone was once seen drained by then.
                    for (index, pod) in pods.iter().enumerate() {
                        let worker = &pod.worker;
                        let received = worker
                            .metric_total("thumbd_messages_received_total")
                            .await
                            .unwrap_or(0.0);
                        let settled = worker
                            .metric_total("thumbd_messages_total")
                            .await
                            .unwrap_or(0.0);
                        if received - settled < 1.0 {
                            continue;
                        }
                        let in_flight = worker
                            .metric("thumbd_in_flight_images")
                            .await
                            .unwrap_or(0.0);
                        killed = Some(Kill {
                            pod: index,
                            at: clock.elapsed(),
                            in_flight,
                            held: received - settled,
                            received_before: received,
                        });
                        break;
                    }
                    if let Some(k) = &killed {
                        pods[k.pod]
                            .kill_and_restart(self.container, self.pod_env, self.dir)
                            .await;
                    }
                }
            }
            assert!(
                clock.elapsed() < self.drain_timeout,
                "{tag} did not drain in {:?}: {} of {BURST} ready",
                self.drain_timeout,
                uploads
                    .iter()
                    .filter(|u| ready.contains_key(&u.name))
                    .count()
            );
            // Polled often until the kill: on an idle machine a burst drains in about 4-6 s, and
            // at 500 ms no pod was once seen with work left after the first quarter.
            let pause = if kill && killed.is_none() { 100 } else { 500 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        };
        let cpu = pods
            .iter()
            .zip(&cpu_start)
            .map(|(p, start)| p.group.cpu_seconds() - start)
            .sum();
        let seconds = |later: SystemTime, earlier: SystemTime| {
            later
                .duration_since(earlier)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let last = uploads.iter().map(|u| ready[&u.name]).max().unwrap();
        let mut latencies: Vec<f64> = uploads
            .iter()
            .map(|u| seconds(ready[&u.name], u.at))
            .collect();
        latencies.sort_by(f64::total_cmp);
        if kill {
            let k = killed
                .as_ref()
                .unwrap_or_else(|| panic!("{tag} drained before a pod could be killed"));
            assert!(k.held >= 1.0, "pod{} held no message when killed", k.pod);
        }
        Burst {
            tag: tag.into(),
            uploads,
            latencies,
            drain: seconds(last, start),
            cpu,
            kill: killed,
        }
    }

    /// Images finished by the pods' current processes.
    async fn images_done(&self, pods: &[Pod]) -> f64 {
        let mut done = 0.0;
        for pod in pods {
            done += pod.metric("thumbd_images_total").await;
        }
        done
    }
}

impl Burst {
    fn report(&self, batch_per_image: f64) {
        let n = self.uploads.len() as f64;
        let per_image = self.cpu / n;
        let efficiency = batch_per_image / per_image;
        let bar = if self.kill.is_some() {
            "with the kill's lost work, not judged".to_string()
        } else {
            format!("bar >= 0.85: {}", mark(efficiency >= 0.85))
        };
        let p = |q| percentile(&self.latencies, q);
        println!(
            "binpack: {}: drain {:.1} s, {:.2} images/s wall-clock for the {PODS} pods; \
             {:.1} CPU s = {per_image:.3} CPU s/image; efficiency batch/pods {efficiency:.3} \
             ({bar}); upload -> ready latency p50 {:.1} s, p95 {:.1} s, p99 {:.1} s",
            self.tag,
            self.drain,
            n / self.drain,
            self.cpu,
            p(50.0),
            p(95.0),
            p(99.0)
        );
    }
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn quantities_and_expansion_follow_kubernetes() {
    assert_eq!(deployment::parse_quantity("256Mi"), Some(268_435_456.0));
    assert_eq!(deployment::parse_quantity("1.5Gi"), Some(1_610_612_736.0));
    assert_eq!(deployment::parse_quantity("500m"), Some(0.5));
    assert_eq!(deployment::parse_quantity("2"), Some(2.0));
    assert_eq!(deployment::parse_quantity("128k"), Some(128_000.0));
    assert_eq!(deployment::parse_quantity("1e3"), Some(1000.0));
    assert_eq!(deployment::parse_quantity("12Q"), None);
    let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
    assert_eq!(
        deployment::expand("$(A)/$(B)/$$(A)/$", &env),
        "x/$(B)/$(A)/$"
    );
}

#[test]
fn a_rendered_container_resolves_like_the_kubelet() {
    let rendered = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-h4sh}
data: {A: "1", B: two, SIZE: "256,1024"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
      - name: sidecar
        image: other
      - name: main
        command: ["/usr/local/bin/app"]
        args: ["run", "--size=$(SIZE)"]
        envFrom:
        - configMapRef: {name: settings-h4sh}
        - prefix: P_
          configMapRef: {name: absent, optional: true}
        env:
        - {name: B, value: "b-$(A)"}
        - name: C
          valueFrom:
            configMapKeyRef: {name: settings-h4sh, key: A}
        resources:
          limits: {cpu: 1500m, memory: 256Mi}
"#;
    let c = deployment::container(rendered, "app", "main");
    assert_eq!(c.command, ["/usr/local/bin/app"]);
    assert_eq!(c.args, ["run", "--size=256,1024"]);
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("A", "1"), ("B", "b-1"), ("C", "1"), ("SIZE", "256,1024")]
    );
    assert_eq!((c.memory_limit, c.cpu_limit_millis), (256 << 20, 1500));
}
