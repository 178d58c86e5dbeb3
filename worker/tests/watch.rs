//! `thumbd worker --watch DIR --out DIR`: the local default, no emulators needed.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use thumbd_engine::{Limits, Request};

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../corpus")
            .join(name),
    )
    .unwrap()
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_watched_folder_gets_thumbnails_and_json_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(input.join("sub")).unwrap();
    // Present before the start: picked up by the first scans.
    std::fs::write(input.join("earth.jpg"), corpus("xplanet_earth.jpg")).unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_thumbd"))
        .args(["worker", "--watch"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--size", "64,200", "--poll-ms", "100", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .env_remove("THUMBD_SIZE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Killed on drop, so a failed assertion does not leave the worker running.
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(serde_json::from_str(&line).expect("JSON lines on stdout"));
        }
    });

    // Landing while it runs, in a subfolder, plus a corrupt file.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(
        input.join("sub/hopper.jpg"),
        corpus("pil_hopper_orientation_6.jpg"),
    )
    .unwrap();
    std::fs::write(input.join("bad.png"), corpus("pil_broken.png")).unwrap();

    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => events.push(event),
            Err(_) => {
                panic!("only {} events in 60 s: {events:?}", events.len());
            }
        }
    }
    let by_name = |name: &str| {
        events
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {events:?}"))
            .clone()
    };
    let request = Request {
        sizes: vec![64, 200],
        ..Request::default()
    };
    for (name, file) in [
        ("earth.jpg", "xplanet_earth.jpg"),
        ("sub/hopper.jpg", "pil_hopper_orientation_6.jpg"),
    ] {
        let event = by_name(name);
        assert_eq!(event["event"], "THUMBNAILS_READY", "{event}");
        let expected =
            thumbd_engine::thumbnail(&corpus(file), &request, &Limits::default()).unwrap();
        for thumb in expected {
            let path = out.join(name).join(format!("{}.jpg", thumb.size));
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let info = thumbd_engine::probe(&data, &Limits::default()).unwrap();
            assert_eq!(
                (info.width, info.height),
                (thumb.width, thumb.height),
                "{}",
                path.display()
            );
        }
    }
    let bad = by_name("bad.png");
    assert_eq!(bad["event"], "THUMBNAIL_FAILED");
    assert!(bad["reason"].is_string());
    assert!(!out.join("bad.png").join("64.jpg").exists());

    // SIGTERM: a clean exit, promptly.
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // No further events (nothing processed twice).
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

/// What a ConfigMap with one bad value does: exit 2 at once with one readable line on stderr.
#[test]
fn a_bad_environment_value_exits_2_with_one_line() {
    for (var, value, needle) in [
        ("THUMBD_SIZE", "0", "0 is not in 1..=8192"),
        ("THUMBD_FORMAT", "gif", "possible values: jpeg, png, webp"),
        (
            "THUMBD_SUBSCRIPTION",
            "thumbd-work",
            "projects/PROJECT/subscriptions/NAME",
        ),
        (
            "THUMBD_SOURCE_BUCKETS",
            "Uploads!",
            "not a valid bucket name",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_thumbd"))
            .arg("worker")
            .env(
                "THUMBD_SUBSCRIPTION",
                "projects/p/subscriptions/thumbd-work",
            )
            .env("THUMBD_LOG_FORMAT", "json")
            .env(var, value)
            .env_remove("PUBSUB_EMULATOR_HOST")
            .env_remove("STORAGE_EMULATOR_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{var}={value}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}={value}: {stderr}");
        assert!(
            stderr.starts_with("thumbd worker: invalid configuration: ") && stderr.contains(needle),
            "{var}={value}: {stderr}"
        );
    }
}

/// Reads JSON lines from `pipe` into a channel, on a thread of its own.
fn json_lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(serde_json::from_str(&line).expect("JSON lines"));
        }
    });
    rx
}

