//! `thumbd-perf upload`: what `thumbd serve` adds to an upload, measured against the storage
//! write alone on the same machine and the same emulator, and the throughput of concurrent
//! uploads. Starts fake-gcs-server, the Pub/Sub emulator (serve's event source; idle here) and
//! the `thumbd serve` binary itself, all on loopback.
//!
//! The storage write alone is the very call `thumbd serve` makes for an upload
//! (`Bucket::create`: the official client's `write_object` with `ifGenerationMatch=0`), made
//! from this process; the upload is `POST /api/images` with the same bytes. The two alternate,
//! so drift on a noisy machine hits both alike.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use thumbd::app::objects::Gcs;

#[derive(Args)]
pub struct UploadArgs {
    /// The `thumbd` binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/thumbd")]
    thumbd: PathBuf,
    /// fake-gcs-server binary [default: $THUMBD_FAKE_GCS_SERVER, as tests/run sets it up].
    #[arg(long, env = "THUMBD_FAKE_GCS_SERVER")]
    fake_gcs: PathBuf,
    /// The Pub/Sub emulator launcher [default: $THUMBD_PUBSUB_EMULATOR, else under the Cloud
    /// SDK's root].
    #[arg(long, env = "THUMBD_PUBSUB_EMULATOR")]
    pubsub_emulator: Option<PathBuf>,
    /// A JPEG or PNG photo; it is padded after its end (never cut) to each body size.
    #[arg(long)]
    photo: PathBuf,
    /// Body size of the latency comparison, bytes.
    #[arg(long, default_value_t = 5_000_000)]
    body_bytes: usize,
    /// Alternating pairs (storage write, upload) of the latency comparison.
    #[arg(long, default_value_t = 60)]
    pairs: usize,
    /// Concurrent uploaders of the throughput run.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Uploads per uploader in the throughput run.
    #[arg(long, default_value_t = 10)]
    per_uploader: usize,
    /// Body size of the throughput run, bytes.
    #[arg(long, default_value_t = 2_000_000)]
    concurrent_bytes: usize,
    /// Also write the report (markdown) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A child killed (with its process group) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &Path, args: &[&str], envs: &[(&str, String)], log: &Path) -> Result<Guard> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Guard(child))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for(client: &reqwest::Client, url: &str, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "{what} did not answer in 90 s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

fn pubsub_launcher(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let out = Command::new("gcloud")
        .args(["info", "--format=value(installation.sdk_root)"])
        .output()
        .context("gcloud info (set --pubsub-emulator)")?;
    let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Path::new(&root).join("platform/pubsub-emulator/bin/cloud-pubsub-emulator"))
}

