//! A flood of new flows from spoofed sources, more than the flow tables
//! hold, while a backend is added, must break no established connection:
//! the flood's flows stay unconfirmed (one packet each) and churn only the
//! unconfirmed tables, never the connection table nor the NAT reply table.
//! Real namespaces, nginx, curl and the XDP program attached in native
//! mode. Needs root.
mod support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use lb_common::{Counter, MAX_FLOWS, MAX_NEW_FLOWS};
use lb_ctl::balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec};
use lb_tests::{
    flood::{Flood, Kind, SpeaksFirst},
    flow_scenario::{Downloads, Idle, Resets, fail_if_broken},
    rig::{Rig, RigOptions, VIP_V4},
    wait::wait_for,
};
use support::rig_lb::RigLb;

/// One flood at a time: each takes both CPUs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The 100 established connections: paced downloads, idle
/// keep-alive connections asked again after the flood, idle connections
/// on which the server speaks first after the flood.
const DOWNLOADS: usize = 40;
const IDLE: usize = 30;
const SPEAKS_FIRST: usize = 30;
/// Each download: about 42 s at the backends' 200 kB/s on an idle
/// machine, so packets flow before and all through the flood's first part,
/// when the backend is added.
const SIZE: usize = 8 << 20;
/// What each server that speaks first sends.
const SPOKEN: usize = 256 << 10;
/// The port of the servers that speak first (and of their service).
const QUIET_PORT: u16 = 7000;
/// The UDP service a UDP flood is aimed at.
const UDP_PORT: u16 = 5300;
/// The flood: more new flows than both tables together hold.
const FLOWS: u64 = 5_000_000;
/// The spoofed sources (a /16 of the test range no namespace holds; their
/// answers end in blackhole routes).
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);

