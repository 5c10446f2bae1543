//! Flow replication with real daemons: the pair rig with both daemons
//! running and the connections through it that a failover must not break
//! (rate-limited downloads checked byte for byte, idle keep-alive
//! connections asked again), and the download scenario across `lb-ctl
//! failover` and a `kill -9`. Shared by `lb-ctl/tests/flow_failover.rs`
//! and the replication benchmark (`lb-ctl/benches/replication/`); the
//! caller names the `lb-ctl` binary, so this crate does not depend on it.
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
    rig::{NODES, Rig, RigOptions, VIP_V4},
    wait::wait_for,
};

/// Concurrent downloads and idle keep-alive connections.
pub const DOWNLOADS: usize = 16;
pub const IDLE: usize = 8;
/// Each download's size and rate: about 30 s each, long enough for both
/// takeovers to happen in the middle (the client's and the backends' ARP
/// entries may take seconds to follow the floating IPs).
pub const SIZE: usize = 6 << 20;
pub const RATE: &str = "200k";

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

/// The node's flow replication status.
pub fn replication(node: &DaemonProcess) -> serde_json::Value {
    node.status_json()
        .map(|s| s["cluster"]["replication"].clone())
        .unwrap_or_default()
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

pub fn settings_generation(node: &DaemonProcess) -> Option<u64> {
    node.status_json()?["generation"].as_u64()
}

/// The pair rig with both daemons running: lb1 active, lb2 standby and
/// caught up.
pub struct Pair {
    pub rig: Rig,
    pub lb1: DaemonProcess,
    pub lb2: DaemonProcess,
}

impl Pair {
    /// Builds the pair rig, lets `prepare` start the backends' servers,
    /// writes the cluster's plan with the services `services` gives, and
    /// starts both daemons.
    pub fn start(
        bin: &Path,
        prepare: impl FnOnce(&mut Rig) -> Result<()>,
        services: impl FnOnce(&Rig) -> String,
    ) -> Result<Self> {
        let mut rig = Rig::build(&RigOptions {
            pair: true,
            ..Default::default()
        })?;
        prepare(&mut rig)?;
        let dir = rig.dir().to_owned();
        let files = NODES.map(|name| rig.node_files(&dir, name));
        let plan_file = dir.join("plan.toml");
        let mut plan = rig.cluster_plan(&dir, &files);
        plan.push_str(&services(&rig));
        fs::write(&plan_file, plan)?;
        crate::daemon::cluster_init(bin, &plan_file, &dir)?;
        let [f1, f2] = files;
        let lb1 = DaemonProcess::start(&rig.nodes[0].ns, bin, f1, &dir.join("lb1/lb.toml"))?;
        let lb2 = DaemonProcess::start(&rig.nodes[1].ns, bin, f2, &dir.join("lb2/lb.toml"))?;
        wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
            lb1.cluster_role().as_deref() == Some("active")
                && lb2.cluster_role().as_deref() == Some("standby")
        })?;
        wait_for("lb2 caught up", Duration::from_secs(5), || {
            lb2.replication_caught_up()
        })
        .with_context(|| format!("lb1: {}\nlb2: {}", replication(&lb1), replication(&lb2)))?;
        Ok(Self { rig, lb1, lb2 })
    }

    /// Adds the last backend to `service` (`tcp/VIP:80`) on `port` through
    /// lb1 (Maglev now sends about a third of the flows to it) and waits
    /// until lb2 holds the new settings.
    pub fn add_backend(&self, service: &str, port: u16) -> Result<()> {
        let added = self.rig.backends.last().context("backends")?;
        self.lb1
            .ctl_ok(&["backend", "add", service, &format!("{}:{port}", added.v4)])?;
        let generation = settings_generation(&self.lb1).context("lb1's generation")?;
        wait_for("lb2 holds the new settings", Duration::from_secs(5), || {
            settings_generation(&self.lb2) == Some(generation)
        })?;
        Ok(())
    }

    /// `lb-ctl failover` on lb1 once it hears lb2 eligible; waits until
    /// lb2 is active and lb1 standby (how long that took after the
    /// request).
    pub fn failover(&self) -> Result<Duration> {
        wait_for("lb1 hears lb2 eligible", Duration::from_secs(5), || {
            self.lb1.peer_eligible()
        })?;
        self.lb1.ctl_ok(&["failover"])?;
        wait_for("lb2 active", Duration::from_secs(5), || {
            self.lb2.cluster_role().as_deref() == Some("active")
                && self.lb1.cluster_role().as_deref() == Some("standby")
        })
    }

    /// Waits until lb2 forwarded more than `enough` packets since
    /// `before` (the connections go on through it), and checks each node's
    /// side of the stream.
    pub fn traffic_through_lb2(&self, before: u64, enough: u64) -> Result<()> {
        wait_for("traffic through lb2", Duration::from_secs(25), || {
            service_packets(&self.lb2) > before + enough
        })?;
        ensure!(replication(&self.lb2)["stream"] == "sending");
        ensure!(replication(&self.lb1)["stream"] == "receiving");
        Ok(())
    }
}

