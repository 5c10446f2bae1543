//! Frames for fixtures and benchmarks, built with etherparse (which computes
//! every checksum itself: an implementation independent of ours).
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, PacketBuilder,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Transport of a test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with the given flags (SYN for a first packet).
    Tcp {
        syn: bool,
        ack: bool,
    },
    Udp,
}

pub const SYN: L4 = L4::Tcp {
    syn: true,
    ack: false,
};
pub const ACK: L4 = L4::Tcp {
    syn: false,
    ack: true,
};

/// Everything that describes a TCP or UDP frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4,
    /// TTL or hop limit.
    pub ttl: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame from `src` to `dst` between the client and LB MACs, TTL 64.
    pub fn new(src: SocketAddr, dst: SocketAddr, l4: L4) -> Self {
        Self {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            src,
            dst,
            l4,
            ttl: 64,
            payload: Vec::new(),
        }
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn src(mut self, src: SocketAddr) -> Self {
        self.src = src;
        self
    }

    pub fn dst(mut self, dst: SocketAddr) -> Self {
        self.dst = dst;
        self
    }

    /// The data plane's key of this frame's 5-tuple (as it arrives).
    pub fn flow_key(&self) -> lb_common::FlowKey {
        let bytes = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        lb_common::FlowKey {
            src: bytes(self.src.ip()),
            dst: bytes(self.dst.ip()),
            sport: self.src.port().to_be_bytes(),
            dport: self.dst.port().to_be_bytes(),
            proto: match self.l4 {
                L4::Tcp { .. } => lb_common::IPPROTO_TCP,
                L4::Udp => lb_common::IPPROTO_UDP,
            },
            family: if self.src.is_ipv4() {
                lb_common::AF_INET
            } else {
                lb_common::AF_INET6
            },
            pad: [0; 2],
        }
    }

    /// The bytes on the wire.
    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let ip = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), self.ttl),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), self.ttl),
            _ => panic!("mixed address families: {} -> {}", self.src, self.dst),
        };
        let mut frame = Vec::new();
        let (sport, dport) = (self.src.port(), self.dst.port());
        match self.l4 {
            L4::Tcp { syn, ack } => {
                let mut b = ip.tcp(sport, dport, 1000, 64240);
                if syn {
                    b = b.syn();
                }
                if ack {
                    b = b.ack(1);
                }
                b.write(&mut frame, &self.payload)
            }
            L4::Udp => ip.udp(sport, dport).write(&mut frame, &self.payload),
        }
        .expect("an etherparse-built frame always writes");
        frame
    }
}

/// An IPv4 TCP or UDP frame between the client and LB MACs.
pub fn ipv4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), l4: L4, payload: &[u8]) -> Vec<u8> {
    Frame::new(src.into(), dst.into(), l4)
        .payload(payload)
        .build()
}

/// An IPv6 TCP or UDP frame between the client and LB MACs.
pub fn ipv6(
    src: (std::net::Ipv6Addr, u16),
    dst: (std::net::Ipv6Addr, u16),
    l4: L4,
    payload: &[u8],
) -> Vec<u8> {
    Frame::new(
        SocketAddr::new(src.0.into(), src.1),
        SocketAddr::new(dst.0.into(), dst.1),
        l4,
    )
    .payload(payload)
    .build()
}

/// An ICMP echo request.
pub fn icmpv4_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut frame, b"ping")
        .expect("an etherparse-built frame always writes");
    frame
}

/// An ARP request: who has `target`? tell `sender`.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &CLIENT_MAC,
        &sender.octets(),
        &[0; 6],
        &target.octets(),
    )
    .expect("valid ARP field lengths");
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
        .arp(arp)
        .write(&mut frame)
        .expect("an etherparse-built frame always writes");
    frame
}

/// A frame of any EtherType with an opaque payload (LLDP, VLAN...).
pub fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Ethernet2Header {
        source: CLIENT_MAC,
        destination: LB_MAC,
        ether_type: EtherType(ether_type),
    }
    .to_bytes()
    .to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// Sets the IPv4 header length field (IHL, in 32-bit words) of an Ethernet
/// frame carrying IPv4, leaving every other byte as it was.
pub fn with_ipv4_ihl(mut frame: Vec<u8>, ihl: u8) -> Vec<u8> {
    let byte = &mut frame[Ethernet2Header::LEN];
    *byte = (*byte & 0xf0) | (ihl & 0x0f);
    frame
}

