//! The path's edges on the real kernel path (issue 9): UDP datagrams larger
//! than the MTU (they travel as IP fragments) both ways through a NAT
//! service, IPv6 extension headers, ICMP errors translated both ways (from
//! the backends' side to the client, from the client to the backend), TCP
//! path MTU discovery through a router with a smaller MTU behind the LB, and
//! the time exceeded the LB sends itself. Client, LB (XDP attached in native mode), router, switch and backends
//! are namespaces of a rig; the servers are real (nginx, the rig's UDP
//! server). Every test runs once per address family. Needs root.
mod support;

use std::{
    collections::BTreeSet,
    fs, io,
    net::{IpAddr, SocketAddr, UdpSocket},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use lb_ctl::balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec};
use lb_tests::{
    netns::Netns,
    rig::{
        CLIENT_V4, CLIENT_V6, Rig, RigOptions, VIP_V4, VIP_V6,
        udp::{self, Reply},
    },
};
use support::rig_lb::RigLb;

/// The UDP service's port, served by the rig's UDP server on every backend.
const UDP_PORT: u16 = 5300;
/// A UDP service whose backends' port has no listener.
const CLOSED_PORT: u16 = 5301;
/// The longest wait for one answer.
const WAIT: Duration = Duration::from_secs(3);
/// New client sockets (new source ports: new flows) tried until each of the
/// three backends answered.
const TRIES: usize = 40;
/// The MTU of the router's routes in the path MTU tests.
const ROUTER_MTU: u32 = 1300;

fn vip(v6: bool) -> IpAddr {
    if v6 { VIP_V6.into() } else { VIP_V4.into() }
}

fn client(v6: bool) -> IpAddr {
    if v6 {
        CLIENT_V6.into()
    } else {
        CLIENT_V4.into()
    }
}

