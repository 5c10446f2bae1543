//! The flow replication benchmark: `cargo xtask bench replication` (which
//! runs this with `cargo bench -p lb-ctl --bench replication`). Prints a
//! table and writes `target/bench/replication.json`; docs/benchmarks.md
//! says what each figure means and how it is measured. Needs root.
//!
//! Two real daemons in the pair rig (`lb_tests::flow_pair::Pair`: lb1
//! active, lb2 standby, a NAT service on the VIP's port 80), so that
//! everything measured is the daemons' own replication: the active's
//! program reporting into its ring, its replication task, the mutual-TLS
//! stream on `[cluster] replication_port`, the standby's task and loop
//! writing its tables. New flows are made by BPF_PROG_TEST_RUN of the very
//! program lb1 attached (opened through its pinned link), run in lb1's
//! namespace as received on its `ext0`, each on a SYN of a 5-tuple never
//! seen before (repeat = 1: a repeat would rerun the program on the
//! rewritten buffer). The standby's flow table is read through its pin.
//!
//! - `new_flow_ns`: the program's cost on a new flow with the replication
//!   switch (`LB_REPLICATE`) off and on, in interleaved blocks on lb1's
//!   program (lb1's task reading the ring and sending meanwhile), median of
//!   the kernel's `duration` of each run;
//! - `lag_ms`: new flows paced at 1,000 and 100,000 a second; for a sample
//!   of them, the time from the test run until the flow is in lb2's flow
//!   table (p50, p99; the median of three runs of each);
//! - `bytes_per_flow`: IP bytes of the replication connection, both ways
//!   (nftables counters in lb1's namespace), over the 100,000/s runs, per
//!   flow lb1 sent;
//! - `max_new_flows_per_s`: the rate stepped up until the lag is no longer
//!   bounded (records lost in the ring, a resync, a sampled flow that never
//!   arrived, a lag that grows over the run) or the driver cannot make the
//!   rate: the highest rate made (flows over the run's time) at which the
//!   lag stayed bounded;
//! - `bulk_copy_1m_s`: lb2 killed, lb1's flow table filled with 1,000,000
//!   new flows, lb2 started again: from its start until it reports caught
//!   up (the bulk copy applied);
//! - `broken_connections_on_failover`: the download scenario of
//!   `lb-ctl/tests/flow_failover.rs` (`flow_pair::downloads_and_idle_connections`,
//!   NAT), in a fresh rig: connections that broke.
//!
//! A diagnostic (not in the JSON) measures the new flow's cost again in a
//! fixture namespace on a program of its own, with nobody waiting on the
//! ring and with a reader awaiting it, to tell the report's own cost from
//! the reader's wakeups.
//!
//! Targets are reported, never enforced: the run fails only when a figure
//! could not be measured (it is then `null` in the JSON).
use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::{Array, HashMap, Map, MapData},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{Flow, FlowKey, REPLICATE_ON, maps};
use lb_tests::{
    daemon::DaemonProcess,
    fixture,
    flow_pair::{self, Pair},
    packets::{Frame, SYN},
    rig::{Rig, VIP_V4},
    testrun::{Durations, measure},
};
use serde_json::{Value, json};

