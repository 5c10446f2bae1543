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
//! held by the active node. The nodes' own addresses and interconnect ends
//! are in their [`LbNode`](super::LbNode)s (`node.rs`). Built with no
//! backends, the pair is the network of the cluster tests
//! ([`crate::pair::PairNet`]): its `br0` then holds the nodes' `int0` only.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::{
    CLIENT_V4, CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Rig, VIP_V4, VIP_V6,
    links::{address, veth},
};
use crate::daemon::NodeFiles;

impl Rig {
    /// Client and nodes on the client segment (`br1`), the interconnects.
    pub(super) fn wire_pair_client_side(&self) -> Result<()> {
        self.switch
            .ip(["link", "add", "br1", "type", "bridge"])
            .context("creating the client bridge")?;
        self.switch.ip(["link", "set", "br1", "up"])?;
        veth(&self.client, "eth0", &self.switch, "p-cl")?;
        address(&self.client, "eth0", CLIENT_V4.into(), 24)?;
        address(&self.client, "eth0", CLIENT_V6.into(), 64)?;
        for node in &self.nodes {
            let port = node.ext_port();
            veth(&node.ns, node.ext_iface, &self.switch, &port)?;
            address(&node.ns, node.ext_iface, node.ext_v4.into(), 24)?;
            address(&node.ns, node.ext_iface, node.ext_v6.into(), 64)?;
        }
        let ports =
            std::iter::once("p-cl".to_owned()).chain(self.nodes.iter().map(|n| n.ext_port()));
        for port in ports {
            self.switch.ip(["link", "set", &port, "master", "br1"])?;
        }
        let [lb1, lb2] = &self.nodes[..] else {
            unreachable!("a pair has two nodes")
        };
        for (end1, end2) in lb1.interconnects.iter().zip(&lb2.interconnects) {
            veth(&lb1.ns, end1.iface, &lb2.ns, end2.iface)?;
            address(&lb1.ns, end1.iface, end1.v4.into(), 24)?;
            address(&lb2.ns, end2.iface, end2.v4.into(), 24)?;
        }
        Ok(())
    }

    /// The nodes' backend-side interfaces on the backends' bridge (`br0`).
    pub(super) fn wire_pair_backend_side(&self) -> Result<()> {
        for node in &self.nodes {
            let port = node.int_port();
            veth(&node.ns, node.int_iface, &self.switch, &port)?;
            self.switch.ip(["link", "set", &port, "master", "br0"])?;
            address(&node.ns, node.int_iface, node.int_v4.into(), 24)?;
            address(&node.ns, node.int_iface, node.int_v6.into(), 64)?;
        }
        Ok(())
    }

    /// The files of node `name`'s daemon in a cluster of this rig:
    /// `dir/NAME`, pins in `/sys/fs/bpf/PREFIX-NAME`.
    pub fn node_files(&self, dir: &Path, name: &str) -> NodeFiles {
        NodeFiles {
            dir: dir.join(name),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}-{name}", self.prefix)),
        }
    }

    /// The `[[cluster.servers]]` (the nodes, in server order) and
    /// `[[cluster.interconnects]]` tables of this pair.
    pub fn cluster_members_toml(&self) -> String {
        let mut toml = String::new();
        for node in &self.nodes {
            toml.push_str(&format!(
                "\n[[cluster.servers]]\nname = \"{}\"\n",
                node.name
            ));
        }
        let ends: Vec<_> = self.nodes.iter().map(|n| &n.interconnects).collect();
        for (index, end) in ends[0].iter().enumerate() {
            let addresses: Vec<String> = ends
                .iter()
                .map(|e| format!("\"{}\"", e[index].v4))
                .collect();
            toml.push_str(&format!(
                "\n[[cluster.interconnects]]\nname = \"{}\"\naddresses = [{}]\n",
                end.iface,
                addresses.join(", ")
            ));
        }
        toml
    }

    /// The plan of this pair for `lb-ctl cluster init` without its services
    /// (the caller appends its `[[services]]`): both nodes on `ext0` and
    /// `int0` with the files of `nodes` (in server order), the key file and
    /// TLS material in `dir/lb1`, the interconnects, the client as NP
    /// target, a link monitor on each interface, and the failover group:
    /// the VIPs on `ext0` and the backends' gateway on `int0`.
    pub fn cluster_plan(&self, dir: &Path, nodes: &[NodeFiles; 2]) -> String {
        let lb = self.lb();
        let mut plan = format!(
            "[cluster]\nkey_file = \"{}\"\ntls_dir = \"{}\"\nnp_targets = [\"{CLIENT_V4}\"]\n{}",
            dir.join("lb1/cluster.keys").display(),
            dir.join("lb1/tls").display(),
            self.cluster_members_toml(),
        );
        let group = [
            (format!("{VIP_V4}/32"), lb.ext_iface),
            (format!("{VIP_V6}/128"), lb.ext_iface),
            (format!("{GATEWAY_V4}/24"), lb.int_iface),
            (format!("{GATEWAY_V6}/64"), lb.int_iface),
        ];
        for (address, iface) in group {
            plan.push_str(&format!(
                "\n[[cluster.floating_ips]]\naddress = \"{address}\"\ninterface = \"{iface}\"\n"
            ));
        }
        for iface in [lb.ext_iface, lb.int_iface] {
            plan.push_str(&format!(
                "\n[[cluster.monitors]]\nname = \"link-{iface}\"\nkind = \"link\"\ninterface = \"{iface}\"\n"
            ));
        }
        for (node, files) in self.nodes.iter().zip(nodes) {
            plan.push('\n');
            plan.push_str(&files.plan_node_table(node.name, &[node.ext_iface, node.int_iface]));
        }
        plan
    }
}
