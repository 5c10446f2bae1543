//! ICMP time exceeded (IPv4 type 11, ICMPv6 type 3, code 0) for a packet to
//! a NAT service whose TTL or hop limit expires here, as a router answers
//! (RFC 1812 4.3.2, RFC 4443 3.3): from the node's own address (the source
//! the FIB picks for the way back), never from the VIP. Built in place: the
//! frame is cut to the quoted part (the IP header and 8 bytes after it),
//! new Ethernet, IP and ICMP headers are put in front, and it goes back out.
use aya_ebpf::{
    bindings::xdp_action::XDP_DROP,
    helpers::generated::{bpf_csum_diff, bpf_jiffies64, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    maps::{DevMapHash, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{Counter, ICMP_BURST, IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpBudget};

use crate::{
    csum::fold,
    forward::{Route, fib_from_node, transmit},
    packet::{
        ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, Fragmentation, IPV4_MIN_HDR_LEN, IPV6_HDR_LEN, Packet,
        frame_len, ptr_at, write,
    },
    rewrite::first4,
};

const ICMP_HDR_LEN: usize = 8;
/// What the message quotes after the IP header: the ports, at least.
const QUOTED_PAYLOAD: usize = 8;
const QUOTE_V4: usize = IPV4_MIN_HDR_LEN + QUOTED_PAYLOAD;
const QUOTE_V6: usize = IPV6_HDR_LEN + QUOTED_PAYLOAD;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// TTL and hop limit of the message (Linux's default).
const TTL: u8 = 64;
/// IPv4 type of service of ICMP errors: precedence "internetwork control",
/// as Linux sends them.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

/// Answers `pkt` with a time exceeded, or drops it; both counted.
#[inline(always)]
pub fn answer(
    ctx: &XdpContext,
    pkt: &Packet,
    ports: &DevMapHash,
    budget: &PerCpuArray<IcmpBudget>,
) -> (Counter, u32) {
    // No error about a later fragment (RFC 1122 3.2.2); the quote of an
    // IPv4 header with options is not built.
    if pkt.fragment == Fragmentation::Later
        || (pkt.is_v4() && pkt.l4 != ETH_HDR_LEN + IPV4_MIN_HDR_LEN)
    {
        return (Counter::DropTtl, XDP_DROP);
    }
    let (ip_len, proto) = if pkt.is_v4() {
        (IPV4_MIN_HDR_LEN + ICMP_HDR_LEN + QUOTE_V4, IPPROTO_ICMP)
    } else {
        (IPV6_HDR_LEN + ICMP_HDR_LEN + QUOTE_V6, IPPROTO_ICMPV6)
    };
    let client = &pkt.key.src;
    let Some((
        Route::Forward {
            ifindex,
            smac,
            dmac,
        },
        node,
    )) = fib_from_node(ctx, pkt.key.family, proto, client, ip_len as u16)
    else {
        return (Counter::DropTtl, XDP_DROP);
    };
    // The VIP may be an address of the node: never answer from it.
    if node == pkt.key.dst || !spend(budget) {
        return (Counter::DropTtl, XDP_DROP);
    }
    let built = if pkt.is_v4() {
        build_v4(ctx, &node, client)
    } else {
        build_v6(ctx, &node, client)
    };
    if !built {
        return (Counter::DropTtl, XDP_DROP);
    }
    match transmit(ctx, ports, ifindex, smac, dmac) {
        (Counter::Forwarded, action) => (Counter::SentTimeExceeded, action),
        other => other,
    }
}

/// Takes one message from this CPU's budget, which earns one a jiffy up to
/// [`ICMP_BURST`]; false when it is spent.
#[inline(always)]
fn spend(budget: &PerCpuArray<IcmpBudget>) -> bool {
    let Some(slot) = budget.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: bpf_jiffies64 has no preconditions.
    let now = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's value of a per-CPU map; nothing else writes it
    // while we run.
    let state = unsafe { &mut *slot };
    let earned = now.saturating_sub(state.updated);
    state.tokens = state.tokens.saturating_add(earned).min(ICMP_BURST);
    state.updated = state.updated.max(now);
    if state.tokens == 0 {
        return false;
    }
    state.tokens -= 1;
    true
}

/// Cuts the frame to Ethernet + `quote` bytes of the packet, then makes room
/// for `room` bytes of new headers before the quote. False if the kernel
/// refused either.
#[inline(always)]
fn reshape(ctx: &XdpContext, quote: usize, room: usize) -> bool {
    // The whole frame: the tail of a multi-buffer frame is cut from its
    // last buffer back.
    // The whole frame: the tail of a multi-buffer frame is cut from its
    // last buffer back.
    let len = frame_len(ctx) as i32;
    let cut = (ETH_HDR_LEN + quote) as i32 - len;
    // SAFETY: the helpers only move the frame's bounds; every access after
    // them is checked against the new ones.
    unsafe {
        (cut >= 0 || bpf_xdp_adjust_tail(ctx.ctx, cut) == 0)
            && bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) == 0
    }
}

/// Sums `N` bytes (even) as 16-bit words, big-endian.
#[inline(always)]
fn sum<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// Sums `N` bytes of the packet from `offset` (`N` a multiple of 4) as
/// big-endian 16-bit words, by `bpf_csum_diff` (no loop, no copy on the
/// small BPF stack); `None` if they are not all inside it.
#[inline(always)]
fn sum_packet<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<u32> {
    const { assert!(N.is_multiple_of(4), "bpf_csum_diff sums 4-byte words") };
    let bytes = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: ptr_at checked that the N bytes are inside the packet; the
    // helper only reads them.
    let partial = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, bytes.cast(), N as u32, 0) };
    if partial < 0 {
        return None;
    }
    // The helper sums words as loaded on this little-endian CPU: the folded
    // sum of the big-endian words is that one's bytes swapped.
    Some(u32::from(fold(partial as u32).swap_bytes()))
}

