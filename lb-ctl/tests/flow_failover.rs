//! Flow replication with real daemons (issue 11): the pair rig (client, two
//! nodes, nginx backends behind the floating gateway, a NAT or DSR service), long
//! paced TCP downloads (the backends send 200 kB/s) and idle keep-alive connections through the
//! VIP, a backend added meanwhile (so Maglev alone would move about a third
//! of them to it, and the new backend would reset them), then `lb-ctl
//! failover` and a `kill -9` of the new active. Every download completes
//! with every byte (size and SHA-256), every idle connection answers again
//! from the same backend: the standby held the flows, with their backends,
//! before it took over.
//!
//! The same for UDP flows (each client socket answered by the same backend
//! after the failover), for connections opened just before the failover
//! (the stepping-down active sends what its ring still holds), and for a
//! standby killed and restarted under load (a bulk copy, then the stream).
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    daemon::DaemonProcess,
    flow_pair::{FlowPair, replication},
    rig::{Rig, RigOptions, VIP_V4, udp},
    wait::wait_for,
};
use sha2::{Digest as _, Sha256};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// Concurrent downloads and idle keep-alive connections (the issue's 50
/// and 50).
const DOWNLOADS: usize = 50;
const IDLE: usize = 50;
/// Each download's size: about 30 s each at the rate the backends send
/// `/paced/` files (200 kB/s), long enough for both takeovers to happen
/// in the middle, with packets on the wire all along. (A client-side rate
/// limit does not do that: the sockets' buffers take megabytes at once, the
/// wire goes quiet within a second, and the takeovers then see almost no
/// packet of these connections.)
const SIZE: usize = 6 << 20;

/// The file every backend serves: the same bytes everywhere (a flow sent to
/// another backend is reset by it, not served the same bytes).
fn content(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A service (`protocol` tcp or udp, `mode` nat or dsr) on the VIP's
/// `port` with every backend but the last (added during the test) on the
/// same port.
fn service(rig: &Rig, name: &str, protocol: &str, port: u16, mode: &str) -> String {
    let mut toml = format!(
        "\n[[services]]\nname = \"{name}\"\nvip = \"{VIP_V4}\"\nport = {port}\nprotocol = \"{protocol}\"\nmode = \"{mode}\"\n"
    );
    for backend in &rig.backends[..rig.backends.len() - 1] {
        toml.push_str(&format!(
            "\n[[services.backends]]\naddress = \"{}:{port}\"\n",
            backend.v4
        ));
    }
    toml
}

/// Packets the node forwarded for its services, both ways.
fn service_packets(node: &DaemonProcess) -> u64 {
    node.ctl_ok(&["--json", "backend", "list"])
        .ok()
        .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
        .and_then(|list| {
            list.as_array().map(|services| {
                services
                    .iter()
                    .filter_map(|s| s["traffic"]["packets"].as_u64())
                    .sum()
            })
        })
        .unwrap_or(0)
}

/// One scenario at a time: two at once on a small machine slow the traffic
/// through the new active past the waits.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The pair rig with both daemons running: lb1 active, lb2 standby and
/// caught up ([`FlowPair`]), and what these scenarios ask of it.
struct Pair(FlowPair);

impl std::ops::Deref for Pair {
    type Target = FlowPair;

    fn deref(&self) -> &FlowPair {
        &self.0
    }
}

impl std::ops::DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut FlowPair {
        &mut self.0
    }
}

impl Pair {
    /// The rig's default backends; `prepare` starts their servers,
    /// `services` gives the plan's services.
    fn start(
        prepare: impl FnOnce(&mut Rig) -> Result<()>,
        services: impl FnOnce(&Rig) -> String,
    ) -> Result<Self> {
        let backends = RigOptions::default().backends;
        FlowPair::start(&bin(), backends, prepare, services).map(Pair)
    }

    /// Adds the last backend to `service` (`tcp/VIP:80`) on `port` through
    /// lb1 (Maglev now sends about a third of the flows to it) and waits
    /// until lb2 holds the new settings.
    fn add_backend(&self, service: &str, port: u16) -> Result<()> {
        let added = self.rig.backends.last().context("backends")?;
        self.0.add_backend(service, &format!("{}:{port}", added.v4))
    }

    /// Waits until lb2 forwarded more than `enough` packets since
    /// `before` (the connections go on through it), and checks each node's
    /// side of the stream.
    fn traffic_through_lb2(&self, before: u64, enough: u64) -> Result<()> {
        self.wait_traffic_through_lb2(before, enough)?;
        ensure!(replication(&self.lb2)["stream"] == "sending");
        ensure!(replication(&self.lb1)["stream"] == "receiving");
        Ok(())
    }

