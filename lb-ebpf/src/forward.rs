//! Where a packet goes next: the kernel's FIB, then out by XDP_TX or a
//! DEVMAP redirect with the MACs the FIB gave.
use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, bpf_fib_lookup,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    },
    helpers::generated::bpf_fib_lookup as fib_lookup,
    maps::DevMapHash,
    programs::XdpContext,
};
use lb_common::{AF_INET, Counter};

use crate::packet::{Packet, write};

/// Kernel address families for the FIB lookup.
const KERNEL_AF_INET: u8 = 2;
const KERNEL_AF_INET6: u8 = 10;

/// Where the FIB sends a packet.
pub enum Route {
    Forward {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// A route, but no neighbour entry for the next hop yet.
    NoNeighbour,
    /// No usable route (or forwarding disabled, or the MTU is exceeded).
    Miss,
}

/// Asks the kernel's FIB how to reach `dst` from `src` for this packet.
#[inline(always)]
pub fn fib(ctx: &XdpContext, pkt: &Packet, src: &[u8; 16], dst: &[u8; 16]) -> Route {
    fib_with_mtu(ctx, pkt, src, dst).0
}

/// [`fib`], with the MTU of the route when it is a complete next hop.
#[inline(always)]
pub fn fib_with_mtu(
    ctx: &XdpContext,
    pkt: &Packet,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> (Route, u16) {
    // SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.l4_protocol = pkt.key.proto;
    params.sport = u16::from_ne_bytes(pkt.key.sport);
    params.dport = u16::from_ne_bytes(pkt.key.dport);
    params.__bindgen_anon_1.tot_len = pkt.ip_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    if pkt.key.family == AF_INET {
        params.family = KERNEL_AF_INET;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        params.family = KERNEL_AF_INET6;
        params.__bindgen_anon_3.ipv6_src = words(src);
        params.__bindgen_anon_4.ipv6_dst = words(dst);
    }
    // SAFETY: the helper reads and writes `params`, which lives on our stack.
    let ret = unsafe {
        fib_lookup(
            ctx.ctx.cast(),
            &mut params,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => (
            Route::Forward {
                ifindex: params.ifindex,
                smac: params.smac,
                dmac: params.dmac,
            },
            // SAFETY: on success the kernel writes the route's MTU there.
            unsafe { params.__bindgen_anon_1.mtu_result },
        ),
        BPF_FIB_LKUP_RET_NO_NEIGH => (Route::NoNeighbour, 0),
        _ => (Route::Miss, 0),
    }
}

/// The way from this node back to `dst` and the source address the kernel
/// would give a packet of its own there (`BPF_FIB_LOOKUP_SRC`): for errors
/// the node answers itself. `None` without a complete next hop or an
/// address.
#[inline(always)]
pub fn fib_from_node(
    ctx: &XdpContext,
    family: u8,
    proto: u8,
    dst: &[u8; 16],
    tot_len: u16,
) -> Option<(Route, [u8; 16])> {
    // SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.l4_protocol = proto;
    params.__bindgen_anon_1.tot_len = tot_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    if family == AF_INET {
        params.family = KERNEL_AF_INET;
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        params.family = KERNEL_AF_INET6;
        params.__bindgen_anon_4.ipv6_dst = words(dst);
    }
    // SAFETY: the helper reads and writes `params`, which lives on our stack.
    let ret = unsafe {
        fib_lookup(
            ctx.ctx.cast(),
            &mut params,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_SRC,
        )
    };
    if ret as u32 != BPF_FIB_LKUP_RET_SUCCESS {
        return None;
    }
    let mut src = [0u8; 16];
    if family == AF_INET {
        // SAFETY: with BPF_FIB_LOOKUP_SRC the kernel writes the source there.
        src[..4].copy_from_slice(&unsafe { params.__bindgen_anon_3.ipv4_src }.to_ne_bytes());
    } else {
        // SAFETY: as above.
        let words = unsafe { params.__bindgen_anon_3.ipv6_src };
        let mut i = 0;
        while i < 4 {
            src[4 * i..4 * i + 4].copy_from_slice(&words[i].to_ne_bytes());
            i += 1;
        }
    }
    let route = Route::Forward {
        ifindex: params.ifindex,
        smac: params.smac,
        dmac: params.dmac,
    };
    Some((route, src))
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            addr[4 * i],
            addr[4 * i + 1],
            addr[4 * i + 2],
            addr[4 * i + 3],
        ]);
        i += 1;
    }
    out
}

/// Sets the MACs and sends the frame: back out the interface it came in on
/// (XDP_TX), or to another one through the DEVMAP.
#[inline(always)]
pub fn transmit(
    ctx: &XdpContext,
    ports: &DevMapHash,
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
) -> (Counter, u32) {
    if !write(ctx, 0, dmac) || !write(ctx, 6, smac) {
        return (Counter::PassMalformed, XDP_PASS);
    }
    if ifindex == ctx.ingress_ifindex() as u32 {
        return (Counter::Forwarded, XDP_TX);
    }
    match ports.redirect(ifindex, u64::from(XDP_DROP)) {
        Ok(action) => (Counter::Forwarded, action),
        Err(_) => (Counter::DropNoTxPort, XDP_DROP),
    }
}
