//! The case on the real kernel path (a rig).
use super::*;

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
