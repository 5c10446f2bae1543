//! Counters: the traffic of each service and backend, and the global
//! packet counters.

// Named only in the documentation.
#[cfg(doc)]
use crate::{ICMP_BURST, IPV6_MAX_EXT_HEADERS, maps};

/// Traffic counters of a service or backend (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// Global packet counters, one slot each in [`maps::STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames that are neither IPv4 nor IPv6 (ARP, LLDP, VLAN-tagged...).
    PassNotIp = 0,
    /// IP packets not addressed to a service nor a NAT reply.
    PassNotService = 1,
    /// Frames too short for the header they announce, or with a bad IPv4
    /// header length: the kernel's stack counts and drops them.
    PassMalformed = 2,
    /// Later fragments (not the first) of a datagram whose first fragment
    /// was not seen here, or arrived after them, or went to a backend that
    /// has gone since: the kernel's (see ARCHITECTURE.md, "Fragments").
    PassFragment = 3,
    /// IPv6 packets whose next header, after at most
    /// [`IPV6_MAX_EXT_HEADERS`] hop-by-hop, destination-options and
    /// fragment headers, is not TCP, UDP or ICMPv6 (routing headers, AH,
    /// ESP, longer chains...).
    PassIpv6NextHeader = 4,
    /// Service packets on a standby node.
    PassStandby = 5,
    /// NAT replies and ICMP errors for a backend whose TTL or hop limit
    /// would expire here: the kernel answers with ICMP time exceeded from
    /// its own address (packets to a service: [`Counter::DropTtl`]).
    PassTtl = 6,
    /// Translated packets whose next hop has no neighbour entry yet: the
    /// kernel forwards them and resolves it.
    PassNoNeighbour = 7,
    /// Service packets the FIB cannot forward (no route, forwarding off,
    /// MTU exceeded...): passed unchanged.
    PassFibMiss = 8,
    /// Packets sent on by XDP_TX or a redirect (service traffic and NAT
    /// replies).
    Forwarded = 9,
    /// New flows of a service with no usable backend and no sorry server.
    DropNoBackend = 10,
    /// The FIB chose an interface the program may not redirect to (not in
    /// [`maps::TX_PORTS`]).
    DropNoTxPort = 11,
    /// DSR packets whose backend has no neighbour entry: handing them to the
    /// kernel would make it answer for the VIP with a reset, so they are
    /// dropped (the client retransmits). The daemon keeps a managed
    /// neighbour entry for the next hop of every backend, whatever the
    /// health checks (`lb-ctl/src/neighbours`), so this counts only packets
    /// to a backend whose next hop does not answer (shown as `unresolved`
    /// by `lb-ctl backend list`, with an alert).
    DropNoNeighbour = 12,
    /// ICMP and ICMPv6 other than an error about a flow (see
    /// [`Counter::ForwardedIcmp`]): the kernel's.
    PassIcmp = 13,
    /// ICMP and ICMPv6 errors about a flow sent on by XDP_TX or a redirect:
    /// from the client's side to the flow's backend, or (NAT) from the
    /// backend's side to the client, translated. Not in [`Counter::Forwarded`].
    ForwardedIcmp = 14,
    /// IPv4 packets whose header checksum is wrong: dropped (RFC 1812,
    /// 5.2.2; the kernel's stack would drop them too).
    DropIpv4Checksum = 15,
    /// IPv4 total length beyond the frame or shorter than the header, or an
    /// IPv6 payload length beyond the frame or shorter than the extension
    /// headers: passed unchanged (the kernel's stack counts and drops them).
    PassBadIpLength = 16,
    /// TCP data offset below 5 words or beyond the IP packet: passed
    /// unchanged (the kernel's stack counts and drops them).
    PassBadTcpHeader = 17,
    /// UDP length below 8 or beyond the IP payload: passed unchanged (the
    /// kernel's stack counts and drops them).
    PassBadUdpLength = 18,
    /// Packets to a NAT service whose TTL or hop limit would expire here,
    /// not answered with a time exceeded ([`Counter::SentTimeExceeded`]):
    /// later fragments (RFC 1122 3.2.2), IPv4 with options, no way back, or
    /// over the ICMP budget ([`ICMP_BURST`]). Dropped: handed to the kernel
    /// they would be answered from the VIP (a reset, a port unreachable).
    DropTtl = 19,
    /// Packets to a NAT service whose TTL or hop limit would expire here,
    /// answered as a router does: an ICMP time exceeded from the node's own
    /// address (the one the FIB picks for the way back), never from the VIP.
    SentTimeExceeded = 20,
    /// On a fenced node (its lease passed: see [`maps::LEASE`]), packets to
    /// its floating IPs and ARP / neighbour solicitations for them: dropped,
    /// so the node answers nothing the peer now serves.
    DropFenced = 21,
    /// New flows not reported for replication because the flow record ring
    /// ([`maps::FLOW_RECORDS`]) was full (the daemon reads it too slowly):
    /// the packet is forwarded all the same, but the standby does not
    /// learn the flow from the stream.
    FlowRecordsLost = 22,
    /// New flows: a first packet to a service, pinned as unconfirmed
    /// ([`maps::NEW_FLOWS`]). A flood of spoofed sources shows here.
    FlowsUnconfirmed = 23,
    /// Flows confirmed by the client's second packet into the connection
    /// table ([`maps::FLOWS`]), and reported for replication.
    FlowsConfirmed = 24,
    /// TCP packets without SYN to a service whose flow is in neither
    /// table: a connection this node held no entry for (pushed out of the
    /// tables, or begun before the node served it), picked again.
    FlowsMidstream = 25,
    /// Multi-buffer frames (jumbo frames, `xdp.frags`) whose headers do not
    /// all lie in the first buffer, the only one the program reads: passed
    /// unchanged, the kernel's stack handles them. NICs and veth put at
    /// least the first few hundred bytes there, so this counts only
    /// unusual frames (very long IPv6 extension header chains, header
    /// split configured on a NIC).
    PassSplitHeaders = 26,
    /// NAT replies whose reply entry had been pushed out of
    /// [`maps::REPLIES`] while their flow's entry stayed in
    /// [`maps::FLOWS`]: the reply entry was rebuilt from it (see
    /// [`maps::BACKEND_VIPS`]) and the reply translated.
    RepliesRebuilt = 27,
}

