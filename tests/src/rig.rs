//! The netns rig: a client, a load balancer and nginx backends, each in a
//! network namespace of its own, wired as lb is deployed (two-arm):
//!
//! ```text
//!  client ns            lb ns                     switch ns          backend ns (xN)
//!  eth0 ───────────── ext0   [XDP]   int0 ────── p-lb ┐
//!  198.18.0.10          198.18.0.1    198.18.1.1        br0 ── p-bN ───── eth0
//!  2001:db8::10         2001:db8::1   2001:db8:1::1   ┘                198.18.1.1N
//!                                                                      2001:db8:1::1N
//! ```
//!
//! Backends route through the LB's internal address (the gateway), and share
//! one L2 segment with it (the switch's bridge), so both NAT and DSR work.
//! Everything lives in namespaces the rig created; nothing touches the root
//! namespace. Dropping the rig kills its processes and deletes its
//! namespaces, also when a test panics. Namespaces of runs that were killed
//! before they could clean up are swept by the next rig.
use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::{self, Netns};

/// The LB's interface towards the clients.
pub const LB_EXT_IFACE: &str = "ext0";
/// The LB's interface towards the backends.
pub const LB_INT_IFACE: &str = "int0";

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const LB_EXT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LB_EXT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The backends' gateway.
pub const LB_INT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const LB_INT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// The service address the rig's clients use (the floating IP on the LB).
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// Prefix of the namespaces of test rigs (`lbt-PID-N-ROLE`).
const TEST_PREFIX: &str = "lbt";
/// The most backends a rig builds (addresses .11 to .29).
pub const MAX_BACKENDS: usize = 19;

/// Address of backend `index` (0-based).
pub fn backend_v4(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 11 + index as u8)
}

/// Address of backend `index` (0-based).
pub fn backend_v6(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11 + index as u16)
}

/// What to build.
#[derive(Clone, Debug)]
pub struct RigOptions {
    /// Namespace name prefix; `None` makes a unique one for tests.
    pub prefix: Option<String>,
    /// Number of backend namespaces.
    pub backends: usize,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            backends: 3,
        }
    }
}

/// A backend host.
#[derive(Debug)]
pub struct Backend {
    /// Short name, also the body of its nginx page: `b1`, `b2`...
    pub name: String,
    pub ns: Netns,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    nginx: Option<Child>,
    udp: Option<Child>,
}

/// A built rig. See the module documentation for the layout.
#[derive(Debug)]
pub struct Rig {
    pub prefix: String,
    pub client: Netns,
    pub lb: Netns,
    pub switch: Netns,
    pub backends: Vec<Backend>,
    dir: tempfile::TempDir,
}

