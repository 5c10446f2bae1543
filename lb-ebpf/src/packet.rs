//! Parsing: Ethernet, then IPv4 or IPv6, then the TCP or UDP ports. Every
//! read is checked against `data_end` right where it happens.
use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::{
    AF_INET, AF_INET6, Counter, FlowKey, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const TCP_MIN_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
/// Offset of the checksum in the TCP and UDP headers.
pub const TCP_CSUM_OFF: usize = 16;
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
}

impl Packet {
    pub fn is_v4(&self) -> bool {
        self.key.family == AF_INET
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

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext) -> Result<Packet, Counter> {
    let hdr = read::<IPV4_MIN_HDR_LEN>(ctx, ETH_HDR_LEN).ok_or(Counter::PassMalformed)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if hdr[0] >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
        return Err(Counter::PassMalformed);
    }
    // More-fragments flag or a fragment offset: the kernel reassembles.
    if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
        return Err(Counter::PassFragment);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&hdr[12..16]);
    dst[..4].copy_from_slice(&hdr[16..20]);
    let l4 = ETH_HDR_LEN + ihl;
    // The options (if any) must be inside the packet too.
    if ctx.data() + l4 > ctx.data_end() {
        return Err(Counter::PassMalformed);
    }
    transport(
        ctx,
        AF_INET,
        hdr[9],
        src,
        dst,
        l4,
        u16::from_be_bytes([hdr[2], hdr[3]]),
        hdr[8],
    )
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext) -> Result<Packet, Counter> {
    let hdr = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN).ok_or(Counter::PassMalformed)?;
    if hdr[0] >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let next_header = hdr[6];
    if next_header == IPPROTO_ICMPV6 {
        return Err(Counter::PassIcmp);
    }
    if next_header != IPPROTO_TCP && next_header != IPPROTO_UDP {
        return Err(Counter::PassIpv6NextHeader);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&hdr[8..24]);
    dst.copy_from_slice(&hdr[24..40]);
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]);
    transport(
        ctx,
        AF_INET6,
        next_header,
        src,
        dst,
        ETH_HDR_LEN + IPV6_HDR_LEN,
        payload_len.saturating_add(IPV6_HDR_LEN as u16),
        hdr[7],
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transport(
    ctx: &XdpContext,
    family: u8,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    l4: usize,
    ip_len: u16,
    ttl: u8,
) -> Result<Packet, Counter> {
    let (hdr_len, csum_off) = match proto {
        IPPROTO_TCP => (TCP_MIN_HDR_LEN, TCP_CSUM_OFF),
        IPPROTO_UDP => (UDP_HDR_LEN, UDP_CSUM_OFF),
        // Possibly an error about a flow: see icmp.rs.
        IPPROTO_ICMP if family == AF_INET => return Err(Counter::PassIcmp),
        _ => return Err(Counter::PassNotService),
    };
    if ctx.data() + l4 + hdr_len > ctx.data_end() {
        return Err(Counter::PassMalformed);
    }
    let ports = read::<4>(ctx, l4).ok_or(Counter::PassMalformed)?;
    Ok(Packet {
        key: FlowKey {
            src,
            dst,
            sport: [ports[0], ports[1]],
            dport: [ports[2], ports[3]],
            proto,
            family,
            pad: [0; 2],
        },
        l4,
        l4_csum: l4 + csum_off,
        ip_len,
        ttl,
    })
}