/// Splits a frame carrying one IP datagram into IP fragments of at most
/// `chunk` bytes of IP payload each (`chunk` a multiple of 8), as a host
/// fragments: IPv4 with identification `id` (its low 16 bits), IPv6 with a
/// fragment header holding `id`. The first fragment carries the TCP or UDP
/// header, whose checksum covers the whole datagram.
pub fn fragments(frame: &[u8], id: u32, chunk: usize) -> Vec<Vec<u8>> {
    use etherparse::{IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header};
    assert!(
        chunk > 0 && chunk.is_multiple_of(8),
        "fragments hold multiples of 8 bytes"
    );
    let eth = &frame[..Ethernet2Header::LEN];
    let ip = &frame[Ethernet2Header::LEN..];
    let mut out = Vec::new();
    match ip[0] >> 4 {
        4 => {
            let (header, payload) = Ipv4Header::from_slice(ip).expect("an IPv4 frame");
            let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let mut h = header.clone();
                h.identification = id as u16;
                h.more_fragments = i + 1 < pieces.len();
                h.fragment_offset = IpFragOffset::try_new((i * chunk / 8) as u16).unwrap();
                h.total_len = (h.header_len() + piece.len()) as u16;
                h.header_checksum = h.calc_header_checksum();
                let mut f = eth.to_vec();
                f.extend_from_slice(&h.to_bytes());
                f.extend_from_slice(piece);
                out.push(f);
            }
        }
        6 => {
            let (header, payload) = Ipv6Header::from_slice(ip).expect("an IPv6 frame");
            let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let fragment = Ipv6FragmentHeader::new(
                    header.next_header,
                    IpFragOffset::try_new((i * chunk / 8) as u16).unwrap(),
                    i + 1 < pieces.len(),
                    id,
                );
                let mut h = header.clone();
                h.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
                h.payload_length = (Ipv6FragmentHeader::LEN + piece.len()) as u16;
                let mut f = eth.to_vec();
                f.extend_from_slice(&h.to_bytes());
                f.extend_from_slice(&fragment.to_bytes());
                f.extend_from_slice(piece);
                out.push(f);
            }
        }
        v => panic!("IP version {v}"),
    }
    out
}

/// An IPv6 extension header for [`with_ipv6_ext_headers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options (one PadN option).
    HopByHop,
    /// Destination options (one PadN option).
    DestOptions,
    /// A 24-byte destination-options header (length field 2).
    LongDestOptions,
    /// A destination options header of the largest size, 2,048 bytes
    /// (PadN options only).
    MaxDestOptions,
    /// A fragment header of a whole datagram (an "atomic fragment":
    /// offset 0, no more fragments).
    AtomicFragment,
    /// A routing header (type 4, no segments left).
    Routing,
}

/// The IPv6 frame with `headers`, in order, between its fixed header and
/// its payload (the payload, checksum included, as it was: extension
/// headers other than routing do not enter the pseudo-header).
pub fn with_ipv6_ext_headers(frame: &[u8], headers: &[Ext]) -> Vec<u8> {
    use etherparse::{IpNumber, Ipv6Header};
    let (mut ip, payload) =
        Ipv6Header::from_slice(&frame[Ethernet2Header::LEN..]).expect("an IPv6 frame");
    let number = |ext: Ext| match ext {
        Ext::HopByHop => IpNumber::IPV6_HEADER_HOP_BY_HOP,
        Ext::DestOptions | Ext::LongDestOptions | Ext::MaxDestOptions => {
            IpNumber::IPV6_DESTINATION_OPTIONS
        }
        Ext::AtomicFragment => IpNumber::IPV6_FRAGMENTATION_HEADER,
        Ext::Routing => IpNumber::IPV6_ROUTE_HEADER,
    };
    let mut chain = Vec::new();
    for (i, ext) in headers.iter().enumerate() {
        let next = headers.get(i + 1).map_or(ip.next_header, |n| number(*n)).0;
        match ext {
            // PadN of 4 bytes fills the 8-byte header.
            Ext::HopByHop | Ext::DestOptions => {
                chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0])
            }
            Ext::LongDestOptions => {
                chain.extend_from_slice(&[next, 2, 1, 20]);
                chain.extend_from_slice(&[0; 20]);
            }
            // Length 255: (255 + 1) x 8 bytes; seven PadN options of 257
            // bytes and one of 247 fill the 2,046 after the first two.
            Ext::MaxDestOptions => {
                chain.extend_from_slice(&[next, 255]);
                for _ in 0..7 {
                    chain.extend_from_slice(&[1, 255]);
                    chain.extend_from_slice(&[0; 255]);
                }
                chain.extend_from_slice(&[1, 245]);
                chain.extend_from_slice(&[0; 245]);
            }
            Ext::AtomicFragment => chain.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0x12, 0x34]),
            Ext::Routing => chain.extend_from_slice(&[next, 0, 4, 0, 0, 0, 0, 0]),
        }
    }
    if let Some(first) = headers.first() {
        ip.next_header = number(*first);
    }
    ip.payload_length = (chain.len() + payload.len()) as u16;
    let mut out = frame[..Ethernet2Header::LEN].to_vec();
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&chain);
    out.extend_from_slice(payload);
    out
}