    /// Waits until lb2 forwarded more than `enough` packets since
    /// `before`.
    fn wait_traffic_through_lb2(&self, before: u64, enough: u64) -> Result<()> {
        wait_for("traffic through lb2", Duration::from_secs(25), || {
            service_packets(&self.lb2) > before + enough
        })
        .with_context(|| self.describe())?;
        Ok(())
    }

    /// Waits until lb2 is active after a fault of lb1 (`what`).
    fn lb2_took_over(&self, what: &str) -> Result<()> {
        wait_for(
            &format!("lb2 active after {what}"),
            Duration::from_secs(5),
            || self.lb2.cluster_role().as_deref() == Some("active"),
        )
        .with_context(|| self.describe())?;
        Ok(())
    }
}

impl Pair {
    /// What a failure needs to be understood: the neighbour caches of the
    /// client and of a backend, each node's addresses, counters,
    /// replication and the end of its log.
    fn describe(&self) -> String {
        let text = |out: Result<std::process::Output>| match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("{e:#}"),
        };
        let mut out = format!(
            "client neighbours:\n{}backend {} neighbours:\n{}",
            text(self.rig.client.ip(["neigh", "show"])),
            self.rig.backends[0].name,
            text(self.rig.backends[0].ns.ip(["neigh", "show"])),
        );
        for (name, node, lb) in [
            ("lb1", &self.lb1, &self.rig.nodes[0]),
            ("lb2", &self.lb2, &self.rig.nodes[1]),
        ] {
            let log = fs::read_to_string(node.files().log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!(
                "\n{name} addresses:\n{}{name} stats:\n{}\n{name} replication: {}\n{name} log (last 40 lines):\n{}\n",
                text(lb.ns.ip(["-br", "addr", "show"])),
                node.ctl_ok(&["stats"]).unwrap_or_else(|e| format!("{e:#}")),
                replication(node),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            ));
        }
        out
    }
}

/// Paced downloads of `/paced/data` through the VIP, from the client.
struct Downloads {
    size: usize,
    running: Vec<(PathBuf, Child)>,
}

impl Downloads {
    /// Writes `size` bytes as `/data` on every backend.
    fn serve(rig: &Rig, size: usize) -> Result<()> {
        rig.put_file("data", &content(size))
    }

    fn new(size: usize) -> Self {
        Self {
            size,
            running: Vec::new(),
        }
    }

    /// Starts `count` more downloads (`name`-N in the rig's directory).
    fn spawn(&mut self, rig: &Rig, name: &str, count: usize) -> Result<()> {
        let url = format!("http://{VIP_V4}/paced/data");
        for i in 0..count {
            let out = rig.dir().join(format!("{name}-{i}"));
            let child = rig.client.spawn(
                rig.client
                    .command("curl")
                    .args(["-sS", "--fail", "--max-time", "60"])
                    .arg("-o")
                    .arg(&out)
                    .arg(&url)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            self.running.push((out, child));
        }
        Ok(())
    }

    /// Waits for every download (70 s at most each) and describes those
    /// that did not get every byte.
    fn broken(self) -> Result<Vec<String>> {
        let want = Sha256::digest(content(self.size));
        let mut broken = Vec::new();
        for (out, mut child) in self.running {
            let deadline = Instant::now() + Duration::from_secs(70);
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break child.wait()?;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                err.read_to_string(&mut stderr)?;
            }
            let got = fs::read(&out).unwrap_or_default();
            if !status.success() || got.len() != self.size || Sha256::digest(&got) != want {
                broken.push(format!(
                    "{}: {status}, {} of {} bytes, {}",
                    out.display(),
                    got.len(),
                    self.size,
                    stderr.trim()
                ));
            }
        }
        Ok(broken)
    }
}

