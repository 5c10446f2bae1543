//! ICMP and ICMPv6 errors about a flow (issue 9). Packet fixtures: the
//! real object, run by the kernel (BPF_PROG_TEST_RUN) inside a fixture
//! namespace, on errors of every type built with etherparse, from both ends
//! of NAT and DSR flows, sent by the far end itself or by a router on the
//! way. Expected frames are built independently with etherparse and
//! compared byte for byte; every checksum of the output is also recomputed
//! with etherparse. And one rig test of the case on the real
//! kernel path. Needs root.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use etherparse::{Icmpv4Type, Icmpv6Type, icmpv4, icmpv6};
use lb_common::Counter;
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec},
    dataplane::{self, Dataplane, Role},
};
use lb_tests::{
    fixnet::{self, FixtureNet, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Expect},
    packets::{self, ACK, Frame, IcmpKind, L4, SYN},
    rig,
};

const VIP4: &str = "198.18.0.100";
const VIP6: &str = "2001:db8::100";
/// A router between the client and the LB, and one between the LB and the
/// backends.
const CLIENT_ROUTER4: &str = "198.18.0.254";
const CLIENT_ROUTER6: &str = "2001:db8::fe";
const BACKEND_ROUTER4: &str = "198.18.1.254";
const BACKEND_ROUTER6: &str = "2001:db8:1::fe";
const ROUTER_MAC: [u8; 6] = [0x02, 0x52, 0x54, 0, 0, 0xfe];

const COMBOS: [(bool, Protocol); 4] = [
    (false, Protocol::Tcp),
    (false, Protocol::Udp),
    (true, Protocol::Tcp),
    (true, Protocol::Udp),
];

/// The LB inside its fixture namespace, with the balancer that feeds it.
struct Lb {
    dp: Dataplane,
    balancer: Balancer,
    ext: u32,
    int: u32,
}

/// Runs `test` on a thread inside a fresh fixture namespace.
fn with_lb(test: impl FnOnce(&mut Lb) -> Result<()> + Send) {
    let net = FixtureNet::build().expect("fixture namespace");
    let (ext, int) = (net.ext, net.int);
    net.ns
        .run_in(move || {
            let mut dp = Dataplane::load()?;
            dp.add_tx_port(ext)?;
            dp.add_tx_port(int)?;
            let mut lb = Lb {
                dp,
                balancer: Balancer::new(),
                ext,
                int,
            };
            test(&mut lb)
        })
        .unwrap();
}

impl Lb {
    fn configure(&mut self, services: &[ServiceSpec]) -> Result<()> {
        let (next, ops) = self.balancer.plan(services)?;
        self.dp.apply(&ops)?;
        self.balancer = next;
        Ok(())
    }

    fn send(&mut self, frame: &[u8], ingress: u32) -> Result<fixture::Outcome> {
        let program = dataplane::program(self.dp.ebpf_mut())?;
        fixture::run_on(program, frame, Some(ingress))
    }

    /// Opens the flow of `first` (its first packet, forwarded) and returns
    /// the backend it is pinned to.
    fn open(&mut self, first: &Frame) -> Result<SocketAddr> {
        let outcome = self.send(&first.build(), self.ext)?;
        if outcome.action != Action::Redirect {
            bail!("{first:?}: {:?}, expected Redirect", outcome.action);
        }
        let flow = self
            .dp
            .flow(&first.flow_key())?
            .context("flow not pinned")?;
        let b = self.balancer.tables().backends[&flow.backend];
        let ip: IpAddr = if b.family == lb_common::AF_INET {
            IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]])
        } else {
            IpAddr::from(b.addr)
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(b.port)))
    }

    /// Runs every case received on `ingress`; fails with every case that
    /// did not hold. The output of a forwarded case must also pass
    /// etherparse's checksums; returns how many of those held a whole quote
    /// (whose TCP or UDP checksum was checked too).
    fn check(&mut self, ingress: u32, cases: &[Case]) -> Result<usize> {
        let mut failures = Vec::new();
        let mut whole = 0;
        for case in cases {
            let outcome = self.send(&case.frame, ingress)?;
            if let Some(why) = fixture::mismatch(&case.frame, &case.expect, &outcome) {
                failures.push(format!("- {}: {why}", case.name));
            } else if outcome.action == Action::Redirect {
                match packets::verify_icmp_checksums(&outcome.frame) {
                    Ok(checked) => whole += usize::from(checked.l4),
                    Err(why) => failures.push(format!("- {}: {why:#}", case.name)),
                }
            }
        }
        if !failures.is_empty() {
            bail!(
                "{} of {} cases failed:\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n")
            );
        }
        Ok(whole)
    }
}

