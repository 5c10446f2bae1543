//! The unconfirmed flow table (`LB_NEW_FLOWS`): flows of which one packet
//! was seen. A set-associative array, like a CPU cache: the set comes from
//! the client's address and port (see `hash::new_flow_set`), which both
//! directions carry, so one way written on the first packet is found by
//! the client's next packet and by the backend's first answer. A new flow
//! takes a free way of its set, else the oldest: no locks, no lists, no
//! eviction walk (an LRU hash pays those on every insert of a flood). The
//! tags of the ways (0: free) are in a dense table of their own
//! (`LB_NEW_TAGS`, 8 bytes a set), so that a lookup reads one warm line and
//! only the ways whose tag matches, and a new flow's only cold line is the
//! way it writes (a store: the program does not wait for it).
//!
//! Two CPUs writing one way in the same instant could leave it mixed; a
//! way is matched on its whole key and its backend checked as live, and at
//! worst one handshake is picked again by Maglev.

use lb_common::{
    Flow, FlowKey, NEW_FLOW_WAYS, NewFlow, NewFlowTags, NewFlowWays, Reply,
    hash::{self, NewFlowSlot},
};

/// The set and tag of a client-side key (the client is the source).
#[inline(always)]
pub fn client_slot(key: &FlowKey) -> NewFlowSlot {
    hash::new_flow_slot(&key.src, key.sport, key.proto, key.family)
}

/// The set and tag of a backend-side key (the client is the destination).
#[inline(always)]
pub fn reply_slot(key: &FlowKey) -> NewFlowSlot {
    hash::new_flow_slot(&key.dst, key.dport, key.proto, key.family)
}

/// The unconfirmed flow of client-side `key` (of tag `tag`) in a set with
/// what `usable` makes of it (its live backend). The way is freed when the
/// flow is being confirmed (`confirming`) or is no longer usable (its
/// backend went: the flow is picked again). What a match needs is done
/// inside the loop, so that the verifier sees one path after it, not one
/// per way.
///
/// # Safety
/// `tags` and `ways` are value pointers of `LB_NEW_TAGS` and
/// `LB_NEW_FLOWS` from successful lookups of the same set.
#[inline(always)]
pub unsafe fn take_flow<T>(
    tags: *mut NewFlowTags,
    ways: *const NewFlowWays,
    key: &FlowKey,
    tag: u8,
    confirming: bool,
    usable: impl Fn(Flow) -> Option<T>,
) -> Option<T> {
    // SAFETY: per the contract.
    let (tags, ways) = unsafe { (&mut *tags, &*ways) };
    let mut i = 0;
    while i < NEW_FLOW_WAYS as usize {
        if tags.tags[i] == tag && ways.ways[i].is_flow(key) {
            let found = usable(ways.ways[i].flow());
            if confirming || found.is_none() {
                tags.tags[i] = 0;
            }
            return found;
        }
        i += 1;
    }
    None
}

/// The translation of the answer (backend-side `key`, of tag `tag`) of the
/// NAT flow in a set whose backend is the answer's sender (`sent_by(backend
/// id)` says whether the backend has the key's source address and port): a
/// pointer into its way.
#[inline(always)]
pub fn find_reply(
    tags: &NewFlowTags,
    ways: &NewFlowWays,
    key: &FlowKey,
    tag: u8,
    sent_by: impl Fn(u32) -> bool,
) -> Option<*const Reply> {
    let mut i = 0;
    while i < NEW_FLOW_WAYS as usize {
        let way = &ways.ways[i];
        if tags.tags[i] == tag && way.answered_by(key) && sent_by(way.reply.backend) {
            return Some(&way.reply as *const Reply);
        }
        i += 1;
    }
    None
}

/// Writes the new flow of client-side `key` (of tag `tag`) into the first
/// free way of its set, else over the next way of the set's round robin
/// (about the way written longest ago). A way of the same flow was freed
/// by [`take_flow`] when the flow was picked again. Each write is done
/// where its way is chosen, so that the verifier sees one path after this,
/// not one per way. The way is written before its tag: a reader matches
/// only a way whose tag it saw.
///
/// # Safety
/// As for [`take_flow`].
#[inline(always)]
pub unsafe fn remember(
    tags: *mut NewFlowTags,
    ways: *mut NewFlowWays,
    key: &FlowKey,
    tag: u8,
    flow: &Flow,
) {
    // SAFETY: per the contract.
    let (tags, ways) = unsafe { (&mut *tags, &mut *ways) };
    let mut i = 0;
    while i < NEW_FLOW_WAYS as usize {
        if tags.tags[i] == 0 {
            write(&mut ways.ways[i], key, flow);
            tags.tags[i] = tag;
            return;
        }
        i += 1;
    }
    let next = tags.next;
    tags.next = next.wrapping_add(1);
    let victim = (next % NEW_FLOW_WAYS) as usize;
    if let (Some(way), Some(slot)) = (ways.ways.get_mut(victim), tags.tags.get_mut(victim)) {
        // Freed first: a reader never matches a way half written.
        *slot = 0;
        write(way, key, flow);
        *slot = tag;
    }
}

/// Fills `way` in place (no copy on the stack: it has no room).
#[inline(always)]
fn write(way: &mut NewFlow, key: &FlowKey, flow: &Flow) {
    way.set_addrs(key);
    way.reply.vport = key.dport;
    way.reply.pad = [0; 2];
    way.reply.service = flow.service;
    way.reply.backend = flow.backend;
    way.cport = key.sport;
    way.proto = key.proto;
    way.generation = flow.generation;
    way.mode = flow.mode;
    way.family = key.family;
}