/// The frame with its IPv4 header changed by `edit`, the header checksum
/// computed again (so that only the edited field is wrong).
pub fn edit_ipv4_header(frame: &[u8], edit: impl FnOnce(&mut etherparse::Ipv4Header)) -> Vec<u8> {
    let at = Ethernet2Header::LEN;
    let (mut header, _) = etherparse::Ipv4Header::from_slice(&frame[at..]).expect("an IPv4 frame");
    let len = header.header_len();
    edit(&mut header);
    header.header_checksum = header.calc_header_checksum();
    let mut out = frame.to_vec();
    out[at..at + len].copy_from_slice(&header.to_bytes());
    out
}

/// The frame with its IPv6 payload length set to `len`.
pub fn with_ipv6_payload_length(frame: &[u8], len: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    let at = Ethernet2Header::LEN + 4;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    out
}

/// An ICMP or ICMPv6 message type, with its code and the rest of its first
/// eight bytes (MTU, pointer...).
#[derive(Clone, Debug)]
pub enum IcmpKind {
    V4(etherparse::Icmpv4Type),
    V6(etherparse::Icmpv6Type),
}

/// An ICMP message of `kind` from `from` to `to` carrying `payload`: for an
/// error, the packet it quotes (an IP packet without its Ethernet header,
/// whole or cut).
pub fn icmp_message(
    macs: ([u8; 6], [u8; 6]),
    from: IpAddr,
    to: IpAddr,
    ttl: u8,
    kind: &IcmpKind,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut frame = Vec::new();
    match (from, to, kind) {
        (IpAddr::V4(f), IpAddr::V4(t), IcmpKind::V4(kind)) => eth
            .ipv4(f.octets(), t.octets(), ttl)
            .icmpv4(kind.clone())
            .write(&mut frame, payload),
        (IpAddr::V6(f), IpAddr::V6(t), IcmpKind::V6(kind)) => eth
            .ipv6(f.octets(), t.octets(), ttl)
            .icmpv6(*kind)
            .write(&mut frame, payload),
        _ => panic!("mixed address families: {from} -> {to}, {kind:?}"),
    }
    .expect("an etherparse-built frame always writes");
    frame
}

/// An ICMP error about `quoted` (an IP packet, without its Ethernet header)
/// from `router` to `to`: IPv4 "fragmentation needed" (MTU 1400) or ICMPv6
/// "packet too big" (MTU 1280), as a router on the path sends it.
pub fn icmp_too_big(
    macs: ([u8; 6], [u8; 6]),
    router: IpAddr,
    to: IpAddr,
    ttl: u8,
    quoted: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv4Type, Icmpv6Type, icmpv4::DestUnreachableHeader};
    let kind = match router {
        IpAddr::V4(_) => IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        )),
        IpAddr::V6(_) => IcmpKind::V6(Icmpv6Type::PacketTooBig { mtu: 1280 }),
    };
    icmp_message(macs, router, to, ttl, &kind, quoted)
}

/// What [`verify_icmp_checksums`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedChecksums {
    /// The quoted packet is an IPv4 one (whose header checksum was checked).
    pub ipv4_header: bool,
    /// The quote holds the whole packet, whose TCP or UDP checksum was
    /// checked.
    pub l4: bool,
}