#[inline(always)]
fn build_v4(ctx: &XdpContext, node: &[u8; 16], client: &[u8; 16]) -> bool {
    const IP: usize = ETH_HDR_LEN;
    const ICMP: usize = IP + IPV4_MIN_HDR_LEN;
    const QUOTE: usize = ICMP + ICMP_HDR_LEN;
    const TOTAL: u16 = (IPV4_MIN_HDR_LEN + ICMP_HDR_LEN + QUOTE_V4) as u16;
    if !reshape(ctx, QUOTE_V4, IPV4_MIN_HDR_LEN + ICMP_HDR_LEN) {
        return false;
    }
    let Some(quote) = sum_packet::<QUOTE_V4>(ctx, QUOTE) else {
        return false;
    };
    let (node, client) = (first4(node), first4(client));
    // Version and length, type of service, total length; identification,
    // flags and offset zero; TTL, protocol, checksum; addresses.
    let head = [0x45, TOS_INTERNETWORK_CONTROL];
    let ttl_proto = [TTL, IPPROTO_ICMP];
    let ip_sum = sum(&head) + u32::from(TOTAL) + sum(&ttl_proto) + sum(&node) + sum(&client);
    let icmp_type = [ICMP_TIME_EXCEEDED, 0];
    let icmp_sum = sum(&icmp_type) + quote;
    write(ctx, 12, ETH_P_IP.to_be_bytes())
        && write(ctx, IP, head)
        && write(ctx, IP + 2, TOTAL.to_be_bytes())
        && write(ctx, IP + 4, [0u8; 4])
        && write(ctx, IP + 8, ttl_proto)
        && write(ctx, IP + 10, (!fold(ip_sum)).to_be_bytes())
        && write(ctx, IP + 12, node)
        && write(ctx, IP + 16, client)
        && write(ctx, ICMP, icmp_type)
        && write(ctx, ICMP + 2, (!fold(icmp_sum)).to_be_bytes())
        && write(ctx, ICMP + 4, [0u8; 4])
}

#[inline(always)]
fn build_v6(ctx: &XdpContext, node: &[u8; 16], client: &[u8; 16]) -> bool {
    const IP: usize = ETH_HDR_LEN;
    const ICMP: usize = IP + IPV6_HDR_LEN;
    const QUOTE: usize = ICMP + ICMP_HDR_LEN;
    const PAYLOAD: u16 = (ICMP_HDR_LEN + QUOTE_V6) as u16;
    if !reshape(ctx, QUOTE_V6, IPV6_HDR_LEN + ICMP_HDR_LEN) {
        return false;
    }
    let Some(quote) = sum_packet::<QUOTE_V6>(ctx, QUOTE) else {
        return false;
    };
    let [len_hi, len_lo] = PAYLOAD.to_be_bytes();
    let fixed = [0x60, 0, 0, 0, len_hi, len_lo, IPPROTO_ICMPV6, TTL];
    let icmp_type = [ICMPV6_TIME_EXCEEDED, 0];
    // Pseudo-header (RFC 8200 8.1): addresses, length, next header.
    let icmp_sum = sum(node)
        + sum(client)
        + u32::from(PAYLOAD)
        + u32::from(IPPROTO_ICMPV6)
        + sum(&icmp_type)
        + quote;
    write(ctx, 12, ETH_P_IPV6.to_be_bytes())
        && write(ctx, IP, fixed)
        && write(ctx, IP + 8, *node)
        && write(ctx, IP + 24, *client)
        && write(ctx, ICMP, icmp_type)
        && write(ctx, ICMP + 2, (!fold(icmp_sum)).to_be_bytes())
        && write(ctx, ICMP + 4, [0u8; 4])
}
