//! ICMP the program leaves to the kernel, unchanged and counted.
use super::*;

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