/// Idle keep-alive HTTP connections through the VIP
/// (`tests/support/keepalive.py`): each asked once when opened, once again
/// on [`Idle::ask_again`].
struct Idle {
    count: usize,
    trigger: PathBuf,
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Idle {
    /// Opens `count` connections and waits until each was answered.
    fn open(rig: &Rig, count: usize) -> Result<Self> {
        let trigger = rig.dir().join("idle-go");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/keepalive.py");
        let mut child = rig.client.spawn(
            rig.client
                .command("python3")
                .arg(&script)
                .args([VIP_V4.to_string(), count.to_string()])
                .arg(&trigger)
                .arg("60")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let mut out = BufReader::new(child.stdout.take().context("the script's stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        ensure!(line.trim() == "ready", "the idle connections: {line:?}");
        Ok(Self {
            count,
            trigger,
            child,
            out,
        })
    }

    /// Asks again on every connection; describes those that broke or were
    /// answered by another backend.
    fn ask_again(mut self) -> Result<Vec<String>> {
        fs::write(&self.trigger, b"go")?;
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let _ = self.child.wait();
        let results: Vec<serde_json::Value> = serde_json::from_str(line.trim())
            .with_context(|| format!("the idle script: {line:?}"))?;
        ensure!(results.len() == self.count, "{results:?}");
        Ok(results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.get("error").is_some() || r["first"] != r["second"])
            .map(|(i, r)| format!("idle connection {i}: {r}"))
            .collect())
    }
}

/// The TCP resets the client receives, as tcpdump prints them (with the
/// sender's MAC: which node or backend sent it), for a failure to show.
struct Resets {
    file: PathBuf,
    tcpdump: Child,
}

impl Resets {
    fn watch(rig: &Rig) -> Result<Self> {
        let file = rig.dir().join("resets.txt");
        let tcpdump = rig.client.spawn(
            rig.client
                .command("tcpdump")
                .args(["-i", "eth0", "-nn", "-e", "-l", "-tttt"])
                .arg("tcp[tcpflags] & tcp-rst != 0")
                .stdout(fs::File::create(&file)?)
                .stderr(Stdio::null()),
        )?;
        // tcpdump listens once it said so; a short wait is enough here (a
        // reset missed at the start only makes a failure less detailed).
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { file, tcpdump })
    }

    fn seen(&self) -> String {
        fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Resets {
    fn drop(&mut self) {
        let _ = self.tcpdump.kill();
        let _ = self.tcpdump.wait();
    }
}

fn fail_if_broken(broken: &[String], total: usize, resets: Option<&Resets>) -> Result<()> {
    if !broken.is_empty() {
        let resets = resets.map(Resets::seen).unwrap_or_default();
        bail!(
            "{} of {total} connections broke:\n{}\nresets the client received:\n{}",
            broken.len(),
            broken.join("\n"),
            resets
        );
    }
    Ok(())
}

/// What ends lb1's service in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `lb-ctl failover` (traffic through lb2, lb1 caught up with lb2's
    /// flows), then `kill -9` of lb2: lb1 takes the flows back.
    FailoverThenKill,
    /// Every link of lb1 down at once (client, backends, interconnects):
    /// lb2 finds the peer lost.
    NodeLoss,
    /// lb1's client link loses its carrier (the switch's port to it
    /// down): its link monitor fails and lb2 takes the group.
    CarrierLoss,
}

#[test]
fn nat_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("nat", Fault::FailoverThenKill)
}

#[test]
fn nat_downloads_and_idle_connections_survive_node_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("nat", Fault::NodeLoss)
}

#[test]
fn nat_downloads_and_idle_connections_survive_carrier_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("nat", Fault::CarrierLoss)
}

/// DSR: the backends answer the client themselves (the VIP on their
/// loopback, through the floating gateway's routing); the flows the new
/// active forwards must still reach the backend that holds the connection.
#[test]
fn dsr_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("dsr", Fault::FailoverThenKill)
}

#[test]
fn dsr_downloads_and_idle_connections_survive_node_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("dsr", Fault::NodeLoss)
}

#[test]
fn dsr_downloads_and_idle_connections_survive_carrier_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("dsr", Fault::CarrierLoss)
}

