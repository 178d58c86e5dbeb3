//! `thumbd notify` end to end: the real worker's events (or events published by the test) on
//! the Pub/Sub emulator, mailed to a local SMTP sink (aiosmtpd, see `common::smtp`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::smtp::{localhost_certificate, Mail, SmtpSink};
use common::*;
use thumbd::service::events::{Event, OutputInfo, FAILED, READY};

const LONG: Duration = Duration::from_secs(120);
const FROM: &str = "thumbd <thumbd@example.com>";
const TO: [&str; 2] = ["ops@example.com", "Jane Doe <jane@example.org>"];

/// Starts `thumbd notify` on `subscription`, mailing in clear text through the sink on
/// `smtp_port` (which need not be up), and waits for /readyz.
async fn notify(pubsub: &PubSubEmulator, dir: &Path, subscription: &str, smtp_port: u16) -> Worker {
    let smtp = format!("127.0.0.1:{smtp_port}");
    let args = ["--smtp", &smtp, "--smtp-tls", "none"];
    notify_with(pubsub, dir, subscription, &args, &[]).await
}

/// Starts `thumbd notify` with `args` (`--smtp` and its TLS mode at least) and `env`.
async fn notify_with(
    pubsub: &PubSubEmulator,
    dir: &Path,
    subscription: &str,
    args: &[&str],
    env: &[(&str, &Path)],
) -> Worker {
    let metrics_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thumbd"));
    cmd.arg("notify")
        .args(["--subscription", subscription])
        .args(args)
        .args(["--from", FROM, "--to", TO[0], "--to", TO[1]])
        .args(["--listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--lease-extension", "10", "--smtp-timeout", "5"])
        .env("PUBSUB_EMULATOR_HOST", pubsub.host())
        .env("RUST_LOG", "info,thumbd=debug")
        .env_remove("THUMBD_SMTP_USERNAME")
        .env_remove("THUMBD_SMTP_PASSWORD")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().copied());
    let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
    let proc = Proc::spawn("thumbd notify", cmd, dir.join(format!("notify-{n}.log")));
    let mut notify = Worker { proc, metrics_port };
    notify.wait_ready().await;
    notify
}

