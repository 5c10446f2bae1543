//! The real `lb-console` binary on 127.0.0.1 for a browser: a self-signed
//! certificate of its own (the browser trusts exactly its key), credentials
//! written by `lb-console set-password`, an audit trail, all in a temporary
//! directory. Killed on drop.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::browser::Browser;
use super::stderr::{self, Stderr};

/// The administrator in these tests.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "a long enough secret";

/// How long the binary gets to write a credentials file or to listen.
const START: Duration = Duration::from_secs(10);

pub struct Console {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    spki: String,
    #[allow(dead_code)] // tests/network.rs's client trusts it.
    cert: Vec<u8>,
    dir: tempfile::TempDir,
}

impl Console {
    /// With no daemon (the console shows it as unknown).
    pub fn start() -> Console {
        Console::start_with(&[])
    }

    /// With more arguments (`--socket PATH`, `--peer-console URL`).
    pub fn start_with(args: &[&std::ffi::OsStr]) -> Console {
        Console::start_in(None, "127.0.0.1:0", args)
    }

    /// Inside the network namespace `netns` (`ip netns exec`) when given,
    /// listening on `listen` (its certificate names `localhost` and
    /// 127.0.0.1 whatever the address).
    pub fn start_in(netns: Option<&str>, listen: &str, args: &[&std::ffi::OsStr]) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lb console browser test");
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let spki = spki_sha256_base64(&key.public_key_der());

        let credentials = dir.path().join("console.toml");
        let mut set = Command::new(env!("CARGO_BIN_EXE_lb-console"))
            .args(["set-password", "--credentials"])
            .arg(&credentials)
            .args(["--user", USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(set.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = set.wait_with_output().unwrap();
        assert!(out.status.success(), "lb-console set-password: {out:?}");

        let mut command = match netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_lb-console")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_lb-console")),
        };
        let mut child = command
            .args(["--listen", listen, "--cert"])
            .arg(&cert_path)
            .arg("--key")
            .arg(&key_path)
            .arg("--credentials")
            .arg(&credentials)
            .arg("--audit")
            .arg(dir.path().join("audit.jsonl"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let Stderr { log, lines } = stderr::capture(&mut child);
        let addr = loop {
            match lines.recv_timeout(START) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on https://").nth(1) {
                        break rest.split('/').next().unwrap().parse().unwrap();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "lb-console did not listen within {} s:\n{}",
                        START.as_secs(),
                        log.lock().unwrap()
                    );
                }
            }
        };
        Console {
            child,
            addr,
            log,
            spki,
            cert: cert.der().to_vec(),
            dir,
        }
    }

    /// `https://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The base64 SHA-256 of the certificate's public key (what chromium's
    /// `--ignore-certificate-errors-spki-list` takes).
    pub fn spki(&self) -> &str {
        &self.spki
    }

    /// The console's certificate (DER).
    #[allow(dead_code)] // tests/network.rs only.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    #[allow(dead_code)] // tests/network.rs only.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Logs in as [`USER`] in `browser` (its current window), and checks
    /// that the dashboard followed.
    #[allow(dead_code)] // tests/real_daemon.rs and tests/pair.rs only.
    pub async fn log_in(&self, browser: &Browser) {
        browser.goto(&self.url("/login")).await;
        browser.fill("#user", USER).await;
        browser.fill("#password", PASSWORD).await;
        browser
            .click_and_wait("form.stack button[type=submit]")
            .await;
        assert_eq!(
            browser.path().await,
            "/",
            "logging into {}: {}",
            self.url("/"),
            browser.text("main").await
        );
    }

    /// The audit trail as written so far.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spki_sha256_base64(spki_der: &[u8]) -> String {
    let hex = lb_console::sha256_fingerprint(spki_der);
    let bytes: Vec<u8> = hex
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
