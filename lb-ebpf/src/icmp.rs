//! ICMP errors about a NAT or DSR flow, translated as conntrack does.
//!
//! The errors handled: IPv4 destination unreachable (every code, among them
//! fragmentation needed), time exceeded and parameter problem; ICMPv6
//! destination unreachable, packet too big, time exceeded and parameter
//! problem. Source quench (deprecated, RFC 6633) and redirects (meant for
//! the link they arrive on) are not forwarded.
//!
//! An error is addressed to the sender of the packet it quotes, so the
//! quoted packet reversed is the key that finds the flow (`flow` below):
//! - from the client's side, the error quotes a packet the service sent
//!   (VIP to client): the key is the flow's key in `LB_FLOWS` (client to
//!   VIP). It goes to the flow's backend; for NAT as if the backend had sent
//!   the quoted packet (outer destination and quoted source become the
//!   backend's).
//! - from the backend's side (NAT only: DSR replies do not pass us), the
//!   error quotes a packet we sent the backend (client to backend after
//!   NAT): the key is the backend's reply key in `LB_REPLIES` (backend to
//!   client). It goes to the client with the quoted destination the VIP and
//!   port again; an error the backend sent itself also gets the VIP as its
//!   outer source, one a router sent keeps the router's.
//!
//! `icmp_dispatch.rs` finds the flow and the route; this file parses the
//! error and rewrites it, with every checksum that covers what changes: the
//! outer IPv4 header, the ICMP checksum (for ICMPv6 with its pseudo-header),
//! the quoted IPv4 header, and the quoted TCP or UDP checksum when the quote
//! holds it.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    AF_INET, AF_INET6, Backend, FlowKey, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    Reply,
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
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PARAMETER_PROBLEM: u8 = 4;

