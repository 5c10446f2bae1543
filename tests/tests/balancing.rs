//! Load balancing on the real kernel path: client namespace -> LB namespace
//! (XDP attached in native mode) -> nginx backends, in NAT and DSR modes,
//! IPv4 and IPv6. Needs root.
mod support;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_common::{AF_INET, Counter, FlowKey, IPPROTO_TCP};
use lb_ctl::balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec, addr_bytes};
use lb_tests::rig::{self, Rig, RigOptions, VIP_V4, VIP_V6};
use support::rig_lb::RigLb;

fn service(vip: IpAddr, mode: Mode, backends: &[IpAddr]) -> ServiceSpec {
    ServiceSpec {
        vip,
        port: 80,
        protocol: Protocol::Tcp,
        mode,
        backends: backends
            .iter()
            .map(|&ip| BackendSpec {
                addr: SocketAddr::new(ip, 80),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

fn rig_with(mode: Mode, backends: usize) -> Result<(Rig, RigLb)> {
    let mut rig = Rig::build(&RigOptions {
        backends,
        ..Default::default()
    })?;
    rig.add_vips()?;
    if mode == Mode::Dsr {
        rig.backends_hold_vips()?;
        rig.resolve_backends()?;
    }
    rig.start_nginx()?;
    let v4: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v6.into()).collect();
    let lb = RigLb::start(
        &rig,
        &[
            service(VIP_V4.into(), mode, &v4),
            service(VIP_V6.into(), mode, &v6),
        ],
    )?;
    Ok((rig, lb))
}

/// curl through the VIP until every backend has answered (at most 60 tries).
fn reaches_every_backend(rig: &Rig, url: &str) -> Result<()> {
    let want: BTreeSet<String> = rig
        .backends
        .iter()
        .take(3)
        .map(|b| b.name.clone())
        .collect();
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        seen.insert(rig.curl(url)?.trim().to_owned());
        if seen == want {
            return Ok(());
        }
    }
    bail!("{url}: 60 requests reached {seen:?}, not all of {want:?}")
}

/// At least 10,000 requests through wrk (bounded: 8 runs of 3 s), no error.
fn ten_thousand_requests(rig: &Rig, url: &str) -> Result<u64> {
    let mut total = 0;
    for _ in 0..8 {
        let report = rig.wrk(url, Duration::from_secs(3), 16)?;
        if report.errors() != 0 {
            bail!("{url}: wrk saw errors: {report:?}");
        }
        total += report.requests;
        if total >= 10_000 {
            return Ok(total);
        }
    }
    bail!("{url}: only {total} requests in 24 s")
}

fn check_mode(mode: Mode) -> Result<()> {
    let (rig, lb) = rig_with(mode, 3)?;
    for url in [format!("http://{VIP_V4}/"), format!("http://[{VIP_V6}]/")] {
        reaches_every_backend(&rig, &url)?;
        let n = ten_thousand_requests(&rig, &url)?;
        println!("{mode:?} {url}: {n} requests, 0 errors");
    }
    let forwarded = lb.dp.counter(Counter::Forwarded)?;
    assert!(
        forwarded > 20_000,
        "only {forwarded} packets forwarded by XDP"
    );
    Ok(())
}

#[test]
fn nat_reaches_every_backend_over_ipv4_and_ipv6_without_errors() {
    check_mode(Mode::Nat).unwrap();
}

#[test]
fn dsr_reaches_every_backend_over_ipv4_and_ipv6_without_errors() {
    check_mode(Mode::Dsr).unwrap();
}

#[test]
fn a_long_download_keeps_its_backend_while_a_backend_is_added() {
    let (rig, mut lb) = rig_with(Mode::Nat, 4).unwrap();
    let sport = 45000;
    // 16 MiB at 4 MB/s: about four seconds on one connection.
    let download = rig
        .client
        .spawn(
            rig.client
                .command("curl")
                .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"])
                .args(["--max-time", "30", "--limit-rate", "4M", "--local-port"])
                .arg(sport.to_string())
                .args(["-r", "0-16777215"])
                .arg(format!("http://{VIP_V4}/big"))
                .stdout(Stdio::piped()),
        )
        .unwrap();
    let key = FlowKey {
        src: addr_bytes(rig::CLIENT_V4.into()),
        dst: addr_bytes(VIP_V4.into()),
        sport: (sport as u16).to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        pad: [0; 2],
    };
    let before = wait_for_flow(&lb, &key).unwrap();
    let v4: Vec<IpAddr> = rig.backends.iter().map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v6.into()).collect();
    lb.configure(&[
        service(VIP_V4.into(), Mode::Nat, &v4),
        service(VIP_V6.into(), Mode::Nat, &v6),
    ])
    .unwrap();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success(), "download failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "16777216");
    let after = lb.dp.flow(&key).unwrap().expect("flow still pinned");
    assert_eq!(before.backend, after.backend);
    // And the new backend takes new flows.
    let fourth = rig.backends[3].name.clone();
    let url = format!("http://{VIP_V4}/");
    let served = (0..60).any(|_| rig.curl(&url).map(|b| b.trim() == fourth).unwrap_or(false));
    assert!(served, "{fourth} never answered");
}

fn wait_for_flow(lb: &RigLb, key: &FlowKey) -> Result<lb_common::Flow> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(flow) = lb.dp.flow(key)? {
            return Ok(flow);
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(anyhow::anyhow!("the download's flow never appeared")).context("waiting for the flow")
}
