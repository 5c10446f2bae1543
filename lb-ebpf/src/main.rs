//! lb's XDP program: L4 load balancing in NAT and DSR modes.
//!
//! A packet to a service (VIP, port, protocol) is pinned to a backend: the
//! one its flow already has, or for a new flow the one in the service's
//! Maglev table at the flow's hash. In NAT mode the destination becomes the
//! backend and the backend's replies get the VIP back as their source; in DSR
//! mode only the MAC changes. The FIB says where the packet goes; it leaves
//! by XDP_TX or a DEVMAP redirect. Everything else goes to the kernel
//! untouched (XDP_PASS), and every outcome is counted.
//!
//! Rules for this file: one concern per function; every packet access is
//! checked against `data_end` where it happens (`packet.rs`); constants and
//! map layouts come from `lb-common`.
#![no_std]
#![no_main]
// The flow filter's atomic or (filter.rs).
#![feature(core_intrinsics)]
// `#[inline(always)]` on a closure (unconfirmed_reply).
#![feature(stmt_expr_attributes)]
#![allow(internal_features)]
// Map keys are passed by reference on purpose: a copy would take room on the
// 512-byte BPF stack and instructions on every packet.
#![allow(clippy::needless_borrows_for_generic_args)]

mod baseline;
mod bench;
mod csum;
mod fence;
mod filter;
mod forward;
mod icmp;
mod packet;
mod report;
mod rewrite;
mod time_exceeded;
mod unconfirmed;

use aya_ebpf::{
    bindings::{
        BPF_F_MMAPABLE, BPF_F_NO_PREALLOC,
        xdp_action::{XDP_DROP, XDP_PASS},
    },
    helpers::generated::bpf_jiffies64,
    macros::{map, xdp},
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::XdpContext,
};
use lb_common::{
    Backend, BackendVips, CLIENT_HOP_SLOTS, ClientHop, Counter, FLOW_FILTER_ENTRIES,
    FLOW_RECORDS_BYTES, FenceCheck, FloatingKey, Flow, FlowHashMemo, FlowKey, Fragment,
    FragmentKey, IPPROTO_TCP, IcmpBudget, JUMP_ICMP, JUMP_SLOTS, JUMP_TTL, JUMP_UNCONFIRMED,
    MAX_BACKEND_VIPS, MAX_BACKENDS, MAX_FLOATING, MAX_FLOWS, MAX_FRAGMENTS, MAX_SERVICES,
    MAX_TX_PORTS, MaglevTable, NEW_FLOW_SETS, NEXTHOP_TTL_JIFFIES, NO_BACKEND, NewFlowTags,
    NewFlowWays, NextHop, Reply, SERVICE_ADDR_WORDS, Service, ServiceKey, Settings, Traffic,
    backend_flags, fragment_kind, hash, mode, role,
};

use crate::{
    forward::{Route, fib, fib_with_mtu, transmit},
    packet::{Fragmentation, Packet},
    rewrite::{Side, rewrite},
};

#[map(name = "LB_SERVICES")]
static LB_SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);
#[map(name = "LB_BACKENDS")]
static LB_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_MAGLEV")]
static LB_MAGLEV: HashMap<u32, MaglevTable> =
    HashMap::with_max_entries(MAX_SERVICES, BPF_F_NO_PREALLOC);
#[map(name = "LB_FLOWS")]
static LB_FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map(name = "LB_REPLIES")]
static LB_REPLIES: LruHashMap<FlowKey, Reply> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map(name = "LB_FLOW_FILTER")]
static LB_FLOW_FILTER: Array<u64> = Array::with_max_entries(FLOW_FILTER_ENTRIES, BPF_F_MMAPABLE);
#[map(name = "LB_NEW_FLOWS")]
static LB_NEW_FLOWS: Array<NewFlowWays> = Array::with_max_entries(NEW_FLOW_SETS, 0);
#[map(name = "LB_NEW_TAGS")]
static LB_NEW_TAGS: Array<NewFlowTags> = Array::with_max_entries(NEW_FLOW_SETS, 0);
#[map(name = "LB_BACKEND_VIPS")]
static LB_BACKEND_VIPS: HashMap<ServiceKey, BackendVips> =
    HashMap::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_SERVICE_ADDRS")]
