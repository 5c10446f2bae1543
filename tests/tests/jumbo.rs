//! Jumbo frames (multi-buffer XDP): the programs are `xdp.frags`. Fixtures
//! first: BPF_PROG_TEST_RUN puts the first 3,520 bytes of a frame in its
//! first buffer and the rest in page-sized fragments, as a driver builds a
//! multi-buffer frame, and gives back every buffer; the fixture namespace
//! has MTU 9000 (the FIB checks a packet against its route's MTU). Then the
//! rig with MTU 9000 on every link: TCP (curl through nginx) and UDP (the
//! rig's UDP server) in NAT and DSR with 8,000-byte payloads, every byte
//! checked. Needs root.
mod support;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_common::Counter;
use lb_ctl::balancer::{Mode, Protocol, ServiceSpec};
use lb_tests::{
    fixnet::{self, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Expect},
    packets::{self, ACK, Ext, Frame, L4},
    rig::{
        Rig, RigOptions, VIP_V4, VIP_V6,
        udp::{self, Reply},
    },
};
use support::{rig_lb::RigLb, *};

const MTU: usize = 9000;
/// The first buffer BPF_PROG_TEST_RUN builds: a page less its headroom
/// (256) and the shared info (320).
const FIRST_BUFFER: usize = 3520;
const ETH: usize = 14;

/// The payload that makes an IP packet of exactly [`MTU`] bytes.
fn full_payload(v6: bool, l4: L4) -> Vec<u8> {
    let ip = if v6 { 40 } else { 20 };
    let transport = match l4 {
        L4::Tcp { .. } => 20,
        L4::Udp => 8,
    };
    (0..MTU - ip - transport).map(|i| (i % 251) as u8).collect()
}

/// Sends `input` on `ingress` and checks the action and the exact bytes.
fn expect_bytes(lb: &mut Lb, what: &str, input: &[u8], ingress: u32, expect: Expect) -> Result<()> {
    let outcome = lb.send(input, ingress)?;
    if let Some(why) = fixture::mismatch(input, &expect, &outcome) {
        bail!("{what}: {why}");
    }
    Ok(())
}

fn l4(protocol: Protocol, first: bool) -> L4 {
    match (protocol, first) {
        (Protocol::Tcp, true) => packets::SYN,
        (Protocol::Tcp, false) => ACK,
        (Protocol::Udp, _) => L4::Udp,
    }
}

/// A 9,014-byte frame to a NAT service is rewritten across its buffers
/// (the headers in the first, the payload untouched in the others), the
/// backend's 9,014-byte answer is translated back, and the service and
/// backend count every byte of both, not only the first buffer's.
#[test]
fn nat_translates_jumbo_frames_both_ways_and_counts_every_byte() {
    with_lb_mtu(MTU as u32, |lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let id = lb.balancer.service_id(&spec.key()).context("service id")?;
            let frame = first(&spec, 40000, l4(protocol, true))
                .payload(&full_payload(v6, l4(protocol, true)));
            let input = frame.build();
            assert_eq!(input.len(), ETH + MTU);
            let target = lb.predicted(&spec, &frame)?;
            let i = backend_index(target);
            let expected = frame
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(i));
            let before = lb.dp.service_traffic(id)?;
            expect_bytes(
                lb,
                &format!("v6={v6} {protocol:?} request"),
                &input,
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected.build()),
            )?;

            let reply = Frame::new(target, frame.src, l4(protocol, false))
                .macs(fixnet::backend_mac(i), LB_INT_MAC)
                .payload(&full_payload(v6, l4(protocol, false)));
            let translated = reply
                .clone()
                .src(frame.dst)
                .ttl(63)
                .macs(LB_EXT_MAC, packets::CLIENT_MAC);
            expect_bytes(
                lb,
                &format!("v6={v6} {protocol:?} reply"),
                &reply.build(),
                lb.int,
                Expect::Rewritten(Action::Redirect, translated.build()),
            )?;
            let after = lb.dp.service_traffic(id)?;
            assert_eq!(after.packets - before.packets, 2);
            assert_eq!(
                after.bytes - before.bytes,
                2 * (ETH + MTU) as u64,
                "v6={v6} {protocol:?}: bytes counted"
            );
        }
        Ok(())
    });
}

