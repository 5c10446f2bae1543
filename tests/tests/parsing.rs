//! Packet fixtures for what the parser takes apart: IP fragments (both
//! directions of NAT, DSR, out of order), IPv6 extension headers, malformed
//! lengths, bad checksums. The real object run by the kernel
//! (BPF_PROG_TEST_RUN) in a fixture namespace; expected frames built with
//! etherparse and compared byte for byte. Needs root.
mod support;

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use lb_common::Counter;
use lb_ctl::balancer::{Mode, Protocol, ServiceSpec};
use lb_tests::{
    fixnet::{self, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Expect},
    packets::{self, ACK, Ext, Frame, L4, SYN},
};
use support::*;

/// UDP payload of a datagram that goes in three fragments of 800 bytes of
/// IP payload at most (8 + 2000 bytes: 800, 800, 408).
const BIG: usize = 2000;
const CHUNK: usize = 800;

/// Sends `input` on `ingress` and checks the action and the exact bytes.
fn expect_bytes(lb: &mut Lb, what: &str, input: &[u8], ingress: u32, expect: Expect) -> Result<()> {
    let outcome = lb.send(input, ingress)?;
    if let Some(why) = fixture::mismatch(input, &expect, &outcome) {
        bail!("{what}: {why}");
    }
    Ok(())
}

/// A client's big UDP datagram to a service, in fragments.
struct Datagram {
    frame: Frame,
    /// The backend it goes to.
    target: SocketAddr,
    /// The fragments as the client sends them.
    input: Vec<Vec<u8>>,
    /// The fragments of its NAT translation (to `target`).
    expected: Vec<Vec<u8>>,
}

/// The datagram from client port `sport` to `spec`, fragmented with
/// identification `id`.
fn request_fragments(lb: &Lb, spec: &ServiceSpec, sport: u16, id: u32) -> Result<Datagram> {
    let frame = first(spec, sport, L4::Udp).payload(&[0x5a; BIG]);
    let target = lb.predicted(spec, &frame)?;
    let translated = frame
        .clone()
        .dst(target)
        .ttl(63)
        .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
    Ok(Datagram {
        input: packets::fragments(&frame.build(), id, CHUNK),
        expected: packets::fragments(&translated.build(), id, CHUNK),
        frame,
        target,
    })
}

#[test]
fn nat_fragments_follow_their_first_fragment_in_both_directions() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let spec = service(v6, Protocol::Udp, Mode::Nat, 53, 5353, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let forwarded = lb.dp.counter(Counter::Forwarded)?;
            let mut backends = std::collections::BTreeSet::new();
            for sport in 40000..40006 {
                let id = 0x0100 + u32::from(sport);
                let Datagram {
                    frame,
                    target,
                    input,
                    expected,
                } = request_fragments(lb, &spec, sport, id)?;
                backends.insert(target);
                assert_eq!(input.len(), 3);
                // First, then the last before the middle one: once the first
                // went through, the others may come in any order.
                for i in [0, 2, 1] {
                    expect_bytes(
                        lb,
                        &format!("v6={v6} request {sport} fragment {i}"),
                        &input[i],
                        lb.ext,
                        Expect::Rewritten(Action::Redirect, expected[i].clone()),
                    )?;
                }

                // The backend's big answer, in fragments, comes back from the
                // VIP.
                let i = backend_index(target);
                let reply = Frame::new(target, frame.src, L4::Udp)
                    .macs(fixnet::backend_mac(i), LB_INT_MAC)
                    .payload(&[0xa5; BIG]);
                let translated = reply
                    .clone()
                    .src(frame.dst)
                    .ttl(63)
                    .macs(LB_EXT_MAC, packets::CLIENT_MAC);
                let reply_id = 0x8000 + u32::from(sport);
                let input = packets::fragments(&reply.build(), reply_id, CHUNK);
                let expected = packets::fragments(&translated.build(), reply_id, CHUNK);
                for i in [0, 1, 2] {
                    expect_bytes(
                        lb,
                        &format!("v6={v6} reply {sport} fragment {i}"),
                        &input[i],
                        lb.int,
                        Expect::Rewritten(Action::Redirect, expected[i].clone()),
                    )?;
                }
            }
            assert!(backends.len() > 1, "6 datagrams all went to {backends:?}");
            assert_eq!(lb.dp.counter(Counter::Forwarded)?, forwarded + 36);
        }
        assert_eq!(lb.dp.counter(Counter::PassFragment)?, 0);
        Ok(())
    });
}

