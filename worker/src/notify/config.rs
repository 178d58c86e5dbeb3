//! `thumbd notify` flags, validated into a [`Config`] before any client is built (exit code 2
//! on a bad value, as for the worker).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use lettre::message::{Mailbox, Mailboxes};

use super::mail::Addresses;
use crate::service::config::{emulator_endpoint, is_resource_name, LogFormat};

/// The password's variable; read from the environment only, never from a flag (a flag shows
/// in `ps` and in the pod's spec).
pub const PASSWORD_VAR: &str = "THUMBD_SMTP_PASSWORD";

#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// Pub/Sub subscription on the worker's `--events-topic`.
    #[arg(
        long,
        env = "THUMBD_SUBSCRIPTION",
        value_name = "projects/P/subscriptions/S"
    )]
    pub subscription: String,

    /// The mail server, as HOST:PORT, or HOST alone for the TLS mode's usual port (587 for
    /// starttls, 465 for tls, 25 for none).
    #[arg(long, env = "THUMBD_SMTP", value_name = "HOST[:PORT]")]
    pub smtp: String,

    /// How the connection is encrypted: `starttls` (required: no mail without it), `tls`
    /// (implicit TLS, "SMTPS"), or `none` (a relay on a trusted network; no credentials).
    #[arg(long, env = "THUMBD_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,

    /// User name for SMTP AUTH; the password comes from THUMBD_SMTP_PASSWORD.
    #[arg(long, env = "THUMBD_SMTP_USERNAME", value_name = "USER")]
    pub smtp_username: Option<String>,

    /// Seconds an SMTP connection or command may take before the send counts as failed.
    #[arg(
        long,
        env = "THUMBD_SMTP_TIMEOUT",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub smtp_timeout: u64,

    /// Recipient; repeat the flag, or give a comma-separated list (`a@x.org, "B" <b@y.org>`).
    #[arg(long, env = "THUMBD_TO", value_name = "ADDRESS", required = true)]
    pub to: Vec<String>,

    /// Sender, e.g. `thumbd <thumbd@example.com>`.
    #[arg(long, env = "THUMBD_FROM", value_name = "ADDRESS")]
    pub from: String,

    /// Mails sent at once (each on its own SMTP connection, kept open between mails).
    #[arg(
        long,
        env = "THUMBD_CONCURRENCY",
        default_value_t = 4,
        value_name = "N"
    )]
    pub concurrency: usize,

    /// Events remembered as mailed, to skip redelivered copies; the oldest are forgotten first.
    #[arg(
        long,
        env = "THUMBD_DEDUPE_KEYS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub dedupe_keys: usize,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(
        long,
        env = "THUMBD_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Seconds mails being sent may take to finish after SIGTERM before their messages are
    /// nacked.
    #[arg(
        long,
        env = "THUMBD_SHUTDOWN_TIMEOUT",
        default_value_t = 20,
        value_name = "SECS"
    )]
    pub shutdown_timeout: u64,

    /// Lease extension asked of Pub/Sub per message, in seconds (10–600).
    #[arg(
        long,
        env = "THUMBD_LEASE_EXTENSION",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub lease_extension: u64,

    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, env = "THUMBD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// SMTP AUTH credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A validated `thumbd notify` configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub subscription: String,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<Credentials>,
    pub smtp_timeout: Duration,
    pub addresses: Addresses,
    pub concurrency: usize,
    pub dedupe_keys: usize,
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub lease_extension: Duration,
    pub log_format: LogFormat,
}

/// Why the configuration was refused (exit code 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--subscription `{0}` is not of the form projects/PROJECT/subscriptions/NAME")]
    BadSubscription(String),
    #[error("--smtp `{0}` is not HOST or HOST:PORT")]
    BadSmtp(String),
    #[error(
        "--{flag} `{value}` is not an email address (`a@example.com` or `Name <a@example.com>`)"
    )]
    BadAddress { flag: &'static str, value: String },
    #[error("--to names no address")]
    NoRecipient,
    #[error("--from `{0}` must be one address")]
    SeveralFrom(String),
    #[error("--smtp-username needs the password in {PASSWORD_VAR}")]
    NoPassword,
    #[error("{PASSWORD_VAR} is set but --smtp-username (THUMBD_SMTP_USERNAME) is not")]
    NoUsername,
    #[error(
        "--smtp-tls none with credentials would send the password in clear: use starttls or tls"
    )]
    CredentialsInClear,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error(transparent)]
    Service(#[from] crate::service::config::ConfigError),
}

