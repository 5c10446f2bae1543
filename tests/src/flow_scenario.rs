//! The connections a failover must not break, and the active's faults, for
//! the flow replication's rig test (`lb-ctl/tests/flow_failover.rs`) and
//! its benchmark (`lb-ctl/benches/replication/`): the pair rig
//! ([`FlowPair`]) with nginx backends, paced TCP downloads (the backends
//! send `/paced/` files at 200 kB/s, so packets flow all along) checked
//! byte for byte, idle keep-alive connections asked again
//! (`tests/support/keepalive.py`), a backend added meanwhile, then one
//! [`Fault`]. The caller names the `lb-ctl` binary, so this crate does not
//! depend on it.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use sha2::{Digest as _, Sha256};

use crate::{
    daemon::DaemonProcess,
    flow_pair::{FlowPair, replication},
    rig::{Rig, RigOptions, VIP_V4},
    wait::wait_for,
};

/// Concurrent downloads and idle keep-alive connections (the issue's 50
/// and 50).
pub const DOWNLOADS: usize = 50;
pub const IDLE: usize = 50;
/// Each download's size: about 30 s each at the rate the backends send
/// `/paced/` files (200 kB/s), long enough for both takeovers to happen
/// in the middle, with packets on the wire all along. (A client-side rate
/// limit does not do that: the sockets' buffers take megabytes at once, the
/// wire goes quiet within a second, and the takeovers then see almost no
/// packet of these connections.)
pub const SIZE: usize = 6 << 20;

