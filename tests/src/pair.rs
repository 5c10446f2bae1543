//! The network of a two-node cluster test: the pair rig
//! ([`RigOptions::pair`], `rig/pair.rs`) without backends, so that the
//! cluster tests, the failover benchmark and the demo share one layout:
//! the client and both nodes' `ext0` on the clients' bridge, both nodes'
//! `int0` on the (empty) backends' bridge, two interconnects (`hb0`,
//! `hb1`) between the nodes. Unique names; everything goes with the rig on
//! Drop.
//!
//! The cluster of these tests ([`PairNet::plan`]) floats one address,
//! [`FIP`] as a /24 on `ext0`, and its daemons attach to `ext0` only; the
//! helpers read which node holds it and which MACs answer for it.
use std::{fs, path::Path};

use anyhow::Result;

#[cfg(test)]
use crate::rig::{CLIENT_V4, VIP_V4};
use crate::{
    daemon::{DaemonProcess, NodeFiles, cluster_init},
    netns::Netns,
    rig::{Rig, RigOptions},
};

/// The floating IP the tests move (on `ext0`): the rig's `VIP_V4`.
pub const FIP: &str = "198.18.0.100";
/// The client's address (also the NP target): the rig's `CLIENT_V4`.
pub const CLIENT: &str = "198.18.0.10";

/// What a test adds to the pair's plan for `lb-ctl cluster init`
/// ([`PairNet::plan`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanExtras<'a> {
    /// More keys of `[cluster]` (`survivor = "lb2"\n`).
    pub cluster_keys: &'a str,
    /// More tables of the cluster (`[[cluster.monitors]]` ...).
    pub cluster_tables: &'a str,
    /// More keys of each node's `[nodes.NAME]`, in server order
    /// (`metrics = "..."\n`).
    pub node_keys: [&'a str; 2],
}

/// The pair rig without backends, and the helpers of the cluster tests.
#[derive(Debug)]
pub struct PairNet {
    /// The rig: [`RigOptions::pair`], no backends.
    pub rig: Rig,
}

impl PairNet {
    /// Builds the pair rig without backends (unique names, swept when a
    /// run dies; see [`Rig::build`]).
    pub fn build() -> Result<Self> {
        let rig = Rig::build(&RigOptions {
            backends: 0,
            pair: true,
            ..Default::default()
        })?;
        Ok(PairNet { rig })
    }

    /// The client's namespace.
    pub fn client(&self) -> &Netns {
        &self.rig.client
    }

    /// Node `i`'s namespace (server order: `lb1`, `lb2`).
    pub fn node(&self, i: usize) -> &Netns {
        &self.rig.nodes[i].ns
    }

    /// Both nodes' namespaces, in server order.
    pub fn nodes(&self) -> [&Netns; 2] {
        [self.node(0), self.node(1)]
    }

    /// The `[cluster]` section of this network (without id and key file):
    /// the client as NP target, the servers, the interconnects and
    /// [`FIP`] as the one floating IP, a /24 on `ext0`.
    pub fn cluster_toml(&self) -> String {
        format!(
            "np_targets = [\"{CLIENT}\"]{}\n[[cluster.floating_ips]]\naddress = \"{FIP}/24\"\ninterface = \"{}\"\n",
            self.rig.cluster_members_toml(),
            self.rig.lb().ext_iface,
        )
    }

    /// The files of node `name`'s daemon: `dir/NAME`, pins in
    /// `/sys/fs/bpf/PREFIX-NAME`.
    pub fn node_files(&self, dir: &Path, name: &str) -> NodeFiles {
        self.rig.node_files(dir, name)
    }

    /// The plan of this network for `lb-ctl cluster init --out dir`: the
    /// key file and TLS material in `dir/lb1`, [`PairNet::cluster_toml`],
    /// both nodes on `ext0` with the files of [`PairNet::node_files`], and
    /// the test's `extras`.
    pub fn plan(&self, dir: &Path, extras: &PlanExtras) -> String {
        let mut plan = format!(
            "[cluster]\nkey_file = \"{}\"\ntls_dir = \"{}\"\n{}{}{}",
            dir.join("lb1/cluster.keys").display(),
            dir.join("lb1/tls").display(),
            extras.cluster_keys,
            self.cluster_toml(),
            extras.cluster_tables,
        );
        for (node, keys) in self.rig.nodes.iter().zip(extras.node_keys) {
            plan.push('\n');
            plan.push_str(
                &self
                    .node_files(dir, node.name)
                    .plan_node_table(node.name, &[node.ext_iface]),
            );
            plan.push_str(keys);
        }
        plan
    }

    /// `bin cluster init` of [`PairNet::plan`] into `dir`, then both
    /// daemons, `lb1` first, each started once its API answers.
    pub fn start_daemons(
        &self,
        bin: &Path,
        dir: &Path,
        extras: &PlanExtras,
    ) -> Result<[DaemonProcess; 2]> {
        let plan = dir.join("plan.toml");
        fs::write(&plan, self.plan(dir, extras))?;
        cluster_init(bin, &plan, dir)?;
        let start = |i: usize| {
            let node = &self.rig.nodes[i];
            DaemonProcess::start(
                &node.ns,
                bin,
                self.node_files(dir, node.name),
                &dir.join(node.name).join("lb.toml"),
            )
        };
        Ok([start(0)?, start(1)?])
    }

    /// Whether node `i` holds the floating IP on `ext0`.
    pub fn holds_fip(&self, i: usize) -> bool {
        let node = &self.rig.nodes[i];
        node.ns
            .ip(["-o", "addr", "show", "dev", node.ext_iface])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {FIP}/24")))
            .unwrap_or(false)
    }

    /// The MAC of node `i`'s `ext0`.
    pub fn mac(&self, i: usize) -> String {
        self.rig.nodes[i].ext_mac()
    }

    /// The client forgets the floating IP's MAC, pings it and says which
    /// MAC answered (None: no answer).
    pub fn client_resolves_fip(&self) -> Option<String> {
        let _ = self.client().ip(["neigh", "flush", "dev", "eth0"]);
        let ping = self
            .client()
            .exec("ping", ["-c", "1", "-W", "1", FIP])
            .ok()?;
        if !ping.status.success() {
            return None;
        }
        let neigh = self
            .client()
            .ip(["neigh", "show", FIP, "dev", "eth0"])
            .ok()?;
        let text = String::from_utf8_lossy(&neigh.stdout).into_owned();
        text.split("lladdr ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    }

    /// Every MAC that answers an ARP request for the floating IP from the
    /// client ([`crate::rig::Rig::neighbour_answers`]).
    pub fn arp_answers(&self) -> Result<Vec<String>> {
        self.rig
            .neighbour_answers(FIP.parse().expect("FIP is an address"))
    }

    /// Sets every link of node `i` up or down (node loss): client side,
    /// backend side, interconnects.
    pub fn node_links(&self, i: usize, up: bool) -> Result<()> {
        let node = &self.rig.nodes[i];
        for dev in node.ifaces() {
            node.ns
                .ip(["link", "set", dev, if up { "up" } else { "down" }])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_rigs_addresses() {
        assert_eq!(FIP, VIP_V4.to_string());
        assert_eq!(CLIENT, CLIENT_V4.to_string());
    }
}
