//! The network a packet fixture runs in: one namespace shaped like the LB's
//! (an external and an internal interface, addresses, routes, permanent
//! neighbours with known MACs), so that the program's FIB lookups give the
//! same answer on every machine and never look at the host's own tables.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};

use crate::{netns::Netns, rig};

/// The LB's MAC on its external interface.
pub const LB_EXT_MAC: [u8; 6] = [0x02, 0x4c, 0x42, 0, 0, 0x01];
/// The LB's MAC on its internal interface.
pub const LB_INT_MAC: [u8; 6] = [0x02, 0x4c, 0x42, 0, 0, 0x02];
/// The LB's own address on its external interface (as the rig's lone
/// node has it).
pub const LB_EXT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The client's MAC (a neighbour on the external side).
pub const CLIENT_MAC: [u8; 6] = crate::packets::CLIENT_MAC;
/// A backend on the external side (for XDP_TX cases): 198.18.0.50.
pub const EXT_BACKEND_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
pub const EXT_BACKEND_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50);
pub const EXT_BACKEND_MAC: [u8; 6] = [0x02, 0x42, 0x45, 0, 0, 0x50];
/// A backend address with no neighbour entry: 198.18.1.20.
pub const UNRESOLVED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
pub const UNRESOLVED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);

/// Backends with permanent neighbour entries on the internal side.
pub const BACKENDS: usize = 4;

/// The MAC of backend `index` (see [`rig::backend_v4`]).
pub fn backend_mac(index: usize) -> [u8; 6] {
    [0x02, 0x42, 0x45, 0, 1, 0x11 + index as u8]
}

/// The fixture namespace.
pub struct FixtureNet {
    pub ns: Netns,
    /// Index of `ext0` inside the namespace.
    pub ext: u32,
    /// Index of `int0` inside the namespace.
    pub int: u32,
}

impl FixtureNet {
    pub fn build() -> Result<Self> {
        let ns = Netns::create(&format!("{}-fx", rig::unique_test_prefix()))?;
        for (lb, peer, mac) in [("ext0", "ext0p", LB_EXT_MAC), ("int0", "int0p", LB_INT_MAC)] {
            ns.ip(["link", "add", lb, "type", "veth", "peer", "name", peer])?;
            ns.ip(["link", "set", lb, "address", &mac_str(mac)])?;
            ns.ip(["link", "set", lb, "up"])?;
            ns.ip(["link", "set", peer, "up"])?;
        }
        let ext_v4 = format!("{LB_EXT_V4}/24");
        for (iface, cidr) in [
            ("ext0", ext_v4.as_str()),
            ("ext0", "2001:db8::1/64"),
            ("int0", "198.18.1.1/24"),
            ("int0", "2001:db8:1::1/64"),
        ] {
            ns.ip(["addr", "add", cidr, "dev", iface, "nodad"])?;
        }
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let mut neighbours: Vec<(IpAddr, [u8; 6], &str)> = vec![
            (rig::CLIENT_V4.into(), CLIENT_MAC, "ext0"),
            (rig::CLIENT_V6.into(), CLIENT_MAC, "ext0"),
            (EXT_BACKEND_V4.into(), EXT_BACKEND_MAC, "ext0"),
            (EXT_BACKEND_V6.into(), EXT_BACKEND_MAC, "ext0"),
        ];
        for i in 0..BACKENDS {
            neighbours.push((rig::backend_v4(i).into(), backend_mac(i), "int0"));
            neighbours.push((rig::backend_v6(i).into(), backend_mac(i), "int0"));
        }
        for (addr, mac, iface) in neighbours {
            ns.ip([
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac_str(mac),
                "dev",
                iface,
                "nud",
                "permanent",
            ])
            .with_context(|| format!("neighbour {addr}"))?;
        }
        let ext = ns.run_in(|| index_of("ext0"))?;
        let int = ns.run_in(|| index_of("int0"))?;
        Ok(Self { ns, ext, int })
    }

    /// Sets the MTU of both interfaces and of their peers: the FIB lookup
    /// checks a packet's length against the route's MTU (jumbo frames).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        for iface in ["ext0", "ext0p", "int0", "int0p"] {
            self.ns
                .ip(["link", "set", "dev", iface, "mtu", &mtu])
                .with_context(|| format!("MTU {mtu} on {iface}"))?;
        }
        Ok(())
    }
}

fn index_of(iface: &str) -> Result<u32> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => anyhow::bail!("no interface {iface}"),
        index => Ok(index),
    }
}

fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