static LB_SERVICE_ADDRS: Array<u64> = Array::with_max_entries(SERVICE_ADDR_WORDS, 0);
#[map(name = "LB_SETTINGS")]
static LB_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map(name = "LB_TX_PORTS")]
static LB_TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);
#[map(name = "LB_NEXTHOPS")]
static LB_NEXTHOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_CLIENT_HOPS")]
static LB_CLIENT_HOPS: PerCpuArray<ClientHop> = PerCpuArray::with_max_entries(CLIENT_HOP_SLOTS, 0);
#[map(name = "LB_FRAGMENTS")]
static LB_FRAGMENTS: LruHashMap<FragmentKey, Fragment> =
    LruHashMap::with_max_entries(MAX_FRAGMENTS, 0);
#[map(name = "LB_ICMP_BUDGET")]
static LB_ICMP_BUDGET: PerCpuArray<IcmpBudget> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_JUMP")]
static LB_JUMP: ProgramArray = ProgramArray::with_max_entries(JUMP_SLOTS, 0);
#[map(name = "LB_STATS")]
static LB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);
#[map(name = "LB_SVC_STATS")]
static LB_SVC_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map(name = "LB_BE_STATS")]
static LB_BE_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_LEASE")]
static LB_LEASE: Array<u64> = Array::with_max_entries(1, 0);
#[map(name = "LB_FLOW_HASH")]
static LB_FLOW_HASH: PerCpuArray<FlowHashMemo> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_FENCE_CHECK")]
static LB_FENCE_CHECK: PerCpuArray<FenceCheck> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_REPLICATE")]
static LB_REPLICATE: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "LB_FLOW_RECORDS")]
static LB_FLOW_RECORDS: RingBuf = RingBuf::with_byte_size(FLOW_RECORDS_BYTES, 0);
#[map(name = "LB_FLOATING")]
static LB_FLOATING: HashMap<FloatingKey, u8> = HashMap::with_max_entries(MAX_FLOATING, 0);

#[xdp(frags)]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    if fenced() && fence::for_floating_ip(&ctx, &LB_FLOATING) {
        return counted((Counter::DropFenced, XDP_DROP));
    }
    match packet::parse(&ctx) {
        Ok(pkt) => counted(handle(&ctx, &pkt)),
        Err(Counter::PassIcmp) => {
            // ICMP errors are handled by `lb_icmp`, a program of its own: the
            // BPF stack would not hold both paths. Only if the jump fails
            // (the program is not in the jump table) does this go on.
            // SAFETY: the jump table holds only XDP programs of this object.
            unsafe { LB_JUMP.tail_call(&ctx, JUMP_ICMP) };
            counted((Counter::PassIcmp, XDP_PASS))
        }
        // RFC 1812: a router discards a packet whose header checksum is
        // wrong (the kernel's stack would too).
        Err(Counter::DropIpv4Checksum) => counted((Counter::DropIpv4Checksum, XDP_DROP)),
        Err(counter) => counted((counter, XDP_PASS)),
    }
}

/// Counts the outcome; returns the action.
#[inline(always)]
fn counted((counter, action): (Counter, u32)) -> u32 {
    count(counter);
    action
}

/// ICMP and ICMPv6 packets, reached from `lb_xdp` by a tail call.
#[xdp(frags)]
pub fn lb_icmp(ctx: XdpContext) -> u32 {
    counted(icmp_error(&ctx))
}

/// A packet to a NAT service whose TTL or hop limit expires here, reached
/// from `lb_xdp` by a tail call (the BPF stack would not hold both): parsed
/// again, answered with an ICMP time exceeded.
#[xdp(frags)]
pub fn lb_ttl_expired(ctx: XdpContext) -> u32 {
    match packet::parse(&ctx) {
        Ok(pkt) if pkt.ttl <= 1 => counted(time_exceeded::answer(
            &ctx,
            &pkt,
            &LB_TX_PORTS,
            &LB_ICMP_BUDGET,
        )),
        _ => counted((Counter::DropTtl, XDP_DROP)),
    }
}

