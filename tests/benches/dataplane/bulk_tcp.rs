//! Bulk TCP (`rig_tcp_gbps_by_mtu`, and the iperf3 runs of the other rig
//! figures): one iperf3 stream from the client namespace through the VIP,
//! in Gbit/s with iperf3's own CPU figures; the jumbo phase builds a
//! one-backend rig with MTU 1500 or 9000 on every link and measures
//! `lb_xdp` (multi-buffer XDP at 9000) against nftables DNAT, with the
//! frames each forwarded (`lb_xdp`'s counter, the kernel's ForwDatagrams)
//! and the offloads the client's veth keeps while `lb_xdp` is attached to
//! its peer.
use std::{
    fs,
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};
use lb_ctl::balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec};
use lb_tests::{
    netns::Netns,
    rig::{Rig, RigOptions, VIP_V4},
};

use super::{
    attach::{IPERF_PORT, lb_on_rig},
    host::{Background, wait_for_listener},
    report::Report,
};

/// The links' MTUs of the jumbo phase.
pub(super) const JUMBO_MTUS: [u32; 2] = [1500, 9000];

/// Bulk TCP through the VIP with `mtu` on every link of a one-backend rig
/// (VIP:5201 -> b1:5201): `lb_xdp` (NAT), then nftables DNAT. Records
/// which offloads the client's veth (the peer of `ext0`) has before and
/// with `lb_xdp` attached to `ext0`.
pub(super) fn jumbo_figures(mtu: u32, secs: u64, report: &mut Report) -> Result<()> {
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
pub(super) fn ip_forwarded(ns: &Netns) -> Result<u64> {
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

/// What iperf3 reported.
pub(super) struct Iperf {
    pub(super) gbps: f64,
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
pub(super) fn iperf(rig: &Rig, addr: IpAddr, secs: u64) -> Result<Iperf> {
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
