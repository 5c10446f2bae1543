//! Backend health checks: what to check ([`Check`], [`Timing`],
//! [`HealthSpec`]), one probe ([`probe`]), the up/down state machine
//! ([`Tracker`]) and the tokio tasks that run them ([`Monitor`]).
//!
//! A backend starts up (a restarted daemon must not take backends out while
//! it checks them again), goes down after `fall` failed probes in a row and
//! comes back after `rise` successful probes in a row. Every change is sent
//! to the daemon as an [`Event`]; the daemon turns it into data-plane updates
//! (no new flows to a down backend, the sorry server when all are down) and
//! alert-log lines. This module does no data-plane work itself.
//!
//! # Configuration
//!
//! A [`HealthSpec`] is one flat table: `kind` picks the check, and the
//! check's own fields and the timing fields sit beside it. Every field but
//! `kind` is optional; the comments give the defaults.
//!
//! ```toml
//! [health]
//! kind = "https"              # "none", "tcp", "http", "https" or "icmp"
//! path = "/healthz"           # http, https: default "/"
//! expect_status = 200         # http, https: default 200
//! body_contains = "ok"        # http, https: default none (any body)
//! host = "www.example.com"    # http, https: Host header and TLS server name;
//!                             #   default the backend's address
//! verify_certificate = false  # https only: default false
//! interval_ms = 2000          # start of one probe to the start of the next
//! timeout_ms = 1000           # bound on the whole probe; <= interval_ms
//! rise = 2                    # successes in a row that bring a backend up
//! fall = 3                    # failures in a row that take it down
//! ```
//!
//! Unknown fields, an unknown `kind`, and a field that does not belong to
//! the chosen kind (`path` with `kind = "tcp"`, `verify_certificate` with
//! `kind = "http"`) are errors. Parsing does not check ranges: call
//! [`HealthSpec::validate`] on what was read.
//!
//! Why the table is read the way it is: serde cannot combine
//! `#[serde(flatten)]` of an internally tagged enum with
//! `deny_unknown_fields` (the enum sees the timing fields as unknown, and the
//! outer struct rejects even `kind`), and its internally tagged enums let
//! unknown fields through on unit variants (`kind = "tcp"` with a `path`).
//! So [`HealthSpec`] (and [`Check`], on its own) are read and written
//! through private flat structs that name every field once, and then checked
//! against the kind. [`Timing`] is a plain struct with defaults.
//!
//! # Probes
//!
//! - `tcp`: a TCP connection to the backend's address and port succeeds.
//! - `http`, `https`: an HTTP/1.1 `GET path` (`Host:` `host` or the
//!   backend's address, `Connection: close`, `User-Agent: lb-health/<version>`)
//!   answers with `expect_status`, and, if `body_contains` is set, the first
//!   64 KiB of the body contain it. HTTPS uses rustls (ring) with TLS 1.3 and
//!   1.2, server name `host` or the backend's IP.
//! - `icmp`: an ICMP (IPv4) or ICMPv6 echo request to the backend's IP is
//!   answered; the port is ignored. This needs `CAP_NET_RAW` (or a
//!   `net.ipv4.ping_group_range` that holds the daemon's group).
//!
//! The whole probe (connect, TLS handshake, request, response, body) is
//! bounded by `timeout_ms`. Probe connections are closed with a reset
//! (zero linger) so that frequent checks do not fill the balancer's port
//! range with sockets in TIME_WAIT.
use std::{
    collections::BTreeMap,
    error::Error as StdError,
    fmt, io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, header, http::uri::PathAndQuery};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::mpsc,
    task::AbortHandle,
    time::{Instant, MissedTickBehavior},
};
use tokio_rustls::TlsConnector;

/// The shortest `interval_ms` allowed.
pub const MIN_INTERVAL_MS: u64 = 100;

/// The longest `interval_ms` allowed (an hour).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

/// How much of an HTTP response body is read to look for `body_contains`.
pub const BODY_LIMIT: usize = 64 * 1024;

const USER_AGENT: &str = concat!("lb-health/", env!("CARGO_PKG_VERSION"));

/// What to check.
///
/// Serde: one table tagged by `kind` (`kind = "http"`), fields in
/// snake_case, defaults as below; unknown fields, and fields of another kind,
/// are rejected. Inside a [`HealthSpec`] the same fields sit in one table
/// with the [`Timing`] fields (see the module doc). (This is the form of
/// `#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]`,
/// but read through a private flat struct: serde's tagged enums ignore
/// unknown fields on unit variants, so `kind = "tcp"` with a `path` would
/// pass.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCheck", into = "RawCheck")]
pub enum Check {
    /// No checking: the backend is always up.
    #[default]
    None,
    /// A TCP connection to the backend's address and port succeeds.
    Tcp,
    /// An HTTP/1.1 GET answers with the expected status (and body).
    Http {
        /// The request's path and query; starts with `/`. Default `/`.
        path: String,
        /// The status the backend must answer with. Default 200.
        expect_status: u16,
        /// If set, the first 64 KiB of the body must contain this text.
        body_contains: Option<String>,
        /// The `Host` header; default the backend's address (`198.18.1.11:80`).
        host: Option<String>,
    },
    /// The same as [`Check::Http`], over TLS.
    Https {
        /// The request's path and query; starts with `/`. Default `/`.
        path: String,
        /// The status the backend must answer with. Default 200.
        expect_status: u16,
        /// If set, the first 64 KiB of the body must contain this text.
        body_contains: Option<String>,
        /// The `Host` header and the TLS server name (SNI); a DNS name or an
        /// IP address, without a port. Default the backend's address (and
        /// its IP as the server name, which sends no SNI).
        host: Option<String>,
        /// Whether the backend's certificate must chain to a CA of the
        /// system's bundle (`SSL_CERT_FILE`, or the distribution's
        /// `ca-certificates` file) and name `host` (or the backend's IP).
        ///
        /// Default false, because backends often have self-signed
        /// certificates: then any certificate is accepted, but the
        /// handshake's signatures are still checked against the certificate
        /// the backend sent (so the backend must hold that certificate's key).
        verify_certificate: bool,
    },
    /// An ICMP or ICMPv6 echo request to the backend's IP is answered. Needs
    /// `CAP_NET_RAW`.
    Icmp,
}

fn default_path() -> String {
    "/".to_owned()
}

fn default_status() -> u16 {
    200
}

impl Check {
    /// The check's `kind` as written in the configuration (`"http"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Check::None => "none",
            Check::Tcp => "tcp",
            Check::Http { .. } => "http",
            Check::Https { .. } => "https",
            Check::Icmp => "icmp",
        }
    }

    /// Checks the values that parsing does not: `path` starts with `/` and
    /// is a valid request target, `expect_status` is from 100 to 599, `host`
    /// can be a `Host` header (and, for HTTPS, a TLS server name), and
    /// `body_contains` fits in the part of the body that is read.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            Check::None | Check::Tcp | Check::Icmp => Ok(()),
            Check::Http {
                path,
                expect_status,
                body_contains,
                host,
            } => validate_http(
                path,
                *expect_status,
                body_contains.as_deref(),
                host.as_deref(),
                false,
            ),
            Check::Https {
                path,
                expect_status,
                body_contains,
                host,
                ..
            } => validate_http(
                path,
                *expect_status,
                body_contains.as_deref(),
                host.as_deref(),
                true,
            ),
        }
    }
}

fn validate_http(
    path: &str,
    expect_status: u16,
    body_contains: Option<&str>,
    host: Option<&str>,
    tls: bool,
) -> Result<(), SpecError> {
    if !path.starts_with('/') {
        return Err(SpecError(format!("path {path:?} must start with '/'")));
    }
    if let Err(error) = path.parse::<PathAndQuery>() {
        return Err(SpecError(format!(
            "path {path:?} is not a valid HTTP path: {error}"
        )));
    }
    if !(100..=599).contains(&expect_status) {
        return Err(SpecError(format!(
            "expect_status is {expect_status}; it must be an HTTP status, from 100 to 599"
        )));
    }
    if let Some(needle) = body_contains
        && needle.len() > BODY_LIMIT
    {
        return Err(SpecError(format!(
            "body_contains is {} bytes long; only the first {BODY_LIMIT} bytes of the body are read",
            needle.len()
        )));
    }
    if let Some(host) = host {
        let bad_header = host.is_empty()
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
            || header::HeaderValue::from_str(host).is_err();
        if bad_header {
            return Err(SpecError(format!("host {host:?} is not a valid host name")));
        }
        if tls && ServerName::try_from(host).is_err() {
            return Err(SpecError(format!(
                "host {host:?} is not a valid TLS server name (a DNS name or an IP address, without a port)"
            )));
        }
    }
    Ok(())
}

