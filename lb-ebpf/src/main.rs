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
//! This file holds the programs' entry points and what sends a packet to
//! one of them; the rest is in modules: the maps (`maps.rs`), the flow
//! tables (`flow_tables.rs`) and a new flow's pick (`maglev.rs`), IP
//! fragments (`ip_fragments.rs`), ICMP errors (`icmp_dispatch.rs`,
//! `icmp.rs`), sending (`send.rs`, `forward.rs`, `rewrite.rs`), the role
//! (`role.rs`) and the counters (`counters.rs`).
//!
//! Rules for this crate: one concern per module and per function; every
//! packet access is checked against `data_end` where it happens
//! (`packet.rs`); constants and map layouts come from `lb-common`.
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

// The names of the modules and of their functions shape the object: rustc
// hands LLVM the functions sorted by symbol name, LLVM inlines the
// `#[inline(always)]` ones in that order, and the order lays out each
// program's stack, hence its instructions. These names give the object the
// single file gave (same instructions, same stack); after a rename or a
// move, compare `llvm-objdump -d` of the object before and after.
mod baseline;
mod bench;
mod counters;
mod csum;
mod fence;
mod filter;
mod flow_tables;
mod forward;
mod icmp;
mod icmp_dispatch;
mod ip_fragments;
mod maglev;
mod maps;
mod packet;
mod report;
mod rewrite;
mod role;
mod send;
mod time_exceeded;
mod unconfirmed;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{Counter, FlowKey, JUMP_ICMP, JUMP_UNCONFIRMED, ServiceKey, hash};

use crate::{
    counters::{count, counted},
    flow_tables::{
        is_new_flow, pinned_flow, rebuilt_reply, to_pinned_backend, to_service, unconfirmed_reply,
    },
    icmp_dispatch::icmp_error,
    ip_fragments::later_fragment,
    maps::{
        LB_FLOATING, LB_FLOWS, LB_ICMP_BUDGET, LB_JUMP, LB_REPLIES, LB_SERVICE_ADDRS, LB_SERVICES,
        LB_TX_PORTS,
    },
    packet::{Fragmentation, Packet},
    role::fenced,
    send::nat_reply,
};

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
/// service (a new or unconfirmed flow, see [`flow_tables::to_service`]),
/// the answer of an unconfirmed NAT flow (a SYN-ACK, a first answer), else
/// not ours. Parsed again.
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

/// A new or unconfirmed flow to a service, the answer of an unconfirmed
/// NAT flow, or not ours: `lb_unconfirmed`.
#[inline(always)]
fn to_unconfirmed(ctx: &XdpContext) -> (Counter, u32) {
    // SAFETY: the jump table holds only XDP programs of this object.
    unsafe { LB_JUMP.tail_call(ctx, JUMP_UNCONFIRMED) };
    // Only if the jump fails (the program is not in the jump table).
    (Counter::PassNotService, XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
