//! Header rewrites for NAT: one side's address and port, the checksums
//! that cover them, and the TTL or hop limit.
use lb_common::IPPROTO_UDP;

use crate::{
    csum::Diff,
    packet::{ETH_HDR_LEN, Packet, read, write},
};
use aya_ebpf::programs::XdpContext;

#[derive(Clone, Copy)]
pub enum Side {
    Source,
    Destination,
}

/// Replaces the source or destination address and port, updates the L4
/// checksum (and the IPv4 header checksum), and decrements the TTL or hop
/// limit when the packet is forwarded here. Incremental updates (RFC 1624)
/// keep a wrong checksum wrong by the same amount: the receiver still sees
/// the error.
#[inline(always)]
pub fn rewrite(
    ctx: &XdpContext,
    pkt: &Packet,
    side: Side,
    addr: &[u8; 16],
    port: [u8; 2],
    forwarding: bool,
) -> bool {
    let (old_addr, old_port, port_off) = match side {
        Side::Source => (&pkt.key.src, pkt.key.sport, pkt.l4),
        Side::Destination => (&pkt.key.dst, pkt.key.dport, pkt.l4 + 2),
    };
    // A later fragment has no ports and no L4 checksum: the first fragment's
    // checksum covers the whole datagram and gets the whole difference.
    let has_l4 = pkt.has_l4_header();
    let mut l4 = Diff::new();
    l4.bytes(&old_port, &port);
    if has_l4 && !write(ctx, port_off, port) {
        return false;
    }
    let written = if pkt.is_v4() {
        rewrite_ipv4(ctx, side, old_addr, addr, &mut l4, forwarding)
    } else {
        rewrite_ipv6(ctx, side, old_addr, addr, &mut l4, forwarding)
    };
    written && (!has_l4 || update_l4_checksum(ctx, pkt, l4))
}

#[inline(always)]
fn rewrite_ipv4(
    ctx: &XdpContext,
    side: Side,
    old: &[u8; 16],
    new: &[u8; 16],
    l4: &mut Diff,
    forwarding: bool,
) -> bool {
    let (old4, new4) = (first4(old), first4(new));
    l4.bytes(&old4, &new4);
    ipv4_header(ctx, side, old4, new4, forwarding)
}

/// The first four bytes: the IPv4 address of a 16-byte address field.
#[inline(always)]
pub fn first4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[0], addr[1], addr[2], addr[3]]
}

/// Replaces one address of the IPv4 header (from `old` to `new`),
/// decrements the TTL when forwarding, and updates the header checksum.
#[inline(always)]
pub fn ipv4_header(
    ctx: &XdpContext,
    side: Side,
    old: [u8; 4],
    new: [u8; 4],
    forwarding: bool,
) -> bool {
    const TTL: usize = ETH_HDR_LEN + 8;
    const CSUM: usize = ETH_HDR_LEN + 10;
    let addr_off = match side {
        Side::Source => ETH_HDR_LEN + 12,
        Side::Destination => ETH_HDR_LEN + 16,
    };
    let mut ip = Diff::new();
    ip.bytes(&old, &new);
    if !write(ctx, addr_off, new) {
        return false;
    }
    if forwarding {
        let Some(ttl_proto) = read::<2>(ctx, TTL) else {
            return false;
        };
        let after = [ttl_proto[0].wrapping_sub(1), ttl_proto[1]];
        ip.bytes(&ttl_proto, &after);
        if !write(ctx, TTL, after) {
            return false;
        }
    }
    let Some(csum) = read::<2>(ctx, CSUM) else {
        return false;
    };
    write(ctx, CSUM, ip.apply(u16::from_be_bytes(csum)).to_be_bytes())
}

#[inline(always)]
fn rewrite_ipv6(
    ctx: &XdpContext,
    side: Side,
    old: &[u8; 16],
    new: &[u8; 16],
    l4: &mut Diff,
    forwarding: bool,
) -> bool {
    let addr_off = match side {
        Side::Source => ETH_HDR_LEN + 8,
        Side::Destination => ETH_HDR_LEN + 24,
    };
    l4.bytes(old, new);
    if !write(ctx, addr_off, *new) {
        return false;
    }
    !forwarding || decrement_hop_limit(ctx)
}

/// Decrements the IPv6 hop limit (no checksum covers it).
#[inline(always)]
pub fn decrement_hop_limit(ctx: &XdpContext) -> bool {
    // Next header and hop limit, read and written together (see packet::read).
    const NEXT_HEADER: usize = ETH_HDR_LEN + 6;
    let Some([next_header, hop_limit]) = read::<2>(ctx, NEXT_HEADER) else {
        return false;
    };
    write(ctx, NEXT_HEADER, [next_header, hop_limit.wrapping_sub(1)])
}

/// Applies the L4 difference. An IPv4 UDP checksum of zero means "none" and
/// stays zero; a computed UDP checksum of zero is sent as 0xffff.
#[inline(always)]
fn update_l4_checksum(ctx: &XdpContext, pkt: &Packet, diff: Diff) -> bool {
    let Some(csum) = read::<2>(ctx, pkt.l4_csum) else {
        return false;
    };
    let csum = u16::from_be_bytes(csum);
    let udp = pkt.key.proto == IPPROTO_UDP;
    if udp && pkt.is_v4() && csum == 0 {
        return true;
    }
    let mut updated = diff.apply(csum);
    if udp && updated == 0 {
        updated = 0xffff;
    }
    write(ctx, pkt.l4_csum, updated.to_be_bytes())
}
