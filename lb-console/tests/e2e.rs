//! End-to-end tests: the real server and the real binary on 127.0.0.1, with
//! real TLS clients. No traffic leaves the loopback interface.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_console::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use support::stderr::{self, Stderr};

#[allow(dead_code)]
mod support;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn client_config(
    trusted: &CertificateDer<'static>,
    version: &'static SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(lb_console::crypto_provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

struct Reply {
    status: u16,
    head: String,
    body: String,
    version: Option<rustls::ProtocolVersion>,
    alpn: Option<Vec<u8>>,
}

/// GET `path` over HTTPS/1.1 (blocking; run it off the async runtime).
fn https_get(addr: SocketAddr, server_name: &str, config: Arc<ClientConfig>, path: &str) -> Reply {
    https_request(addr, server_name, config, &format!("GET {path}"), "", "")
}

/// `request` ("METHOD PATH") over HTTPS/1.1 with `headers` (CRLF-ended
/// lines) and a form `body` (blocking).
fn https_request(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    request: &str,
    headers: &str,
    body: &str,
) -> Reply {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let form = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        tls,
        "{request} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n{headers}{form}\r\n{body}"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
        version: tls.conn.protocol_version(),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
    }
}

async fn https_get_async(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Reply {
    let server_name = server_name.to_owned();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || https_get(addr, &server_name, config, &path))
        .await
        .unwrap()
}

