//! Load balancing on the real kernel path: client namespace -> LB namespace
//! (XDP attached in native mode) -> nginx backends, in NAT and DSR modes,
//! IPv4 and IPv6. Needs root.
use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use lb_common::{AF_INET, Counter, FlowKey, IPPROTO_TCP};
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec, addr_bytes},
    dataplane::{self, AttachMode, Dataplane},
};
use lb_tests::rig::{self, LB_EXT_IFACE, LB_INT_IFACE, Rig, RigOptions, VIP_V4, VIP_V6};

struct Lb {
    dp: Dataplane,
    balancer: Balancer,
}

impl Lb {
    fn start(rig: &Rig, services: &[ServiceSpec]) -> Result<Self> {
        let dp = rig.lb.run_in(|| {
            let mut dp = Dataplane::load()?;
            dp.attach(LB_EXT_IFACE, AttachMode::Native)?;
            dp.attach(LB_INT_IFACE, AttachMode::Native)?;
            Ok(dp)
        })?;
        let mut lb = Lb {
            dp,
            balancer: Balancer::new(),
        };
        lb.configure(services)?;
        Ok(lb)
    }

    fn configure(&mut self, services: &[ServiceSpec]) -> Result<()> {
        let (next, ops) = self.balancer.plan(services)?;
        self.dp.apply(&ops)?;
        self.balancer = next;
        Ok(())
    }
}

