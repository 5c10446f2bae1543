//! The pair rig with both daemons running and services through the VIP,
//! for the flow replication's rig tests: `lb1` active, `lb2` standby and
//! caught up (it holds the active's flows). The binary is given by the
//! caller (`env!("CARGO_BIN_EXE_lb-ctl")`), as for [`DaemonProcess`].
use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    daemon::{DaemonProcess, cluster_init},
    rig::{NODES, Rig, RigOptions},
    wait::wait_for,
};

/// The pair rig with both daemons running: lb1 active, lb2 standby.
pub struct FlowPair {
    pub rig: Rig,
    pub lb1: DaemonProcess,
    pub lb2: DaemonProcess,
}

impl FlowPair {
    /// Builds the pair rig (`backends` backend hosts), lets `prepare`
    /// start the backends' servers, writes the cluster's plan
    /// ([`Rig::cluster_plan`]) followed by what `tail` gives, runs `bin
    /// cluster init` and starts both daemons; waits until lb1 is active,
    /// lb2 standby and caught up. The plan's last table is lb2's
    /// `[nodes.lb2]`: keys at the start of `tail` go there (`metrics =
    /// "..."`), then its `[[services]]`.
    pub fn start(
        bin: &Path,
        backends: usize,
        prepare: impl FnOnce(&mut Rig) -> Result<()>,
        tail: impl FnOnce(&Rig) -> String,
    ) -> Result<Self> {
        let mut rig = Rig::build(&RigOptions {
            pair: true,
            backends,
            ..Default::default()
        })?;
        prepare(&mut rig)?;
        let dir = rig.dir().to_owned();
        let files = NODES.map(|name| rig.node_files(&dir, name));
        let plan_file = dir.join("plan.toml");
        let mut plan = rig.cluster_plan(&dir, &files);
        plan.push_str(&tail(&rig));
        fs::write(&plan_file, plan)?;
        cluster_init(bin, &plan_file, &dir)?;
        let [f1, f2] = files;
        let lb1 = DaemonProcess::start(&rig.nodes[0].ns, bin, f1, &dir.join("lb1/lb.toml"))?;
        let lb2 = DaemonProcess::start(&rig.nodes[1].ns, bin, f2, &dir.join("lb2/lb.toml"))?;
        wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
            lb1.cluster_role().as_deref() == Some("active")
                && lb2.cluster_role().as_deref() == Some("standby")
        })?;
        wait_for("lb2 caught up", Duration::from_secs(5), || {
            lb2.replication_caught_up()
        })
        .with_context(|| format!("lb1: {}\nlb2: {}", replication(&lb1), replication(&lb2)))?;
        Ok(Self { rig, lb1, lb2 })
    }

    /// Adds `backend` (`ADDRESS:PORT`) to `service` (`tcp/VIP:80`) through
    /// lb1 and waits until lb2 holds the new settings.
    pub fn add_backend(&self, service: &str, backend: &str) -> Result<()> {
        self.lb1.ctl_ok(&["backend", "add", service, backend])?;
        let generation = settings_generation(&self.lb1).context("lb1's generation")?;
        wait_for("lb2 holds the new settings", Duration::from_secs(5), || {
            settings_generation(&self.lb2) == Some(generation)
        })?;
        Ok(())
    }

    /// `lb-ctl failover` on lb1 once it hears lb2 eligible; waits until
    /// lb2 is active and lb1 standby (how long that took after the
    /// request).
    pub fn failover(&self) -> Result<Duration> {
        wait_for("lb1 hears lb2 eligible", Duration::from_secs(5), || {
            self.lb1.peer_eligible()
        })?;
        self.lb1.ctl_ok(&["failover"])?;
        wait_for("lb2 active", Duration::from_secs(5), || {
            self.lb2.cluster_role().as_deref() == Some("active")
                && self.lb1.cluster_role().as_deref() == Some("standby")
        })
    }
}

/// The node's flow replication status (`cluster.replication` of `lb-ctl
/// --json status`; null when it does not answer).
pub fn replication(node: &DaemonProcess) -> serde_json::Value {
    node.status_json()
        .map(|s| s["cluster"]["replication"].clone())
        .unwrap_or_default()
}

/// The node's settings generation.
pub fn settings_generation(node: &DaemonProcess) -> Option<u64> {
    node.status_json()?["generation"].as_u64()
}
