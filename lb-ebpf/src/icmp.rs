//! ICMP errors about a flow: "fragmentation needed" (IPv4 type 3 code 4)
//! and "packet too big" (ICMPv6 type 2), sent by a router between the client
//! and us about a packet the service sent (VIP to client). They belong to the
//! flow's backend, whose TCP stack must lower its MSS; `main.rs` finds the
//! backend, this file parses the error and, for NAT, translates it: the outer
//! destination and the quoted packet's source become the backend's, with
//! every checksum that covers them.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    AF_INET, AF_INET6, Backend, FlowKey, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    csum::Diff,
    packet::{
        ETH_HDR_LEN, Fragmentation, IPV4_MIN_HDR_LEN, IPV6_HDR_LEN, Packet, TCP_CSUM_OFF,
        UDP_CSUM_OFF, read, write,
    },
    rewrite::{Side, decrement_hop_limit, first4, ipv4_header},
};

const ICMP_HDR_LEN: usize = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

/// A parsed ICMP error about a TCP or UDP packet.
pub struct IcmpError {
    /// The outer packet (ports zero), for the FIB and the TTL.
    pub outer: Packet,
    /// The flow the quoted packet belongs to, as its client sends it
    /// (client to VIP): the quoted packet reversed.
    pub flow: FlowKey,
    /// Offset of the quoted IP header.
    inner: usize,
    /// Offset of the quoted TCP or UDP header.
    inner_l4: usize,
}

impl IcmpError {
    pub const fn new() -> Self {
        const NO_FLOW: FlowKey = FlowKey {
            src: [0; 16],
            dst: [0; 16],
            sport: [0; 2],
            dport: [0; 2],
            proto: 0,
            family: 0,
            pad: [0; 2],
        };
        IcmpError {
            outer: Packet {
                key: NO_FLOW,
                l4: 0,
                l4_csum: 0,
                ip_len: 0,
                ttl: 0,
                fragment: Fragmentation::None,
                frag_id: [0; 4],
            },
            flow: NO_FLOW,
            inner: 0,
            inner_l4: 0,
        }
    }
}

/// Fills `err` from an ICMP error about a TCP or UDP flow; false for any
/// other ICMP message (or one that does not hold its quote). Fills the
/// caller's value in place: the BPF stack is small.
#[inline(always)]
pub fn parse(ctx: &XdpContext, err: &mut IcmpError) -> bool {
    let Some([version_ihl, _]) = read::<2>(ctx, ETH_HDR_LEN) else {
        return false;
    };
    let parsed = match version_ihl >> 4 {
        4 => parse_v4(ctx, err, usize::from(version_ihl & 0x0f) * 4),
        6 => parse_v6(ctx, err),
        _ => None,
    };
    parsed.is_some() && finish(ctx, err).is_some()
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, err: &mut IcmpError, ihl: usize) -> Option<()> {
    let ip = ETH_HDR_LEN;
    let l4 = ip + ihl;
    let [ttl, proto] = read::<2>(ctx, ip + 8)?;
    let [icmp_type, code] = read::<2>(ctx, l4)?;
    if proto != IPPROTO_ICMP || icmp_type != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
        return None;
    }
    let inner = l4 + ICMP_HDR_LEN;
    let [quoted_version_ihl, _] = read::<2>(ctx, inner)?;
    let inner_ihl = usize::from(quoted_version_ihl & 0x0f) * 4;
    if quoted_version_ihl >> 4 != 4 || inner_ihl < IPV4_MIN_HDR_LEN {
        return None;
    }
    let outer = &mut err.outer;
    outer.key.family = AF_INET;
    outer.key.proto = IPPROTO_ICMP;
    outer.key.src[..4].copy_from_slice(&read::<4>(ctx, ip + 12)?);
    outer.key.dst[..4].copy_from_slice(&read::<4>(ctx, ip + 16)?);
    outer.ip_len = u16::from_be_bytes(read::<2>(ctx, ip + 2)?);
    outer.ttl = ttl;
    outer.l4 = l4;
    outer.l4_csum = l4 + 2;
    let flow = &mut err.flow;
    flow.family = AF_INET;
    flow.proto = read::<2>(ctx, inner + 8)?[1];
    flow.dst[..4].copy_from_slice(&read::<4>(ctx, inner + 12)?);
    flow.src[..4].copy_from_slice(&read::<4>(ctx, inner + 16)?);
    err.inner = inner;
    err.inner_l4 = inner + inner_ihl;
    Some(())
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, err: &mut IcmpError) -> Option<()> {
    let ip = ETH_HDR_LEN;
    let l4 = ip + IPV6_HDR_LEN;
    let [next_header, hop_limit] = read::<2>(ctx, ip + 6)?;
    let [icmp_type, _] = read::<2>(ctx, l4)?;
    if next_header != IPPROTO_ICMPV6 || icmp_type != ICMPV6_PKT_TOOBIG {
        return None;
    }
    let inner = l4 + ICMP_HDR_LEN;
    if read::<2>(ctx, inner)?[0] >> 4 != 6 {
        return None;
    }
    let outer = &mut err.outer;
    outer.key.family = AF_INET6;
    outer.key.proto = IPPROTO_ICMPV6;
    outer.key.src = read::<16>(ctx, ip + 8)?;
    outer.key.dst = read::<16>(ctx, ip + 24)?;
    outer.ip_len = u16::from_be_bytes(read::<2>(ctx, ip + 4)?).saturating_add(IPV6_HDR_LEN as u16);
    outer.ttl = hop_limit;
    outer.l4 = l4;
    outer.l4_csum = l4 + 2;
    let flow = &mut err.flow;
    flow.family = AF_INET6;
    flow.proto = read::<2>(ctx, inner + 6)?[0];
    flow.dst = read::<16>(ctx, inner + 8)?;
    flow.src = read::<16>(ctx, inner + 24)?;
    err.inner = inner;
    err.inner_l4 = inner + IPV6_HDR_LEN;
    Some(())
}

