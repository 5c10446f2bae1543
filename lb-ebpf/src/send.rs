//! Sending a flow's packet on: counted for its service and backend, a first
//! fragment remembered, then NAT (the destination becomes the backend, or a
//! reply's source the VIP) or DSR (only the MACs change), to the next hop.
//! Each CPU keeps the FIB's answer (forward.rs) for about a second, per
//! backend (`LB_NEXTHOPS`) and per client slot for NAT replies
//! (`LB_CLIENT_HOPS`).
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::generated::bpf_jiffies64,
    programs::XdpContext,
};
use lb_common::{
    Backend, Counter, JUMP_TTL, NEXTHOP_TTL_JIFFIES, NextHop, Reply, fragment_kind, hash, mode,
};

use crate::{
    counters::count_traffic,
    forward::{Route, fib, fib_with_mtu, transmit},
    ip_fragments::remember_fragment,
    maps::{LB_BE_STATS, LB_CLIENT_HOPS, LB_JUMP, LB_NEXTHOPS, LB_SVC_STATS, LB_TX_PORTS},
    packet::{Fragmentation, Packet},
    rewrite::{Side, rewrite},
};

/// Counts the packet for its service and backend and sends it on.
#[inline(always)]
pub(crate) fn forward(
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
pub(crate) fn nat_reply(ctx: &XdpContext, pkt: &Packet, reply: Reply) -> (Counter, u32) {
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