/// DSR changes only the MACs, in the first buffer.
#[test]
fn dsr_forwards_a_jumbo_frame_with_only_its_macs_changed() {
    with_lb_mtu(MTU as u32, |lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Dsr, 80, 80, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let frame = first(&spec, 41000, l4(protocol, true))
                .payload(&full_payload(v6, l4(protocol, true)));
            let target = lb.predicted(&spec, &frame)?;
            let expected = frame
                .clone()
                .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
            expect_bytes(
                lb,
                &format!("v6={v6} {protocol:?}"),
                &frame.build(),
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected.build()),
            )?;
        }
        Ok(())
    });
}

/// The length fields are checked against the whole frame, every buffer
/// included: a UDP length or an IP length beyond it is refused (the frame
/// passed unchanged and counted), Ethernet padding after a jumbo IP packet
/// is kept, and a TCP header the first buffer does not hold is passed and
/// counted apart.
#[test]
fn jumbo_lengths_are_checked_against_the_whole_frame() {
    with_lb_mtu(MTU as u32, |lb| {
        let v4 = service(false, Protocol::Udp, Mode::Nat, 53, 5353, 3);
        let v6 = service(true, Protocol::Udp, Mode::Nat, 53, 5353, 3);
        lb.configure(&[v4.clone(), v6.clone()])?;
        for (spec, ip_hdr) in [(&v4, 20), (&v6, 40)] {
            let v6 = ip_hdr == 40;
            let frame = first(spec, 42000, L4::Udp).payload(&full_payload(v6, L4::Udp));
            let input = frame.build();
            let udp_len = ETH + ip_hdr + 4;

            // The UDP length one byte beyond the IP payload.
            let mut long = input.clone();
            let len = u16::from_be_bytes([long[udp_len], long[udp_len + 1]]);
            assert_eq!(usize::from(len), MTU - ip_hdr);
            long[udp_len..udp_len + 2].copy_from_slice(&(len + 1).to_be_bytes());
            let refused = lb.dp.counter(Counter::PassBadUdpLength)?;
            expect_bytes(
                lb,
                &format!("v6={v6} UDP length + 1"),
                &long,
                lb.ext,
                Expect::Unchanged(Action::Pass),
            )?;
            assert_eq!(lb.dp.counter(Counter::PassBadUdpLength)?, refused + 1);

            // The frame 100 bytes short of its IP length.
            let refused = lb.dp.counter(Counter::PassBadIpLength)?;
            expect_bytes(
                lb,
                &format!("v6={v6} cut by 100 bytes"),
                &input[..input.len() - 100],
                lb.ext,
                Expect::Unchanged(Action::Pass),
            )?;
            assert_eq!(lb.dp.counter(Counter::PassBadIpLength)?, refused + 1);

            // Six bytes of padding after the IP packet: kept.
            let target = lb.predicted(spec, &frame)?;
            let mut padded = input.clone();
            padded.extend_from_slice(&[0; 6]);
            let mut expected = frame
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)))
                .build();
            expected.extend_from_slice(&[0; 6]);
            expect_bytes(
                lb,
                &format!("v6={v6} padded"),
                &padded,
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected),
            )?;
        }

        // IPv6 with two destination options headers of 2,048 bytes: the
        // TCP header starts at byte 4,150, past the first buffer.
        let tcp = service(true, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&tcp))?;
        let frame = first(&tcp, 43000, packets::SYN).payload(&[7; 4000]);
        let split = packets::with_ipv6_ext_headers(
            &frame.build(),
            &[Ext::MaxDestOptions, Ext::MaxDestOptions],
        );
        assert!(ETH + 40 + 4096 > FIRST_BUFFER && split.len() < ETH + MTU);
        let passed = lb.dp.counter(Counter::PassSplitHeaders)?;
        expect_bytes(
            lb,
            "TCP header past the first buffer",
            &split,
            lb.ext,
            Expect::Unchanged(Action::Pass),
        )?;
        assert_eq!(lb.dp.counter(Counter::PassSplitHeaders)?, passed + 1);
        // One such header leaves the TCP header in the first buffer.
        let one = packets::with_ipv6_ext_headers(&frame.build(), &[Ext::MaxDestOptions]);
        assert_eq!(lb.send(&one, lb.ext)?.action, Action::Redirect);
        assert_eq!(lb.dp.counter(Counter::PassSplitHeaders)?, passed + 1);
        Ok(())
    });
}