/// Recomputes with etherparse (not with our code) every checksum of an ICMP
/// error frame and fails naming the first that is wrong: the outer IPv4
/// header, the ICMP checksum (ICMPv6 with its pseudo-header), the quoted
/// IPv4 header, and the quoted TCP or UDP checksum when the quote holds the
/// whole packet (an IPv4 UDP checksum of zero means none).
pub fn verify_icmp_checksums(frame: &[u8]) -> anyhow::Result<QuotedChecksums> {
    use anyhow::{bail, ensure};
    use etherparse::{Ipv4HeaderSlice, NetSlice, SlicedPacket, TransportSlice};
    let packet = SlicedPacket::from_ethernet(frame)?;
    let quote = match (&packet.net, &packet.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) => {
            let header = ip.header();
            ensure!(
                header.to_header().calc_header_checksum() == header.header_checksum(),
                "outer IPv4 header checksum"
            );
            ensure!(
                icmp.icmp_type().calc_checksum(icmp.payload()) == icmp.checksum(),
                "ICMP checksum"
            );
            icmp.payload()
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            let header = ip.header();
            ensure!(
                icmp.is_checksum_valid(header.source(), header.destination()),
                "ICMPv6 checksum"
            );
            icmp.payload()
        }
        _ => bail!("not an ICMP or ICMPv6 message"),
    };
    let mut checked = QuotedChecksums {
        ipv4_header: false,
        l4: false,
    };
    if quote.first().is_some_and(|b| b >> 4 == 4) {
        let header = Ipv4HeaderSlice::from_slice(quote)?;
        ensure!(
            header.to_header().calc_header_checksum() == header.header_checksum(),
            "quoted IPv4 header checksum"
        );
        checked.ipv4_header = true;
    }
    // Only a whole quote parses as a packet.
    let Ok(inner) = SlicedPacket::from_ip(quote) else {
        return Ok(checked);
    };
    let (src, dst) = match &inner.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (IpAddr::from(h.source()), IpAddr::from(h.destination()))
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (IpAddr::from(h.source()), IpAddr::from(h.destination()))
        }
        _ => bail!("quoted packet is not IP"),
    };
    let computed = match (&inner.transport, src, dst) {
        (Some(TransportSlice::Tcp(tcp)), IpAddr::V4(s), IpAddr::V4(d)) => (
            tcp.checksum(),
            tcp.calc_checksum_ipv4(s.octets(), d.octets())?,
        ),
        (Some(TransportSlice::Tcp(tcp)), IpAddr::V6(s), IpAddr::V6(d)) => (
            tcp.checksum(),
            tcp.calc_checksum_ipv6(s.octets(), d.octets())?,
        ),
        (Some(TransportSlice::Udp(udp)), IpAddr::V4(s), IpAddr::V4(d)) => {
            if udp.checksum() == 0 {
                return Ok(checked);
            }
            let header = udp.to_header();
            let sum = header.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload())?;
            (udp.checksum(), sum)
        }
        (Some(TransportSlice::Udp(udp)), IpAddr::V6(s), IpAddr::V6(d)) => {
            let header = udp.to_header();
            let sum = header.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload())?;
            (udp.checksum(), sum)
        }
        _ => bail!("quoted packet is not TCP or UDP"),
    };
    ensure!(
        computed.0 == computed.1,
        "quoted TCP/UDP checksum {:#06x}, expected {:#06x}",
        computed.0,
        computed.1
    );
    checked.l4 = true;
    Ok(checked)
}

/// An ICMP time exceeded (IPv4: TTL exceeded in transit; ICMPv6: hop limit
/// exceeded) from `node` to `to` about `quoted` (the start of an IP packet,
/// without Ethernet), as a router sends it: TTL or hop limit 64, IPv4 type
/// of service 0xc0 (precedence "internetwork control", as Linux sends ICMP
/// errors), no fragmentation flags.
pub fn time_exceeded(macs: ([u8; 6], [u8; 6]), node: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    use etherparse::{
        Icmpv4Type, Icmpv6Type, IpDscp, IpHeaders, IpNumber, Ipv4Header, icmpv4, icmpv6,
    };
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut frame = Vec::new();
    match (node, to) {
        (IpAddr::V4(n), IpAddr::V4(t)) => {
            let mut ip = Ipv4Header::new(0, 64, IpNumber::ICMP, n.octets(), t.octets())
                .expect("an empty payload fits");
            ip.dscp = IpDscp::try_new(0xc0 >> 2).expect("a 6-bit DSCP");
            ip.dont_fragment = false;
            eth.ip(IpHeaders::Ipv4(ip, Default::default()))
                .icmpv4(Icmpv4Type::TimeExceeded(
                    icmpv4::TimeExceededCode::TtlExceededInTransit,
                ))
                .write(&mut frame, quoted)
        }
        (IpAddr::V6(n), IpAddr::V6(t)) => eth
            .ipv6(n.octets(), t.octets(), 64)
            .icmpv6(Icmpv6Type::TimeExceeded(
                icmpv6::TimeExceededCode::HopLimitExceeded,
            ))
            .write(&mut frame, quoted),
        _ => panic!("mixed address families: {node} -> {to}"),
    }
    .expect("an etherparse-built frame always writes");
    frame
}

