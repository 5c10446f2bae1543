//! The probes: one function per kind, from its parameters, a target and a
//! timeout to `Result<(), ProbeError>`, and [`probe()`], which runs the one a
//! [`Check`] names.
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
    error::Error as StdError,
    fmt, io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::time::Instant;

use super::Check;

pub mod http;
pub mod https;
pub mod icmp;
pub mod tcp;

pub use http::{BODY_LIMIT, HttpRequest};

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
    match check {
        Check::None => Ok(()),
        Check::Tcp => tcp::probe(target, timeout).await,
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
            http::probe(&request, target, timeout).await
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
            https::probe(&request, *verify_certificate, target, timeout).await
        }
        Check::Icmp => icmp::probe(target, timeout).await,
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::health::testing::*;

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
}