struct Server {
    addr: SocketAddr,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// The administrator's password in these tests.
const PASSWORD: &str = "a long enough secret";

async fn start_server(identity: &Identity) -> Server {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = lb_console::tls_config(identity).unwrap();
    let handle = axum_server::Handle::new();
    let dir = tempfile::tempdir().unwrap();
    let access = Arc::new(lb_console::login::Access::new(
        lb_console::auth::password::Credentials::new("admin", PASSWORD).unwrap(),
        lb_console::auth::audit::AuditLog::new(&dir.path().join("audit.jsonl")),
    ));
    // No daemon in these tests: the console shows the load balancer as
    // unknown.
    let daemon = lb_common::api::Client::new(&dir.path().join("no-daemon.sock"));
    let task = tokio::spawn(lb_console::serve(
        listener,
        tls,
        handle.clone(),
        access,
        daemon,
        None,
    ));
    let listening = tokio::time::timeout(IO_TIMEOUT, handle.listening())
        .await
        .expect("server did not start listening");
    assert_eq!(listening, Some(addr));
    Server {
        addr,
        handle,
        task,
        _dir: dir,
    }
}

impl Server {
    async fn stop(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(2)));
        tokio::time::timeout(IO_TIMEOUT, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// The login page, with the security headers.
fn assert_login_page(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.head);
    let head = reply.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(reply.body.contains("<title>Log in · lb console</title>"));
    assert!(
        reply
            .body
            .contains(r#"<form class="stack" method="post" action="/login">"#)
    );
}

/// Logs in over HTTPS and opens `/`: the landing page of this host.
fn log_in_and_open_the_console(addr: SocketAddr, name: &str, config: Arc<ClientConfig>) {
    let reply = https_get(addr, name, config.clone(), "/");
    assert_eq!(reply.status, 303, "{}", reply.head);
    assert!(reply.head.to_ascii_lowercase().contains("location: /login"));
    let reply = https_request(
        addr,
        name,
        config.clone(),
        "POST /login",
        "",
        &format!("user=admin&password={}", PASSWORD.replace(' ', "+")),
    );
    assert_eq!(reply.status, 303, "{}\n{}", reply.head, reply.body);
    let cookie = reply
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {}", reply.head))
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let reply = https_request(
        addr,
        name,
        config,
        "GET /",
        &format!("Cookie: {cookie}\r\n"),
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(reply.body.contains("<title>Dashboard · "));
    assert!(
        reply
            .body
            .contains(&format!("lb {}", env!("CARGO_PKG_VERSION")))
    );
    assert!(reply.body.contains(&lb_console::hostname()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_page_over_tls13_and_tls12() {
    let identity = lb_console::self_signed_identity("console.test", Some(LOCALHOST)).unwrap();
    let server = start_server(&identity).await;

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // By DNS name (SAN "localhost") and by IP address (SAN 127.0.0.1).
        for name in ["localhost", "127.0.0.1"] {
            let config = client_config(identity.leaf(), version);
            let reply = https_get_async(server.addr, name, config, "/login").await;
            assert_login_page(&reply);
            assert_eq!(reply.version, Some(version.version));
            assert_eq!(reply.alpn.as_deref(), Some(&b"http/1.1"[..]));
        }
    }

    let config = client_config(identity.leaf(), &rustls::version::TLS13);
    let reply = https_get_async(server.addr, "localhost", config.clone(), "/healthz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    // Anonymous: every other page sends to the login page.
    let reply = https_get_async(server.addr, "localhost", config.clone(), "/nope").await;
    assert_eq!(reply.status, 303);
    let addr = server.addr;
    tokio::task::spawn_blocking(move || log_in_and_open_the_console(addr, "localhost", config))
        .await
        .unwrap();

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reject_an_untrusted_or_misnamed_certificate() {
    // The certificate is checked as a browser would: a client trusting
    // another certificate fails the handshake, and so does a wrong name.
    let identity = lb_console::self_signed_identity("console.test", Some(LOCALHOST)).unwrap();
    let other = lb_console::self_signed_identity("other.test", Some(LOCALHOST)).unwrap();
    let server = start_server(&identity).await;
    let addr = server.addr;
    let errors = tokio::task::spawn_blocking(move || {
        let attempts = [
            (
                client_config(other.leaf(), &rustls::version::TLS13),
                "localhost",
            ),
            (
                client_config(identity.leaf(), &rustls::version::TLS13),
                "wrong.example",
            ),
        ];
        attempts
            .into_iter()
            .map(|(config, name)| {
                let name = ServerName::try_from(name.to_owned()).unwrap();
                let conn = rustls::ClientConnection::new(config, name).unwrap();
                let tcp = TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .and_then(|()| tls.flush())
                    .and_then(|()| tls.read(&mut [0u8; 64]))
                    .expect_err("handshake must fail")
                    .to_string()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(errors[0].contains("UnknownIssuer"), "{}", errors[0]);
    assert!(errors[1].contains("not valid for name"), "{}", errors[1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_no_page() {
    let identity = lb_console::self_signed_identity("console.test", Some(LOCALHOST)).unwrap();
    let server = start_server(&identity).await;
    let addr = server.addr;
    let received = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        // Read until the server closes the connection (or resets it).
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(err)
                    if err.kind() == std::io::ErrorKind::WouldBlock
                        || err.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("server kept a cleartext connection open")
                }
                Err(_) => break, // reset: fine
            }
        }
        received
    })
    .await
    .unwrap();
    assert!(
        !received.starts_with(b"HTTP/"),
        "got an HTTP answer in cleartext"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(
        !text.contains("lb console"),
        "page served in cleartext: {text}"
    );
    // At most a TLS alert record (content type 21) comes back.
    assert!(received.is_empty() || received[0] == 21, "{received:?}");

    // The server is still fine for TLS clients afterwards.
    let config = client_config(identity.leaf(), &rustls::version::TLS13);
    assert_login_page(&https_get_async(addr, "localhost", config, "/login").await);
    server.stop().await;
}

// --- the binary --------------------------------------------------------------

/// The lb-console process; killed on drop if the test fails half-way.
struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: std::sync::mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary with `args`, credentials (admin, [`PASSWORD`])
    /// written with `lb-console set-password`, and an audit trail, both in a
    /// directory of its own.
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("console.toml");
        let mut set = Command::new(env!("CARGO_BIN_EXE_lb-console"))
            .args(["set-password", "--credentials", path_str(&credentials)])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(set.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = set.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lb-console"))
            .args(args)
            .args(["--credentials", path_str(&credentials)])
            .args(["--audit", path_str(&dir.path().join("audit.jsonl"))])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let Stderr { log, lines } = stderr::capture(&mut child);
        Self {
            child,
            log,
            lines,
            dir,
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_for_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    fn listening_addr(&self) -> SocketAddr {
        let line = self.wait_for_line("listening on https://");
        let rest = line.split("listening on https://").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }

    /// Sends `signal`; returns the exit status and the whole log.
    fn stop_with(mut self, signal: libc::c_int) -> (std::process::ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The log reader ends at EOF, right after the exit.
                while self.lines.recv_timeout(IO_TIMEOUT).is_ok() {}
                return (status, self.log.lock().unwrap().clone());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lb-console did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Accepts any server certificate and remembers it, still checking the
/// handshake signatures: for learning the binary's self-signed certificate.
#[derive(Debug)]
struct Remember {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Remember {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
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

#[test]
fn binary_self_signed_logs_fingerprint_and_stops_on_sigterm() {
    let process = Process::start(&["--listen", "127.0.0.1:0"]);
    let line = process.wait_for_line("fingerprint=");
    let fingerprint: String = line
        .split("fingerprint=")
        .nth(1)
        .unwrap()
        .chars()
        .take(32 * 3 - 1)
        .collect();
    let addr = process.listening_addr();

    // Learn the certificate the server presents: its fingerprint is the
    // logged one, and a client trusting exactly it gets the page.
    let provider = lb_console::crypto_provider();
    let remember = Arc::new(Remember {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(remember.clone())
        .with_no_client_auth();
    let reply = https_get(addr, "localhost", Arc::new(config), "/healthz");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    let presented = remember.seen.lock().unwrap().clone().unwrap();
    assert_eq!(lb_console::sha256_fingerprint(&presented), fingerprint);

    let trusting = client_config(&presented, &rustls::version::TLS13);
    log_in_and_open_the_console(addr, "localhost", trusting.clone());
    assert_login_page(&https_get(addr, "127.0.0.1", trusting, "/login"));
    // The login is in the audit trail.
    let trail = std::fs::read_to_string(process.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail.contains(r#""action":"login","detail":"","outcome":"ok""#),
        "{trail}"
    );

    let (status, log) = process.stop_with(libc::SIGTERM);
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("lb console stopped"), "{log}");
}

#[test]
fn binary_uses_given_cert_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["console.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let process = Process::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        path_str(&cert_path),
        "--key",
        path_str(&key_path),
    ]);
    let addr = process.listening_addr();
    let config = client_config(cert.der(), &rustls::version::TLS12);
    assert_login_page(&https_get(addr, "console.test", config, "/login"));

    let (status, log) = process.stop_with(libc::SIGINT);
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("lb console stopped"), "{log}");
}

#[test]
fn binary_reports_bad_arguments_and_files() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lb-console"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = run(&["--cert", "/nonexistent/cert.pem"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--key"), "{err}");

    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot read certificate file /nonexistent/cert.pem"),
        "{err}"
    );

    let (code, err) = run(&["--listen", "not-an-address"]);
    assert_eq!(code, Some(2), "{err}");

    // No credentials yet: it says how to set them.
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--credentials",
        "/nonexistent/console.toml",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/console.toml") && err.contains("lb-console set-password"),
        "{err}"
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}
