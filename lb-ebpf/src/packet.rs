//! Parsing: Ethernet, then IPv4 or IPv6 (with up to
//! [`IPV6_MAX_EXT_HEADERS`] extension headers), then the TCP or UDP ports.
//! Every read is checked against `data_end` right where it happens, and
//! every length field against the frame: a packet whose lengths do not hold
//! is never rewritten (see the `Counter`s it is passed under).
//!
//! Multi-buffer frames (the programs are `xdp.frags`: jumbo frames) hold
//! their payload in several buffers, and `data..data_end` is only the
//! first. Reads and writes stay in it, so every header the balancer reads
//! or rewrites must be there; the length fields are checked against the
//! whole frame ([`frame_len`]). A TCP or UDP header that the IP packet
//! holds but the first buffer does not is passed, counted as
//! [`Counter::PassSplitHeaders`]. Drivers put far more than the Ethernet
//! and IP headers in the first buffer (veth: about 3.5 kB); a first buffer
//! too short for them is passed as malformed.
use core::mem::size_of;

use aya_ebpf::{helpers::generated::bpf_xdp_get_buff_len, programs::XdpContext};
use lb_common::{
    AF_INET, AF_INET6, Counter, FlowKey, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    IPV6_MAX_EXT_HEADERS,
};

use crate::csum;

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const TCP_MIN_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
const IPV4_MAX_HDR_LEN: usize = 60;
/// IPv6 extension headers the parser walks.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTIONS: u8 = 60;
const IPV6_FRAGMENT_HDR_LEN: usize = 8;

/// Whether a packet is a fragment of an IP datagram, and which.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragmentation {
    /// A whole datagram (an IPv6 "atomic fragment", offset 0 and no more
    /// fragments, counts as one).
    None,
    /// Offset 0, more to come: carries the TCP or UDP header.
    First,
    /// Any other fragment: no transport header, only data.
    Later,
}
/// Offset of the checksum in the TCP and UDP headers.
pub const TCP_CSUM_OFF: usize = 16;
/// The SYN bit of the TCP header's flags byte (offset 13).
const TCP_SYN: u8 = 0x02;
pub const UDP_CSUM_OFF: usize = 6;

/// A parsed TCP or UDP packet: its 5-tuple and where the fields a rewrite
/// touches are.
pub struct Packet {
    pub key: FlowKey,
    /// Offset of the L4 header.
    pub l4: usize,
    /// Offset of the L4 checksum.
    pub l4_csum: usize,
    /// IPv4 total length or IPv6 payload length plus header (for the FIB's
    /// MTU check).
    pub ip_len: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    pub fragment: Fragmentation,
    /// The datagram's identification, when a fragment (IPv4: 16 bits then
    /// zeros; IPv6: 32 bits), as `lb_common::FragmentKey::id`.
    pub frag_id: [u8; 4],
    /// TCP with SYN set: a connection's first packet (or its retransmission),
    /// which never confirms a flow (see `lb_common::maps::NEW_FLOWS`).
    pub syn: bool,
    /// The whole frame's length ([`frame_len`], asked once per packet): the
    /// byte counters add it.
    pub frame_len: u32,
}

impl Packet {
    pub fn is_v4(&self) -> bool {
        self.key.family == AF_INET
    }

    /// False for a later fragment: no ports, no L4 checksum to update (the
    /// key's ports are zero).
    pub fn has_l4_header(&self) -> bool {
        self.fragment != Fragmentation::Later
    }
}

/// A pointer to a `T` at `offset`, if the packet holds it entirely.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Reads `N` bytes at `offset`. At least two: for one byte LLVM turns the
/// bounds check into `ptr >= data_end`, from which the verifier learns
/// nothing about the byte at `ptr` (and rejects the program).
#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    const { assert!(N >= 2, "read at least two bytes") };
    // SAFETY: ptr_at checked that the N bytes are inside the packet.
    ptr_at::<[u8; N]>(ctx, offset).map(|p| unsafe { *p })
}

/// Writes `N` bytes at `offset` (at least two, as for [`read`]); false when
/// they are not inside the packet.
#[inline(always)]
pub fn write<const N: usize>(ctx: &XdpContext, offset: usize, bytes: [u8; N]) -> bool {
    const { assert!(N >= 2, "write at least two bytes") };
    match ptr_at::<[u8; N]>(ctx, offset) {
        // SAFETY: ptr_at checked that the N bytes are inside the packet.
        Some(p) => unsafe {
            *p = bytes;
            true
        },
        None => false,
    }
}

/// The whole frame's length, every buffer of a multi-buffer frame
/// included: for the checks of length fields and for the byte counters.
/// Hidden from LLVM (a helper's answer, and `black_box`): a check against
/// the real bounds would let it drop the checks of later reads as
/// redundant, and the verifier, which cannot follow that reasoning, would
/// reject them. Without `black_box` the verifier explores more states
/// (over its million instructions for `lb_xdp`).
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    // SAFETY: the helper only reads the context.
    core::hint::black_box(unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize)
}