/// When and how often to check, and how many results in a row change the
/// state.
///
/// Serde: every field is optional, with the defaults below; unknown fields
/// are rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// From the start of one probe to the start of the next, in
    /// milliseconds. Default 2000; at least 100.
    pub interval_ms: u64,
    /// Bound on one whole probe, in milliseconds. Default 1000; more than 0
    /// and at most `interval_ms`.
    pub timeout_ms: u64,
    /// Successful probes in a row that bring a down backend up. Default 2.
    pub rise: u32,
    /// Failed probes in a row that take an up backend down. Default 3.
    pub fall: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            interval_ms: 2000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
        }
    }
}

impl Timing {
    /// Checks that `interval_ms` is from 100 to 3600000 (an hour),
    /// `timeout_ms` more than 0 and at most `interval_ms`, and `rise` and
    /// `fall` at least 1.
    pub fn validate(&self) -> Result<(), SpecError> {
        let Timing {
            interval_ms,
            timeout_ms,
            rise,
            fall,
        } = *self;
        let message = if interval_ms < MIN_INTERVAL_MS {
            format!("interval_ms is {interval_ms}; it must be at least {MIN_INTERVAL_MS}")
        } else if interval_ms > MAX_INTERVAL_MS {
            format!("interval_ms is {interval_ms}; it must be at most {MAX_INTERVAL_MS} (an hour)")
        } else if timeout_ms == 0 {
            "timeout_ms is 0; it must be more than 0".to_owned()
        } else if timeout_ms > interval_ms {
            format!(
                "timeout_ms is {timeout_ms}; it must not be more than interval_ms ({interval_ms})"
            )
        } else if rise == 0 {
            "rise is 0; it must be at least 1".to_owned()
        } else if fall == 0 {
            "fall is 0; it must be at least 1".to_owned()
        } else {
            return Ok(());
        };
        Err(SpecError(message))
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1)).min(self.interval())
    }
}

/// A health check as configured for a service or a backend: the check and
/// its timing, read from one flat table (see the module doc for the TOML).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec", into = "RawSpec")]
pub struct HealthSpec {
    /// What to check (the table's `kind` and the kind's fields).
    pub check: Check,
    /// When to check (the table's `interval_ms`, `timeout_ms`, `rise`, `fall`).
    pub timing: Timing,
}

impl HealthSpec {
    /// Checks the check's and the timing's values; the error says which
    /// field is wrong and what it must be.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.check.validate()?;
        self.timing.validate()
    }
}

/// A health-check setting that is out of range, with a message that names
/// the field and says what it must be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// The flat form of [`Check`] in configuration files.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_certificate: Option<bool>,
}

/// The flat form of [`HealthSpec`] in configuration files: [`RawCheck`]'s
/// fields and [`Timing`]'s (`flatten` would not reject unknown fields).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_certificate: Option<bool>,
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_rise")]
    rise: u32,
    #[serde(default = "default_fall")]
    fall: u32,
}

fn default_interval_ms() -> u64 {
    Timing::default().interval_ms
}

fn default_timeout_ms() -> u64 {
    Timing::default().timeout_ms
}

fn default_rise() -> u32 {
    Timing::default().rise
}

fn default_fall() -> u32 {
    Timing::default().fall
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    None,
    Tcp,
    Http,
    Https,
    Icmp,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::None => "none",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Icmp => "icmp",
        })
    }
}

impl TryFrom<RawCheck> for Check {
    type Error = SpecError;

    fn try_from(raw: RawCheck) -> Result<Self, SpecError> {
        let misplaced = |field: &str, kinds: &str| {
            SpecError(format!(
                "{field} is only for kind = {kinds}, not for kind = \"{}\"",
                raw.kind
            ))
        };
        let http_fields = [
            ("path", raw.path.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("body_contains", raw.body_contains.is_some()),
            ("host", raw.host.is_some()),
        ];
        if let Some((field, _)) = http_fields.iter().find(|(_, set)| *set)
            && !matches!(raw.kind, Kind::Http | Kind::Https)
        {
            return Err(misplaced(field, "\"http\" or \"https\""));
        }
        if raw.verify_certificate.is_some() && raw.kind != Kind::Https {
            return Err(misplaced("verify_certificate", "\"https\""));
        }
        Ok(match raw.kind {
            Kind::None => Check::None,
            Kind::Tcp => Check::Tcp,
            Kind::Icmp => Check::Icmp,
            Kind::Http => Check::Http {
                path: raw.path.unwrap_or_else(default_path),
                expect_status: raw.expect_status.unwrap_or_else(default_status),
                body_contains: raw.body_contains,
                host: raw.host,
            },
            Kind::Https => Check::Https {
                path: raw.path.unwrap_or_else(default_path),
                expect_status: raw.expect_status.unwrap_or_else(default_status),
                body_contains: raw.body_contains,
                host: raw.host,
                verify_certificate: raw.verify_certificate.unwrap_or(false),
            },
        })
    }
}

impl From<Check> for RawCheck {
    fn from(check: Check) -> Self {
        let mut raw = RawCheck {
            kind: Kind::None,
            path: None,
            expect_status: None,
            body_contains: None,
            host: None,
            verify_certificate: None,
        };
        match check {
            Check::None => {}
            Check::Tcp => raw.kind = Kind::Tcp,
            Check::Icmp => raw.kind = Kind::Icmp,
            Check::Http {
                path,
                expect_status,
                body_contains,
                host,
            } => {
                raw.kind = Kind::Http;
                raw.path = Some(path);
                raw.expect_status = Some(expect_status);
                raw.body_contains = body_contains;
                raw.host = host;
            }
            Check::Https {
                path,
                expect_status,
                body_contains,
                host,
                verify_certificate,
            } => {
                raw.kind = Kind::Https;
                raw.path = Some(path);
                raw.expect_status = Some(expect_status);
                raw.body_contains = body_contains;
                raw.host = host;
                raw.verify_certificate = Some(verify_certificate);
            }
        }
        raw
    }
}

impl TryFrom<RawSpec> for HealthSpec {
    type Error = SpecError;

    fn try_from(raw: RawSpec) -> Result<Self, SpecError> {
        let check = Check::try_from(RawCheck {
            kind: raw.kind,
            path: raw.path,
            expect_status: raw.expect_status,
            body_contains: raw.body_contains,
            host: raw.host,
            verify_certificate: raw.verify_certificate,
        })?;
        Ok(HealthSpec {
            check,
            timing: Timing {
                interval_ms: raw.interval_ms,
                timeout_ms: raw.timeout_ms,
                rise: raw.rise,
                fall: raw.fall,
            },
        })
    }
}

impl From<HealthSpec> for RawSpec {
    fn from(spec: HealthSpec) -> Self {
        let RawCheck {
            kind,
            path,
            expect_status,
            body_contains,
            host,
            verify_certificate,
        } = spec.check.into();
        RawSpec {
            kind,
            path,
            expect_status,
            body_contains,
            host,
            verify_certificate,
            interval_ms: spec.timing.interval_ms,
            timeout_ms: spec.timing.timeout_ms,
            rise: spec.timing.rise,
            fall: spec.timing.fall,
        }
    }
}

/// A backend's health. Serde: `"up"`, `"down"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The backend gets new flows.
    Up,
    /// The backend gets no new flows.
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// The up/down state machine of one backend: pure, no I/O.
///
/// It starts up (a restarted daemon must not take backends out while it
/// checks them again). Up goes down after `fall` failed probes in a row; down
/// comes up after `rise` successful probes in a row. A result of the other
/// kind starts the count again, so a flapping backend keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    state: Health,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker that starts up. A `rise` or `fall` of 0 counts as 1.
    pub fn new(timing: &Timing) -> Self {
        Self::with_state(timing, Health::Up)
    }

