//! `thumbd worker` end to end against the real emulators (see `common` for how they are found
//! and started). Each test owns its emulators, buckets and subscriptions, so tests are
//! independent and may run in parallel.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use thumbd_engine::{Limits, Request};

/// The sizes every test worker is started with (see `Env::worker`).
const SIZES: [u32; 2] = [64, 200];
const LONG: Duration = Duration::from_secs(120);

/// Every thumbnail of `bucket/name` (in the same bucket, the worker's default): see
/// [`common::assert_thumbnails`].
async fn assert_thumbnails(
    gcs: &FakeGcs,
    bucket: &str,
    name: &str,
    original: &[u8],
    generation: i64,
) {
    let expected = expected_dims(original, &SIZES);
    let written = Written {
        bucket,
        prefix: "thumbs/",
        sizes: &SIZES,
    };
    common::assert_thumbnails(gcs, &written, bucket, name, &expected, generation).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_become_thumbnails_and_duplicates_stale_corrupt_and_own_outputs_are_harmless() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    let events_topic = env.pubsub.create_topic("thumb-events").await;
    let events_sub = env
        .pubsub
        .create_subscription("thumb-events", "events", None)
        .await;
    let events = env.pubsub.collect(&events_sub).await;
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker", None)
        .await;
    let worker = env.worker(&sub, &["--events-topic", &events_topic]).await;

    // 1. Corpus uploads → every thumbnail, right dimensions and metadata.
    let files = [
        "plasma_Grey_screenshot_400x250.jpg",
        "pil_hopper_orientation_6.jpg",
        "go_video-001.progressive.jpeg",
        "go_video-001.cmyk.jpeg",
        "pil_pil123rgba.png",
        "go_pngsuite_basn3p08-trns.png",
        "xplanet_earth.jpg",
    ];
    let mut generations = HashMap::new();
    for file in files {
        let name = format!("in/{file}");
        let generation = env.gcs.upload("photos", &name, corpus(file)).await;
        generations.insert(name, generation);
    }
    let n = files.len() as f64;
    worker.wait_settled("ack", "done", n, LONG).await;
    for file in files {
        let name = format!("in/{file}");
        assert_thumbnails(&env.gcs, "photos", &name, &corpus(file), generations[&name]).await;
    }
    // Each thumbnail write notified the worker too, and was ignored (no thumbnail loop).
    let own = n * SIZES.len() as f64;
    worker
        .wait_settled("ack", "ignored_output_object", own, LONG)
        .await;

    // 2. An object under the output prefix is ignored, whoever wrote it.
    env.gcs
        .upload("photos", "thumbs/manual.jpg", corpus(files[0]))
        .await;
    worker
        .wait_settled("ack", "ignored_output_object", own + 1.0, LONG)
        .await;
    assert!(env.gcs.list("photos", "thumbs/thumbs/").await.is_empty());

    // 3. A corrupt image and a non-image → acked, with failure events naming the reason.
    let corrupt = corpus("pil_broken.png");
    let engine_error = thumbd_engine::thumbnail(&corrupt, &Request::default(), &Limits::default())
        .expect_err("the engine refuses pil_broken.png");
    env.gcs.upload("photos", "in/corrupt.png", corrupt).await;
    env.gcs
        .upload("photos", "in/notes.txt", b"not an image at all".to_vec())
        .await;
    let ev = &events;
    let failed = eventually(LONG, "two failure events", || async move {
        let failed = event_bodies(ev, "THUMBNAIL_FAILED");
        (failed.len() >= 2).then_some(failed)
    })
    .await;
    let reason_of = |name: &str| {
        failed
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no failure event for {name}: {failed:?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason_of("in/corrupt.png"), engine_error.kind().as_str());
    assert_eq!(reason_of("in/notes.txt"), "unsupported");
    worker
        .wait_settled("ack", engine_error.kind().as_str(), 1.0, LONG)
        .await;
    // No thumbnail, and the failure recorded where readers find it after any restart.
    assert_eq!(
        env.gcs.list("photos", "thumbs/in/corrupt.png/").await,
        ["thumbs/in/corrupt.png/failed.json"]
    );
    let record: serde_json::Value = serde_json::from_slice(
        &env.gcs
            .download("photos", "thumbs/in/corrupt.png/failed.json")
            .await,
    )
    .unwrap();
    assert_eq!(record["reason"], engine_error.kind().as_str(), "{record}");
    assert_eq!(record["source_object"], "in/corrupt.png", "{record}");

    // Ready events list every output with its dimensions.
    let ready = event_bodies(&events, "THUMBNAILS_READY");
    assert_eq!(ready.len(), files.len(), "{ready:?}");
    let earth = ready
        .iter()
        .find(|e| e["name"] == "in/xplanet_earth.jpg")
        .unwrap();
    let outputs = earth["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[1]["name"], "thumbs/in/xplanet_earth.jpg/200.jpg");
    assert_eq!(
        (outputs[1]["width"].as_u64(), outputs[1]["height"].as_u64()),
        (Some(200), Some(100))
    );

    // 4. The same notification twice → both acked, still one set of outputs.
    let dup = "in/plasma_Grey_screenshot_400x250.jpg";
    let done_before = worker.settled("ack", "done").await;
    for _ in 0..2 {
        env.pubsub
            .publish(
                GCS_TOPIC,
                finalize_notification("photos", dup, generations[dup]),
                Vec::new(),
            )
            .await;
    }
    worker
        .wait_settled("ack", "done", done_before + 2.0, LONG)
        .await;
    assert_thumbnails(&env.gcs, "photos", dup, &corpus(files[0]), generations[dup]).await;

    // 5. A stale notification (older generation) after a newer one → newer thumbnails kept.
    let name = "in/replaced.jpg";
    let old = env
        .gcs
        .upload("photos", name, corpus("xplanet_earth.jpg"))
        .await;
    let done_before = worker.settled("ack", "done").await;
    worker
        .wait_settled("ack", "done", done_before + 1.0, LONG)
        .await;
    let newer_bytes = corpus("pil_hopper_orientation_6.jpg");
    let new = env.gcs.upload("photos", name, newer_bytes.clone()).await;
    assert!(new > old);
    let gcs = &env.gcs;
    eventually(LONG, "thumbnails of the new generation", || async move {
        let o = gcs
            .object("photos", "thumbs/in/replaced.jpg/64.jpg")
            .await?;
        let recorded = o["metadata"]["thumbd-source-generation"].as_str()?;
        (recorded.parse::<i64>().ok()? == new).then_some(())
    })
    .await;
    worker
        .wait_settled("ack", "done", done_before + 2.0, LONG)
        .await;
    let stale_before =
        worker.settled("ack", "superseded").await + worker.settled("ack", "stale_generation").await;
    env.pubsub
        .publish(
            GCS_TOPIC,
            finalize_notification("photos", name, old),
            Vec::new(),
        )
        .await;
    let w = &worker;
    eventually(LONG, "the stale notification to be acked", || async move {
        let now = w.settled("ack", "superseded").await + w.settled("ack", "stale_generation").await;
        (now > stale_before).then_some(())
    })
    .await;
    assert_thumbnails(&env.gcs, "photos", name, &newer_bytes, new).await;

    // 6. The same on a versioned bucket, where the old generation is still readable: the
    //    thumbnails' recorded source generation makes the conditional writes refuse it.
    env.gcs.create_bucket_with("archive", true).await;
    let old = env
        .gcs
        .upload("archive", name, corpus("xplanet_earth.jpg"))
        .await;
    let new = env.gcs.upload("archive", name, newer_bytes.clone()).await;
    let gcs = &env.gcs;
    eventually(
        LONG,
        "thumbnails of the new generation (versioned)",
        || async move {
            let o = gcs
                .object("archive", "thumbs/in/replaced.jpg/200.jpg")
                .await?;
            let recorded = o["metadata"]["thumbd-source-generation"].as_str()?;
            (recorded.parse::<i64>().ok()? == new).then_some(())
        },
    )
    .await;
    let superseded_before = worker.settled("ack", "superseded").await;
    env.pubsub
        .publish(
            GCS_TOPIC,
            finalize_notification("archive", name, old),
            Vec::new(),
        )
        .await;
    worker
        .wait_settled("ack", "superseded", superseded_before + 1.0, LONG)
        .await;
    assert_thumbnails(&env.gcs, "archive", name, &newer_bytes, new).await;

    // Nothing was ever nacked on this healthy path.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", worker.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("fate=\"nack\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_nacks_then_completes_when_storage_returns() {
    let mut env = Env::start_with(true, None).await;
    env.gcs.create_bucket("photos").await;
    let files = ["go_video-001.jpeg", "pil_pil123p.png", "imdoc_wizard.jpg"];
    let mut generations = Vec::new();
    for file in files {
        generations.push(env.gcs.upload("photos", file, corpus(file)).await);
    }
    // Storage goes down before the worker starts. fake-gcs-server publishes its notifications
    // asynchronously (a kill may lose the last ones), so the test publishes them itself.
    env.gcs.stop();
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker-outage", None)
        .await;
    for (file, generation) in files.iter().zip(&generations) {
        env.pubsub
            .publish(
                GCS_TOPIC,
                finalize_notification("photos", file, *generation),
                Vec::new(),
            )
            .await;
    }
    let worker = env.worker(&sub, &[]).await;
    worker
        .wait_settled("nack", "storage_unavailable", 2.0, LONG)
        .await;
    assert_eq!(worker.settled("ack", "done").await, 0.0);

    env.gcs.resume().await;
    worker
        .wait_settled("ack", "done", files.len() as f64, LONG)
        .await;
    for (file, generation) in files.iter().zip(generations) {
        assert_thumbnails(&env.gcs, "photos", file, &corpus(file), generation).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_every_time_ends_in_the_dead_letter_topic() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    env.pubsub.create_topic("dead-letters").await;
    let dead_sub = env
        .pubsub
        .create_subscription("dead-letters", "dead", None)
        .await;
    let dead = env.pubsub.collect(&dead_sub).await;
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker", Some(("dead-letters", 5)))
        .await;
    // The output bucket does not exist: every write fails with a (transient) storage error,
    // so the message is nacked on every delivery until Pub/Sub gives up on it.
    let worker = env
        .worker(&sub, &["--output-bucket", "no-such-bucket"])
        .await;
    env.gcs
        .upload("photos", "poison.jpg", corpus("go_video-001.jpeg"))
        .await;
    let d = &dead;
    let message = eventually(
        LONG,
        "the message in the dead-letter topic",
        || async move {
            d.snapshot()
                .into_iter()
                .find(|m| m.attributes.get("objectId").map(String::as_str) == Some("poison.jpg"))
        },
    )
    .await;
    assert_eq!(message.attributes["eventType"], "OBJECT_FINALIZE");
    assert!(worker.settled("nack", "storage_unavailable").await >= 5.0);
    assert_eq!(worker.settled("ack", "done").await, 0.0);
}

/// Large corpus photos, under several names: enough work to be mid-burst when interrupted.
const BURST: [&str; 4] = [
    "plasma_PastelHills_3200x2000.jpg",
    "lomiri16_Wine_by_Jakkub_Mede.jpg",
    "plasma_FlyingKonqui_2560x1600.png",
    "xplanet_earth.jpg",
];

async fn upload_burst(gcs: &FakeGcs, copies: usize) -> Vec<(String, &'static str, i64)> {
    let mut uploaded = Vec::new();
    for i in 0..copies {
        for file in BURST {
            let name = format!("burst/{i}/{file}");
            let generation = gcs.upload("photos", &name, corpus(file)).await;
            uploaded.push((name, file, generation));
        }
    }
    uploaded
}

async fn assert_all_done(gcs: &FakeGcs, uploaded: &[(String, &'static str, i64)]) {
    for (name, file, generation) in uploaded {
        eventually(LONG, &format!("thumbnails of {name}"), || async move {
            (gcs.list("photos", &format!("thumbs/{name}/")).await.len() == SIZES.len())
                .then_some(())
        })
        .await;
        assert_thumbnails(gcs, "photos", name, &corpus(file), *generation).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_exits_in_time_and_loses_nothing() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker", None)
        .await;
    let mut worker = env
        .worker(&sub, &["--shutdown-timeout", "8", "--log-format", "json"])
        .await;
    let uploaded = upload_burst(&env.gcs, 10).await;
    worker.wait_settled("ack", "done", 1.0, LONG).await;
    let done = worker.settled("ack", "done").await;
    eprintln!("SIGTERM after {done} of {} images", uploaded.len());

    worker.proc.signal("TERM");
    let started = Instant::now();
    let status = worker
        .proc
        .wait_timeout(Duration::from_secs(8 + 10))
        .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", worker.proc.log_text()));
    assert!(
        status.success(),
        "exit {status}:\n{}",
        worker.proc.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(8 + 7));
    // The drain settled exactly what was in flight at the signal: the log's "draining" line
    // names the messages still being handled, every one of them is settled after the signal
    // (images being made are finished and acked, messages still waiting for a slot are
    // nacked, some of those as soon as the signal arrives, just before the line), and no
    // other message is settled during the drain.
    let log = worker.proc.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let position = |what: &str| {
        lines
            .iter()
            .position(|v| message(v) == what)
            .unwrap_or_else(|| panic!("no {what:?} logged:\n{log}"))
    };
    let (signal, drain) = (position("shutdown requested"), position("draining"));
    let in_flight: BTreeSet<String> = lines[drain]["fields"]["in_flight_ids"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines[drain]["fields"]["in_flight"].as_u64(),
        Some(in_flight.len() as u64),
        "the drain's count and its ids disagree:\n{log}"
    );
    let settlements = |from: usize| -> Vec<(String, String)> {
        lines[from..]
            .iter()
            .filter(|v| {
                let m = message(v);
                m == "settled"
                    || m.starts_with("permanent failure")
                    || m.starts_with("transient failure")
            })
            .map(|v| {
                let field = |k: &str| v["fields"][k].as_str().unwrap_or("").to_string();
                (field("message_id"), field("fate"))
            })
            .collect()
    };
    let since_signal: BTreeSet<String> =
        settlements(signal).into_iter().map(|(id, _)| id).collect();
    let during_drain = settlements(drain);
    let finished_after = during_drain
        .iter()
        .filter(|(_, fate)| fate == "ack")
        .count();
    assert!(
        !in_flight.is_empty() && finished_after > 0,
        "nothing was in flight at SIGTERM ({} in flight, {finished_after} finished after): the \
         burst is too small to test the drain",
        in_flight.len()
    );
    assert!(
        !log.contains("shutdown timeout reached"),
        "the drain timed out:\n{log}"
    );
    let unsettled: Vec<&String> = in_flight.difference(&since_signal).collect();
    assert!(
        unsettled.is_empty(),
        "in flight at the drain but never settled: {unsettled:?}\n{log}"
    );
    let strays: Vec<&String> = during_drain
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !in_flight.contains(*id))
        .collect();
    assert!(
        strays.is_empty(),
        "settled during the drain but not named in flight: {strays:?}\n{log}"
    );
    let _second = env.worker(&sub, &[]).await;
    assert_all_done(&env.gcs, &uploaded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_restarted_loses_nothing() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker", None)
        .await;
    let mut worker = env.worker(&sub, &[]).await;
    let uploaded = upload_burst(&env.gcs, 2).await;
    worker.wait_settled("ack", "done", 1.0, LONG).await;
    worker.proc.kill(); // SIGKILL: no drain, no nacks; leases simply expire.

    let _second = env.worker(&sub, &[]).await;
    assert_all_done(&env.gcs, &uploaded).await;
}
