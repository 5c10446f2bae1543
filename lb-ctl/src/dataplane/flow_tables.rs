//! The flow tables' entries for one 5-tuple, found as the program finds
//! them: the connection table (`LB_FLOWS`), the unconfirmed flow table (a
//! set of tags and ways, by the 5-tuple's hash) and the reply table.
use anyhow::Result;
use aya::maps::{Array, HashMap};
use lb_common::{Backend, Flow, FlowKey, NewFlowTags, NewFlowWays, Reply, hash, maps};

use super::{Dataplane, map_ref, optional};

impl Dataplane {
    /// The flow table's entry for a client-side 5-tuple.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        let flows: HashMap<_, FlowKey, Flow> = map_ref(&self.ebpf, maps::FLOWS)?;
        optional(flows.get(key, 0))
    }

    /// The unconfirmed flow table's entry for a client-side 5-tuple (a flow
    /// of which one packet was seen), found as the program finds it.
    pub fn new_flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        let slot = hash::new_flow_slot(&key.src, key.sport, key.proto, key.family);
        let (tags, ways) = self.new_flow_set(slot.set)?;
        Ok(tags
            .tags
            .iter()
            .zip(&ways.ways)
            .find(|(tag, way)| **tag == slot.tag && way.is_flow(key))
            .map(|(_, way)| way.flow()))
    }

    /// The NAT translation of an unconfirmed flow's answer (backend-side
    /// 5-tuple), found as the program finds it.
    pub fn new_reply(&self, key: &FlowKey) -> Result<Option<Reply>> {
        let slot = hash::new_flow_slot(&key.dst, key.dport, key.proto, key.family);
        let (tags, ways) = self.new_flow_set(slot.set)?;
        let backends: Array<_, Backend> = map_ref(&self.ebpf, maps::BACKENDS)?;
        for (tag, way) in tags.tags.iter().zip(ways.ways) {
            if *tag == slot.tag && way.answered_by(key) {
                let backend = backends.get(&way.reply.backend, 0)?;
                if backend.is_source_of(key) {
                    return Ok(Some(way.reply));
                }
            }
        }
        Ok(None)
    }

    /// One set of the unconfirmed flow table: its tags and its ways.
    pub fn new_flow_set(&self, index: u32) -> Result<(NewFlowTags, NewFlowWays)> {
        let tags: Array<_, NewFlowTags> = map_ref(&self.ebpf, maps::NEW_FLOW_TAGS)?;
        let ways: Array<_, NewFlowWays> = map_ref(&self.ebpf, maps::NEW_FLOWS)?;
        Ok((tags.get(&index, 0)?, ways.get(&index, 0)?))
    }

    /// The reply table's entry for a backend-side 5-tuple.
    pub fn reply(&self, key: &FlowKey) -> Result<Option<Reply>> {
        let replies: HashMap<_, FlowKey, Reply> = map_ref(&self.ebpf, maps::REPLIES)?;
        optional(replies.get(key, 0))
    }
}