impl Rig {
    /// Builds the namespaces, links, addresses and routes. Starts no process.
    pub fn build(options: &RigOptions) -> Result<Self> {
        if options.backends == 0 || options.backends > MAX_BACKENDS {
            bail!(
                "a rig has 1 to {MAX_BACKENDS} backends, not {}",
                options.backends
            );
        }
        let prefix = match &options.prefix {
            Some(prefix) => prefix.clone(),
            None => {
                sweep_stale_test_namespaces();
                unique_test_prefix()
            }
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .context("creating the rig's scratch directory")?;
        let client = Netns::create(&format!("{prefix}-client"))?;
        let lb = Netns::create(&format!("{prefix}-lb"))?;
        let switch = Netns::create(&format!("{prefix}-sw"))?;
        let mut backends = Vec::with_capacity(options.backends);
        for index in 0..options.backends {
            let name = format!("b{}", index + 1);
            backends.push(Backend {
                ns: Netns::create(&format!("{prefix}-{name}"))?,
                name,
                v4: backend_v4(index),
                v6: backend_v6(index),
                nginx: None,
                udp: None,
            });
        }
        let rig = Self {
            prefix,
            client,
            lb,
            switch,
            backends,
            dir,
        };
        rig.wire().context("wiring the rig")?;
        Ok(rig)
    }

    fn wire(&self) -> Result<()> {
        // Client <-> LB.
        veth(&self.client, "eth0", &self.lb, LB_EXT_IFACE)?;
        address(&self.client, "eth0", CLIENT_V4.into(), 24)?;
        address(&self.client, "eth0", CLIENT_V6.into(), 64)?;
        address(&self.lb, LB_EXT_IFACE, LB_EXT_V4.into(), 24)?;
        address(&self.lb, LB_EXT_IFACE, LB_EXT_V6.into(), 64)?;
        default_routes(&self.client, LB_EXT_V4, LB_EXT_V6)?;

        // LB <-> switch <-> backends.
        self.switch
            .ip(["link", "add", "br0", "type", "bridge"])
            .context("creating the bridge")?;
        self.switch.ip(["link", "set", "br0", "up"])?;
        veth(&self.lb, LB_INT_IFACE, &self.switch, "p-lb")?;
        self.switch.ip(["link", "set", "p-lb", "master", "br0"])?;
        address(&self.lb, LB_INT_IFACE, LB_INT_V4.into(), 24)?;
        address(&self.lb, LB_INT_IFACE, LB_INT_V6.into(), 64)?;
        for backend in &self.backends {
            let port = format!("p-{}", backend.name);
            veth(&backend.ns, "eth0", &self.switch, &port)?;
            self.switch.ip(["link", "set", &port, "master", "br0"])?;
            address(&backend.ns, "eth0", backend.v4.into(), 24)?;
            address(&backend.ns, "eth0", backend.v6.into(), 64)?;
            default_routes(&backend.ns, LB_INT_V4, LB_INT_V6)?;
        }

        self.lb.sysctl("net.ipv4.ip_forward", "1")?;
        self.lb.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // Replies from the VIP (DSR answers, NAT replies the program hands
        // to the kernel before it knows the client's MAC) arrive with a
        // source address the LB holds; let the kernel forward them.
        self.lb.sysctl("net.ipv4.conf.all.accept_local", "1")?;
        self.lb
            .sysctl(&format!("net.ipv4.conf.{LB_INT_IFACE}.accept_local"), "1")?;
        Ok(())
    }

    /// Puts the VIPs on the LB's external interface, as the floating IP is
    /// in a deployment: the LB's kernel answers ARP and neighbour
    /// solicitations for them; the XDP program takes the service traffic.
    /// The IPv6 VIP is deprecated (`preferred_lft 0`: still answered and
    /// received) so that the kernel never picks it as the source of its own
    /// packets (a /128 would win Linux's longest-match rule over the
    /// interface's /64), as ARCHITECTURE.md asks of a deployment.
    pub fn add_vips(&self) -> Result<()> {
        self.lb
            .ip(["addr", "add", &format!("{VIP_V4}/32"), "dev", LB_EXT_IFACE])?;
        self.lb.ip([
            "addr",
            "add",
            &format!("{VIP_V6}/128"),
            "dev",
            LB_EXT_IFACE,
            "nodad",
            "preferred_lft",
            "0",
        ])?;
        Ok(())
    }

    /// Resolves the backends' neighbour entries in the LB namespace (what the
    /// daemon's health checks do): a DSR packet needs the backend's MAC.
    pub fn resolve_backends(&self) -> Result<()> {
        for backend in &self.backends {
            for addr in [backend.v4.to_string(), backend.v6.to_string()] {
                self.lb
                    .exec("ping", ["-c", "1", "-W", "2", &addr])
                    .with_context(|| format!("ping {addr} from the LB"))?;
            }
        }
        Ok(())
    }

    /// DSR backends hold the VIPs on their loopback (and, being on another
    /// L2 segment than the clients, never answer ARP for them there).
    pub fn backends_hold_vips(&self) -> Result<()> {
        for backend in &self.backends {
            backend
                .ns
                .ip(["addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"])?;
            backend
                .ns
                .ip(["addr", "add", &format!("{VIP_V6}/128"), "dev", "lo"])?;
        }
        Ok(())
    }

    /// Scratch directory of this rig (configs, logs), removed on Drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts nginx in every backend namespace and waits until each listens.
    /// Each serves `/` with its name (`b1\n`...) and `/big` (64 MiB).
    pub fn start_nginx(&mut self) -> Result<()> {
        for index in 0..self.backends.len() {
            self.start_backend(index)?;
        }
        Ok(())
    }

    /// Starts nginx in backend `index` (again, after [`Rig::stop_backend`]).
    pub fn start_backend(&mut self, index: usize) -> Result<()> {
        let root = self.dir.path().join(&self.backends[index].name);
        let conf = write_nginx_site(&root, &self.backends[index].name)?;
        let backend = &mut self.backends[index];
        if backend.nginx.is_some() {
            bail!("nginx already runs in {}", backend.ns.name());
        }
        let child = backend.ns.spawn(
            backend
                .ns
                .command("nginx")
                .args(["-e", "stderr", "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )?;
        backend.nginx = Some(child);
        wait_for_listener(&backend.ns, 80, Duration::from_secs(10))
            .with_context(|| format!("nginx in {} did not start", backend.ns.name()))
    }

    /// Starts a UDP responder on `port` in every backend (IPv4 and IPv6):
    /// each datagram is answered with the backend's name.
    pub fn start_udp(&mut self, port: u16) -> Result<()> {
        for backend in &mut self.backends {
            let child = backend.ns.spawn(
                backend
                    .ns
                    .command("socat")
                    .arg(format!("UDP6-RECVFROM:{port},ipv6only=0,fork,reuseaddr"))
                    .arg(format!("SYSTEM:echo {}", backend.name))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            backend.udp = Some(child);
        }
        Ok(())
    }

    /// Starts a UDP echo on `port` in every backend (IPv4 and IPv6): each
    /// datagram (up to 8 KiB) comes back as it was, so a big request gets a
    /// big answer, in fragments both ways.
    pub fn start_udp_echo(&mut self, port: u16) -> Result<()> {
        for backend in &mut self.backends {
            let child = backend.ns.spawn(
                backend
                    .ns
                    .command("socat")
                    .args(["-b", "8192"])
                    .arg(format!("UDP6-RECVFROM:{port},ipv6only=0,fork,reuseaddr"))
                    .arg("PIPE")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            backend.udp = Some(child);
        }
        Ok(())
    }

    /// Stops nginx in backend `index` (the host stays up).
    pub fn stop_backend(&mut self, index: usize) -> Result<()> {
        let backend = &mut self.backends[index];
        let Some(mut child) = backend.nginx.take() else {
            bail!("nginx does not run in {}", backend.ns.name());
        };
        // nginx's master leaves with its workers on SIGTERM ("fast shutdown").
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_child(&mut child, Duration::from_secs(5))
    }

    /// `curl` from the client namespace; returns the body. Bounded by
    /// `--max-time`.
    pub fn curl(&self, url: &str) -> Result<String> {
        let out = self
            .client
            .exec("curl", ["-sS", "--fail", "--max-time", "5", url])
            .with_context(|| format!("curl {url} from the client namespace"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `wrk` from the client namespace for `duration` with `connections`
    /// connections on one thread.
    pub fn wrk(&self, url: &str, duration: Duration, connections: u32) -> Result<WrkReport> {
        let secs = duration.as_secs().max(1).to_string();
        let conns = connections.to_string();
        let out = self
            .client
            .exec(
                "timeout",
                [
                    &(duration.as_secs() + 30).to_string(),
                    "wrk",
                    "-t1",
                    "-c",
                    &conns,
                    "-d",
                    &secs,
                    "--timeout",
                    "5s",
                    url,
                ],
            )
            .with_context(|| format!("wrk {url} from the client namespace"))?;
        WrkReport::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Lines to print for a person: what runs where and how to reach it.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "namespaces (prefix {}):", self.prefix);
        let _ = writeln!(
            s,
            "  {:<18} client     eth0 {CLIENT_V4}/24 {CLIENT_V6}/64",
            self.client.name()
        );
        let _ = writeln!(
            s,
            "  {:<18} lb         {LB_EXT_IFACE} {LB_EXT_V4}/24 {LB_EXT_V6}/64, {LB_INT_IFACE} {LB_INT_V4}/24 {LB_INT_V6}/64",
            self.lb.name()
        );
        let _ = writeln!(s, "  {:<18} switch     br0", self.switch.name());
        for backend in &self.backends {
            let _ = writeln!(
                s,
                "  {:<18} backend    eth0 {}/24 {}/64, nginx on :80{}",
                backend.ns.name(),
                backend.v4,
                backend.v6,
                if backend.nginx.is_some() {
                    ""
                } else {
                    " (stopped)"
                }
            );
        }
        s
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for backend in &mut self.backends {
            for mut child in [backend.nginx.take(), backend.udp.take()]
                .into_iter()
                .flatten()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The namespaces go with their fields (Netns::drop), killing what is
        // left inside.
    }
}

/// wrk's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_s: f64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
    /// Responses with a status outside 2xx and 3xx.
    pub non_2xx: u64,
}

impl WrkReport {
    /// Parses wrk's text output.
    pub fn parse(text: &str) -> Result<Self> {
        let mut report = WrkReport::default();
        let mut seen_total = false;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.split_once(" requests in ") {
                report.requests = rest.0.trim().parse().context("wrk's request count")?;
                seen_total = true;
            } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
                report.requests_per_s = rest.trim().parse().context("wrk's Requests/sec")?;
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                for part in rest.split(',') {
                    let n = part.split_whitespace().nth(1).unwrap_or("0");
                    report.socket_errors += n.parse::<u64>().context("wrk's socket errors")?;
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                report.non_2xx = rest.trim().parse().context("wrk's non-2xx count")?;
            }
        }
        if !seen_total {
            bail!("no summary in wrk's output:\n{text}");
        }
        Ok(report)
    }

    pub fn errors(&self) -> u64 {
        self.socket_errors + self.non_2xx
    }
}

/// A veth pair whose ends are created straight inside their namespaces, up,
/// with GRO on both ends (a veth only takes XDP_TX or redirected frames when
/// its peer runs NAPI) and checksum offload off: a veth otherwise hands over
/// packets whose L4 checksum is not computed yet (CHECKSUM_PARTIAL), which
/// an XDP program sees and forwards as they are. On a real wire every
/// checksum is complete, and so it is here.
fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> Result<()> {
    a.ip([
        "link",
        "add",
        a_name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ])
    .with_context(|| {
        format!(
            "creating veth {}:{a_name} <-> {}:{b_name}",
            a.name(),
            b.name()
        )
    })?;
    for (ns, name) in [(a, a_name), (b, b_name)] {
        ns.ip(["link", "set", name, "up"])?;
        ns.exec("ethtool", ["-K", name, "gro", "on", "tx", "off"])
            .with_context(|| format!("setting GRO and checksum offload on {}:{name}", ns.name()))?;
    }
    Ok(())
}

fn address(ns: &Netns, iface: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let cidr = format!("{addr}/{prefix_len}");
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", iface];
    if addr.is_ipv6() {
        // No duplicate address detection: the address is usable at once.
        args.push("nodad");
    }
    ns.ip(args)
        .with_context(|| format!("adding {cidr} to {}:{iface}", ns.name()))?;
    Ok(())
}

fn default_routes(ns: &Netns, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<()> {
    ns.ip(["route", "add", "default", "via", &v4.to_string()])?;
    ns.ip(["-6", "route", "add", "default", "via", &v6.to_string()])?;
    Ok(())
}

fn write_nginx_site(root: &Path, name: &str) -> Result<PathBuf> {
    let www = root.join("www");
    fs::create_dir_all(root.join("tmp")).context("creating nginx's directories")?;
    fs::create_dir_all(&www).context("creating nginx's directories")?;
    fs::write(www.join("index.html"), format!("{name}\n"))?;
    let big = fs::File::create(www.join("big"))?;
    big.set_len(64 << 20)?;
    let r = root.display();
    let conf = root.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\n\
             user root;\n\
             worker_processes 1;\n\
             pid {r}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {r}/tmp;\n\
             \x20 keepalive_requests 1000000;\n\
             \x20 sendfile on;\n\
             \x20 server {{\n\
             \x20   listen 80 default_server;\n\
             \x20   listen [::]:80 default_server;\n\
             \x20   root {r}/www;\n\
             \x20   location / {{ }}\n\
             \x20 }}\n\
             }}\n"
        ),
    )?;
    Ok(conf)
}

/// Waits until something listens on TCP `port` inside `ns`.
fn wait_for_listener(ns: &Netns, port: u16, limit: Duration) -> Result<()> {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let out = ns.exec("ss", ["-Hltn", &filter])?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nothing listens on port {port} in {} after {limit:?}",
        ns.name()
    )
}

fn wait_child(child: &mut Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait()?;
    Ok(())
}

pub(crate) fn unique_test_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{TEST_PREFIX}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes test namespaces and scratch directories whose creating process
/// is gone.
fn sweep_stale_test_namespaces() {
    let dirs = scratch_dirs();
    let names = netns::list().into_iter().chain(
        dirs.iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
    );
    let mut stale = Vec::new();
    for name in names {
        let mut parts = name.split('-');
        if parts.next() != Some(TEST_PREFIX) {
            continue;
        }
        let Some(Ok(pid)) = parts.next().map(str::parse::<u32>) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            stale.push(format!("{TEST_PREFIX}-{pid}"));
        }
    }
    stale.sort();
    stale.dedup();
    for prefix in stale {
        remove_by_prefix(&prefix);
    }
}

/// Deletes every namespace whose name starts with `PREFIX-`, with the
/// processes inside, and the rig scratch directories of that prefix.
/// Returns the names of the namespaces deleted.
pub fn remove_by_prefix(prefix: &str) -> Vec<String> {
    let start = format!("{prefix}-");
    let names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&start))
        .collect();
    for name in &names {
        netns::delete(name);
    }
    for dir in scratch_dirs() {
        let ours = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&start));
        if ours {
            let _ = fs::remove_dir_all(&dir);
        }
    }
    names
}

