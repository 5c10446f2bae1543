//! Network > Interfaces edited for real: the `lb-console` binary runs
//! inside a network namespace this test creates (`ext0`, one end of a veth
//! pair whose other end is in a client namespace, and `int0`, a veth
//! whose peer `int1` stays beside it);
//! the test's HTTPS client runs in the client namespace and reaches the
//! console over the veth, so the console's own address of the connection
//! is 198.18.0.1 on `ext0`. Every change goes through the forms; `ip -n`
//! then shows that exactly that changed. Root only; nothing is touched
//! outside the two namespaces (removed on Drop, also on panic).

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use lb_tests::netns::Netns;
use rustls::pki_types::{CertificateDer, ServerName};
use support::console::{Console, PASSWORD, USER};
use support::daemon::{self, FakeDaemon};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Two namespaces of this run (`lbt-PID-...`: the rigs' sweep removes
/// them if the run is killed before their Drop).
fn namespaces() -> (Netns, Netns) {
    let prefix = format!("lbt-{}-console-net", std::process::id());
    let console = Netns::create(&format!("{prefix}-c")).unwrap();
    let client = Netns::create(&format!("{prefix}-k")).unwrap();
    // Created inside the console's namespace, the peer moved to the
    // client's: no interface ever appears in the test's own namespace.
    for args in [
        &[
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "cl0",
            "netns",
            client.name(),
        ][..],
        &["addr", "add", "198.18.0.1/24", "dev", "ext0"],
        &["addr", "add", "2001:db8::1/64", "dev", "ext0", "nodad"],
        &["link", "set", "ext0", "up"],
        &[
            "link", "add", "int0", "type", "veth", "peer", "name", "int1",
        ],
        &["addr", "add", "198.18.1.1/24", "dev", "int0"],
        &["link", "set", "int0", "up"],
        &["link", "set", "int1", "up"],
    ] {
        console.ip(args).unwrap();
    }
    for args in [
        &["addr", "add", "198.18.0.2/24", "dev", "cl0"][..],
        &["link", "set", "cl0", "up"],
    ] {
        client.ip(args).unwrap();
    }
    (console, client)
}

/// What `ip -n NS` says of each interface: MTU and addresses
/// (`ADDRESS/PREFIX`, sorted; IPv6 link-local ones left out).
fn snapshot(ns: &Netns) -> BTreeMap<String, (u64, Vec<String>)> {
    let links: serde_json::Value =
        serde_json::from_slice(&ns.ip(["-j", "link", "show"]).unwrap().stdout).unwrap();
    let addrs: serde_json::Value =
        serde_json::from_slice(&ns.ip(["-j", "addr", "show"]).unwrap().stdout).unwrap();
    let mut out = BTreeMap::new();
    for link in links.as_array().unwrap() {
        let name = link["ifname"].as_str().unwrap().to_owned();
        let mtu = link["mtu"].as_u64().unwrap();
        let mut list = Vec::new();
        for a in addrs.as_array().unwrap() {
            if a["ifname"] != link["ifname"] {
                continue;
            }
            for info in a["addr_info"].as_array().unwrap() {
                let local = info["local"].as_str().unwrap();
                if !local.starts_with("fe80:") {
                    list.push(format!("{local}/{}", info["prefixlen"]));
                }
            }
        }
        list.sort();
        out.insert(name, (mtu, list));
    }
    out
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An HTTPS client in the client namespace.
struct Client<'a> {
    ns: &'a Netns,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    cookie: String,
    csrf: String,
}

impl<'a> Client<'a> {
    fn new(ns: &'a Netns, console: &Console) -> Client<'a> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(console.cert_der().to_vec()))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(lb_console::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            ns,
            addr: console.addr(),
            config: Arc::new(config),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    /// `METHOD PATH` with a form `body`, over a new connection from the
    /// client namespace.
    fn request(&self, method: &str, path: &str, body: &str) -> Reply {
        let (addr, config) = (self.addr, self.config.clone());
        let cookie = if self.cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", self.cookie)
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{cookie}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.ns
            .run_in(move || {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(config, name)?;
                let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
                tcp.set_read_timeout(Some(IO_TIMEOUT))?;
                tcp.set_write_timeout(Some(IO_TIMEOUT))?;
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                tls.write_all(request.as_bytes())?;
                tls.flush()?;
                let mut raw = Vec::new();
                tls.read_to_end(&mut raw)?;
                let text = String::from_utf8(raw)?;
                let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
                Ok(Reply {
                    status: head[9..12].parse().unwrap(),
                    head: head.to_owned(),
                    body: body.to_owned(),
                })
            })
            .unwrap()
    }

    fn log_in(&mut self) {
        let reply = self.request(
            "POST",
            "/login",
            &format!("user={USER}&password={}", PASSWORD.replace(' ', "+")),
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        let cookie = reply.header("set-cookie").unwrap();
        self.cookie = cookie.split(';').next().unwrap().to_owned();
        let page = self.request("GET", "/network", "");
        assert_eq!(page.status, 200);
        self.csrf = page
            .body
            .split(r#"name="csrf" value=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
    }

    /// Posts a form of the page (with the session's CSRF token).
    fn post(&self, path: &str, form: &str) -> Reply {
        self.request("POST", path, &format!("csrf={}&{form}", self.csrf))
    }
}

#[test]
fn an_interfaces_mtu_and_addresses_change_through_the_forms_and_only_them() {
    let (console_ns, client_ns) = namespaces();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    // A standby: per-node settings are still changed on it.
    let daemon = FakeDaemon::start(daemon::STANDBY);
    let console = Console::start_in(
        Some(console_ns.name()),
        "198.18.0.1:0",
        &[OsStr::new("--socket"), daemon.socket().as_os_str()],
    );
    let mut client = Client::new(&client_ns, &console);
    client.log_in();

    let start = snapshot(&console_ns);
    let mut want = start.clone();
    assert_eq!(start["int0"], (1500, vec!["198.18.1.1/24".to_owned()]));
    assert_eq!(
        start["ext0"],
        (
            1500,
            vec!["198.18.0.1/24".to_owned(), "2001:db8::1/64".to_owned()]
        )
    );

    // Each change, then exactly it in the kernel.
    for (path, form, change) in [
        (
            "/network/mtu",
            "interface=int0&mtu=1400",
            &(|w: &mut BTreeMap<String, (u64, Vec<String>)>| w.get_mut("int0").unwrap().0 = 1400)
                as &dyn Fn(&mut BTreeMap<String, (u64, Vec<String>)>),
        ),
        (
            "/network/address/add",
            "interface=int0&address=2001%3Adb8%3A1%3A%3A1%2F64",
            &|w| w.get_mut("int0").unwrap().1.push("2001:db8:1::1/64".into()),
        ),
        (
            "/network/address/add",
            "interface=int0&address=198.18.2.1%2F28",
            &|w| w.get_mut("int0").unwrap().1.push("198.18.2.1/28".into()),
        ),
        (
            "/network/address/delete",
            "interface=int0&address=198.18.1.1%2F24",
            &|w| {
                w.get_mut("int0")
                    .unwrap()
                    .1
                    .retain(|a| a != "198.18.1.1/24")
            },
        ),
        // Another address of the interface the console is reached on:
        // the connection stays, no confirmation.
        (
            "/network/address/delete",
            "interface=ext0&address=2001%3Adb8%3A%3A1%2F64",
            &|w| {
                w.get_mut("ext0")
                    .unwrap()
                    .1
                    .retain(|a| a != "2001:db8::1/64")
            },
        ),
    ] {
        let reply = client.post(path, form);
        assert_eq!(reply.status, 303, "{path} {form}: {}", reply.body);
        let interface = form.split('&').next().unwrap().split('=').nth(1).unwrap();
        assert_eq!(
            reply.header("location"),
            Some(&*format!("/network?changed={interface}"))
        );
        change(&mut want);
        for (_, addrs) in want.values_mut() {
            addrs.sort();
        }
        assert_eq!(snapshot(&console_ns), want, "after {path} {form}");
    }
    let page = client.request("GET", "/network?changed=int0", "");
    assert!(
        page.body
            .contains("The change to <code>int0</code> is made"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<span class="mono">2001:db8:1::1/64</span>"#)
    );

    // Refused: the reason, and nothing changed. int0 has an IPv6 address
    // now: 1280 at least.
    let reply = client.post("/network/mtu", "interface=int0&mtu=1279");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains(
        "1279 is below 1280, the smallest for IPv6, and the interface has IPv6 addresses: enter 1280 to 65535."
    ));
    assert!(reply.body.contains(r#"aria-invalid="true" value="1279">"#));
    // An address already there.
    let reply = client.post(
        "/network/address/add",
        "interface=int0&address=198.18.2.1%2F24",
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .body
            .contains("198.18.2.1 is already an address of int0.")
    );
    // Without the CSRF token.
    let reply = client.request("POST", "/network/mtu", "interface=int0&mtu=1300");
    assert_eq!(reply.status, 403);
    assert_eq!(snapshot(&console_ns), want);

    // What may cut this connection off: a confirmation first, nothing
    // changed until it is confirmed.
    let reply = client.post(
        "/network/address/delete",
        "interface=ext0&address=198.18.0.1%2F24",
    );
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("Delete 198.18.0.1/24 from ext0?"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("Your browser reaches the console on 198.18.0.1: deleting it from ext0")
    );
    assert!(
        reply
            .body
            .contains(r#"<input type="hidden" name="confirm" value="yes">"#)
    );
    let reply = client.post("/network/mtu", "interface=ext0&mtu=1400");
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("Set the MTU of ext0 to 1400?"));
    assert!(
        reply
            .body
            .contains("ext0 holds 198.18.0.1, the address your browser reaches the console on")
    );
    assert_eq!(snapshot(&console_ns), want);
    let reply = client.post("/network/mtu", "interface=ext0&mtu=1400&confirm=yes");
    assert_eq!(reply.status, 303, "{}", reply.body);
    want.get_mut("ext0").unwrap().0 = 1400;
    assert_eq!(snapshot(&console_ns), want);

    // The trail: sent, then how it ended; the refusals with why.
    let trail = console.audit();
    for line in [
        r#""action":"interface mtu","detail":"int0 mtu 1400","outcome":"sent to the kernel""#,
        r#""action":"interface mtu","detail":"int0 mtu 1400","outcome":"ok""#,
        r#""action":"address add","detail":"int0 2001:db8:1::1/64","outcome":"ok""#,
        r#""action":"address delete","detail":"int0 198.18.1.1/24","outcome":"ok""#,
        r#""action":"address delete","detail":"ext0 2001:db8::1/64","outcome":"ok""#,
        r#""action":"interface mtu","detail":"ext0 mtu 1400","outcome":"ok""#,
        r#""action":"interface mtu","detail":"interface=\"int0\" mtu=\"1279\"","outcome":"refused: mtu: 1279 is below 1280"#,
    ] {
        assert!(trail.contains(line), "{line} missing from\n{trail}");
    }
    assert!(
        !trail.contains(r#""detail":"ext0 198.18.0.1/24""#),
        "{trail}"
    );
    // Never asked of the daemon.
    assert_eq!(daemon.asked(), []);
}
