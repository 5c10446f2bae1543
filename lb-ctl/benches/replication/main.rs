//! The flow replication benchmark: `cargo xtask bench replication` (which
//! runs this with `cargo bench -p lb-ctl --bench replication`). Prints a
//! table and writes `target/bench/replication.json`; docs/benchmarks.md
//! says what each figure means and how it is measured. Needs root.
//!
//! Two real daemons in the pair rig (`lb_tests::flow_pair::FlowPair`: lb1
//! active, lb2 standby, a NAT service on the VIP's port 80), so that
//! everything measured is the daemons' own replication: the active's
//! program reporting into its ring, its replication task, the mutual-TLS
//! stream on `[cluster] replication_port`, the standby's task and loop
//! writing its tables. New flows are made by BPF_PROG_TEST_RUN of the very
//! program lb1 attached (opened through its pinned link), run in lb1's
//! namespace as received on its `ext0`, each a SYN of a 5-tuple never
//! seen before and the ACK that confirms it (the program reports a flow
//! when it is confirmed) (repeat = 1: a repeat would rerun the program on
//! the rewritten buffer). The standby's flow table is read through its pin.
//!
//! - `new_flow_ns`: the program's cost on a new flow's confirming ACK (its
//!   SYN run before, not measured) with the replication
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
//!   `lb-ctl/tests/flow_failover.rs` (`flow_scenario::downloads_and_idle_connections`,
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
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use lb_tests::flow_scenario::{self, Fault, Outcome};

mod bulk;
mod lag;
mod new_flow;
mod pair;
mod report;

use self::{new_flow::where_the_new_flow_cost_goes, pair::stream_figures, report::Report};

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
    match flow_scenario::downloads_and_idle_connections(
        Path::new(LB_CTL),
        "nat",
        Fault::FailoverThenKill,
    ) {
        Ok(Outcome { broken, .. }) => {
            report.detail(format!(
                "failover: {} of {} connections broke",
                broken.len(),
                flow_scenario::DOWNLOADS + flow_scenario::IDLE
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