fn downloads_and_idle_connections_survive(mode: &str, fault: Fault) -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::start(
        |rig| {
            rig.start_nginx()?;
            if mode == "dsr" {
                rig.backends_hold_vips()?;
            }
            Downloads::serve(rig, SIZE)
        },
        |rig| service(rig, "web", "tcp", 80, mode),
    )?;
    let rig = &pair.rig;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    // The connections, through lb1.
    let resets = Resets::watch(rig)?;
    let mut downloads = Downloads::new(SIZE);
    downloads.spawn(rig, "download", DOWNLOADS)?;
    let idle = Idle::open(rig, IDLE)?;
    std::thread::sleep(Duration::from_millis(500));

    // A backend added: Maglev now sends about a third of these flows to it.
    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(500));

    // The connections go on through lb2 (with its Maglev table, a third
    // of them would go to the new backend, which resets them). DSR: the
    // client's acknowledgements only (fewer: the data is coalesced).
    let started = Instant::now();
    let before = service_packets(&pair.lb2);
    let enough = if mode == "dsr" { 200 } else { 1000 };
    let lb1 = &pair.rig.nodes[0];
    match fault {
        Fault::FailoverThenKill => {
            pair.failover()?;
            pair.traffic_through_lb2(before, enough)?;
            // lb1, standby now, gets lb2's flows (a bulk copy), then lb2
            // dies.
            wait_for("lb1 caught up with lb2", Duration::from_secs(10), || {
                pair.lb1.replication_caught_up()
            })?;
            std::thread::sleep(Duration::from_millis(500));
            pair.lb2.kill9();
            wait_for("lb1 active again", Duration::from_secs(5), || {
                pair.lb1.cluster_role().as_deref() == Some("active")
            })?;
        }
        Fault::NodeLoss => {
            for iface in lb1.ifaces() {
                lb1.ns.ip(["link", "set", iface, "down"])?;
            }
            pair.lb2_took_over("lb1's node loss")?;
            pair.wait_traffic_through_lb2(before, enough)?;
        }
        Fault::CarrierLoss => {
            pair.rig
                .switch
                .ip(["link", "set", &lb1.ext_port(), "down"])?;
            pair.lb2_took_over("lb1's carrier loss")?;
            pair.traffic_through_lb2(before, enough)?;
        }
    }
    eprintln!("{fault:?} done in {:?}", started.elapsed());

    // Every download complete, byte for byte; every idle connection alive.
    let mut broken = idle.ask_again()?;
    broken.extend(downloads.broken()?);
    eprintln!(
        "lb1's replication at the end: {}\nlb2's: {}",
        replication(&pair.lb1),
        replication(&pair.lb2)
    );
    fail_if_broken(&broken, DOWNLOADS + IDLE, Some(&resets))
}

/// The UDP service's port.
const UDP_PORT: u16 = 5300;
/// Client sockets (distinct source ports: distinct flows).
const UDP_FLOWS: usize = 12;

/// One datagram on `socket` (connected to the VIP), answered within a
/// second, up to `tries` times; the backend that answered.
fn udp_ask(socket: &UdpSocket, request: &[u8], tries: usize) -> Result<String> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..tries {
        socket.send(request)?;
        match socket.recv(&mut buf) {
            Ok(len) => {
                let name = udp::answered_by(&buf[..len]).context("an answer without a name")?;
                return Ok(name.to_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("waiting for the answer"),
        }
    }
    bail!("no answer to {tries} datagrams")
}

/// UDP flows keep their backend: client sockets answered through lb1, a
/// backend added (Maglev alone would move about a third of them to it),
/// `lb-ctl failover`, then each socket's next datagram is forwarded by lb2
/// to the backend that answered it before.
#[test]
fn nat_udp_flows_keep_their_backend_across_failover_with_a_backend_added() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let pair = Pair::start(
        |rig| rig.serve_udp(UDP_PORT),
        |rig| service(rig, "dns", "udp", UDP_PORT, "nat"),
    )?;
    let rig = &pair.rig;
    let vip = SocketAddr::new(VIP_V4.into(), UDP_PORT);
    let sockets: Vec<UdpSocket> = (0..UDP_FLOWS)
        .map(|_| {
            rig.client.run_in(|| {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.connect(vip)?;
                socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                Ok(socket)
            })
        })
        .collect::<Result<_>>()?;
    let mut first = Vec::new();
    for (i, socket) in sockets.iter().enumerate() {
        first.push(udp_ask(socket, format!("flow {i} first").as_bytes(), 5)?);
    }
    eprintln!("answered through lb1 by {first:?}");

    pair.add_backend(&format!("udp/{VIP_V4}:{UDP_PORT}"), UDP_PORT)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.failover()?;

    let before = service_packets(&pair.lb2);
    let mut broken = Vec::new();
    for (i, (socket, was)) in sockets.iter().zip(&first).enumerate() {
        // Datagrams lost while the client's ARP entry follows the VIP are
        // sent again (a second each, bounded).
        match udp_ask(socket, format!("flow {i} second").as_bytes(), 10) {
            Ok(now) if now == *was => {}
            Ok(now) => broken.push(format!("flow {i}: answered by {was}, then by {now}")),
            Err(e) => broken.push(format!("flow {i}: {e:#}")),
        }
    }
    // Each answered flow is a datagram each way through lb2.
    let through = service_packets(&pair.lb2) - before;
    eprintln!(
        "{} of {UDP_FLOWS} flows moved; lb2 forwarded {through} packets; {:?} in all",
        broken.len(),
        started.elapsed()
    );
    fail_if_broken(&broken, UDP_FLOWS, None)?;
    ensure!(
        through >= 2 * UDP_FLOWS as u64,
        "lb2 forwarded {through} packets, not the flows' {}",
        2 * UDP_FLOWS
    );
    ensure!(replication(&pair.lb2)["stream"] == "sending");
    Ok(())
}

