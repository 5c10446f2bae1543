//! The flow tables: the backend a packet's flow is pinned to (the
//! connection table `LB_FLOWS`, or the unconfirmed flows of
//! unconfirmed.rs), a new flow (picked by maglev.rs) pinned as unconfirmed,
//! the client's second packet that confirms a flow, and the reply entries of
//! NAT flows (`LB_REPLIES`, rebuilt when evicted alone).
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    maps::LruHashMap,
    programs::XdpContext,
};
use lb_common::{
    Backend, Counter, Flow, FlowKey, IPPROTO_TCP, MAX_BACKEND_VIPS, NewFlowTags, NewFlowWays,
    Reply, Service, ServiceKey, backend_flags, hash, mode,
};

use crate::{
    counters::count,
    filter,
    maglev::new_pick,
    maps::{
        LB_BACKEND_VIPS, LB_BACKENDS, LB_FLOW_FILTER, LB_FLOW_HASH, LB_FLOW_RECORDS, LB_FLOWS,
        LB_NEW_FLOWS, LB_NEW_TAGS, LB_REPLICATE, LB_REPLIES,
    },
    packet::Packet,
    report,
    role::is_standby,
    send::forward,
    unconfirmed,
};

/// The reply entry of a confirmed NAT flow, rebuilt from its flow's entry
/// when `LB_REPLIES` pushed it out while `LB_FLOWS` kept the flow (the two
/// tables evict apart: a server that speaks first after a pause). The
/// backend's address and port give its NAT services (`LB_BACKEND_VIPS`),
/// each of which gives the flow's key from the client's side; the flow
/// must be pinned to that very backend (id and generation).
#[inline(always)]
pub(crate) fn rebuilt_reply(key: &FlowKey) -> Option<Reply> {
    let backend_key = ServiceKey {
        addr: key.src,
        port: key.sport,
        proto: key.proto,
        family: key.family,
    };
    let vips = LB_BACKEND_VIPS.get_ptr(&backend_key)?;
    // SAFETY: a map value pointer from a successful lookup.
    let vips = unsafe { &*vips };
    let mut i = 0;
    while i < MAX_BACKEND_VIPS {
        let vip = &vips.vips[i];
        if (i as u32) < vips.count {
            let flow_key = FlowKey {
                src: key.dst,
                dst: vip.vip,
                sport: key.dport,
                dport: vip.vport,
                proto: key.proto,
                family: key.family,
                pad: [0; 2],
            };
            if let Some((flow, _)) = pinned_flow(&LB_FLOWS, &flow_key)
                && flow.backend == vip.backend
                && flow.mode == mode::NAT
            {
                let reply = Reply {
                    vip: vip.vip,
                    vport: vip.vport,
                    pad: [0; 2],
                    service: flow.service,
                    backend: flow.backend,
                };
                let _ = LB_REPLIES.insert(key, &reply, 0);
                return Some(reply);
            }
        }
        i += 1;
    }
    None
}

/// Whether the SYN of client-side `key` is a new flow's: its bit in the
/// flow filter is clear (the first packet of a flood's, of every
/// connection but a reused port's), so the connection table cannot hold
/// it. Only SYNs ask (a confirmed flow's packets are not SYNs). The flow
/// hash, taken for the filter, is left in `LB_FLOW_HASH` for
/// `lb_unconfirmed`'s Maglev pick.
#[inline(always)]
pub(crate) fn is_new_flow(key: &FlowKey) -> bool {
    let flow_hash = hash::flow_hash(key);
    if filter::may_hold(&LB_FLOW_FILTER, hash::flow_filter_bit_of(flow_hash)) {
        return false;
    }
    if let Some(memo) = LB_FLOW_HASH.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe {
            (*memo).key = *key;
            (*memo).hash = flow_hash;
        }
    }
    true
}

/// A packet of a pinned flow: to its backend, in the mode it was pinned
/// with.
#[inline(always)]
pub(crate) fn to_pinned_backend(
    ctx: &XdpContext,
    pkt: &Packet,
    (flow, backend): (Flow, Backend),
) -> (Counter, u32) {
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    forward(
        ctx,
        pkt,
        flow.service,
        flow.mode,
        flow.backend,
        &backend,
        false,
    )
}

/// A packet to a service whose flow is not in the connection table: the
/// second packet of an unconfirmed flow (which it confirms, unless it is a
/// SYN again), or the first packet of a flow (or one whose backend is gone):
/// a new pick, pinned as unconfirmed.
#[inline(always)]
pub(crate) fn to_service(ctx: &XdpContext, pkt: &Packet, service: Service) -> (Counter, u32) {
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    let slot = unconfirmed::client_slot(&pkt.key);
    let set = LB_NEW_TAGS
        .get_ptr_mut(slot.set)
        .zip(LB_NEW_FLOWS.get_ptr_mut(slot.set));
    // A packet other than a SYN confirms the flow: its way is freed.
    let pinned = set.and_then(|(tags, ways)| {
        // SAFETY: map value pointers from successful lookups of one set.
        unsafe {
            unconfirmed::take_flow(tags, ways, &pkt.key, slot.tag, !pkt.syn, with_live_backend)
        }
    });
    let (flow, backend, new_flow) = match pinned {
        Some((flow, backend)) => {
            if !pkt.syn {
                confirm(pkt, &flow, &backend, &service);
            }
            (flow, backend, false)
        }
        None => {
            if pkt.key.proto == IPPROTO_TCP && !pkt.syn {
                count(Counter::FlowsMidstream);
            }
            let Some((flow, backend)) = new_pick(pkt, &service) else {
                return (Counter::DropNoBackend, XDP_DROP);
            };
            if let Some((tags, ways)) = set {
                // SAFETY: as above.
                unsafe { pin(tags, ways, slot.tag, pkt, &flow) };
            }
            (flow, backend, true)
        }
    };
    forward(
        ctx,
        pkt,
        flow.service,
        flow.mode,
        flow.backend,
        &backend,
        new_flow,
    )
}