#[test]
fn a_later_fragment_before_its_first_goes_to_the_kernel_and_is_counted() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let spec = service(v6, Protocol::Udp, Mode::Nat, 53, 5353, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let passed = lb.dp.counter(Counter::PassFragment)?;
            let Datagram {
                frame,
                target,
                input,
                expected,
            } = request_fragments(lb, &spec, 41000, 77)?;
            expect_bytes(
                lb,
                "middle fragment first",
                &input[1],
                lb.ext,
                Expect::Unchanged(Action::Pass),
            )?;
            assert_eq!(lb.dp.counter(Counter::PassFragment)?, passed + 1);
            // The first fragment, then the last, still go through (the
            // middle one is the kernel's: that datagram is lost).
            for i in [0, 2] {
                expect_bytes(
                    lb,
                    &format!("fragment {i}"),
                    &input[i],
                    lb.ext,
                    Expect::Rewritten(Action::Redirect, expected[i].clone()),
                )?;
            }
            // Another datagram of the same flow: its own first fragment
            // was never seen.
            let other = request_fragments(lb, &spec, 41000, 78)?.input;
            expect_bytes(
                lb,
                "unknown datagram",
                &other[2],
                lb.ext,
                Expect::Unchanged(Action::Pass),
            )?;
            assert_eq!(lb.dp.counter(Counter::PassFragment)?, passed + 2);

            // The same for a backend's answer: its middle fragment before
            // its first goes to the kernel, counted; the others are
            // translated.
            let reply = Frame::new(target, frame.src, L4::Udp)
                .macs(fixnet::backend_mac(backend_index(target)), LB_INT_MAC)
                .payload(&[0xa5; BIG]);
            let translated = reply
                .clone()
                .src(frame.dst)
                .ttl(63)
                .macs(LB_EXT_MAC, packets::CLIENT_MAC);
            let input = packets::fragments(&reply.build(), 0x9000, CHUNK);
            let expected = packets::fragments(&translated.build(), 0x9000, CHUNK);
            expect_bytes(
                lb,
                "reply's middle fragment first",
                &input[1],
                lb.int,
                Expect::Unchanged(Action::Pass),
            )?;
            assert_eq!(lb.dp.counter(Counter::PassFragment)?, passed + 3);
            for i in [0, 2] {
                expect_bytes(
                    lb,
                    &format!("reply fragment {i}"),
                    &input[i],
                    lb.int,
                    Expect::Rewritten(Action::Redirect, expected[i].clone()),
                )?;
            }
        }
        Ok(())
    });
}

#[test]
fn dsr_fragments_go_to_the_backend_of_their_first_fragment() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let spec = service(v6, Protocol::Udp, Mode::Dsr, 53, 53, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let mut backends = std::collections::BTreeSet::new();
            for sport in 42000..42006 {
                let frame = first(&spec, sport, L4::Udp).payload(&[0x3c; BIG]);
                let target = lb.predicted(&spec, &frame)?;
                backends.insert(target);
                let mac = fixnet::backend_mac(backend_index(target));
                for (i, fragment) in packets::fragments(&frame.build(), 9, CHUNK)
                    .into_iter()
                    .enumerate()
                {
                    let mut expected = fragment.clone();
                    expected[..6].copy_from_slice(&mac);
                    expected[6..12].copy_from_slice(&LB_INT_MAC);
                    expect_bytes(
                        lb,
                        &format!("v6={v6} {sport} fragment {i}"),
                        &fragment,
                        lb.ext,
                        Expect::Rewritten(Action::Redirect, expected),
                    )?;
                }
            }
            assert!(backends.len() > 1, "6 datagrams all went to {backends:?}");
        }
        Ok(())
    });
}

