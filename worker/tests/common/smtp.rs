//! A local SMTP sink for `thumbd notify`'s tests: aiosmtpd (from PyPI) with its `Mailbox`
//! handler, which stores every accepted mail in a Maildir with the envelope added as
//! `X-MailFrom` and `X-RcptTo` headers. Found through `THUMBD_AIOSMTPD`, the `aiosmtpd`
//! command (tests/run installs it into target/test-tools/venv/bin/).

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{required_tool, Proc};

pub fn aiosmtpd_binary() -> PathBuf {
    required_tool(
        "THUMBD_AIOSMTPD",
        "the aiosmtpd command (pip install aiosmtpd==1.4.6 puts it in the environment's bin/)",
    )
}

/// aiosmtpd on 127.0.0.1:`port`, started and stopped by the test (the port stays the same).
pub struct SmtpSink {
    pub port: u16,
    pub maildir: PathBuf,
    dir: PathBuf,
    /// `(certificate, key)`: STARTTLS offered and required before any mail.
    starttls: Option<(PathBuf, PathBuf)>,
    proc: Option<Proc>,
}

/// One mail as the sink stored it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Unfolded headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, transfer-decoded.
    pub body: String,
}

impl Mail {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn parse(text: &str) -> Mail {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut mail = Mail {
            headers,
            body: String::new(),
        };
        mail.body = match mail.header("Content-Transfer-Encoding") {
            None | Some("7bit") | Some("8bit") => body.to_string(),
            Some("quoted-printable") => quoted_printable(body),
            Some(other) => panic!("unexpected transfer encoding {other} in:\n{text}"),
        };
        mail
    }
}

/// Decodes a quoted-printable body (soft line breaks and `=XX`).
fn quoted_printable(body: &str) -> String {
    let body = body.replace("=\n", "");
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'=', Some(hex)) => {
                let hex = std::str::from_utf8(hex).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("=XX in quoted-printable"));
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("a UTF-8 body")
}

impl SmtpSink {
    /// A sink on `port` storing mails under `dir`, not started yet.
    pub fn new(dir: &Path, port: u16) -> SmtpSink {
        SmtpSink {
            port,
            maildir: dir.join("maildir"),
            dir: dir.to_path_buf(),
            starttls: None,
            proc: None,
        }
    }

    /// The same, answering MAIL with 530 until the client said STARTTLS with `cert` and `key`.
    pub fn with_starttls(dir: &Path, port: u16, cert: &Path, key: &Path) -> SmtpSink {
        let mut sink = SmtpSink::new(dir, port);
        sink.starttls = Some((cert.to_path_buf(), key.to_path_buf()));
        sink
    }

    /// Starts aiosmtpd and waits for its greeting.
    pub fn start(&mut self) {
        let mut cmd = Command::new(aiosmtpd_binary());
        cmd.arg("-n")
            .args(["-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"]);
        if let Some((cert, key)) = &self.starttls {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        cmd.arg(&self.maildir);
        let n = std::fs::read_dir(&self.dir).map_or(0, |d| d.count());
        let mut proc = Proc::spawn("aiosmtpd", cmd, self.dir.join(format!("aiosmtpd-{n}.log")));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.greets() {
                break;
            }
            if let Some(status) = proc.wait_timeout(Duration::ZERO) {
                panic!("aiosmtpd exited ({status}):\n{}", proc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not answer in 30 s:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.proc = Some(proc);
    }

    /// Whether a connection gets the 220 greeting.
    fn greets(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut greeting = [0u8; 3];
        stream.read_exact(&mut greeting).is_ok() && &greeting == b"220"
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Every mail stored so far (by file name, so in no particular order within a second).
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        files
            .iter()
            .map(|f| Mail::parse(&std::fs::read_to_string(f).expect("a stored mail")))
            .collect()
    }

    /// Waits up to `timeout` for at least `n` mails.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} mails after {timeout:?}, waiting for {n}: {mails:#?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A test CA and a certificate it signed for `localhost`, made with the openssl command:
/// `(ca.pem, cert.pem, key.pem)` in `dir`.
pub fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).to_str().expect("a UTF-8 path").to_string();
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    let steps = [
        format!(
            "req -x509 -days 2 -subj /CN=thumbd-test-ca {key} -keyout {} -out {}",
            path("ca.key"),
            path("ca.pem")
        ),
        format!(
            "req -subj /CN=localhost {key} -keyout {} -out {}",
            path("key.pem"),
            path("leaf.csr")
        ),
        format!(
            "x509 -req -days 2 -CAcreateserial -in {} -CA {} -CAkey {} -extfile {} -out {}",
            path("leaf.csr"),
            path("ca.pem"),
            path("ca.key"),
            path("leaf.ext"),
            path("cert.pem")
        ),
    ];
    for step in steps {
        let out = Command::new("openssl")
            .args(step.split(' '))
            .output()
            .expect("running openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        path("ca.pem").into(),
        path("cert.pem").into(),
        path("key.pem").into(),
    )
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
