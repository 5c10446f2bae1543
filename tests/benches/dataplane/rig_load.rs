//! The rig under load (`rig_requests_per_s`, `rig_tcp_gbps`): in a
//! one-backend netns rig, wrk against nginx (requests per second, with the
//! machine's CPU use over the window) and one iperf3 stream (Gbit/s),
//! straight to the backend (the LB namespace's kernel routes), through
//! `lb_xdp` (NAT, native XDP on both of the LB's interfaces) and through
//! nftables DNAT; then the rig per-packet figure (`rig_ns.rs`) and bulk TCP
//! through `lb_baseline`. Each path is checked with curl before its wrk
//! window, and every wrk window follows an unmeasured warm-up second.
use std::{fs, net::IpAddr, thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use lb_ctl::dataplane::Baseline;
use lb_tests::rig::{Rig, RigOptions, VIP_V4};

use super::{
    attach::{HTTP_PORT, IPERF_PORT, attach_baseline, attach_lb},
    bulk_tcp::{ip_forwarded, iperf},
    host::{Background, Cpu, CpuTimes, wait_for_listener},
    report::Report,
    rig_ns::rig_ns_per_packet,
};

/// wrk connections (one thread).
pub(super) const WRK_CONNECTIONS: u32 = 32;

/// What one load phase measured.
pub(super) struct Load {
    requests_per_s: f64,
    cpu: Cpu,
}

pub(super) fn rig_figures(secs: u64, report: &mut Report) -> Result<()> {
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

/// curl through `addr` must reach b1 (checks the path before loading it).
pub(super) fn expect_body(rig: &Rig, addr: IpAddr, phase: &str) -> Result<()> {
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
pub(super) fn warm_up(rig: &Rig, addr: IpAddr) -> Result<()> {
    rig.wrk(&url(addr), Duration::from_secs(1), WRK_CONNECTIONS)?;
    Ok(())
}

/// wrk against nginx through `addr` (after a [`warm_up`]); fails on any wrk
/// error (a broken path is not a figure).
fn http_load(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Load> {
    warm_up(rig, addr)?;
    measured_http_load(rig, addr, secs)
}

pub(super) fn measured_http_load(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Load> {
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

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} req/s, {}", self.requests_per_s, self.cpu)
    }
}
