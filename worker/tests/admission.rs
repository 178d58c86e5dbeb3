//! Unsized jobs under a pod-sized memory limit (issue 15, item 2). Plain JSON jobs carry no
//! size, and fake-gcs-server's downloads state none either, so nothing tells the worker how big
//! an original is before its bytes arrive: it must reserve the whole input cap for each, not
//! download first and reserve after. Twelve 12 MiB originals (a real photo padded after its EOI,
//! which decoders ignore) are published at once to a worker in a 256 MiB pod; all of them must
//! become thumbnails, with no OOM kill and the pod's peak memory under its limit. Before the
//! fix the pod's six slots fetched up to six such originals at once, outside any budget.
//!
//! Skipped, with a message, where the test cannot make cgroups (not root).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cgroup::PodCgroup;
use common::*;
use serde_json::json;

const LIMIT: u64 = 256 << 20;
/// Under the pod's input pool (about 17 MiB of a 256 MiB pod), over what six slots may hold.
const ORIGINAL: usize = 12 << 20;
const JOBS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsized_jobs_of_large_originals_stay_within_a_pod_limit() {
    let pod = match PodCgroup::create("admission", Some(LIMIT), Some(2000)) {
        Ok(pod) => pod,
        Err(reason) => {
            println!("admission: SKIPPED, the test needs to make cgroups: {reason}");
            return;
        }
    };
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    env.gcs.create_bucket("thumbnails").await;
    env.pubsub.create_topic("jobs").await;
    let sub = env.pubsub.create_subscription("jobs", "worker", None).await;
    let mut original = corpus("lomiri16_Wine_by_Jakkub_Mede.jpg");
    original.resize(ORIGINAL, 0);
    for i in 0..JOBS {
        env.gcs
            .upload("photos", &format!("big/{i}.jpg"), original.clone())
            .await;
    }

    let port = free_port();
    let mut cmd = pod.command(std::path::Path::new(env!("CARGO_BIN_EXE_thumbd")));
    cmd.args(["worker", "--subscription", &sub])
        .args(["--output-bucket", "thumbnails", "--source-bucket", "photos"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--size", "256", "--log-format", "json"])
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("PUBSUB_EMULATOR_HOST", env.pubsub.host())
        .env("STORAGE_EMULATOR_HOST", env.gcs.endpoint())
        .env_remove("THUMBD_SIZE");
    let mut worker = Worker {
        proc: Proc::spawn("thumbd worker", cmd, env.dir.path().join("worker.log")),
        metrics_port: port,
    };
    worker.wait_ready().await;
    let log = worker.proc.log_text();
    assert!(
        log.contains(&format!("\"memory_limit\":{LIMIT}")),
        "the worker does not see its pod's limit:\n{log}"
    );
    for i in 0..JOBS {
        env.pubsub
            .publish(
                "jobs",
                HashMap::new(),
                json!({"bucket": "photos", "name": format!("big/{i}.jpg")})
                    .to_string()
                    .into_bytes(),
            )
            .await;
    }
    worker
        .wait_settled("ack", "done", JOBS as f64, Duration::from_secs(600))
        .await;
    let peak = pod.peak_memory();
    println!(
        "admission: {JOBS} unsized jobs of {} MiB: peak {} MiB of a {} MiB limit ({:.0} %), {} OOM kills",
        ORIGINAL >> 20,
        peak >> 20,
        LIMIT >> 20,
        peak as f64 * 100.0 / LIMIT as f64,
        pod.oom_kills()
    );
    assert_eq!(
        pod.oom_kills(),
        0,
        "OOM-killed:\n{}",
        worker.proc.log_text()
    );
    assert!(peak < LIMIT, "peak {peak} over the limit");
    for i in 0..JOBS {
        assert_eq!(
            env.gcs
                .list("thumbnails", &format!("thumbs/big/{i}.jpg/"))
                .await
                .len(),
            1
        );
    }
    worker.proc.signal("TERM");
    assert!(worker.proc.wait_timeout(Duration::from_secs(30)).is_some());
}
