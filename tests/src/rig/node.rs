//! The rig's load-balancer nodes: one (`lb`), or two (`lb1`, `lb2`) in a
//! pair. Each is a namespace with its client-side interface (`ext0`), its
//! backend-side interface (`int0`), its own addresses on both, and in a
//! pair its interconnects to the other node. The addresses that are no
//! node's own (VIPs, the backends' gateway, the client, the backends) are
//! the rig's constants.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::{GATEWAY_V4, GATEWAY_V6, RigOptions};
use crate::netns::Netns;

/// Every node's interface towards the clients.
const EXT_IFACE: &str = "ext0";
/// Every node's interface towards the backends (or the router).
const INT_IFACE: &str = "int0";

/// The nodes' names (`node.name`, `[nodes.NAME]` in a cluster plan), in
/// server order, in a pair.
pub const NODES: [&str; 2] = ["lb1", "lb2"];
/// The interconnects of a pair, in priority order: interface and network
/// (`198.18.N.1` on lb1, `198.18.N.2` on lb2).
pub const INTERCONNECTS: [(&str, u8); 2] = [("hb0", 8), ("hb1", 9)];

/// One end of an interconnect (a veth straight to the other node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interconnect {
    pub iface: &'static str,
    /// This node's address on it (a /24).
    pub v4: Ipv4Addr,
}

/// A load-balancer node of the rig.
#[derive(Debug)]
pub struct LbNode {
    /// `lb` alone, `lb1` or `lb2` in a pair (also its cluster server name);
    /// its namespace is `PREFIX-NAME`.
    pub name: &'static str,
    pub ns: Netns,
    /// The interface towards the clients.
    pub ext_iface: &'static str,
    /// Its own addresses there (/24, /64).
    pub ext_v4: Ipv4Addr,
    pub ext_v6: Ipv6Addr,
    /// The interface towards the backends, or towards the router.
    pub int_iface: &'static str,
    /// Its own addresses there (/24, /64): the backends' gateway for a
    /// node alone on their segment, the transit link's end with a router,
    /// an address of its own beside the floating gateway in a pair.
    pub int_v4: Ipv4Addr,
    pub int_v6: Ipv6Addr,
    /// Its interconnects in priority order (none outside a pair).
    pub interconnects: Vec<Interconnect>,
}

impl LbNode {
    /// Node `index` (0-based) of a rig built with `options`, in namespace
    /// `PREFIX-NAME`.
    pub(super) fn create(prefix: &str, index: usize, options: &RigOptions) -> Result<Self> {
        let layout = Layout::of(index, options);
        Ok(LbNode {
            ns: Netns::create(&format!("{prefix}-{}", layout.name))?,
            name: layout.name,
            ext_iface: EXT_IFACE,
            ext_v4: layout.ext_v4,
            ext_v6: layout.ext_v6,
            int_iface: INT_IFACE,
            int_v4: layout.int_v4,
            int_v6: layout.int_v6,
            interconnects: layout.interconnects,
        })
    }

    /// Every interface of the node: client side, backend side,
    /// interconnects.
    /// The MAC of the node's client-side interface (`ext0`).
    pub fn ext_mac(&self) -> String {
        let out = self
            .ns
            .ip(["-o", "link", "show", "dev", self.ext_iface])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split("link/ether ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn ifaces(&self) -> Vec<&'static str> {
        [self.ext_iface, self.int_iface]
            .into_iter()
            .chain(self.interconnects.iter().map(|i| i.iface))
            .collect()
    }

    /// The switch's port for the node's client-side link in a pair (on the
    /// clients' bridge) ...
    pub fn ext_port(&self) -> String {
        format!("p-{}x", self.name)
    }

    /// ... and for its backend-side link (on the backends' bridge), also
    /// the port of the node alone (`p-lb`).
    pub fn int_port(&self) -> String {
        format!("p-{}", self.name)
    }
}

/// How many nodes a rig built with `options` has.
pub(super) fn count(options: &RigOptions) -> usize {
    if options.pair { 2 } else { 1 }
}

/// A node's name and addresses (the node without its namespace).
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    name: &'static str,
    ext_v4: Ipv4Addr,
    ext_v6: Ipv6Addr,
    int_v4: Ipv4Addr,
    int_v6: Ipv6Addr,
    interconnects: Vec<Interconnect>,
}

impl Layout {
    fn of(index: usize, options: &RigOptions) -> Self {
        // Node N's client-side address is .N (::N).
        let host = index as u8 + 1;
        let ext_v4 = Ipv4Addr::new(198, 18, 0, host);
        let ext_v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host));
        if options.pair {
            // Beside the floating gateway (.1): .2 and .3.
            let int = host + 1;
            return Layout {
                name: NODES[index],
                ext_v4,
                ext_v6,
                int_v4: Ipv4Addr::new(198, 18, 1, int),
                int_v6: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(int)),
                interconnects: INTERCONNECTS
                    .iter()
                    .map(|&(iface, net)| Interconnect {
                        iface,
                        v4: Ipv4Addr::new(198, 18, net, host),
                    })
                    .collect(),
            };
        }
        let (int_v4, int_v6) = match options.router_mtu {
            // The transit link to the router (which has .2).
            Some(_) => (
                Ipv4Addr::new(198, 18, 2, 1),
                Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1),
            ),
            None => (GATEWAY_V4, GATEWAY_V6),
        };
        Layout {
            name: "lb",
            ext_v4,
            ext_v6,
            int_v4,
            int_v6,
            interconnects: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(index: usize, pair: bool, router_mtu: Option<u32>) -> Layout {
        Layout::of(
            index,
            &RigOptions {
                pair,
                router_mtu,
                ..Default::default()
            },
        )
    }

    fn addrs(l: &Layout) -> [String; 4] {
        [l.ext_v4, l.int_v4]
            .map(|a| a.to_string())
            .into_iter()
            .chain([l.ext_v6, l.int_v6].map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }

    #[test]
    fn a_node_alone_is_the_backends_gateway() {
        let l = layout(0, false, None);
        assert_eq!(l.name, "lb");
        assert_eq!(
            addrs(&l),
            ["198.18.0.1", "198.18.1.1", "2001:db8::1", "2001:db8:1::1"]
        );
        assert!(l.interconnects.is_empty());
        let l = layout(0, false, Some(1400));
        assert_eq!(
            addrs(&l),
            ["198.18.0.1", "198.18.2.1", "2001:db8::1", "2001:db8:2::1"]
        );
    }

    #[test]
    fn the_nodes_of_a_pair_stand_beside_the_floating_addresses() {
        let [l1, l2] = [0, 1].map(|i| layout(i, true, None));
        assert_eq!((l1.name, l2.name), ("lb1", "lb2"));
        assert_eq!(
            addrs(&l1),
            ["198.18.0.1", "198.18.1.2", "2001:db8::1", "2001:db8:1::2"]
        );
        assert_eq!(
            addrs(&l2),
            ["198.18.0.2", "198.18.1.3", "2001:db8::2", "2001:db8:1::3"]
        );
        let ends = |l: &Layout| -> Vec<(&str, String)> {
            l.interconnects
                .iter()
                .map(|i| (i.iface, i.v4.to_string()))
                .collect()
        };
        assert_eq!(
            ends(&l1),
            [("hb0", "198.18.8.1".into()), ("hb1", "198.18.9.1".into())]
        );
        assert_eq!(
            ends(&l2),
            [("hb0", "198.18.8.2".into()), ("hb1", "198.18.9.2".into())]
        );
    }
}