/// A parsed ICMP error about a TCP or UDP packet.
pub struct IcmpError {
    /// The outer packet (ports zero), for the FIB and the TTL.
    pub outer: Packet,
    /// The quoted packet reversed: the flow's key as the client sends it
    /// (client to VIP) for an error from the client's side, the NAT reply
    /// key (backend to client) for one from the backend's side.
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
                syn: false,
                frame_len: 0,
            },
            flow: NO_FLOW,
            inner: 0,
            inner_l4: 0,
        }
    }

    /// Whether the quoted packet's destination (the backend, for an error
    /// from the backend's side) sent the error itself.
    fn sent_by_quoted_destination(&self) -> bool {
        self.outer.key.src == self.flow.src
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

/// The ICMP types that report an error about the quoted packet.
#[inline(always)]
fn is_v4_error(icmp_type: u8) -> bool {
    icmp_type == ICMP_DEST_UNREACH
        || icmp_type == ICMP_TIME_EXCEEDED
        || icmp_type == ICMP_PARAMETER_PROBLEM
}

/// ICMPv6 errors: destination unreachable, packet too big, time exceeded,
/// parameter problem (types 1 to 4).
#[inline(always)]
fn is_v6_error(icmp_type: u8) -> bool {
    (ICMPV6_DEST_UNREACH..=ICMPV6_PARAMETER_PROBLEM).contains(&icmp_type)
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, err: &mut IcmpError, ihl: usize) -> Option<()> {
    let ip = ETH_HDR_LEN;
    // The fixed header first, at fixed offsets: read after the quote's
    // (at variable offsets), the verifier could not tell it is inside.
    let hdr = read::<IPV4_MIN_HDR_LEN>(ctx, ip)?;
    let l4 = ip + ihl;
    let [icmp_type, _] = read::<2>(ctx, l4)?;
    if hdr[9] != IPPROTO_ICMP || !is_v4_error(icmp_type) {
        return None;
    }
    let inner = l4 + ICMP_HDR_LEN;
    let [quoted_version_ihl, _] = read::<2>(ctx, inner)?;
    let inner_ihl = usize::from(quoted_version_ihl & 0x0f) * 4;
    if quoted_version_ihl >> 4 != 4 || inner_ihl < IPV4_MIN_HDR_LEN {
        return None;
    }
    // A quoted fragment other than the first has no ports.
    if u16::from_be_bytes(read::<2>(ctx, inner + 6)?) & 0x1fff != 0 {
        return None;
    }
    let outer = &mut err.outer;
    outer.key.family = AF_INET;
    outer.key.proto = IPPROTO_ICMP;
    outer.key.src[..4].copy_from_slice(&hdr[12..16]);
    outer.key.dst[..4].copy_from_slice(&hdr[16..20]);
    outer.ip_len = u16::from_be_bytes([hdr[2], hdr[3]]);
    outer.ttl = hdr[8];
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
    if next_header != IPPROTO_ICMPV6 || !is_v6_error(icmp_type) {
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
    // from (the VIP, or the client).
    if err.outer.key.dst != err.flow.dst {
        return None;
    }
    let ports = read::<4>(ctx, err.inner_l4)?;
    err.flow.dport = [ports[0], ports[1]];
    err.flow.sport = [ports[2], ports[3]];
    Some(())
}

/// Where a flow's error goes.
pub enum Towards<'a> {
    /// An error from the client's side about a DSR flow: to the flow's
    /// backend (which holds the VIP), unchanged.
    DsrBackend(Backend),
    /// An error from the client's side about a NAT flow: to the flow's
    /// backend, translated.
    NatBackend(Backend),
    /// An error from the backend's side (NAT): to the client, translated
    /// back by the flow's reply entry.
    Client(&'a Reply),
}

/// Translates the error for where it goes (nothing for DSR). Returns false
/// when a field is not inside the packet.
#[inline(always)]
pub fn translate(ctx: &XdpContext, err: &IcmpError, towards: &Towards, forwarding: bool) -> bool {
    match towards {
        Towards::DsrBackend(_) => true,
        Towards::NatBackend(backend) => to_backend(ctx, err, backend, forwarding),
        Towards::Client(reply) => to_client(ctx, err, reply, forwarding),
    }
}

/// An error from the client's side goes to `backend` as if the backend had
/// sent the quoted packet itself: the quoted source and the outer
/// destination (the VIP) become the backend.
#[inline(always)]
fn to_backend(ctx: &XdpContext, err: &IcmpError, backend: &Backend, forwarding: bool) -> bool {
    let quoted = Quoted {
        side: Side::Source,
        addr: &err.flow.dst,
        port: err.flow.dport,
        port_off: err.inner_l4,
    };
    replace(
        ctx,
        err,
        &quoted,
        &backend.addr,
        backend.port,
        Some(Side::Destination),
        forwarding,
    )
}

/// An error from the backend's side goes to the client with the quoted
/// destination (the backend) the VIP and port again; when the backend sent
/// it, its outer source becomes the VIP too (a router's stays).
#[inline(always)]
fn to_client(ctx: &XdpContext, err: &IcmpError, reply: &Reply, forwarding: bool) -> bool {
    let quoted = Quoted {
        side: Side::Destination,
        addr: &err.flow.src,
        port: err.flow.sport,
        port_off: err.inner_l4 + 2,
    };
    let outer = err.sent_by_quoted_destination().then_some(Side::Source);
    replace(
        ctx,
        err,
        &quoted,
        &reply.vip,
        reply.vport,
        outer,
        forwarding,
    )
}

/// The quoted packet's address and port that a translation replaces.
struct Quoted<'a> {
    side: Side,
    addr: &'a [u8; 16],
    port: [u8; 2],
    /// Offset of the port in the packet.
    port_off: usize,
}

/// Replaces the quoted packet's address and port of one side with `addr`
/// and `port`, and the outer address of side `outer` (which holds the
/// same old address) with `addr` too; decrements the TTL or hop limit when
/// forwarding; updates every checksum that covers what changed.
#[inline(always)]
fn replace(
    ctx: &XdpContext,
    err: &IcmpError,
    quoted: &Quoted,
    addr: &[u8; 16],
    port: [u8; 2],
    outer: Option<Side>,
    forwarding: bool,
) -> bool {
    let mut icmp = Diff::new();
    // The quoted packet's L4 checksum, if quoted.
    let mut inner_l4 = Diff::new();
    inner_l4.bytes(&quoted.port, &port);
    icmp.bytes(&quoted.port, &port);
    if !write(ctx, quoted.port_off, port) {
        return false;
    }
    let ok = if err.outer.is_v4() {
        translate_v4(
            ctx,
            err,
            quoted,
            addr,
            outer,
            &mut icmp,
            &mut inner_l4,
            forwarding,
        )
    } else {
        translate_v6(
            ctx,
            err,
            quoted,
            addr,
            outer,
            &mut icmp,
            &mut inner_l4,
            forwarding,
        )
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

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn translate_v4(
    ctx: &XdpContext,
    err: &IcmpError,
    quoted: &Quoted,
    addr: &[u8; 16],
    outer: Option<Side>,
    icmp: &mut Diff,
    inner_l4: &mut Diff,
    forwarding: bool,
) -> bool {
    let (old, new) = (first4(quoted.addr), first4(addr));
    // Outer header: the address (when it changes), the TTL, the header
    // checksum (ICMPv4 has no pseudo-header). An outer address that stays
    // is written back as it was.
    let written = match outer {
        Some(side) => ipv4_header(ctx, side, old, new, forwarding),
        None => {
            let src = first4(&err.outer.key.src);
            ipv4_header(ctx, Side::Source, src, src, forwarding)
        }
    };
    if !written {
        return false;
    }
    // Quoted header: the address and the header checksum, both inside the
    // ICMP message.
    let addr_off = match quoted.side {
        Side::Source => err.inner + 12,
        Side::Destination => err.inner + 16,
    };
    let mut header = Diff::new();
    header.bytes(&old, &new);
    icmp.bytes(&old, &new);
    inner_l4.bytes(&old, &new);
    if !write(ctx, addr_off, new) {
        return false;
    }
    let Some(before) = read::<2>(ctx, err.inner + 10) else {
        return false;
    };
    let after = header.apply(u16::from_be_bytes(before)).to_be_bytes();
    icmp.bytes(&before, &after);
    write(ctx, err.inner + 10, after)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn translate_v6(
    ctx: &XdpContext,
    err: &IcmpError,
    quoted: &Quoted,
    addr: &[u8; 16],
    outer: Option<Side>,
    icmp: &mut Diff,
    inner_l4: &mut Diff,
    forwarding: bool,
) -> bool {
    // The outer address is in the ICMPv6 checksum's pseudo-header.
    if let Some(side) = outer {
        let outer_off = match side {
            Side::Source => ETH_HDR_LEN + 8,
            Side::Destination => ETH_HDR_LEN + 24,
        };
        icmp.bytes(quoted.addr, addr);
        if !write(ctx, outer_off, *addr) {
            return false;
        }
    }
    let addr_off = match quoted.side {
        Side::Source => err.inner + 8,
        Side::Destination => err.inner + 24,
    };
    icmp.bytes(quoted.addr, addr);
    inner_l4.bytes(quoted.addr, addr);
    if !write(ctx, addr_off, *addr) {
        return false;
    }
    !forwarding || decrement_hop_limit(ctx)
}

/// Updates the quoted packet's TCP or UDP checksum when the quote holds it
/// (inside the outer packet's length; an IPv4 UDP checksum of zero stays
/// zero, a computed UDP checksum of zero is sent as 0xffff).
#[inline(always)]
fn quoted_l4_checksum(ctx: &XdpContext, err: &IcmpError, diff: Diff, icmp: &mut Diff) {
    let offset = err.inner_l4
        + if err.flow.proto == IPPROTO_TCP {
            TCP_CSUM_OFF
        } else {
            UDP_CSUM_OFF
        };
    // Bytes past the IP packet (link-layer padding) are not the quote's.
    if offset + 2 > ETH_HDR_LEN + usize::from(err.outer.ip_len) {
        return;
    }
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
