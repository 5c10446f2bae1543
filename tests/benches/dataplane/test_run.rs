//! The BPF_PROG_TEST_RUN figures (`ns_per_packet`), in the fixture
//! namespace, IPv4 and IPv6: the mean nanoseconds per run of `lb_xdp` on a
//! packet of a pinned, confirmed flow (`established`) and on a first packet
//! of a 5-tuple never seen (`new_flow`), and of `lb_baseline` (the same
//! parse and NAT rewrite, no lookups) on the established packet, over
//! `--runs` runs each. Before measuring, the baseline's output is checked
//! byte for byte against `lb_xdp`'s; after, the service counters must have
//! moved by exactly the runs and new flows expected. Also, in IPv4, the
//! harness's own cost per run (the floor: the baseline passing an ARP frame
//! at once).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use lb_common::{BASELINE_PROGRAM, BaselineConfig, Traffic, XDP_PROGRAM};
use lb_ctl::{
    balancer::{
        BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec, addr_bytes, family,
    },
    dataplane::{self, Baseline, Dataplane},
};
use lb_tests::{
    fixnet::{self, FixtureNet, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action},
    packets::{self, ACK, Frame, SYN},
    rig::{self, VIP_V4, VIP_V6},
    testrun::{Durations, measure},
};

use super::{
    attach::{lease_as_clustered, xdp},
    report::{NS_KEYS, Report},
};

/// Longest a single test-run figure may take before it counts as failed.
const FIGURE_TIME_LIMIT: Duration = Duration::from_secs(120);

/// The service port and backend port of the test-run figures (NAT
/// rewrites both address and port, as in tests/tests/forwarding.rs).
const VPORT: u16 = 80;

const BPORT: u16 = 8080;

const XDP_PASS: u32 = 2;

const XDP_REDIRECT: u32 = 4;

pub(super) fn test_run_figures(runs: u64, report: &mut Report) -> Result<()> {
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