#[test]
fn a_tcp_first_fragment_pins_its_flow_like_any_first_packet() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let frame = first(&spec, 43000, ACK).payload(&[1; 1200]);
        let target = lb.predicted(&spec, &frame)?;
        let translated = frame
            .clone()
            .dst(target)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
        let input = packets::fragments(&frame.build(), 5, 1024);
        let expected = packets::fragments(&translated.build(), 5, 1024);
        for i in 0..2 {
            expect_bytes(
                lb,
                &format!("fragment {i}"),
                &input[i],
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected[i].clone()),
            )?;
        }
        assert_eq!(lb.pinned(&frame)?, Some(target));
        Ok(())
    });
}

#[test]
fn ipv6_hop_by_hop_destination_options_and_fragment_headers_are_walked() {
    use Ext::*;
    with_lb(|lb| {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let spec = service(true, protocol, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            for (n, chain) in [
                &[HopByHop][..],
                &[DestOptions],
                &[HopByHop, LongDestOptions],
                &[AtomicFragment],
                &[HopByHop, DestOptions, AtomicFragment, DestOptions],
            ]
            .into_iter()
            .enumerate()
            {
                let frame = first(&spec, 44000 + n as u16, l4_of(protocol));
                let target = lb.predicted(&spec, &frame)?;
                let translated = frame
                    .clone()
                    .dst(target)
                    .ttl(63)
                    .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
                expect_bytes(
                    lb,
                    &format!("{protocol:?} {chain:?}"),
                    &packets::with_ipv6_ext_headers(&frame.build(), chain),
                    lb.ext,
                    Expect::Rewritten(
                        Action::Redirect,
                        packets::with_ipv6_ext_headers(&translated.build(), chain),
                    ),
                )?;
            }
        }
        // Others: a routing header, or more headers than the walk takes.
        let spec = service(true, Protocol::Udp, Mode::Nat, 80, 8080, 3);
        let frame = first(&spec, 45000, L4::Udp).build();
        for chain in [
            &[Routing][..],
            &[HopByHop, Routing],
            &[HopByHop, DestOptions, DestOptions, DestOptions, DestOptions],
        ] {
            expect_bytes(
                lb,
                &format!("{chain:?}"),
                &packets::with_ipv6_ext_headers(&frame, chain),
                lb.ext,
                Expect::Unchanged(Action::Pass),
            )?;
        }
        assert_eq!(lb.dp.counter(Counter::PassIpv6NextHeader)?, 3);
        Ok(())
    });
}

/// Byte offsets in a frame without IP options or extension headers.
const IP: usize = 14;
fn l4_at(v6: bool) -> usize {
    IP + if v6 { 40 } else { 20 }
}