fn service(port: u16, protocol: Protocol, mode: Mode, backends: &[Ipv4Addr]) -> ServiceSpec {
    ServiceSpec {
        vip: VIP_V4.into(),
        port,
        protocol,
        mode,
        backends: backends
            .iter()
            .map(|&ip| BackendSpec {
                addr: SocketAddr::new(IpAddr::V4(ip), port),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

/// The services on the first `count` backends.
fn services(rig: &Rig, mode: Mode, count: usize) -> Vec<ServiceSpec> {
    let backends: Vec<Ipv4Addr> = rig.backends.iter().take(count).map(|b| b.v4).collect();
    vec![
        service(80, Protocol::Tcp, mode, &backends),
        service(QUIET_PORT, Protocol::Tcp, mode, &backends),
        service(UDP_PORT, Protocol::Udp, mode, &backends),
    ]
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC {text:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC {text:?}"))
}

fn flood_breaks_no_established_connection(mode: Mode, kind: Kind) -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::build(&RigOptions {
        backends: 4,
        ..Default::default()
    })?;
    rig.add_vips()?;
    if mode == Mode::Dsr {
        rig.backends_hold_vips()?;
        rig.resolve_backends()?;
    }
    rig.start_nginx()?;
    Downloads::serve(&rig, SIZE)?;
    // What answers the spoofed sources ends in a blackhole route. In NAT
    // the backends' answers (SYN-ACKs) come back through the LB, as in a
    // real flood: the program translates them through the reply tables,
    // then its kernel finds no route. In DSR they would go straight to
    // the clients: the backends drop them.
    let blackhole = format!("{SPOOFED}/16");
    rig.lb().ns.ip(["route", "add", "blackhole", &blackhole])?;
    if mode == Mode::Dsr {
        for backend in &rig.backends {
            backend.ns.ip(["route", "add", "blackhole", &blackhole])?;
        }
    }
    let mut quiet = SpeaksFirst::serve(&rig, QUIET_PORT, SPOKEN)?;
    let mut lb = RigLb::start(&rig, &services(&rig, mode, 3))?;
    let resets = Resets::watch(&rig)?;

    // The flood takes both CPUs for a minute or more (the backends answer
    // every SYN through the LB): the downloads slow down, and may take
    // their time; what counts is that every byte arrives.
    let mut downloads = Downloads::new(SIZE).with_max_time(Duration::from_secs(300));
    downloads.spawn(&rig, "download", DOWNLOADS)?;
    let idle = Idle::open(&rig, IDLE)?;
    quiet.open(&rig, QUIET_PORT, SPEAKS_FIRST)?;
    let established = (DOWNLOADS + IDLE + SPEAKS_FIRST) as u64;
    wait_for("the connections confirmed", Duration::from_secs(20), || {
        lb.dp.counter(Counter::FlowsConfirmed).unwrap_or(0) >= established
    })
    .with_context(|| lb.counters())?;
    let confirmed = lb.dp.counter(Counter::FlowsConfirmed)?;

    let flood = Flood {
        kind,
        dst_mac: parse_mac(&rig.lb().ext_mac())?,
        dst: VIP_V4,
        dport: if kind == Kind::Syn { 80 } else { UDP_PORT },
        src_base: SPOOFED,
        flows: FLOWS,
        limit: Duration::from_secs(120),
    };
    let started = Instant::now();
    let sender = rig.client.spawn_thread(move || flood.send("eth0"))?;
    // A backend added while the flood runs: a flow the tables lost now
    // lands on another backend for about a quarter of the flows.
    wait_for("the flood's first flows", Duration::from_secs(60), || {
        lb.dp.counter(Counter::FlowsUnconfirmed).unwrap_or(0) > u64::from(MAX_NEW_FLOWS)
    })
    .with_context(|| lb.counters())?;
    lb.configure(&services(&rig, mode, 4))?;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the flood's thread panicked"))??;
    let unconfirmed = lb.dp.counter(Counter::FlowsUnconfirmed)?;
    println!(
        "{mode:?} {kind:?} flood: {} frames in {:.1} s ({:.0}/s), {unconfirmed} new flows at the LB; {}",
        sent.frames,
        sent.elapsed.as_secs_f64(),
        sent.per_second(),
        lb.counters()
    );
    ensure!(
        sent.frames == FLOWS,
        "only {} of {FLOWS} frames sent in {:?}",
        sent.frames,
        started.elapsed()
    );
    // More than both tables hold, so both were churned through.
    ensure!(
        unconfirmed > u64::from(MAX_FLOWS + MAX_NEW_FLOWS),
        "the LB saw only {unconfirmed} new flows: {}",
        lb.counters()
    );
    let confirmed_since = lb.dp.counter(Counter::FlowsConfirmed)? - confirmed;

    let (mut broken, spoke) = quiet.hear()?;
    broken.extend(idle.ask_again()?);
    broken.extend(downloads.broken()?);
    // A connection whose entries the flood pushed out shows here first
    // (picked again, perhaps onto the new backend); one that broke with
    // its entries kept was starved (queues full under the flood).
    let midstream = lb.dp.counter(Counter::FlowsMidstream)?;
    if !broken.is_empty() {
        println!(
            "{} connections broke; {midstream} packets of connections the tables lost; {}",
            broken.len(),
            lb.counters()
        );
    }
    fail_if_broken(&broken, DOWNLOADS + IDLE + SPEAKS_FIRST, Some(&resets))?;
    // The flood confirmed nothing (one packet per flow).
    ensure!(
        confirmed_since < 50,
        "{confirmed_since} flows confirmed during the flood"
    );
    ensure!(
        midstream == 0,
        "established connections lost their entries: {}",
        lb.counters()
    );
    // The servers that spoke first were the first three (the fourth came
    // after their connections), and the new backend takes new flows.
    let fourth = rig.backends[3].name.clone();
    ensure!(!spoke.contains(&fourth), "{spoke:?}");
    let url = format!("http://{VIP_V4}/");
    let served = (0..60).any(|_| rig.curl(&url).map(|b| b.trim() == fourth).unwrap_or(false));
    ensure!(served, "{fourth} never answered a new connection");
    Ok(())
}

#[test]
fn a_syn_flood_breaks_no_established_nat_connection() {
    flood_breaks_no_established_connection(Mode::Nat, Kind::Syn).unwrap();
}

#[test]
fn a_udp_flood_breaks_no_established_dsr_connection() {
    flood_breaks_no_established_connection(Mode::Dsr, Kind::Udp).unwrap();
}
