//! The rig as a pair ([`RigOptions::pair`](super::RigOptions::pair)): two
//! LB nodes instead of one, each with its client-side interface on the
//! client segment (a second bridge in the switch namespace) and its
//! backend-side interface on the backends' segment, and two interconnects
//! between them:
//!
//! ```text
//! client ns        switch ns: br1       lb1 ns                                      switch ns: br0     backend ns (x4)
//! eth0 ─────────── p-cl ┬ p-lb1x ────── ext0 198.18.0.1  [XDP]  int0 198.18.1.2 ─── p-lb1 ┬ p-bN ──── eth0 + nginx
//! 198.18.0.10           │               hb0 198.18.8.1          hb1 198.18.9.1            │          198.18.1.1N
//! 2001:db8::10          │                │                       │                        │          2001:db8:1::1N
//!                       │               hb0 198.18.8.2          hb1 198.18.9.2            │
//!                       └ p-lb2x ────── ext0 198.18.0.2  [XDP]  int0 198.18.1.3 ─── p-lb2 ┘
//!                                       lb2 ns
//! floating IPs, on the active node: VIPs 198.18.0.100, 2001:db8::100 on ext0; gateway 198.18.1.1, 2001:db8:1::1 on int0
//! ```
//!
//! The VIPs and the backends' gateway (198.18.1.1, 2001:db8:1::1) are not
//! on any node: they are the cluster's floating IPs ([`Rig::cluster_plan`]),
//! held by the active node.
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result};

use super::{
    CLIENT_V4, CLIENT_V6, LB_EXT_IFACE, LB_EXT_V4, LB_EXT_V6, LB_INT_IFACE, LB_INT_V4, LB_INT_V6,
    Rig, VIP_V4, VIP_V6,
    links::{address, veth},
};
use crate::{daemon::NodeFiles, netns::Netns};

/// The second node's client-side address (the first has `LB_EXT_V4`).
pub const LB2_EXT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB2_EXT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The nodes' own backend-side addresses (the gateway floats between them).
pub const LB1_INT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const LB1_INT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const LB2_INT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
pub const LB2_INT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
/// The interconnects, in priority order: interface and network
/// (`198.18.N.1` on lb1, `198.18.N.2` on lb2).
pub const INTERCONNECTS: [(&str, u8); 2] = [("hb0", 8), ("hb1", 9)];
/// The nodes' names (`node.name`, `[nodes.NAME]` in the plan), in server
/// order.
pub const NODES: [&str; 2] = ["lb1", "lb2"];

impl Rig {
    /// The two nodes, in server order (a rig without a pair has one).
    pub fn lbs(&self) -> Vec<&Netns> {
        std::iter::once(&self.lb).chain(&self.lb2).collect()
    }

    /// Client and nodes on the client segment (`br1`), the interconnects.
    pub(super) fn wire_pair_client_side(&self, lb2: &Netns) -> Result<()> {
        self.switch
            .ip(["link", "add", "br1", "type", "bridge"])
            .context("creating the client bridge")?;
        self.switch.ip(["link", "set", "br1", "up"])?;
        veth(&self.client, "eth0", &self.switch, "p-cl")?;
        address(&self.client, "eth0", CLIENT_V4.into(), 24)?;
        address(&self.client, "eth0", CLIENT_V6.into(), 64)?;
        let fronts = [
            (&self.lb, "p-lb1x", LB_EXT_V4, LB_EXT_V6),
            (lb2, "p-lb2x", LB2_EXT_V4, LB2_EXT_V6),
        ];
        for (ns, port, v4, v6) in fronts {
            veth(ns, LB_EXT_IFACE, &self.switch, port)?;
            address(ns, LB_EXT_IFACE, v4.into(), 24)?;
            address(ns, LB_EXT_IFACE, v6.into(), 64)?;
        }
        for port in ["p-cl", "p-lb1x", "p-lb2x"] {
            self.switch.ip(["link", "set", port, "master", "br1"])?;
        }
        for (iface, net) in INTERCONNECTS {
            veth(&self.lb, iface, lb2, iface)?;
            address(&self.lb, iface, Ipv4Addr::new(198, 18, net, 1).into(), 24)?;
            address(lb2, iface, Ipv4Addr::new(198, 18, net, 2).into(), 24)?;
        }
        Ok(())
    }

    /// The nodes' backend-side interfaces on the backends' bridge (`br0`).
    pub(super) fn wire_pair_backend_side(&self, lb2: &Netns) -> Result<()> {
        let backs = [
            (&self.lb, "p-lb1", LB1_INT_V4, LB1_INT_V6),
            (lb2, "p-lb2", LB2_INT_V4, LB2_INT_V6),
        ];
        for (ns, port, v4, v6) in backs {
            veth(ns, LB_INT_IFACE, &self.switch, port)?;
            self.switch.ip(["link", "set", port, "master", "br0"])?;
            address(ns, LB_INT_IFACE, v4.into(), 24)?;
            address(ns, LB_INT_IFACE, v6.into(), 64)?;
        }
        Ok(())
    }

    /// The plan of this pair for `lb-ctl cluster init` without its services
    /// (the caller appends its `[[services]]`): both nodes on `ext0` and
    /// `int0` with the files of `nodes` (in server order), the key file and
    /// TLS material in `dir/lb1`, the interconnects, the client as NP
    /// target, a link monitor on each interface, and the failover group:
    /// the VIPs on `ext0` and the backends' gateway on `int0`.
    pub fn cluster_plan(&self, dir: &Path, nodes: &[NodeFiles; 2]) -> String {
        let mut plan = format!(
            "[cluster]\nkey_file = \"{}\"\ntls_dir = \"{}\"\nnp_targets = [\"{CLIENT_V4}\"]\n",
            dir.join("lb1/cluster.keys").display(),
            dir.join("lb1/tls").display(),
        );
        for name in NODES {
            plan.push_str(&format!("\n[[cluster.servers]]\nname = \"{name}\"\n"));
        }
        for (iface, net) in INTERCONNECTS {
            plan.push_str(&format!(
                "\n[[cluster.interconnects]]\nname = \"{iface}\"\naddresses = [\"198.18.{net}.1\", \"198.18.{net}.2\"]\n"
            ));
        }
        let group = [
            (format!("{VIP_V4}/32"), LB_EXT_IFACE),
            (format!("{VIP_V6}/128"), LB_EXT_IFACE),
            (format!("{LB_INT_V4}/24"), LB_INT_IFACE),
            (format!("{LB_INT_V6}/64"), LB_INT_IFACE),
        ];
        for (address, iface) in group {
            plan.push_str(&format!(
                "\n[[cluster.floating_ips]]\naddress = \"{address}\"\ninterface = \"{iface}\"\n"
            ));
        }
        for iface in [LB_EXT_IFACE, LB_INT_IFACE] {
            plan.push_str(&format!(
                "\n[[cluster.monitors]]\nname = \"link-{iface}\"\nkind = \"link\"\ninterface = \"{iface}\"\n"
            ));
        }
        for (name, files) in NODES.iter().zip(nodes) {
            plan.push('\n');
            plan.push_str(&files.plan_node_table(name, &[LB_EXT_IFACE, LB_INT_IFACE]));
        }
        plan
    }
}
