//! The data-plane benchmark: `cargo xtask bench dataplane` (which runs this
//! with `cargo bench -p lb-tests --bench dataplane`). Prints a table and
//! writes `target/bench/dataplane.json`. How each figure is measured, and why
//! so, is in docs/benchmarks.md. Needs root.
//!
//! Two parts:
//! - BPF_PROG_TEST_RUN in a fixture namespace: nanoseconds per packet of
//!   `lb_xdp` (a packet of a pinned flow, a first packet) and of the baseline
//!   `lb_baseline` (the same parse and rewrite, no lookups), IPv4 and IPv6.
//! - the netns rig under load: wrk against nginx and iperf3, straight to the
//!   backend, through `lb_xdp`, through nftables DNAT; and the kernel's own
//!   BPF run-time statistics of `lb_xdp` and `lb_baseline` under that load;
//!   then bulk TCP through the VIP with MTU 1500 and 9000 on every link
//!   (jumbo frames: multi-buffer XDP), `lb_xdp` against nftables DNAT, with
//!   the offloads the client's veth keeps while `lb_xdp` is attached to
//!   its peer.
//! - small packets in a rig of its own (`pps.rs`): 64-byte frames per
//!   second delivered through `lb_xdp`, `lb_baseline`, nftables DNAT and
//!   plain routing, from a generator fast enough to saturate them.
//!
//! Targets are reported (met or not, with the ratio) and never fail the run;
//! it exits non-zero only when a figure could not be measured.
use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::{Child, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use lb_common::{AF_INET, BASELINE_PROGRAM, BaselineConfig, Counter, Traffic, XDP_PROGRAM};
use lb_ctl::{
    balancer::{
        BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec, addr_bytes, family,
    },
    dataplane::{self, AttachMode, Baseline, Dataplane},
};
use lb_tests::{
    fixnet::{self, FixtureNet, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action},
    netns::Netns,
    packets::{self, ACK, Frame, SYN},
    rig::{self, Rig, RigOptions, VIP_V4, VIP_V6},
    testrun::{Durations, measure},
};
use serde_json::json;

#[path = "dataplane/pps.rs"]
mod pps;

/// BPF_PROG_TEST_RUN runs per figure (the issue asks for at least this).
const RUNS: u64 = 1_000_000;
/// Longest a single test-run figure may take before it counts as failed.
const FIGURE_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Load duration of each wrk and iperf3 run.
const LOAD_SECS: u64 = 5;
/// wrk connections (one thread).
const WRK_CONNECTIONS: u32 = 32;
const HTTP_PORT: u16 = 80;
const IPERF_PORT: u16 = 5201;
/// The service port and backend port of the test-run figures (NAT
/// rewrites both address and port, as in tests/tests/forwarding.rs).
const VPORT: u16 = 80;
const BPORT: u16 = 8080;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("dataplane bench: {err:#}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("dataplane bench: needs root (network namespaces, XDP, BPF_PROG_TEST_RUN)");
        return ExitCode::from(2);
    }
    let mut report = Report::default();
    background_load(&mut report, "before");
    if options.test_run {
        println!(
            "[bench] BPF_PROG_TEST_RUN: {} runs per figure, repeat = 1",
            options.runs
        );
        if let Err(err) = test_run_figures(options.runs, &mut report) {
            report.failure(format!("test-run figures: {err:#}"));
        }
    }
    if options.pps {
        println!(
            "[bench] small packets: {} s per window, generator lb_bench_gen (BPF_PROG_TEST_RUN, live frames)",
            options.secs
        );
        if let Err(err) = pps::figures(options.secs, &mut report) {
            report.failure(format!("small-packet figures: {err:#}"));
        }
    }
    if options.rig {
        println!(
            "[bench] rig: wrk -t1 -c{WRK_CONNECTIONS} -d{}s, iperf3 -t {} (one stream)",
            options.secs, options.secs
        );
        if let Err(err) = rig_figures(options.secs, &mut report) {
            report.failure(format!("rig figures: {err:#}"));
        }
    }
    if options.jumbo {
        println!(
            "[bench] jumbo: iperf3 -t {} (one stream) through the VIP, MTU 1500 and 9000",
            options.secs
        );
        for mtu in JUMBO_MTUS {
            if let Err(err) = jumbo_figures(mtu, options.secs, &mut report) {
                report.failure(format!("jumbo figures at MTU {mtu}: {err:#}"));
            }
        }
    }
    background_load(&mut report, "after");
    print!("{}", report.table());
    if let Err(err) = report.write_json(&options.out) {
        report.failure(format!("writing {}: {err:#}", options.out.display()));
    } else {
        println!("[bench] wrote {}", options.out.display());
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("[bench] could not measure:");
        for failure in &report.failures {
            eprintln!("  - {failure}");
        }
        ExitCode::FAILURE
    }
}

/// The machine's CPU use over one second while the bench runs nothing:
/// other work on the machine (builds...) skews every figure.
fn background_load(report: &mut Report, when: &str) {
    let load = CpuTimes::read().and_then(|before| {
        thread::sleep(Duration::from_secs(1));
        Ok(CpuTimes::read()?.since(&before))
    });
    match load {
        Ok(cpu) => report.detail(format!(
            "other load on the machine {when} the bench (1 s, bench idle): {cpu}"
        )),
        Err(err) => report.detail(format!("other load {when}: not measured: {err:#}")),
    }
}

/// Command line: `[--runs N] [--secs S] [--out PATH] [--only test-run|rig|jumbo|pps]`.
/// `cargo bench` adds `--bench`, which is ignored.
struct Options {
    runs: u64,
    secs: u64,
    out: PathBuf,
    test_run: bool,
    rig: bool,
    jumbo: bool,
    pps: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = Options {
            runs: RUNS,
            secs: LOAD_SECS,
            out: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bench/dataplane.json"
            )),
            test_run: true,
            rig: true,
            jumbo: true,
            pps: true,
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--runs" => options.runs = value()?.parse().context("--runs")?,
                "--secs" => options.secs = value()?.parse().context("--secs")?,
                "--out" => options.out = value()?.into(),
                "--only" => {
                    let only = value()?;
                    if !["test-run", "rig", "jumbo", "pps"].contains(&only.as_str()) {
                        bail!("--only takes test-run, rig, jumbo or pps, not {only}");
                    }
                    options.test_run = only == "test-run";
                    options.rig = only == "rig";
                    options.jumbo = only == "jumbo";
                    options.pps = only == "pps";
                }
                other => bail!(
                    "unknown argument {other}; takes [--runs N] [--secs S] [--out PATH] [--only test-run|rig|jumbo|pps]"
                ),
            }
        }
        if options.runs == 0 || options.secs == 0 {
            bail!("--runs and --secs must be positive");
        }
        if options.runs < RUNS {
            println!(
                "[bench] note: {} runs per figure, fewer than the {RUNS} the published figures use",
                options.runs
            );
        }
        Ok(options)
    }
}

