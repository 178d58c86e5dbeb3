//! The worker-hardening fixes against the real emulators: thumbnails of two buckets never
//! share a key silently, jobs are confined to the source buckets, misspelt jobs and non-images
//! get failure events, prefixes compare as folders, originals larger than the input pool are
//! refused before they are read, and exactly-once subscriptions get confirmed acks.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use google_cloud_pubsub::client::SubscriptionAdmin;
use google_cloud_pubsub::model::Subscription;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(120);

async fn wait_events(events: &Collector, kind: &str, n: usize) -> Vec<Value> {
    eventually(LONG, &format!("{n} {kind} events"), || async move {
        let found = event_bodies(events, kind);
        (found.len() >= n).then_some(found)
    })
    .await
}

fn reason_of<'a>(failed: &'a [Value], bucket: &str, name: &str) -> &'a str {
    failed
        .iter()
        .find(|e| e["bucket"] == bucket && e["name"] == name)
        .unwrap_or_else(|| panic!("no failure event for {bucket}/{name}: {failed:?}"))["reason"]
        .as_str()
        .unwrap()
}

/// A plain JSON job on `topic`.
async fn job(env: &Env, topic: &str, body: Value) {
    env.pubsub
        .publish(topic, HashMap::new(), body.to_string().into_bytes())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_objects_of_two_buckets_never_overwrite_each_other() {
    let env = Env::start().await;
    for bucket in ["eu-photos", "us-photos", "thumbnails"] {
        env.gcs.create_bucket(bucket).await;
    }
    let events_topic = env.pubsub.create_topic("events").await;
    let events_sub = env
        .pubsub
        .create_subscription("events", "events", None)
        .await;
    let events = env.pubsub.collect(&events_sub).await;
    let sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "worker", None)
        .await;
    // Two different photos under one name in two buckets, thumbnails to one shared bucket.
    env.gcs
        .upload(
            "us-photos",
            "cat.jpg",
            corpus("pil_hopper_orientation_6.jpg"),
        )
        .await;
    env.gcs
        .upload(
            "eu-photos",
            "cat.jpg",
            corpus("plasma_Grey_screenshot_400x250.jpg"),
        )
        .await;
    let worker = env
        .worker(
            &sub,
            &[
                "--output-bucket",
                "thumbnails",
                "--events-topic",
                &events_topic,
            ],
        )
        .await;

    // Whichever is processed first gets the thumbnails; the other is a conflict, reported,
    // never a silent overwrite nor a silent "superseded".
    let ready = wait_events(&events, "THUMBNAILS_READY", 1).await;
    let failed = wait_events(&events, "THUMBNAIL_FAILED", 1).await;
    worker
        .wait_settled("ack", "output_conflict", 1.0, LONG)
        .await;
    assert_eq!(ready.len(), 1, "{ready:?}");
    let winner = ready[0]["bucket"].as_str().unwrap();
    let loser = if winner == "eu-photos" {
        "us-photos"
    } else {
        "eu-photos"
    };
    assert_eq!(reason_of(&failed, loser, "cat.jpg"), "output_conflict");
    for size in [64, 200] {
        let object = env
            .gcs
            .object("thumbnails", &format!("thumbs/cat.jpg/{size}.jpg"))
            .await
            .expect("the winner's thumbnail");
        assert_eq!(object["metadata"]["thumbd-source-bucket"], winner);
    }
    assert_eq!(worker.settled("ack", "superseded").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_confined_checked_and_refused_before_reading() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    env.gcs.create_bucket("secret-bucket").await;
    let events_topic = env.pubsub.create_topic("events").await;
    let events_sub = env
        .pubsub
        .create_subscription("events", "events", None)
        .await;
    let events = env.pubsub.collect(&events_sub).await;
    env.pubsub.create_topic("jobs").await;
    let sub = env.pubsub.create_subscription("jobs", "worker", None).await;

    let cat = corpus("plasma_Grey_screenshot_400x250.jpg");
    let cat_generation = env.gcs.upload("photos", "cat.jpg", cat.clone()).await;
    env.gcs.upload("photos", "thumbsup.jpg", cat.clone()).await;
    env.gcs
        .upload("secret-bucket", "cat.jpg", cat.clone())
        .await;
    // A valid JPEG padded past the input pool (trailing bytes after EOI are ignored).
    let mut big = cat.clone();
    big.resize(10 << 20, 0);
    env.gcs.upload("photos", "big.jpg", big).await;

    // Budget 64 MiB, floor 32 MiB: slack 8, input pool 6 MiB, engine pool 18 MiB.
    let worker = env
        .worker(
            &sub,
            &[
                "--source-bucket",
                "photos",
                "--output-prefix",
                "thumbs",
                "--events-topic",
                &events_topic,
                "--memory-budget",
                &(64u64 << 20).to_string(),
                "--memory-floor",
                &(32u64 << 20).to_string(),
            ],
        )
        .await;

    job(
        &env,
        "jobs",
        json!({"bucket": "secret-bucket", "name": "cat.jpg"}),
    )
    .await;
    job(
        &env,
        "jobs",
        json!({"bucket": "photos", "name": "misspelt.jpg", "generation": 123}),
    )
    .await;
    job(
        &env,
        "jobs",
        json!({"bucket": "photos", "name": "cat.jpg", "generation": cat_generation - 1}),
    )
    .await;
    job(&env, "jobs", json!({"bucket": "../etc", "name": "passwd"})).await;
    job(
        &env,
        "jobs",
        json!({"bucket": "photos", "name": "thumbsup.jpg"}),
    )
    .await;
    job(&env, "jobs", json!({"bucket": "photos", "name": "big.jpg"})).await;
    // A notification of a PDF that no longer exists: refused by its type, never read.
    let mut pdf = finalize_notification("photos", "doc.pdf", 42);
    pdf.insert("payloadFormat".into(), "JSON_API_V1".into());
    env.pubsub
        .publish(
            "jobs",
            pdf,
            json!({"name": "doc.pdf", "bucket": "photos", "size": "1000", "contentType": "application/pdf"})
                .to_string()
                .into_bytes(),
        )
        .await;

    let failed = wait_events(&events, "THUMBNAIL_FAILED", 5).await;
    assert_eq!(
        reason_of(&failed, "secret-bucket", "cat.jpg"),
        "forbidden_bucket"
    );
    assert_eq!(reason_of(&failed, "photos", "misspelt.jpg"), "not_found");
    assert_eq!(reason_of(&failed, "photos", "doc.pdf"), "unsupported");
    assert_eq!(reason_of(&failed, "photos", "big.jpg"), "input_too_large");
    let big_error = failed.iter().find(|e| e["name"] == "big.jpg").unwrap()["error"]
        .as_str()
        .unwrap();
    assert!(big_error.contains("input pool"), "{big_error}");
    worker.wait_settled("ack", "malformed", 1.0, LONG).await;
    worker
        .wait_settled("ack", "stale_generation", 1.0, LONG)
        .await;

    // `thumbs` is a folder: thumbsup.jpg is an upload like any other.
    let ready = wait_events(&events, "THUMBNAILS_READY", 1).await;
    assert_eq!(ready[0]["name"], "thumbsup.jpg");
    assert_eq!(
        env.gcs.list("photos", "thumbs/thumbsup.jpg/").await.len(),
        2
    );
    // Nothing was read from, or written to, the forbidden bucket.
    assert!(env.gcs.list("secret-bucket", "thumbs/").await.is_empty());
    assert_eq!(event_bodies(&events, "THUMBNAIL_FAILED").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_subscriptions_get_confirmed_acks() {
    let env = Env::start().await;
    env.gcs.create_bucket("photos").await;
    let admin = SubscriptionAdmin::builder()
        .with_endpoint(env.pubsub.endpoint())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let sub = format!("projects/{PROJECT}/subscriptions/exactly-once");
    admin
        .create_subscription()
        .with_request(
            Subscription::new()
                .set_name(&sub)
                .set_topic(format!("projects/{PROJECT}/topics/{GCS_TOPIC}"))
                .set_ack_deadline_seconds(10)
                .set_enable_exactly_once_delivery(true),
        )
        .send()
        .await
        .unwrap();
    let worker = env.worker(&sub, &["--output-bucket", "thumbnails"]).await;
    env.gcs.create_bucket("thumbnails").await;
    for name in ["a.jpg", "b.jpg"] {
        env.gcs
            .upload("photos", name, corpus("plasma_Grey_screenshot_400x250.jpg"))
            .await;
    }
    worker.wait_settled("ack", "done", 2.0, LONG).await;
    let log = eventually(LONG, "confirmed acks in the log", || async {
        let log = worker.proc.log_text();
        (log.matches("confirmed by the exactly-once subscription")
            .count()
            >= 2)
            .then_some(log)
    })
    .await;
    assert!(!log.contains("not confirmed"), "{log}");
}
