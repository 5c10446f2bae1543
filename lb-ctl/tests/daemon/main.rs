//! The real `lb-ctl` binary: the daemon in the rig's LB namespace, the CLI
//! against it, health checks against real nginx, and restarts (`kill -9`)
//! under load. Needs root.
use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    daemon::{DaemonProcess, NodeFiles},
    rig::{
        Rig, RigOptions, VIP_V4, VIP_V6,
        udp::{self, Reply},
    },
};
use serde_json::Value;

// The tests, by what they drive (each module uses the harness above).
mod cli;
mod forwarding;
mod lifecycle;

const LB_CTL: &str = env!("CARGO_BIN_EXE_lb-ctl");

/// One test at a time: they load the machine (wrk, nginx, health checks
/// with sub-second timings), and two cores are all there is.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A daemon run by the test (the shared harness), with the CLI helpers the
/// tests use; killed and its pins removed on Drop.
struct Daemon {
    process: DaemonProcess,
    socket: PathBuf,
}

impl Daemon {
    fn start(rig: &Rig, config: &Path) -> Daemon {
        let files = NodeFiles::in_rig(rig);
        let socket = files.socket();
        let process = DaemonProcess::start(&rig.lb().ns, Path::new(LB_CTL), files, config).unwrap();
        Daemon { process, socket }
    }

    fn spawn(&mut self, rig: &Rig) {
        self.process.restart(&rig.lb().ns).unwrap();
    }

    /// Starts `lb-ctl run` through `command` (`ip netns exec NS lb-ctl`,
    /// say) instead of `nsenter --net`.
    fn start_with(rig: &Rig, config: &Path, command: Command) -> Daemon {
        let files = NodeFiles::in_rig(rig);
        let socket = files.socket();
        let process = DaemonProcess::start_with(command, Path::new(LB_CTL), files, config).unwrap();
        Daemon { process, socket }
    }

    /// SIGTERM, and waits (at most 10 s) until the daemon has exited.
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate().unwrap().expect("the daemon runs")
    }

    fn kill9(&mut self) {
        self.process.kill9();
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.process.ctl().args(args).output().unwrap()
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "lb-ctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// The health of a backend as `backend list` reports it.
    fn health(&self, service: &str, backend: &str) -> String {
        let list = self.json(&["backend", "list", service]);
        list[0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == backend)
            .map(|b| b["health"].as_str().unwrap().to_owned())
            .unwrap()
    }

    fn wait_health(&self, service: &str, backend: &str, want: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.health(service, backend) == want {
                return start.elapsed();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("{service} {backend} not {want} after {limit:?}");
    }
}

/// A rig with nginx on `backends` hosts and the VIPs on the LB.
fn rig(backends: usize) -> Rig {
    let mut rig = Rig::build(&RigOptions {
        backends,
        ..Default::default()
    })
    .unwrap();
    rig.add_vips().unwrap();
    rig.start_nginx().unwrap();
    rig
}

/// A configuration for the rig: one IPv4 and one IPv6 TCP service over the
/// first three backends, with TCP health checks every 300 ms.
fn write_config(rig: &Rig, sorry: Option<&str>) -> PathBuf {
    let files = NodeFiles::in_rig(rig);
    let metrics = SocketAddr::new(rig.lb().ext_v4.into(), 9650);
    let mut text = files.node_table("lb-test", &["ext0", "int0"], Some(metrics));
    for (vip, v6) in [(VIP_V4.to_string(), false), (VIP_V6.to_string(), true)] {
        text.push_str(&format!(
            "\n[[services]]\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\nhealth = {{ kind = \"tcp\", interval_ms = 300, timeout_ms = 300, rise = 2, fall = 2 }}\n"
        ));
        if let (Some(sorry), false) = (sorry, v6) {
            text.push_str(&format!("sorry = \"{sorry}\"\n"));
        }
        for b in rig.backends.iter().take(3) {
            let addr = if v6 {
                format!("[{}]:80", b.v6)
            } else {
                format!("{}:80", b.v4)
            };
            text.push_str(&format!("\n[[services.backends]]\naddress = \"{addr}\"\n"));
        }
    }
    let path = files.config();
    fs::write(&path, text).unwrap();
    path
}

const SVC4: &str = "tcp/198.18.0.100:80";

/// The `[node]` section for the rig, without metrics, and `services` after
/// it.
fn write_node_config(rig: &Rig, extra_node: &str, services: &str) -> PathBuf {
    let dir = rig.dir();
    let text = format!(
        "[node]\nname = \"lb-test\"\ninterfaces = [\"ext0\", \"int0\"]\napi_socket = \"{}\"\nbpffs_dir = \"/sys/fs/bpf/{}\"\nalert_log = \"{}\"\n{extra_node}\n{services}",
        dir.join("lb.sock").display(),
        rig.prefix,
        dir.join("alerts.jsonl").display(),
    );
    let path = dir.join("lb.toml");
    fs::write(&path, text).unwrap();
    path
}

/// A service without health checks (the documented default).
fn service(vip: &str, port: u16, mode: &str, backends: &[String]) -> String {
    let mut text = format!(
        "\n[[services]]\nvip = \"{vip}\"\nport = {port}\nprotocol = \"tcp\"\nmode = \"{mode}\"\n"
    );
    for b in backends {
        text.push_str(&format!("\n[[services.backends]]\naddress = \"{b}\"\n"));
    }
    text
}

/// The LB namespace's neighbour entries with a link-layer address on the
/// backends' side (`ip neigh show dev int0`), one a line.
fn resolved_neighbours(rig: &Rig) -> Vec<String> {
    let out = rig
        .lb()
        .ns
        .ip(["neigh", "show", "dev", rig.lb().int_iface])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("lladdr"))
        .map(str::to_owned)
        .collect()
}

fn events(d: &Daemon) -> Vec<(String, String)> {
    d.json(&["alerts", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["event"].as_str().unwrap().to_owned(),
                a["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until no IPv6 address of the LB namespace is tentative (duplicate
/// address detection of the link-local addresses of fresh interfaces).
fn wait_for_ipv6_addresses(rig: &Rig) {
    wait_for(
        "the LB's IPv6 addresses are usable",
        Duration::from_secs(10),
        || {
            let out = rig.lb().ns.ip(["-6", "addr", "show", "tentative"]).unwrap();
            out.stdout.is_empty()
        },
    );
}

/// Waits until `check` holds (polling every 100 ms), or fails with `what`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

/// The last alert of the log file (read after the daemon exited).
fn last_alert(rig: &Rig) -> Value {
    let text = fs::read_to_string(rig.dir().join("alerts.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn xdp_on_ext0(rig: &Rig) -> bool {
    let out = rig.lb().ns.ip(["link", "show", "ext0"]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}