/// A jumbo packet whose TTL expires here is answered with a time exceeded
/// that quotes its start: the frame is cut from its last buffer back to
/// the quote.
#[test]
fn an_expiring_jumbo_packet_gets_a_time_exceeded() {
    with_lb_mtu(MTU as u32, |lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let frame = first(&spec, 44000, ACK)
            .payload(&full_payload(false, ACK))
            .ttl(1);
        let input = frame.build();
        let expected = packets::time_exceeded(
            (LB_EXT_MAC, packets::CLIENT_MAC),
            fixnet::LB_EXT_V4.into(),
            frame.src.ip(),
            &input[ETH..ETH + 28],
        );
        expect_bytes(
            lb,
            "TTL 1",
            &input,
            lb.ext,
            Expect::Rewritten(Action::Tx, expected),
        )?;
        assert_eq!(lb.dp.counter(Counter::SentTimeExceeded)?, 1);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// The rig at MTU 9000

/// An 8,000-byte payload.
const PAYLOAD: usize = 8000;

fn jumbo_rig() -> Result<Rig> {
    let mut rig = Rig::build(&RigOptions {
        mtu: Some(MTU as u32),
        ..Default::default()
    })?;
    rig.add_vips()?;
    rig.start_nginx()?;
    rig.serve_udp(5300)?;
    Ok(rig)
}

/// The MTU of every link in every namespace of the rig.
fn link_mtus(rig: &Rig) -> Result<Vec<(String, String, u64)>> {
    let mut all = Vec::new();
    let namespaces = [&rig.client, &rig.switch]
        .into_iter()
        .chain(rig.nodes.iter().map(|n| &n.ns))
        .chain(rig.backends.iter().map(|b| &b.ns));
    for ns in namespaces {
        let out = ns.ip(["-j", "link", "show"])?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        for link in links.as_array().context("ip -j link")? {
            let name = link["ifname"].as_str().unwrap_or_default().to_owned();
            if name != "lo" {
                let mtu = link["mtu"].as_u64().context("mtu")?;
                all.push((ns.name().to_owned(), name, mtu));
            }
        }
    }
    Ok(all)
}

/// A file of `len` bytes that shows a lost, repeated or moved segment.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 4096) as u8).wrapping_mul(31) ^ (i % 251) as u8)
        .collect()
}

/// curl of a 16 MiB file through the VIP (the sha256 of what arrived
/// against the file's), then 8,000-byte UDP requests and answers to
/// VIP:`udp_port`, each checked byte for byte, for both address families.
fn exchange_through_the_vip(rig: &Rig, lb: &RigLb, file: &[u8], udp_port: u16) -> Result<()> {
    use sha2::Digest as _;
    let want = format!("{:x}", sha2::Sha256::digest(file));
    for vip in [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)] {
        let url = match vip {
            IpAddr::V4(a) => format!("http://{a}/jumbo"),
            IpAddr::V6(a) => format!("http://[{a}]/jumbo"),
        };
        let out = rig
            .client
            .exec(
                "sh",
                [
                    "-c",
                    &format!("curl -sS --fail --max-time 20 {url} | sha256sum"),
                ],
            )
            .with_context(|| format!("curl {url}"))?;
        let got = String::from_utf8_lossy(&out.stdout);
        ensure!(
            got.split_whitespace().next() == Some(want.as_str()),
            "curl {url}: sha256 {got:?}, want {want}; counters: {}",
            lb.counters()
        );

        let to = SocketAddr::new(vip, udp_port);
        let request = udp::pattern("client", PAYLOAD);
        for _ in 0..3 {
            let reply = udp::exchange(&rig.client, to, &request, Duration::from_secs(3))?;
            let Reply::Datagram(answer) = reply else {
                bail!("{to}: {reply:?}; counters: {}", lb.counters());
            };
            let name = udp::answered_by(&answer).context("an answer names its backend")?;
            ensure!(
                answer == format!("{name} {PAYLOAD} {:016x}", udp::digest(&request)).into_bytes(),
                "{to}: the request did not arrive whole: {:?}",
                String::from_utf8_lossy(&answer)
            );
            let reply = udp::exchange(
                &rig.client,
                to,
                format!("SEND {PAYLOAD}").as_bytes(),
                Duration::from_secs(3),
            )?;
            let Reply::Datagram(answer) = reply else {
                bail!("{to} SEND: {reply:?}; counters: {}", lb.counters());
            };
            let name = udp::answered_by(&answer).context("an answer names its backend")?;
            ensure!(
                answer == udp::pattern(name, PAYLOAD),
                "{to}: the {PAYLOAD}-byte answer did not arrive whole ({} bytes)",
                answer.len()
            );
        }
    }
    Ok(())
}

