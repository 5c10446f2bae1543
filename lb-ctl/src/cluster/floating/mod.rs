//! The failover group's floating IPs: which addresses a node must hold for
//! its role (pure: [`plan`]), the announcements that move the neighbours'
//! caches to the new active ([`Announcer`] schedule, [`garp`] and
//! [`unsolicited_na`] frames, pure), and the edge that applies both
//! (`netlink`: addresses through rtnetlink, frames through a packet socket).
//!
//! Announcements are sent as a burst when the node becomes active and then
//! refreshed while it stays active: a cache that missed the burst (a switch
//! that was rebooting, a host whose entry was still fresh) is corrected
//! within one refresh instead of holding the old MAC until it expires, the
//! classic outage after a keepalived takeover.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder,
    icmpv6::NeighborAdvertisementHeader,
};

use super::Role;

pub mod netlink;

/// An address of the failover group on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Held {
    pub ifindex: u32,
    pub address: IpAddr,
    pub prefix: u8,
}

/// A change to the interface addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrOp {
    Add(Held),
    Del(Held),
}

/// What to change so that the node holds the group exactly when active.
/// `present` are the group's addresses found on the interfaces (others are
/// never touched). An address present with another prefix is replaced.
pub fn plan(role: Role, group: &[Held], present: &BTreeSet<Held>) -> Vec<AddrOp> {
    let wanted: BTreeSet<Held> = match role {
        Role::Active => group.iter().copied().collect(),
        Role::Standby => BTreeSet::new(),
    };
    let group_addrs: BTreeSet<(u32, IpAddr)> =
        group.iter().map(|h| (h.ifindex, h.address)).collect();
    let mut ops: Vec<AddrOp> = present
        .iter()
        .filter(|h| group_addrs.contains(&(h.ifindex, h.address)) && !wanted.contains(h))
        .map(|h| AddrOp::Del(*h))
        .collect();
    ops.extend(
        wanted
            .iter()
            .filter(|h| !present.contains(h))
            .map(|h| AddrOp::Add(*h)),
    );
    ops
}

/// When to announce: a burst at the change to active (at 0, 50, 150, 350
/// and 750 ms: a lost frame or two does not matter), then every `refresh`
/// while active.
#[derive(Clone, Debug)]
pub struct Announcer {
    refresh: Duration,
    next: Option<Instant>,
    burst_left: usize,
    gap: Duration,
}

const BURST: usize = 5;
const FIRST_GAP: Duration = Duration::from_millis(50);

impl Announcer {
    pub fn new(refresh: Duration) -> Self {
        Announcer {
            refresh,
            next: None,
            burst_left: 0,
            gap: FIRST_GAP,
        }
    }

    /// The node changed role.
    pub fn role_changed(&mut self, role: Role, now: Instant) {
        match role {
            Role::Active => {
                self.next = Some(now);
                self.burst_left = BURST;
                self.gap = FIRST_GAP;
            }
            Role::Standby => self.next = None,
        }
    }

    /// True when the group is to be announced now; moves to the next time.
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        if now < next {
            return false;
        }
        if self.burst_left > 1 {
            self.burst_left -= 1;
            self.next = Some(now + self.gap);
            self.gap *= 2;
        } else {
            self.burst_left = 0;
            self.next = Some(now + self.refresh);
        }
        true
    }

    /// When [`due`](Self::due) will next be true.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }
}

/// A gratuitous ARP (an ARP request for `ip` from `ip`, to broadcast), as
/// RFC 5227 "ARP announcement": every host that has `ip` cached takes `mac`.
pub fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac,
        &ip.octets(),
        &[0; 6],
        &ip.octets(),
    )
    .expect("Ethernet and IPv4 address lengths");
    let builder = PacketBuilder::ethernet2(mac, [0xff; 6]).arp(arp);
    let mut out = Vec::with_capacity(builder.size());
    builder.write(&mut out).expect("writing to a Vec");
    out
}

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `ip`, from
/// `ip`, to all nodes, with the override flag and `mac` as target link-layer
/// address.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let header = NeighborAdvertisementHeader {
        router: false,
        solicited: false,
        r#override: true,
    };
    // Target address, then the target link-layer address option (type 2,
    // length 1 = 8 bytes).
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&ip.octets());
    payload.extend_from_slice(&[2, 1]);
    payload.extend_from_slice(&mac);
    let builder = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(ip.octets(), ALL_NODES.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(header));
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("writing to a Vec");
    out
}

