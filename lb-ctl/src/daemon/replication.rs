//! The daemon's side of flow replication (see `cluster::replicate`): the
//! switch and the data plane's handles the replication's task takes at
//! start, the snapshot of the tables a bulk copy is named through, and the
//! standby's writes of replicated flows into its tables.
use anyhow::Result;

use crate::{
    balancer::Tables,
    cluster::replicate::Applied,
    dataplane::{FlowRecords, FlowsReader},
    replication::{
        record::WireFlow,
        translate::{self, NotApplied},
    },
};

use super::Daemon;

impl Daemon {
    /// Makes the program report new flows (a clustered node) and hands out
    /// the ring's reader and a reader of the flow table of its own.
    pub fn replication_handles(&mut self) -> Result<(FlowRecords, FlowsReader)> {
        self.dataplane.set_replicate(true)?;
        Ok((
            self.dataplane.flow_records()?,
            self.dataplane.flows_reader()?,
        ))
    }

    /// What a bulk copy names the dumped flows through: services and
    /// backends (not the Maglev tables, which it does not need).
    pub fn flow_tables(&self) -> Tables {
        let tables = self.balancer.tables();
        Tables {
            services: tables.services.clone(),
            backends: tables.backends.clone(),
            maglev: Default::default(),
        }
    }

    /// The active's flows, written into this node's flow table (and reply
    /// table for NAT) under its own ids; flows of a service or backend this
    /// node does not have are counted, not written.
    pub fn apply_flows(&mut self, flows: &[WireFlow]) -> Result<Applied, String> {
        let mut applied = Applied::default();
        let mut entries = Vec::with_capacity(flows.len());
        let mut replies = Vec::new();
        for wire in flows {
            match translate::to_entries(wire, &self.balancer) {
                Ok(e) => {
                    entries.push(e.flow);
                    replies.extend(e.reply);
                }
                Err(NotApplied::UnknownService(_)) => applied.unknown_service += 1,
                Err(NotApplied::UnknownBackend { .. }) => applied.unknown_backend += 1,
            }
        }
        // Replies first: a flow's first packet after a takeover finds its
        // way back as soon as it finds its backend.
        self.dataplane
            .write_replies(&replies)
            .and_then(|()| self.dataplane.write_flows(&entries))
            .map_err(|err| format!("{err:#}"))?;
        applied.written = entries.len() as u64;
        Ok(applied)
    }
}