/// A JPEG whose reduced decode the engine declines only at decode time (damage the header
/// check cannot see) needs a full-size decode, far beyond its reservation for the reduced one:
/// the engine refuses it within the reservation, and the worker grows the reservation (a log
/// line) and makes the thumbnails, or, when the decode needs more than the whole engine pool,
/// fails the image as `too_large_for_pod`.
#[test]
fn a_decode_declined_at_reduced_scale_grows_its_reservation_or_is_too_large_for_the_pod() {
    let data = thumbd_tests::jpeg_declined_at_decode_time();
    let info = thumbd_engine::probe(&data, &Limits::default()).unwrap();
    let full_decode = thumbd_engine::stages::decode_bytes(&data, &info, 1).full;
    // With no floor, the engine pool is 9/16 of the budget: 144 MiB, then 36 MiB, against the
    // full decode's ~89 MB.
    for (budget, fits) in [(256u64 << 20, true), (64 << 20, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("declined.jpg"), &data).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_thumbd"))
            .args(["worker", "--watch"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(["--size", "256", "--threads", "1", "--memory-floor", "0"])
            .args([
                "--memory-budget",
                &budget.to_string(),
                "--log-format",
                "json",
            ])
            .args(["--poll-ms", "100", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .env_remove("THUMBD_SIZE")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let events = json_lines(child.0.stdout.take().unwrap());
        let logs = json_lines(child.0.stderr.take().unwrap());
        let event = events
            .recv_timeout(Duration::from_secs(60))
            .expect("an event within 60 s");
        let _ = child.0.kill();
        let logs: Vec<Value> = logs.iter().collect();
        let fields = |message: &str| {
            logs.iter()
                .map(|l| &l["fields"])
                .find(|f| {
                    f["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
                })
                .cloned()
        };
        let pool = fields("memory budget split").expect("the split is logged")["engine_bytes"]
            .as_u64()
            .unwrap();
        assert_eq!(
            pool > full_decode,
            fits,
            "pool {pool}, full decode {full_decode}"
        );
        let grown = fields("decode declined at reduced scale");
        if fits {
            assert_eq!(event["event"], "THUMBNAILS_READY", "{event}");
            assert!(out.join("declined.jpg/256.jpg").exists());
            let grown = grown.expect("the reservation's growth is logged");
            assert_eq!(grown["needed"].as_u64(), Some(full_decode), "{grown}");
            assert!(grown["reserve"].as_u64().unwrap() >= full_decode, "{grown}");
            assert!(
                grown["allowed"].as_u64().unwrap() < full_decode / 20,
                "{grown}"
            );
        } else {
            assert_eq!(event["event"], "THUMBNAIL_FAILED", "{event}");
            assert_eq!(event["reason"], "too_large_for_pod", "{event}");
            assert!(grown.is_none(), "grown past the pool: {grown:?}");
            assert!(!out.join("declined.jpg/256.jpg").exists());
        }
    }
}

#[test]
fn bad_configuration_exits_2_with_a_message_before_any_client() {
    for (args, needle) in [
        (vec!["worker"], "--subscription"),
        (
            vec!["worker", "--subscription", "my-sub"],
            "projects/PROJECT/subscriptions/NAME",
        ),
        (
            vec![
                "worker",
                "--subscription",
                "projects/p/subscriptions/s",
                "--output-prefix",
                "",
            ],
            "thumbnail loop",
        ),
        (
            vec![
                "worker",
                "--watch",
                "/nonexistent-thumbd-dir",
                "--out",
                "/tmp/x",
            ],
            "not a folder",
        ),
    ] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_thumbd"))
            .args(&args)
            .env_remove("THUMBD_SUBSCRIPTION")
            .env_remove("PUBSUB_EMULATOR_HOST")
            .env_remove("STORAGE_EMULATOR_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} was slow"
        );
    }
}

/// A `--watch` worker whose JSON events are read from its stdout.
struct Watcher {
    child: KillOnDrop,
    events: mpsc::Receiver<Value>,
}

impl Watcher {
    fn start(input: &Path, out: &Path, sizes: &str) -> Watcher {
        let child = Command::new(env!("CARGO_BIN_EXE_thumbd"))
            .args(["worker", "--watch"])
            .arg(input)
            .arg("--out")
            .arg(out)
            .args(["--size", sizes, "--poll-ms", "100", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .env_remove("THUMBD_SIZE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let events = json_lines(child.0.stdout.take().unwrap());
        Watcher { child, events }
    }

    fn next_event(&self) -> Value {
        self.events
            .recv_timeout(Duration::from_secs(60))
            .expect("an event within 60 s")
    }

    /// SIGTERM, and waits for the clean exit.
    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

#[test]
fn a_restart_with_an_added_size_makes_the_missing_size() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jpg"), corpus("xplanet_earth.jpg")).unwrap();

    let first = Watcher::start(&input, &out, "64");
    assert_eq!(first.next_event()["event"], "THUMBNAILS_READY");
    first.stop();
    assert!(out.join("a.jpg/64.jpg").is_file());

    // The record says a.jpg is done, but 32 px was never made: it is made now.
    let second = Watcher::start(&input, &out, "64,32");
    let event = second.next_event();
    assert_eq!(event["event"], "THUMBNAILS_READY", "{event}");
    assert!(out.join("a.jpg/32.jpg").is_file());
    second.stop();

    // And a third run with the same sizes redoes nothing.
    let third = Watcher::start(&input, &out, "64,32");
    assert!(third.events.recv_timeout(Duration::from_secs(2)).is_err());
    third.stop();
}

#[test]
fn a_file_replaced_with_an_older_date_is_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jpg"), corpus("xplanet_earth.jpg")).unwrap();
    let watcher = Watcher::start(&input, &out, "64");
    let first = watcher.next_event();
    assert_eq!(first["event"], "THUMBNAILS_READY");

    // As `cp -p`, `rsync -t`, `tar x` and `unzip` do: a different image, dated a day earlier.
    let staged = tmp.path().join("staged.jpg");
    std::fs::write(&staged, corpus("pil_hopper_orientation_6.jpg")).unwrap();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    std::fs::rename(&staged, input.join("a.jpg")).unwrap();

    let second = watcher.next_event();
    assert_eq!(second["event"], "THUMBNAILS_READY", "{second}");
    assert_ne!(second["generation"], first["generation"]);
    let data = std::fs::read(out.join("a.jpg/64.jpg")).unwrap();
    let info = thumbd_engine::probe(&data, &Limits::default()).unwrap();
    let expected = thumbd_engine::thumbnail(
        &corpus("pil_hopper_orientation_6.jpg"),
        &Request {
            sizes: vec![64],
            ..Request::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        (info.width, info.height),
        (expected[0].width, expected[0].height)
    );
    watcher.stop();
}

#[test]
fn a_file_name_that_is_not_utf8_gets_a_failure_event() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.jpg");
    std::fs::write(input.join(name), corpus("xplanet_earth.jpg")).unwrap();
    let watcher = Watcher::start(&input, &out, "64");
    let event = watcher.next_event();
    assert_eq!(event["event"], "THUMBNAIL_FAILED", "{event}");
    assert_eq!(event["reason"], "invalid_name", "{event}");
    // Reported once, not once per scan.
    assert!(watcher.events.recv_timeout(Duration::from_secs(1)).is_err());
    watcher.stop();
}