/// Rig scratch directories in the temporary directory.
fn scratch_dirs() -> Vec<PathBuf> {
    fs::read_dir(std::env::temp_dir())
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// True when `program` can be run (it is on PATH).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 5s test @ http://198.18.1.11/\n  1 threads and 10 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   181.24us  101.14us   5.07ms   93.85%\n    Req/Sec    52.10k     2.07k   55.69k    70.00%\n  259186 requests in 5.00s, 60.06MB read\n  Socket errors: connect 0, read 2, write 1, timeout 3\n  Non-2xx or 3xx responses: 4\nRequests/sec:  51822.52\nTransfer/sec:     12.01MB\n";
        let report = WrkReport::parse(text).unwrap();
        assert_eq!(
            report,
            WrkReport {
                requests: 259186,
                requests_per_s: 51822.52,
                socket_errors: 6,
                non_2xx: 4,
            }
        );
        assert_eq!(report.errors(), 10);
    }

    #[test]
    fn wrk_output_without_summary_is_an_error() {
        assert!(
            WrkReport::parse("unable to connect to 198.18.1.11:80 Connection refused\n").is_err()
        );
    }

    #[test]
    fn backend_addresses() {
        assert_eq!(backend_v4(0), Ipv4Addr::new(198, 18, 1, 11));
        assert_eq!(backend_v6(2).to_string(), "2001:db8:1::13");
    }
}
