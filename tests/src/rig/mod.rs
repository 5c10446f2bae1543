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
//!
//! The LB is a node of [`Rig::nodes`] (an [`LbNode`]: its namespace, its
//! interfaces and its own addresses on each segment; [`Rig::lb`] is the
//! first). What is no node's own stays a constant here: the client, the
//! VIPs, the backends' gateway ([`GATEWAY_V4`]), the router, the backends.
//!
//! With [`RigOptions::router_mtu`], a router stands between the LB and the
//! switch, and forwards at most that MTU either way (NAT only: DSR needs the
//! backends on the LB's segment):
//!
//! ```text
//!  lb ns                      router ns                      switch ns
//!  int0 ──────────────────── r-lb      r-be ──────────────── p-rt ── br0 ...
//!  198.18.2.1               198.18.2.2   198.18.1.1 (gateway)
//!  2001:db8:2::1            2001:db8:2::2 2001:db8:1::1
//! ```
//!
//! With [`RigOptions::pair`], two LB nodes share the client and backend
//! segments and hold the VIPs and the gateway as a cluster's floating IPs
//! (`pair.rs`); without backends, that is the network of the cluster tests
//! ([`crate::pair::PairNet`]).
//!
//! Everything lives in namespaces the rig created; nothing touches the root
//! namespace. Dropping the rig kills its processes and deletes its
//! namespaces, also when a test panics. Namespaces of runs that were killed
//! before they could clean up are swept by the next rig.
use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

mod links;
mod nginx;
mod node;
pub mod pair;
mod sweep;
pub mod udp;
mod wire;
mod wrk;
mod xdp_pass;

use nginx::{wait_child, wait_for_listener, write_nginx_site};
pub use node::{INTERCONNECTS, Interconnect, LbNode, NODES};
pub use sweep::remove_by_prefix;
use sweep::sweep_stale_test_namespaces;
pub(crate) use sweep::unique_test_prefix;
pub use wrk::WrkReport;

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
/// The backends' gateway: the internal address of the LB node alone on
/// their segment, the router's backend-side address in a rig with a
/// router, a floating IP of the active node in a pair.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// With a router: the router's end of the transit link to the LB (`r-lb`),
/// the source of its ICMP errors.
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

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
    /// Number of backend namespaces (none: the segments and the nodes
    /// only, as a cluster test wants).
    pub backends: usize,
    /// A router between the LB and the switch whose routes towards the
    /// backends and towards the clients carry this MTU (see the module
    /// documentation); `None`: the LB is on the backends' segment.
    pub router_mtu: Option<u32>,
    /// Two LB nodes (`lb1`, `lb2`) on shared segments with two
    /// interconnects, for a cluster (`pair.rs`); not with a router.
    pub pair: bool,
    /// The MTU of every link of the rig (every interface but `lo` in every
    /// namespace: veth ends, bridges); `None`: the kernel's default, 1500.
    /// Jumbo frames: 9000.
    pub mtu: Option<u32>,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            backends: 3,
            router_mtu: None,
            pair: false,
            mtu: None,
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
    udp_servers: Vec<udp::Server>,
}

/// A built rig. See the module documentation for the layout.
#[derive(Debug)]
pub struct Rig {
    pub prefix: String,
    pub client: Netns,
    /// The LB nodes: `lb` alone, or `lb1` and `lb2` (server order) in a
    /// pair.
    pub nodes: Vec<LbNode>,
    pub switch: Netns,
    /// The router between the LB and the switch, if asked for.
    pub router: Option<Netns>,
    pub backends: Vec<Backend>,
    /// The pass programs on the veth peers of the LB's interfaces
    /// (`xdp_pass.rs`).
    xdp_pass: Vec<std::os::fd::OwnedFd>,
    dir: tempfile::TempDir,
}

