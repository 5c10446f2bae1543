//! The rig per-packet figure (`rig_ns_per_packet`): the kernel's own BPF
//! run-time statistics (run time over run count) of `lb_xdp`,
//! `lb_baseline` and `lb_baseline_lookup` attached in turn to the rig's LB
//! under the same wrk load, in rounds of one window each, side by side;
//! the figures are the medians of the rounds.
use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::programs::Xdp;
use lb_common::{Counter, XDP_PROGRAM};
use lb_ctl::dataplane::Baseline;
use lb_tests::rig::{Rig, VIP_V4};

use super::{
    attach::{HTTP_PORT, attach_baseline, attach_lb, xdp},
    report::Report,
    rig_load::{Load, expect_body, measured_http_load, warm_up},
};

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
pub(super) fn rig_ns_per_packet(rig: &Rig, secs: u64, report: &mut Report) -> Result<()> {
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
/// ([`Dataplane::counters`](lb_ctl::dataplane::Dataplane::counters)), as
/// `Name +N`, so that a reader sees which ways the measured packets took.
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