fn set(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

#[test]
fn malformed_packets_to_a_vip_or_from_a_backend_are_passed_unchanged_and_counted() {
    with_lb(|lb| {
        let tcp4 = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        let udp4 = service(false, Protocol::Udp, Mode::Nat, 53, 5353, 3);
        let tcp6 = service(true, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        let udp6 = service(true, Protocol::Udp, Mode::Nat, 53, 5353, 3);
        lb.configure(&[tcp4.clone(), udp4.clone(), tcp6.clone(), udp6.clone()])?;
        // A pinned UDP flow whose backend's replies are NAT replies.
        let flow = first(&udp4, 46000, L4::Udp);
        assert_eq!(lb.send(&flow.build(), lb.ext)?.action, Action::Redirect);
        let backend = lb.pinned(&flow)?.context("flow pinned")?;
        let reply = Frame::new(backend, flow.src, L4::Udp)
            .macs(fixnet::backend_mac(backend_index(backend)), LB_INT_MAC)
            .payload(b"answer")
            .build();
        let forwarded = lb.dp.counter(Counter::Forwarded)?;

        let t4 = first(&tcp4, 47000, SYN).build();
        let u4 = first(&udp4, 47000, L4::Udp).build();
        let t6 = first(&tcp6, 47000, SYN).build();
        let u6 = first(&udp6, 47000, L4::Udp).build();
        let ip_len = |f: &[u8]| (f.len() - IP) as u16;
        let udp_len = |f: &[u8], v6: bool| (f.len() - l4_at(v6)) as u16;
        let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
            (
                "ipv4 total length beyond the frame",
                packets::edit_ipv4_header(&t4, |h| h.total_len = ip_len(&t4) + 1),
                Counter::PassBadIpLength,
            ),
            (
                "ipv4 total length below the header",
                packets::edit_ipv4_header(&t4, |h| h.total_len = 19),
                Counter::PassBadIpLength,
            ),
            (
                "ipv4 total length of a reply beyond the frame",
                packets::edit_ipv4_header(&reply, |h| h.total_len = ip_len(&reply) + 100),
                Counter::PassBadIpLength,
            ),
            (
                "ipv6 payload length beyond the frame",
                packets::with_ipv6_payload_length(&t6, ip_len(&t6) - 40 + 1),
                Counter::PassBadIpLength,
            ),
            (
                "ipv6 extension header beyond the payload",
                packets::with_ipv6_payload_length(
                    &packets::with_ipv6_ext_headers(&u6, &[Ext::LongDestOptions]),
                    16,
                ),
                Counter::PassBadIpLength,
            ),
            (
                "tcp data offset 4",
                set(&t4, l4_at(false) + 12, &[0x40]),
                Counter::PassBadTcpHeader,
            ),
            (
                "tcp data offset beyond the frame",
                set(&t4, l4_at(false) + 12, &[0xf0]),
                Counter::PassBadTcpHeader,
            ),
            (
                "ipv6 tcp data offset 0",
                set(&t6, l4_at(true) + 12, &[0x00]),
                Counter::PassBadTcpHeader,
            ),
            (
                "udp length 0",
                set(&u4, l4_at(false) + 4, &[0, 0]),
                Counter::PassBadUdpLength,
            ),
            (
                "udp length 7",
                set(&u4, l4_at(false) + 4, &[0, 7]),
                Counter::PassBadUdpLength,
            ),
            (
                "udp length beyond the ip payload",
                set(
                    &u4,
                    l4_at(false) + 4,
                    &(udp_len(&u4, false) + 1).to_be_bytes(),
                ),
                Counter::PassBadUdpLength,
            ),
            (
                "ipv6 udp length 0",
                set(&u6, l4_at(true) + 4, &[0, 0]),
                Counter::PassBadUdpLength,
            ),
            (
                "ipv6 udp length beyond the ip payload",
                set(
                    &u6,
                    l4_at(true) + 4,
                    &(udp_len(&u6, true) + 8).to_be_bytes(),
                ),
                Counter::PassBadUdpLength,
            ),
            (
                "reply with udp length 0",
                set(&reply, l4_at(false) + 4, &[0, 0]),
                Counter::PassBadUdpLength,
            ),
        ];
        let mut failures = Vec::new();
        for (name, frame, counter) in &cases {
            let ingress = if name.contains("reply") {
                lb.int
            } else {
                lb.ext
            };
            let before = lb.dp.counter(*counter)?;
            let outcome = lb.send(frame, ingress)?;
            if let Some(why) = fixture::mismatch(frame, &Expect::Unchanged(Action::Pass), &outcome)
            {
                failures.push(format!("{name}: {why}"));
            } else if lb.dp.counter(*counter)? != before + 1 {
                failures.push(format!("{name}: not counted under {counter:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(lb.dp.counter(Counter::Forwarded)?, forwarded);
        // None of them pinned a flow.
        for frame in [&tcp4, &udp4, &tcp6, &udp6].map(|s| first(s, 47000, l4_of(s.protocol))) {
            assert_eq!(lb.pinned(&frame)?, None, "{frame:?} pinned");
        }
        Ok(())
    });
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_kept_and_forwarded() {
    with_lb(|lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            // A short packet, padded up to Ethernet's 60 bytes and beyond.
            let frame = first(&spec, 48000, l4_of(protocol)).payload(b"");
            let target = lb.predicted(&spec, &frame)?;
            let translated = frame
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
            let pad = [0u8; 24];
            let input = [frame.build(), pad.to_vec()].concat();
            let expected = [translated.build(), pad.to_vec()].concat();
            expect_bytes(
                lb,
                &format!("{protocol:?} v6={v6}"),
                &input,
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected),
            )?;
        }
        Ok(())
    });
}

#[test]
fn a_bad_ipv4_header_checksum_is_dropped_and_counted() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let good = first(&spec, 49000, SYN).build();
        let csum = u16::from_be_bytes([good[IP + 10], good[IP + 11]]);
        let bad = set(&good, IP + 10, &(csum ^ 0x0100).to_be_bytes());
        // With options too (a no-op option word), so the sum covers them.
        let with_options = packets::with_ipv4_nop_options(&good);
        let bad_options = set(&with_options, IP + 22, &[1, 1]);
        for (name, frame) in [("to the VIP", bad), ("options", bad_options)] {
            let outcome = lb.send(&frame, lb.ext)?;
            assert_eq!(outcome.action, Action::Drop, "{name}");
        }
        assert_eq!(lb.dp.counter(Counter::DropIpv4Checksum)?, 2);
        // The same packet with its options intact is forwarded.
        assert_eq!(lb.send(&with_options, lb.ext)?.action, Action::Redirect);
        Ok(())
    });
}