/// Parses the frame, or says why it is not one the balancer handles.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Counter> {
    let ethertype = read::<2>(ctx, 12).ok_or(Counter::PassMalformed)?;
    match u16::from_be_bytes(ethertype) {
        ETH_P_IP => parse_ipv4(ctx),
        ETH_P_IPV6 => parse_ipv6(ctx),
        _ => Err(Counter::PassNotIp),
    }
}

/// What the IP layer says about the transport header: where it starts,
/// where the IP packet ends (the frame may be longer: Ethernet padding), and
/// the fields a balancer needs.
struct Ip {
    family: u8,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    l4: usize,
    end: usize,
    ttl: u8,
    fragment: Fragmentation,
    frag_id: [u8; 4],
    frame_len: usize,
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext) -> Result<Packet, Counter> {
    let hdr = read::<IPV4_MIN_HDR_LEN>(ctx, ETH_HDR_LEN).ok_or(Counter::PassMalformed)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if hdr[0] >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
        return Err(Counter::PassMalformed);
    }
    match ipv4_checksum_ok(ctx, &hdr, ihl) {
        // The options (if any) must be inside the packet too.
        None => return Err(Counter::PassMalformed),
        Some(false) => return Err(Counter::DropIpv4Checksum),
        Some(true) => {}
    }
    let total_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let frame_len = frame_len(ctx);
    if total_len < ihl || ETH_HDR_LEN + total_len > frame_len {
        return Err(Counter::PassBadIpLength);
    }
    let flags_offset = u16::from_be_bytes([hdr[6], hdr[7]]);
    let fragment = if flags_offset & 0x1fff != 0 {
        Fragmentation::Later
    } else if flags_offset & 0x2000 != 0 {
        Fragmentation::First
    } else {
        Fragmentation::None
    };
    let mut ip = Ip {
        family: AF_INET,
        proto: hdr[9],
        src: [0; 16],
        dst: [0; 16],
        l4: ETH_HDR_LEN + ihl,
        end: ETH_HDR_LEN + total_len,
        ttl: hdr[8],
        fragment,
        frag_id: [hdr[4], hdr[5], 0, 0],
        frame_len,
    };
    ip.src[..4].copy_from_slice(&hdr[12..16]);
    ip.dst[..4].copy_from_slice(&hdr[16..20]);
    transport(ctx, &ip)
}

/// Whether the IPv4 header checksum holds (RFC 1812, 5.2.2): the
/// one's-complement sum of the header, options included, is all ones.
/// `hdr` is the fixed part, already read; `None` when the options are not
/// all inside the packet.
#[inline(always)]
fn ipv4_checksum_ok(ctx: &XdpContext, hdr: &[u8; IPV4_MIN_HDR_LEN], ihl: usize) -> Option<bool> {
    let mut sum = 0u32;
    let mut i = 0;
    while i < IPV4_MIN_HDR_LEN {
        sum += u32::from(u16::from_be_bytes([hdr[i], hdr[i + 1]]));
        i += 2;
    }
    let mut off = IPV4_MIN_HDR_LEN;
    while off < IPV4_MAX_HDR_LEN && off < ihl {
        // Hidden from LLVM, which would otherwise turn the reads' checks
        // into one check of the loop's trip count against the packet's
        // length: right, but the verifier cannot follow it.
        let word = read::<4>(ctx, ETH_HDR_LEN + core::hint::black_box(off))?;
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        sum += u32::from(u16::from_be_bytes([word[2], word[3]]));
        off += 4;
    }
    Some(csum::fold(sum) == 0xffff)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext) -> Result<Packet, Counter> {
    let hdr = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN).ok_or(Counter::PassMalformed)?;
    if hdr[0] >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    let end = ETH_HDR_LEN + IPV6_HDR_LEN + payload_len;
    let frame_len = frame_len(ctx);
    if end > frame_len {
        return Err(Counter::PassBadIpLength);
    }
    let mut ip = Ip {
        family: AF_INET6,
        proto: hdr[6],
        src: [0; 16],
        dst: [0; 16],
        l4: ETH_HDR_LEN + IPV6_HDR_LEN,
        end,
        ttl: hdr[7],
        fragment: Fragmentation::None,
        frag_id: [0; 4],
        frame_len,
    };
    ip.src.copy_from_slice(&hdr[8..24]);
    ip.dst.copy_from_slice(&hdr[24..40]);
    extension_headers(ctx, &mut ip)?;
    if ip.proto == IPPROTO_ICMPV6 {
        return Err(Counter::PassIcmp);
    }
    if ip.proto != IPPROTO_TCP && ip.proto != IPPROTO_UDP {
        return Err(Counter::PassIpv6NextHeader);
    }
    transport(ctx, &ip)
}

