//! Flow replication with real daemons (issue 11): the pair rig (client, two
//! nodes, nginx backends behind the floating gateway, a NAT or DSR service), long
//! paced TCP downloads (the backends send 200 kB/s) and idle keep-alive connections through the
//! VIP, a backend added meanwhile (so Maglev alone would move about a third
//! of them to it, and the new backend would reset them), then `lb-ctl
//! failover` and a `kill -9` of the new active. Every download completes
//! with every byte (size and SHA-256), every idle connection answers again
//! from the same backend: the standby held the flows, with their backends,
//! before it took over.
//!
//! The same for UDP flows (each client socket answered by the same backend
//! after the failover), for connections opened just before the failover
//! (the stepping-down active sends what its ring still holds), and for a
//! standby killed and restarted under load (a bulk copy, then the stream).
use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    flow_pair::{FlowPair, replication},
    flow_scenario::{
        Downloads, Fault, Idle, Pair, Resets, downloads_and_idle_connections, fail_if_broken,
        service, service_packets,
    },
    rig::{VIP_V4, udp},
    wait::wait_for,
};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// One scenario at a time: two at once on a small machine slow the traffic
/// through the new active past the waits.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The scenario ([`downloads_and_idle_connections`]), one at a time: every
/// connection completes with every byte, or the test fails with what broke.
fn downloads_and_idle_connections_survive(mode: &str, fault: Fault) -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    downloads_and_idle_connections(&bin(), mode, fault)?.fail_if_broken()
}

#[test]
fn nat_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("nat", Fault::FailoverThenKill)
}

#[test]
fn nat_downloads_and_idle_connections_survive_node_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("nat", Fault::NodeLoss)
}

#[test]
fn nat_downloads_and_idle_connections_survive_carrier_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("nat", Fault::CarrierLoss)
}

/// DSR: the backends answer the client themselves (the VIP on their
/// loopback, through the floating gateway's routing); the flows the new
/// active forwards must still reach the backend that holds the connection.
#[test]
fn dsr_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("dsr", Fault::FailoverThenKill)
}

#[test]
fn dsr_downloads_and_idle_connections_survive_node_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("dsr", Fault::NodeLoss)
}

#[test]
fn dsr_downloads_and_idle_connections_survive_carrier_loss_with_a_backend_added() -> Result<()> {
    downloads_and_idle_connections_survive("dsr", Fault::CarrierLoss)
}

/// The UDP service's port.
const UDP_PORT: u16 = 5300;
/// Client sockets (distinct source ports: distinct flows).
const UDP_FLOWS: usize = 12;

/// One datagram on `socket` (connected to the VIP), answered within a
/// second, up to `tries` times; the backend that answered.
fn udp_ask(socket: &UdpSocket, request: &[u8], tries: usize) -> Result<String> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..tries {
        socket.send(request)?;
        match socket.recv(&mut buf) {
            Ok(len) => {
                let name = udp::answered_by(&buf[..len]).context("an answer without a name")?;
                return Ok(name.to_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("waiting for the answer"),
        }
    }
    bail!("no answer to {tries} datagrams")
}

/// UDP flows keep their backend: client sockets answered twice through
/// lb1 (confirmed flows), a backend added (Maglev alone would move about a third of them to it),
/// `lb-ctl failover`, then each socket's next datagram is forwarded by lb2
/// to the backend that answered it before.
#[test]
fn nat_udp_flows_keep_their_backend_across_failover_with_a_backend_added() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let pair = Pair::start(
        &bin(),
        |rig| rig.serve_udp(UDP_PORT),
        |rig| service(rig, "dns", "udp", UDP_PORT, "nat"),
    )?;
    let rig = &pair.rig;
    let vip = SocketAddr::new(VIP_V4.into(), UDP_PORT);
    let sockets: Vec<UdpSocket> = (0..UDP_FLOWS)
        .map(|_| {
            rig.client.run_in(|| {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.connect(vip)?;
                socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                Ok(socket)
            })
        })
        .collect::<Result<_>>()?;
    // Two datagrams each: the second confirms the flow (a first datagram
    // alone is an unconfirmed flow, which is not replicated, so that a
    // flood of spoofed sources reaches neither the connection table nor
    // the standby).
    let mut first = Vec::new();
    for (i, socket) in sockets.iter().enumerate() {
        let answer = udp_ask(socket, format!("flow {i} first").as_bytes(), 5)?;
        let again = udp_ask(socket, format!("flow {i} again").as_bytes(), 5)?;
        ensure!(
            answer == again,
            "flow {i}: answered by {answer}, then by {again}"
        );
        first.push(answer);
    }
    eprintln!("answered through lb1 by {first:?}");

    pair.add_backend(&format!("udp/{VIP_V4}:{UDP_PORT}"), UDP_PORT)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.failover()?;

    let before = service_packets(&pair.lb2);
    let mut broken = Vec::new();
    for (i, (socket, was)) in sockets.iter().zip(&first).enumerate() {
        // Datagrams lost while the client's ARP entry follows the VIP are
        // sent again (a second each, bounded).
        match udp_ask(socket, format!("flow {i} second").as_bytes(), 10) {
            Ok(now) if now == *was => {}
            Ok(now) => broken.push(format!("flow {i}: answered by {was}, then by {now}")),
            Err(e) => broken.push(format!("flow {i}: {e:#}")),
        }
    }
    // Each answered flow is a datagram each way through lb2.
    let through = service_packets(&pair.lb2) - before;
    eprintln!(
        "{} of {UDP_FLOWS} flows moved; lb2 forwarded {through} packets; {:?} in all",
        broken.len(),
        started.elapsed()
    );
    fail_if_broken(&broken, UDP_FLOWS, None)?;
    ensure!(
        through >= 2 * UDP_FLOWS as u64,
        "lb2 forwarded {through} packets, not the flows' {}",
        2 * UDP_FLOWS
    );
    ensure!(replication(&pair.lb2)["stream"] == "sending");
    Ok(())
}