/// The TCP or UDP checksum of a forwarded frame is valid for its contents.
fn l4_checksum_valid(frame: &[u8]) -> Result<bool> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let packet = SlicedPacket::from_ethernet(frame)?;
    let (Some(net), Some(transport)) = (packet.net, packet.transport) else {
        bail!("not TCP or UDP over IP");
    };
    Ok(match (net, transport) {
        (NetSlice::Ipv4(ip), TransportSlice::Tcp(tcp)) => {
            let h = ip.header();
            tcp.calc_checksum_ipv4(h.source(), h.destination())? == tcp.checksum()
        }
        (NetSlice::Ipv6(ip), TransportSlice::Tcp(tcp)) => {
            let h = ip.header();
            tcp.calc_checksum_ipv6(h.source(), h.destination())? == tcp.checksum()
        }
        (NetSlice::Ipv4(ip), TransportSlice::Udp(udp)) => {
            let h = ip.header();
            let header = udp.to_header();
            header.calc_checksum_ipv4_raw(h.source(), h.destination(), udp.payload())?
                == udp.checksum()
        }
        (NetSlice::Ipv6(ip), TransportSlice::Udp(udp)) => {
            let h = ip.header();
            let header = udp.to_header();
            header.calc_checksum_ipv6_raw(h.source(), h.destination(), udp.payload())?
                == udp.checksum()
        }
        _ => bail!("not TCP or UDP over IP"),
    })
}

/// An incremental update (RFC 1624) keeps a wrong checksum wrong: the
/// backend still sees the corruption.
#[test]
fn a_bad_tcp_or_udp_checksum_stays_bad_after_nat() {
    with_lb(|lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let frame = first(&spec, 50000, l4_of(protocol));
            let target = lb.predicted(&spec, &frame)?;
            let translated = frame
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
            // A payload byte corrupted after the checksum was computed.
            let corrupt = |mut f: Vec<u8>| {
                let last = f.len() - 1;
                f[last] ^= 0x40;
                f
            };
            let input = corrupt(frame.build());
            let expected = corrupt(translated.build());
            assert!(!l4_checksum_valid(&input)?);
            expect_bytes(
                lb,
                &format!("{protocol:?} v6={v6}"),
                &input,
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected.clone()),
            )?;
            assert!(!l4_checksum_valid(&expected)?, "{protocol:?} v6={v6}");
            assert!(l4_checksum_valid(&translated.build())?);
        }
        Ok(())
    });
}