/// The announcement frame of one address.
pub fn announcement(mac: [u8; 6], address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(ip) => garp(mac, ip),
        IpAddr::V6(ip) => unsolicited_na(mac, ip),
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    fn held(ifindex: u32, address: &str, prefix: u8) -> Held {
        Held {
            ifindex,
            address: address.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn the_active_holds_the_group_and_the_standby_nothing_of_it() {
        let group = [held(2, "198.18.0.100", 24), held(3, "2001:db8:1::1", 64)];
        let none = BTreeSet::new();
        assert_eq!(
            plan(Role::Active, &group, &none),
            vec![AddrOp::Add(group[0]), AddrOp::Add(group[1])]
        );
        let all: BTreeSet<Held> = group.iter().copied().collect();
        assert_eq!(plan(Role::Active, &group, &all), vec![]);
        assert_eq!(
            plan(Role::Standby, &group, &all),
            vec![AddrOp::Del(group[0]), AddrOp::Del(group[1])]
        );
        assert_eq!(plan(Role::Standby, &group, &none), vec![]);
    }

    #[test]
    fn other_addresses_are_never_touched_and_a_wrong_prefix_is_replaced() {
        let group = [held(2, "198.18.0.100", 24)];
        let present: BTreeSet<Held> = [
            held(2, "198.18.0.1", 24),   // the node's own address
            held(3, "198.18.0.100", 24), // same address, another interface
            held(2, "198.18.0.100", 32), // ours with the wrong prefix
        ]
        .into_iter()
        .collect();
        assert_eq!(
            plan(Role::Active, &group, &present),
            vec![
                AddrOp::Del(held(2, "198.18.0.100", 32)),
                AddrOp::Add(group[0])
            ]
        );
        assert_eq!(
            plan(Role::Standby, &group, &present),
            vec![AddrOp::Del(held(2, "198.18.0.100", 32))]
        );
    }

    #[test]
    fn announcements_come_as_a_burst_then_as_refreshes_and_stop_on_standby() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(10));
        assert!(!a.due(t0));
        a.role_changed(Role::Active, t0);
        let mut sent = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(25) {
            if a.due(t) {
                sent.push((t - t0).as_millis());
            }
            t += Duration::from_millis(10);
        }
        assert_eq!(sent, [0, 50, 150, 350, 750, 10_750, 20_750]);
        a.role_changed(Role::Standby, t);
        assert!(!a.due(t + Duration::from_secs(60)));
        assert_eq!(a.next(), None);
    }

    #[test]
    fn a_gratuitous_arp_is_an_announcement_of_the_address() {
        let mac = [2, 0, 0, 0, 0, 7];
        let frame = garp(mac, "198.18.0.100".parse().unwrap());
        // Ethernet: broadcast, from us, ARP; then the ARP request with the
        // address as both sender and target.
        let mut want = vec![0xff; 6];
        want.extend_from_slice(&mac);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        want.extend_from_slice(&mac);
        want.extend_from_slice(&[198, 18, 0, 100, 0, 0, 0, 0, 0, 0, 198, 18, 0, 100]);
        assert_eq!(frame, want);
    }

    #[test]
    fn an_unsolicited_na_overrides_caches_for_the_address() {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = unsolicited_na(mac, ip);
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let parsed = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Ipv6(ipv6)) = &parsed.net else {
            panic!("not IPv6");
        };
        assert_eq!(ipv6.header().hop_limit(), 255);
        assert_eq!(ipv6.header().source_addr(), ip);
        let Some(TransportSlice::Icmpv6(icmp)) = &parsed.transport else {
            panic!("not ICMPv6");
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true
            })
        );
        // The checksum is right (etherparse recomputes it over the pseudo-header).
        let recomputed = icmp
            .header()
            .icmp_type
            .calc_checksum(
                ipv6.header().source(),
                ipv6.header().destination(),
                icmp.payload(),
            )
            .unwrap();
        assert_eq!(icmp.checksum(), recomputed);
        let mut payload = ip.octets().to_vec();
        payload.extend_from_slice(&[2, 1]);
        payload.extend_from_slice(&mac);
        assert_eq!(icmp.payload(), &payload[..]);
    }
}
