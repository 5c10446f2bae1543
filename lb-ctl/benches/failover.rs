//! The failover benchmark: `cargo xtask bench failover` (which runs this with
//! `cargo bench -p lb-ctl --bench failover`). Prints every run and writes
//! `target/bench/failover.json`.
//!
//! The rig is the pair of the cluster tests (`lb_tests::pair`, the pair rig
//! without backends): a client and two nodes on a bridge, two interconnects between the nodes, the
//! floating IP 198.18.0.100 on the nodes' `ext0`. Each node runs a UDP echo
//! responder bound to `0.0.0.0:PORT` (it answers for the floating IP while
//! its node holds it, and says which node it is); the client sends one
//! datagram to the floating IP every millisecond and records when each
//! answer arrives. After half a second of answers from the first node, a
//! fault hits it:
//!
//! - `kill9`: `kill -9` of the active's daemon (lb) or of the master's
//!   keepalived (parent and VRRP child at once);
//! - `node_loss`: every link of the active node down at once;
//! - `link_down`: the active's client link (`ext0`) down only.
//!
//! The service gap of a run is the largest interval between two consecutive
//! answers of which the second came after the fault (the last answer before
//! the outage to the first after it); a run ends 300 ms after the first
//! answer from the other node, or fails 10 s after the fault.
//!
//! The JSON also has, under `takeover_ms`, the time from the fault to the
//! first answer from the other node: the gap where the first node stops
//! answering at once, but not where it goes on (keepalived's node keeps the
//! address when keepalived is killed).
//!
//! Each system and fault runs `--runs N` times (5 by default), each time in
//! a fresh rig; the JSON has the median and the maximum in ms:
//!
//! - `lb`: two `lb-ctl run` with the `[cluster]` defaults (heartbeat every
//!   40 ms, peer lost after 5) and one monitor, a `link` monitor on `ext0`
//!   every 20 ms with `retries = 2` (without a monitor lb does not react to
//!   its client link's carrier);
//! - `keepalived_default`: Debian's keepalived, one `vrrp_instance` on
//!   `ext0` (multicast adverts), VRRPv2, `advert_int 1`;
//! - `keepalived_fast`: the same with `vrrp_version 3` and `advert_int 0.1`.
//!
//! Needs root and keepalived (`cargo xtask setup` installs it).
use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ExitCode, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use lb_tests::{
    daemon::DaemonProcess,
    pair::{FIP, PairNet, PlanExtras},
};
use serde_json::{Value, json};

