//! `thumbd worker` as PID 1, as the container image runs it (deploy/Dockerfile: the binary is
//! the ENTRYPOINT, no init process). The kernel delivers no signal to a namespace's PID 1
//! for which it has not installed a handler, so SIGTERM from Kubernetes would be ignored
//! (and the pod SIGKILLed after its grace period) unless the worker handles it itself.
//!
//! Each test starts the worker as PID 1 of a new PID namespace (`unshare --pid --fork
//! --mount-proc`, which needs root, as CI has), waits until it serves `/readyz`, signals it
//! from outside and expects exit code 0 with its `stopped` log line. Where the namespace
//! cannot be made (not root, no `unshare`), the tests say so and pass without running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the whole `unshare` tree on drop (killing the namespace's PID 1 ends the namespace).
struct Namespace {
    unshare: Child,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(init) = namespace_init(self.unshare.id()) {
            let _ = signal(init, "KILL");
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Whether this machine lets us make a PID namespace; prints why not otherwise.
fn pid_namespaces_available() -> bool {
    match Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED pid1: `unshare --pid --fork --mount-proc` is not permitted here \
                 (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED pid1: no `unshare` (util-linux): {e}");
            false
        }
    }
}

/// The PID (outside the namespace) of the namespace's init: `unshare --fork`'s only child.
fn namespace_init(unshare: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{unshare}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .next()
}

/// The process's PID in each namespace it belongs to, outermost first (`NSpid` of
/// /proc/PID/status).
fn ns_pids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .map(|pids| {
            pids.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn signal(pid: u32, name: &str) -> std::io::Result<ExitStatus> {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
}

/// Starts `program args` as PID 1 of a new PID namespace; returns the guard and the
/// program's PID as seen from here (checked to be 1 inside the namespace).
fn start_as_pid1(program: &Path, args: &[&str], stderr: Stdio) -> (Namespace, u32) {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr);
    // Only the flags given here configure the worker.
    for (key, _) in std::env::vars() {
        if key.starts_with("THUMBD_") || key.ends_with("_EMULATOR_HOST") {
            command.env_remove(key);
        }
    }
    let namespace = Namespace {
        unshare: command.spawn().expect("starting unshare"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(init) = namespace_init(namespace.unshare.id()) {
            let pids = ns_pids(init);
            // Until the child has exec'd, it may still show the parent's namespace only.
            if pids.len() >= 2 {
                assert_eq!(
                    pids.last(),
                    Some(&1),
                    "not PID 1 in its namespace: {pids:?}"
                );
                return (namespace, init);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no PID 1 under unshare after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` on a plain HTTP/1.1 server; returns the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the worker as PID 1, waits until `/readyz` answers 200, sends `signal_name` and
/// checks a clean, prompt exit.
fn worker_as_pid1_stops_on(signal_name: &str) {
    if !pid_namespaces_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (watch, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&watch).unwrap();
    let args = [
        "worker",
        "--watch",
        watch.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ];
    let (mut namespace, pid) = start_as_pid1(
        Path::new(env!("CARGO_BIN_EXE_thumbd")),
        &args,
        Stdio::piped(),
    );

    // Log lines' messages (and the HTTP address) from stderr, as they come.
    let stderr = namespace.unshare.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                eprintln!("worker: {line}");
                continue;
            };
            if tx.send(log).is_err() {
                break;
            }
        }
    });
    let message = |log: &Value| log["fields"]["message"].as_str().unwrap_or("").to_string();
    let wait_for = |want: &str, seconds: u64| -> Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(log) if message(&log).starts_with(want) => return log,
                Ok(_) => {}
                Err(_) => panic!("no '{want}' log line within {seconds} s"),
            }
        }
    };

    let serving = wait_for("serving", 30);
    let addr = serving["fields"]["addr"].as_str().unwrap().to_string();
    wait_for("watching", 30);
    assert_eq!(
        http_status(&addr, "/readyz"),
        Some(200),
        "/readyz at {addr}"
    );

    signal(pid, signal_name).unwrap();
    let start = Instant::now();
    wait_for("stopped", 10);
    let status = loop {
        if let Some(status) = namespace.unshare.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "PID 1 still running 10 s after SIG{signal_name}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // `unshare --fork` exits with its child's status (or dies of the same signal).
    assert!(
        status.success(),
        "PID 1 exited with {status} after SIG{signal_name}"
    );
    eprintln!(
        "pid1: SIG{signal_name} -> 'stopped' and exit 0 in {} ms",
        start.elapsed().as_millis()
    );
}

#[test]
fn worker_as_pid1_exits_0_on_sigterm() {
    worker_as_pid1_stops_on("TERM");
}

#[test]
fn worker_as_pid1_exits_0_on_sigint() {
    worker_as_pid1_stops_on("INT");
}

/// The control: a PID 1 without a SIGTERM handler (`sleep`) ignores SIGTERM here, so the
/// tests above would fail if the worker did not handle the signal itself.
#[test]
fn a_pid1_without_handler_ignores_sigterm() {
    if !pid_namespaces_available() {
        return;
    }
    let (mut namespace, pid) = start_as_pid1(Path::new("sleep"), &["30"], Stdio::null());
    signal(pid, "TERM").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        namespace.unshare.try_wait().unwrap().is_none(),
        "sleep as PID 1 died of SIGTERM: the PID-1 tests would prove nothing"
    );
}
