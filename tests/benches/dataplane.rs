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
use std::{path::PathBuf, process::ExitCode, thread, time::Duration};

use anyhow::{Context as _, Result, bail};

// The phases and what they share, in tests/benches/dataplane/ (a bench's
// modules are looked for beside its root file: hence the paths).
#[path = "dataplane/attach.rs"]
mod attach;
#[path = "dataplane/bulk_tcp.rs"]
mod bulk_tcp;
#[path = "dataplane/host.rs"]
mod host;
#[path = "dataplane/pps.rs"]
mod pps;
#[path = "dataplane/report.rs"]
mod report;
#[path = "dataplane/rig_load.rs"]
mod rig_load;
#[path = "dataplane/rig_ns.rs"]
mod rig_ns;
#[path = "dataplane/test_run.rs"]
mod test_run;

use bulk_tcp::{JUMBO_MTUS, jumbo_figures};
use host::CpuTimes;
use report::Report;
use rig_load::{WRK_CONNECTIONS, rig_figures};
use test_run::test_run_figures;

/// BPF_PROG_TEST_RUN runs per figure (the issue asks for at least this).
const RUNS: u64 = 1_000_000;

/// Load duration of each wrk and iperf3 run.
const LOAD_SECS: u64 = 5;

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
