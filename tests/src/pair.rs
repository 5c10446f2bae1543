//! The network of a two-node cluster test: a client and the two nodes on a
//! shared segment (a bridge in a switch namespace), and two interconnects
//! (veths) between the nodes. Unique names; everything goes with the
//! namespaces on Drop.
//!
//! ```text
//!  client ns          switch ns           node ns (x2)
//!  eth0 198.18.0.10 ─ p0 ┐                 
//!                         br0 ─ p1 ───── ext0 198.18.0.1 / .2   hb0 198.18.8.N ─┐
//!                         └──── p2 ───── ext0                   hb1 198.18.9.N ─┤ (veths n1<->n2)
//! ```
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use anyhow::Result;

use crate::{
    daemon::{DaemonProcess, NodeFiles, cluster_init},
    netns::{Netns, run},
    rig::pair::NODES,
};

/// The floating IP the tests move (on `ext0`).
pub const FIP: &str = "198.18.0.100";
/// The client's address (also the NP target).
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

pub struct PairNet {
    pub prefix: String,
    pub client: Netns,
    pub switch: Netns,
    pub nodes: [Netns; 2],
}

impl PairNet {
    pub fn build() -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "lbt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed) + 100
        );
        let switch = Netns::create(&format!("{prefix}-psw"))?;
        let client = Netns::create(&format!("{prefix}-pcl"))?;
        let n1 = Netns::create(&format!("{prefix}-pn1"))?;
        let n2 = Netns::create(&format!("{prefix}-pn2"))?;
        switch.ip(["link", "add", "br0", "type", "bridge"])?;
        switch.ip(["link", "set", "br0", "up"])?;
        for (i, (ns, dev)) in [(&client, "eth0"), (&n1, "ext0"), (&n2, "ext0")]
            .into_iter()
            .enumerate()
        {
            let port = format!("p{i}");
            run(Command::new("ip").args([
                "link",
                "add",
                dev,
                "netns",
                ns.name(),
                "type",
                "veth",
                "peer",
                &port,
                "netns",
                switch.name(),
            ]))?;
            switch.ip(["link", "set", &port, "master", "br0"])?;
            switch.ip(["link", "set", &port, "up"])?;
            ns.ip(["link", "set", dev, "up"])?;
        }
        client.ip(["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        n1.ip(["addr", "add", "198.18.0.1/24", "dev", "ext0"])?;
        n2.ip(["addr", "add", "198.18.0.2/24", "dev", "ext0"])?;
        for (dev, net) in [("hb0", 8), ("hb1", 9)] {
            run(Command::new("ip").args([
                "link",
                "add",
                dev,
                "netns",
                n1.name(),
                "type",
                "veth",
                "peer",
                dev,
                "netns",
                n2.name(),
            ]))?;
            for (ns, host) in [(&n1, 1), (&n2, 2)] {
                ns.ip([
                    "addr",
                    "add",
                    &format!("198.18.{net}.{host}/24"),
                    "dev",
                    dev,
                ])?;
                ns.ip(["link", "set", dev, "up"])?;
            }
        }
        Ok(PairNet {
            prefix,
            client,
            switch,
            nodes: [n1, n2],
        })
    }

    /// The `[cluster]` section of this network (without id and key file).
    pub fn cluster_toml(&self) -> String {
        format!(
            r#"np_targets = ["{CLIENT}"]
[[cluster.servers]]
name = "lb1"
[[cluster.servers]]
name = "lb2"
[[cluster.interconnects]]
name = "hb0"
addresses = ["198.18.8.1", "198.18.8.2"]
[[cluster.interconnects]]
name = "hb1"
addresses = ["198.18.9.1", "198.18.9.2"]
[[cluster.floating_ips]]
address = "{FIP}/24"
interface = "ext0"
"#
        )
    }

    /// The files of node `name`'s daemon: `dir/NAME`, pins in
    /// `/sys/fs/bpf/PREFIX-NAME`.
    pub fn node_files(&self, dir: &Path, name: &str) -> NodeFiles {
        NodeFiles {
            dir: dir.join(name),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}-{name}", self.prefix)),
        }
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
        for (name, keys) in NODES.iter().zip(extras.node_keys) {
            plan.push('\n');
            plan.push_str(&self.node_files(dir, name).plan_node_table(name, &["ext0"]));
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
            let name = NODES[i];
            DaemonProcess::start(
                &self.nodes[i],
                bin,
                self.node_files(dir, name),
                &dir.join(name).join("lb.toml"),
            )
        };
        Ok([start(0)?, start(1)?])
    }

    /// Whether node `i` holds the floating IP on `ext0`.
    pub fn holds_fip(&self, i: usize) -> bool {
        self.nodes[i]
            .ip(["-o", "addr", "show", "dev", "ext0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {FIP}/24")))
            .unwrap_or(false)
    }

    /// The MAC of node `i`'s `ext0`.
    pub fn mac(&self, i: usize) -> String {
        let out = self.nodes[i]
            .ip(["-o", "link", "show", "dev", "ext0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split("link/ether ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_owned()
    }

    /// The client forgets the floating IP's MAC, pings it and says which
    /// MAC answered (None: no answer).
    pub fn client_resolves_fip(&self) -> Option<String> {
        let _ = self.client.ip(["neigh", "flush", "dev", "eth0"]);
        let ping = self.client.exec("ping", ["-c", "1", "-W", "1", FIP]).ok()?;
        if !ping.status.success() {
            return None;
        }
        let neigh = self.client.ip(["neigh", "show", FIP, "dev", "eth0"]).ok()?;
        let text = String::from_utf8_lossy(&neigh.stdout).into_owned();
        text.split("lladdr ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    }

    /// Every MAC that answers an ARP request for the floating IP from the
    /// client (captured while the client forgets and resolves it again).
    pub fn arp_answers(&self) -> Result<Vec<String>> {
        let capture = self
            .client
            .command("timeout")
            .args([
                "1.5",
                "tcpdump",
                "-l",
                "-n",
                "-i",
                "eth0",
                "arp and arp[6:2] = 2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = self.client.ip(["neigh", "flush", "dev", "eth0"]);
        let _ = self.client.exec("ping", ["-c", "1", "-W", "1", FIP]);
        let out = capture.wait_with_output()?;
        let mut macs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("Reply {FIP} is-at")))
            .filter_map(|l| l.split("is-at ").nth(1))
            .filter_map(|rest| rest.split([',', ' ']).next())
            .map(str::to_owned)
            .collect();
        macs.sort();
        macs.dedup();
        Ok(macs)
    }

    /// Sets every link of node `i` up or down (node loss).
    pub fn node_links(&self, i: usize, up: bool) -> Result<()> {
        for dev in ["ext0", "hb0", "hb1"] {
            self.nodes[i].ip(["link", "set", dev, if up { "up" } else { "down" }])?;
        }
        Ok(())
    }
}