impl NotifyArgs {
    /// Checks everything that can be checked without the network; `password` is the value of
    /// THUMBD_SMTP_PASSWORD.
    pub fn validate(&self, password: Option<String>) -> Result<Config, ConfigError> {
        if !is_resource_name(&self.subscription, "subscriptions") {
            return Err(ConfigError::BadSubscription(self.subscription.clone()));
        }
        let (host, port) = host_port(&self.smtp, self.smtp_tls.default_port())
            .ok_or_else(|| ConfigError::BadSmtp(self.smtp.clone()))?;
        let from: Mailbox = self.from.parse().map_err(|_| {
            if self
                .from
                .parse::<Mailboxes>()
                .is_ok_and(|m| m.iter().count() > 1)
            {
                ConfigError::SeveralFrom(self.from.clone())
            } else {
                ConfigError::BadAddress {
                    flag: "from",
                    value: self.from.clone(),
                }
            }
        })?;
        let mut to = Vec::new();
        for value in &self.to {
            let list: Mailboxes = value.parse().map_err(|_| ConfigError::BadAddress {
                flag: "to",
                value: value.clone(),
            })?;
            to.extend(list);
        }
        if to.is_empty() {
            return Err(ConfigError::NoRecipient);
        }
        let password = password.filter(|p| !p.is_empty());
        let username = self.smtp_username.clone().filter(|u| !u.is_empty());
        let credentials = match (username, password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (Some(_), None) => return Err(ConfigError::NoPassword),
            (None, Some(_)) => return Err(ConfigError::NoUsername),
            (None, None) => None,
        };
        if credentials.is_some() && self.smtp_tls == SmtpTls::None {
            return Err(ConfigError::CredentialsInClear);
        }
        for (flag, value) in [
            ("concurrency", self.concurrency),
            ("dedupe-keys", self.dedupe_keys),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { flag });
            }
        }
        if let Ok(value) = std::env::var("PUBSUB_EMULATOR_HOST") {
            if !value.is_empty() {
                emulator_endpoint("PUBSUB_EMULATOR_HOST", &value)?;
            }
        }
        Ok(Config {
            subscription: self.subscription.clone(),
            host,
            port,
            tls: self.smtp_tls,
            credentials,
            smtp_timeout: Duration::from_secs(self.smtp_timeout.max(1)),
            addresses: Addresses { from, to },
            concurrency: self.concurrency,
            dedupe_keys: self.dedupe_keys,
            listen: self.listen,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            lease_extension: Duration::from_secs(self.lease_extension.clamp(10, 600)),
            log_format: self.log_format,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(value: &str, default_port: u16) -> Option<(String, u16)> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    let valid = if value.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    valid.then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NotifyArgs,
    }

    const BASE: [&str; 8] = [
        "--subscription",
        "projects/p/subscriptions/events",
        "--smtp",
        "smtp.example.com",
        "--to",
        "ops@example.com",
        "--from",
        "thumbd <thumbd@example.com>",
    ];

    /// BASE with `extra`, whose flags replace BASE's (`--to` adds to them).
    fn parse(extra: &[&str]) -> NotifyArgs {
        let mut all = vec!["thumbd"];
        for pair in BASE.chunks(2) {
            if pair[0] == "--to" || !extra.contains(&pair[0]) {
                all.extend_from_slice(pair);
            }
        }
        all.extend_from_slice(extra);
        Cli::try_parse_from(all).unwrap().args
    }

    #[test]
    fn a_valid_config_with_the_defaults() {
        let c = parse(&["--to", "a@x.org, \"Doe, Jane\" <jane@y.org>"])
            .validate(None)
            .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("smtp.example.com", 587));
        assert_eq!(c.tls, SmtpTls::Starttls);
        assert_eq!(c.credentials, None);
        let to: Vec<String> = c.addresses.to.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            to,
            ["ops@example.com", "a@x.org", "\"Doe, Jane\" <jane@y.org>"]
        );
        assert_eq!(c.addresses.from.email.to_string(), "thumbd@example.com");
        assert_eq!(c.dedupe_keys, 10_000);
    }

    #[test]
    fn ports_follow_the_tls_mode_unless_given() {
        let port = |extra: &[&str]| parse(extra).validate(None).unwrap().port;
        assert_eq!(port(&["--smtp-tls", "tls"]), 465);
        assert_eq!(port(&["--smtp-tls", "none"]), 25);
        assert_eq!(port(&["--smtp", "127.0.0.1:2525"]), 2525);
        let c = parse(&["--smtp", "[::1]:2525"]).validate(None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 2525));
    }

    #[test]
    fn credentials_need_both_halves_and_encryption() {
        let user = ["--smtp-username", "mailer"];
        let c = parse(&user).validate(Some("secret".into())).unwrap();
        assert_eq!(
            c.credentials,
            Some(Credentials {
                username: "mailer".into(),
                password: "secret".into()
            })
        );
        assert!(!format!("{c:?}").contains("secret"), "never logged");
        assert_eq!(
            parse(&user).validate(None).unwrap_err(),
            ConfigError::NoPassword
        );
        assert_eq!(
            parse(&[]).validate(Some("secret".into())).unwrap_err(),
            ConfigError::NoUsername
        );
        assert_eq!(
            parse(&[&user[..], &["--smtp-tls", "none"]].concat())
                .validate(Some("secret".into()))
                .unwrap_err(),
            ConfigError::CredentialsInClear
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let err = |extra: &[&str]| parse(extra).validate(None).unwrap_err();
        assert!(matches!(
            err(&["--subscription", "events"]),
            ConfigError::BadSubscription(_)
        ));
        for smtp in ["", "host:", "host:0", "host:99999", "a b:25", "[::1"] {
            assert!(
                matches!(err(&["--smtp", smtp]), ConfigError::BadSmtp(_)),
                "{smtp}"
            );
        }
        assert!(matches!(
            err(&["--to", "not an address"]),
            ConfigError::BadAddress { flag: "to", .. }
        ));
        assert!(matches!(
            err(&["--from", "nobody"]),
            ConfigError::BadAddress { flag: "from", .. }
        ));
        assert!(matches!(
            err(&["--from", "a@x.org, b@y.org"]),
            ConfigError::SeveralFrom(_)
        ));
        assert_eq!(
            err(&["--concurrency", "0"]),
            ConfigError::Zero {
                flag: "concurrency"
            }
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("h", 25), Some(("h".into(), 25)));
        assert_eq!(host_port("h:2525", 25), Some(("h".into(), 2525)));
        assert_eq!(host_port("[::1]", 25), Some(("::1".into(), 25)));
        assert_eq!(
            host_port("::1", 25),
            None,
            "a bare IPv6 address needs brackets"
        );
    }
}
