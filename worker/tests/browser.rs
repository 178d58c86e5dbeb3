//! The gallery page of `thumbd serve` in headless Chromium (issue 12), in both modes:
//! - local: `thumbd serve --local DIR`, the embedded watch worker;
//! - on the emulators: fake-gcs-server notifying the Pub/Sub emulator, a `thumbd worker`
//!   publishing its events, and `thumbd serve` in cloud mode subscribed to them, with a token.
//!
//! This file starts the servers; the browser side is `tests/browser/run` (Debian's Chromium
//! driven by playwright-core; it installs both if missing), given the server's URL. Each run
//! saves its screenshot under `<target dir>/browser/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::serve::Serve;
use common::*;

/// One browser run at a time: they share `tests/browser/node_modules` and two cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// Sizes both modes make: the page shows the smallest thumbnail of at least 200 px.
const SIZES: &str = "64,200";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// `<target dir>/browser/NAME`, beside the build (CARGO_TARGET_DIR respected).
fn screenshot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("browser")
        .join(name)
}

/// Runs `tests/browser/run` against `serve`; panics with its output (and the server's log)
/// if the page test fails.
async fn browser_test(serve: &Serve, token: Option<&str>, shot: PathBuf) {
    let mut cmd = Command::new(repo_root().join("tests/browser/run"));
    cmd.env("THUMBD_SERVE_URL", serve.url(""))
        .env("THUMBD_SCREENSHOT", &shot)
        .env_remove("THUMBD_AUTH_TOKEN");
    if let Some(token) = token {
        cmd.env("THUMBD_AUTH_TOKEN", token);
    }
    let output = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        cmd.output().expect("running tests/browser/run")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "tests/browser/run failed ({}):\n{text}\n--- thumbd serve's log:\n{}",
        output.status,
        serve.proc.log_text()
    );
    println!("{text}");
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_in_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(
        &["--local", data.to_str().unwrap(), "--size", SIZES],
        &[],
        dir.path().join("serve.log"),
    )
    .await;
    browser_test(&serve, None, screenshot("gallery.png")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_on_the_emulators_with_a_token() {
    let env = Env::start_with(false, Some("uploads")).await;
    env.gcs.create_bucket("uploads").await;
    env.gcs.create_bucket("thumbnails").await;
    let jobs = env
        .pubsub
        .create_subscription(GCS_TOPIC, "thumbd", None)
        .await;
    let events_topic = env.pubsub.create_topic("thumbd-events").await;
    let events = env
        .pubsub
        .create_subscription("thumbd-events", "thumbd-serve", None)
        .await;
    let _worker = env
        .worker(
            &jobs,
            &[
                "--output-bucket",
                "thumbnails",
                "--events-topic",
                &events_topic,
            ],
        )
        .await;
    let token = "browser-test-token";
    let serve = Serve::start(
        &[
            "--upload-bucket",
            "uploads",
            "--thumbnail-bucket",
            "thumbnails",
            "--events-subscription",
            &events,
            "--size",
            SIZES,
        ],
        &[
            ("PUBSUB_EMULATOR_HOST", env.pubsub.host()),
            ("STORAGE_EMULATOR_HOST", env.gcs.endpoint()),
            ("THUMBD_AUTH_TOKEN", token.to_string()),
        ],
        env.dir.path().join("serve.log"),
    )
    .await;
    browser_test(&serve, Some(token), screenshot("gallery-emulators.png")).await;
}