/// Walks up to [`IPV6_MAX_EXT_HEADERS`] hop-by-hop, destination-options and
/// fragment headers (one fragment header at most), as Cilium's
/// `ipv6_hdrlen` does, leaving `ip.proto` and `ip.l4` at what follows them.
/// A later fragment's data follows its fragment header: the walk stops
/// there.
#[inline(always)]
fn extension_headers(ctx: &XdpContext, ip: &mut Ip) -> Result<(), Counter> {
    for _ in 0..IPV6_MAX_EXT_HEADERS {
        match ip.proto {
            IPV6_HOP_BY_HOP | IPV6_DEST_OPTIONS => {
                let [next, len] = read::<2>(ctx, ip.l4).ok_or(Counter::PassBadIpLength)?;
                ip.proto = next;
                ip.l4 += (usize::from(len) + 1) * 8;
            }
            IPV6_FRAGMENT if ip.fragment == Fragmentation::None => {
                let hdr =
                    read::<IPV6_FRAGMENT_HDR_LEN>(ctx, ip.l4).ok_or(Counter::PassBadIpLength)?;
                ip.proto = hdr[0];
                ip.l4 += IPV6_FRAGMENT_HDR_LEN;
                ip.frag_id = [hdr[4], hdr[5], hdr[6], hdr[7]];
                let offset_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                if offset_flags & 0xfff8 != 0 {
                    ip.fragment = Fragmentation::Later;
                    break;
                }
                if offset_flags & 1 != 0 {
                    ip.fragment = Fragmentation::First;
                }
            }
            _ => break,
        }
    }
    if ip.l4 > ip.end {
        return Err(Counter::PassBadIpLength);
    }
    Ok(())
}

/// The ports, after checking the transport header's own length field
/// against the IP packet. A later fragment has no transport header.
#[inline(always)]
fn transport(ctx: &XdpContext, ip: &Ip) -> Result<Packet, Counter> {
    let csum_off = match ip.proto {
        IPPROTO_TCP => TCP_CSUM_OFF,
        IPPROTO_UDP => UDP_CSUM_OFF,
        // Possibly an error about a flow: see icmp.rs.
        IPPROTO_ICMP if ip.family == AF_INET && ip.fragment == Fragmentation::None => {
            return Err(Counter::PassIcmp);
        }
        _ => return Err(Counter::PassNotService),
    };
    let mut pkt = Packet {
        key: FlowKey {
            src: ip.src,
            dst: ip.dst,
            sport: [0; 2],
            dport: [0; 2],
            proto: ip.proto,
            family: ip.family,
            pad: [0; 2],
        },
        l4: ip.l4,
        l4_csum: ip.l4 + csum_off,
        ip_len: u16::try_from(ip.end - ETH_HDR_LEN).unwrap_or(u16::MAX),
        ttl: ip.ttl,
        fragment: ip.fragment,
        frag_id: ip.frag_id,
        syn: false,
        frame_len: ip.frame_len as u32,
    };
    if ip.fragment == Fragmentation::Later {
        return Ok(pkt);
    }
    let ports = if ip.proto == IPPROTO_TCP {
        let (ports, flags) = tcp_header(ctx, ip)?;
        pkt.syn = flags & TCP_SYN != 0;
        ports
    } else {
        udp_header(ctx, ip)?
    };
    pkt.key.sport = [ports[0], ports[1]];
    pkt.key.dport = [ports[2], ports[3]];
    Ok(pkt)
}

/// The TCP ports and flags; the header (data offset, options included)
/// must lie inside the IP packet: in a first fragment too (RFC 1858). Its
/// fixed part, checksum included (a rewrite updates it), is read from the
/// first buffer: the IP packet holds it, so a read that fails means it is
/// in a later buffer.
#[inline(always)]
fn tcp_header(ctx: &XdpContext, ip: &Ip) -> Result<([u8; 4], u8), Counter> {
    if ip.l4 + TCP_MIN_HDR_LEN > ip.end {
        return Err(Counter::PassBadTcpHeader);
    }
    let hdr = read::<TCP_MIN_HDR_LEN>(ctx, ip.l4).ok_or(Counter::PassSplitHeaders)?;
    let data_offset = usize::from(hdr[12] >> 4) * 4;
    if data_offset < TCP_MIN_HDR_LEN || ip.l4 + data_offset > ip.end {
        return Err(Counter::PassBadTcpHeader);
    }
    Ok(([hdr[0], hdr[1], hdr[2], hdr[3]], hdr[13]))
}

/// The UDP ports; the UDP length must cover the header and, unless the
/// datagram is in fragments (then it counts them all), stay inside the IP
/// payload. The header is read from the first buffer (as for TCP, a read
/// that fails means a later buffer).
#[inline(always)]
fn udp_header(ctx: &XdpContext, ip: &Ip) -> Result<[u8; 4], Counter> {
    if ip.l4 + UDP_HDR_LEN > ip.end {
        return Err(Counter::PassBadUdpLength);
    }
    let hdr = read::<UDP_HDR_LEN>(ctx, ip.l4).ok_or(Counter::PassSplitHeaders)?;
    let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if len < UDP_HDR_LEN || (ip.fragment == Fragmentation::None && ip.l4 + len > ip.end) {
        return Err(Counter::PassBadUdpLength);
    }
    Ok([hdr[0], hdr[1], hdr[2], hdr[3]])
}