/// A packet without a confirmed flow, reached from `lb_xdp` by a tail call
/// (the verifier's budget for one program would not hold both): to a
/// service (a new or unconfirmed flow, see [`to_service`]), the answer of
/// an unconfirmed NAT flow (a SYN-ACK, a first answer), else not ours.
/// Parsed again.
#[xdp(frags)]
pub fn lb_unconfirmed(ctx: XdpContext) -> u32 {
    let Ok(pkt) = packet::parse(&ctx) else {
        return counted((Counter::PassNotService, XDP_PASS));
    };
    if pkt.fragment == Fragmentation::Later {
        return counted((Counter::PassFragment, XDP_PASS));
    }
    if maybe_service(&pkt.key)
        && let Some(service) = LB_SERVICES.get_ptr(&service_key(&pkt))
    {
        // SAFETY: a map value pointer from a successful lookup.
        return counted(to_service(&ctx, &pkt, unsafe { *service }));
    }
    // One inlined `nat_reply` for both (each copy takes the verifier's
    // budget once per path the parser leaves).
    let reply = match unconfirmed_reply(&pkt.key) {
        // SAFETY: a map value pointer from a successful lookup.
        Some(reply) => unsafe { *reply },
        None => match rebuilt_reply(&pkt.key) {
            Some(reply) => {
                count(Counter::RepliesRebuilt);
                reply
            }
            None => return counted((Counter::PassNotService, XDP_PASS)),
        },
    };
    counted(nat_reply(&ctx, &pkt, reply))
}