// ---------------------------------------------------------------------------
// Report

/// Everything measured, by JSON section and key; `None` when not measured.
#[derive(Default)]
struct Report {
    ns_per_packet: Vec<(&'static str, Option<f64>)>,
    rig_ns_per_packet: Vec<(&'static str, Option<f64>)>,
    rig_requests_per_s: Vec<(&'static str, Option<f64>)>,
    rig_tcp_gbps: Vec<(&'static str, Option<f64>)>,
    /// Bulk TCP through the VIP by the links' MTU (the jumbo phase).
    rig_tcp_gbps_by_mtu: Vec<(&'static str, Option<f64>)>,
    /// Small packets (`pps.rs`), by kind, flows and path.
    small_pps: Vec<pps::Figure>,
    /// Lines printed under the table: medians, fixed overheads, CPU load.
    details: Vec<String>,
    failures: Vec<String>,
}

/// The links' MTUs of the jumbo phase.
const JUMBO_MTUS: [u32; 2] = [1500, 9000];
const BY_MTU_KEYS: [&str; 4] = [
    "lb_1500",
    "nftables_dnat_1500",
    "lb_9000",
    "nftables_dnat_9000",
];
/// `baseline_lookup`: `lb_baseline_lookup`, the yardstick with the one
/// connection-table lookup (see lb-ebpf/src/baseline.rs).
const RIG_NS_KEYS: [&str; 3] = ["baseline", "baseline_lookup", "lb"];
const TCP_KEYS: [&str; 4] = ["direct", "lb", "nftables_dnat", "baseline"];

const NS_KEYS: [&str; 6] = [
    "baseline_v4",
    "established_v4",
    "new_flow_v4",
    "baseline_v6",
    "established_v6",
    "new_flow_v6",
];

impl Report {
    fn failure(&mut self, what: String) {
        eprintln!("[bench] FAILED: {what}");
        self.failures.push(what);
    }

    fn detail(&mut self, line: String) {
        println!("[bench]   {line}");
        self.details.push(line);
    }

    fn get(section: &[(&'static str, Option<f64>)], key: &str) -> Option<f64> {
        section
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
    }

    fn json(&self) -> serde_json::Value {
        fn section(
            keys: &[&str],
            values: &[(&'static str, Option<f64>)],
            digits: i32,
        ) -> serde_json::Value {
            let scale = 10f64.powi(digits);
            let map: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|&k| {
                    let v = Report::get(values, k).map(|v| (v * scale).round() / scale);
                    (k.to_owned(), json!(v))
                })
                .collect();
            serde_json::Value::Object(map)
        }
        json!({
            "ns_per_packet": section(&NS_KEYS, &self.ns_per_packet, 1),
            "rig_ns_per_packet": section(&RIG_NS_KEYS, &self.rig_ns_per_packet, 1),
            "rig_requests_per_s": section(&["direct", "lb", "nftables_dnat"], &self.rig_requests_per_s, 0),
            "rig_tcp_gbps": section(&TCP_KEYS, &self.rig_tcp_gbps, 2),
            "rig_tcp_gbps_by_mtu": section(&BY_MTU_KEYS, &self.rig_tcp_gbps_by_mtu, 2),
            "rig_small_packets_pps": self.small_pps_json(pps::KINDS[0]),
            "rig_small_packets_pps_tcp_ack": self.small_pps_json(pps::KINDS[1]),
            "rig_small_packets_lb_ns": self.small_ns_json(),
            "rig_syn_flood_pps": self.syn_flood_json(false),
            "rig_syn_flood_lb_ns": self.syn_flood_json(true),
        })
    }

    /// The SYN flood's figures by path: packets per second delivered, or
    /// (`ns`) the LB thread's CPU time per packet.
    fn syn_flood_json(&self, ns: bool) -> serde_json::Value {
        let paths = if ns {
            &pps::PATHS[1..]
        } else {
            &pps::PATHS[..]
        };
        let map: serde_json::Map<String, serde_json::Value> = paths
            .iter()
            .map(|&path| {
                let figure = self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
                let v = figure.map(|f| {
                    if ns {
                        (f.lb_ns_per_packet * 10.0).round() / 10.0
                    } else {
                        f.pps.round()
                    }
                });
                (path.to_owned(), json!(v))
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// A small-packet figure (frames per second), if measured.
    fn small_pps(
        &self,
        kind: lb_tests::pps::Kind,
        flows: &str,
        path: &str,
    ) -> Option<&pps::Figure> {
        self.small_pps
            .iter()
            .find(|f| f.kind == kind && f.flows == flows && f.path == path)
    }

    fn small_pps_json(&self, kind: lb_tests::pps::Kind) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for flows in pps::FLOWS {
            let paths: serde_json::Map<String, serde_json::Value> = pps::PATHS
                .iter()
                .map(|&path| {
                    let v = self.small_pps(kind, flows, path).map(|f| f.pps.round());
                    (path.to_owned(), json!(v))
                })
                .collect();
            out.insert(flows.to_owned(), serde_json::Value::Object(paths));
        }
        serde_json::Value::Object(out)
    }

    /// The LB receive thread's CPU time per packet, by kind, flows, path.
    fn small_ns_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for kind in pps::KINDS {
            let mut flows_map = serde_json::Map::new();
            for flows in pps::FLOWS {
                let paths: serde_json::Map<String, serde_json::Value> = pps::PATHS[1..]
                    .iter()
                    .map(|&path| {
                        let v = self
                            .small_pps(kind, flows, path)
                            .map(|f| (f.lb_ns_per_packet * 10.0).round() / 10.0);
                        (path.to_owned(), json!(v))
                    })
                    .collect();
                flows_map.insert(flows.to_owned(), serde_json::Value::Object(paths));
            }
            out.insert(kind.name().to_owned(), serde_json::Value::Object(flows_map));
        }
        serde_json::Value::Object(out)
    }

    fn write_json(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok(())
    }

    /// The aligned table, then the targets, then the details.
    fn table(&self) -> String {
        let mut rows: Vec<[String; 3]> = Vec::new();
        let show = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "not measured".into(),
        };
        for &key in &NS_KEYS {
            rows.push([
                format!("ns_per_packet.{key}"),
                show(Self::get(&self.ns_per_packet, key), 1),
                "ns".into(),
            ]);
        }
        for key in RIG_NS_KEYS {
            rows.push([
                format!("rig_ns_per_packet.{key}"),
                show(Self::get(&self.rig_ns_per_packet, key), 1),
                "ns".into(),
            ]);
        }
        for key in ["direct", "lb", "nftables_dnat"] {
            rows.push([
                format!("rig_requests_per_s.{key}"),
                show(Self::get(&self.rig_requests_per_s, key), 0),
                "req/s".into(),
            ]);
        }
        for key in TCP_KEYS {
            rows.push([
                format!("rig_tcp_gbps.{key}"),
                show(Self::get(&self.rig_tcp_gbps, key), 2),
                "Gbit/s".into(),
            ]);
        }
        for key in BY_MTU_KEYS {
            rows.push([
                format!("rig_tcp_gbps_by_mtu.{key}"),
                show(Self::get(&self.rig_tcp_gbps_by_mtu, key), 2),
                "Gbit/s".into(),
            ]);
        }
        for (kind, section) in [
            (pps::KINDS[0], "rig_small_packets_pps"),
            (pps::KINDS[1], "rig_small_packets_pps_tcp_ack"),
        ] {
            for flows in pps::FLOWS {
                for path in pps::PATHS {
                    let figure = self.small_pps(kind, flows, path);
                    rows.push([
                        format!("{section}.{flows}.{path}"),
                        show(figure.map(|f| f.pps), 0),
                        match figure {
                            Some(f) if path != "generator" => format!(
                                "pkt/s (generator made {:.0}/s; LB thread {:.0} ns/pkt)",
                                f.generator_pps, f.lb_ns_per_packet
                            ),
                            _ => "pkt/s".into(),
                        },
                    ]);
                }
            }
        }
        for path in pps::PATHS {
            let figure = self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
            rows.push([
                format!("rig_syn_flood_pps.{path}"),
                show(figure.map(|f| f.pps), 0),
                match figure {
                    Some(f) if path != "generator" => format!(
                        "new flows/s (generator made {:.0}/s; LB thread {:.0} ns/pkt)",
                        f.generator_pps, f.lb_ns_per_packet
                    ),
                    _ => "new flows/s".into(),
                },
            ]);
        }
        lb_tests::table::figures(&rows, &self.targets(), &self.details)
    }

    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for fam in ["v4", "v6"] {
            let est = Self::get(&self.ns_per_packet, &format!("established_{fam}"));
            let base = Self::get(&self.ns_per_packet, &format!("baseline_{fam}"));
            lines.push(match (est, base) {
                (Some(e), Some(b)) => format!(
                    "established_{fam} <= 2 x baseline_{fam}: {} (ratio {:.2})",
                    met(e <= 2.0 * b),
                    e / b
                ),
                _ => format!("established_{fam} <= 2 x baseline_{fam}: not measured"),
            });
        }
        let rig_ns = |key| Self::get(&self.rig_ns_per_packet, key);
        lines.push(match (rig_ns("lb"), rig_ns("baseline"), rig_ns("baseline_lookup")) {
            (Some(l), Some(b), lookup) => format!(
                "rig_ns_per_packet: lb <= 1.5 x baseline: {} (ratio of the medians {:.2}){}",
                met(l <= 1.5 * b),
                l / b,
                lookup.map_or(String::new(), |k| format!(
                    "; lb / baseline_lookup {:.2}, baseline_lookup / baseline {:.2} (no target: the one lookup's share)",
                    l / k,
                    k / b
                ))
            ),
            _ => "rig_ns_per_packet: lb <= 1.5 x baseline: not measured".into(),
        });
        for (section, name) in [
            (&self.rig_requests_per_s, "rig_requests_per_s"),
            (&self.rig_tcp_gbps, "rig_tcp_gbps"),
        ] {
            let lb = Self::get(section, "lb");
            let nft = Self::get(section, "nftables_dnat");
            lines.push(match (lb, nft) {
                (Some(l), Some(n)) => format!(
                    "{name}: lb >= nftables_dnat: {} (ratio {:.3})",
                    met(l >= n),
                    l / n
                ),
                _ => format!("{name}: lb >= nftables_dnat: not measured"),
            });
        }
        for kind in pps::KINDS {
            let section = match kind {
                lb_tests::pps::Kind::Udp => "rig_small_packets_pps",
                _ => "rig_small_packets_pps_tcp_ack",
            };
            for flows in pps::FLOWS {
                let get = |path| self.small_pps(kind, flows, path).map(|f| f.pps);
                let lb = get("lb");
                // What the LB's CPU could forward: 1 s over its CPU time
                // per packet.
                let capacity = |path| {
                    self.small_pps(kind, flows, path)
                        .map(|f| 1e9 / f.lb_ns_per_packet)
                };
                for (other, factor) in [("nftables_dnat", 3.0), ("baseline", 0.8)] {
                    let name = format!("{section}.{flows}: lb >= {factor} x {other}");
                    lines.push(match (lb, get(other)) {
                        (Some(l), Some(o)) => {
                            format!("{name}: {} (ratio {:.2})", met(l >= factor * o), l / o)
                        }
                        _ => format!("{name}: not measured"),
                    });
                    let name = format!(
                        "  the same by packets per second of the LB thread's CPU ({flows}, {})",
                        kind.name()
                    );
                    lines.push(match (capacity("lb"), capacity(other)) {
                        (Some(l), Some(o)) => format!(
                            "{name}: {} (ratio {:.2}; {:.0} vs {:.0} pkt/s)",
                            met(l >= factor * o),
                            l / o,
                            l,
                            o
                        ),
                        _ => format!("{name}: not measured"),
                    });
                }
                if let (Some(l), Some(k)) = (capacity("lb"), capacity("baseline_lookup")) {
                    lines.push(format!(
                        "  (no target) by the LB thread's CPU ({flows}, {}): lb / baseline_lookup {:.2}",
                        kind.name(),
                        l / k
                    ));
                }
            }
        }
        // No target in the issue: the figures side by side.
        let syn = |path| self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
        lines.push(match (syn("lb"), syn("nftables_dnat"), syn("baseline")) {
            (Some(l), Some(n), Some(b)) => format!(
                "rig_syn_flood_pps (no target): lb / nftables_dnat {:.2} delivered, {:.2} by the LB thread's CPU; lb / baseline {:.2} delivered, {:.2} by CPU",
                l.pps / n.pps,
                n.lb_ns_per_packet / l.lb_ns_per_packet,
                l.pps / b.pps,
                b.lb_ns_per_packet / l.lb_ns_per_packet
            ),
            _ => "rig_syn_flood_pps (no target): not measured".into(),
        });
        lines
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN figures

fn test_run_figures(runs: u64, report: &mut Report) -> Result<()> {
    let net = FixtureNet::build().context("building the fixture namespace")?;
    let (ext, int) = (net.ext, net.int);
    for v6 in [false, true] {
        let fam = if v6 { "v6" } else { "v4" };
        let figures = net
            .ns
            .run_in(|| family_figures(v6, runs, ext, int))
            .with_context(|| format!("IPv{}", if v6 { 6 } else { 4 }));
        match figures {
            Ok(figures) => {
                for (kind, figure) in figures.figures {
                    let name = format!("{kind}_{fam}");
                    let key = *NS_KEYS.iter().find(|k| **k == name).expect("a known key");
                    match figure {
                        Ok(m) => {
                            report.detail(format!(
                                "{key}: mean {:.1} ns, median {} ns over {runs} runs",
                                m.mean_ns(),
                                m.median_ns()
                            ));
                            report.ns_per_packet.push((key, Some(m.mean_ns())));
                        }
                        Err(err) => report.failure(format!("{key}: {err:#}")),
                    }
                }
                for line in figures.details {
                    report.detail(line);
                }
            }
            Err(err) => report.failure(format!("{err:#}")),
        }
    }
    Ok(())
}

struct FamilyFigures {
    /// ("baseline" | "established" | "new_flow", figure).
    figures: Vec<(&'static str, Result<Durations>)>,
    details: Vec<String>,
}

/// The three figures of one address family, on a freshly loaded `lb_xdp`
/// (empty flow tables) and a baseline configured for the same backend.
fn family_figures(v6: bool, runs: u64, ext: u32, int: u32) -> Result<FamilyFigures> {
    let mut out = FamilyFigures {
        figures: Vec::new(),
        details: Vec::new(),
    };
    let fam = if v6 { "v6" } else { "v4" };
    let vip: IpAddr = if v6 { VIP_V6.into() } else { VIP_V4.into() };
    let spec = ServiceSpec {
        vip,
        port: VPORT,
        protocol: Protocol::Tcp,
        mode: Mode::Nat,
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: SocketAddr::new(backend_ip(v6, i), BPORT),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    };
    let mut dp = Dataplane::load()?;
    lease_as_clustered(&mut dp)?;
    dp.add_tx_port(ext)?;
    dp.add_tx_port(int)?;
    let (balancer, ops) = Balancer::new().plan(std::slice::from_ref(&spec))?;
    dp.apply(&ops)?;
    let service = balancer
        .service_id(&spec.key())
        .context("service not configured")?;

    // established: pin the flow with one packet and confirm it with a
    // second (the connection table), then measure that packet.
    let client = SocketAddr::new(client_ip(v6), 40000);
    let established = Frame::new(client, SocketAddr::new(vip, VPORT), ACK)
        .macs(packets::CLIENT_MAC, LB_EXT_MAC)
        .payload(&[0x5a; 64]);
    let frame = established.build();
    let mut pinned_out = None;
    for _ in 0..2 {
        let out = fixture::run_on(xdp(dp.ebpf(), XDP_PROGRAM)?, &frame, Some(ext))?;
        if out.action != Action::Redirect {
            bail!("the pinning packet got {:?}, not Redirect", out.action);
        }
        pinned_out = Some(out);
    }
    let pinned_out = pinned_out.context("no pinning packet")?;
    let flow = dp
        .flow(&established.flow_key())?
        .context("the pinning packets left no confirmed flow")?;
    let backend = balancer.tables().backends[&flow.backend];
    let backend_index = (0..fixnet::BACKENDS)
        .find(|&i| addr_bytes(backend_ip(v6, i)) == backend.addr)
        .context("pinned to an unknown backend")?;

    // The baseline, for the same service and backend.
    let config = BaselineConfig {
        vip: addr_bytes(vip),
        vport: VPORT.to_be_bytes(),
        backend: backend.addr,
        bport: BPORT.to_be_bytes(),
        family: family(vip),
        ext_ifindex: ext,
        int_ifindex: int,
        lb_ext_mac: LB_EXT_MAC,
        lb_int_mac: LB_INT_MAC,
        client_mac: packets::CLIENT_MAC,
        backend_mac: fixnet::backend_mac(backend_index),
        ..BaselineConfig::UNSET
    };
    let baseline_object = dataplane::load_baseline(&config, Baseline::Plain)?;
    let baseline = xdp(&baseline_object, BASELINE_PROGRAM)?;
    // Same rewrite: the baseline's output is byte for byte lb_xdp's.
    let baseline_out = fixture::run_on(baseline, &frame, Some(ext))?;
    if baseline_out != pinned_out {
        bail!(
            "lb_baseline ({:?}) and lb_xdp ({:?}) do not rewrite alike: {}",
            baseline_out.action,
            pinned_out.action,
            fixture::describe_difference(&pinned_out.frame, &baseline_out.frame)
        );
    }

    // baseline
    out.figures.push((
        "baseline",
        measure(
            baseline,
            ext,
            runs,
            XDP_REDIRECT,
            FIGURE_TIME_LIMIT,
            |_, buf| {
                if buf.is_empty() {
                    *buf = frame.clone();
                }
            },
        ),
    ));
    // The test-run harness's own cost per run (timer, BH disabling), in
    // every figure: the baseline on a frame it passes at once.
    let arp = packets::arp_request(rig::CLIENT_V4, lb_tests::fixnet::LB_EXT_V4);
    if !v6 {
        let floor = measure(
            baseline,
            ext,
            runs.min(200_000),
            XDP_PASS,
            FIGURE_TIME_LIMIT,
            |_, buf| {
                if buf.is_empty() {
                    *buf = arp.clone();
                }
            },
        );
        out.details.push(match floor {
            Ok(floor) => format!(
                "floor (lb_baseline on an ARP frame, XDP_PASS at once; harness cost included in every figure): mean {:.1} ns, median {} ns",
                floor.mean_ns(), floor.median_ns()
            ),
            Err(err) => format!("floor not measured: {err:#}"),
        });
    }

    // established: every run must find the flow (no new flow counted).
    let program = xdp(dp.ebpf(), XDP_PROGRAM)?;
    let before = dp.service_traffic(service)?;
    let established_figure = measure(
        program,
        ext,
        runs,
        XDP_REDIRECT,
        FIGURE_TIME_LIMIT,
        |_, buf| {
            if buf.is_empty() {
                *buf = frame.clone();
            }
        },
    );
    let after = dp.service_traffic(service)?;
    let established_figure = established_figure.and_then(|m| {
        check_counts(&before, &after, runs, 0).context("established runs")?;
        Ok(m)
    });
    out.figures.push(("established", established_figure));

    // new_flow: a 5-tuple the table has never held, on every run.
    let new_flow = |run: u64| {
        Frame::new(new_client(v6, run), SocketAddr::new(vip, VPORT), SYN)
            .macs(packets::CLIENT_MAC, LB_EXT_MAC)
            .payload(&[0x5a; 64])
    };
    let samples: Vec<u64> = (0..runs).step_by(9973).chain([runs - 1]).collect();
    for &run in &samples {
        let key = new_flow(run).flow_key();
        if dp.flow(&key)?.is_some() || dp.new_flow(&key)?.is_some() {
            bail!("new-flow run {run}: a flow table already holds its 5-tuple");
        }
    }
    let before = dp.service_traffic(service)?;
    let new_flow_figure = measure(
        program,
        ext,
        runs,
        XDP_REDIRECT,
        FIGURE_TIME_LIMIT,
        |run, buf| {
            *buf = new_flow(run).build();
        },
    );
    let after = dp.service_traffic(service)?;
    let new_flow_figure = new_flow_figure.and_then(|m| {
        check_counts(&before, &after, runs, runs).context("new-flow runs")?;
        Ok(m)
    });
    out.figures.push(("new_flow", new_flow_figure));
    out.details.push(format!(
        "{fam}: {} sampled new-flow 5-tuples absent from the flow table before; service counters: established runs added 0 new flows, new-flow runs added one new flow each",
        samples.len()
    ));
    Ok(out)
}

/// A loaded XDP program of `ebpf`, shared (so that maps can be read while
/// it runs).
fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    let program = ebpf
        .program(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    Ok(program.try_into()?)
}

/// The service counters moved by exactly `runs` packets and `new_flows`
/// new flows.
fn check_counts(before: &Traffic, after: &Traffic, runs: u64, new_flows: u64) -> Result<()> {
    let packets = after.packets - before.packets;
    let flows = after.new_flows - before.new_flows;
    if packets != runs || flows != new_flows {
        bail!(
            "service counters: {packets} packets and {flows} new flows, expected {runs} and {new_flows}"
        );
    }
    Ok(())
}

/// A client 5-tuple per run, all distinct: 50,000 source ports on each of a
/// series of client addresses in the client subnet (198.18.0.0/24,
/// 2001:db8::/64), skipping the LB's, the VIP's and the fixture's other
/// hosts.
fn new_client(v6: bool, run: u64) -> SocketAddr {
    const PORTS: u64 = 50_000;
    let port = 10_000 + (run % PORTS) as u16;
    let host = run / PORTS;
    if v6 {
        let ip = Ipv6Addr::from(
            u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 1, 0, 0)) + u128::from(host),
        );
        return SocketAddr::new(ip.into(), port);
    }
    // .2 to .254 without .10 (the established client), .50 and .100.
    let mut last = 2 + host;
    for taken in [10, 50, 100] {
        if last >= taken {
            last += 1;
        }
    }
    let last = u8::try_from(last)
        .ok()
        .filter(|&h| h < 255)
        .expect("at most 250 x 50,000 new-flow runs");
    SocketAddr::new(Ipv4Addr::new(198, 18, 0, last).into(), port)
}

fn client_ip(v6: bool) -> IpAddr {
    if v6 {
        rig::CLIENT_V6.into()
    } else {
        rig::CLIENT_V4.into()
    }
}

fn backend_ip(v6: bool, i: usize) -> IpAddr {
    if v6 {
        rig::backend_v6(i).into()
    } else {
        rig::backend_v4(i).into()
    }
}

// ---------------------------------------------------------------------------
// Rig figures

/// What one load phase measured.
struct Load {
    requests_per_s: f64,
    cpu: Cpu,
}

fn rig_figures(secs: u64, report: &mut Report) -> Result<()> {
    let mut rig = Rig::build(&RigOptions {
        backends: 1,
        ..Default::default()
    })?;
    rig.add_vips()?;
    rig.start_nginx()?;
    let b1 = rig.backends[0].v4;
    let _iperf = Background::spawn(
        &rig.backends[0].ns,
        "iperf3",
        &["-s", "-p", &IPERF_PORT.to_string()],
    )?;
    wait_for_listener(&rig.backends[0].ns, IPERF_PORT)?;
    let vip = IpAddr::from(VIP_V4);
    report.detail(format!(
        "machine: {} CPUs; CPU figures are the whole machine's (/proc/stat) over the wrk window",
        thread::available_parallelism().map_or(0, |n| n.get())
    ));

    // (a) direct: no XDP, no NAT; the LB namespace's kernel routes.
    expect_body(&rig, b1.into(), "direct")?;
    let direct = http_load(&rig, b1.into(), secs).context("direct: wrk")?;
    report
        .rig_requests_per_s
        .push(("direct", Some(direct.requests_per_s)));
    report.detail(format!("direct wrk: {direct}"));
    let forwarded = ip_forwarded(&rig.lb().ns)?;
    let gbps = iperf(&rig, b1.into(), secs).context("direct: iperf3")?;
    let forwarded = ip_forwarded(&rig.lb().ns)? - forwarded;
    report.detail(format!(
        "direct iperf3: the LB's kernel forwarded {forwarded} IP datagrams (GRO-merged), {:.0} per second",
        forwarded as f64 / secs as f64
    ));
    report.rig_tcp_gbps.push(("direct", Some(gbps.gbps)));
    report.detail(format!("direct iperf3: {gbps}"));

    // (b) lb_xdp on ext0 and int0 (native), NAT VIP:80 and VIP:5201 -> b1.
    {
        let dp = attach_lb(&rig)?;
        expect_body(&rig, vip, "lb")?;
        let lb = http_load(&rig, vip, secs).context("lb: wrk")?;
        report
            .rig_requests_per_s
            .push(("lb", Some(lb.requests_per_s)));
        report.detail(format!("lb wrk: {lb}"));
        let forwarded = dp.counter(lb_common::Counter::Forwarded)?;
        let gbps = iperf(&rig, vip, secs).context("lb: iperf3")?;
        let forwarded = dp.counter(lb_common::Counter::Forwarded)? - forwarded;
        report.detail(format!(
            "lb iperf3: lb_xdp forwarded {forwarded} frames (one by one, before GRO), {:.0} per second",
            forwarded as f64 / secs as f64
        ));
        report.rig_tcp_gbps.push(("lb", Some(gbps.gbps)));
        report.detail(format!("lb iperf3: {gbps}"));
        drop(dp);
    }

    // (c) nftables DNAT in the LB namespace, no XDP.
    let rules = rig.dir().join("lbbench.nft");
    fs::write(
        &rules,
        format!(
            "table ip lbbench {{\n\
             \x20 chain prerouting {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   ip daddr {vip} tcp dport {{ {HTTP_PORT}, {IPERF_PORT} }} dnat to {b1}\n\
             \x20 }}\n\
             }}\n"
        ),
    )?;
    rig.lb()
        .ns
        .exec("nft", [std::ffi::OsStr::new("-f"), rules.as_os_str()])
        .context("loading the nftables DNAT rules in the LB namespace")?;
    expect_body(&rig, vip, "nftables_dnat")?;
    let nft = http_load(&rig, vip, secs).context("nftables_dnat: wrk")?;
    report
        .rig_requests_per_s
        .push(("nftables_dnat", Some(nft.requests_per_s)));
    report.detail(format!("nftables_dnat wrk: {nft}"));
    let forwarded = ip_forwarded(&rig.lb().ns)?;
    let gbps = iperf(&rig, vip, secs).context("nftables_dnat: iperf3")?;
    let forwarded = ip_forwarded(&rig.lb().ns)? - forwarded;
    report.detail(format!(
        "nftables_dnat iperf3: the LB's kernel forwarded {forwarded} IP datagrams (GRO-merged), {:.0} per second",
        forwarded as f64 / secs as f64
    ));
    report.rig_tcp_gbps.push(("nftables_dnat", Some(gbps.gbps)));
    report.detail(format!("nftables_dnat iperf3: {gbps}"));
    rig.lb()
        .ns
        .exec("nft", ["delete", "table", "ip", "lbbench"])?;

    // (d) rig_ns_per_packet: lb_xdp, lb_baseline and lb_baseline_lookup
    // (VIP:80 -> b1:80) in turn, a wrk window each per round.
    rig_ns_per_packet(&rig, secs, report)?;

    // (e) rig_tcp_gbps.baseline: bulk TCP through lb_baseline
    // (VIP:5201 -> b1:5201), the XDP path with no lookups at all. If it is
    // no faster than lb_xdp, the XDP forwarding path of the veth rig caps
    // the figure, not lb_xdp's work.
    let baseline = attach_baseline(&rig, IPERF_PORT, Baseline::Plain)?;
    let gbps = iperf(&rig, vip, secs).context("baseline: iperf3")?;
    report.rig_tcp_gbps.push(("baseline", Some(gbps.gbps)));
    report.detail(format!(
        "baseline iperf3 (lb_baseline, VIP:{IPERF_PORT} -> b1): {gbps}"
    ));
    drop(baseline);
    Ok(())
}

/// Rounds of `rig_ns_per_packet`: each a wrk window through `lb_xdp`, then
/// one through `lb_baseline` and one through `lb_baseline_lookup`.
const RIG_NS_ROUNDS: usize = 3;
const _: () = assert!(
    RIG_NS_ROUNDS % 2 == 1,
    "the median of the rounds is the middle one"
);

/// `rig_ns_per_packet`: the kernel's run time per run of `lb_xdp`, of
/// `lb_baseline` and of `lb_baseline_lookup` under the same wrk load, in
/// [`RIG_NS_ROUNDS`] rounds of one window each, side by side: the
/// machine's load drifts by more than the difference over the minutes
/// between two lone windows. The figures are the medians of the rounds;
/// each round's are in the details.
fn rig_ns_per_packet(rig: &Rig, secs: u64, report: &mut Report) -> Result<()> {
    let vip = IpAddr::from(VIP_V4);
    let mut lb = Vec::new();
    let mut baseline = Vec::new();
    let mut baseline_lookup = Vec::new();
    for round in 1..=RIG_NS_ROUNDS {
        let dp = attach_lb(rig)?;
        expect_body(rig, vip, "lb")?;
        let program = xdp(dp.ebpf(), XDP_PROGRAM)?;
        let counters = dp.counters()?;
        let (ns, load) = bpf_stats_under_load(rig, vip, secs, program)
            .with_context(|| format!("lb: BPF stats, round {round}"))?;
        let moved = counters_moved(&counters, &dp.counters()?);
        drop(dp);
        report.detail(format!(
            "round {round}: lb_xdp under wrk (stats on): {ns}; wrk: {load}; lb_xdp's counters (warm-up included): {moved}"
        ));
        lb.push(ns.ns_per_run());

        for (which, figures) in [
            (Baseline::Plain, &mut baseline),
            (Baseline::OneLookup, &mut baseline_lookup),
        ] {
            let name = which.program();
            let attached = attach_baseline(rig, HTTP_PORT, which)?;
            expect_body(rig, vip, name)?;
            let program = xdp(&attached, name)?;
            let (ns, load) = bpf_stats_under_load(rig, vip, secs, program)
                .with_context(|| format!("{name}: BPF stats, round {round}"))?;
            drop(attached);
            report.detail(format!(
                "round {round}: {name} under wrk (stats on): {ns}; wrk: {load}; lb / {name} {:.2}",
                lb[round - 1] / ns.ns_per_run()
            ));
            figures.push(ns.ns_per_run());
        }
    }
    for (name, figures) in [
        ("baseline", &baseline),
        ("baseline_lookup", &baseline_lookup),
    ] {
        let ratios: Vec<f64> = lb.iter().zip(figures).map(|(l, b)| l / b).collect();
        report.detail(format!(
            "rig_ns_per_packet: medians of {RIG_NS_ROUNDS} rounds; lb / {name} per round {}, median {:.2}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(&ratios)
        ));
    }
    report.rig_ns_per_packet.push(("lb", Some(median(&lb))));
    report
        .rig_ns_per_packet
        .push(("baseline", Some(median(&baseline))));
    report
        .rig_ns_per_packet
        .push(("baseline_lookup", Some(median(&baseline_lookup))));
    Ok(())
}

/// The counters of `lb_xdp` that moved between two readings
/// ([`Dataplane::counters`]), as `Name +N`, so that a reader sees which
/// ways the measured packets took.
pub(crate) fn counters_moved(before: &[(Counter, u64)], after: &[(Counter, u64)]) -> String {
    let moved: Vec<String> = before
        .iter()
        .zip(after)
        .filter(|((_, was), (_, is))| is != was)
        .map(|((counter, was), (_, is))| format!("{counter:?} +{}", is - was))
        .collect();
    if moved.is_empty() {
        "none moved".to_owned()
    } else {
        moved.join(", ")
    }
}

/// The median of `values` (not empty; an odd count: [`RIG_NS_ROUNDS`]).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// `lb_xdp` on the rig's LB (native, on both of its interfaces, with an
/// active's lease), NAT VIP:80 and VIP:5201 -> b1. Detached when dropped.
fn attach_lb(rig: &Rig) -> Result<Dataplane> {
    let b1 = rig.backends[0].v4;
    let services: Vec<ServiceSpec> = [HTTP_PORT, IPERF_PORT]
        .iter()
        .map(|&port| ServiceSpec {
            vip: IpAddr::from(VIP_V4),
            port,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            backends: vec![BackendSpec {
                addr: SocketAddr::new(b1.into(), port),
                weight: 1,
                state: BackendState::Enabled,
            }],
            sorry: None,
        })
        .collect();
    Ok(lb_on_rig(rig, &services)?.0)
}

/// `lb_xdp` loaded afresh in the rig's LB namespace with an active's lease,
/// attached natively to both of its interfaces, with `services` and the
/// balancer that planned them. Detached when dropped.
pub(crate) fn lb_on_rig(rig: &Rig, services: &[ServiceSpec]) -> Result<(Dataplane, Balancer)> {
    let lb = rig.lb();
    let mut dp = lb.ns.run_in(|| {
        let mut dp = Dataplane::load()?;
        lease_as_clustered(&mut dp)?;
        dp.attach(lb.ext_iface, AttachMode::Native)?;
        dp.attach(lb.int_iface, AttachMode::Native)?;
        Ok(dp)
    })?;
    let (balancer, ops) = Balancer::new().plan(services)?;
    dp.apply(&ops)?;
    Ok((dp, balancer))
}

/// Bulk TCP through the VIP with `mtu` on every link of a one-backend rig
/// (VIP:5201 -> b1:5201): `lb_xdp` (NAT), then nftables DNAT. Records
/// which offloads the client's veth (the peer of `ext0`) has before and
/// with `lb_xdp` attached to `ext0`.
fn jumbo_figures(mtu: u32, secs: u64, report: &mut Report) -> Result<()> {
    let rig = Rig::build(&RigOptions {
        backends: 1,
        mtu: Some(mtu),
        ..Default::default()
    })?;
    rig.add_vips()?;
    let b1 = rig.backends[0].v4;
    let _iperf = Background::spawn(
        &rig.backends[0].ns,
        "iperf3",
        &["-s", "-p", &IPERF_PORT.to_string()],
    )?;
    wait_for_listener(&rig.backends[0].ns, IPERF_PORT)?;
    let vip = IpAddr::from(VIP_V4);
    let (lb_key, nft_key) = match mtu {
        1500 => ("lb_1500", "nftables_dnat_1500"),
        9000 => ("lb_9000", "nftables_dnat_9000"),
        other => bail!("no figure for MTU {other}"),
    };
    let without = offloads(&rig.client, "eth0")?;
    {
        let service = ServiceSpec {
            vip,
            port: IPERF_PORT,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            backends: vec![BackendSpec {
                addr: SocketAddr::new(b1.into(), IPERF_PORT),
                weight: 1,
                state: BackendState::Enabled,
            }],
            sorry: None,
        };
        let (dp, next) = lb_on_rig(&rig, std::slice::from_ref(&service))?;
        let with = offloads(&rig.client, "eth0")?;
        report.detail(format!(
            "MTU {mtu}: the client's eth0 (veth peer of ext0): {without} without XDP; {with} with lb_xdp (xdp.frags) on ext0"
        ));
        let id = next
            .service_id(&service.key())
            .context("the iperf3 service's id")?;
        let (forwarded, before) = (
            dp.counter(lb_common::Counter::Forwarded)?,
            dp.service_traffic(id)?,
        );
        let gbps = iperf(&rig, vip, secs).context("lb: iperf3")?;
        let forwarded = dp.counter(lb_common::Counter::Forwarded)? - forwarded;
        let after = dp.service_traffic(id)?;
        let (packets, bytes) = (after.packets - before.packets, after.bytes - before.bytes);
        report.detail(format!(
            "MTU {mtu}: lb iperf3: {gbps}; lb_xdp forwarded {forwarded} frames, {:.0} per second, {} bytes a frame on average",
            forwarded as f64 / secs as f64,
            bytes / packets.max(1)
        ));
        report.rig_tcp_gbps_by_mtu.push((lb_key, Some(gbps.gbps)));
    }
    let rules = rig.dir().join("lbbench.nft");
    fs::write(
        &rules,
        format!(
            "table ip lbbench {{\n\
             \x20 chain prerouting {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   ip daddr {vip} tcp dport {IPERF_PORT} dnat to {b1}\n\
             \x20 }}\n\
             }}\n"
        ),
    )?;
    rig.lb()
        .ns
        .exec("nft", [std::ffi::OsStr::new("-f"), rules.as_os_str()])
        .context("loading the nftables DNAT rules in the LB namespace")?;
    let forwarded = ip_forwarded(&rig.lb().ns)?;
    let gbps = iperf(&rig, vip, secs).context("nftables_dnat: iperf3")?;
    let forwarded = ip_forwarded(&rig.lb().ns)? - forwarded;
    report.detail(format!(
        "MTU {mtu}: nftables_dnat iperf3: {gbps}; the LB's kernel forwarded {forwarded} IP datagrams (GRO-merged), {:.0} per second",
        forwarded as f64 / secs as f64
    ));
    report.rig_tcp_gbps_by_mtu.push((nft_key, Some(gbps.gbps)));
    Ok(())
}

/// TSO, GSO and GRO of `iface` in `ns`, as `ethtool -k` shows them.
fn offloads(ns: &Netns, iface: &str) -> Result<String> {
    let out = ns.exec("ethtool", ["-k", iface])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut shown = Vec::new();
    for (feature, short) in [
        ("tcp-segmentation-offload", "tso"),
        ("generic-segmentation-offload", "gso"),
        ("generic-receive-offload", "gro"),
        ("tx-checksumming", "tx-csum"),
    ] {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{feature}: ")))
            .with_context(|| format!("no {feature} in `ethtool -k {iface}`"))?;
        shown.push(format!("{short} {value}"));
    }
    Ok(shown.join(", "))
}

/// IP datagrams the kernel of `ns` has forwarded (Ip: ForwDatagrams).
fn ip_forwarded(ns: &Netns) -> Result<u64> {
    let out = ns.exec("cat", ["/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ip = text.lines().filter(|l| l.starts_with("Ip: "));
    let (Some(names), Some(values)) = (ip.next(), ip.next()) else {
        bail!("no Ip lines in /proc/net/snmp of {}", ns.name());
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ForwDatagrams")
        .context("no ForwDatagrams in /proc/net/snmp")?
        .1
        .parse()
        .context("ForwDatagrams")
}

/// Baseline program `which` attached (native) to the LB's two interfaces,
/// forwarding VIP:port <-> b1:port.
fn attach_baseline(rig: &Rig, port: u16, which: Baseline) -> Result<Ebpf> {
    let config = rig_baseline_config(rig, port)?;
    rig.lb().ns.run_in(|| {
        let mut ebpf = dataplane::load_baseline(&config, which)?;
        let program = dataplane::baseline_program(&mut ebpf, which)?;
        for iface in [rig.lb().ext_iface, rig.lb().int_iface] {
            program
                .attach(iface, XdpMode::Driver)
                .with_context(|| format!("attaching {} to {iface}", which.program()))?;
        }
        Ok(ebpf)
    })
}

/// curl through `addr` must reach b1 (checks the path before loading it).
fn expect_body(rig: &Rig, addr: IpAddr, phase: &str) -> Result<()> {
    let body = rig.curl(&url(addr))?;
    if body.trim() != rig.backends[0].name {
        bail!("{phase}: curl {} answered {body:?}", url(addr));
    }
    Ok(())
}

fn url(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("http://{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("http://[{a}]:{HTTP_PORT}/"),
    }
}

/// One second of wrk through `addr`, not counted: connections, neighbours,
/// caches and nginx warm up before a measured window.
fn warm_up(rig: &Rig, addr: IpAddr) -> Result<()> {
    rig.wrk(&url(addr), Duration::from_secs(1), WRK_CONNECTIONS)?;
    Ok(())
}

/// wrk against nginx through `addr` (after a [`warm_up`]); fails on any wrk
/// error (a broken path is not a figure).
fn http_load(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Load> {
    warm_up(rig, addr)?;
    measured_http_load(rig, addr, secs)
}

fn measured_http_load(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Load> {
    let cpu_before = CpuTimes::read()?;
    let report = rig.wrk(&url(addr), Duration::from_secs(secs), WRK_CONNECTIONS)?;
    let cpu = CpuTimes::read()?.since(&cpu_before);
    if report.errors() != 0 || report.requests == 0 {
        bail!("wrk {}: {report:?}", url(addr));
    }
    Ok(Load {
        requests_per_s: report.requests_per_s,
        cpu,
    })
}

/// The kernel's run-time statistics of `program` over a wrk window (after a
/// warm-up outside the window).
fn bpf_stats_under_load(
    rig: &Rig,
    addr: IpAddr,
    secs: u64,
    program: &Xdp,
) -> Result<(RunStats, Load)> {
    warm_up(rig, addr)?;
    // Counted only while this descriptor is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling the kernel's BPF run-time statistics")?;
    let before = program.info()?;
    let load = measured_http_load(rig, addr, secs)?;
    let after = program.info()?;
    let stats = RunStats {
        time: after.run_time().saturating_sub(before.run_time()),
        count: after.run_count() - before.run_count(),
    };
    if stats.count == 0 {
        bail!("the program did not run under load");
    }
    Ok((stats, load))
}

struct RunStats {
    time: Duration,
    count: u64,
}

impl RunStats {
    fn ns_per_run(&self) -> f64 {
        self.time.as_nanos() as f64 / self.count as f64
    }
}

impl std::fmt::Display for RunStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} runs, {:.1} ms, {:.1} ns/run",
            self.count,
            self.time.as_secs_f64() * 1e3,
            self.ns_per_run()
        )
    }
}

/// The baseline for the rig: VIP:port <-> b1:port with the rig's own MACs
/// and interface indexes.
fn rig_baseline_config(rig: &Rig, port: u16) -> Result<BaselineConfig> {
    let (ext_ifindex, int_ifindex) = rig.lb().ns.run_in(|| {
        Ok((
            dataplane::ifindex(rig.lb().ext_iface)?,
            dataplane::ifindex(rig.lb().int_iface)?,
        ))
    })?;
    let b1 = &rig.backends[0];
    Ok(BaselineConfig {
        vip: addr_bytes(VIP_V4.into()),
        vport: port.to_be_bytes(),
        backend: addr_bytes(b1.v4.into()),
        bport: port.to_be_bytes(),
        family: AF_INET,
        ext_ifindex,
        int_ifindex,
        lb_ext_mac: mac_of(&rig.lb().ns, rig.lb().ext_iface)?,
        lb_int_mac: mac_of(&rig.lb().ns, rig.lb().int_iface)?,
        client_mac: mac_of(&rig.client, "eth0")?,
        backend_mac: mac_of(&b1.ns, "eth0")?,
        ..BaselineConfig::UNSET
    })
}

/// The MAC of `iface` in `ns`, from `ip -j link`.
fn mac_of(ns: &Netns, iface: &str) -> Result<[u8; 6]> {
    let out = ns.ip(["-j", "link", "show", "dev", iface])?;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = links[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {iface} in {}", ns.name()))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("MAC {text:?} of {iface}");
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text:?}"))?;
    }
    Ok(mac)
}

/// What iperf3 reported.
struct Iperf {
    gbps: f64,
    sender_cpu: f64,
    receiver_cpu: f64,
    retransmits: u64,
}

impl std::fmt::Display for Iperf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} Gbit/s, {} retransmits, CPU: sender {:.0} %, receiver {:.0} % (iperf3's own figures)",
            self.gbps, self.retransmits, self.sender_cpu, self.receiver_cpu
        )
    }
}

/// iperf3 from the client namespace to `addr`, one stream, `secs` seconds.
fn iperf(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Iperf> {
    let out = rig
        .client
        .command("timeout")
        .args([
            &(secs + 30).to_string(),
            "iperf3",
            "-c",
            &addr.to_string(),
            "-p",
            &IPERF_PORT.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .stdin(Stdio::null())
        .output()
        .context("running iperf3 (`cargo xtask setup` installs it)")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3's JSON ({})", out.status))?;
    if let Some(err) = report["error"].as_str() {
        bail!("iperf3: {err}");
    }
    let end = &report["end"];
    let bits = end["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no sum_received.bits_per_second in iperf3's report")?;
    Ok(Iperf {
        gbps: bits / 1e9,
        sender_cpu: end["cpu_utilization_percent"]["host_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
        receiver_cpu: end["cpu_utilization_percent"]["remote_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

/// A process in a namespace, killed when this is dropped.
struct Background(Child);

impl Background {
    fn spawn(ns: &Netns, program: &str, args: &[&str]) -> Result<Self> {
        let child = ns.spawn(
            ns.command(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )?;
        Ok(Self(child))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_listener(ns: &Netns, port: u16) -> Result<()> {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !ns.exec("ss", ["-Hltn", &filter])?.stdout.is_empty() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} in {} after 10 s", ns.name())
}

/// The machine's CPU time, from /proc/stat, in clock ticks.
struct CpuTimes {
    busy: u64,
    softirq: u64,
    total: u64,
    cpus: u64,
}

impl CpuTimes {
    fn read() -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat")?;
        let mut cpus = 0;
        let mut times = None;
        for line in stat.lines() {
            if let Some(rest) = line.strip_prefix("cpu ") {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .map(|n| n.parse().unwrap_or(0))
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                times = Some((total - idle, v.get(6).copied().unwrap_or(0), total));
            } else if line.starts_with("cpu") {
                cpus += 1;
            }
        }
        let (busy, softirq, total) = times.context("no cpu line in /proc/stat")?;
        Ok(Self {
            busy,
            softirq,
            total,
            cpus,
        })
    }

    fn since(&self, before: &CpuTimes) -> Cpu {
        let total = (self.total - before.total).max(1) as f64;
        Cpu {
            busy: (self.busy - before.busy) as f64 / total * 100.0,
            softirq: (self.softirq - before.softirq) as f64 / total * 100.0,
            cpus: self.cpus,
        }
    }
}

/// Share of the machine's CPU time over a window.
struct Cpu {
    busy: f64,
    softirq: f64,
    cpus: u64,
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU busy {:.0} % of {} CPUs (softirq {:.0} %)",
            self.busy, self.cpus, self.softirq
        )
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} req/s, {}", self.requests_per_s, self.cpu)
    }
}

/// Gives `dp` an active's lease an hour ahead, as a clustered node's event
/// loop keeps it: the figures are of the program on the way it runs in
/// production, where every packet checks the lease (self-fencing).
fn lease_as_clustered(dp: &mut Dataplane) -> Result<()> {
    dp.set_lease(lb_ctl::dataplane::monotonic_ns() + 3_600_000_000_000)
        .context("setting a lease an hour ahead")
}