/// `data` grown to `size` bytes by padding after its end.
fn body(photo: &[u8], size: usize) -> Bytes {
    let mut data = photo.to_vec();
    if data.len() < size {
        data.resize(size, 0);
    }
    Bytes::from(data)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub fn run(args: UploadArgs) -> Result<()> {
    if args.pairs == 0 || args.concurrency == 0 || args.per_uploader == 0 {
        bail!("--pairs, --concurrency and --per-uploader must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(measure(args))
}

async fn measure(args: UploadArgs) -> Result<()> {
    let photo = std::fs::read(&args.photo).with_context(|| args.photo.display().to_string())?;
    let tmp = tempfile::tempdir()?;
    let client = reqwest::Client::new();

    let gcs_port = free_port()?;
    let gcs_log = tmp.path().join("fake-gcs.log");
    let _gcs = spawn(
        &args.fake_gcs,
        &[
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &gcs_port.to_string(),
            "-backend",
            "memory",
            "-log-level",
            "warn",
        ],
        &[],
        &gcs_log,
    )?;
    let gcs = format!("http://127.0.0.1:{gcs_port}");
    wait_for(
        &client,
        &format!("{gcs}/storage/v1/b"),
        "fake-gcs-server",
        &gcs_log,
    )
    .await?;
    for bucket in ["uploads", "thumbs"] {
        client
            .post(format!("{gcs}/storage/v1/b?project=perf"))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await?
            .error_for_status()?;
    }

    let ps_port = free_port()?;
    let ps_log = tmp.path().join("pubsub.log");
    let _pubsub = spawn(
        &pubsub_launcher(args.pubsub_emulator.clone())?,
        &["--host=127.0.0.1", &format!("--port={ps_port}")],
        &[],
        &ps_log,
    )?;
    let ps = format!("http://127.0.0.1:{ps_port}");
    wait_for(&client, &format!("{ps}/"), "the Pub/Sub emulator", &ps_log).await?;
    client
        .put(format!("{ps}/v1/projects/perf/topics/events"))
        .send()
        .await?
        .error_for_status()?;
    client
        .put(format!("{ps}/v1/projects/perf/subscriptions/serve"))
        .json(&serde_json::json!({ "topic": "projects/perf/topics/events" }))
        .send()
        .await?
        .error_for_status()?;

    let serve_port = free_port()?;
    let serve_log = tmp.path().join("serve.log");
    let limit = args.body_bytes.max(args.concurrent_bytes) + (1 << 20);
    let _serve = spawn(
        &args.thumbd,
        &[
            "serve",
            "--upload-bucket=uploads",
            "--thumbnail-bucket=thumbs",
            "--events-subscription=projects/perf/subscriptions/serve",
            &format!("--listen=127.0.0.1:{serve_port}"),
            &format!("--max-upload-bytes={limit}"),
            &format!("--uploads-per-client={}", args.concurrency),
            "--log-format=json",
        ],
        &[
            ("STORAGE_EMULATOR_HOST", gcs.clone()),
            ("PUBSUB_EMULATOR_HOST", format!("127.0.0.1:{ps_port}")),
            ("RUST_LOG", "warn".into()),
        ],
        &serve_log,
    )?;
    let serve = format!("http://127.0.0.1:{serve_port}");
    wait_for(
        &client,
        &format!("{serve}/readyz"),
        "thumbd serve",
        &serve_log,
    )
    .await?;

    // Latency: storage write alone against the upload, alternating.
    let store = Gcs::connect(Some(&gcs), Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?
        .bucket("uploads");
    let data = body(&photo, args.body_bytes);
    let (mut direct, mut upload) = (Vec::new(), Vec::new());
    // Two warm-up pairs, not counted.
    for i in 0..args.pairs + 2 {
        let t = Instant::now();
        store
            .create(&format!("direct/{i}.jpg"), "image/jpeg", vec![data.clone()])
            .await
            .map_err(|e| anyhow::anyhow!("storage write: {e}"))?;
        let d = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let r = client
            .post(format!("{serve}/api/images?name=perf.jpg"))
            .header("content-type", "image/jpeg")
            .body(data.clone())
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("upload answered {}: {}", r.status(), r.text().await?);
        }
        r.bytes().await?;
        let u = t.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 {
            direct.push(d);
            upload.push(u);
        }
    }
    let diffs = sorted(upload.iter().zip(&direct).map(|(u, d)| u - d).collect());
    let (direct, upload) = (sorted(direct), sorted(upload));

    // Throughput: `concurrency` uploaders, each a fixed number of uploads (a bounded run).
    let data = body(&photo, args.concurrent_bytes);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, serve, data, n) = (
            client.clone(),
            serve.clone(),
            data.clone(),
            args.per_uploader,
        );
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let r = client
                    .post(format!("{serve}/api/images?name=load.jpg"))
                    .header("content-type", "image/jpeg")
                    .body(data.clone())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                r.bytes().await?;
                if status != 202 {
                    bail!("upload answered {status}");
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(times)
        });
    }
    let mut times = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.extend(done??);
    }
    let wall = started.elapsed().as_secs_f64();
    let times = sorted(times);
    let uploads = times.len() as f64;

    let report = format!(
        "# thumbd serve: upload cost\n\n\
         Generated by `thumbd-perf upload --photo {photo} --pairs {pairs} --concurrency {c} \
         --per-uploader {n}` on {cpus} CPU(s); fake-gcs-server, the Pub/Sub emulator (idle) and \
         `thumbd serve` on loopback, sharing those CPUs.\n\n\
         ## {mb:.1} MB upload against the storage write alone ({pairs} alternating pairs)\n\n\
         | | p50 ms | p95 ms |\n|---|---:|---:|\n\
         | storage write alone (`write_object`, ifGenerationMatch=0) | {d50:.1} | {d95:.1} |\n\
         | `POST /api/images` (read, header check, the same write) | {u50:.1} | {u95:.1} |\n\
         | added by serve (paired differences) | **{x50:.1}** | {x95:.1} |\n\n\
         ## {c} concurrent uploaders, {cmb:.1} MB each, {total} uploads\n\n\
         | uploads/s | MB/s | p50 ms | p95 ms | p99 ms |\n|---:|---:|---:|---:|---:|\n\
         | {rate:.1} | {mbs:.1} | {t50:.1} | {t95:.1} | {t99:.1} |\n",
        photo = args.photo.display(),
        pairs = args.pairs,
        c = args.concurrency,
        n = args.per_uploader,
        cpus = std::thread::available_parallelism().map_or(1, |n| n.get()),
        mb = args.body_bytes as f64 / 1e6,
        d50 = percentile(&direct, 0.5),
        d95 = percentile(&direct, 0.95),
        u50 = percentile(&upload, 0.5),
        u95 = percentile(&upload, 0.95),
        x50 = percentile(&diffs, 0.5),
        x95 = percentile(&diffs, 0.95),
        cmb = args.concurrent_bytes as f64 / 1e6,
        total = times.len(),
        rate = uploads / wall,
        mbs = uploads * args.concurrent_bytes as f64 / 1e6 / wall,
        t50 = percentile(&times, 0.5),
        t95 = percentile(&times, 0.95),
        t99 = percentile(&times, 0.99),
    );
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| out.display().to_string())?;
    }
    Ok(())
}