    /// A tracker that starts in `state`, with no probes counted (used when a
    /// backend's check is restarted with new settings: it keeps its state).
    pub fn with_state(timing: &Timing, state: Health) -> Self {
        Tracker {
            state,
            rise: timing.rise.max(1),
            fall: timing.fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one probe result; returns `Some(new state)` when the state
    /// changes: up to down after `fall` consecutive failures, down to up
    /// after `rise` consecutive successes.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == Health::Down && self.successes >= self.rise {
                self.state = Health::Up;
                return Some(Health::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == Health::Up && self.failures >= self.fall {
                self.state = Health::Down;
                return Some(Health::Down);
            }
        }
        None
    }

    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }
}

/// The part of a probe that ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The TCP connect.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// Sending the request and waiting for the response's head.
    Response,
    /// Reading the response's body.
    Body,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "while connecting",
            Stage::TlsHandshake => "in the TLS handshake",
            Stage::Response => "waiting for the response",
            Stage::Body => "reading the body",
        })
    }
}

/// Why a probe failed; the text is meant for the alert log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The TCP connection could not be made: `connect to 198.18.1.11:80:
    /// connection refused`.
    #[error("connect to {target}: {}", io_text(.source))]
    Connect {
        /// The backend's address.
        target: SocketAddr,
        /// What connect(2) said.
        source: io::Error,
    },
    /// The probe did not finish within its timeout: `timed out after 1000 ms
    /// waiting for the response`.
    #[error("timed out after {} ms {stage}", .after.as_millis())]
    Timeout {
        /// The probe's timeout.
        after: Duration,
        /// What the probe was doing when time ran out.
        stage: Stage,
    },
    /// The TLS handshake failed: `TLS handshake with 198.18.1.11:443: invalid
    /// peer certificate: UnknownIssuer`.
    #[error("TLS handshake with {target}: {}", io_text(.source))]
    Tls {
        /// The backend's address.
        target: SocketAddr,
        /// What rustls said.
        source: io::Error,
    },
    /// The HTTP exchange failed (connection closed, malformed response).
    #[error("HTTP request to {target}: {detail}")]
    Http {
        /// The backend's address.
        target: SocketAddr,
        /// What went wrong, with its causes.
        detail: String,
    },
    /// The response's status was not the expected one: `HTTP status 503,
    /// expected 200`.
    #[error("HTTP status {got}, expected {expected}")]
    Status {
        /// The status received.
        got: u16,
        /// The status configured.
        expected: u16,
    },
    /// The first 64 KiB of the body did not contain the text: `body does not
    /// contain "ok"`.
    #[error("body does not contain {needle:?}")]
    BodyMismatch {
        /// The text looked for.
        needle: String,
    },
    /// The ICMP socket could not be opened for lack of privilege.
    #[error("ICMP checks need CAP_NET_RAW: permission denied opening an ICMP socket")]
    IcmpPermission {
        /// What socket(2) said.
        source: io::Error,
    },
    /// The ICMP socket could not be opened for another reason.
    #[error("cannot open an ICMP socket: {}", io_text(.source))]
    IcmpSocket {
        /// What socket(2) said.
        source: io::Error,
    },
    /// No echo reply came within the timeout: `no echo reply from
    /// 198.18.1.11 within 1000 ms`.
    #[error("no echo reply from {ip} within {} ms", .after.as_millis())]
    NoEchoReply {
        /// The backend's IP.
        ip: IpAddr,
        /// The probe's timeout.
        after: Duration,
    },
    /// The echo request could not be sent, or the reply was not usable.
    #[error("ICMP echo to {ip}: {detail}")]
    Icmp {
        /// The backend's IP.
        ip: IpAddr,
        /// What went wrong.
        detail: String,
    },
}

/// An I/O error's text without the "(os error N)" tail, lower case:
/// "connection refused".
fn io_text(error: &io::Error) -> String {
    let text = error.to_string();
    let Some(code) = error.raw_os_error() else {
        return text;
    };
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// An error's text followed by those of its causes that add something.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = match inner.downcast_ref::<io::Error>() {
            Some(io_error) => io_text(io_error),
            None => inner.to_string(),
        };
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// One probe against `target` (address and port; ICMP ignores the port),
/// bounded by `timeout`. [`Check::None`] always succeeds.
pub async fn probe(check: &Check, target: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    match check {
        Check::None => Ok(()),
        Check::Tcp => connect(target, deadline, timeout).await.map(drop),
        Check::Http {
            path,
            expect_status,
            body_contains,
            host,
        } => {
            let request = HttpRequest {
                path,
                expect_status: *expect_status,
                body_contains: body_contains.as_deref(),
                host: host.as_deref(),
            };
            probe_http(&request, None, target, deadline, timeout).await
        }
        Check::Https {
            path,
            expect_status,
            body_contains,
            host,
            verify_certificate,
        } => {
            let request = HttpRequest {
                path,
                expect_status: *expect_status,
                body_contains: body_contains.as_deref(),
                host: host.as_deref(),
            };
            probe_http(
                &request,
                Some(tls_config(*verify_certificate)),
                target,
                deadline,
                timeout,
            )
            .await
        }
        Check::Icmp => probe_icmp(target, timeout).await,
    }
}

/// Runs one part of a probe against the probe's deadline.
async fn step<F: Future>(
    deadline: Instant,
    timeout: Duration,
    stage: Stage,
    work: F,
) -> Result<F::Output, ProbeError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| ProbeError::Timeout {
            after: timeout,
            stage,
        })
}

async fn connect(
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ProbeError> {
    let stream = step(
        deadline,
        timeout,
        Stage::Connect,
        TcpStream::connect(target),
    )
    .await?
    .map_err(|source| ProbeError::Connect { target, source })?;
    // Close with a reset: no TIME_WAIT on our side for every probe. Failing
    // to set either option does not make the backend unhealthy.
    let _ = stream.set_zero_linger();
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

struct HttpRequest<'a> {
    path: &'a str,
    expect_status: u16,
    body_contains: Option<&'a str>,
    host: Option<&'a str>,
}

/// `tls`: None for plain HTTP, the client configuration for HTTPS.
async fn probe_http(
    request: &HttpRequest<'_>,
    tls: Option<Arc<ClientConfig>>,
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let tcp = connect(target, deadline, timeout).await?;
    let Some(tls) = tls else {
        return exchange(TokioIo::new(tcp), request, target, deadline, timeout).await;
    };
    let server_name = match request.host {
        Some(host) => ServerName::try_from(host.to_owned()).map_err(|error| ProbeError::Tls {
            target,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS server name: {error}"),
            ),
        })?,
        None => ServerName::IpAddress(target.ip().into()),
    };
    let connector = TlsConnector::from(tls);
    let stream = step(
        deadline,
        timeout,
        Stage::TlsHandshake,
        connector.connect(server_name, tcp),
    )
    .await?
    .map_err(|source| ProbeError::Tls { target, source })?;
    exchange(TokioIo::new(stream), request, target, deadline, timeout).await
}