/// A NAT service on the VIP of `v6`'s family over every backend of the rig.
fn nat_service(rig: &Rig, v6: bool, protocol: Protocol, port: u16) -> ServiceSpec {
    ServiceSpec {
        vip: vip(v6),
        port,
        protocol,
        mode: Mode::Nat,
        backends: rig
            .backends
            .iter()
            .map(|b| BackendSpec {
                addr: SocketAddr::new(if v6 { b.v6.into() } else { b.v4.into() }, port),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

/// Three backends with the UDP server on [`UDP_PORT`] (nothing on
/// [`CLOSED_PORT`]), and UDP NAT services on both ports, both families.
fn udp_rig() -> Result<(Rig, RigLb)> {
    let mut rig = Rig::build(&RigOptions::default())?;
    rig.add_vips()?;
    rig.serve_udp(UDP_PORT)?;
    let mut services = Vec::new();
    for v6 in [false, true] {
        for port in [UDP_PORT, CLOSED_PORT] {
            services.push(nat_service(&rig, v6, Protocol::Udp, port));
        }
    }
    let lb = RigLb::start(&rig, &services)?;
    Ok((rig, lb))
}

/// Sends `request` from new client sockets until each backend has answered
/// (at most [`TRIES`]); `check` validates each answer and names the backend
/// that sent it. Any answer that is not a datagram fails at once.
fn from_every_backend(
    rig: &Rig,
    lb: &RigLb,
    to: SocketAddr,
    request: &[u8],
    check: impl Fn(&[u8]) -> Result<String>,
) -> Result<()> {
    from_every_backend_with(rig, lb, to, request, |_| Ok(()), check)
}

/// [`from_every_backend`] with `setup` applied to each client socket.
fn from_every_backend_with(
    rig: &Rig,
    lb: &RigLb,
    to: SocketAddr,
    request: &[u8],
    setup: impl Fn(&UdpSocket) -> io::Result<()> + Sync,
    check: impl Fn(&[u8]) -> Result<String>,
) -> Result<()> {
    let want: BTreeSet<String> = rig.backends.iter().map(|b| b.name.clone()).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..TRIES {
        match udp::exchange_with(&rig.client, to, request, WAIT, |s| setup(s))? {
            Reply::Datagram(answer) => {
                seen.insert(check(&answer)?);
            }
            other => bail!(
                "{}-byte request to {to}: {other:?} instead of an answer (LB counters: {})",
                request.len(),
                lb.counters()
            ),
        }
        if seen == want {
            return Ok(());
        }
    }
    bail!("{TRIES} requests to {to} were answered by {seen:?}, not all of {want:?}")
}

/// The client's socket, connected to the VIP, receives 3,000- and
/// 8,000-byte answers whole (the backends send them as fragments), from
/// each backend.
fn big_answers_reach_the_client_whole(v6: bool) -> Result<()> {
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(vip(v6), UDP_PORT);
    for size in [3000, 8000] {
        let request = format!("SEND {size}");
        from_every_backend(&rig, &lb, to, request.as_bytes(), |answer| {
            let name = udp::answered_by(answer)
                .with_context(|| format!("an answer without a name: {answer:?}"))?;
            let want = udp::pattern(name, size);
            if answer != want {
                let at = answer.iter().zip(&want).position(|(a, b)| a != b);
                bail!(
                    "{name}'s {size}-byte answer arrived as {} bytes, first difference at {at:?}",
                    answer.len()
                );
            }
            Ok(name.to_owned())
        })?;
    }
    Ok(())
}

#[test]
fn udp_answers_of_3000_and_8000_bytes_reach_the_client_whole_ipv4() {
    big_answers_reach_the_client_whole(false).unwrap();
}

#[test]
fn udp_answers_of_3000_and_8000_bytes_reach_the_client_whole_ipv6() {
    big_answers_reach_the_client_whole(true).unwrap();
}

/// A 3,000-byte request (fragments from the client) reaches each backend
/// whole: the backend answers with the length and digest it received.
fn a_big_request_reaches_a_backend_whole(v6: bool) -> Result<()> {
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(vip(v6), UDP_PORT);
    let request = udp::pattern("client", 3000);
    let received = format!("3000 {:016x}", udp::digest(&request));
    from_every_backend(&rig, &lb, to, &request, |answer| {
        let text = String::from_utf8_lossy(answer);
        match text.split_once(' ') {
            Some((name, got)) if got == received => Ok(name.to_owned()),
            _ => bail!("the backend received something else: {text:?}, not {received:?}"),
        }
    })
}

#[test]
fn a_3000_byte_udp_request_reaches_a_backend_whole_ipv4() {
    a_big_request_reaches_a_backend_whole(false).unwrap();
}

#[test]
fn a_3000_byte_udp_request_reaches_a_backend_whole_ipv6() {
    a_big_request_reaches_a_backend_whole(true).unwrap();
}

/// IPv6 requests with a hop-by-hop or a destination-options header (an
/// 8-byte header holding a PadN option, as the client's socket adds it to
/// every packet), small and in fragments, reach each backend whole: the LB
/// walks the extension headers to the ports.
fn ipv6_extension_headers_are_walked() -> Result<()> {
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(VIP_V6.into(), UDP_PORT);
    for (header, option) in [
        ("hop-by-hop", libc::IPV6_HOPOPTS),
        ("destination options", libc::IPV6_DSTOPTS),
    ] {
        for size in [20, 3000] {
            let request = udp::pattern("client", size);
            let received = format!("{size} {:016x}", udp::digest(&request));
            let setup = |socket: &UdpSocket| padded_option_header(socket, option);
            from_every_backend_with(&rig, &lb, to, &request, setup, |answer| {
                let text = String::from_utf8_lossy(answer);
                match text.split_once(' ') {
                    Some((name, got)) if got == received => Ok(name.to_owned()),
                    _ => bail!(
                        "{size}-byte request with a {header} header: the backend received {text:?}, not {received:?}"
                    ),
                }
            })
            .with_context(|| format!("with a {header} header"))?;
        }
    }
    Ok(())
}

/// Makes `socket` send every packet with an IPv6 hop-by-hop or
/// destination-options header (`option`: `IPV6_HOPOPTS`, `IPV6_DSTOPTS`)
/// of 8 bytes: next header (the kernel's), length 0, PadN of 4 bytes.
fn padded_option_header(socket: &UdpSocket, option: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let header: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: setsockopt on a socket we own, with a buffer of the size given.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            option,
            header.as_ptr().cast(),
            header.len() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[test]
fn ipv6_udp_requests_with_extension_headers_reach_a_backend_whole() {
    ipv6_extension_headers_are_walked().unwrap();
}

/// A connected UDP socket learns that the backend's port is closed: the
/// backend's ICMP port unreachable comes back as about the VIP, and the
/// socket's next receive fails with ECONNREFUSED. Every try, from a new
/// socket (new flows spread over the backends); fewer tries than the
/// backends' ICMP rate limit lets through. The refusals are the backends'
/// (the LB's kernel, which holds the VIP, would refuse a datagram the
/// program passed to it, too).
fn a_closed_backend_port_is_refused(v6: bool) -> Result<()> {
    const ATTEMPTS: u64 = 6;
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(vip(v6), CLOSED_PORT);
    for attempt in 1..=ATTEMPTS {
        match udp::exchange(&rig.client, to, b"anyone?", WAIT)? {
            Reply::Refused => {}
            other => bail!(
                "attempt {attempt}: {other:?} instead of ECONNREFUSED from {to} (LB counters: {})",
                lb.counters()
            ),
        }
    }
    let mut by_backends = 0;
    for backend in &rig.backends {
        by_backends += udp_no_ports(&backend.ns, v6)?;
    }
    let by_lb = udp_no_ports(&rig.lb().ns, v6)?;
    if (by_backends, by_lb) != (ATTEMPTS, 0) {
        bail!(
            "datagrams to a closed port: {by_backends} at the backends, {by_lb} at the LB; {ATTEMPTS} and 0 expected"
        );
    }
    Ok(())
}

/// How many UDP datagrams `ns` received for a port nobody listens on
/// (`UdpNoPorts`, `Udp6NoPorts`).
fn udp_no_ports(ns: &Netns, v6: bool) -> Result<u64> {
    let (file, counter) = if v6 {
        ("snmp6", "Udp6NoPorts")
    } else {
        ("snmp", "NoPorts")
    };
    let text = ns.run_in(|| {
        fs::read_to_string(format!("/proc/thread-self/net/{file}")).context("reading SNMP counters")
    })?;
    snmp_counter(&text, counter).with_context(|| format!("no {counter} in {}'s {file}", ns.name()))
}

/// A counter of `/proc/net/snmp` (`Udp:` header line, then values) or of
/// `/proc/net/snmp6` (name and value on each line).
fn snmp_counter(text: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        if first == name {
            return words.next()?.parse().ok();
        }
        if first == "Udp:" {
            let at = words.position(|w| w == name)?;
            return lines.next()?.split_whitespace().nth(at + 1)?.parse().ok();
        }
    }
    None
}

#[test]
fn a_connected_udp_client_gets_econnrefused_from_a_closed_backend_port_ipv4() {
    a_closed_backend_port_is_refused(false).unwrap();
}

#[test]
fn a_connected_udp_client_gets_econnrefused_from_a_closed_backend_port_ipv6() {
    a_closed_backend_port_is_refused(true).unwrap();
}

/// ICMP errors a client sends about a service's answers reach the backend
/// that sent them, quoting the answer as the backend sent it: the backend's
/// socket reports each with its meaning. The client's firewall makes them
/// (nftables `reject` of the answers), one type after the other; fewer than
/// the client's ICMP rate limit lets through.
fn client_side_errors_reach_the_backend(v6: bool) -> Result<()> {
    use io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable, PermissionDenied};
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(vip(v6), UDP_PORT);
    let (family, icmp) = if v6 {
        ("ip6", "icmpv6")
    } else {
        ("ip", "icmp")
    };
    let cases = if v6 {
        [
            ("port-unreachable", ConnectionRefused),
            ("no-route", NetworkUnreachable),
            ("addr-unreachable", HostUnreachable),
            ("admin-prohibited", PermissionDenied),
        ]
    } else {
        [
            ("port-unreachable", ConnectionRefused),
            ("net-unreachable", NetworkUnreachable),
            ("host-unreachable", HostUnreachable),
            ("admin-prohibited", HostUnreachable),
        ]
    };
    let chain = "{ type filter hook input priority 0 ; }";
    nft(&rig.client, &["add", "table", family, "lbt"])?;
    nft(
        &rig.client,
        &["add", "chain", family, "lbt", "input", chain],
    )?;
    for (case, want) in cases {
        nft(&rig.client, &["flush", "chain", family, "lbt", "input"])?;
        let sport = UDP_PORT.to_string();
        nft(
            &rig.client,
            &[
                "add", "rule", family, "lbt", "input", "udp", "sport", &sport, "reject", "with",
                icmp, "type", case,
            ],
        )?;
        let before = rig.udp_errors();
        match udp::exchange(&rig.client, to, b"SEND 10", Duration::from_millis(500))? {
            Reply::Nothing => {}
            other => bail!("{case}: the client's firewall let {other:?} through"),
        }
        let mut after = rig.udp_errors();
        for _ in 0..50 {
            if after.len() > before.len() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            after = rig.udp_errors();
        }
        let count = |errors: &[(SocketAddr, io::ErrorKind)]| {
            errors.iter().filter(|(_, kind)| *kind == want).count()
        };
        if after.len() != before.len() + 1 || count(&after) != count(&before) + 1 {
            bail!(
                "{icmp} {case} from the client: the backends' sockets reported {after:?} (before: {before:?}), one {want:?} more expected (LB counters: {})",
                lb.counters()
            );
        }
    }
    Ok(())
}

fn nft(ns: &Netns, args: &[&str]) -> Result<()> {
    ns.exec("nft", args)?;
    Ok(())
}

#[test]
fn icmp_errors_from_the_client_reach_the_backend_that_sent_the_answer_ipv4() {
    client_side_errors_reach_the_backend(false).unwrap();
}

#[test]
fn icmp_errors_from_the_client_reach_the_backend_that_sent_the_answer_ipv6() {
    client_side_errors_reach_the_backend(true).unwrap();
}

/// A packet to the VIP whose TTL or hop limit expires at the LB is answered
/// as a router answers it: an ICMP time exceeded from the LB's own address
/// on the client's side, never from the VIP, quoting the packet as the
/// client sent it (the client's socket matches the error to itself). A
/// traceroute through the VIP shows the LB as a hop.
fn ttl_expiring_at_the_lb_is_answered_from_the_lb(v6: bool) -> Result<()> {
    let (rig, lb) = udp_rig()?;
    let to = SocketAddr::new(vip(v6), UDP_PORT);
    let (want_type, lb_addr) = if v6 {
        (3, IpAddr::from(rig.lb().ext_v6))
    } else {
        (11, IpAddr::from(rig.lb().ext_v4))
    };
    let want = udp::IcmpReport {
        icmp_type: want_type,
        code: 0,
        from: lb_addr,
    };
    // Fewer than the LB's ICMP budget lets through at once.
    for attempt in 1..=3 {
        let reply = udp::exchange_with(&rig.client, to, b"hello", WAIT, |socket| {
            udp::receive_errors(socket, v6)?;
            udp::set_ttl(socket, v6, 1)
        })?;
        match reply {
            Reply::Icmp(report) if report == want => {}
            other => bail!(
                "attempt {attempt}: {other:?} instead of {want:?} (LB counters: {})",
                lb.counters()
            ),
        }
    }
    Ok(())
}

#[test]
fn a_ttl_expiring_at_the_lb_is_answered_from_the_lb_not_the_vip_ipv4() {
    ttl_expiring_at_the_lb_is_answered_from_the_lb(false).unwrap();
}

#[test]
fn a_hop_limit_expiring_at_the_lb_is_answered_from_the_lb_not_the_vip_ipv6() {
    ttl_expiring_at_the_lb_is_answered_from_the_lb(true).unwrap();
}

/// `len` bytes of a fixed pseudo-random sequence (xorshift64): a lost, moved
/// or repeated segment shows.
fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The MTU `ip route get` shows for `dst` in `ns` (the path MTU the host
/// learned), if any.
fn learned_mtu(ns: &Netns, dst: IpAddr) -> Result<Option<u32>> {
    let family = if dst.is_ipv6() { "-6" } else { "-4" };
    let out = ns.ip([family, "route", "get", &dst.to_string()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mtu" {
            let mtu = words.next().context("`mtu` without a value")?;
            return Ok(Some(mtu.parse().with_context(|| format!("mtu {mtu}"))?));
        }
    }
    Ok(None)
}

/// TCP through the VIP with a router behind the LB whose routes both ways
/// have a smaller MTU than every link: a 4 MiB download from nginx and a
/// 4 MiB upload (PUT) arrive with every byte. The download works because
/// the router's "fragmentation needed" / "packet too big" reaches the
/// backend (the backend learns the MTU towards the client); the upload
/// because the router's error about the client's segments, sent to the
/// client about the backend's address, is translated by the LB to be about
/// the VIP (the client learns the MTU towards the VIP).
fn path_mtu_discovery_through_a_router(v6: bool) -> Result<()> {
    let mut rig = Rig::build(&RigOptions {
        router_mtu: Some(ROUTER_MTU),
        ..Default::default()
    })?;
    rig.add_vips()?;
    rig.start_nginx()?;
    let lb = RigLb::start(&rig, &[nat_service(&rig, v6, Protocol::Tcp, 80)])?;
    let host = match vip(v6) {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let family = if v6 { "v6" } else { "v4" };

    let content = blob(4 << 20, 0x9e37_79b9_7f4a_7c15);
    rig.put_file("blob", &content)?;
    let downloaded = rig.dir().join(format!("download-{family}"));
    let url = format!("http://{host}/blob");
    curl(&rig, &lb, &["-o", path(&downloaded)?, &url])?;
    let got = fs::read(&downloaded)?;
    if got != content {
        bail!(
            "download of {url}: {} bytes, {} expected, first difference at {:?}",
            got.len(),
            content.len(),
            got.iter().zip(&content).position(|(a, b)| a != b)
        );
    }
    let mut learned = Vec::new();
    for backend in &rig.backends {
        learned.push(learned_mtu(&backend.ns, client(v6))?);
    }
    if !learned.contains(&Some(ROUTER_MTU)) {
        bail!("no backend learned the MTU {ROUTER_MTU} towards the client: {learned:?}");
    }
    // Each direction on its own: a learned MTU lowers the MSS that host
    // advertises on its next connections (IPv6 does), so its peer would
    // not send a segment large enough to need discovery.
    for ns in rig.backends.iter().map(|b| &b.ns).chain([&rig.client]) {
        forget_path_mtus(ns)?;
    }

    let upload = blob(4 << 20, 0x2545_f491_4f6c_dd1d);
    let source = rig.dir().join(format!("upload-{family}"));
    fs::write(&source, &upload)?;
    let name = format!("blob-{family}");
    let url = format!("http://{host}/upload/{name}");
    // No "Expect: 100-continue": the body follows the headers at once.
    curl(&rig, &lb, &["-H", "Expect:", "-T", path(&source)?, &url])?;
    let Some((backend, got)) = rig.uploaded(&name)? else {
        bail!("no backend stored the upload {url}");
    };
    if got != upload {
        bail!(
            "upload to {url} stored by {}: {} bytes, {} expected, first difference at {:?}",
            backend.name,
            got.len(),
            upload.len(),
            got.iter().zip(&upload).position(|(a, b)| a != b)
        );
    }
    let mtu = learned_mtu(&rig.client, vip(v6))?;
    if mtu != Some(ROUTER_MTU) {
        bail!(
            "the client's path MTU towards the VIP is {mtu:?}, not {ROUTER_MTU} (LB counters: {})",
            lb.counters()
        );
    }
    Ok(())
}

/// Flushes the path MTUs `ns` learned, both families.
fn forget_path_mtus(ns: &Netns) -> Result<()> {
    ns.ip(["-4", "route", "flush", "cache"])?;
    ns.ip(["-6", "route", "flush", "cache"])?;
    Ok(())
}

/// curl in the client namespace, bounded; an error carries its message and
/// the LB's counters.
fn curl(rig: &Rig, lb: &RigLb, args: &[&str]) -> Result<()> {
    let mut all = vec!["-sS", "--fail", "--max-time", "30"];
    all.extend_from_slice(args);
    rig.client
        .exec("curl", &all)
        .with_context(|| format!("curl {args:?} (LB counters: {})", lb.counters()))?;
    Ok(())
}

fn path(p: &std::path::Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

#[test]
fn tcp_path_mtu_discovery_works_through_the_vip_behind_a_smaller_mtu_router_ipv4() {
    path_mtu_discovery_through_a_router(false).unwrap();
}

#[test]
fn tcp_path_mtu_discovery_works_through_the_vip_behind_a_smaller_mtu_router_ipv6() {
    path_mtu_discovery_through_a_router(true).unwrap();
}

#[test]
fn snmp_counters_are_read_from_both_layouts() {
    let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors\nUdp: 105 7 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
    assert_eq!(snmp_counter(snmp, "NoPorts"), Some(7));
    let snmp6 = "Ip6InReceives                   \t11\nUdp6NoPorts                     \t3\n";
    assert_eq!(snmp_counter(snmp6, "Udp6NoPorts"), Some(3));
    assert_eq!(snmp_counter(snmp6, "Udp6InErrors"), None);
}