const LB_CTL: &str = env!("CARGO_BIN_EXE_lb-ctl");
/// The daemons' default replication port (the rig's plan keeps it).
const REPLICATION_PORT: u16 = lb_ctl::cluster::config::DEFAULT_REPLICATION_PORT;
/// The two rates of `lag_ms` and how long each is driven.
const LAG_RATES: [(u64, Duration); 2] = [
    (1_000, Duration::from_secs(5)),
    (100_000, Duration::from_secs(5)),
];
/// Runs at each of those rates: the figures are the median of the runs'
/// p50 and p99 (one pause of the machine decides a run's p99).
const LAG_REPEATS: usize = 3;
/// The rates `max_new_flows_per_s` steps through, each for `STEP_TIME`.
const STEPS: [u64; 7] = [10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000];
const STEP_TIME: Duration = Duration::from_secs(2);
/// Samples of the lag per second of a run (every Nth flow).
const SAMPLES_PER_S: u64 = 2_000;
/// A sampled flow not in the standby's table this long after its test run
/// counts as lost.
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);
/// `new_flow_ns`: blocks of runs per switch position, alternated.
const NEW_FLOW_BLOCKS: u64 = 10;
const NEW_FLOW_BLOCK_RUNS: u64 = 4_000;
/// The bulk copy's flows, and how long the standby may take.
const BULK_FLOWS: u64 = 1_000_000;
const BULK_LIMIT: Duration = Duration::from_secs(180);
/// Targets (reported, not enforced).
const TARGET_P99_MS: f64 = 50.0;
const TARGET_BULK_S: f64 = 10.0;
const TARGET_NEW_FLOW_RATIO: f64 = 1.10;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .skip_while(|a| *a != "--out")
        .nth(1)
        .map(PathBuf::from)
        // `cargo bench` runs this in lb-ctl/: the workspace's target/.
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bench/replication.json"
            ))
        });
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("replication bench: needs root (network namespaces, daemons, BPF_PROG_TEST_RUN)");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let mut report = Report::default();
    report.detail(format!("other load before the bench: {}", load_average()));
    if let Err(err) = stream_figures(&mut report) {
        report.failure(format!("the stream's figures: {err:#}"));
    }
    println!("[bench] diagnostic: the new-flow cost in a fixture, with and without a ring reader");
    match lb_tests::fixnet::FixtureNet::build().and_then(|net| {
        net.ns
            .run_in(|| where_the_new_flow_cost_goes(net.ext, net.int))
    }) {
        Ok(lines) => {
            for line in lines {
                report.detail(line);
            }
        }
        Err(err) => report.detail(format!("diagnostic not measured: {err:#}")),
    }
    println!("[bench] the download scenario across failover and kill -9 (NAT)");
    match flow_pair::downloads_and_idle_connections(Path::new(LB_CTL), "nat") {
        Ok(broken) => {
            report.detail(format!(
                "failover: {} of {} connections broke",
                broken.len(),
                flow_pair::DOWNLOADS + flow_pair::IDLE
            ));
            for line in &broken {
                report.detail(format!("broken: {line}"));
            }
            report.broken = Some(broken.len() as u64);
        }
        Err(err) => report.failure(format!("the download scenario: {err:#}")),
    }
    report.detail(format!(
        "whole bench {:.0} s; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    print!("{}", report.table());
    if let Err(err) = report.write_json(&out) {
        report.failure(format!("writing {}: {err:#}", out.display()));
    } else {
        println!("[bench] wrote {}", out.display());
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

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

// ---------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Report {
    /// rate -> (p50, p99) ms.
    lag: BTreeMap<u64, (f64, f64)>,
    max_rate: Option<u64>,
    bytes_per_flow: Option<f64>,
    bulk_s: Option<f64>,
    new_flow: Option<(f64, f64)>,
    broken: Option<u64>,
    details: Vec<String>,
    failures: Vec<String>,
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

impl Report {
    fn failure(&mut self, what: String) {
        eprintln!("[bench] FAILED: {what}");
        self.failures.push(what);
    }

    fn detail(&mut self, line: String) {
        println!("[bench]   {line}");
        self.details.push(line);
    }

    fn json(&self) -> Value {
        let lag = |rate: u64| match self.lag.get(&rate) {
            Some(&(p50, p99)) => json!({"p50": round(p50, 2), "p99": round(p99, 2)}),
            None => json!({"p50": null, "p99": null}),
        };
        json!({
            "lag_ms": {"1000": lag(1_000), "100000": lag(100_000)},
            "max_new_flows_per_s": self.max_rate,
            "bytes_per_flow": self.bytes_per_flow.map(|b| round(b, 1)),
            "bulk_copy_1m_s": self.bulk_s.map(|s| round(s, 2)),
            "new_flow_ns": {
                "without": self.new_flow.map(|(w, _)| round(w, 1)),
                "with": self.new_flow.map(|(_, w)| round(w, 1)),
            },
            "broken_connections_on_failover": self.broken,
        })
    }

    fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok(())
    }

    fn table(&self) -> String {
        let show = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "not measured".into(),
        };
        let mut rows: Vec<[String; 3]> = Vec::new();
        for (rate, _) in LAG_RATES {
            let lag = self.lag.get(&rate);
            rows.push([
                format!("lag_ms.{rate}.p50"),
                show(lag.map(|l| l.0), 2),
                "ms".into(),
            ]);
            rows.push([
                format!("lag_ms.{rate}.p99"),
                show(lag.map(|l| l.1), 2),
                "ms".into(),
            ]);
        }
        rows.push([
            "max_new_flows_per_s".into(),
            show(self.max_rate.map(|r| r as f64), 0),
            "flows/s".into(),
        ]);
        rows.push([
            "bytes_per_flow".into(),
            show(self.bytes_per_flow, 1),
            "bytes".into(),
        ]);
        rows.push(["bulk_copy_1m_s".into(), show(self.bulk_s, 2), "s".into()]);
        rows.push([
            "new_flow_ns.without".into(),
            show(self.new_flow.map(|n| n.0), 1),
            "ns".into(),
        ]);
        rows.push([
            "new_flow_ns.with".into(),
            show(self.new_flow.map(|n| n.1), 1),
            "ns".into(),
        ]);
        rows.push([
            "broken_connections_on_failover".into(),
            show(self.broken.map(|b| b as f64), 0),
            "connections".into(),
        ]);
        lb_tests::table::figures(&rows, &self.targets(), &self.details)
    }

    fn targets(&self) -> Vec<String> {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        vec![
            match self.broken {
                Some(b) => format!("0 broken connections on failover: {} ({b})", met(b == 0)),
                None => "0 broken connections on failover: not measured".into(),
            },
            match self.lag.get(&100_000) {
                Some(&(_, p99)) => format!(
                    "p99 lag <= {TARGET_P99_MS} ms at 100,000 new flows/s: {} ({p99:.2} ms, {:.2} x the target)",
                    met(p99 <= TARGET_P99_MS),
                    p99 / TARGET_P99_MS
                ),
                None => "p99 lag at 100,000 new flows/s: not measured".into(),
            },
            match self.bulk_s {
                Some(s) => format!(
                    "bulk copy of 1,000,000 flows <= {TARGET_BULK_S} s: {} ({s:.2} s, {:.2} x the target)",
                    met(s <= TARGET_BULK_S),
                    s / TARGET_BULK_S
                ),
                None => "bulk copy of 1,000,000 flows: not measured".into(),
            },
            match self.new_flow {
                Some((without, with)) => format!(
                    "new flow with replication <= 1.10 x without: {} (ratio {:.3})",
                    met(with / without <= TARGET_NEW_FLOW_RATIO),
                    with / without
                ),
                None => "new flow with / without replication: not measured".into(),
            },
        ]
    }
}

// ---------------------------------------------------------------------------
// The stream's figures, on one pair

fn stream_figures(report: &mut Report) -> Result<()> {
    println!("[bench] the pair rig: lb1 active, lb2 standby, a NAT service on {VIP_V4}:80");
    let mut pair = Pair::start(
        Path::new(LB_CTL),
        |_| Ok(()),
        |rig| flow_pair::service(rig, "web", "tcp", 80, "nat"),
    )?;
    let Pair { rig, lb1, lb2 } = &mut pair;
    let rig: &Rig = rig;
    // Counters of the replication connection's bytes, both ways, in lb1's
    // namespace (lb1 connects to lb2's port).
    rig.nodes[0].ns.nft(&format!(
        "table inet lbbench {{\n\
         \x20 counter repl_out {{}}\n\
         \x20 counter repl_in {{}}\n\
         \x20 chain out {{ type filter hook output priority 0; policy accept; tcp dport {REPLICATION_PORT} counter name repl_out; }}\n\
         \x20 chain in {{ type filter hook input priority 0; policy accept; tcp sport {REPLICATION_PORT} counter name repl_in; }}\n\
         }}\n"
    ))?;
    rig.nodes[0]
        .ns
        .run_in(|| on_the_active(rig, lb1, lb2, report))
}

/// lb1's program and where its test runs are received.
struct Active {
    program: Xdp,
    ingress: u32,
    /// The raw XDP action of a new flow's packet.
    action: u32,
}

/// Runs on a thread in lb1's namespace (test runs are received on its
/// `ext0` and its FIB answers).
fn on_the_active(
    rig: &Rig,
    lb1: &mut DaemonProcess,
    lb2: &mut DaemonProcess,
    report: &mut Report,
) -> Result<()> {
    // In lb1's pin directory, which goes with lb1 (`DaemonProcess`'s drop)
    // should the bench stop between the pin and its removal.
    let scratch = lb1.files().pin_dir.join("bench_program");
    let program = lb_tests::testrun::attached_program(&lb1.files().pin_dir, "ext0", &scratch)?;
    let ingress = lb_ctl::dataplane::ifindex("ext0")?;
    let mut flows = FlowSource::default();
    let probe = flows.next_frame().build();
    let action = test_run(&program, ingress, &probe)?;
    if ![XDP_PASS, XDP_TX, XDP_REDIRECT].contains(&action) {
        bail!(
            "a new flow's packet got {:?} from lb1's program",
            fixture::Action::from_raw(action)
        );
    }
    let active = Active {
        program,
        ingress,
        action,
    };
    report.detail(format!(
        "new flows: TCP SYNs to {VIP_V4}:80 from distinct sources in 198.19.0.0/16, lb1's program answers {:?}",
        fixture::Action::from_raw(action)
    ));
    let standby_flows = lb2.files().pin_dir.join(maps::FLOWS);

    println!("[bench] new_flow_ns: the replication switch off and on, interleaved");
    match new_flow_cost(&active, lb1, &mut flows) {
        Ok((without, with, line)) => {
            report.new_flow = Some((without, with));
            report.detail(line);
        }
        Err(err) => report.failure(format!("new_flow_ns: {err:#}")),
    }

    for (rate, time) in LAG_RATES {
        println!("[bench] lag at {rate} new flows/s, {LAG_REPEATS} runs of {time:?}");
        let bytes_before = if rate == 100_000 {
            Some((replication_bytes(rig)?, status(lb1)?))
        } else {
            None
        };
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for _ in 0..LAG_REPEATS {
            let run = match lag_run(&active, lb1, &standby_flows, rate, time, &mut flows) {
                Ok(run) => run,
                Err(err) => {
                    report.failure(format!("lag at {rate}/s: {err:#}"));
                    break;
                }
            };
            report.detail(run.describe());
            if run.short() {
                report.detail(format!(
                    "lag at {rate}/s: the driver made only {:.0} new flows/s",
                    run.achieved()
                ));
            }
            if let Some(why) = run.unbounded() {
                report.detail(format!("lag at {rate}/s is not bounded: {why}"));
            }
            p50s.push(run.p(0.5));
            p99s.push(run.p(0.99));
            thread::sleep(Duration::from_millis(500));
        }
        if p99s.len() == LAG_REPEATS {
            report.detail(format!(
                "lag at {rate}/s, the figure is the median of the {LAG_REPEATS} runs' p50 and p99: p99s {}",
                p99s.iter()
                    .map(|p| format!("{p:.2} ms"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            report
                .lag
                .insert(rate, (quantile(&p50s, 0.5), quantile(&p99s, 0.5)));
        }
        if let Some((bytes, before)) = bytes_before {
            let after = status(lb1)?;
            let bytes = replication_bytes(rig)? - bytes;
            let sent = after.flows - before.flows;
            let refreshed = after.refreshed - before.refreshed;
            if sent == 0 {
                report.failure("bytes_per_flow: lb1 sent no flow".into());
            } else {
                report.bytes_per_flow = Some(bytes as f64 / sent as f64);
                report.detail(format!(
                    "bytes_per_flow: {bytes} IP bytes of the replication connection (both ways, TLS, TCP and IP headers) for {sent} flows sent ({refreshed} of them by the periodic refresh), {} messages, {} resent",
                    after.messages - before.messages,
                    after.resends - before.resends
                ));
            }
        }
    }

    println!("[bench] max_new_flows_per_s: stepping the rate up, {STEP_TIME:?} each");
    let mut max = None;
    for rate in STEPS {
        let run = match lag_run(&active, lb1, &standby_flows, rate, STEP_TIME, &mut flows) {
            Ok(run) => run,
            Err(err) => {
                report.failure(format!("step {rate}/s: {err:#}"));
                break;
            }
        };
        report.detail(format!("step: {}", run.describe()));
        if let Some(why) = run.unbounded() {
            report.detail(format!("step {rate}/s is not bounded: {why}"));
            break;
        }
        // The lag held at the rate the driver made.
        let achieved = run.achieved() as u64;
        max = Some(max.map_or(achieved, |m: u64| m.max(achieved)));
        if run.short() {
            // No higher rate can be driven.
            report.detail(format!(
                "step {rate}/s: the driver made only {achieved} new flows/s (BPF_PROG_TEST_RUN from one thread, beside both daemons on this machine's two CPUs); the lag stayed bounded, so the replication's limit is above what this machine can drive"
            ));
            break;
        }
        if Some(&rate) == STEPS.last() {
            report.detail(format!(
                "max_new_flows_per_s: every step held, the real limit is above {rate}/s"
            ));
        }
        thread::sleep(Duration::from_millis(500));
    }
    match max {
        Some(rate) => report.max_rate = Some(rate),
        None => report.failure("max_new_flows_per_s: not even the first step held".into()),
    }

    println!("[bench] bulk copy of {BULK_FLOWS} flows to a standby that joins");
    match bulk_copy(rig, &active, lb1, lb2, &mut flows) {
        Ok((secs, line)) => {
            report.bulk_s = Some(secs);
            report.detail(line);
        }
        Err(err) => report.failure(format!("bulk_copy_1m_s: {err:#}")),
    }
    Ok(())
}

/// One BPF_PROG_TEST_RUN of `frame` received on `ingress`: the action.
fn test_run(program: &Xdp, ingress: u32, frame: &[u8]) -> Result<u32> {
    let ctx = fixture::xdp_md(frame.len(), ingress);
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN of lb1's program")?;
    Ok(result.return_value)
}

/// New flows, each a 5-tuple never used before: TCP SYNs to the VIP's
/// port 80 from 198.19.H.L, ports 10,000 to 59,999.
#[derive(Default)]
struct FlowSource {
    next: u64,
}

impl FlowSource {
    const PORTS: u64 = 50_000;

    fn next_frame(&mut self) -> Frame {
        let n = self.next;
        self.next += 1;
        let host = n / Self::PORTS;
        assert!(host < 1 << 16, "out of new 5-tuples");
        let src = Ipv4Addr::new(198, 19, (host >> 8) as u8, host as u8);
        let port = 10_000 + (n % Self::PORTS) as u16;
        Frame::new(
            SocketAddr::new(IpAddr::V4(src), port),
            SocketAddr::new(VIP_V4.into(), 80),
            SYN,
        )
    }
}

/// The active's side of the stream, from its status.
struct Sending {
    flows: u64,
    messages: u64,
    resends: u64,
    resyncs: u64,
    refreshed: u64,
    records_lost: u64,
}

fn status(node: &DaemonProcess) -> Result<Sending> {
    let r = node
        .status_json()
        .context("the daemon's status")?
        .get("cluster")
        .and_then(|c| c.get("replication"))
        .cloned()
        .context("no cluster.replication in the status")?;
    let n = |key: &str| r[key].as_u64().with_context(|| format!("no {key} in {r}"));
    Ok(Sending {
        flows: n("flows")?,
        messages: n("messages")?,
        resends: n("resends")?,
        resyncs: n("resyncs")?,
        refreshed: n("refreshed")?,
        records_lost: n("records_lost")?,
    })
}

/// The nftables counters of the replication connection in lb1's namespace:
/// bytes out and in.
fn replication_bytes(rig: &Rig) -> Result<u64> {
    let out = rig.nodes[0].ns.exec(
        "nft",
        ["-j", "list", "counters", "table", "inet", "lbbench"],
    )?;
    let listed: Value = serde_json::from_slice(&out.stdout).context("nft's JSON")?;
    let counters = listed["nftables"]
        .as_array()
        .context("nft's JSON has no nftables array")?;
    let bytes: Vec<u64> = counters
        .iter()
        .filter_map(|item| item["counter"]["bytes"].as_u64())
        .collect();
    if bytes.len() != 2 {
        bail!("expected the two counters of table lbbench: {listed}");
    }
    Ok(bytes.iter().sum())
}

// ---------------------------------------------------------------------------
// new_flow_ns

/// Medians of the new-flow runs with the switch off and on, and a line of
/// details.
fn new_flow_cost(
    active: &Active,
    lb1: &DaemonProcess,
    flows: &mut FlowSource,
) -> Result<(f64, f64, String)> {
    let path = lb1.files().pin_dir.join(maps::REPLICATE);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut switch: Array<MapData, u32> = Array::try_from(Map::Array(data))?;
    let lost_before = status(lb1)?.records_lost;
    let result = interleaved(|on| {
        switch.set(0, if on { REPLICATE_ON } else { 0 }, 0)?;
        measure(
            &active.program,
            active.ingress,
            NEW_FLOW_BLOCK_RUNS,
            active.action,
            Duration::from_secs(60),
            |_, buf| *buf = flows.next_frame().build(),
        )
    });
    // Back as lb1's daemon set it, whatever happened.
    switch.set(0, REPLICATE_ON, 0)?;
    let (without, with) = result?;
    let lost = status(lb1)?.records_lost - lost_before;
    if lost > 0 {
        bail!(
            "{lost} flow records lost while measuring: the ring was full, the figure is not a new flow's"
        );
    }
    let line = compare("new_flow_ns, lb1's program", &without, &with);
    Ok((without.median_ns() as f64, with.median_ns() as f64, line))
}

/// [`NEW_FLOW_BLOCKS`] blocks of `block(false)` (the switch off) and
/// `block(true)` (on) each, the order alternated block by block, so that
/// both see the same machine: (off, on).
fn interleaved(mut block: impl FnMut(bool) -> Result<Durations>) -> Result<(Durations, Durations)> {
    let (mut off, mut on) = (Durations::default(), Durations::default());
    for i in 0..NEW_FLOW_BLOCKS {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for switch in order {
            let durations = block(switch)?;
            if switch { &mut on } else { &mut off }.merge(&durations);
        }
    }
    Ok((off, on))
}

/// The new-flow figures with the switch off and on, side by side.
fn compare(what: &str, off: &Durations, on: &Durations) -> String {
    format!(
        "{what}: new flow without {} ns, with {} ns (medians of {} runs each, {NEW_FLOW_BLOCKS} interleaved blocks), ratio {:.3}; means {:.1} / {:.1} ns, ratio {:.3}",
        off.median_ns(),
        on.median_ns(),
        on.runs(),
        on.median_ns() as f64 / off.median_ns() as f64,
        off.mean_ns(),
        on.mean_ns(),
        on.mean_ns() / off.mean_ns()
    )
}

// ---------------------------------------------------------------------------
// Lag

/// One paced run of new flows.
struct LagRun {
    rate: u64,
    flows: u64,
    driven_for: Duration,
    /// The sampled flows' lags, ms, in the order they were made.
    lags: Vec<f64>,
    missing: u64,
    records_lost: u64,
    resyncs: u64,
    /// Flows the active's periodic refresh sent meanwhile (in the same
    /// ordered stream as the new flows).
    refreshed: u64,
    /// TCP segments lb1 sent again meanwhile (its namespace's
    /// `RetransSegs`: the replication connection is its one busy one).
    retransmits: u64,
    wrong_actions: u64,
}

impl LagRun {
    /// The `q` quantile (nearest rank) of the lags, ms.
    fn p(&self, q: f64) -> f64 {
        quantile(&self.lags, q)
    }

    fn achieved(&self) -> f64 {
        self.flows as f64 / self.driven_for.as_secs_f64()
    }

    fn describe(&self) -> String {
        let quarter = self.lags.len() / 4;
        format!(
            "{}/s: {} flows in {:.2} s ({:.0}/s), {} sampled: lag p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (first quarter p50 {:.2}, last quarter p50 {:.2}); {} missing, {} records lost, {} resyncs; {} flows refreshed and {} TCP segments retransmitted by lb1 meanwhile",
            self.rate,
            self.flows,
            self.driven_for.as_secs_f64(),
            self.achieved(),
            self.lags.len(),
            self.p(0.5),
            self.p(0.99),
            self.p(1.0),
            quantile(&self.lags[..quarter], 0.5),
            quantile(&self.lags[self.lags.len() - quarter..], 0.5),
            self.missing,
            self.records_lost,
            self.resyncs,
            self.refreshed,
            self.retransmits
        )
    }

    /// The driver (one thread of BPF_PROG_TEST_RUN calls, sharing the
    /// machine with both daemons) could not make the rate.
    fn short(&self) -> bool {
        self.achieved() < 0.95 * self.rate as f64
    }

    /// Why the lag is not bounded at the rate achieved, if it is not.
    fn unbounded(&self) -> Option<String> {
        if self.wrong_actions > 0 {
            return Some(format!("{} runs got another action", self.wrong_actions));
        }
        if self.records_lost > 0 {
            return Some(format!(
                "{} flow records lost in the ring",
                self.records_lost
            ));
        }
        if self.resyncs > 0 {
            return Some(format!(
                "{} resyncs (the standby fell behind the window)",
                self.resyncs
            ));
        }
        if self.missing > 0 {
            return Some(format!(
                "{} sampled flows not in the standby's table within {SAMPLE_LIMIT:?}",
                self.missing
            ));
        }
        let quarter = self.lags.len() / 4;
        let first = quantile(&self.lags[..quarter], 0.5);
        let last = quantile(&self.lags[self.lags.len() - quarter..], 0.5);
        if last > 2.0 * first + 5.0 {
            return Some(format!(
                "the lag grows over the run (median {first:.2} ms in the first quarter, {last:.2} ms in the last)"
            ));
        }
        None
    }
}

/// TCP segments retransmitted in the calling thread's namespace (lb1's:
/// `/proc/thread-self`, as `/proc/self` is the main thread's).
fn tcp_retransmits() -> Result<u64> {
    let snmp = fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp: "));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        bail!("no Tcp lines in /proc/thread-self/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .context("no RetransSegs in /proc/thread-self/net/snmp")?
        .1
        .parse()
        .context("RetransSegs")
}

fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// New flows at `rate` for `time` through lb1's program; every Nth one's
/// arrival in the standby's flow table (`standby_flows`, its pin) is
/// watched by a thread that looks it up until it is there.
fn lag_run(
    active: &Active,
    lb1: &DaemonProcess,
    standby_flows: &Path,
    rate: u64,
    time: Duration,
    flows: &mut FlowSource,
) -> Result<LagRun> {
    let count = rate * time.as_secs();
    let every = (rate / SAMPLES_PER_S).max(1);
    // Built before the clock starts: the driver only runs them.
    let frames: Vec<(Vec<u8>, Option<FlowKey>)> = (0..count)
        .map(|i| {
            let frame = flows.next_frame();
            let key = (i % every == 0).then(|| frame.flow_key());
            (frame.build(), key)
        })
        .collect();
    let data = MapData::from_pin(standby_flows)
        .with_context(|| format!("opening {}", standby_flows.display()))?;
    let table: HashMap<MapData, FlowKey, Flow> = HashMap::try_from(Map::LruHashMap(data))?;
    let before = status(lb1)?;
    let retransmits = tcp_retransmits()?;
    let (samples, watched) = mpsc::channel::<(FlowKey, Instant)>();
    let (driven_for, wrong_actions, (lags, missing)) = thread::scope(|scope| {
        let watcher = scope.spawn(move || {
            // Real-time priority for the watcher alone, so that what it
            // sees late is the standby's lag, not its own wait for a CPU
            // on this shared machine (it sleeps between lookups: a few % of
            // a CPU). Best effort: without it the lags are upper bounds.
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler on the calling thread (0) with a
            // valid parameter.
            let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            let mut lags = Vec::new();
            let mut missing = 0u64;
            for (key, made) in watched {
                loop {
                    if table.get(&key, 0).is_ok() {
                        lags.push(made.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                    if made.elapsed() > SAMPLE_LIMIT {
                        missing += 1;
                        break;
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            }
            (lags, missing)
        });
        let mut wrong = 0u64;
        let start = Instant::now();
        let period = Duration::from_secs(1).as_nanos() as f64 / rate as f64;
        for (i, (frame, key)) in frames.iter().enumerate() {
            let due = start + Duration::from_nanos((i as f64 * period) as u64);
            // Sleeps overshoot by tens of µs: the flows then due go in a
            // burst, and the rate holds over any millisecond. No spinning:
            // the two CPUs are the daemons' too.
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let made = Instant::now();
            match test_run(&active.program, active.ingress, frame) {
                Ok(action) if action == active.action => {}
                _ => wrong += 1,
            }
            if let Some(key) = key {
                let _ = samples.send((*key, made));
            }
        }
        let driven_for = start.elapsed();
        drop(samples);
        let watched = watcher.join().expect("the lag watcher panicked");
        (driven_for, wrong, watched)
    });
    let after = status(lb1)?;
    Ok(LagRun {
        rate,
        flows: count,
        driven_for,
        lags,
        missing,
        records_lost: after.records_lost - before.records_lost,
        resyncs: after.resyncs - before.resyncs,
        refreshed: after.refreshed - before.refreshed,
        retransmits: tcp_retransmits()? - retransmits,
        wrong_actions,
    })
}

// ---------------------------------------------------------------------------
// Bulk copy

/// lb2 killed, lb1's flow table filled with [`BULK_FLOWS`] new flows, lb2
/// started again: seconds from its start until it is caught up (the
/// active may connect before the standby's API answers), and a line of
/// details.
fn bulk_copy(
    rig: &Rig,
    active: &Active,
    lb1: &DaemonProcess,
    lb2: &mut DaemonProcess,
    flows: &mut FlowSource,
) -> Result<(f64, String)> {
    lb2.kill9();
    let filling = Instant::now();
    let mut wrong = 0u64;
    for _ in 0..BULK_FLOWS {
        let frame = flows.next_frame().build();
        if test_run(&active.program, active.ingress, &frame)? != active.action {
            wrong += 1;
        }
    }
    let filled = filling.elapsed();
    if wrong > 0 {
        bail!("{wrong} of the {BULK_FLOWS} new flows got another action");
    }
    let path = lb1.files().pin_dir.join(maps::FLOWS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let table: HashMap<MapData, FlowKey, Flow> = HashMap::try_from(Map::LruHashMap(data))?;
    let held = table.keys().filter(Result::is_ok).count();
    let before = status(lb1)?;

    let started = Instant::now();
    lb2.restart(&rig.nodes[1].ns)?;
    let answering = started.elapsed();
    let deadline = Instant::now() + BULK_LIMIT;
    while !lb2.replication_caught_up() {
        if Instant::now() > deadline {
            bail!(
                "lb2 not caught up {BULK_LIMIT:?} after it answered: {}",
                flow_pair::replication(lb2)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let copy = started.elapsed();
    let received = flow_pair::replication(lb2);
    let sending = status(lb1)?;
    let line = format!(
        "bulk copy: lb1's flow table filled with {BULK_FLOWS} new flows in {:.1} s, holds {held} (an LRU of 1,000,000); lb2 restarted, its API answered after {:.2} s, caught up {:.2} s after its start with {} flows written; lb1 sent {} flows in {} messages ({} resent, {} resyncs); lb2's receiving side: {received}",
        filled.as_secs_f64(),
        answering.as_secs_f64(),
        copy.as_secs_f64(),
        received["flows"],
        sending.flows - before.flows,
        sending.messages - before.messages,
        sending.resends - before.resends,
        sending.resyncs - before.resyncs,
    );
    Ok((copy.as_secs_f64(), line))
}

// ---------------------------------------------------------------------------
// Diagnostic: where the new flow's extra cost goes

/// In a fixture namespace, a program of its own (`Dataplane::load`, one
/// NAT service), new flows with the switch off and on, in interleaved
/// blocks, twice: first with nobody waiting on the ring (this thread
/// drains it between blocks), then with a reader awaiting it through
/// tokio's `AsyncFd` on another thread, as the daemon's replication task
/// does. Not in the JSON: it says whether the cost is the report itself
/// (the ring's reserve and submit) or the wakeup of a waiting reader (the
/// ring wakes its reader whenever the reader has caught up, so a reader
/// that keeps up is woken for nearly every record).
fn where_the_new_flow_cost_goes(ext: u32, int: u32) -> Result<Vec<String>> {
    use lb_ctl::{
        balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec},
        dataplane::Dataplane,
    };
    let spec = ServiceSpec {
        vip: VIP_V4.into(),
        port: 80,
        protocol: Protocol::Tcp,
        mode: Mode::Nat,
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: SocketAddr::new(lb_tests::rig::backend_v4(i).into(), 8080),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    };
    let mut dp = Dataplane::load()?;
    dp.add_tx_port(ext)?;
    dp.add_tx_port(int)?;
    let (_, ops) = Balancer::new().plan(std::slice::from_ref(&spec))?;
    dp.apply(&ops)?;
    let mut records = dp.flow_records()?;
    let mut flows = FlowSource::default();
    let frame = |flows: &mut FlowSource| {
        flows
            .next_frame()
            .macs(lb_tests::packets::CLIENT_MAC, lb_tests::fixnet::LB_EXT_MAC)
            .build()
    };
    let expect = test_run(
        lb_ctl::dataplane::program(dp.ebpf_mut())?,
        ext,
        &frame(&mut flows),
    )?;
    let mut lines = Vec::new();
    let mut blocks = |dp: &mut Dataplane, after_on: &mut dyn FnMut()| {
        let result = interleaved(|on| {
            dp.set_replicate(on)?;
            let durations = measure(
                lb_ctl::dataplane::program(dp.ebpf_mut())?,
                ext,
                NEW_FLOW_BLOCK_RUNS,
                expect,
                Duration::from_secs(60),
                |_, buf| *buf = frame(&mut flows),
            )?;
            if on {
                after_on();
            }
            Ok(durations)
        });
        dp.set_replicate(false)?;
        result
    };
    // Nobody waits on the ring: drained between blocks by this thread.
    let mut drained = 0usize;
    let (off, on) = blocks(&mut dp, &mut || {
        drained += records.drain(usize::MAX).0.len();
    })?;
    lines.push(compare(
        "diagnostic, fixture, no reader waiting (the ring drained between blocks)",
        &off,
        &on,
    ));
    if drained as u64 != on.runs() {
        bail!("drained {drained} records for {} reported runs", on.runs());
    }
    // A reader awaiting the ring on another thread, as the daemon's.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = thread::spawn(move || -> Result<usize> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let mut ring = records.into_async()?;
            let mut read = 0usize;
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(read),
                    batch = ring.next_batch(1000) => read += batch?.0.len(),
                }
            }
        })
    });
    let (off, on) = blocks(&mut dp, &mut || {})?;
    thread::sleep(Duration::from_millis(100));
    let _ = stop.send(());
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the ring reader panicked"))??;
    lines.push(compare(
        "diagnostic, fixture, a reader awaiting the ring (AsyncFd on another thread, as the daemon's)",
        &off,
        &on,
    ));
    if read as u64 != on.runs() {
        bail!(
            "the reader read {read} records for {} reported runs",
            on.runs()
        );
    }
    Ok(lines)
}