/// Rate-limited downloads of `/data` through the VIP, from the client.
pub struct Downloads {
    size: usize,
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
            running: Vec::new(),
        }
    }

    /// Starts `count` more downloads (`name`-N in the rig's directory).
    pub fn spawn(&mut self, rig: &Rig, name: &str, count: usize) -> Result<()> {
        let url = format!("http://{VIP_V4}/data");
        for i in 0..count {
            let out = rig.dir().join(format!("{name}-{i}"));
            let child = rig.client.spawn(
                rig.client
                    .command("curl")
                    .args(["-sS", "--fail", "--max-time", "60", "--limit-rate", RATE])
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
    pub fn broken(self) -> Result<Vec<String>> {
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

/// Idle keep-alive HTTP connections through the VIP (`support/keepalive.py`
/// of this crate): each asked once when opened, once again on
/// [`Idle::ask_again`].
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

pub fn fail_if_broken(broken: &[String], total: usize) -> Result<()> {
    if !broken.is_empty() {
        bail!(
            "{} of {total} connections broke:\n{}",
            broken.len(),
            broken.join("\n")
        );
    }
    Ok(())
}

/// The download scenario (`mode` nat or dsr): the pair rig with nginx
/// serving [`SIZE`] bytes, a service on the VIP's port 80, [`DOWNLOADS`]
/// rate-limited downloads and [`IDLE`] idle keep-alive connections through
/// lb1, a backend added (Maglev alone would move about a third of them to
/// it, which resets them), `lb-ctl failover` to lb2, traffic through lb2,
/// lb1 caught up with lb2, then `kill -9` of lb2 and lb1 active again.
/// Returns the connections that broke (a download short of a byte or with
/// another SHA-256, an idle connection reset or answered by another
/// backend), described; an error when the scenario itself could not run.
/// `lb-ctl/tests/flow_failover.rs` asserts none broke;
/// `lb-ctl/benches/replication/` counts them.
pub fn downloads_and_idle_connections(bin: &Path, mode: &str) -> Result<Vec<String>> {
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
    let mut downloads = Downloads::new(SIZE);
    downloads.spawn(rig, "download", DOWNLOADS)?;
    let idle = Idle::open(rig, IDLE)?;
    std::thread::sleep(Duration::from_millis(500));

    // A backend added: Maglev now sends about a third of these flows to it.
    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(500));

    // Failover on request: lb2 takes the flows over.
    let started = Instant::now();
    pair.failover()?;
    // The connections go on through lb2 (with its Maglev table, a third
    // of them would go to the new backend, which resets them). DSR: the
    // client's acknowledgements only (fewer: the data is coalesced).
    let before = service_packets(&pair.lb2);
    let enough = if mode == "dsr" { 200 } else { 1000 };
    pair.traffic_through_lb2(before, enough)?;
    // lb1, standby now, gets lb2's flows (a bulk copy), then lb2 dies.
    wait_for("lb1 caught up with lb2", Duration::from_secs(10), || {
        pair.lb1.replication_caught_up()
    })?;
    std::thread::sleep(Duration::from_millis(500));
    pair.lb2.kill9();
    wait_for("lb1 active again", Duration::from_secs(5), || {
        pair.lb1.cluster_role().as_deref() == Some("active")
    })?;
    eprintln!(
        "failover and kill -9 done {:?} after the failover request",
        started.elapsed()
    );

    // Every download complete, byte for byte; every idle connection alive.
    let mut broken = idle.ask_again()?;
    broken.extend(downloads.broken()?);
    eprintln!(
        "lb1's replication after the takeover: {}",
        replication(&pair.lb1)
    );
    Ok(broken)
}
