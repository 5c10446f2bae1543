//! Errors from the backend's side about NAT flows, to the client.
use super::*;

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
            // TCP confirmed (the reply table), UDP after its first datagram
            // (the unconfirmed reply table).
            let backend = match protocol {
                Protocol::Tcp => lb.open(&first)?,
                Protocol::Udp => lb.open_unconfirmed(&first)?,
            };
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
        // Two packets for each TCP flow, one for each UDP flow.
        assert_eq!(lb.dp.counter(Counter::Forwarded)?, 6);
        Ok(())
    });
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