/// Keep-alive connections opened just before the failover.
const LATE: usize = 12;

/// No blind spot: keep-alive connections opened through lb1 just before
/// the failover, the backend added in between (so that lb2's Maglev table
/// alone would send about a third of them elsewhere), then about 50 ms
/// later `lb-ctl failover`: every connection answers again from the same
/// backend, through lb2. Their flows reached lb2 only in the last moments
/// (the stepping-down active sends what its ring still holds).
#[test]
fn nat_connections_opened_just_before_failover_survive() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let pair = Pair::start(
        |rig| rig.start_nginx(),
        |rig| service(rig, "web", "tcp", 80, "nat"),
    )?;
    let rig = &pair.rig;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    let resets = Resets::watch(rig)?;
    let opened = Instant::now();
    let idle = Idle::open(rig, LATE)?;
    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(50));
    let before = service_packets(&pair.lb2);
    let requested = opened.elapsed();
    pair.failover()?;
    eprintln!("connections opened {requested:?} before the failover request");

    let broken = idle.ask_again()?;
    let through = service_packets(&pair.lb2) - before;
    eprintln!(
        "lb2 forwarded {through} packets; {:?} in all",
        started.elapsed()
    );
    fail_if_broken(&broken, LATE, Some(&resets))?;
    // A request and an answer each way on every connection, at least.
    ensure!(
        through >= 2 * LATE as u64,
        "lb2 forwarded {through} packets"
    );
    Ok(())
}

/// Downloads per group (before the standby's kill, while it is away).
const RESTART_DOWNLOADS: usize = 8;
/// About 25 s each (paced by the backends): the kill, the restart, the
/// bulk copy and the failover happen in the middle.
const RESTART_SIZE: usize = 5 << 20;

/// The standby killed (`kill -9`) while downloads run and more start while
/// it is away, then restarted: once it reports caught up (a bulk copy of
/// the active's flows, then the stream), a backend added and `lb-ctl
/// failover`: every download completes with every byte through lb2.
#[test]
fn nat_downloads_survive_failover_to_a_restarted_standby() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut pair = Pair::start(
        |rig| {
            rig.start_nginx()?;
            Downloads::serve(rig, RESTART_SIZE)
        },
        |rig| service(rig, "web", "tcp", 80, "nat"),
    )?;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        pair.rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    let resets = Resets::watch(&pair.rig)?;
    let mut downloads = Downloads::new(RESTART_SIZE);
    downloads.spawn(&pair.rig, "before-kill", RESTART_DOWNLOADS)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.lb2.kill9();
    downloads.spawn(&pair.rig, "while-away", RESTART_DOWNLOADS)?;
    std::thread::sleep(Duration::from_millis(300));
    let resyncs = replication(&pair.lb1)["resyncs"].as_u64();
    let FlowPair { rig, lb2, .. } = &mut pair.0;
    lb2.restart(&rig.nodes[1].ns)?;
    wait_for("lb2 standby again", Duration::from_secs(5), || {
        pair.lb2.cluster_role().as_deref() == Some("standby")
    })?;
    // No new flow is needed: on the new connection lb1 starts over with a
    // bulk copy (the downloads are long-lived; nothing else would reach
    // the restarted standby before the next refresh, 30 s later).
    wait_for("lb2 caught up again", Duration::from_secs(10), || {
        pair.lb2.replication_caught_up()
    })
    .with_context(|| {
        format!(
            "lb1: {}\nlb2: {}",
            replication(&pair.lb1),
            replication(&pair.lb2)
        )
    })?;
    let status = replication(&pair.lb1);
    eprintln!("lb1 after lb2's restart: {status}");
    ensure!(
        status["resyncs"].as_u64() > resyncs,
        "lb2 caught up without a bulk copy: {status}"
    );
    // The bulk copy holds every download's flow, those that began while
    // lb2 was away too.
    let received = replication(&pair.lb2);
    ensure!(
        received["flows"].as_u64() >= Some(2 * RESTART_DOWNLOADS as u64),
        "lb2 received fewer flows than the downloads: {received}"
    );

    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.failover()?;
    eprintln!("failover {:?} after the start", started.elapsed());
    let before = service_packets(&pair.lb2);
    let through = pair.traffic_through_lb2(before, 1000);

    let broken = downloads.broken()?;
    eprintln!("{:?} in all", started.elapsed());
    fail_if_broken(&broken, 2 * RESTART_DOWNLOADS, Some(&resets))?;
    through
}