/// The quoted ports, and the checks common to both families.
#[inline(always)]
fn finish(ctx: &XdpContext, err: &mut IcmpError) -> Option<()> {
    let proto = err.flow.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    // The error must be addressed to the address the quoted packet came
    // from (the VIP).
    if err.outer.key.dst != err.flow.dst {
        return None;
    }
    let ports = read::<4>(ctx, err.inner_l4)?;
    err.flow.dport = [ports[0], ports[1]];
    err.flow.sport = [ports[2], ports[3]];
    Some(())
}

/// NAT: the error goes to `backend` as if the backend had sent the quoted
/// packet itself. Returns false when a field is not inside the packet.
#[inline(always)]
pub fn translate(ctx: &XdpContext, err: &IcmpError, backend: &Backend, forwarding: bool) -> bool {
    let vip = &err.flow.dst;
    let vport = err.flow.dport;
    let mut icmp = Diff::new();
    // The quoted packet's source port, and its L4 checksum if quoted.
    let mut inner_l4 = Diff::new();
    inner_l4.bytes(&vport, &backend.port);
    icmp.bytes(&vport, &backend.port);
    if !write(ctx, err.inner_l4, backend.port) {
        return false;
    }
    let ok = if err.outer.is_v4() {
        translate_v4(ctx, err, vip, backend, &mut icmp, &mut inner_l4, forwarding)
    } else {
        translate_v6(ctx, err, vip, backend, &mut icmp, &mut inner_l4, forwarding)
    };
    if !ok {
        return false;
    }
    quoted_l4_checksum(ctx, err, inner_l4, &mut icmp);
    let Some(csum) = read::<2>(ctx, err.outer.l4_csum) else {
        return false;
    };
    write(
        ctx,
        err.outer.l4_csum,
        icmp.apply(u16::from_be_bytes(csum)).to_be_bytes(),
    )
}

#[inline(always)]
fn translate_v4(
    ctx: &XdpContext,
    err: &IcmpError,
    vip: &[u8; 16],
    backend: &Backend,
    icmp: &mut Diff,
    inner_l4: &mut Diff,
    forwarding: bool,
) -> bool {
    let (old, new) = (first4(vip), first4(&backend.addr));
    // Outer header: destination, TTL, header checksum (ICMPv4 has no
    // pseudo-header).
    if !ipv4_header(ctx, Side::Destination, old, new, forwarding) {
        return false;
    }
    // Quoted header: source and its header checksum, both inside the ICMP
    // message.
    let mut quoted = Diff::new();
    quoted.bytes(&old, &new);
    icmp.bytes(&old, &new);
    inner_l4.bytes(&old, &new);
    if !write(ctx, err.inner + 12, new) {
        return false;
    }
    let Some(before) = read::<2>(ctx, err.inner + 10) else {
        return false;
    };
    let after = quoted.apply(u16::from_be_bytes(before)).to_be_bytes();
    icmp.bytes(&before, &after);
    write(ctx, err.inner + 10, after)
}

#[inline(always)]
fn translate_v6(
    ctx: &XdpContext,
    err: &IcmpError,
    vip: &[u8; 16],
    backend: &Backend,
    icmp: &mut Diff,
    inner_l4: &mut Diff,
    forwarding: bool,
) -> bool {
    const OUTER_DST: usize = ETH_HDR_LEN + 24;
    // The ICMPv6 checksum covers the outer destination (pseudo-header) and
    // the quoted source.
    icmp.bytes(vip, &backend.addr);
    icmp.bytes(vip, &backend.addr);
    inner_l4.bytes(vip, &backend.addr);
    if !write(ctx, OUTER_DST, backend.addr) || !write(ctx, err.inner + 8, backend.addr) {
        return false;
    }
    !forwarding || decrement_hop_limit(ctx)
}

/// Updates the quoted packet's TCP or UDP checksum when the quote holds it
/// (an IPv4 UDP checksum of zero stays zero).
#[inline(always)]
fn quoted_l4_checksum(ctx: &XdpContext, err: &IcmpError, diff: Diff, icmp: &mut Diff) {
    let offset = err.inner_l4
        + if err.flow.proto == IPPROTO_TCP {
            TCP_CSUM_OFF
        } else {
            UDP_CSUM_OFF
        };
    let Some(before) = read::<2>(ctx, offset) else {
        return;
    };
    let udp = err.flow.proto == IPPROTO_UDP;
    if udp && err.outer.is_v4() && before == [0, 0] {
        return;
    }
    let mut after = diff.apply(u16::from_be_bytes(before));
    if udp && after == 0 {
        after = 0xffff;
    }
    let after = after.to_be_bytes();
    icmp.bytes(&before, &after);
    write(ctx, offset, after);
}