/// The UDP port of the DSR service: the backends' servers of it are bound
/// to the VIPs (DSR keeps the destination).
const DSR_UDP: u16 = 5301;

/// TCP VIP:80 and a UDP service on both VIPs, over the three backends.
fn services(mode: Mode) -> Vec<ServiceSpec> {
    let (udp, udp_backend) = match mode {
        Mode::Nat => (53, 5300),
        Mode::Dsr => (DSR_UDP, DSR_UDP),
    };
    [false, true]
        .into_iter()
        .flat_map(|v6| {
            [
                service(v6, Protocol::Tcp, mode, 80, 80, 3),
                service(v6, Protocol::Udp, mode, udp, udp_backend, 3),
            ]
        })
        .collect()
}

/// MTU 9000 on every link; the program attaches (veth refuses a program
/// without `xdp.frags` at that MTU) and carries TCP and UDP with
/// 8,000-byte payloads in NAT and in DSR, every byte checked, jumbo frames
/// through XDP (the program forwards more than it passes).
#[test]
fn tcp_and_udp_cross_the_lb_in_jumbo_frames_in_nat_and_dsr() {
    let rig = jumbo_rig().unwrap();
    let mtus = link_mtus(&rig).unwrap();
    let wrong: Vec<_> = mtus
        .iter()
        .filter(|(_, _, mtu)| *mtu != MTU as u64)
        .collect();
    assert!(wrong.is_empty(), "links without MTU {MTU}: {wrong:?}");
    assert!(mtus.len() >= 9, "{mtus:?}");
    let file = content(16 << 20);
    rig.put_file("jumbo", &file).unwrap();

    let mut lb = RigLb::start(&rig, &services(Mode::Nat)).unwrap();
    exchange_through_the_vip(&rig, &lb, &file, 53).unwrap();
    let forwarded = lb.dp.counter(Counter::Forwarded).unwrap();
    // 2 x 16 MiB in 8,948-byte segments at least (and their ACKs).
    assert!(forwarded > 2 * (16 << 20) / 8948, "{}", lb.counters());
    assert_eq!(lb.dp.counter(Counter::PassSplitHeaders).unwrap(), 0);
    let id = lb
        .balancer
        .service_id(&services(Mode::Nat)[0].key())
        .unwrap();
    let traffic = lb.dp.service_traffic(id).unwrap();
    // Every byte of the IPv4 download counted, the buffers after the
    // first too; and the frames were jumbo ones through XDP: 9,014-byte
    // segments and their ACKs make more than the 3,520 bytes a first
    // buffer holds on average.
    assert!(
        traffic.bytes > (16 << 20),
        "tcp/VIP:80 counted {} bytes",
        traffic.bytes
    );
    assert!(
        traffic.bytes / traffic.packets > FIRST_BUFFER as u64,
        "tcp/VIP:80: {} bytes in {} packets",
        traffic.bytes,
        traffic.packets
    );

    rig.backends_hold_vips().unwrap();
    rig.resolve_backends().unwrap();
    let _vip_servers: Vec<udp::Server> = rig
        .backends
        .iter()
        .flat_map(|b| {
            [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)]
                .map(|vip| udp::Server::start(&b.ns, SocketAddr::new(vip, DSR_UDP), &b.name))
        })
        .collect::<Result<_>>()
        .unwrap();
    lb.configure(&services(Mode::Dsr)).unwrap();
    let before = lb.dp.counter(Counter::Forwarded).unwrap();
    exchange_through_the_vip(&rig, &lb, &file, DSR_UDP).unwrap();
    assert!(lb.dp.counter(Counter::Forwarded).unwrap() > before);
}