fn service(vip: IpAddr, mode: Mode, backends: &[IpAddr]) -> ServiceSpec {
    ServiceSpec {
        vip,
        port: 80,
        protocol: Protocol::Tcp,
        mode,
        backends: backends
            .iter()
            .map(|&ip| BackendSpec {
                addr: SocketAddr::new(ip, 80),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

/// A UDP service on port `port` of `vip` to the same port of `backends`.
fn udp_service(vip: IpAddr, port: u16, backends: &[IpAddr]) -> ServiceSpec {
    ServiceSpec {
        port,
        protocol: Protocol::Udp,
        backends: backends
            .iter()
            .map(|&ip| BackendSpec {
                addr: SocketAddr::new(ip, port),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        ..service(vip, Mode::Nat, &[])
    }
}

fn rig_with(mode: Mode, backends: usize) -> Result<(Rig, Lb)> {
    let mut rig = Rig::build(&RigOptions {
        backends,
        ..Default::default()
    })?;
    rig.add_vips()?;
    if mode == Mode::Dsr {
        rig.backends_hold_vips()?;
        rig.resolve_backends()?;
    }
    rig.start_nginx()?;
    let v4: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v6.into()).collect();
    let lb = Lb::start(
        &rig,
        &[
            service(VIP_V4.into(), mode, &v4),
            service(VIP_V6.into(), mode, &v6),
        ],
    )?;
    Ok((rig, lb))
}

/// curl through the VIP until every backend has answered (at most 60 tries).
fn reaches_every_backend(rig: &Rig, url: &str) -> Result<()> {
    let want: BTreeSet<String> = rig
        .backends
        .iter()
        .take(3)
        .map(|b| b.name.clone())
        .collect();
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        seen.insert(rig.curl(url)?.trim().to_owned());
        if seen == want {
            return Ok(());
        }
    }
    bail!("{url}: 60 requests reached {seen:?}, not all of {want:?}")
}

/// At least 10,000 requests through wrk (bounded: 8 runs of 3 s), no error.
fn ten_thousand_requests(rig: &Rig, url: &str) -> Result<u64> {
    let mut total = 0;
    for _ in 0..8 {
        let report = rig.wrk(url, Duration::from_secs(3), 16)?;
        if report.errors() != 0 {
            bail!("{url}: wrk saw errors: {report:?}");
        }
        total += report.requests;
        if total >= 10_000 {
            return Ok(total);
        }
    }
    bail!("{url}: only {total} requests in 24 s")
}

fn check_mode(mode: Mode) -> Result<()> {
    let (rig, lb) = rig_with(mode, 3)?;
    for url in [format!("http://{VIP_V4}/"), format!("http://[{VIP_V6}]/")] {
        reaches_every_backend(&rig, &url)?;
        let n = ten_thousand_requests(&rig, &url)?;
        println!("{mode:?} {url}: {n} requests, 0 errors");
    }
    let forwarded = lb.dp.counter(Counter::Forwarded)?;
    assert!(
        forwarded > 20_000,
        "only {forwarded} packets forwarded by XDP"
    );
    Ok(())
}

#[test]
fn nat_reaches_every_backend_over_ipv4_and_ipv6_without_errors() {
    check_mode(Mode::Nat).unwrap();
}

#[test]
fn dsr_reaches_every_backend_over_ipv4_and_ipv6_without_errors() {
    check_mode(Mode::Dsr).unwrap();
}

#[test]
fn a_long_download_keeps_its_backend_while_a_backend_is_added() {
    let (rig, mut lb) = rig_with(Mode::Nat, 4).unwrap();
    let sport = 45000;
    // 16 MiB at 4 MB/s: about four seconds on one connection.
    let download = rig
        .client
        .spawn(
            rig.client
                .command("curl")
                .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"])
                .args(["--max-time", "30", "--limit-rate", "4M", "--local-port"])
                .arg(sport.to_string())
                .args(["-r", "0-16777215"])
                .arg(format!("http://{VIP_V4}/big"))
                .stdout(Stdio::piped()),
        )
        .unwrap();
    let key = FlowKey {
        src: addr_bytes(rig::CLIENT_V4.into()),
        dst: addr_bytes(VIP_V4.into()),
        sport: (sport as u16).to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        pad: [0; 2],
    };
    let before = wait_for_flow(&lb, &key).unwrap();
    let v4: Vec<IpAddr> = rig.backends.iter().map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().take(3).map(|b| b.v6.into()).collect();
    lb.configure(&[
        service(VIP_V4.into(), Mode::Nat, &v4),
        service(VIP_V6.into(), Mode::Nat, &v6),
    ])
    .unwrap();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success(), "download failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "16777216");
    let after = lb.dp.flow(&key).unwrap().expect("flow still pinned");
    assert_eq!(before.backend, after.backend);
    // And the new backend takes new flows.
    let fourth = rig.backends[3].name.clone();
    let url = format!("http://{VIP_V4}/");
    let served = (0..60).any(|_| rig.curl(&url).map(|b| b.trim() == fourth).unwrap_or(false));
    assert!(served, "{fourth} never answered");
}

fn wait_for_flow(lb: &Lb, key: &FlowKey) -> Result<lb_common::Flow> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(flow) = lb.dp.flow(key)? {
            return Ok(flow);
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(anyhow::anyhow!("the download's flow never appeared")).context("waiting for the flow")
}

/// Sends `data` from the client to `to` and waits for the echo (up to 10
/// tries of 1 s: the echo servers may still be starting).
fn udp_round_trip(rig: &Rig, to: SocketAddr, data: &[u8]) -> Result<Vec<u8>> {
    let data = data.to_vec();
    rig.client.run_in(move || {
        let local = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = vec![0u8; 65536];
        for _ in 0..10 {
            socket.send_to(&data, to)?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == to => return Ok(buf[..n].to_vec()),
                Ok((_, from)) => bail!("the answer came from {from}, not {to}"),
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(err) => return Err(err.into()),
            }
        }
        bail!("no answer from {to} in 10 tries")
    })
}

/// A UDP datagram bigger than the MTU goes as IP fragments both ways: the
/// request's fragments to the backend its first fragment went to, the
/// answer's fragments translated back (from the VIP).
#[test]
fn a_big_udp_datagram_in_fragments_goes_through_nat_both_ways() {
    const PORT: u16 = 5300;
    let mut rig = Rig::build(&RigOptions::default()).unwrap();
    rig.add_vips().unwrap();
    rig.start_udp_echo(PORT).unwrap();
    let v4: Vec<IpAddr> = rig.backends.iter().map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().map(|b| b.v6.into()).collect();
    let lb = Lb::start(
        &rig,
        &[
            udp_service(VIP_V4.into(), PORT, &v4),
            udp_service(VIP_V6.into(), PORT, &v6),
        ],
    )
    .unwrap();
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    for vip in [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)] {
        let echo = udp_round_trip(&rig, SocketAddr::new(vip, PORT), &data).unwrap();
        assert!(
            echo == data,
            "{vip}: {} bytes came back, not the {} sent",
            echo.len(),
            data.len()
        );
    }
    assert_eq!(lb.dp.counter(Counter::PassFragment).unwrap(), 0);
    // Three fragments each way, both families, at least, translated by the
    // program (the first ones may go to the kernel to resolve a neighbour).
    let translated = lb.dp.counter(Counter::Forwarded).unwrap()
        + lb.dp.counter(Counter::PassNoNeighbour).unwrap();
    assert!(translated >= 12, "only {translated} packets translated");
}

/// The source address and ICMP type and code of the first ICMP or ICMPv6
/// message the client receives within `wait`, after `send` ran (a raw
/// socket sees every one, whatever socket it is about).
fn first_icmp_after(
    rig: &Rig,
    v6: bool,
    wait: Duration,
    send: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<Option<(IpAddr, u8, u8)>> {
    rig.client.run_in(move || {
        let (family, proto) = if v6 {
            (libc::AF_INET6, libc::IPPROTO_ICMPV6)
        } else {
            (libc::AF_INET, libc::IPPROTO_ICMP)
        };
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(family, libc::SOCK_RAW, proto) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("raw ICMP socket");
        }
        // SAFETY: a descriptor we just opened and nothing else owns.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let socket = std::net::UdpSocket::from(socket);
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        send()?;
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: recvfrom(2) into our buffer and a sockaddr_storage.
            let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                continue;
            }
            let n = n as usize;
            // IPv4 raw sockets get the IP header too; ICMPv6 ones do not.
            let (source, icmp): (IpAddr, &[u8]) = if v6 {
                // SAFETY: the kernel filled a sockaddr_in6 for AF_INET6.
                let sin6 = unsafe { *(&raw const from).cast::<libc::sockaddr_in6>() };
                (IpAddr::from(sin6.sin6_addr.s6_addr), &buf[..n])
            } else {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                let src: [u8; 4] = buf[12..16].try_into()?;
                (IpAddr::from(src), &buf[ihl..n])
            };
            // Skip our own echo traffic and neighbour discovery.
            let (kind, code) = (icmp[0], icmp[1]);
            if (v6 && kind >= 128) || (!v6 && (kind == 0 || kind == 8)) {
                continue;
            }
            return Ok(Some((source, kind, code)));
        }
        Ok(None)
    })
}