/// Keep-alive connections opened just before the failover.
const LATE: usize = 12;

/// No blind spot: keep-alive connections opened through lb1 just before
/// the failover, the backend added in between (so that lb2's Maglev table
/// alone would send about a third of them elsewhere), then about 50 ms
/// later `lb-ctl failover`: every connection answers again from the same
/// backend, through lb2. Their flows reached lb2 only in the last moments
/// (the stepping-down active sends what its ring still holds).
#[test]
fn nat_connections_opened_just_before_failover_survive() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let pair = Pair::start(
        &bin(),
        |rig| rig.start_nginx(),
        |rig| service(rig, "web", "tcp", 80, "nat"),
    )?;
    let rig = &pair.rig;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    let resets = Resets::watch(rig)?;
    let opened = Instant::now();
    let idle = Idle::open(rig, LATE)?;
    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(50));
    let before = service_packets(&pair.lb2);
    let requested = opened.elapsed();
    pair.failover()?;
    eprintln!("connections opened {requested:?} before the failover request");

    let broken = idle.ask_again()?;
    let through = service_packets(&pair.lb2) - before;
    eprintln!(
        "lb2 forwarded {through} packets; {:?} in all",
        started.elapsed()
    );
    fail_if_broken(&broken, LATE, Some(&resets))?;
    // A request and an answer each way on every connection, at least.
    ensure!(
        through >= 2 * LATE as u64,
        "lb2 forwarded {through} packets"
    );
    Ok(())
}

/// Downloads per group (before the standby's kill, while it is away).
const RESTART_DOWNLOADS: usize = 8;
/// About 25 s each (paced by the backends): the kill, the restart, the
/// bulk copy and the failover happen in the middle.
const RESTART_SIZE: usize = 5 << 20;

/// The standby killed (`kill -9`) while downloads run and more start while
/// it is away, then restarted: once it reports caught up (a bulk copy of
/// the active's flows, then the stream), a backend added and `lb-ctl
/// failover`: every download completes with every byte through lb2.
#[test]
fn nat_downloads_survive_failover_to_a_restarted_standby() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut pair = Pair::start(
        &bin(),
        |rig| {
            rig.start_nginx()?;
            Downloads::serve(rig, RESTART_SIZE)
        },
        |rig| service(rig, "web", "tcp", 80, "nat"),
    )?;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        pair.rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    let resets = Resets::watch(&pair.rig)?;
    let mut downloads = Downloads::new(RESTART_SIZE);
    downloads.spawn(&pair.rig, "before-kill", RESTART_DOWNLOADS)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.lb2.kill9();
    downloads.spawn(&pair.rig, "while-away", RESTART_DOWNLOADS)?;
    std::thread::sleep(Duration::from_millis(300));
    let resyncs = replication(&pair.lb1)["resyncs"].as_u64();
    let FlowPair { rig, lb2, .. } = &mut pair.0;
    lb2.restart(&rig.nodes[1].ns)?;
    wait_for("lb2 standby again", Duration::from_secs(5), || {
        pair.lb2.cluster_role().as_deref() == Some("standby")
    })?;
    // No new flow is needed: on the new connection lb1 starts over with a
    // bulk copy (the downloads are long-lived; nothing else would reach
    // the restarted standby before the next refresh, 30 s later).
    wait_for("lb2 caught up again", Duration::from_secs(10), || {
        pair.lb2.replication_caught_up()
    })
    .with_context(|| {
        format!(
            "lb1: {}\nlb2: {}",
            replication(&pair.lb1),
            replication(&pair.lb2)
        )
    })?;
    let status = replication(&pair.lb1);
    eprintln!("lb1 after lb2's restart: {status}");
    ensure!(
        status["resyncs"].as_u64() > resyncs,
        "lb2 caught up without a bulk copy: {status}"
    );
    // The bulk copy holds every download's flow, those that began while
    // lb2 was away too.
    let received = replication(&pair.lb2);
    ensure!(
        received["flows"].as_u64() >= Some(2 * RESTART_DOWNLOADS as u64),
        "lb2 received fewer flows than the downloads: {received}"
    );

    pair.add_backend(&format!("tcp/{VIP_V4}:80"), 80)?;
    std::thread::sleep(Duration::from_millis(300));
    pair.failover()?;
    eprintln!("failover {:?} after the start", started.elapsed());
    let before = service_packets(&pair.lb2);
    let through = pair.traffic_through_lb2(before, 1000);

    let broken = downloads.broken()?;
    eprintln!("{:?} in all", started.elapsed());
    fail_if_broken(&broken, 2 * RESTART_DOWNLOADS, Some(&resets))?;
    through
}
