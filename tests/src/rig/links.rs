//! Links, addresses and routes between the rig's namespaces.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};

use crate::netns::Netns;

/// A veth pair whose ends are created straight inside their namespaces, up,
/// with GRO on both ends (a veth only takes XDP_TX or redirected frames when
/// its peer runs NAPI) and checksum offload off: a veth otherwise hands over
/// packets whose L4 checksum is not computed yet (CHECKSUM_PARTIAL), which
/// an XDP program sees and forwards as they are. On a real wire every
/// checksum is complete, and so it is here.
pub(super) fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> Result<()> {
    a.ip([
        "link",
        "add",
        a_name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ])
    .with_context(|| {
        format!(
            "creating veth {}:{a_name} <-> {}:{b_name}",
            a.name(),
            b.name()
        )
    })?;
    for (ns, name) in [(a, a_name), (b, b_name)] {
        ns.ip(["link", "set", name, "up"])?;
        ns.exec("ethtool", ["-K", name, "gro", "on", "tx", "off"])
            .with_context(|| format!("setting GRO and checksum offload on {}:{name}", ns.name()))?;
    }
    Ok(())
}

pub(super) fn address(ns: &Netns, iface: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let cidr = format!("{addr}/{prefix_len}");
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", iface];
    if addr.is_ipv6() {
        // No duplicate address detection: the address is usable at once.
        args.push("nodad");
    }
    ns.ip(args)
        .with_context(|| format!("adding {cidr} to {}:{iface}", ns.name()))?;
    Ok(())
}

pub(super) fn default_routes(ns: &Netns, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<()> {
    ns.ip(["route", "add", "default", "via", &v4.to_string()])?;
    ns.ip(["-6", "route", "add", "default", "via", &v6.to_string()])?;
    Ok(())
}
