//! `thumbd serve` for the integration tests: started on a free port, ready when `/readyz`
//! answers, with the API calls the tests make.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{encode, free_port, http, wait_ready, Proc};

/// A running `thumbd serve`.
pub struct Serve {
    pub proc: Proc,
    pub port: u16,
}

impl Serve {
    /// Starts `thumbd serve ARGS` (logging to `log`) and waits up to 60 s for `/readyz`.
    pub async fn start(args: &[&str], envs: &[(&str, String)], log: PathBuf) -> Serve {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thumbd"));
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "info,thumbd=debug")
            .env_remove("THUMBD_SIZE")
            .env_remove("THUMBD_AUTH_TOKEN");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut serve = Serve {
            proc: Proc::spawn("thumbd serve", cmd, log),
            port,
        };
        let readyz = serve.url("/readyz");
        wait_ready(&mut serve.proc, &readyz, Duration::from_secs(60)).await;
        serve
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn upload(&self, name: &str, data: Vec<u8>, token: Option<&str>) -> (u16, Value) {
        let mut request = http()
            .post(self.url(&format!("/api/images?name={}", encode(name))))
            .header("content-type", "application/octet-stream")
            .body(data);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = http().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the image's state until it is final.
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, image) = self.get(&format!("/api/images/{id}")).await;
            assert_eq!(status, 200, "{image}");
            if image["state"] != "pending" {
                return image;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still pending after 60 s:\n{}",
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
