//! Helpers shared by the health module's tests: settings, and test servers
//! on loopback.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rustls::pki_types::CertificateDer;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
    time::sleep,
};

use super::{Check, Timing, lock};

pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(crate) fn timing(interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Timing {
    Timing {
        interval_ms,
        timeout_ms,
        rise,
        fall,
    }
}

pub(crate) fn http(path: &str, expect_status: u16, body_contains: Option<&str>) -> Check {
    Check::Http {
        path: path.to_owned(),
        expect_status,
        body_contains: body_contains.map(str::to_owned),
        host: None,
    }
}

pub(crate) fn https(host: Option<&str>, verify_certificate: bool) -> Check {
    Check::Https {
        path: "/health".to_owned(),
        expect_status: 200,
        body_contains: Some("ok".to_owned()),
        host: host.map(str::to_owned),
        verify_certificate,
    }
}

// ---- probes ----

/// A test server on loopback that counts connections and records the
/// requests (and, over TLS, the server name the client sent).
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
    pub(crate) server_names: Arc<Mutex<Vec<Option<String>>>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub(crate) fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

pub(crate) fn response(status: &str, body: &str) -> Vec<u8> {
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

pub(crate) async fn serve(
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

pub(crate) async fn http_server(
    respond: impl Fn() -> Option<Vec<u8>> + Send + Sync + 'static,
) -> TestServer {
    serve(LOCALHOST, None, respond).await
}

/// A TLS acceptor with a fresh self-signed certificate for "localhost",
/// and that certificate.
pub(crate) fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
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
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap()
}

pub(crate) const SECOND: Duration = Duration::from_secs(1);