/// `thumbd_notify_messages_total{fate, reason}`.
async fn settled(notify: &Worker, fate: &str, reason: &str) -> f64 {
    notify
        .metric(&format!(
            "thumbd_notify_messages_total{{fate=\"{fate}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

/// Waits until metric `sample` reaches `n`; panics with notify's log after `timeout`.
async fn wait_metric(notify: &Worker, sample: &str, n: f64, timeout: Duration) {
    let start = Instant::now();
    while notify.metric(sample).await.unwrap_or(0.0) < n {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {sample} >= {n}; notify's log:\n{}",
            notify.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sent_sample() -> &'static str {
    "thumbd_notify_messages_total{fate=\"ack\",reason=\"sent\"}"
}

/// The mail whose subject is `subject`, which must be the only one.
fn only_mail<'a>(mails: &'a [Mail], subject: &str) -> &'a Mail {
    let found: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.header("Subject") == Some(subject))
        .collect();
    assert_eq!(found.len(), 1, "mails titled {subject}: {mails:#?}");
    found[0]
}

/// Both recipients in the header and in the envelope, and the sender.
fn assert_addressed(mail: &Mail) {
    let to = mail.header("To").unwrap_or_default();
    assert!(
        to.contains("ops@example.com") && to.contains("\"Jane Doe\" <jane@example.org>"),
        "To: {to}"
    );
    assert_eq!(
        mail.header("X-RcptTo"),
        Some("ops@example.com, jane@example.org"),
        "envelope recipients"
    );
    assert_eq!(mail.header("X-MailFrom"), Some("thumbd@example.com"));
    assert_eq!(mail.header("From"), Some("thumbd <thumbd@example.com>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_events_become_one_mail_each_and_copies_and_strangers_none() {
    let env = Env::start().await;
    let dir = env.dir.path();
    env.gcs.create_bucket("photos").await;
    let events_topic = env.pubsub.create_topic("thumb-events").await;
    let notify_sub = env
        .pubsub
        .create_subscription("thumb-events", "notify", None)
        .await;
    // A second subscription on the same topic, to read what the worker published.
    let events_sub = env
        .pubsub
        .create_subscription("thumb-events", "events", None)
        .await;
    let events = env.pubsub.collect(&events_sub).await;
    let work_sub = env
        .pubsub
        .create_subscription(GCS_TOPIC, "work", None)
        .await;
    let _worker = env
        .worker(&work_sub, &["--events-topic", &events_topic])
        .await;
    let mut sink = SmtpSink::new(dir, free_port());
    sink.start();
    let mut notify = notify(&env.pubsub, dir, &notify_sub, sink.port).await;

    // 1. An upload → the worker's ready event → one mail listing its thumbnails.
    let generation = env
        .gcs
        .upload("photos", "in/earth.jpg", corpus("xplanet_earth.jpg"))
        .await;
    let mails = sink.wait_for(1, LONG).await;
    let ready = only_mail(&mails, "Thumbnails ready: in/earth.jpg");
    assert_addressed(ready);
    assert!(
        ready.body.starts_with(&format!(
            "Thumbnails are ready for gs://photos/in/earth.jpg (generation {generation}):"
        )),
        "{}",
        ready.body
    );
    for size in [64, 200] {
        let url = format!("bytes  gs://photos/thumbs/in/earth.jpg/{size}.jpg");
        assert!(ready.body.contains(&url), "{url} in:\n{}", ready.body);
    }
    let id = ready.header("Message-ID").unwrap_or_default();
    assert!(
        id.starts_with(&format!("<thumbd.ready.{generation}.")),
        "{id}"
    );

    // 2. The same event again, as Pub/Sub may deliver it → acked without a second mail.
    let published = eventually(LONG, "the worker's ready event", || async {
        events
            .snapshot()
            .into_iter()
            .find(|m| m.attributes.get("eventType").map(String::as_str) == Some("THUMBNAILS_READY"))
    })
    .await;
    env.pubsub
        .publish(
            "thumb-events",
            published.attributes.clone(),
            published.data.to_vec(),
        )
        .await;
    wait_metric(
        &notify,
        "thumbd_notify_messages_total{fate=\"ack\",reason=\"duplicate\"}",
        1.0,
        LONG,
    )
    .await;

    // 3. A file the worker cannot read → its failure event → a mail with the reason.
    env.gcs
        .upload("photos", "in/notes.txt", b"not an image at all".to_vec())
        .await;
    let mails = sink.wait_for(2, LONG).await;
    let failed = only_mail(&mails, "Thumbnail failed: in/notes.txt");
    assert_addressed(failed);
    assert!(
        failed
            .body
            .contains("No thumbnails could be made of gs://photos/in/notes.txt")
            && failed.body.contains("Reason: unsupported\n")
            && failed.body.contains("Error: "),
        "{}",
        failed.body
    );

    // 4. Messages that are not events → acked without a mail.
    env.pubsub
        .publish("thumb-events", HashMap::new(), b"not json".to_vec())
        .await;
    let stranger =
        br#"{"event":"OBJECT_FINALIZE","bucket":"photos","name":"x.jpg","generation":1}"#;
    env.pubsub
        .publish("thumb-events", HashMap::new(), stranger.to_vec())
        .await;
    wait_metric(
        &notify,
        "thumbd_notify_messages_total{fate=\"ack\",reason=\"malformed\"}",
        2.0,
        LONG,
    )
    .await;

    // Nothing comes back: a nacked or unsettled message would be redelivered within the
    // subscription's 10 s ack deadline, and received again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        notify.metric("thumbd_notify_messages_received_total").await,
        Some(5.0),
        "ready, its copy, failed, two strangers: each received once; log:\n{}",
        notify.proc.log_text()
    );
    assert_eq!(settled(&notify, "ack", "sent").await, 2.0);
    assert_eq!(settled(&notify, "ack", "malformed").await, 2.0);
    assert_eq!(sink.mails().len(), 2, "{:#?}", sink.mails());

    notify.proc.signal("TERM");
    let status = notify.proc.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        notify.proc.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_outage_nacks_until_it_is_back_then_mails_once() {
    let dir = tempfile::tempdir().unwrap();
    let pubsub = PubSubEmulator::start(dir.path()).await;
    pubsub.create_topic("thumb-events").await;
    let sub = pubsub
        .create_subscription("thumb-events", "notify", None)
        .await;
    // The sink's port is chosen, but nothing listens on it yet.
    let mut sink = SmtpSink::new(dir.path(), free_port());
    let notify = notify(&pubsub, dir.path(), &sub, sink.port).await;

    let event = Event {
        event: READY.into(),
        bucket: "photos".into(),
        name: "in/cat.jpg".into(),
        generation: Some(42),
        outputs: vec![OutputInfo {
            bucket: "thumbs".into(),
            name: "thumbs/in/cat.jpg/256.jpg".into(),
            size: 256,
            width: 256,
            height: 171,
            content_type: "image/jpeg".into(),
            bytes: 10243,
        }],
        reason: None,
        error: None,
    };
    let attributes = HashMap::from([("eventType".to_string(), "THUMBNAILS_READY".to_string())]);
    pubsub
        .publish(
            "thumb-events",
            attributes,
            serde_json::to_vec(&event).unwrap(),
        )
        .await;

    // Refused connections, the message nacked and delivered again: not acked.
    wait_metric(
        &notify,
        "thumbd_notify_smtp_errors_total{class=\"connection\"}",
        2.0,
        LONG,
    )
    .await;
    let received = notify
        .metric("thumbd_notify_messages_received_total")
        .await
        .unwrap();
    assert!(received >= 2.0, "redelivered after the nack: {received}");
    assert_eq!(settled(&notify, "ack", "sent").await, 0.0);
    assert!(sink.mails().is_empty());

    // The server is back: the next delivery is mailed, once.
    sink.start();
    let back = Instant::now();
    let mails = sink.wait_for(1, LONG).await;
    eprintln!(
        "mailed {:.1} s after the server came back, after {} failed sends",
        back.elapsed().as_secs_f64(),
        notify
            .metric_total("thumbd_notify_smtp_errors_total")
            .await
            .unwrap_or(0.0)
    );
    let mail = only_mail(&mails, "Thumbnails ready: in/cat.jpg");
    assert_addressed(mail);
    assert!(
        mail.body.contains(
            "256 px  256x171  image/jpeg  10243 bytes  gs://thumbs/thumbs/in/cat.jpg/256.jpg"
        ),
        "{}",
        mail.body
    );
    wait_metric(&notify, sent_sample(), 1.0, LONG).await;
    // Past the ack deadline: no copy comes back to be mailed again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(sink.mails().len(), 1, "{:#?}", sink.mails());
    assert_eq!(settled(&notify, "ack", "sent").await, 1.0);
}

/// The default, `--smtp-tls starttls`: the mail goes over TLS (the sink refuses MAIL before
/// STARTTLS) to a server whose certificate the system's CA store trusts (here
/// SSL_CERT_FILE, which the verifier reads on Linux), and never to one it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_mails_only_to_a_trusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = localhost_certificate(dir.path());
    let pubsub = PubSubEmulator::start(dir.path()).await;
    pubsub.create_topic("thumb-events").await;
    let trusting_sub = pubsub
        .create_subscription("thumb-events", "trusting", None)
        .await;
    let untrusting_sub = pubsub
        .create_subscription("thumb-events", "untrusting", None)
        .await;
    let mut sink = SmtpSink::with_starttls(dir.path(), free_port(), &cert, &key);
    sink.start();
    let smtp = format!("localhost:{}", sink.port);
    let args = ["--smtp", &smtp, "--smtp-tls", "starttls"];
    let trusting = notify_with(
        &pubsub,
        dir.path(),
        &trusting_sub,
        &args,
        &[("SSL_CERT_FILE", &ca)],
    )
    .await;
    // The test CA is in no system store.
    let untrusting = notify_with(&pubsub, dir.path(), &untrusting_sub, &args, &[]).await;

    let event = Event {
        event: FAILED.into(),
        bucket: "photos".into(),
        name: "in/bad.jpg".into(),
        generation: Some(7),
        outputs: Vec::new(),
        reason: Some("corrupt".into()),
        error: Some("corrupt jpeg: premature end of data".into()),
    };
    pubsub
        .publish(
            "thumb-events",
            HashMap::new(),
            serde_json::to_vec(&event).unwrap(),
        )
        .await;

    let mails = sink.wait_for(1, LONG).await;
    let mail = only_mail(&mails, "Thumbnail failed: in/bad.jpg");
    assert_addressed(mail);
    assert!(
        mail.body
            .contains("Reason: corrupt\nError: corrupt jpeg: premature end of data\n"),
        "{}",
        mail.body
    );
    wait_metric(&trusting, sent_sample(), 1.0, LONG).await;
    wait_metric(
        &untrusting,
        "thumbd_notify_smtp_errors_total{class=\"tls\"}",
        1.0,
        LONG,
    )
    .await;
    assert_eq!(settled(&untrusting, "ack", "sent").await, 0.0);
    assert_eq!(sink.mails().len(), 1);
}

/// A bad flag or THUMBD_* value: exit 2 at once, one readable line on stderr.
#[test]
fn bad_configuration_exits_2_with_one_line() {
    let valid: [(&str, &str); 5] = [
        ("THUMBD_SUBSCRIPTION", "projects/p/subscriptions/events"),
        ("THUMBD_SMTP", "smtp.example.com:587"),
        ("THUMBD_TO", "ops@example.com"),
        ("THUMBD_FROM", "thumbd@example.com"),
        ("THUMBD_LOG_FORMAT", "json"),
    ];
    /// Flags, an environment variable replacing the valid one, what stderr says.
    type Case = (
        &'static [&'static str],
        Option<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 8] = [
        (&["--bogus"], None, "unexpected argument '--bogus'"),
        (
            &["--smtp-tls", "ssl"],
            None,
            "possible values: none, starttls, tls",
        ),
        (
            &["--to", "nobody"],
            None,
            "`nobody` is not an email address",
        ),
        (
            &["--smtp", "host:notaport"],
            None,
            "is not HOST or HOST:PORT",
        ),
        (&["--smtp-username", "mailer"], None, "THUMBD_SMTP_PASSWORD"),
        (
            &[],
            Some(("THUMBD_SUBSCRIPTION", "events")),
            "projects/PROJECT/subscriptions/NAME",
        ),
        (
            &[],
            Some(("THUMBD_CONCURRENCY", "0")),
            "--concurrency must be at least 1",
        ),
        (&[], Some(("THUMBD_TO", "")), "--to"),
    ];
    for (args, var, needle) in cases {
        let started = Instant::now();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thumbd"));
        cmd.arg("notify").args(args).env_clear().envs(valid);
        if let Some((name, value)) = var {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("{args:?} {var:?}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{what}");
        assert_eq!(stderr.lines().count(), 1, "{what}");
        assert!(
            stderr.starts_with("thumbd notify: invalid configuration: ") && stderr.contains(needle),
            "{what}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} was slow"
        );
    }
}

/// A measurement, not a check: mails per second to the local sink at `--concurrency` 1 and 4,
/// from the first publish to the last ack
/// (`cargo test --workspace --test notify -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_mail_throughput() {
    const EVENTS: i64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let pubsub = PubSubEmulator::start(dir.path()).await;
    for concurrency in ["1", "4"] {
        let run = dir.path().join(format!("concurrency-{concurrency}"));
        std::fs::create_dir(&run).unwrap();
        let topic = format!("events-{concurrency}");
        pubsub.create_topic(&topic).await;
        let sub = pubsub
            .create_subscription(&topic, &format!("notify-{concurrency}"), None)
            .await;
        let mut sink = SmtpSink::new(&run, free_port());
        sink.start();
        let smtp = format!("127.0.0.1:{}", sink.port);
        let args = ["--smtp", &smtp, "--smtp-tls", "none"];
        let args = [&args[..], &["--concurrency", concurrency]].concat();
        let notify = notify_with(&pubsub, &run, &sub, &args, &[]).await;
        let publisher = pubsub.publisher(&topic).await;
        let started = Instant::now();
        let published: Vec<_> = (0..EVENTS)
            .map(|generation| {
                let event = Event {
                    event: READY.into(),
                    bucket: "photos".into(),
                    name: format!("in/{generation}.jpg"),
                    generation: Some(generation),
                    outputs: Vec::new(),
                    reason: None,
                    error: None,
                };
                let data = serde_json::to_vec(&event).unwrap();
                publisher.publish(google_cloud_pubsub::model::Message::new().set_data(data))
            })
            .collect();
        for p in published {
            p.await.expect("publishing");
        }
        wait_metric(&notify, sent_sample(), EVENTS as f64, LONG).await;
        let seconds = started.elapsed().as_secs_f64();
        let sends = notify
            .metric("thumbd_notify_send_seconds_sum")
            .await
            .unwrap_or(0.0);
        eprintln!(
            "--concurrency {concurrency}: {EVENTS} mails in {seconds:.1} s = {:.0} mails/s; \
             mean send {:.1} ms",
            EVENTS as f64 / seconds,
            sends / EVENTS as f64 * 1000.0
        );
        assert_eq!(sink.mails().len(), EVENTS as usize);
    }
}