/// The flow's entry in `table` and its backend, if the flow is pinned there
/// and its backend is still the same one and live.
#[inline(always)]
pub(crate) fn pinned_flow(
    table: &LruHashMap<FlowKey, Flow>,
    key: &FlowKey,
) -> Option<(Flow, Backend)> {
    let flow = table.get_ptr(key)?;
    // SAFETY: a map value pointer from a successful lookup.
    let flow = unsafe { *flow };
    let backend = live_backend(flow.backend)?;
    (backend.generation == flow.generation).then_some((flow, backend))
}

/// The flow with its backend, if that is still the same one and live.
#[inline(always)]
fn with_live_backend(flow: Flow) -> Option<(Flow, Backend)> {
    let backend = live_backend(flow.backend)?;
    (backend.generation == flow.generation).then_some((flow, backend))
}

/// The unconfirmed flow of client-side `key` and its live backend.
#[inline(always)]
pub(crate) fn unconfirmed_flow(key: &FlowKey) -> Option<(Flow, Backend)> {
    let slot = unconfirmed::client_slot(key);
    let tags = LB_NEW_TAGS.get_ptr_mut(slot.set)?;
    let ways = LB_NEW_FLOWS.get_ptr(slot.set)?;
    // SAFETY: map value pointers from successful lookups of one set.
    unsafe { unconfirmed::take_flow(tags, ways, key, slot.tag, false, with_live_backend) }
}

/// How to translate the answer (backend-side `key`) of an unconfirmed NAT
/// flow: a pointer into its way.
#[inline(always)]
pub(crate) fn unconfirmed_reply(key: &FlowKey) -> Option<*const Reply> {
    let slot = unconfirmed::reply_slot(key);
    let tags = LB_NEW_TAGS.get(slot.set)?;
    let ways = LB_NEW_FLOWS.get_ptr(slot.set)?;
    // SAFETY: a map value pointer from a successful lookup.
    let ways = unsafe { &*ways };
    unconfirmed::find_reply(
        tags,
        ways,
        key,
        slot.tag,
        #[inline(always)]
        |id| LB_BACKENDS.get(id).is_some_and(|b| b.is_source_of(key)),
    )
}

/// The backend at `id` if it may take packets.
#[inline(always)]
pub(crate) fn live_backend(id: u32) -> Option<Backend> {
    let backend = *LB_BACKENDS.get(id)?;
    (backend.flags & backend_flags::LIVE != 0).then_some(backend)
}

/// Records the new flow's pick as unconfirmed in its set (for NAT also how
/// to translate its answers): a flood of new flows churns only this table,
/// never the confirmed flows of [`confirm`].
///
/// # Safety
/// `tags` and `ways` are value pointers of `LB_NEW_TAGS` and
/// `LB_NEW_FLOWS` from successful lookups of the same set.
#[inline(always)]
unsafe fn pin(tags: *mut NewFlowTags, ways: *mut NewFlowWays, tag: u8, pkt: &Packet, flow: &Flow) {
    count(Counter::FlowsUnconfirmed);
    // SAFETY: per the contract.
    unsafe { unconfirmed::remember(tags, ways, &pkt.key, tag, flow) };
}

/// The client's second packet confirms the flow: it moves into the
/// connection table (and for NAT its reply translation into the reply
/// table), and is reported for replication (see report.rs).
#[inline(always)]
fn confirm(pkt: &Packet, flow: &Flow, backend: &Backend, service: &Service) {
    count(Counter::FlowsConfirmed);
    if flow.mode == mode::NAT {
        let (key, reply) = reply_entry(pkt, flow, backend);
        let _ = LB_REPLIES.insert(&key, &reply, 0);
    }
    // An error here means the next packet confirms again.
    if LB_FLOWS.insert(&pkt.key, flow, 0).is_ok() {
        filter::add(&LB_FLOW_FILTER, &pkt.key);
        let sorry = flow.backend == service.sorry;
        let report = report::new_flow(
            &LB_REPLICATE,
            &LB_FLOW_RECORDS,
            &pkt.key,
            flow,
            backend,
            sorry,
        );
        if report == report::Report::RingFull {
            count(Counter::FlowRecordsLost);
        }
    }
}

/// A NAT flow's reply key (the backend's packets as they arrive) and how
/// to translate them back.
#[inline(always)]
fn reply_entry(pkt: &Packet, flow: &Flow, backend: &Backend) -> (FlowKey, Reply) {
    let key = FlowKey {
        src: backend.addr,
        dst: pkt.key.src,
        sport: backend.port,
        dport: pkt.key.sport,
        proto: pkt.key.proto,
        family: pkt.key.family,
        pad: [0; 2],
    };
    let reply = Reply {
        vip: pkt.key.dst,
        vport: pkt.key.dport,
        pad: [0; 2],
        service: flow.service,
        backend: flow.backend,
    };
    (key, reply)
}