const LB_CTL: &str = env!("CARGO_BIN_EXE_lb-ctl");
/// The UDP port the responders serve and the client probes.
const PORT: u16 = 7171;
/// Answers from the first node before the fault.
const STEADY: Duration = Duration::from_millis(500);
/// Probing goes on this long after the first answer from the other node.
const AFTER: Duration = Duration::from_millis(300);
/// A run fails when the other node has not answered this long after the fault.
const LIMIT: Duration = Duration::from_secs(10);
/// How long a system may take to make the first node serve.
const START_LIMIT: Duration = Duration::from_secs(15);
/// The probe's send interval.
const PROBE_EVERY: Duration = Duration::from_millis(1);
/// The most the prober sends in one run (a bound on top of its stop flag).
const PROBE_MAX: u32 = 40_000;
/// The lb target: the median gap, ms, in each case.
const LB_TARGET_MS: f64 = 300.0;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill9,
    NodeLoss,
    LinkDown,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Kill9, Fault::NodeLoss, Fault::LinkDown];

    fn key(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill9_ms",
            Fault::NodeLoss => "node_loss_ms",
            Fault::LinkDown => "link_down_ms",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum System {
    Lb,
    /// keepalived with this VRRP version and `advert_int`.
    Keepalived {
        version: u8,
        advert_int: &'static str,
    },
}

impl System {
    const ALL: [(&'static str, System); 3] = [
        ("lb", System::Lb),
        (
            "keepalived_default",
            System::Keepalived {
                version: 2,
                advert_int: "1",
            },
        ),
        (
            "keepalived_fast",
            System::Keepalived {
                version: 3,
                advert_int: "0.1",
            },
        ),
    ];
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .skip_while(|a| *a != flag)
            .nth(1)
            .map(String::as_str)
    };
    let out = value("--out")
        .map(PathBuf::from)
        // `cargo bench` runs this in lb-ctl/: the workspace's target/ by default.
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bench/failover.json"
            ))
        });
    let runs = match value("--runs").map(str::parse::<usize>) {
        None => 5,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            eprintln!("error: --runs takes a count of at least 1");
            return ExitCode::from(2);
        }
    };
    match run(&out, runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(out: &Path, runs: usize) -> Result<()> {
    if !lb_tests::rig::have("keepalived") {
        bail!("keepalived is not installed (`cargo xtask setup` installs it)");
    }
    let mut report = serde_json::Map::new();
    let mut takeovers = serde_json::Map::new();
    // The medians of lb and of keepalived_fast, by fault.
    let mut medians: Vec<(&str, Fault, f64)> = Vec::new();
    for (name, system) in System::ALL {
        let mut figures = serde_json::Map::new();
        let mut takeover_figures = serde_json::Map::new();
        for fault in Fault::ALL {
            let (mut gaps, mut moves) = (Vec::new(), Vec::new());
            for i in 0..runs {
                let run = measure(system, fault)
                    .with_context(|| format!("{name} {} run {}", fault.key(), i + 1))?;
                println!(
                    "{name:<20} {:<14} run {}: gap {:8.1} ms, other node answers after {:8.1} ms",
                    fault.key(),
                    i + 1,
                    run.gap_ms,
                    run.takeover_ms
                );
                gaps.push(run.gap_ms);
                moves.push(run.takeover_ms);
            }
            let (median, max) = median_max(gaps);
            let (takeover_median, takeover_max) = median_max(moves);
            println!(
                "{name:<20} {:<14} gap median {median:.1} ms, max {max:.1} ms ({runs} runs)",
                fault.key()
            );
            medians.push((name, fault, median));
            figures.insert(
                fault.key().to_owned(),
                json!({ "median": round1(median), "max": round1(max) }),
            );
            takeover_figures.insert(
                fault.key().to_owned(),
                json!({ "median": round1(takeover_median), "max": round1(takeover_max) }),
            );
        }
        report.insert(name.to_owned(), Value::Object(figures));
        takeovers.insert(name.to_owned(), Value::Object(takeover_figures));
    }
    let median = |system: &str, fault: Fault| {
        medians
            .iter()
            .find(|(s, f, _)| *s == system && f.key() == fault.key())
            .map(|(_, _, m)| *m)
            .unwrap_or(f64::NAN)
    };
    let mut under = serde_json::Map::new();
    let mut below = serde_json::Map::new();
    for fault in Fault::ALL {
        let lb = median("lb", fault);
        under.insert(fault.key().to_owned(), json!(lb < LB_TARGET_MS));
        below.insert(
            fault.key().to_owned(),
            json!(lb < median("keepalived_fast", fault)),
        );
    }
    report.insert("runs".to_owned(), json!(runs));
    report.insert("takeover_ms".to_owned(), Value::Object(takeovers));
    report.insert(
        "targets".to_owned(),
        json!({
            "lb_median_under_300_ms": under,
            "lb_median_below_keepalived_fast": below,
        }),
    );
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(
        out,
        serde_json::to_string_pretty(&Value::Object(report))? + "\n",
    )?;
    println!("wrote {}", out.display());
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

/// What one run measured.
struct Run {
    /// The service gap.
    gap_ms: f64,
    /// From the fault to the first answer from the other node.
    takeover_ms: f64,
}

/// One run in a fresh rig.
fn measure(system: System, fault: Fault) -> Result<Run> {
    let net = PairNet::build()?;
    let scratch = tempfile::tempdir()?;
    let _responders = [Responder::start(&net, 0)?, Responder::start(&net, 1)?];
    let mut ha: Box<dyn Ha> = match system {
        System::Lb => Box::new(LbPair::start(&net, scratch.path())?),
        System::Keepalived {
            version,
            advert_int,
        } => Box::new(KeepalivedPair::start(
            &net,
            scratch.path(),
            version,
            advert_int,
        )?),
    };
    let probe = Probe::start(&net)?;
    probe
        .wait_for(0, Instant::now(), START_LIMIT)
        .context("the first node never answered at the floating IP")?;
    thread::sleep(STEADY);
    let fault_at = Instant::now();
    match fault {
        Fault::Kill9 => ha.kill9(),
        Fault::NodeLoss => net.node_links(0, false)?,
        Fault::LinkDown => {
            net.node(0).ip(["link", "set", "ext0", "down"])?;
        }
    }
    let answered = probe
        .wait_for(1, fault_at, LIMIT)
        .context("the second node never answered at the floating IP")?;
    let until = answered + AFTER;
    thread::sleep(until.saturating_duration_since(Instant::now()));
    let answers = probe.stop()?;
    drop(ha);
    Ok(Run {
        gap_ms: gap_ms(&answers, fault_at)?,
        takeover_ms: answered.duration_since(fault_at).as_secs_f64() * 1000.0,
    })
}

/// The largest interval between consecutive answers of which the second
/// came after `fault_at`.
fn gap_ms(answers: &[(Instant, u8)], fault_at: Instant) -> Result<f64> {
    if answers.first().is_none_or(|(at, _)| *at >= fault_at) {
        bail!("no answer before the fault");
    }
    answers
        .windows(2)
        .filter(|pair| pair[1].0 > fault_at)
        .map(|pair| pair[1].0.duration_since(pair[0].0).as_secs_f64() * 1000.0)
        .max_by(f64::total_cmp)
        .ok_or_else(|| anyhow!("no answer after the fault"))
}

/// A UDP echo responder in a node: answers each datagram with the node's
/// index followed by the datagram.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(net: &PairNet, node: u8) -> Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
        let socket = net
            .node(usize::from(node))
            .run_in(|| UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}")))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf[1..]) else {
                    continue;
                };
                buf[0] = node;
                let _ = socket.send_to(&buf[..=len], from);
            }
        });
        Ok(Responder {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The client: a datagram to the floating IP every millisecond, the
/// arrival time and node of every answer.
struct Probe {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, u8)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Probe {
    fn start(net: &PairNet) -> Result<Self> {
        let socket = net.client().run_in(|| {
            UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
                .context("binding the probe's UDP socket")
        })?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let sender = socket.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let target = SocketAddr::new(FIP.parse()?, PORT);
        let send = {
            let stop = stop.clone();
            thread::spawn(move || {
                let start = Instant::now();
                for seq in 0..PROBE_MAX {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Send errors (no neighbour yet, a full queue) are
                    // answers missed, which the gap counts.
                    let _ = sender.send_to(&seq.to_be_bytes(), target);
                    let next = start + PROBE_EVERY * (seq + 1);
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        };
        let receive = {
            let (stop, answers) = (stop.clone(), answers.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, _)) = socket.recv_from(&mut buf)
                        && len == 5
                    {
                        let at = Instant::now();
                        answers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((at, buf[0]));
                    }
                }
            })
        };
        Ok(Probe {
            stop,
            answers,
            threads: vec![send, receive],
        })
    }

    /// Waits until node `node` answers after `since` (at most `limit` from
    /// `since`): when it did.
    fn wait_for(&self, node: u8, since: Instant, limit: Duration) -> Result<Instant> {
        loop {
            let found = self
                .answers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(at, n)| *n == node && *at > since)
                .map(|(at, _)| *at);
            if let Some(at) = found {
                return Ok(at);
            }
            if since.elapsed() > limit {
                bail!("no answer from node {} within {limit:?}", node + 1);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops probing: every answer, in arrival order.
    fn stop(mut self) -> Result<Vec<(Instant, u8)>> {
        self.halt();
        Ok(std::mem::take(
            &mut *self.answers.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The high-availability software on the two nodes.
trait Ha {
    /// `kill -9` of the first node's daemon.
    fn kill9(&mut self);
}

/// Two `lb-ctl run` made by `lb-ctl cluster init`.
struct LbPair {
    daemons: [DaemonProcess; 2],
}

impl LbPair {
    fn start(net: &PairNet, dir: &Path) -> Result<Self> {
        let extras = PlanExtras {
            cluster_tables: "[[cluster.monitors]]\nname = \"client-link\"\nkind = \"link\"\ninterface = \"ext0\"\ninterval_ms = 20\nretries = 2\n",
            ..PlanExtras::default()
        };
        let [lb1, lb2] = net.start_daemons(Path::new(LB_CTL), dir, &extras)?;
        let pair = LbPair {
            daemons: [lb1, lb2],
        };
        let start = Instant::now();
        while !(pair.role(0).as_deref() == Some("active")
            && pair.role(1).as_deref() == Some("standby"))
        {
            if start.elapsed() > START_LIMIT {
                bail!("lb1 did not become active with lb2 standby");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(pair)
    }

    fn role(&self, i: usize) -> Option<String> {
        self.daemons[i].cluster_role()
    }
}

impl Ha for LbPair {
    fn kill9(&mut self) {
        self.daemons[0].kill9();
    }
}

/// keepalived (VRRP only) in each node, the first one starting as master
/// with the higher priority.
struct KeepalivedPair {
    children: [Option<Child>; 2],
}

impl KeepalivedPair {
    fn start(net: &PairNet, dir: &Path, version: u8, advert_int: &str) -> Result<Self> {
        let spawn = |i: usize| -> Result<Child> {
            let (state, priority) = if i == 0 {
                ("MASTER", 150)
            } else {
                ("BACKUP", 100)
            };
            let config = format!(
                "global_defs {{\n  router_id lb{n}\n  vrrp_version {version}\n}}\n\
                 vrrp_instance bench {{\n  state {state}\n  interface ext0\n  \
                 virtual_router_id 51\n  priority {priority}\n  advert_int {advert_int}\n  \
                 virtual_ipaddress {{\n    {FIP}/24 dev ext0\n  }}\n}}\n",
                n = i + 1
            );
            let file = |ext: &str| dir.join(format!("keepalived{}.{ext}", i + 1));
            fs::write(file("conf"), config)?;
            let log = fs::File::create(file("log"))?;
            net.node(i)
                .net_command("keepalived")
                .args(["--dont-fork", "--log-console", "--vrrp", "--no-syslog"])
                .arg("--use-file")
                .arg(file("conf"))
                .arg("--pid")
                .arg(file("pid"))
                .arg("--vrrp_pid")
                .arg(file("vrrp.pid"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: `kill -9` reaches the VRRP child too.
                .process_group(0)
                .spawn()
                .context("starting keepalived")
        };
        let first = spawn(0)?;
        let mut pair = KeepalivedPair {
            children: [Some(first), Some(spawn(1)?)],
        };
        let start = Instant::now();
        while !net.holds_fip(0) {
            if start.elapsed() > START_LIMIT {
                let log = fs::read_to_string(dir.join("keepalived1.log")).unwrap_or_default();
                pair.kill(0);
                bail!("keepalived on the first node did not take the floating IP:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(pair)
    }

    /// `kill -9` of node `i`'s keepalived process group, reaped.
    fn kill(&mut self, i: usize) {
        let Some(mut child) = self.children[i].take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) of the process group our own child leads, not
            // yet reaped.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = child.wait();
    }
}

impl Ha for KeepalivedPair {
    fn kill9(&mut self) {
        self.kill(0);
    }
}

impl Drop for KeepalivedPair {
    fn drop(&mut self) {
        self.kill(0);
        self.kill(1);
    }
}