/// A datagram to a NAT service whose TTL or hop limit expires at the LB is
/// answered as a router answers, from the LB's own address: never from the
/// VIP (the LB's kernel, which holds the VIP, would answer "port
/// unreachable" from it).
#[test]
fn an_expiring_ttl_is_answered_from_the_lb_not_from_the_vip() {
    const PORT: u16 = 5301;
    let mut rig = Rig::build(&RigOptions::default()).unwrap();
    rig.add_vips().unwrap();
    rig.start_udp_echo(PORT).unwrap();
    let v4: Vec<IpAddr> = rig.backends.iter().map(|b| b.v4.into()).collect();
    let v6: Vec<IpAddr> = rig.backends.iter().map(|b| b.v6.into()).collect();
    let lb = Lb::start(
        &rig,
        &[
            udp_service(VIP_V4.into(), PORT, &v4),
            udp_service(VIP_V6.into(), PORT, &v6),
        ],
    )
    .unwrap();
    // veth wakes its peer for XDP_TX frames only if the peer runs XDP (a
    // NIC has no such condition): the client's eth0 runs lb_baseline
    // unconfigured, which passes everything.
    let _client_xdp = rig
        .client
        .run_in(|| {
            let mut ebpf = dataplane::load_baseline(&lb_common::BaselineConfig::UNSET)?;
            dataplane::baseline_program(&mut ebpf)?.attach("eth0", XdpMode::Driver)?;
            Ok(ebpf)
        })
        .unwrap();
    for (vip, lb_addr, time_exceeded) in [
        (IpAddr::from(VIP_V4), IpAddr::from(rig::LB_EXT_V4), 11),
        (IpAddr::from(VIP_V6), IpAddr::from(rig::LB_EXT_V6), 3),
    ] {
        let to = SocketAddr::new(vip, PORT);
        let answer = first_icmp_after(&rig, vip.is_ipv6(), Duration::from_secs(3), move || {
            send_expiring(to)
        })
        .unwrap();
        let neighbours = rig.lb.exec("ip", ["neigh"]).unwrap();
        assert_eq!(
            answer,
            Some((lb_addr, time_exceeded, 0)),
            "{vip}: expected time exceeded from {lb_addr}; counters {:?}; neighbours {}",
            lb.dp.counters().unwrap(),
            String::from_utf8_lossy(&neighbours.stdout)
        );
    }
    assert_eq!(lb.dp.counter(Counter::SentTimeExceeded).unwrap(), 2);
}

/// Sends one datagram to `to` with a TTL or hop limit of 1.
fn send_expiring(to: SocketAddr) -> Result<()> {
    let local = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let socket = std::net::UdpSocket::bind(local)?;
    if to.is_ipv6() {
        let hops: libc::c_int = 1;
        // SAFETY: setsockopt(2) with a c_int option value.
        let ret = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                (&raw const hops).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    } else {
        socket.set_ttl(1)?;
    }
    socket.send_to(b"expiring", to)?;
    Ok(())
}