/// Aborts a task when dropped (the HTTP connection's driver).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    io: TokioIo<S>,
    request: &HttpRequest<'_>,
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |error: hyper::Error| ProbeError::Http {
        target,
        detail: error_chain(&error),
    };
    let (mut sender, connection) = step(
        deadline,
        timeout,
        Stage::Response,
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io),
    )
    .await?
    .map_err(http_error)?;
    // The connection is driven by a task of its own, aborted (closing the
    // socket) when the probe ends, times out or is dropped.
    let _driver = AbortOnDrop(
        tokio::spawn(async move {
            let _ = connection.await;
        })
        .abort_handle(),
    );

    let host = request
        .host
        .map_or_else(|| target.to_string(), str::to_owned);
    let http_request = Request::get(request.path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::<Bytes>::new())
        .map_err(|error| ProbeError::Http {
            target,
            detail: format!("cannot build the request: {}", error_chain(&error)),
        })?;
    let response = step(
        deadline,
        timeout,
        Stage::Response,
        sender.send_request(http_request),
    )
    .await?
    .map_err(http_error)?;

    let got = response.status().as_u16();
    if got != request.expect_status {
        return Err(ProbeError::Status {
            got,
            expected: request.expect_status,
        });
    }
    let Some(needle) = request.body_contains else {
        return Ok(());
    };
    let needle_bytes = needle.as_bytes();
    let mut body = response.into_body();
    let mut seen: Vec<u8> = Vec::new();
    while seen.len() < BODY_LIMIT {
        let Some(frame) = step(deadline, timeout, Stage::Body, body.frame()).await? else {
            break;
        };
        let Ok(data) = frame.map_err(http_error)?.into_data() else {
            continue; // trailers
        };
        let start = seen.len();
        let take = data.len().min(BODY_LIMIT - start);
        seen.extend_from_slice(&data[..take]);
        // Only the new bytes, and the end of the old ones a match may start in.
        let from = start.saturating_sub(needle_bytes.len().saturating_sub(1));
        if contains(&seen[from..], needle_bytes) {
            return Ok(());
        }
    }
    if contains(&seen, needle_bytes) {
        Ok(())
    } else {
        Err(ProbeError::BodyMismatch {
            needle: needle.to_owned(),
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The rustls client configuration: ring, TLS 1.3 and 1.2, ALPN http/1.1,
/// and either the system's CAs or any certificate. Built once per process.
fn tls_config(verify_certificate: bool) -> Arc<ClientConfig> {
    static VERIFYING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static ANY_CERTIFICATE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if verify_certificate {
        VERIFYING.get_or_init(|| client_config(Some(system_roots())))
    } else {
        ANY_CERTIFICATE.get_or_init(|| client_config(None))
    }
    .clone()
}

/// A client configuration that checks certificates against `roots`, or,
/// with None, accepts any certificate.
fn client_config(roots: Option<RootCertStore>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.3 and 1.2");
    let mut config = match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Where distributions keep their bundle of CA certificates, after the file
/// `SSL_CERT_FILE` names.
const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSDs
];

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    for path in from_env
        .into_iter()
        .chain(CA_BUNDLES.iter().map(PathBuf::from))
    {
        let Ok(certificates) = CertificateDer::pem_file_iter(&path) else {
            continue;
        };
        let (added, _) = roots.add_parsable_certificates(certificates.filter_map(Result::ok));
        if added > 0 {
            tracing::debug!(path = %path.display(), added, "health checks: CA certificates loaded");
            break;
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "health checks: no CA certificates found (SSL_CERT_FILE, {CA_BUNDLES:?}); \
             HTTPS checks with verify_certificate = true will fail"
        );
    }
    roots
}

/// Accepts any certificate chain and name, but still checks that the
/// handshake's signatures were made with the key of the certificate the
/// server sent: `verify_certificate = false`.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The echo request's payload (56 bytes, as ping(8) sends).
const ECHO_PAYLOAD: [u8; 56] = *b"lb-health echo request, lb-health echo request, lb-healt";

/// A fresh echo identifier for each probe, so that concurrent probes and
/// other programs' pings are told apart.
fn echo_identifier() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Truncating the pid is fine: it only spreads processes apart.
    (std::process::id() as u16).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn probe_icmp(target: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

    let ip = target.ip().to_canonical();
    let (config, scope_id) = match (ip, target) {
        (IpAddr::V6(_), SocketAddr::V6(v6)) => {
            (Config::builder().kind(ICMP::V6).build(), v6.scope_id())
        }
        (IpAddr::V6(_), SocketAddr::V4(_)) => (Config::builder().kind(ICMP::V6).build(), 0),
        (IpAddr::V4(_), _) => (Config::default(), 0),
    };
    // A socket per probe: raw ICMP sockets see every echo reply, and the
    // reply is matched on address, identifier and sequence.
    let client = Client::new(&config).map_err(|source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            ProbeError::IcmpPermission { source }
        } else {
            ProbeError::IcmpSocket { source }
        }
    })?;
    let mut pinger = client.pinger(ip, PingIdentifier(echo_identifier())).await;
    pinger.timeout(timeout);
    if scope_id != 0 {
        pinger.scope_id(scope_id);
    }
    let no_reply = ProbeError::NoEchoReply { ip, after: timeout };
    match tokio::time::timeout(timeout, pinger.ping(PingSequence(0), &ECHO_PAYLOAD)).await {
        Ok(Ok(_)) => Ok(()),
        Err(_) | Ok(Err(SurgeError::Timeout { .. })) => Err(no_reply),
        Ok(Err(SurgeError::IOError(error))) => Err(ProbeError::Icmp {
            ip,
            detail: io_text(&error),
        }),
        Ok(Err(error)) => Err(ProbeError::Icmp {
            ip,
            detail: error_chain(&error),
        }),
    }
}

/// A change of a checked target's health, for the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<K> {
    /// The target's key, as given to [`Monitor::reconcile`].
    pub key: K,
    /// The new state.
    pub health: Health,
    /// Why: the last probe's error (`HTTP status 503, expected 200`),
    /// `2 probes succeeded`, or `health checking is off` when a down target's
    /// check became [`Check::None`].
    pub reason: String,
}

/// Runs the checks: a tokio task per checked target, which probes every
/// interval, feeds a [`Tracker`] and reports state changes as [`Event`]s.
///
/// `K` is the caller's key for a target, e.g. (service, backend address).
/// The tasks are aborted when their target is removed or changed, and when
/// the monitor is dropped.
pub struct Monitor<K> {
    events: mpsc::Sender<Event<K>>,
    shared: Arc<Mutex<BTreeMap<K, Slot>>>,
    tasks: BTreeMap<K, Running>,
    generation: u64,
}

/// A target's state as the monitor and the daemon see it; `generation` names
/// the task allowed to change it, so that a replaced task that is still
/// finishing a probe cannot.
#[derive(Clone, Copy, Debug)]
struct Slot {
    health: Health,
    generation: u64,
}

struct Running {
    target: SocketAddr,
    spec: HealthSpec,
    task: Option<AbortHandle>,
}