/// The LB's own addresses in the fixture namespace (on `ext0`, the way
/// back to the client).
const NODE_V4: &str = "198.18.0.1";
const NODE_V6: &str = "2001:db8::1";

/// A packet to a NAT service whose TTL expires here is answered as a router
/// answers, from the node's address (never from the VIP: the kernel, which
/// holds the VIP, would answer from it with a reset or port unreachable).
#[test]
fn an_expiring_ttl_to_a_nat_service_gets_time_exceeded_from_the_node() {
    with_lb(|lb| {
        let v4 = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        let v6 = service(true, Protocol::Udp, Mode::Nat, 80, 8080, 3);
        lb.configure(&[v4.clone(), v6.clone()])?;
        for (frame, quote) in [
            (first(&v4, 51000, SYN).ttl(1), 28),
            (first(&v4, 51001, SYN).ttl(0), 28),
            (first(&v6, 51000, L4::Udp).ttl(1), 48),
        ] {
            let input = frame.build();
            let node: std::net::IpAddr = if frame.src.is_ipv6() {
                NODE_V6
            } else {
                NODE_V4
            }
            .parse()?;
            let expected = packets::time_exceeded(
                (LB_EXT_MAC, packets::CLIENT_MAC),
                node,
                frame.src.ip(),
                &input[IP..IP + quote],
            );
            expect_bytes(
                lb,
                &format!("{frame:?}"),
                &input,
                lb.ext,
                Expect::Rewritten(Action::Tx, expected),
            )?;
        }
        assert_eq!(lb.dp.counter(Counter::SentTimeExceeded)?, 3);

        // Not answered, dropped: a later fragment (RFC 1122), IPv4 with
        // options.
        let big = first(&v4, 51002, ACK).payload(&[0; 1200]).ttl(1);
        let mut fragments = packets::fragments(&big.build(), 3, 1024);
        let later = fragments.remove(1);
        // Its first fragment is answered (and records the datagram).
        assert_eq!(lb.send(&fragments[0], lb.ext)?.action, Action::Tx);
        let options = packets::with_ipv4_nop_options(&first(&v4, 51003, SYN).ttl(1).build());
        for (name, frame) in [("later fragment", later), ("options", options)] {
            assert_eq!(lb.send(&frame, lb.ext)?.action, Action::Drop, "{name}");
        }
        assert_eq!(lb.dp.counter(Counter::DropTtl)?, 2);
        assert_eq!(lb.dp.counter(Counter::SentTimeExceeded)?, 4);
        Ok(())
    });
}

/// Each CPU sends at most [`lb_common::ICMP_BURST`] at once, then one a
/// jiffy: with its budget spent, the packet is dropped and counted.
#[test]
fn time_exceeded_messages_are_limited_by_a_budget() {
    use aya::maps::{PerCpuArray, PerCpuValues};
    use lb_common::IcmpBudget;
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let spent = IcmpBudget {
            tokens: 0,
            // Never earns more (the jiffies clock does not reach it).
            updated: u64::MAX,
        };
        let map = lb
            .dp
            .ebpf_mut()
            .map_mut(lb_common::maps::ICMP_BUDGET)
            .context("budget map")?;
        let mut budget: PerCpuArray<_, IcmpBudget> = PerCpuArray::try_from(map)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, err)| err)?;
        budget.set(0, PerCpuValues::try_from(vec![spent; cpus])?, 0)?;
        let frame = first(&spec, 52000, SYN).ttl(1);
        expect_bytes(
            lb,
            "spent",
            &frame.build(),
            lb.ext,
            Expect::PassUnchangedOrDrop,
        )?;
        assert_eq!(lb.send(&frame.build(), lb.ext)?.action, Action::Drop);
        assert_eq!(lb.dp.counter(Counter::DropTtl)?, 2);
        assert_eq!(lb.dp.counter(Counter::SentTimeExceeded)?, 0);
        Ok(())
    });
}