type Case = fixture::Case;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address")
}

/// A NAT or DSR service on the VIP of `v6`'s family over the first three
/// rig backends: TCP 80 (NAT: to 8080) or UDP 53 (NAT: to 6001).
fn service(v6: bool, protocol: Protocol, mode: Mode) -> ServiceSpec {
    let port = match protocol {
        Protocol::Tcp => 80,
        Protocol::Udp => 53,
    };
    let backend_port = match (mode, protocol) {
        (Mode::Dsr, _) => port,
        (Mode::Nat, Protocol::Tcp) => 8080,
        (Mode::Nat, Protocol::Udp) => 6001,
    };
    ServiceSpec {
        vip: ip(if v6 { VIP6 } else { VIP4 }),
        port,
        protocol,
        mode,
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: SocketAddr::new(backend_ip(v6, i), backend_port),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

fn backend_ip(v6: bool, i: usize) -> IpAddr {
    if v6 {
        rig::backend_v6(i).into()
    } else {
        rig::backend_v4(i).into()
    }
}

fn backend_mac(addr: SocketAddr) -> [u8; 6] {
    let i = (0..fixnet::BACKENDS)
        .find(|&i| backend_ip(addr.is_ipv6(), i) == addr.ip())
        .expect("a rig backend");
    fixnet::backend_mac(i)
}

fn client_ip(v6: bool) -> IpAddr {
    if v6 {
        rig::CLIENT_V6.into()
    } else {
        rig::CLIENT_V4.into()
    }
}

/// The first packet of a flow from the client to `spec`.
fn first(spec: &ServiceSpec, sport: u16) -> Frame {
    let l4 = match spec.protocol {
        Protocol::Tcp => SYN,
        Protocol::Udp => L4::Udp,
    };
    Frame::new(
        SocketAddr::new(client_ip(spec.vip.is_ipv6()), sport),
        SocketAddr::new(spec.vip, spec.port),
        l4,
    )
    .macs(packets::CLIENT_MAC, LB_EXT_MAC)
    .payload(b"hello, backend")
}

/// The IP packet (no Ethernet header) of a frame.
fn ip_packet(frame: &Frame) -> Vec<u8> {
    frame.build()[14..].to_vec()
}

/// How much of the packet an error quotes.
#[derive(Clone, Copy, Debug)]
enum Quote {
    /// All of it (as Linux does, up to 576 or 1280 bytes).
    Whole,
    /// The IP header and 8 bytes (RFC 792's minimum): the ports, and of the
    /// checksums only UDP's.
    Cut,
}

fn quote(frame: &Frame, how: Quote) -> Vec<u8> {
    let mut packet = ip_packet(frame);
    if let Quote::Cut = how {
        let ip_header = if frame.src.is_ipv6() { 40 } else { 20 };
        packet.truncate(ip_header + 8);
    }
    packet
}

/// Every ICMP error type and code of `v6`'s family.
fn errors(v6: bool) -> Vec<(String, IcmpKind)> {
    if v6 {
        use icmpv6::{DestUnreachableCode as U, ParameterProblemCode, TimeExceededCode};
        let mut all: Vec<(String, IcmpKind)> = [
            U::NoRoute,
            U::Prohibited,
            U::BeyondScope,
            U::Address,
            U::Port,
            U::SourceAddressFailedPolicy,
            U::RejectRoute,
        ]
        .into_iter()
        .map(|code| {
            (
                format!("unreachable {code:?}"),
                IcmpKind::V6(Icmpv6Type::DestinationUnreachable(code)),
            )
        })
        .collect();
        all.extend([
            (
                "packet too big".into(),
                IcmpKind::V6(Icmpv6Type::PacketTooBig { mtu: 1280 }),
            ),
            (
                "hop limit exceeded".into(),
                IcmpKind::V6(Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded)),
            ),
            (
                "reassembly time exceeded".into(),
                IcmpKind::V6(Icmpv6Type::TimeExceeded(
                    TimeExceededCode::FragmentReassemblyTimeExceeded,
                )),
            ),
            (
                "parameter problem".into(),
                IcmpKind::V6(Icmpv6Type::ParameterProblem(
                    icmpv6::ParameterProblemHeader {
                        code: ParameterProblemCode::ErroneousHeaderField,
                        pointer: 6,
                    },
                )),
            ),
        ]);
        all
    } else {
        use icmpv4::{DestUnreachableHeader as U, ParameterProblemHeader, TimeExceededCode};
        let mut all: Vec<(String, IcmpKind)> = [
            U::Network,
            U::Host,
            U::Protocol,
            U::Port,
            U::FragmentationNeeded { next_hop_mtu: 1400 },
            U::SourceRouteFailed,
            U::NetworkUnknown,
            U::HostUnknown,
            U::Isolated,
            U::NetworkProhibited,
            U::HostProhibited,
            U::TosNetwork,
            U::TosHost,
            U::FilterProhibited,
            U::HostPrecedenceViolation,
            U::PrecedenceCutoff,
        ]
        .into_iter()
        .map(|code| {
            (
                format!("unreachable {code:?}"),
                IcmpKind::V4(Icmpv4Type::DestinationUnreachable(code)),
            )
        })
        .collect();
        all.extend([
            (
                "ttl exceeded".into(),
                IcmpKind::V4(Icmpv4Type::TimeExceeded(
                    TimeExceededCode::TtlExceededInTransit,
                )),
            ),
            (
                "reassembly time exceeded".into(),
                IcmpKind::V4(Icmpv4Type::TimeExceeded(
                    TimeExceededCode::FragmentReassemblyTimeExceeded,
                )),
            ),
            (
                "parameter problem, pointer".into(),
                IcmpKind::V4(Icmpv4Type::ParameterProblem(
                    ParameterProblemHeader::PointerIndicatesError(8),
                )),
            ),
            (
                "parameter problem, bad length".into(),
                IcmpKind::V4(Icmpv4Type::ParameterProblem(
                    ParameterProblemHeader::BadLength,
                )),
            ),
        ]);
        all
    }
}

/// A NAT flow's packet as the backend got it (client to backend, TTL 63),
/// and the same packet as the client sent it, its TTL as quoted.
fn nat_request(first: &Frame, backend: SocketAddr) -> (Frame, Frame) {
    (first.clone().dst(backend).ttl(63), first.clone().ttl(63))
}

/// The service's reply as the client's side of the path saw it (VIP to
/// client).
fn service_reply(first: &Frame) -> Frame {
    let l4 = match first.l4 {
        L4::Tcp { .. } => ACK,
        L4::Udp => L4::Udp,
    };
    Frame::new(first.dst, first.src, l4)
        .ttl(62)
        .payload(&[7; 1200])
}

/// Errors from the backend's side about NAT flows: the backend's own (port
/// unreachable from a closed UDP port, RST's ICMP cousins...) and a router's
/// there (time exceeded, fragmentation needed...). Each reaches the client
/// quoting what the client sent (the VIP and service port), from the VIP if
/// the backend sent it, from the router's own address otherwise.
#[test]
fn errors_from_the_backend_side_reach_the_client_translated_back() {
    with_lb(|lb| {
        let mut sent = 0;
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Nat);
            lb.configure(std::slice::from_ref(&spec))?;
            let first = first(&spec, 40000);
            let backend = lb.open(&first)?;
            let (at_backend, as_sent) = nat_request(&first, backend);
            let router = ip(if v6 { BACKEND_ROUTER6 } else { BACKEND_ROUTER4 });
            let mut cases = Vec::new();
            for how in [Quote::Whole, Quote::Cut] {
                for (name, kind) in errors(v6) {
                    for (who, from, mac) in [
                        ("backend", backend.ip(), backend_mac(backend)),
                        ("router", router, ROUTER_MAC),
                    ] {
                        let error = packets::icmp_message(
                            (mac, LB_INT_MAC),
                            from,
                            first.src.ip(),
                            64,
                            &kind,
                            &quote(&at_backend, how),
                        );
                        let outer_src = if who == "backend" { spec.vip } else { from };
                        let expected = packets::icmp_message(
                            (LB_EXT_MAC, packets::CLIENT_MAC),
                            outer_src,
                            first.src.ip(),
                            63,
                            &kind,
                            &quote(&as_sent, how),
                        );
                        cases.push(Case::new(
                            format!("{protocol:?} v6={v6} {name} from the {who}, {how:?} quote"),
                            error,
                            Expect::Rewritten(Action::Redirect, expected),
                        ));
                    }
                }
            }
            if !v6 && protocol == Protocol::Udp {
                cases.push(udp_without_checksum(&spec, &at_backend, &as_sent));
            }
            cases.push(cut_quote_with_padding(
                &spec,
                backend,
                &at_backend,
                &as_sent,
            ));
            sent += cases.len() as u64;
            let whole = lb.check(lb.int, &cases)?;
            assert_eq!(whole, whole_quotes(&cases), "quotes checked whole");
        }
        assert_eq!(lb.dp.counter(Counter::ForwardedIcmp)?, sent);
        // Only the four flows' first packets.
        assert_eq!(lb.dp.counter(Counter::Forwarded)?, 4);
        Ok(())
    });
}

