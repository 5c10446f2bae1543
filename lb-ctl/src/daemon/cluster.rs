//! The daemon's side of the pair: the role map the cluster's event loop
//! asks for, the lease and floating IPs the data plane fences with, the
//! cluster's status and requests, and the alerts of the cluster's events
//! and of the settings pushes.
use anyhow::Result;

use crate::{
    cluster::{
        node::ClusterEvent,
        serve::{self, ClusterLink},
        sync,
    },
    role::Role,
};

use super::Daemon;

impl Daemon {
    /// The cluster changed this node's role: the data plane's role map
    /// first (forwarding starts or stops at once), then the daemon's state.
    pub fn set_role(&mut self, role: Role) -> Result<()> {
        self.dataplane.set_role(role)?;
        self.role = role;
        Ok(())
    }

    /// A handle of the lease map for the cluster's event loop (see
    /// `lb_common::maps::LEASE`).
    pub fn lease_handle(&self) -> Result<crate::dataplane::Lease> {
        self.dataplane.lease_handle()
    }

    /// The floating IPs the data plane fences (see `lb_common::maps::LEASE`).
    pub fn set_floating(&mut self, addresses: &[std::net::IpAddr]) -> Result<()> {
        self.dataplane.set_floating(addresses)
    }

    /// Connects the cluster's status and requests (see `cluster::serve`).
    pub fn attach_cluster(&mut self, link: ClusterLink) {
        self.cluster = Some(link);
    }

    /// The node's role in the data plane.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the operator's cluster requests go, when clustered.
    pub fn cluster(&self) -> Option<&ClusterLink> {
        self.cluster.as_ref()
    }

    /// A notable event of the cluster: its alert.
    pub fn on_cluster_event(&self, event: &ClusterEvent) {
        let (level, name, message) = serve::alert(event);
        self.alerts.record(level, name, message);
    }

    /// A push of the settings `generation` to the peer ended with `result`:
    /// the status shows it, and the alert log has `sync_failed` on every
    /// failure and `sync_recovered` on the first success after one.
    pub fn on_push(&mut self, generation: u64, result: &Result<String, String>) {
        let Some(link) = &mut self.cluster else {
            return;
        };
        let (alert, state) = sync::push_outcome(link.sync.as_ref(), generation, result);
        if let Some((level, name, message)) = alert {
            self.alerts.record(level, name, message);
        }
        link.sync = Some(state);
    }
}
