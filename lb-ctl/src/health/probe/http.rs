//! `http`: an HTTP/1.1 GET answers with the expected status (and body);
//! the exchange also runs over TLS for `https` (see `https.rs`).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    task::AbortHandle,
    time::Instant,
};

use super::{ProbeError, Stage, error_chain, https, step, tcp::connect};

/// How much of an HTTP response body is read to look for `body_contains`
/// (the health check's setting is checked against it, so it is the API's).
pub use lb_common::api::health::BODY_LIMIT;

const USER_AGENT: &str = concat!("lb-health/", env!("CARGO_PKG_VERSION"));

/// What an HTTP (or HTTPS) probe asks and expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// The request's path and query; starts with `/`.
    pub path: &'a str,
    /// The status the answer must have.
    pub expect_status: u16,
    /// If set, the first [`BODY_LIMIT`] bytes of the body must contain it.
    pub body_contains: Option<&'a str>,
    /// The `Host` header (and, over TLS, the server name); None: the
    /// target's address (and its IP as the server name).
    pub host: Option<&'a str>,
}

/// One HTTP probe of `target`: a `GET request.path` (`Host:` `request.host`
/// or the target's address, `Connection: close`, `User-Agent:
/// lb-health/<version>`) answers with `request.expect_status` and, if
/// `request.body_contains` is set, the first [`BODY_LIMIT`] bytes of the
/// body contain it; all of it within `timeout`.
pub async fn probe(
    request: &HttpRequest<'_>,
    target: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    probe_http(request, None, target, deadline, timeout).await
}

/// `tls`: None for plain HTTP, the client configuration for HTTPS.
pub(super) async fn probe_http(
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
    let stream = https::handshake(tcp, tls, request.host, target, deadline, timeout).await?;
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::health::{Check, probe, testing::*};

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
}