/// The cases that quote a whole packet (with a TCP or UDP checksum).
fn whole_quotes(cases: &[Case]) -> usize {
    cases
        .iter()
        .filter(|c| c.name.ends_with("Whole quote"))
        .count()
}

/// An IPv4 UDP packet sent without a checksum is quoted with none, and
/// keeps none.
fn udp_without_checksum(spec: &ServiceSpec, at_backend: &Frame, as_sent: &Frame) -> Case {
    const UDP_CSUM: usize = 20 + 6;
    let no_checksum = |frame: &Frame| {
        let mut packet = ip_packet(frame);
        packet[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&[0, 0]);
        packet
    };
    let kind = IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
        icmpv4::DestUnreachableHeader::Port,
    ));
    let backend = at_backend.dst;
    Case::new(
        "UDP without checksum, port unreachable from the backend",
        packets::icmp_message(
            (backend_mac(backend), LB_INT_MAC),
            backend.ip(),
            as_sent.src.ip(),
            64,
            &kind,
            &no_checksum(at_backend),
        ),
        Expect::Rewritten(
            Action::Redirect,
            packets::icmp_message(
                (LB_EXT_MAC, packets::CLIENT_MAC),
                spec.vip,
                as_sent.src.ip(),
                63,
                &kind,
                &no_checksum(as_sent),
            ),
        ),
    )
}