/// The IPv4 frame with one 4-byte word of options (no-operation, no-operation,
/// no-operation, end of list) after its header, lengths and header checksum
/// made right.
pub fn with_ipv4_nop_options(frame: &[u8]) -> Vec<u8> {
    let at = Ethernet2Header::LEN;
    let (mut header, rest) =
        etherparse::Ipv4Header::from_slice(&frame[at..]).expect("an IPv4 frame");
    header.options = [1u8, 1, 1, 0][..].try_into().expect("4 bytes of options");
    header.total_len += 4;
    header.header_checksum = header.calc_header_checksum();
    [&frame[..at], &header.to_bytes()[..], rest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port unreachable quoting a whole UDP or TCP packet, changed by
    /// `change` (the ICMP checksum computed after it).
    fn error_with(v6: bool, l4: L4, change: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let (a, b): (IpAddr, IpAddr) = if v6 {
            (
                "2001:db8::10".parse().unwrap(),
                "2001:db8:1::11".parse().unwrap(),
            )
        } else {
            (
                "198.18.0.10".parse().unwrap(),
                "198.18.1.11".parse().unwrap(),
            )
        };
        let mut quoted = Frame::new(SocketAddr::new(a, 40000), SocketAddr::new(b, 6001), l4)
            .payload(b"hello")
            .build()[14..]
            .to_vec();
        change(&mut quoted);
        let kind = if v6 {
            IcmpKind::V6(etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Port,
            ))
        } else {
            IcmpKind::V4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
        };
        icmp_message((CLIENT_MAC, LB_MAC), b, a, 64, &kind, &quoted)
    }

    fn error(v6: bool, l4: L4) -> Vec<u8> {
        error_with(v6, l4, |_| {})
    }

    fn fails_with(frame: &[u8], what: &str) {
        let err = verify_icmp_checksums(frame).expect_err("a broken checksum");
        assert!(err.to_string().contains(what), "{err:#}, expected {what}");
    }

    #[test]
    fn etherparse_frames_pass_and_whole_quotes_are_checked() {
        for v6 in [false, true] {
            for l4 in [L4::Udp, SYN] {
                let checked = verify_icmp_checksums(&error(v6, l4)).unwrap();
                assert_eq!(
                    checked,
                    QuotedChecksums {
                        ipv4_header: !v6,
                        l4: true
                    }
                );
            }
        }
    }

    #[test]
    fn each_wrong_checksum_is_named() {
        // Ethernet 14, IPv4 20, ICMP 8, then the quote.
        let frame = error(false, L4::Udp);
        let mut outer = frame.clone();
        outer[14 + 10] ^= 1;
        fails_with(&outer, "outer IPv4 header checksum");
        let mut icmp = frame.clone();
        icmp[14 + 20 + 2] ^= 1;
        fails_with(&icmp, "ICMP checksum");
        // A quoted address changed without its checksums.
        let quoted = error_with(false, L4::Udp, |q| q[16] ^= 1);
        fails_with(&quoted, "quoted IPv4 header checksum");
        // A quoted port changed without its checksum.
        let quoted_l4 = error_with(false, L4::Udp, |q| q[20 + 2] ^= 1);
        fails_with(&quoted_l4, "quoted TCP/UDP checksum");

        let mut icmp6 = error(true, SYN);
        icmp6[14 + 40 + 2] ^= 1;
        fails_with(&icmp6, "ICMPv6 checksum");
        let quoted_l4 = error_with(true, SYN, |q| q[40 + 3] ^= 1);
        fails_with(&quoted_l4, "quoted TCP/UDP checksum");
    }
}
