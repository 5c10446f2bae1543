//! The stream's figures on one pair: lb1's program opened, the figures
//! run in turn on a thread in lb1's namespace, and what they share (the
//! new flows, one test run, lb1's status, the replication connection's
//! bytes).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use lb_common::maps;
use lb_tests::{
    daemon::DaemonProcess,
    fixture,
    flow_pair::FlowPair,
    flow_scenario,
    packets::{ACK, Frame, SYN},
    rig::{Rig, RigOptions, VIP_V4},
};
use serde_json::Value;

use crate::{
    BULK_FLOWS, LAG_RATES, LAG_REPEATS, LB_CTL, REPLICATION_PORT, STEP_TIME, STEPS, XDP_PASS,
    XDP_REDIRECT, XDP_TX,
    bulk::bulk_copy,
    lag::{lag_run, quantile},
    new_flow::new_flow_cost,
    report::Report,
};

pub(super) fn stream_figures(report: &mut Report) -> Result<()> {
    println!("[bench] the pair rig: lb1 active, lb2 standby, a NAT service on {VIP_V4}:80");
    let mut pair = FlowPair::start(
        Path::new(LB_CTL),
        RigOptions::default().backends,
        |_| Ok(()),
        |rig| flow_scenario::service(rig, "web", "tcp", 80, "nat"),
    )?;
    let FlowPair { rig, lb1, lb2 } = &mut pair;
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
pub(super) struct Active {
    pub(super) program: Xdp,
    pub(super) ingress: u32,
    /// The raw XDP action of a new flow's packet.
    pub(super) action: u32,
}

/// Runs on a thread in lb1's namespace (test runs are received on its
/// `ext0` and its FIB answers).
pub(super) fn on_the_active(
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
    let (syn, ack) = flows.next_flow();
    let action = test_run(&program, ingress, &syn.build())?;
    let confirmed = test_run(&program, ingress, &ack.build())?;
    if confirmed != action {
        bail!(
            "a new flow's SYN got {:?} but its ACK {:?} from lb1's program",
            fixture::Action::from_raw(action),
            fixture::Action::from_raw(confirmed)
        );
    }
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
        "new flows: a TCP SYN then the ACK that confirms the flow (and has it reported), to {VIP_V4}:80 from distinct sources in 198.19.0.0/16, lb1's program answers {:?}",
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
pub(super) fn test_run(program: &Xdp, ingress: u32, frame: &[u8]) -> Result<u32> {
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
/// port 80 from 198.19.H.L, ports 10,000 to 59,999, and the ACKs that
/// confirm them (the program reports a flow for replication when the
/// client's second packet confirms it).
#[derive(Default)]
pub(super) struct FlowSource {
    pub(super) next: u64,
}

impl FlowSource {
    const PORTS: u64 = 50_000;

    /// The next flow's SYN and the ACK that confirms it.
    pub(super) fn next_flow(&mut self) -> (Frame, Frame) {
        let syn = self.next_frame();
        let ack = Frame {
            l4: ACK,
            ..syn.clone()
        };
        (syn, ack)
    }

    /// The next flow's SYN.
    pub(super) fn next_frame(&mut self) -> Frame {
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
pub(super) struct Sending {
    pub(super) flows: u64,
    pub(super) messages: u64,
    pub(super) resends: u64,
    pub(super) resyncs: u64,
    pub(super) refreshed: u64,
    pub(super) records_lost: u64,
}

pub(super) fn status(node: &DaemonProcess) -> Result<Sending> {
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
pub(super) fn replication_bytes(rig: &Rig) -> Result<u64> {
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