/// A cut quote in a frame with link-layer padding after the IP packet: the
/// padding is not part of the quote (where a TCP checksum would be) and
/// stays as it is.
fn cut_quote_with_padding(
    spec: &ServiceSpec,
    backend: SocketAddr,
    at_backend: &Frame,
    as_sent: &Frame,
) -> Case {
    let kind = if spec.vip.is_ipv6() {
        IcmpKind::V6(Icmpv6Type::TimeExceeded(
            icmpv6::TimeExceededCode::HopLimitExceeded,
        ))
    } else {
        IcmpKind::V4(Icmpv4Type::TimeExceeded(
            icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
    };
    let padding = [0xa5; 24];
    let mut error = packets::icmp_message(
        (backend_mac(backend), LB_INT_MAC),
        backend.ip(),
        as_sent.src.ip(),
        64,
        &kind,
        &quote(at_backend, Quote::Cut),
    );
    error.extend_from_slice(&padding);
    let mut expected = packets::icmp_message(
        (LB_EXT_MAC, packets::CLIENT_MAC),
        spec.vip,
        as_sent.src.ip(),
        63,
        &kind,
        &quote(as_sent, Quote::Cut),
    );
    expected.extend_from_slice(&padding);
    Case::new(
        format!("{:?} cut quote and link-layer padding", spec.protocol),
        error,
        Expect::Rewritten(Action::Redirect, expected),
    )
}

/// Errors from the client's side about the service's packets (the client's
/// own, like port unreachable, or a router's there) reach the flow's
/// backend: for NAT as if the backend had sent the quoted packet, for DSR
/// unchanged but for the MACs.
#[test]
fn errors_from_the_client_side_reach_the_backend() {
    with_lb(|lb| {
        let mut sent = 0;
        for (v6, protocol) in COMBOS {
            for mode in [Mode::Nat, Mode::Dsr] {
                let spec = service(v6, protocol, mode);
                lb.configure(std::slice::from_ref(&spec))?;
                let first = first(&spec, 40000);
                let backend = lb.open(&first)?;
                let reply = service_reply(&first);
                let router = ip(if v6 { CLIENT_ROUTER6 } else { CLIENT_ROUTER4 });
                let mut cases = Vec::new();
                for how in [Quote::Whole, Quote::Cut] {
                    for (name, kind) in errors(v6) {
                        for (who, from, mac) in [
                            ("client", first.src.ip(), packets::CLIENT_MAC),
                            ("router", router, ROUTER_MAC),
                        ] {
                            let error = packets::icmp_message(
                                (mac, LB_EXT_MAC),
                                from,
                                spec.vip,
                                64,
                                &kind,
                                &quote(&reply, how),
                            );
                            let expected = match mode {
                                Mode::Nat => packets::icmp_message(
                                    (LB_INT_MAC, backend_mac(backend)),
                                    from,
                                    backend.ip(),
                                    63,
                                    &kind,
                                    &quote(&reply.clone().src(backend), how),
                                ),
                                Mode::Dsr => {
                                    let mut same = error.clone();
                                    same[..6].copy_from_slice(&backend_mac(backend));
                                    same[6..12].copy_from_slice(&LB_INT_MAC);
                                    same
                                }
                            };
                            cases.push(Case::new(
                                format!(
                                    "{mode:?} {protocol:?} v6={v6} {name} from the {who}, {how:?} quote"
                                ),
                                error,
                                Expect::Rewritten(Action::Redirect, expected),
                            ));
                        }
                    }
                }
                sent += cases.len() as u64;
                let whole = lb.check(lb.ext, &cases)?;
                assert_eq!(whole, whole_quotes(&cases), "quotes checked whole");
            }
        }
        assert_eq!(lb.dp.counter(Counter::ForwardedIcmp)?, sent);
        Ok(())
    });
}

/// ICMP that is not an error about a flow goes to the kernel unchanged and
/// is counted: echo, neighbour discovery, errors about unknown flows, error
/// types that are not translated, errors about DSR flows from the backend's
/// side (they never pass us), and errors not addressed to the quoted
/// packet's sender.
#[test]
fn other_icmp_goes_to_the_kernel_unchanged() {
    with_lb(|lb| {
        let nat4 = service(false, Protocol::Udp, Mode::Nat);
        let nat6 = service(true, Protocol::Tcp, Mode::Nat);
        let dsr4 = {
            let mut s = service(false, Protocol::Tcp, Mode::Dsr);
            s.port = 443;
            for b in &mut s.backends {
                b.addr.set_port(443);
            }
            s
        };
        lb.configure(&[nat4.clone(), nat6.clone(), dsr4.clone()])?;
        let flow4 = first(&nat4, 40000);
        let backend4 = lb.open(&flow4)?;
        let flow6 = first(&nat6, 40000);
        let backend6 = lb.open(&flow6)?;
        let dsr_flow = first(&dsr4, 40001);
        lb.open(&dsr_flow)?;
        let (at_backend4, _) = nat_request(&flow4, backend4);
        let (at_backend6, _) = nat_request(&flow6, backend6);
        let client4 = flow4.src.ip();
        let client6 = flow6.src.ip();
        let from_backend4 = (backend_mac(backend4), LB_INT_MAC);
        let from_backend6 = (backend_mac(backend6), LB_INT_MAC);
        let unreachable4 = IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::Port,
        ));
        let unreachable6 = IcmpKind::V6(Icmpv6Type::DestinationUnreachable(
            icmpv6::DestUnreachableCode::Port,
        ));
        let stranger4 = at_backend4.clone().src(SocketAddr::new(client4, 49999));
        let stranger6 = at_backend6.clone().src(SocketAddr::new(client6, 49999));
        let mut fragment = ip_packet(&at_backend4);
        // Fragment offset 185 (8-byte units): no ports in it.
        fragment[6..8].copy_from_slice(&185u16.to_be_bytes());
        let cases: Vec<(u32, Case)> = vec![
            (
                lb.ext,
                Case::new(
                    "echo request to the VIP",
                    packets::icmpv4_echo(rig::CLIENT_V4, VIP4.parse()?),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.ext,
                Case::new(
                    "ICMPv6 echo request to the VIP",
                    packets::icmp_message(
                        (packets::CLIENT_MAC, LB_EXT_MAC),
                        client6,
                        nat6.vip,
                        64,
                        &IcmpKind::V6(Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader {
                            id: 7,
                            seq: 1,
                        })),
                        b"ping",
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.ext,
                Case::new(
                    "neighbour solicitation",
                    packets::icmp_message(
                        (packets::CLIENT_MAC, LB_EXT_MAC),
                        client6,
                        nat6.vip,
                        255,
                        &IcmpKind::V6(Icmpv6Type::NeighborSolicitation),
                        &VIP6.parse::<std::net::Ipv6Addr>()?.octets(),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "unreachable about an unknown flow, from the backend's side",
                    packets::icmp_message(
                        from_backend4,
                        backend4.ip(),
                        client4,
                        64,
                        &unreachable4,
                        &ip_packet(&stranger4),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "ICMPv6 unreachable about an unknown flow, from the backend's side",
                    packets::icmp_message(
                        from_backend6,
                        backend6.ip(),
                        client6,
                        64,
                        &unreachable6,
                        &ip_packet(&stranger6),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.ext,
                Case::new(
                    "too big about an unknown flow, from the client's side",
                    packets::icmp_too_big(
                        (packets::CLIENT_MAC, LB_EXT_MAC),
                        ip(CLIENT_ROUTER4),
                        nat4.vip,
                        64,
                        &ip_packet(&service_reply(&flow4).dst(SocketAddr::new(client4, 49999))),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "redirect about a flow",
                    packets::icmp_message(
                        from_backend4,
                        ip(BACKEND_ROUTER4),
                        client4,
                        64,
                        &IcmpKind::V4(Icmpv4Type::Redirect(icmpv4::RedirectHeader {
                            code: icmpv4::RedirectCode::RedirectForHost,
                            gateway_internet_address: [198, 18, 1, 253],
                        })),
                        &ip_packet(&at_backend4),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "source quench about a flow",
                    packets::icmp_message(
                        from_backend4,
                        backend4.ip(),
                        client4,
                        64,
                        &IcmpKind::V4(Icmpv4Type::Unknown {
                            type_u8: 4,
                            code_u8: 0,
                            bytes5to8: [0; 4],
                        }),
                        &ip_packet(&at_backend4),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "unreachable about a flow, not addressed to its client",
                    packets::icmp_message(
                        from_backend4,
                        backend4.ip(),
                        ip("198.18.0.11"),
                        64,
                        &unreachable4,
                        &ip_packet(&at_backend4),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "unreachable quoting a non-first fragment of a flow",
                    packets::icmp_message(
                        from_backend4,
                        backend4.ip(),
                        client4,
                        64,
                        &unreachable4,
                        &fragment,
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
            (
                lb.int,
                Case::new(
                    "time exceeded about a DSR flow, from the backend's side",
                    packets::icmp_message(
                        (ROUTER_MAC, LB_INT_MAC),
                        ip(BACKEND_ROUTER4),
                        dsr_flow.src.ip(),
                        64,
                        &IcmpKind::V4(Icmpv4Type::TimeExceeded(
                            icmpv4::TimeExceededCode::TtlExceededInTransit,
                        )),
                        &ip_packet(&dsr_flow.clone().ttl(1)),
                    ),
                    Expect::Unchanged(Action::Pass),
                ),
            ),
        ];
        let passed = lb.dp.counter(Counter::PassIcmp)?;
        for (ingress, case) in &cases {
            lb.check(*ingress, std::slice::from_ref(case))?;
        }
        assert_eq!(
            lb.dp.counter(Counter::PassIcmp)?,
            passed + cases.len() as u64
        );
        assert_eq!(lb.dp.counter(Counter::ForwardedIcmp)?, 0);
        Ok(())
    });
}

/// Errors about a flow from either side: on a standby node they go to the
/// kernel unchanged; with a TTL about to expire too.
#[test]
fn errors_on_a_standby_node_or_with_an_expiring_ttl_go_to_the_kernel_unchanged() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let spec = service(v6, Protocol::Udp, Mode::Nat);
            lb.configure(std::slice::from_ref(&spec))?;
            let first = first(&spec, 40000);
            let backend = lb.open(&first)?;
            let (at_backend, _) = nat_request(&first, backend);
            let (unreachable, router) = if v6 {
                (
                    IcmpKind::V6(Icmpv6Type::DestinationUnreachable(
                        icmpv6::DestUnreachableCode::Port,
                    )),
                    ip(CLIENT_ROUTER6),
                )
            } else {
                (
                    IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
                        icmpv4::DestUnreachableHeader::Port,
                    )),
                    ip(CLIENT_ROUTER4),
                )
            };
            let from_backend = |ttl| {
                packets::icmp_message(
                    (backend_mac(backend), LB_INT_MAC),
                    backend.ip(),
                    first.src.ip(),
                    ttl,
                    &unreachable,
                    &ip_packet(&at_backend),
                )
            };
            let from_client = |ttl| {
                packets::icmp_too_big(
                    (packets::CLIENT_MAC, LB_EXT_MAC),
                    router,
                    spec.vip,
                    ttl,
                    &ip_packet(&service_reply(&first)),
                )
            };
            let unchanged = |name: &str, frame| {
                Case::new(
                    format!("v6={v6} {name}"),
                    frame,
                    Expect::Unchanged(Action::Pass),
                )
            };
            let (standby, ttl) = (
                lb.dp.counter(Counter::PassStandby)?,
                lb.dp.counter(Counter::PassTtl)?,
            );
            lb.check(
                lb.int,
                &[unchanged("from the backend, TTL 1", from_backend(1))],
            )?;
            lb.check(
                lb.ext,
                &[unchanged("from the client's side, TTL 1", from_client(1))],
            )?;
            assert_eq!(lb.dp.counter(Counter::PassTtl)?, ttl + 2);
            lb.dp.set_role(Role::Standby)?;
            lb.check(
                lb.int,
                &[unchanged("standby, from the backend", from_backend(64))],
            )?;
            lb.check(
                lb.ext,
                &[unchanged(
                    "standby, from the client's side",
                    from_client(64),
                )],
            )?;
            assert_eq!(lb.dp.counter(Counter::PassStandby)?, standby + 2);
            lb.dp.set_role(Role::Active)?;
        }
        assert_eq!(lb.dp.counter(Counter::ForwardedIcmp)?, 0);
        Ok(())
    });
}

/// The case end to end, on the real kernel path (rig: client, LB
/// with XDP attached in native mode, one backend): a connected UDP socket
/// of the client sends to a NAT service whose backend port is closed. The
/// backend's kernel answers with port unreachable from its own address,
/// quoting its own 5-tuple; translated, it reaches the client's socket as
/// ECONNREFUSED. IPv4 and IPv6.
#[test]
fn a_connected_udp_client_sees_a_closed_backend_port_as_refused() {
    use std::{io::ErrorKind, net::UdpSocket, time::Duration};

    use lb_ctl::dataplane::AttachMode;
    use lb_tests::rig::{LB_EXT_IFACE, LB_INT_IFACE, Rig, RigOptions, VIP_V4, VIP_V6};

    let rig = Rig::build(&RigOptions {
        backends: 1,
        ..Default::default()
    })
    .unwrap();
    rig.add_vips().unwrap();
    let backend = |ip: IpAddr| BackendSpec {
        // Nothing listens there.
        addr: SocketAddr::new(ip, 6001),
        weight: 1,
        state: BackendState::Enabled,
    };
    let service = |vip: IpAddr, b: IpAddr| ServiceSpec {
        vip,
        port: 53,
        protocol: Protocol::Udp,
        mode: Mode::Nat,
        backends: vec![backend(b)],
        sorry: None,
    };
    let services = [
        service(VIP_V4.into(), rig.backends[0].v4.into()),
        service(VIP_V6.into(), rig.backends[0].v6.into()),
    ];
    let dp = rig
        .lb
        .run_in(|| {
            let mut dp = Dataplane::load()?;
            dp.attach(LB_EXT_IFACE, AttachMode::Native)?;
            dp.attach(LB_INT_IFACE, AttachMode::Native)?;
            let (_, ops) = Balancer::new().plan(&services)?;
            dp.apply(&ops)?;
            Ok(dp)
        })
        .unwrap();
    for vip in [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)] {
        let outcome = rig
            .client
            .run_in(move || {
                let any: IpAddr = if vip.is_ipv6() {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                };
                let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
                socket.connect(SocketAddr::new(vip, 53))?;
                socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                // Bounded: the first datagrams may wait for neighbours.
                let mut seen = Vec::new();
                for _ in 0..5 {
                    socket.send(b"query")?;
                    let mut buf = [0u8; 64];
                    match socket.recv(&mut buf) {
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
                        other => seen.push(format!("{other:?}")),
                    }
                }
                Ok(Some(seen))
            })
            .unwrap();
        if let Some(seen) = outcome {
            panic!("{vip}: no ECONNREFUSED after 5 datagrams: {seen:?}");
        }
    }
    assert!(
        dp.counter(Counter::ForwardedIcmp).unwrap() + dp.counter(Counter::PassNoNeighbour).unwrap()
            >= 2,
        "the errors did not go through the program"
    );
}
