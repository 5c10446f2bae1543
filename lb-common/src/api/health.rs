//! What to check ([`Check`]) and when ([`Timing`]), together a
//! [`HealthSpec`]: their serde form and their validation.
//!
//! In a configuration file a [`HealthSpec`] is one flat table: `kind` picks
//! the check, and the check's own fields and the timing fields sit beside
//! it. Every field but `kind` is optional; the comments give the defaults.
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
use std::{fmt, prelude::rust_2024::*, time::Duration};

use hyper::{header, http::uri::PathAndQuery};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};

/// How much of an HTTP(S) check's answer body is read (64 KiB): what
/// `body_contains` must fit in.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The shortest `interval_ms` allowed.
pub const MIN_INTERVAL_MS: u64 = 100;

/// The longest `interval_ms` allowed (an hour).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

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

    /// `interval_ms` as a duration, within the allowed range.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS))
    }

    /// `timeout_ms` as a duration: at least 1 ms and at most the interval.
    pub fn timeout(&self) -> Duration {
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
