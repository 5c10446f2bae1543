//! Frames for fixtures and benchmarks, built with etherparse.
use std::net::{Ipv4Addr, Ipv6Addr};

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

/// An IPv4 packet from `src:sport` to `dst:dport` carrying `payload`.
pub fn ipv4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), l4: L4, payload: &[u8]) -> Vec<u8> {
    let builder =
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(src.0.octets(), dst.0.octets(), 64);
    let mut frame = Vec::new();
    match l4 {
        L4::Tcp { syn, ack } => {
            let mut b = builder.tcp(src.1, dst.1, 1000, 64240);
            if syn {
                b = b.syn();
            }
            if ack {
                b = b.ack(1);
            }
            b.write(&mut frame, payload)
        }
        L4::Udp => builder.udp(src.1, dst.1).write(&mut frame, payload),
    }
    .expect("an etherparse-built frame always writes");
    frame
}

/// An IPv6 packet from `[src]:sport` to `[dst]:dport` carrying `payload`.
pub fn ipv6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), l4: L4, payload: &[u8]) -> Vec<u8> {
    let builder =
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(src.0.octets(), dst.0.octets(), 64);
    let mut frame = Vec::new();
    match l4 {
        L4::Tcp { syn, ack } => {
            let mut b = builder.tcp(src.1, dst.1, 1000, 64240);
            if syn {
                b = b.syn();
            }
            if ack {
                b = b.ack(1);
            }
            b.write(&mut frame, payload)
        }
        L4::Udp => builder.udp(src.1, dst.1).write(&mut frame, payload),
    }
    .expect("an etherparse-built frame always writes");
    frame
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