impl Running {
    fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lock is never held across anything that can panic half-way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K> Monitor<K>
where
    K: Clone + Ord + Send + Sync + fmt::Debug + 'static,
{
    /// A monitor that sends state changes on `events`. If the receiver is
    /// dropped the checks go on and [`Monitor::states`] stays current.
    pub fn new(events: mpsc::Sender<Event<K>>) -> Self {
        Monitor {
            events,
            shared: Arc::new(Mutex::new(BTreeMap::new())),
            tasks: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Makes the set of checked targets exactly `targets` (a key given twice:
    /// the last one counts). Starts tasks for new keys (up), stops tasks of
    /// removed keys (no event), and restarts tasks whose spec or address
    /// changed; a task that keeps running keeps its state and counts, and a
    /// restarted one keeps its state (a down target stays down until `rise`
    /// probes succeed, so every change is announced by an event). A key
    /// whose check is [`Check::None`] has no task and is up; if it was down,
    /// an event says it is up again.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime when it has a task to start.
    pub fn reconcile(&mut self, targets: impl IntoIterator<Item = (K, SocketAddr, HealthSpec)>) {
        let wanted: BTreeMap<K, (SocketAddr, HealthSpec)> = targets
            .into_iter()
            .map(|(key, target, spec)| (key, (target, spec)))
            .collect();
        let mut shared = lock(&self.shared);
        self.tasks.retain(|key, running| {
            let keep = wanted.contains_key(key);
            if !keep {
                running.stop();
                shared.remove(key);
            }
            keep
        });
        for (key, (target, spec)) in wanted {
            if let Some(running) = self.tasks.get(&key) {
                if running.target == target && running.spec == spec {
                    continue;
                }
                running.stop();
            }
            let initial = shared.get(&key).map_or(Health::Up, |slot| slot.health);
            self.generation += 1;
            shared.insert(
                key.clone(),
                Slot {
                    health: initial,
                    generation: self.generation,
                },
            );
            let task = (spec.check != Check::None || initial == Health::Down).then(|| {
                let checker = Checker {
                    key: key.clone(),
                    target,
                    spec: spec.clone(),
                    generation: self.generation,
                    shared: Arc::clone(&self.shared),
                    events: self.events.clone(),
                };
                tokio::spawn(checker.run(initial)).abort_handle()
            });
            self.tasks.insert(key, Running { target, spec, task });
        }
    }

    /// The current state of each key.
    pub fn states(&self) -> BTreeMap<K, Health> {
        lock(&self.shared)
            .iter()
            .map(|(key, slot)| (key.clone(), slot.health))
            .collect()
    }
}

impl<K> Drop for Monitor<K> {
    fn drop(&mut self) {
        for running in self.tasks.values() {
            running.stop();
        }
    }
}

/// One target's task.
struct Checker<K> {
    key: K,
    target: SocketAddr,
    spec: HealthSpec,
    generation: u64,
    shared: Arc<Mutex<BTreeMap<K, Slot>>>,
    events: mpsc::Sender<Event<K>>,
}

impl<K> Checker<K>
where
    K: Clone + Ord + Send + Sync + fmt::Debug + 'static,
{
    async fn run(self, initial: Health) {
        if self.spec.check == Check::None {
            if initial == Health::Down {
                self.publish(Health::Up, "health checking is off".to_owned())
                    .await;
            }
            return;
        }
        let timing = self.spec.timing;
        let mut tracker = Tracker::with_state(&timing, initial);
        let interval = timing.interval();
        let timeout = timing.timeout();
        // Probes are measured start to start; the timeout is at most the
        // interval, so a slow probe delays the next one at most to its end.
        let mut ticks = tokio::time::interval_at(Instant::now() + first_delay(interval), interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = probe(&self.spec.check, self.target, timeout).await;
            if let Err(error) = &result {
                tracing::debug!(key = ?self.key, target = %self.target, %error, "health probe failed");
            }
            let Some(health) = tracker.observe(result.is_ok()) else {
                continue;
            };
            let reason = match result {
                Ok(()) if timing.rise <= 1 => "1 probe succeeded".to_owned(),
                Ok(()) => format!("{} probes succeeded", timing.rise),
                Err(error) => error.to_string(),
            };
            self.publish(health, reason).await;
        }
    }

    /// Records the new state and sends the event, unless this task has been
    /// replaced or removed meanwhile.
    async fn publish(&self, health: Health, reason: String) {
        tracing::debug!(key = ?self.key, target = %self.target, %health, %reason, "health changed");
        if !self.current(|slot| slot.health = health) {
            return;
        }
        // The state is recorded at once; the event waits for room in the
        // channel, and is sent (without waiting, under the lock) only if no
        // reconcile replaced this task meanwhile.
        let Ok(permit) = self.events.reserve().await else {
            return; // the daemon is gone; states() stays current
        };
        self.current(|_| {
            permit.send(Event {
                key: self.key.clone(),
                health,
                reason,
            });
        });
    }

    /// Runs `action` on this task's slot, under the lock, if the slot is
    /// still this task's; tells whether it was.
    fn current(&self, action: impl FnOnce(&mut Slot)) -> bool {
        let mut shared = lock(&self.shared);
        match shared.get_mut(&self.key) {
            Some(slot) if slot.generation == self.generation => {
                action(slot);
                true
            }
            _ => false,
        }
    }
}

/// Where in its interval a new task probes first: spread evenly (by the
/// golden ratio) so that many targets do not all probe at the same moment.
fn first_delay(interval: Duration) -> Duration {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let fraction = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        sync::atomic::{AtomicBool, AtomicUsize},
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        task::JoinHandle,
        time::sleep,
    };

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn timing(interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Timing {
        Timing {
            interval_ms,
            timeout_ms,
            rise,
            fall,
        }
    }

    fn http(path: &str, expect_status: u16, body_contains: Option<&str>) -> Check {
        Check::Http {
            path: path.to_owned(),
            expect_status,
            body_contains: body_contains.map(str::to_owned),
            host: None,
        }
    }

    fn https(host: Option<&str>, verify_certificate: bool) -> Check {
        Check::Https {
            path: "/health".to_owned(),
            expect_status: 200,
            body_contains: Some("ok".to_owned()),
            host: host.map(str::to_owned),
            verify_certificate,
        }
    }

    // ---- Tracker ----

    /// Feeds `results` ('T' success, 'F' failure) and returns what each
    /// observation returned: '-' no change, 'U' up, 'D' down.
    fn run(tracker: &mut Tracker, results: &str) -> String {
        results
            .chars()
            .map(|c| match tracker.observe(c == 'T') {
                None => '-',
                Some(Health::Up) => 'U',
                Some(Health::Down) => 'D',
            })
            .collect()
    }

    #[test]
    fn tracker_goes_down_after_fall_failures_and_up_after_rise_successes() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 2, 3));
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "TTFFF"), "----D");
        assert_eq!(tracker.state(), Health::Down);
        // More failures, and a single success: no change.
        assert_eq!(run(&mut tracker, "FFT"), "---");
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "T"), "U");
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "TTTT"), "----");
    }

    #[test]
    fn tracker_flapping_resets_the_counts() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 2, 3));
        assert_eq!(run(&mut tracker, "FFTFFTFFT"), "---------");
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "FFF"), "--D");
        assert_eq!(run(&mut tracker, "TFTFTF"), "------");
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "TT"), "-U");
    }

    #[test]
    fn tracker_rise_and_fall_of_one() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 1, 1));
        assert_eq!(run(&mut tracker, "TFFTTFT"), "-D-U-DU");
        // 0 counts as 1.
        let mut tracker = Tracker::new(&timing(2000, 1000, 0, 0));
        assert_eq!(run(&mut tracker, "FT"), "DU");
    }

    #[test]
    fn tracker_can_start_down() {
        let mut tracker = Tracker::with_state(&timing(2000, 1000, 3, 1), Health::Down);
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "FTTT"), "---U");
    }

    // ---- validation ----

    #[test]
    fn timing_validate_messages() {
        assert_eq!(Timing::default().validate(), Ok(()));
        assert_eq!(timing(100, 100, 1, 1).validate(), Ok(()));
        assert_eq!(timing(3_600_000, 1, 1, 1).validate(), Ok(()));
        let table = [
            (
                timing(99, 50, 2, 3),
                "interval_ms is 99; it must be at least 100",
            ),
            (
                timing(0, 0, 2, 3),
                "interval_ms is 0; it must be at least 100",
            ),
            (
                timing(3_600_001, 1000, 2, 3),
                "interval_ms is 3600001; it must be at most 3600000 (an hour)",
            ),
            (
                timing(2000, 0, 2, 3),
                "timeout_ms is 0; it must be more than 0",
            ),
            (
                timing(2000, 2001, 2, 3),
                "timeout_ms is 2001; it must not be more than interval_ms (2000)",
            ),
            (timing(2000, 1000, 0, 3), "rise is 0; it must be at least 1"),
            (timing(2000, 1000, 2, 0), "fall is 0; it must be at least 1"),
        ];
        for (bad, message) in table {
            assert_eq!(
                bad.validate(),
                Err(SpecError(message.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn check_validate_messages() {
        for good in [
            Check::None,
            Check::Tcp,
            Check::Icmp,
            http("/", 200, None),
            http("/health?full=1", 599, Some("ok")),
            http("/", 100, None),
            https(Some("backend.example"), true),
            https(Some("198.18.1.11"), false),
            https(None, false),
        ] {
            assert_eq!(good.validate(), Ok(()), "{good:?}");
        }
        let with_host = |tls: bool, host: &str| {
            let host = Some(host.to_owned());
            if tls {
                Check::Https {
                    path: "/".to_owned(),
                    expect_status: 200,
                    body_contains: None,
                    host,
                    verify_certificate: false,
                }
            } else {
                Check::Http {
                    path: "/".to_owned(),
                    expect_status: 200,
                    body_contains: None,
                    host,
                }
            }
        };
        let long = "x".repeat(BODY_LIMIT + 1);
        let table = [
            (
                http("health", 200, None),
                "path \"health\" must start with '/'",
            ),
            (http("", 200, None), "path \"\" must start with '/'"),
            (
                http("/a b", 200, None),
                "path \"/a b\" is not a valid HTTP path: invalid uri character",
            ),
            (
                http("/", 99, None),
                "expect_status is 99; it must be an HTTP status, from 100 to 599",
            ),
            (
                http("/", 600, None),
                "expect_status is 600; it must be an HTTP status, from 100 to 599",
            ),
            (
                http("/", 200, Some(&long)),
                "body_contains is 65537 bytes long; only the first 65536 bytes of the body are read",
            ),
            (with_host(false, ""), "host \"\" is not a valid host name"),
            (
                with_host(false, "a b"),
                "host \"a b\" is not a valid host name",
            ),
            (
                with_host(false, "a\r\nX-Evil: 1"),
                "host \"a\\r\\nX-Evil: 1\" is not a valid host name",
            ),
            (
                with_host(true, "backend.example:8443"),
                "host \"backend.example:8443\" is not a valid TLS server name \
                 (a DNS name or an IP address, without a port)",
            ),
        ];
        for (bad, message) in table {
            assert_eq!(
                bad.validate(),
                Err(SpecError(message.to_owned())),
                "{bad:?}"
            );
        }
        // A Host header with a port is fine over plain HTTP.
        assert_eq!(with_host(false, "backend.example:8080").validate(), Ok(()));
        // HealthSpec::validate checks both parts.
        let spec = HealthSpec {
            check: http("x", 200, None),
            timing: Timing::default(),
        };
        assert_eq!(
            spec.validate(),
            Err(SpecError("path \"x\" must start with '/'".to_owned()))
        );
        let spec = HealthSpec {
            check: Check::Tcp,
            timing: timing(50, 10, 1, 1),
        };
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "interval_ms is 50; it must be at least 100"
        );
    }

    // ---- serde ----

    fn parse(text: &str) -> Result<HealthSpec, String> {
        toml::from_str::<HealthSpec>(text).map_err(|error| error.message().to_owned())
    }

    #[test]
    fn serde_reads_every_kind() {
        let defaults = Timing::default();
        assert_eq!(
            parse("kind = \"none\"").unwrap(),
            HealthSpec {
                check: Check::None,
                timing: defaults
            }
        );
        assert_eq!(
            parse("kind = \"tcp\"\ninterval_ms = 500\ntimeout_ms = 200\nrise = 1\nfall = 5")
                .unwrap(),
            HealthSpec {
                check: Check::Tcp,
                timing: timing(500, 200, 1, 5)
            }
        );
        assert_eq!(
            parse("kind = \"icmp\"\nfall = 2").unwrap(),
            HealthSpec {
                check: Check::Icmp,
                timing: timing(2000, 1000, 2, 2)
            }
        );
        assert_eq!(
            parse("kind = \"http\"").unwrap(),
            HealthSpec {
                check: http("/", 200, None),
                timing: defaults
            }
        );
        assert_eq!(
            parse(
                "kind = \"http\"\npath = \"/healthz\"\nexpect_status = 204\n\
                 body_contains = \"ok\"\nhost = \"www.example.com\"\ninterval_ms = 1000"
            )
            .unwrap(),
            HealthSpec {
                check: Check::Http {
                    path: "/healthz".to_owned(),
                    expect_status: 204,
                    body_contains: Some("ok".to_owned()),
                    host: Some("www.example.com".to_owned()),
                },
                timing: timing(1000, 1000, 2, 3)
            }
        );
        assert_eq!(
            parse("kind = \"https\"").unwrap().check,
            Check::Https {
                path: "/".to_owned(),
                expect_status: 200,
                body_contains: None,
                host: None,
                verify_certificate: false,
            }
        );
        assert_eq!(
            parse("kind = \"https\"\nverify_certificate = true\nhost = \"b.example\"")
                .unwrap()
                .check,
            Check::Https {
                path: "/".to_owned(),
                expect_status: 200,
                body_contains: None,
                host: Some("b.example".to_owned()),
                verify_certificate: true,
            }
        );
    }

    #[test]
    fn serde_reads_the_module_doc_example_in_a_table() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Service {
            name: String,
            health: HealthSpec,
        }
        let service: Service = toml::from_str(
            r#"
            name = "web"

            [health]
            kind = "https"              # "none", "tcp", "http", "https" or "icmp"
            path = "/healthz"           # http, https: default "/"
            expect_status = 200         # http, https: default 200
            body_contains = "ok"        # http, https: default none (any body)
            host = "www.example.com"    # http, https: Host header and TLS server name;
                                        #   default the backend's address
            verify_certificate = false  # https only: default false
            interval_ms = 2000          # start of one probe to the start of the next
            timeout_ms = 1000           # bound on the whole probe; <= interval_ms
            rise = 2                    # successes in a row that bring a backend up
            fall = 3                    # failures in a row that take it down
            "#,
        )
        .unwrap();
        assert_eq!(service.name, "web");
        assert_eq!(
            service.health,
            HealthSpec {
                check: Check::Https {
                    path: "/healthz".to_owned(),
                    expect_status: 200,
                    body_contains: Some("ok".to_owned()),
                    host: Some("www.example.com".to_owned()),
                    verify_certificate: false,
                },
                timing: Timing::default(),
            }
        );
        assert_eq!(service.health.validate(), Ok(()));
    }

    #[test]
    fn serde_rejects_unknown_and_misplaced_fields() {
        let table = [
            (
                "kind = \"udp\"",
                "unknown variant `udp`, expected one of `none`, `tcp`, `http`, `https`, `icmp`",
            ),
            ("kind = \"http\"\nbogus = 1", "unknown field `bogus`"),
            ("kind = \"tcp\"\ninterval = 100", "unknown field `interval`"),
            ("interval_ms = 100", "missing field `kind`"),
            (
                "kind = \"tcp\"\npath = \"/\"",
                "path is only for kind = \"http\" or \"https\", not for kind = \"tcp\"",
            ),
            (
                "kind = \"icmp\"\nhost = \"a\"",
                "host is only for kind = \"http\" or \"https\", not for kind = \"icmp\"",
            ),
            (
                "kind = \"none\"\nexpect_status = 200",
                "expect_status is only for kind = \"http\" or \"https\", not for kind = \"none\"",
            ),
            (
                "kind = \"http\"\nverify_certificate = true",
                "verify_certificate is only for kind = \"https\", not for kind = \"http\"",
            ),
            ("kind = \"http\"\nexpect_status = 70000", "invalid value"),
            ("kind = \"tcp\"\nrise = -1", "invalid value"),
        ];
        for (text, message) in table {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn serde_check_and_timing_on_their_own() {
        assert_eq!(
            toml::from_str::<Check>("kind = \"http\"\npath = \"/x\"").unwrap(),
            http("/x", 200, None)
        );
        assert!(toml::from_str::<Check>("kind = \"tcp\"\npath = \"/x\"").is_err());
        assert!(toml::from_str::<Check>("kind = \"http\"\nrise = 1").is_err());
        assert_eq!(
            toml::from_str::<Timing>("rise = 5").unwrap(),
            timing(2000, 1000, 5, 3)
        );
        assert!(toml::from_str::<Timing>("kind = \"tcp\"").is_err());
        #[derive(Deserialize)]
        struct H {
            h: Health,
        }
        assert_eq!(toml::from_str::<H>("h = \"down\"").unwrap().h, Health::Down);
    }

    #[test]
    fn serde_round_trip() {
        for spec in [
            HealthSpec::default(),
            HealthSpec {
                check: Check::Tcp,
                timing: timing(300, 100, 1, 2),
            },
            HealthSpec {
                check: Check::Icmp,
                timing: Timing::default(),
            },
            HealthSpec {
                check: http("/a", 204, Some("ok")),
                timing: Timing::default(),
            },
            HealthSpec {
                check: https(Some("b.example"), true),
                timing: Timing::default(),
            },
        ] {
            let text = toml::to_string(&spec).unwrap();
            assert_eq!(parse(&text).as_ref(), Ok(&spec), "{text}");
        }
        assert_eq!(
            toml::to_string(&HealthSpec {
                check: Check::Tcp,
                timing: Timing::default()
            })
            .unwrap(),
            "kind = \"tcp\"\ninterval_ms = 2000\ntimeout_ms = 1000\nrise = 2\nfall = 3\n"
        );
    }

    // ---- probes ----

    /// A test server on loopback that counts connections and records the
    /// requests (and, over TLS, the server name the client sent).
    struct TestServer {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
        server_names: Arc<Mutex<Vec<Option<String>>>>,
        task: JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TestServer {
        fn requests(&self) -> Vec<String> {
            lock(&self.requests).clone()
        }
    }

    fn response(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    type Respond = Arc<dyn Fn() -> Option<Vec<u8>> + Send + Sync>;

    /// Reads a request head, records it, and writes `respond()`'s answer (or
    /// nothing, holding the connection open, if it gives none).
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        respond: Respond,
        requests: Arc<Mutex<Vec<String>>>,
    ) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        lock(&requests).push(String::from_utf8_lossy(&head).into_owned());
        match respond() {
            Some(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
            }
            None => sleep(Duration::from_secs(10)).await,
        }
    }

    async fn serve(
        ip: IpAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        respond: impl Fn() -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let respond: Respond = Arc::new(respond);
        let task = tokio::spawn({
            let connections = Arc::clone(&connections);
            let requests = Arc::clone(&requests);
            let server_names = Arc::clone(&server_names);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let respond = Arc::clone(&respond);
                    let requests = Arc::clone(&requests);
                    let server_names = Arc::clone(&server_names);
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => answer(stream, respond, requests).await,
                            Some(acceptor) => {
                                let Ok(Ok(stream)) = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    acceptor.accept(stream),
                                )
                                .await
                                else {
                                    return;
                                };
                                let name = stream.get_ref().1.server_name().map(str::to_owned);
                                lock(&server_names).push(name);
                                answer(stream, respond, requests).await;
                            }
                        }
                    });
                }
            }
        });
        TestServer {
            addr,
            connections,
            requests,
            server_names,
            task,
        }
    }

    async fn http_server(
        respond: impl Fn() -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> TestServer {
        serve(LOCALHOST, None, respond).await
    }

    /// A TLS acceptor with a fresh self-signed certificate for "localhost",
    /// and that certificate.
    fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let certificate = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
        (
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate,
        )
    }

    /// A port on loopback that nothing listens on.
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn io_errors_read_well() {
        let refused = io::Error::from_raw_os_error(111); // ECONNREFUSED on Linux
        assert_eq!(io_text(&refused), "connection refused");
        let custom = io::Error::other("Some Text");
        assert_eq!(io_text(&custom), "Some Text");
    }

    #[tokio::test]
    async fn probe_none_always_succeeds() {
        let target = closed_port().await;
        assert!(probe(&Check::None, target, SECOND).await.is_ok());
    }

    #[tokio::test]
    async fn probe_tcp_connects() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let target = listener.local_addr().unwrap();
        probe(&Check::Tcp, target, SECOND).await.unwrap();
        let listener6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap();
        probe(&Check::Tcp, listener6.local_addr().unwrap(), SECOND)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn probe_tcp_refused() {
        let target = closed_port().await;
        let error = probe(&Check::Tcp, target, SECOND).await.unwrap_err();
        assert!(
            matches!(&error, ProbeError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("connect to {target}: connection refused")
        );
    }

    #[tokio::test]
    async fn probe_http_ok_and_the_request_it_sends() {
        let server = http_server(|| Some(response("200 OK", "all ok\n"))).await;
        probe(&http("/health?x=1", 200, Some("ok")), server.addr, SECOND)
            .await
            .unwrap();
        probe(&http("/", 200, None), server.addr, SECOND)
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let request = requests[0].to_ascii_lowercase();
        assert!(
            request.starts_with("get /health?x=1 http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nhost: {}\r\n", server.addr)),
            "{request}"
        );
        assert!(request.contains("\r\nconnection: close\r\n"), "{request}");
        assert!(
            request.contains(&format!(
                "\r\nuser-agent: lb-health/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{request}"
        );

        // The Host header can be set.
        let check = Check::Http {
            path: "/".to_owned(),
            expect_status: 200,
            body_contains: None,
            host: Some("www.example.com".to_owned()),
        };
        probe(&check, server.addr, SECOND).await.unwrap();
        assert!(server.requests()[2].contains("\r\nhost: www.example.com\r\n"));
    }

    #[tokio::test]
    async fn probe_http_over_ipv6() {
        let server = serve(IpAddr::V6(Ipv6Addr::LOCALHOST), None, || {
            Some(response("200 OK", "ok"))
        })
        .await;
        probe(&http("/", 200, Some("ok")), server.addr, SECOND)
            .await
            .unwrap();
        assert!(
            server.requests()[0].contains(&format!("\r\nhost: [::1]:{}\r\n", server.addr.port()))
        );
    }

    #[tokio::test]
    async fn probe_http_wrong_status() {
        let server = http_server(|| Some(response("503 Service Unavailable", "busy"))).await;
        let error = probe(&http("/", 200, Some("busy")), server.addr, SECOND)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "HTTP status 503, expected 200");
        // Expecting 503 makes it a success.
        probe(&http("/", 503, None), server.addr, SECOND)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn probe_http_body_mismatch() {
        let server = http_server(|| Some(response("200 OK", "starting"))).await;
        let error = probe(&http("/", 200, Some("ok")), server.addr, SECOND)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "body does not contain \"ok\"");
    }

    #[tokio::test]
    async fn probe_http_reads_only_the_first_64_kib() {
        // "mark" straddles the limit: only "ma" is within the first 64 KiB.
        let mut body = "x".repeat(BODY_LIMIT - 2);
        body.push_str("mark");
        body.push_str(&"y".repeat(10_000));
        body.push_str("tail");
        let server = http_server(move || Some(response("200 OK", &body))).await;
        let error = probe(&http("/", 200, Some("mark")), server.addr, SECOND)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "body does not contain \"mark\"");
        probe(&http("/", 200, Some("xxma")), server.addr, SECOND)
            .await
            .unwrap();
        assert!(
            probe(&http("/", 200, Some("tail")), server.addr, SECOND)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn probe_http_times_out() {
        let server = http_server(|| None).await;
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let error = probe(&http("/", 200, None), server.addr, timeout)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(300),
            "{took:?}"
        );
        assert_eq!(
            error.to_string(),
            "timed out after 200 ms waiting for the response"
        );
    }

    #[tokio::test]
    async fn probe_http_connection_closed_and_refused() {
        // A server that closes without answering.
        let server = http_server(|| Some(Vec::new())).await;
        let error = probe(&http("/", 200, None), server.addr, SECOND)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("HTTP request to {}: ", server.addr)),
            "{error}"
        );
        let target = closed_port().await;
        let error = probe(&http("/", 200, None), target, SECOND)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("connect to {target}: connection refused")
        );
    }

    #[tokio::test]
    async fn probe_https_accepts_a_self_signed_certificate_unless_told_to_verify() {
        let server = serve(LOCALHOST, Some(tls_acceptor().0), || {
            Some(response("200 OK", "ok"))
        })
        .await;
        probe(&https(None, false), server.addr, SECOND)
            .await
            .unwrap();
        probe(&https(Some("localhost"), false), server.addr, SECOND)
            .await
            .unwrap();
        // An IP as the server name sends no SNI; a host name does.
        assert_eq!(
            *lock(&server.server_names),
            vec![None, Some("localhost".to_owned())]
        );
        let requests = server.requests();
        assert!(
            requests[0].starts_with("GET /health HTTP/1.1\r\n"),
            "{requests:?}"
        );
        assert!(
            requests[1].contains("\r\nhost: localhost\r\n"),
            "{requests:?}"
        );

        for host in [None, Some("localhost")] {
            let error = probe(&https(host, true), server.addr, SECOND)
                .await
                .unwrap_err();
            assert!(matches!(error, ProbeError::Tls { .. }), "{error:?}");
            assert_eq!(
                error.to_string(),
                format!(
                    "TLS handshake with {}: invalid peer certificate: UnknownIssuer",
                    server.addr
                )
            );
        }
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn probe_https_verifies_against_the_roots_and_the_name() {
        let (acceptor, certificate) = tls_acceptor();
        let server = serve(LOCALHOST, Some(acceptor), || Some(response("200 OK", "ok"))).await;
        // Trusting the certificate itself, as if a CA of the system's bundle.
        let mut roots = RootCertStore::empty();
        roots.add(certificate).unwrap();
        let config = client_config(Some(roots));
        let request = |host| HttpRequest {
            path: "/",
            expect_status: 200,
            body_contains: Some("ok"),
            host,
        };
        let deadline = Instant::now() + SECOND;
        probe_http(
            &request(Some("localhost")),
            Some(Arc::clone(&config)),
            server.addr,
            deadline,
            SECOND,
        )
        .await
        .unwrap();
        // The certificate names "localhost", not 127.0.0.1.
        let error = probe_http(&request(None), Some(config), server.addr, deadline, SECOND)
            .await
            .unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "TLS handshake with {}: invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
                server.addr
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn probe_https_against_plain_http_times_out_in_the_handshake() {
        // The plain server waits for a request head that never comes.
        let server = http_server(|| Some(response("200 OK", "ok"))).await;
        let error = probe(&https(None, false), server.addr, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 200 ms in the TLS handshake"
        );
    }

    #[tokio::test]
    async fn probe_icmp_loopback() {
        // The port is ignored.
        probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 9), SECOND)
            .await
            .unwrap();
        probe(
            &Check::Icmp,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
            SECOND,
        )
        .await
        .unwrap();
        // Several at once are told apart.
        let results = tokio::join!(
            probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 0), SECOND),
            probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 0), SECOND),
            probe(
                &Check::Icmp,
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                SECOND
            ),
        );
        results.0.unwrap();
        results.1.unwrap();
        results.2.unwrap();
    }

    #[test]
    fn probe_errors_read_well() {
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11));
        assert_eq!(
            ProbeError::NoEchoReply { ip, after: SECOND }.to_string(),
            "no echo reply from 198.18.1.11 within 1000 ms"
        );
        assert_eq!(
            ProbeError::Timeout {
                after: SECOND,
                stage: Stage::Connect
            }
            .to_string(),
            "timed out after 1000 ms while connecting"
        );
        assert_eq!(
            ProbeError::IcmpPermission {
                source: io::Error::from(io::ErrorKind::PermissionDenied)
            }
            .to_string(),
            "ICMP checks need CAP_NET_RAW: permission denied opening an ICMP socket"
        );
    }

    // ---- Monitor ----

    fn flip_server(healthy: Arc<AtomicBool>) -> impl Fn() -> Option<Vec<u8>> + Send + Sync {
        move || {
            Some(if healthy.load(Ordering::SeqCst) {
                response("200 OK", "ok")
            } else {
                response("503 Service Unavailable", "no")
            })
        }
    }

    async fn next_event(
        events: &mut mpsc::Receiver<Event<&'static str>>,
        within: Duration,
    ) -> Event<&'static str> {
        tokio::time::timeout(within, events.recv())
            .await
            .expect("an event in time")
            .expect("the channel is open")
    }

    const INTERVAL: Duration = Duration::from_millis(100);

    /// Allowance for a loaded machine on top of the expected time.
    const SLACK: Duration = Duration::from_secs(1);

    /// Waits (at most 2 s) until `condition` holds.
    async fn wait_until(condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not met in 2 s");
            sleep(Duration::from_millis(10)).await;
        }
    }

    fn fast_http() -> HealthSpec {
        HealthSpec {
            check: http("/", 200, Some("ok")),
            timing: timing(100, 50, 2, 2),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn monitor_follows_a_backend_down_and_up_and_stops() {
        let healthy = Arc::new(AtomicBool::new(true));
        let server = http_server(flip_server(Arc::clone(&healthy))).await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        monitor.reconcile([("web", server.addr, fast_http())]);
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Up)]));

        // Healthy: probes run, nothing changes.
        let connections = Arc::clone(&server.connections);
        wait_until(|| connections.load(Ordering::SeqCst) >= 3).await;
        assert!(events.try_recv().is_err());

        // fall = 2 failures, 100 ms apart: the second one comes at most
        // 2 intervals after the flip.
        healthy.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let event = next_event(&mut events, 2 * INTERVAL + SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Down,
                reason: "HTTP status 503, expected 200".to_owned()
            }
        );
        // Not on the first failure (which may have started just before the
        // flip): the second one starts an interval after it.
        assert!(started.elapsed() >= INTERVAL / 2, "{:?}", started.elapsed());
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Down)]));

        healthy.store(true, Ordering::SeqCst);
        let event = next_event(&mut events, 2 * INTERVAL + SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Up,
                reason: "2 probes succeeded".to_owned()
            }
        );
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Up)]));

        // Removed: the task stops, no more connections, no state.
        monitor.reconcile([]);
        assert!(monitor.states().is_empty());
        sleep(Duration::from_millis(50)).await;
        let connections = server.connections.load(Ordering::SeqCst);
        sleep(Duration::from_millis(400)).await;
        assert_eq!(server.connections.load(Ordering::SeqCst), connections);
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn monitor_keeps_running_tasks_and_carries_state_into_restarted_ones() {
        let healthy = Arc::new(AtomicBool::new(false));
        let server = http_server(flip_server(Arc::clone(&healthy))).await;
        let other = http_server(|| Some(response("200 OK", "ok"))).await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        monitor.reconcile([
            ("web", server.addr, fast_http()),
            ("other", other.addr, fast_http()),
            (
                "off",
                other.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        assert!(monitor.tasks["off"].task.is_none());
        let event = next_event(&mut events, SLACK).await;
        assert_eq!((event.key, event.health), ("web", Health::Down));
        assert_eq!(
            monitor.states(),
            BTreeMap::from([
                ("off", Health::Up),
                ("other", Health::Up),
                ("web", Health::Down)
            ])
        );

        // The same targets again: the same tasks go on.
        let task_ids = |monitor: &Monitor<&'static str>| -> Vec<_> {
            monitor
                .tasks
                .values()
                .map(|running| running.task.as_ref().map(AbortHandle::id))
                .collect()
        };
        let before = task_ids(&monitor);
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            ("web", server.addr, fast_http()),
            (
                "off",
                other.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        assert_eq!(task_ids(&monitor), before);

        // New timing for "web": a new task, still down; "off" removed.
        let slower = HealthSpec {
            timing: timing(150, 50, 2, 2),
            ..fast_http()
        };
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            ("web", server.addr, slower),
        ]);
        assert_ne!(task_ids(&monitor)[1], before[2]);
        assert_eq!(task_ids(&monitor)[0], before[1]);
        assert_eq!(
            monitor.states(),
            BTreeMap::from([("other", Health::Up), ("web", Health::Down)])
        );
        sleep(Duration::from_millis(400)).await;
        assert!(events.try_recv().is_err());
        assert_eq!(monitor.states()["web"], Health::Down);

        // Checking turned off while down: up again, with an event.
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            (
                "web",
                server.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        let event = next_event(&mut events, SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Up,
                reason: "health checking is off".to_owned()
            }
        );
        assert_eq!(monitor.states()["web"], Health::Up);

        // Dropping the monitor stops every task.
        drop(monitor);
        sleep(Duration::from_millis(50)).await;
        let counts = (
            server.connections.load(Ordering::SeqCst),
            other.connections.load(Ordering::SeqCst),
        );
        sleep(Duration::from_millis(300)).await;
        assert_eq!(
            (
                server.connections.load(Ordering::SeqCst),
                other.connections.load(Ordering::SeqCst)
            ),
            counts
        );
        assert!(events.recv().await.is_none());
    }

    #[tokio::test]
    async fn monitor_tcp_and_icmp_targets() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = closed_port().await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        let spec = |check| HealthSpec {
            check,
            timing: timing(100, 100, 1, 1),
        };
        monitor.reconcile([
            ("open", open, spec(Check::Tcp)),
            ("closed", closed, spec(Check::Tcp)),
            ("ping", SocketAddr::new(LOCALHOST, 0), spec(Check::Icmp)),
        ]);
        let event = next_event(&mut events, SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "closed",
                health: Health::Down,
                reason: format!("connect to {closed}: connection refused")
            }
        );
        sleep(Duration::from_millis(300)).await;
        assert!(events.try_recv().is_err());
        assert_eq!(
            monitor.states(),
            BTreeMap::from([
                ("closed", Health::Down),
                ("open", Health::Up),
                ("ping", Health::Up)
            ])
        );
    }
}