/// The reply entry of a confirmed NAT flow, rebuilt from its flow's entry
/// when `LB_REPLIES` pushed it out while `LB_FLOWS` kept the flow (the two
/// tables evict apart: a server that speaks first after a pause). The
/// backend's address and port give its NAT services (`LB_BACKEND_VIPS`),
/// each of which gives the flow's key from the client's side; the flow
/// must be pinned to that very backend (id and generation).
#[inline(always)]
fn rebuilt_reply(key: &FlowKey) -> Option<Reply> {
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

/// False when no service has the destination address (its bit in
/// `LB_SERVICE_ADDRS` is clear); true when one may have it.
#[inline(always)]
fn maybe_service(key: &FlowKey) -> bool {
    let bit = hash::service_addr_bit(&key.dst, key.family);
    LB_SERVICE_ADDRS
        .get(bit / 64)
        .is_none_or(|word| word & (1 << (bit % 64)) != 0)
}

/// The service key of the packet's destination.
#[inline(always)]
fn service_key(pkt: &Packet) -> ServiceKey {
    ServiceKey {
        addr: pkt.key.dst,
        port: pkt.key.dport,
        proto: pkt.key.proto,
        family: pkt.key.family,
    }
}

/// A packet to a service, a NAT reply from a backend, or neither.
#[inline(always)]
fn handle(ctx: &XdpContext, pkt: &Packet) -> (Counter, u32) {
    if pkt.fragment == Fragmentation::Later {
        return later_fragment(ctx, pkt);
    }
    // A clear bit: no service has the destination, so no flow either, and
    // the reply table is the one lookup (the answer of a NAT flow).
    if maybe_service(&pkt.key) {
        // A new flow's SYN: `lb_unconfirmed` looks its service up. (A
        // SYN-ACK whose client shares the bit of a service's address goes
        // there too, where its reply entry is found or rebuilt.)
        if pkt.syn && is_new_flow(&pkt.key) {
            return to_unconfirmed(ctx);
        }
        if let Some(pinned) = pinned_flow(&LB_FLOWS, &pkt.key) {
            return to_pinned_backend(ctx, pkt, pinned);
        }
        if LB_SERVICES.get_ptr(&service_key(pkt)).is_some() {
            return to_unconfirmed(ctx);
        }
    }
    if let Some(reply) = LB_REPLIES.get_ptr(&pkt.key) {
        // SAFETY: a map value pointer from a successful lookup.
        return nat_reply(ctx, pkt, unsafe { *reply });
    }
    to_unconfirmed(ctx)
}

/// Whether the SYN of client-side `key` is a new flow's: its bit in the
/// flow filter is clear (the first packet of a flood's, of every
/// connection but a reused port's), so the connection table cannot hold
/// it. Only SYNs ask (a confirmed flow's packets are not SYNs). The flow
/// hash, taken for the filter, is left in `LB_FLOW_HASH` for
/// `lb_unconfirmed`'s Maglev pick.
#[inline(always)]
fn is_new_flow(key: &FlowKey) -> bool {
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

/// A new or unconfirmed flow to a service, the answer of an unconfirmed
/// NAT flow, or not ours: `lb_unconfirmed`.
#[inline(always)]
fn to_unconfirmed(ctx: &XdpContext) -> (Counter, u32) {
    // SAFETY: the jump table holds only XDP programs of this object.
    unsafe { LB_JUMP.tail_call(ctx, JUMP_UNCONFIRMED) };
    // Only if the jump fails (the program is not in the jump table).
    (Counter::PassNotService, XDP_PASS)
}

/// A fragment without ports: it follows its datagram's first fragment, if
/// that went through here (see [`remember_fragment`]); else the kernel's.
#[inline(always)]
fn later_fragment(ctx: &XdpContext, pkt: &Packet) -> (Counter, u32) {
    let Some(entry) = LB_FRAGMENTS.get_ptr(&fragment_key(pkt)) else {
        return (Counter::PassFragment, XDP_PASS);
    };
    // SAFETY: a map value pointer from a successful lookup.
    let entry = unsafe { *entry };
    if entry.kind == fragment_kind::REPLY {
        let reply = Reply {
            vip: entry.vip,
            vport: [0; 2],
            pad: [0; 2],
            service: entry.service,
            backend: entry.backend,
        };
        return nat_reply(ctx, pkt, reply);
    }
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    // Only to the very backend the first fragment went to.
    let Some(backend) =
        live_backend(entry.backend).filter(|backend| backend.generation == entry.generation)
    else {
        return (Counter::PassFragment, XDP_PASS);
    };
    let service_mode = if entry.kind == fragment_kind::DSR {
        mode::DSR
    } else {
        mode::NAT
    };
    forward(
        ctx,
        pkt,
        entry.service,
        service_mode,
        entry.backend,
        &backend,
        false,
    )
}

/// A first fragment records where its datagram goes, for the later
/// fragments. A full table evicts its least recently used datagram.
#[inline(always)]
fn remember_fragment(
    pkt: &Packet,
    kind: u32,
    backend: u32,
    generation: u32,
    service: u32,
    vip: &[u8; 16],
) {
    let entry = Fragment {
        kind,
        backend,
        generation,
        service,
        vip: *vip,
    };
    let _ = LB_FRAGMENTS.insert(&fragment_key(pkt), &entry, 0);
}

/// The key of the datagram a fragment belongs to.
#[inline(always)]
fn fragment_key(pkt: &Packet) -> FragmentKey {
    FragmentKey {
        src: pkt.key.src,
        dst: pkt.key.dst,
        id: pkt.frag_id,
        proto: pkt.key.proto,
        family: pkt.key.family,
        pad: [0; 2],
    }
}

/// An ICMP error about a flow goes to the flow's other end: from the
/// client's side to the flow's backend, from the backend's side (NAT) to the
/// client (see icmp.rs). Anything else ICMP goes to the kernel.
#[inline(always)]
fn icmp_error(ctx: &XdpContext) -> (Counter, u32) {
    let mut err = icmp::IcmpError::new();
    if !icmp::parse(ctx, &mut err) {
        return (Counter::PassIcmp, XDP_PASS);
    }
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    // From the client's side the quoted packet reversed is the flow's key,
    // from the backend's side its NAT reply key.
    // The reply tables are looked up only when the flow tables miss.
    let flow = pinned_flow(&LB_FLOWS, &err.flow).or_else(|| unconfirmed_flow(&err.flow));
    let towards = if let Some((flow, backend)) = flow {
        if flow.mode == mode::DSR {
            icmp::Towards::DsrBackend(backend)
        } else {
            icmp::Towards::NatBackend(backend)
        }
    } else if let Some(reply) = LB_REPLIES
        .get_ptr(&err.flow)
        .or_else(|| unconfirmed_reply(&err.flow))
    {
        // SAFETY: a map value pointer from a successful lookup (read in
        // place: the stack has no room for a copy).
        icmp::Towards::Client(unsafe { &*reply })
    } else {
        return (Counter::PassIcmp, XDP_PASS);
    };
    let (counter, action) = icmp_send(ctx, &err, &towards);
    match counter {
        // Counted apart from the flows' own packets.
        Counter::Forwarded => (Counter::ForwardedIcmp, action),
        other => (other, action),
    }
}

/// The error translated (NAT) and sent where the FIB says: to the backend
/// from where the error came from, to the client as the flow's replies go
/// (from the VIP). One FIB lookup (no next-hop cache: errors are rare) for
/// every case, as each inlined lookup takes its own room on the stack.
#[inline(always)]
fn icmp_send(ctx: &XdpContext, err: &icmp::IcmpError, towards: &icmp::Towards) -> (Counter, u32) {
    let dsr = matches!(towards, icmp::Towards::DsrBackend(_));
    if !dsr && err.outer.ttl <= 1 {
        return (Counter::PassTtl, XDP_PASS);
    }
    let (src, dst) = match towards {
        icmp::Towards::DsrBackend(backend) | icmp::Towards::NatBackend(backend) => {
            (&err.outer.key.src, &backend.addr)
        }
        icmp::Towards::Client(reply) => (&reply.vip, &err.outer.key.dst),
    };
    match fib(ctx, &err.outer, src, dst) {
        Route::Forward {
            ifindex,
            smac,
            dmac,
        } => {
            if !icmp::translate(ctx, err, towards, true) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            transmit(ctx, &LB_TX_PORTS, ifindex, smac, dmac)
        }
        // As for the flow's packets: the kernel holds the VIP and would
        // answer for it (see dsr_forward).
        Route::NoNeighbour if dsr => (Counter::DropNoNeighbour, XDP_DROP),
        Route::NoNeighbour => {
            if !icmp::translate(ctx, err, towards, false) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            (Counter::PassNoNeighbour, XDP_PASS)
        }
        Route::Miss => (Counter::PassFibMiss, XDP_PASS),
    }
}

/// A packet of a pinned flow: to its backend, in the mode it was pinned
/// with.
#[inline(always)]
fn to_pinned_backend(
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
fn to_service(ctx: &XdpContext, pkt: &Packet, service: Service) -> (Counter, u32) {
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

/// Counts the packet for its service and backend and sends it on.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    pkt: &Packet,
    service: u32,
    service_mode: u32,
    id: u32,
    backend: &Backend,
    new_flow: bool,
) -> (Counter, u32) {
    let bytes = u64::from(pkt.frame_len);
    count_traffic(&LB_SVC_STATS, service, bytes, new_flow);
    count_traffic(&LB_BE_STATS, id, bytes, new_flow);
    if pkt.fragment == Fragmentation::First {
        let kind = if service_mode == mode::DSR {
            fragment_kind::DSR
        } else {
            fragment_kind::NAT
        };
        remember_fragment(pkt, kind, id, backend.generation, service, &[0; 16]);
    }
    if service_mode == mode::DSR {
        dsr_forward(ctx, pkt, id, backend)
    } else {
        nat_forward(ctx, pkt, id, backend)
    }
}

/// The service's Maglev pick for this flow (or its sorry server).
#[inline(always)]
fn new_pick(pkt: &Packet, service: &Service) -> Option<(Flow, Backend)> {
    let id = maglev_pick(service.id, &pkt.key)
        .filter(|&id| live_backend(id).is_some())
        .or_else(|| (service.sorry != NO_BACKEND).then_some(service.sorry))?;
    let backend = live_backend(id)?;
    let flow = Flow {
        backend: id,
        generation: backend.generation,
        service: service.id,
        mode: service.mode,
    };
    Some((flow, backend))
}

/// The flow's entry in `table` and its backend, if the flow is pinned there
/// and its backend is still the same one and live.
#[inline(always)]
fn pinned_flow(table: &LruHashMap<FlowKey, Flow>, key: &FlowKey) -> Option<(Flow, Backend)> {
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
fn unconfirmed_flow(key: &FlowKey) -> Option<(Flow, Backend)> {
    let slot = unconfirmed::client_slot(key);
    let tags = LB_NEW_TAGS.get_ptr_mut(slot.set)?;
    let ways = LB_NEW_FLOWS.get_ptr(slot.set)?;
    // SAFETY: map value pointers from successful lookups of one set.
    unsafe { unconfirmed::take_flow(tags, ways, key, slot.tag, false, with_live_backend) }
}

/// How to translate the answer (backend-side `key`) of an unconfirmed NAT
/// flow: a pointer into its way.
#[inline(always)]
fn unconfirmed_reply(key: &FlowKey) -> Option<*const Reply> {
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
fn live_backend(id: u32) -> Option<Backend> {
    let backend = *LB_BACKENDS.get(id)?;
    (backend.flags & backend_flags::LIVE != 0).then_some(backend)
}

/// The backend the service's Maglev table gives this flow.
#[inline(always)]
fn maglev_pick(service: u32, key: &FlowKey) -> Option<u32> {
    let table = LB_MAGLEV.get_ptr(&service)?;
    // The modulo keeps the slot in range, but the verifier cannot see that
    // through it: hide the value from LLVM so that `get` keeps its check.
    let slot = core::hint::black_box(hash::maglev_slot_of(flow_hash(key)) as usize);
    // SAFETY: a map value pointer from a successful lookup; `get` checks the
    // slot against the table's length.
    let id = MaglevTable::id_of(*unsafe { &(*table).backends }.get(slot)?);
    (id != NO_BACKEND).then_some(id)
}

/// The flow hash of client-side `key`: `lb_xdp`'s, left in
/// `LB_FLOW_HASH` for this very key (see [`is_new_flow`]), else taken.
#[inline(always)]
fn flow_hash(key: &FlowKey) -> u32 {
    match LB_FLOW_HASH.get(0) {
        Some(memo) if memo.key.is(key) => memo.hash,
        _ => hash::flow_hash(key),
    }
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

/// NAT, client to backend: the destination becomes the backend.
#[inline(always)]
fn nat_forward(ctx: &XdpContext, pkt: &Packet, id: u32, backend: &Backend) -> (Counter, u32) {
    // Not for the kernel, which holds the VIP: it would answer from the VIP
    // (a reset, a port unreachable) as if the service had.
    if pkt.ttl <= 1 {
        // SAFETY: the jump table holds only XDP programs of this object.
        unsafe { LB_JUMP.tail_call(ctx, JUMP_TTL) };
        // Only if the jump fails (the program is not in the jump table).
        return (Counter::DropTtl, XDP_DROP);
    }
    let route = route_to_backend(ctx, pkt, id, backend);
    translate_and_send(
        ctx,
        pkt,
        Side::Destination,
        &backend.addr,
        backend.port,
        route,
    )
}

/// NAT, backend to client: the source becomes the VIP.
#[inline(always)]
fn nat_reply(ctx: &XdpContext, pkt: &Packet, reply: Reply) -> (Counter, u32) {
    if pkt.ttl <= 1 {
        return (Counter::PassTtl, XDP_PASS);
    }
    let bytes = u64::from(pkt.frame_len);
    count_traffic(&LB_SVC_STATS, reply.service, bytes, false);
    count_traffic(&LB_BE_STATS, reply.backend, bytes, false);
    if pkt.fragment == Fragmentation::First {
        remember_fragment(
            pkt,
            fragment_kind::REPLY,
            reply.backend,
            0,
            reply.service,
            &reply.vip,
        );
    }
    let route = route_to_client(ctx, pkt, &reply.vip);
    translate_and_send(ctx, pkt, Side::Source, &reply.vip, reply.vport, route)
}

/// Rewrites one side of the packet and sends it where the FIB said; without
/// a neighbour entry yet, hands the rewritten packet to the kernel, which
/// forwards it and resolves the neighbour.
#[inline(always)]
fn translate_and_send(
    ctx: &XdpContext,
    pkt: &Packet,
    side: Side,
    addr: &[u8; 16],
    port: [u8; 2],
    route: Route,
) -> (Counter, u32) {
    match route {
        Route::Forward {
            ifindex,
            smac,
            dmac,
        } => {
            if !rewrite(ctx, pkt, side, addr, port, true) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            transmit(ctx, &LB_TX_PORTS, ifindex, smac, dmac)
        }
        Route::NoNeighbour => {
            if !rewrite(ctx, pkt, side, addr, port, false) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            (Counter::PassNoNeighbour, XDP_PASS)
        }
        Route::Miss => (Counter::PassFibMiss, XDP_PASS),
    }
}

/// DSR: the packet goes unchanged but for its MACs to the backend, which
/// holds the VIP itself.
#[inline(always)]
fn dsr_forward(ctx: &XdpContext, pkt: &Packet, id: u32, backend: &Backend) -> (Counter, u32) {
    match route_to_backend(ctx, pkt, id, backend) {
        Route::Forward {
            ifindex,
            smac,
            dmac,
        } => transmit(ctx, &LB_TX_PORTS, ifindex, smac, dmac),
        // The kernel holds the VIP: given the packet, it would reset the
        // connection. Dropped and counted; the client retransmits.
        Route::NoNeighbour => (Counter::DropNoNeighbour, XDP_DROP),
        Route::Miss => (Counter::PassFibMiss, XDP_PASS),
    }
}

/// The route to a backend: this CPU's cached answer for it (see
/// [`cached_route`]), the generation telling backends that share an id apart.
#[inline(always)]
fn route_to_backend(ctx: &XdpContext, pkt: &Packet, id: u32, backend: &Backend) -> Route {
    match LB_NEXTHOPS.get_ptr_mut(id) {
        Some(hop) => cached_route(
            ctx,
            pkt,
            &pkt.key.src,
            &backend.addr,
            hop,
            backend.generation,
        ),
        None => fib(ctx, pkt, &pkt.key.src, &backend.addr),
    }
}

/// The route of a NAT reply to its client: this CPU's cached answer for
/// that client address (tagged with the address family), in the client's
/// slot, which it takes over from another client.
#[inline(always)]
fn route_to_client(ctx: &XdpContext, pkt: &Packet, vip: &[u8; 16]) -> Route {
    let client = &pkt.key.dst;
    let slot = hash::client_hop_slot(client, pkt.key.family);
    let Some(entry) = LB_CLIENT_HOPS.get_ptr_mut(slot) else {
        return fib(ctx, pkt, vip, client);
    };
    // SAFETY: this CPU's slot; nothing else writes it while we run.
    let entry = unsafe { &mut *entry };
    if !lb_common::same_addr(&entry.client, client) {
        entry.client = *client;
        entry.hop.ifindex = 0;
    }
    cached_route(
        ctx,
        pkt,
        vip,
        client,
        &mut entry.hop,
        u32::from(pkt.key.family),
    )
}

/// A cached FIB answer while it is fresh (about a second), has the same
/// `tag` and the packet fits its MTU; else the FIB's answer, cached when it
/// is a complete next hop.
#[inline(always)]
fn cached_route(
    ctx: &XdpContext,
    pkt: &Packet,
    src: &[u8; 16],
    dst: &[u8; 16],
    hop: *mut NextHop,
    tag: u32,
) -> Route {
    // SAFETY: bpf_jiffies64 has no preconditions.
    let now = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's value of a per-CPU map; nothing else writes it
    // while we run.
    let cached = unsafe { *hop };
    if cached.ifindex != 0
        && cached.generation == tag
        && now < cached.expires
        && pkt.ip_len <= cached.mtu
    {
        return Route::Forward {
            ifindex: cached.ifindex,
            smac: cached.smac,
            dmac: cached.dmac,
        };
    }
    let (route, mtu) = fib_with_mtu(ctx, pkt, src, dst);
    if let Route::Forward {
        ifindex,
        smac,
        dmac,
    } = route
    {
        // SAFETY: as above.
        unsafe {
            *hop = NextHop {
                ifindex,
                generation: tag,
                smac,
                dmac,
                mtu,
                pad: [0; 2],
                expires: now + NEXTHOP_TTL_JIFFIES,
            };
        }
    }
    route
}

/// Standby, or fenced (an active whose lease passed, as [`fenced`] found
/// for this packet): no service traffic.
#[inline(always)]
fn is_standby() -> bool {
    LB_SETTINGS
        .get(0)
        .is_some_and(|settings| settings.role == role::STANDBY)
        || fence::recorded(&LB_FENCE_CHECK)
}

/// An active node whose daemon stopped renewing its lease. Asked once per
/// packet, first thing in `lb_xdp`; the answer is kept for the packet's way.
#[inline(always)]
fn fenced() -> bool {
    LB_SETTINGS
        .get(0)
        .is_some_and(|settings| fence::check(settings, lease(), &LB_FENCE_CHECK))
}

/// The active's lease (0: none).
#[inline(always)]
fn lease() -> u64 {
    LB_LEASE.get(0).copied().unwrap_or(0)
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = LB_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn count_traffic(map: &PerCpuArray<Traffic>, id: u32, bytes: u64, new_flow: bool) {
    if let Some(slot) = map.get_ptr_mut(id) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
            (*slot).new_flows += u64::from(new_flow);
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