impl Rig {
    /// Builds the namespaces, links, addresses and routes. Starts no process.
    pub fn build(options: &RigOptions) -> Result<Self> {
        if options.backends > MAX_BACKENDS {
            bail!(
                "a rig has 0 to {MAX_BACKENDS} backends, not {}",
                options.backends
            );
        }
        if options.pair && options.router_mtu.is_some() {
            bail!("a rig is a pair or has a router, not both");
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
        let nodes = (0..node::count(options))
            .map(|index| LbNode::create(&prefix, index, options))
            .collect::<Result<Vec<_>>>()?;
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
                udp_servers: Vec::new(),
            });
        }
        let router = match options.router_mtu {
            Some(_) => Some(Netns::create(&format!("{prefix}-rt"))?),
            None => None,
        };
        let mut rig = Self {
            prefix,
            client,
            nodes,
            switch,
            router,
            backends,
            xdp_pass: Vec::new(),
            dir,
        };
        rig.wire(options.router_mtu).context("wiring the rig")?;
        if let Some(mtu) = options.mtu {
            rig.set_mtu(mtu)
                .with_context(|| format!("MTU {mtu} on every link"))?;
        }
        // The LB's XDP_TX frames reach its neighbours at once.
        let peers: Vec<(&Netns, String)> = match (&rig.router, rig.is_pair()) {
            (_, true) => rig
                .nodes
                .iter()
                .map(LbNode::ext_port)
                .chain(rig.nodes.iter().map(LbNode::int_port))
                .map(|port| (&rig.switch, port))
                .collect(),
            (Some(router), false) => vec![(&rig.client, "eth0".into()), (router, "r-lb".into())],
            (None, false) => vec![
                (&rig.client, "eth0".into()),
                (&rig.switch, rig.lb().int_port()),
            ],
        };
        let links = peers
            .into_iter()
            .map(|(ns, iface)| xdp_pass::attach(ns, &iface))
            .collect::<Result<Vec<_>>>()?;
        rig.xdp_pass = links;
        Ok(rig)
    }

    /// Sets `mtu` on every interface but `lo` of every namespace of the rig.
    fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        let namespaces = [&self.client, &self.switch]
            .into_iter()
            .chain(self.nodes.iter().map(|n| &n.ns))
            .chain(&self.router)
            .chain(self.backends.iter().map(|b| &b.ns));
        for ns in namespaces {
            let out = ns.ip(["-j", "link", "show"])?;
            let links: serde_json::Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("`ip -j link show` in {}", ns.name()))?;
            let names = links
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|link| link["ifname"].as_str())
                .filter(|name| *name != "lo");
            for name in names {
                ns.ip(["link", "set", "dev", name, "mtu", &mtu])
                    .with_context(|| format!("MTU {mtu} on {}:{name}", ns.name()))?;
            }
        }
        Ok(())
    }

    /// Detaches the pass programs from the veth peers of the LB's
    /// interfaces (`xdp_pass.rs`), so that a test can attach its own there
    /// (the data-plane bench's counting sink). Frames the LB sends back out
    /// of the interface they came in on (XDP_TX) then wait on the peer for
    /// its next frame.
    pub fn detach_peer_pass_programs(&mut self) {
        self.xdp_pass.clear();
    }

    /// The first LB node (`lb`, or `lb1` in a pair).
    pub fn lb(&self) -> &LbNode {
        &self.nodes[0]
    }

    /// Whether the rig is a pair ([`RigOptions::pair`]).
    pub fn is_pair(&self) -> bool {
        self.nodes.len() == 2
    }

    /// Puts the VIPs on the LB's external interface, as the floating IP is
    /// in a deployment: the LB's kernel answers ARP and neighbour
    /// solicitations for them; the XDP program takes the service traffic.
    /// The IPv6 VIP is deprecated (`preferred_lft 0`: still answered and
    /// received) so that the kernel never picks it as the source of its own
    /// packets (a /128 would win Linux's longest-match rule over the
    /// interface's /64), as ARCHITECTURE.md asks of a deployment.
    pub fn add_vips(&self) -> Result<()> {
        let lb = self.lb();
        lb.ns
            .ip(["addr", "add", &format!("{VIP_V4}/32"), "dev", lb.ext_iface])?;
        lb.ns.ip([
            "addr",
            "add",
            &format!("{VIP_V6}/128"),
            "dev",
            lb.ext_iface,
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
                self.lb()
                    .ns
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
    /// Each serves `/` with its name (`b1\n`...) and `/big` (64 MiB), and
    /// stores what a client sends with `PUT /upload/NAME` (see
    /// [`Rig::uploaded`]).
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

    /// Starts [`udp::Server`]s on `port` in every backend, on its IPv4 and
    /// its IPv6 address; they stop with the rig.
    pub fn serve_udp(&mut self, port: u16) -> Result<()> {
        for backend in &mut self.backends {
            for ip in [IpAddr::from(backend.v4), IpAddr::from(backend.v6)] {
                let server =
                    udp::Server::start(&backend.ns, SocketAddr::new(ip, port), &backend.name)?;
                backend.udp_servers.push(server);
            }
        }
        Ok(())
    }

    /// The errors the backends' UDP servers' sockets reported so far (ICMP
    /// errors about their answers), by server address.
    pub fn udp_errors(&self) -> Vec<(SocketAddr, std::io::ErrorKind)> {
        self.backends
            .iter()
            .flat_map(|b| &b.udp_servers)
            .flat_map(|s| s.errors().into_iter().map(|e| (s.addr(), e)))
            .collect()
    }

    /// Writes `bytes` as `/NAME` on every backend's nginx site (the same
    /// file everywhere, whichever backend a client reaches). nginx also
    /// serves it as `/paced/NAME` at 200 kB/s: a download that streams for
    /// its whole length (a client-side rate limit does not: the sockets'
    /// buffers take megabytes at once, and the wire goes quiet).
    pub fn put_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        for backend in &self.backends {
            let path = self.site(backend).join(name);
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The file a client uploaded with `PUT /upload/NAME`, and the backend
    /// that took it; `None` if no backend has it.
    pub fn uploaded(&self, name: &str) -> Result<Option<(&Backend, Vec<u8>)>> {
        for backend in &self.backends {
            let path = self.site(backend).join("upload").join(name);
            if path.exists() {
                let bytes =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                return Ok(Some((backend, bytes)));
            }
        }
        Ok(None)
    }

    /// The root of `backend`'s nginx site.
    fn site(&self, backend: &Backend) -> PathBuf {
        nginx::site(&self.dir.path().join(&backend.name))
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

    /// Every MAC that answers the client's ARP request (IPv4) or neighbour
    /// solicitation (IPv6) for `addr`, captured on the client while it
    /// forgets the address and resolves it again: exactly one node must
    /// answer for a floating IP.
    pub fn neighbour_answers(&self, addr: IpAddr) -> Result<Vec<String>> {
        let filter = if addr.is_ipv6() {
            "icmp6 and ip6[40] = 136"
        } else {
            "arp and arp[6:2] = 2"
        };
        let capture = self
            .client
            .command("timeout")
            .args(["1.5", "tcpdump", "-l", "-n", "-e", "-i", "eth0", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpdump (is it installed?)")?;
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.client.ip(["neigh", "flush", "dev", "eth0"]);
        let family = if addr.is_ipv6() { "-6" } else { "-4" };
        let _ = self
            .client
            .exec("ping", [family, "-c", "1", "-W", "1", &addr.to_string()]);
        let out = capture.wait_with_output()?;
        let answers_for = if addr.is_ipv6() {
            format!("neighbor advertisement, tgt is {addr},")
        } else {
            format!("Reply {addr} is-at")
        };
        // With -e the frame's source MAC is the line's second word.
        let mut macs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&answers_for))
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|mac| mac.trim_end_matches(',').to_owned())
            .collect();
        macs.sort();
        macs.dedup();
        Ok(macs)
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
        for node in &self.nodes {
            let (ext, int) = (node.ext_iface, node.int_iface);
            let mut line = if self.is_pair() {
                format!("{ext} {}/24, {int} {}/24", node.ext_v4, node.int_v4)
            } else {
                format!(
                    "{ext} {}/24 {}/64, {int} {}/24 {}/64",
                    node.ext_v4, node.ext_v6, node.int_v4, node.int_v6
                )
            };
            for hb in &node.interconnects {
                let _ = write!(line, ", {} {}", hb.iface, hb.v4);
            }
            let _ = writeln!(s, "  {:<18} {:<11}{line}", node.ns.name(), node.name);
        }
        if self.is_pair() {
            let lb = self.lb();
            let _ = writeln!(
                s,
                "  {:<18}            floating on the active node: {VIP_V4} {VIP_V6} on {}, gateway {GATEWAY_V4} {GATEWAY_V6} on {}",
                "", lb.ext_iface, lb.int_iface
            );
        }
        if let Some(router) = &self.router {
            let _ = writeln!(
                s,
                "  {:<18} router     r-lb {ROUTER_V4}/24 {ROUTER_V6}/64, r-be {GATEWAY_V4}/24 {GATEWAY_V6}/64 (LB {} {}, {})",
                router.name(),
                self.lb().int_iface,
                self.lb().int_v4,
                self.lb().int_v6
            );
        }
        let bridges = if self.is_pair() {
            "br0 (backends), br1 (clients)"
        } else {
            "br0"
        };
        let _ = writeln!(s, "  {:<18} switch     {bridges}", self.switch.name());
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
        self.xdp_pass.clear();
        for backend in &mut self.backends {
            backend.udp_servers.clear();
            if let Some(mut nginx) = backend.nginx.take() {
                let _ = nginx.kill();
                let _ = nginx.wait();
            }
        }
        // The namespaces go with their fields (Netns::drop), killing what is
        // left inside.
    }
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
    fn backend_addresses() {
        assert_eq!(backend_v4(0), Ipv4Addr::new(198, 18, 1, 11));
        assert_eq!(backend_v6(2).to_string(), "2001:db8:1::13");
    }
}