impl Counter {
    /// Number of slots in [`maps::STATS`].
    pub const COUNT: u32 = 28;
    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::PassNotIp,
        Counter::PassNotService,
        Counter::PassMalformed,
        Counter::PassFragment,
        Counter::PassIpv6NextHeader,
        Counter::PassStandby,
        Counter::PassTtl,
        Counter::PassNoNeighbour,
        Counter::PassFibMiss,
        Counter::Forwarded,
        Counter::DropNoBackend,
        Counter::DropNoTxPort,
        Counter::DropNoNeighbour,
        Counter::PassIcmp,
        Counter::ForwardedIcmp,
        Counter::DropIpv4Checksum,
        Counter::PassBadIpLength,
        Counter::PassBadTcpHeader,
        Counter::PassBadUdpLength,
        Counter::DropTtl,
        Counter::SentTimeExceeded,
        Counter::DropFenced,
        Counter::FlowRecordsLost,
        Counter::FlowsUnconfirmed,
        Counter::FlowsConfirmed,
        Counter::FlowsMidstream,
        Counter::PassSplitHeaders,
        Counter::RepliesRebuilt,
    ];

    /// A stable name for logs, metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotService => "pass_not_service",
            Counter::PassMalformed => "pass_malformed",
            Counter::PassFragment => "pass_fragment",
            Counter::PassIpv6NextHeader => "pass_ipv6_next_header",
            Counter::PassStandby => "pass_standby",
            Counter::PassTtl => "pass_ttl",
            Counter::PassNoNeighbour => "pass_no_neighbour",
            Counter::PassFibMiss => "pass_fib_miss",
            Counter::Forwarded => "forwarded",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::DropNoTxPort => "drop_no_tx_port",
            Counter::DropNoNeighbour => "drop_no_neighbour",
            Counter::PassIcmp => "pass_icmp",
            Counter::ForwardedIcmp => "forwarded_icmp",
            Counter::DropIpv4Checksum => "drop_ipv4_checksum",
            Counter::PassBadIpLength => "pass_bad_ip_length",
            Counter::PassBadTcpHeader => "pass_bad_tcp_header",
            Counter::PassBadUdpLength => "pass_bad_udp_length",
            Counter::DropTtl => "drop_ttl",
            Counter::SentTimeExceeded => "sent_time_exceeded",
            Counter::DropFenced => "drop_fenced",
            Counter::FlowRecordsLost => "flow_records_lost",
            Counter::FlowsUnconfirmed => "flows_unconfirmed",
            Counter::FlowsConfirmed => "flows_confirmed",
            Counter::FlowsMidstream => "flows_midstream",
            Counter::PassSplitHeaders => "pass_split_headers",
            Counter::RepliesRebuilt => "replies_rebuilt",
        }
    }
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn counters_fill_their_slots_in_order() {
        for (slot, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, slot);
        }
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Traffic>(), 24);
    }
}