/// The file every backend serves: the same bytes everywhere (a flow sent to
/// another backend is reset by it, not served the same bytes).
pub fn content(size: usize) -> Vec<u8> {
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
pub fn service(rig: &Rig, name: &str, protocol: &str, port: u16, mode: &str) -> String {
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
pub fn service_packets(node: &DaemonProcess) -> u64 {
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

/// The pair rig with both daemons running: lb1 active, lb2 standby and
/// caught up ([`FlowPair`]), and what these scenarios ask of it.
pub struct Pair(pub FlowPair);

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
    /// The rig's default backends (`bin`: the `lb-ctl` binary); `prepare` starts their servers,
    /// `services` gives the plan's services.
    pub fn start(
        bin: &Path,
        prepare: impl FnOnce(&mut Rig) -> Result<()>,
        services: impl FnOnce(&Rig) -> String,
    ) -> Result<Self> {
        let backends = RigOptions::default().backends;
        FlowPair::start(bin, backends, prepare, services).map(Pair)
    }

    /// Adds the last backend to `service` (`tcp/VIP:80`) on `port` through
    /// lb1 (Maglev now sends about a third of the flows to it) and waits
    /// until lb2 holds the new settings.
    pub fn add_backend(&self, service: &str, port: u16) -> Result<()> {
        let added = self.rig.backends.last().context("backends")?;
        self.0.add_backend(service, &format!("{}:{port}", added.v4))
    }

    /// Waits until lb2 forwarded more than `enough` packets since
    /// `before` (the connections go on through it), and checks each node's
    /// side of the stream.
    pub fn traffic_through_lb2(&self, before: u64, enough: u64) -> Result<()> {
        self.wait_traffic_through_lb2(before, enough)?;
        ensure!(replication(&self.lb2)["stream"] == "sending");
        ensure!(replication(&self.lb1)["stream"] == "receiving");
        Ok(())
    }

    /// Waits until lb2 forwarded more than `enough` packets since
    /// `before`.
    pub fn wait_traffic_through_lb2(&self, before: u64, enough: u64) -> Result<()> {
        wait_for("traffic through lb2", Duration::from_secs(25), || {
            service_packets(&self.lb2) > before + enough
        })
        .with_context(|| self.describe())?;
        Ok(())
    }

    /// Waits until lb2 is active after a fault of lb1 (`what`).
    pub fn lb2_took_over(&self, what: &str) -> Result<()> {
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
    pub fn describe(&self) -> String {
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
pub struct Downloads {
    size: usize,
    /// curl's `--max-time` for each download.
    max_time: Duration,
    running: Vec<(PathBuf, Child)>,
}

impl Downloads {
    /// Writes `size` bytes as `/data` on every backend.
    pub fn serve(rig: &Rig, size: usize) -> Result<()> {
        rig.put_file("data", &content(size))
    }

    pub fn new(size: usize) -> Self {
        Self {
            size,
            max_time: Duration::from_secs(60),
            running: Vec::new(),
        }
    }

    /// Downloads that may take up to `max_time` each (60 s by default):
    /// for a test whose load starves them of CPU, where what counts is
    /// that every byte arrives, not how fast.
    pub fn with_max_time(mut self, max_time: Duration) -> Self {
        self.max_time = max_time;
        self
    }

    /// Starts `count` more downloads (`name`-N in the rig's directory).
    pub fn spawn(&mut self, rig: &Rig, name: &str, count: usize) -> Result<()> {
        let url = format!("http://{VIP_V4}/paced/data");
        for i in 0..count {
            let out = rig.dir().join(format!("{name}-{i}"));
            let child = rig.client.spawn(
                rig.client
                    .command("curl")
                    .args(["-sS", "--fail", "--max-time"])
                    .arg(self.max_time.as_secs().to_string())
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

    /// Waits for every download (10 s past its `--max-time` at most each)
    /// and describes those that did not get every byte.
    pub fn broken(self) -> Result<Vec<String>> {
        let want = Sha256::digest(content(self.size));
        let mut broken = Vec::new();
        for (out, mut child) in self.running {
            let deadline = Instant::now() + self.max_time + Duration::from_secs(10);
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
pub struct Idle {
    count: usize,
    trigger: PathBuf,
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Idle {
    /// Opens `count` connections and waits until each was answered.
    pub fn open(rig: &Rig, count: usize) -> Result<Self> {
        let trigger = rig.dir().join("idle-go");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/keepalive.py");
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
    pub fn ask_again(mut self) -> Result<Vec<String>> {
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
pub struct Resets {
    file: PathBuf,
    tcpdump: Child,
}

impl Resets {
    pub fn watch(rig: &Rig) -> Result<Self> {
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

    pub fn seen(&self) -> String {
        fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Resets {
    fn drop(&mut self) {
        let _ = self.tcpdump.kill();
        let _ = self.tcpdump.wait();
    }
}

pub fn fail_if_broken(broken: &[String], total: usize, resets: Option<&Resets>) -> Result<()> {
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
pub enum Fault {
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

/// What a scenario saw: the connections that broke (each described), of
/// [`DOWNLOADS`] + [`IDLE`], and the resets the client received.
pub struct Outcome {
    pub broken: Vec<String>,
    pub resets: String,
}

impl Outcome {
    /// An error listing what broke, with the resets, if anything did.
    pub fn fail_if_broken(&self) -> Result<()> {
        if !self.broken.is_empty() {
            bail!(
                "{} of {} connections broke:\n{}\nresets the client received:\n{}",
                self.broken.len(),
                DOWNLOADS + IDLE,
                self.broken.join("\n"),
                self.resets
            );
        }
        Ok(())
    }
}

/// [`DOWNLOADS`] paced downloads and [`IDLE`] idle keep-alive connections
/// through the VIP of a `mode` (`nat`, `dsr`) service on lb1, a backend
/// added (Maglev alone would move a third of them), then `fault`; waits
/// for every connection's end. An error: the scenario could not be run
/// (the rig, a takeover that did not happen, no traffic through lb2).
pub fn downloads_and_idle_connections(bin: &Path, mode: &str, fault: Fault) -> Result<Outcome> {
    let mut pair = Pair::start(
        bin,
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
    Ok(Outcome {
        broken,
        resets: resets.seen(),
    })
}
