//! `thumbd serve` end to end: the application against the real emulators and the real worker
//! (cloud mode), and in local mode with its embedded worker. Every refused request must get
//! its typed JSON error and leave nothing in storage.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{corpus, free_port, http, Env, GCS_TOPIC, PROJECT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-5f1c";

/// Reads Server-Sent Events from `/api/events` in the background.
struct Events {
    seen: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    async fn open(serve: &Serve, token: Option<&str>, last_event_id: Option<&str>) -> Events {
        let mut request = http().get(serve.url("/api/events"));
        if let Some(token) = token {
            request = request.query(&[("access_token", token)]);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok(Some(chunk)) = response.chunk().await {
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk));
                }
            }
        });
        Events { seen, task }
    }

    /// Waits for an event of `kind` about `id`; returns its `id:` line.
    async fn wait_for(&self, kind: &str, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.seen.lock().unwrap().clone();
            for block in text.split("\n\n") {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_string)
                };
                if field("event: ").as_deref() == Some(kind)
                    && field("data: ").is_some_and(|d| d.contains(&format!("\"id\":\"{id}\"")))
                {
                    return field("id: ").unwrap_or_default();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} event for {id}; got:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The largest side of a thumbnail must be the size asked for.
fn assert_thumbnail(bytes: &[u8], size: u32, reported: &Value) {
    let info = thumbd_engine::probe(bytes, &thumbd_engine::Limits::default()).unwrap();
    assert_eq!(
        (u64::from(info.width), u64::from(info.height)),
        (
            reported["width"].as_u64().unwrap(),
            reported["height"].as_u64().unwrap()
        )
    );
    assert_eq!(info.width.max(info.height), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_mode_uploads_to_ready_thumbnails_with_live_events() {
    let mut env = Env::start_with(true, Some("uploads")).await;
    env.gcs.create_bucket("uploads").await;
    env.gcs.create_bucket("thumbs").await;
    let work = env
        .pubsub
        .create_subscription(GCS_TOPIC, "work", None)
        .await;
    env.pubsub.create_topic("events").await;
    let app_events = env
        .pubsub
        .create_subscription("events", "serve-events", None)
        .await;
    let events_topic = format!("projects/{PROJECT}/topics/events");
    let _worker = env
        .worker(
            &work,
            &[
                "--source-bucket=uploads",
                "--output-bucket=thumbs",
                "--output-prefix=thumbs/",
                "--events-topic",
                &events_topic,
            ],
        )
        .await;
    let emulators = [
        ("PUBSUB_EMULATOR_HOST", env.pubsub.host()),
        ("STORAGE_EMULATOR_HOST", env.gcs.endpoint()),
    ];
    let serve_args = [
        "--upload-bucket=uploads",
        "--thumbnail-bucket=thumbs",
        "--thumbnail-prefix=thumbs/",
        "--events-subscription",
        &app_events,
        "--size=64,200",
        "--auth-token",
        TOKEN,
        "--max-upload-bytes=2000000",
        "--storage-retry=2",
    ];
    let log = || env.dir.path().join(format!("serve-{}.log", free_port()));
    let mut serve = Serve::start(&serve_args, &emulators, log()).await;
    let live = Events::open(&serve, Some(TOKEN), None).await;

    // Upload → ready, with both thumbnails at their sizes, served with an ETag.
    let photo = corpus("plasma_PastelHills_3200x2000.jpg");
    let (status, accepted) = serve
        .upload("../Hopper at Sea.jpg", photo.clone(), Some(TOKEN))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["state"], "pending");
    assert_eq!(accepted["name"], "Hopper_at_Sea.jpg");
    let id = accepted["id"].as_str().unwrap().to_string();
    let object = accepted["object"].as_str().unwrap().to_string();
    assert!(
        object.ends_with(&format!("{id}-Hopper_at_Sea.jpg")),
        "{object}"
    );
    let stored = env.gcs.object("uploads", &object).await.expect("stored");
    assert_eq!(
        stored["metadata"]["thumbd-content-type"], "image/jpeg",
        "{stored}"
    );
    let image = serve.settled(&id).await;
    assert_eq!(image["state"], "ready", "{image}");
    let thumbnails = image["thumbnails"].as_array().unwrap();
    assert_eq!(thumbnails.len(), 2, "{image}");
    for (thumb, size) in thumbnails.iter().zip([64, 200]) {
        assert_eq!(thumb["size"], size);
        let response = http()
            .get(serve.url(thumb["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        assert!(response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"));
        assert_thumbnail(&response.bytes().await.unwrap(), size, thumb);
        let again = http()
            .get(serve.url(thumb["url"].as_str().unwrap()))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
    }
    live.wait_for("ready", &id).await;

    // The same name twice is two objects.
    let (status, second) = serve
        .upload("../Hopper at Sea.jpg", photo.clone(), Some(TOKEN))
        .await;
    assert_eq!(status, 202);
    assert_ne!(second["object"], accepted["object"]);
    assert_eq!(env.gcs.list("uploads", "").await.len(), 2);

    // A file whose header passes but whose data does not decode: failed, with the worker's
    // reason, live and after a restart of the application (the state is in storage).
    let (status, broken) = serve
        .upload("broken.jpg", corpus("skimage_truncated.jpg"), Some(TOKEN))
        .await;
    assert_eq!(status, 202, "{broken}");
    let broken_id = broken["id"].as_str().unwrap().to_string();
    live.wait_for("failed", &broken_id).await;
    let failed = serve.settled(&broken_id).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["kind"], "truncated", "{failed}");

    // The gallery lists newest first, in pages.
    let (status, page) = serve.get("/api/images?limit=2").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = page["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [broken_id.as_str(), second["id"].as_str().unwrap()]);
    let token = page["next_page_token"].as_str().expect("a next page");
    let (_, rest) = serve
        .get(&format!(
            "/api/images?limit=2&page_token={}",
            common::encode(token)
        ))
        .await;
    assert_eq!(rest["images"][0]["id"], id.as_str());
    assert!(rest["next_page_token"].is_null());

    // Refused before anything is stored: no token, a non-image, a bomb, an oversize body.
    let before = env.gcs.list("uploads", "").await;
    let (status, e) = serve.upload("a.jpg", photo.clone(), None).await;
    assert_eq!(
        (status, e["error"]["kind"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = serve.upload("a.jpg", photo.clone(), Some("wrong")).await;
    assert_eq!(status, 401);
    let no_token = http().get(serve.url("/api/events")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let (status, e) = serve
        .upload("notes.txt", b"just some text\n".repeat(100), Some(TOKEN))
        .await;
    assert_eq!(
        (status, e["error"]["kind"].as_str()),
        (415, Some("unsupported_type")),
        "{e}"
    );
    let (status, e) = serve
        .upload(
            "bomb.png",
            corpus("derived_bomb_1bit_50000x50000.png"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, e["error"]["kind"].as_str()),
        (422, Some("image_too_large")),
        "{e}"
    );
    let mut oversize = photo.clone();
    oversize.resize(2_500_000, 0);
    let (status, e) = serve.upload("big.jpg", oversize, Some(TOKEN)).await;
    assert_eq!(
        (status, e["error"]["kind"].as_str()),
        (413, Some("too_large")),
        "{e}"
    );
    assert_eq!(
        env.gcs.list("uploads", "").await,
        before,
        "a refused upload was stored"
    );

    // A storage outage: 503 with Retry-After, and nothing half-written once it is back.
    env.gcs.stop();
    let response = http()
        .post(serve.url("/api/images?name=outage.jpg"))
        .bearer_auth(TOKEN)
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let e: Value = response.json().await.unwrap();
    assert_eq!(e["error"]["kind"], "storage_unavailable");
    env.gcs.resume().await;
    assert_eq!(
        env.gcs.list("uploads", "").await,
        before,
        "the outage left an object"
    );

    // A new process reads the same states from storage.
    serve.proc.signal("TERM");
    let exit = serve
        .proc
        .wait_timeout(Duration::from_secs(30))
        .expect("stopped on SIGTERM");
    assert!(exit.success(), "{exit}:\n{}", serve.proc.log_text());
    let serve = Serve::start(&serve_args, &emulators, log()).await;
    assert_eq!(serve.settled(&broken_id).await["state"], "failed");
    assert_eq!(serve.settled(&id).await["state"], "ready");
}

/// Sends a request by hand: for bodies that stop early or never finish.
async fn raw_request(
    port: u16,
    head: &str,
    body: &[u8],
    then_close: bool,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    if then_close {
        stream.shutdown().await.unwrap();
    }
    stream
}

async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir(dir)
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walkdir(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_refuses_hostile_requests_with_typed_errors_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let serve = Serve::start(
        &[
            "--local",
            &data_arg,
            "--size=64",
            "--read-timeout=1",
            "--uploads-per-client=1",
        ],
        &[],
        tmp.path().join("serve.log"),
    )
    .await;
    let uploads = data.join("uploads");
    let photo = corpus("plasma_PastelHills_3200x2000.jpg");
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = http().post(serve.url("/api/images")).body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error"]["kind"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let cases = [
        (
            "no content type",
            post(None, photo.clone()).await,
            (415, "missing_content_type"),
        ),
        (
            "text/plain",
            post(Some("text/plain"), photo.clone()).await,
            (415, "wrong_content_type"),
        ),
        (
            "a form",
            post(Some("application/x-www-form-urlencoded"), b"a=b".to_vec()).await,
            (415, "wrong_content_type"),
        ),
        (
            "empty body",
            post(Some("image/jpeg"), Vec::new()).await,
            (400, "no_file"),
        ),
        (
            "bomb header",
            post(
                Some("image/jpeg"),
                corpus("derived_sof_lie_65500x65500_hopper.jpg"),
            )
            .await,
            (422, "image_too_large"),
        ),
        (
            "lossless JPEG",
            post(Some("image/jpeg"), lossless_jpeg()).await,
            (415, "unsupported_type"),
        ),
    ];
    for (what, got, want) in cases {
        assert_eq!((got.0, got.1.as_str()), want, "{what}");
    }

    // Multipart: no file field; one good file and one text file (the whole request fails).
    let form = reqwest::multipart::Form::new().text("note", "hello");
    let response = http()
        .post(serve.url("/api/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["kind"],
        "no_file"
    );
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("ok.jpg"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"text".to_vec()).file_name("no.txt"),
        );
    let response = http()
        .post(serve.url("/api/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(
        files_under(&uploads).is_empty(),
        "{:?}",
        files_under(&uploads)
    );

    // A body that ends early, and one that stalls: refused, nothing stored.
    let head = format!(
        "POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        photo.len()
    );
    let mut truncated = raw_request(serve.port, &head, &photo[..photo.len() / 2], true).await;
    let answer = read_response(&mut truncated).await;
    assert!(answer.is_empty() || answer.contains(" 400 "), "{answer}");
    let mut stalled = raw_request(serve.port, &head, &photo[..1000], false).await;
    // While it stalls it holds the client's only upload slot: 429 for another.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = http()
        .post(serve.url("/api/images"))
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let answer = read_response(&mut stalled).await;
    assert!(
        answer.contains(" 408 ") && answer.contains("\"timeout\""),
        "{answer}"
    );
    assert!(
        files_under(&uploads).is_empty(),
        "{:?}",
        files_under(&uploads)
    );

    // Hostile names are stored safely: one folder level per date, the base name only, no
    // control characters, at most 1024 bytes.
    for name in [
        "../../etc/passwd",
        "a\0b\r\n.jpg",
        &"n".repeat(5000),
        "..",
        "x/../../y.jpg",
    ] {
        let response = http()
            .post(serve.url("/api/images"))
            .query(&[("name", name)])
            .header("content-type", "image/jpeg")
            .body(photo.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", &name[..name.len().min(40)]);
        let accepted: Value = response.json().await.unwrap();
        let object = accepted["object"].as_str().unwrap();
        assert!(object.len() <= 1024, "{}", object.len());
        assert!(
            !object.contains("..") && !object.chars().any(char::is_control),
            "{object:?}"
        );
        assert_eq!(object.matches('/').count(), 3, "{object}");
        assert!(uploads.join(object).is_file(), "{object}");
    }
    let stored = files_under(&uploads);
    assert_eq!(stored.len(), 5, "{stored:?}");
    assert!(stored.iter().all(|p| p.starts_with(&uploads)));

    // And each becomes ready through the embedded worker.
    let (_, page) = serve.get("/api/images?limit=10").await;
    for image in page["images"].as_array().unwrap() {
        let done = serve.settled(image["id"].as_str().unwrap()).await;
        assert_eq!(done["state"], "ready", "{done}");
    }
    let (status, e) = serve.get("/api/images/not-an-id").await;
    assert_eq!(
        (status, e["error"]["kind"].as_str()),
        (404, Some("not_found"))
    );
    let metrics = http()
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("thumbd_uploads_total{outcome=\"accepted\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thumbd_uploads_total{outcome=\"timeout\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("thumbd_images_total 5"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_memory_for_uploads_are_refused_until_it_frees() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let serve = Serve::start(
        &[
            "--local",
            data.to_str().unwrap(),
            "--size=64",
            "--read-timeout=2",
            "--max-upload-bytes=1000000",
            "--upload-memory=1000000",
        ],
        &[],
        tmp.path().join("serve.log"),
    )
    .await;
    let photo = corpus("plasma_PastelHills_3200x2000.jpg");
    // A slow client declares 900 kB and holds them while it stalls.
    let head = "POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 900000\r\n\r\n";
    let mut stalled = raw_request(serve.port, head, &photo[..1000], false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let post = || {
        http()
            .post(serve.url("/api/images"))
            .header("content-type", "image/jpeg")
            .body(photo.clone())
            .send()
    };
    let busy = post().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert!(busy.headers().contains_key("retry-after"));
    assert_eq!(busy.json::<Value>().await.unwrap()["error"]["kind"], "busy");
    // Declared over the limit: refused before a byte is read.
    let head = "POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n";
    let mut oversize = raw_request(serve.port, head, b"", false).await;
    let answer = read_response(&mut oversize).await;
    assert!(
        answer.contains(" 413 ") && answer.contains("too_large"),
        "{answer}"
    );
    // Once the slow one times out, its memory is free again.
    let answer = read_response(&mut stalled).await;
    assert!(answer.contains(" 408 "), "{answer}");
    assert_eq!(post().await.unwrap().status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_security_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let serve = Serve::start(
        &["--local", data.to_str().unwrap()],
        &[],
        tmp.path().join("serve.log"),
    )
    .await;
    let mut total = 0;
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let response = http().get(serve.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "CORS is off by default"
        );
        total += response.bytes().await.unwrap().len();
    }
    assert!(total <= 100 * 1024, "the page is {total} bytes");
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    for args in [
        vec!["serve"],
        vec!["serve", "--upload-bucket", "uploads"],
        vec![
            "serve",
            "--upload-bucket",
            "Bad_Bucket!",
            "--thumbnail-bucket",
            "t",
            "--events-subscription",
            "projects/p/subscriptions/s",
        ],
        vec!["serve", "--local", "/tmp/x", "--size", "0"],
        vec!["serve", "--local", "/tmp/x", "--max-upload-bytes", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_thumbd"))
            .args(&args)
            .env_remove("THUMBD_SIZE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("thumbd serve: invalid configuration: "),
            "{stderr}"
        );
    }
}

/// A JPEG whose frame header names the lossless process (SOF3), which no decoder here reads:
/// a corpus photo with its SOF0 marker relabelled, refused from the header.
fn lossless_jpeg() -> Vec<u8> {
    let mut data = corpus("pil_hopper_orientation_6.jpg");
    let sof = data
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    data[sof + 1] = 0xC3;
    data
}
