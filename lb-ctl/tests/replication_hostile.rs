//! Hostile traffic on the flow replication's port of running daemons
//! (issue 11): garbage, replayed or unauthenticated replication messages
//! change nothing.
//!
//! The pair rig with a NAT service; keep-alive connections through the VIP,
//! whose flows the standby (lb2) holds. Then, from lb1's namespace (the
//! interconnect), connections to lb2's `replication_port`:
//! - plain TCP carrying a framed message (no TLS), and one that says
//!   nothing: refused;
//! - TLS without a client certificate, and with one of another CA:
//!   refused (each then sends a well-formed message of a newer epoch, which
//!   would be applied if the connection were taken);
//! - the cluster's own certificate, with frames that do not decode (an
//!   unknown type, a records message with a bad record, an oversized
//!   length, an empty frame): counted as garbage, the connection closed;
//! - the cluster's own certificate, with well-formed messages built with
//!   the daemon's own encoder, each carrying a flow no client opened: an
//!   already applied sequence number of the current epoch, the next one
//!   and one far ahead of the stream, on another connection than the
//!   stream's (ignored, counted as `foreign`), the previous epoch and a
//!   never used one (`stale`).
//!
//! And from lb2's namespace, the cluster's certificate on lb1's
//! replication port: a resync request and a gap report of the current
//! epoch that did not come on the stream's connection.
//!
//! After each: lb2's flow table exactly as before (read from its pinned
//! map), the flow that was sent nowhere in it, the same epoch on both
//! nodes, both caught up and connected, no resync, the flows lb2 counts
//! moved only by lb1's periodic refresh, and the one counter that names the
//! attack up by one in `lb-ctl status` and in `/metrics` (the others
//! unchanged). Then the real stream still works: new connections through
//! the VIP reach lb2's table, a backend is added (Maglev alone would now
//! send about a third of the flows to it, which resets them), `lb-ctl
//! failover`, and every connection, old and new, answers again from the
//! same backend.
use std::{
    collections::HashMap,
    fs,
    future::Future,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use lb_common::{Flow, FlowKey, maps};
use lb_ctl::{
    balancer::{Mode, Protocol},
    cluster::{config::DEFAULT_REPLICATION_PORT, replicate::wire, sync::Tls},
    replication::{
        message::{self, FlowMessage},
        record::WireFlow,
        stream::{Item, Message},
    },
};
use lb_tests::{
    daemon::{DaemonProcess, cluster_init},
    flow_pair::{FlowPair, replication},
    flow_scenario,
    netns::Netns,
    rig::{Rig, VIP_V4},
    wait::wait_for,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// lb2's metrics, in its own namespace.
const METRICS: &str = "127.0.0.1:9650";
/// Keep-alive connections opened before the attacks, and after them.
const BEFORE: usize = 8;
const AFTER: usize = 4;
/// The counters an attack may move; every other one must stay.
const COUNTERS: [&str; 10] = [
    "garbage",
    "refused_connections",
    "duplicates",
    "stale",
    "foreign",
    "dropped",
    "gaps",
    "resyncs",
    "unknown_service",
    "unknown_backend",
];

/// A flow no client opened, to a backend of the service (the standby would
/// write it if it took the message).
fn bogus_flow(rig: &Rig) -> WireFlow {
    WireFlow {
        protocol: Protocol::Tcp,
        client: "198.18.0.77:4242".parse().unwrap(),
        vip: SocketAddr::new(VIP_V4.into(), 80),
        backend: SocketAddr::new(rig.backends[0].v4.into(), 80),
        sorry: false,
        mode: Mode::Nat,
    }
}

fn is_bogus(key: &FlowKey) -> bool {
    key.src[..4] == [198, 18, 0, 77]
}

fn records(epoch: u64, seq: u64, flow: WireFlow) -> FlowMessage {
    Message::Data {
        epoch,
        seq,
        item: Item::Records(vec![flow]),
    }
}

/// `message` as the daemon's own encoder writes it, behind its length.
fn framed(message: &FlowMessage) -> Vec<u8> {
    wire::frame(&message::encode(message).expect("the message encodes"))
}

/// The node's flow table, read from its pinned map.
fn flow_table(node: &DaemonProcess) -> Result<HashMap<FlowKey, Flow>> {
    let path = node.files().pin_dir.join(maps::FLOWS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let table: BpfHashMap<_, FlowKey, Flow> = BpfHashMap::try_from(Map::LruHashMap(data))
        .with_context(|| format!("{} is not the flow table", path.display()))?;
    table
        .iter()
        .map(|entry| entry.with_context(|| format!("reading {}", path.display())))
        .collect()
}

/// `lb_replication_NAME_total` (or the gauge NAME) in the node's metrics.
fn metric(ns: &Netns, name: &str) -> Result<u64> {
    let out = ns.exec(
        "curl",
        [
            "-sS",
            "--max-time",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = format!("lb_replication_{name}_total ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .with_context(|| format!("{wanted}missing from the metrics:\n{text}"))?
        .trim()
        .parse()
        .with_context(|| format!("{wanted}in the metrics"))
}

fn number(status: &serde_json::Value, name: &str) -> Result<u64> {
    status[name]
        .as_u64()
        .with_context(|| format!("no {name} in {status}"))
}

/// What must not change, and the counters that may.
struct Seen {
    table: HashMap<FlowKey, Flow>,
    lb1: serde_json::Value,
    lb2: serde_json::Value,
}

/// Both sides of the stream settled: lb1 sending, connected, caught up,
/// nothing unacknowledged; lb2 receiving, connected, caught up, in lb1's
/// epoch. Then lb2's table and both statuses. lb1 is read before and after
/// lb2, and must have sent nothing in between (its periodic refresh): lb2
/// has then applied everything lb1 counts as sent, and nothing more.
fn settled(pair: &FlowPair) -> Result<Seen> {
    let mut last = (serde_json::Value::Null, serde_json::Value::Null);
    wait_for("the stream settled", Duration::from_secs(10), || {
        let earlier = replication(&pair.lb1);
        let lb2 = replication(&pair.lb2);
        let lb1 = replication(&pair.lb1);
        let ok = lb1["stream"] == "sending"
            && lb1["messages"] == earlier["messages"]
            && earlier["lag_messages"] == 0
            && lb1["connected"] == true
            && lb1["caught_up"] == true
            && lb1["lag_messages"] == 0
            && lb2["stream"] == "receiving"
            && lb2["connected"] == true
            && lb2["caught_up"] == true
            && lb2["epoch"].as_u64().is_some_and(|e| e > 0)
            && lb2["epoch"] == lb1["epoch"];
        last = (lb1, lb2);
        ok
    })
    .with_context(|| format!("lb1: {}\nlb2: {}", last.0, last.1))?;
    let table = flow_table(&pair.lb2)?;
    Ok(Seen {
        table,
        lb1: last.0,
        lb2: last.1,
    })
}

/// Runs `attack` in `ns` (on a thread of its own, with a tokio runtime of
/// its own: its sockets are the namespace's).
fn from_ns<F, Fut>(ns: &Netns, attack: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<()>>,
{
    ns.run_in(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(attack())
    })
}

/// Carries out one attack and checks that it changed nothing but the
/// counters in `expect` (on the node `on`: "lb2", or "lb1" for feedback
/// sent to the active), each up by its number.
fn attack(
    pair: &FlowPair,
    what: &str,
    on: &str,
    expect: &[(&str, u64)],
    run: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let before = settled(pair)?;
    run().with_context(|| format!("{what}: the attack itself"))?;
    let counters_of = |seen: &serde_json::Value| -> Result<Vec<u64>> {
        COUNTERS.iter().map(|name| number(seen, name)).collect()
    };
    let (node, base) = match on {
        "lb2" => (&pair.lb2, &before.lb2),
        _ => (&pair.lb1, &before.lb1),
    };
    let want: Vec<u64> = COUNTERS
        .iter()
        .zip(counters_of(base)?)
        .map(|(name, was)| {
            was + expect
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, by)| *by)
        })
        .collect();
    let mut got = Vec::new();
    wait_for(&format!("{what}: counted"), Duration::from_secs(10), || {
        got = counters_of(&replication(node)).unwrap_or_default();
        got == want
    })
    .with_context(|| {
        format!(
            "{what}: counters {COUNTERS:?} went from {:?} to {got:?}, wanted {want:?}",
            counters_of(base).unwrap_or_default()
        )
    })?;

    let after = settled(pair).with_context(|| format!("after {what}"))?;
    let after_node = if on == "lb2" { &after.lb2 } else { &after.lb1 };
    ensure!(
        counters_of(after_node)? == want,
        "{what}: counters {COUNTERS:?} went on to {:?}, wanted {want:?}",
        counters_of(after_node)?
    );
    let bogus: Vec<_> = after.table.keys().filter(|k| is_bogus(k)).collect();
    ensure!(
        bogus.is_empty(),
        "{what}: lb2 wrote the bogus flow {bogus:?}"
    );
    ensure!(
        after.table == before.table,
        "{what}: lb2's flow table changed: {} entries before, {} after",
        before.table.len(),
        after.table.len()
    );
    for key in ["epoch", "resyncs", "gaps"] {
        ensure!(
            after.lb1[key] == before.lb1[key] && after.lb2[key] == before.lb2[key],
            "{what}: {key} changed\nlb1: {} -> {}\nlb2: {} -> {}",
            before.lb1,
            after.lb1,
            before.lb2,
            after.lb2
        );
    }
    // lb2 writes only what lb1 sends: its periodic refresh (every 30 s)
    // may have come meanwhile.
    let refreshed = number(&after.lb1, "refreshed")? - number(&before.lb1, "refreshed")?;
    let written = number(&after.lb2, "flows")? - number(&before.lb2, "flows")?;
    ensure!(
        written == refreshed,
        "{what}: lb2 wrote {written} flows, lb1 refreshed {refreshed}"
    );
    // The same counts in lb2's metrics.
    for name in ["garbage", "refused_connections", "duplicates", "stale"] {
        let in_metrics = metric(&pair.rig.nodes[1].ns, name)?;
        ensure!(
            in_metrics == number(&after.lb2, name)?,
            "{what}: {name} is {in_metrics} in lb2's metrics, {} in its status",
            after.lb2[name]
        );
    }
    eprintln!("{what}: counted, nothing changed");
    Ok(())
}

/// Reads until the peer closes the connection (or breaks it): it must,
/// within 10 s.
async fn closed<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> Result<()> {
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await
        .map_err(|_| anyhow::anyhow!("{what}: the standby kept the connection open"))
}

/// Writes `bytes` (an error is fine: the peer may have closed already),
/// then waits until the peer closes the connection.
async fn send_then_closed<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    what: &str,
) -> Result<()> {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    closed(stream, what).await
}

/// TLS to `to` with `connector`; a handshake the server refuses may fail
/// here or only at the first read (TLS 1.3: the client is done first).
async fn tls_refused(
    connector: tokio_rustls::TlsConnector,
    to: SocketAddr,
    message: &FlowMessage,
    what: &str,
) -> Result<()> {
    let tcp = tokio::net::TcpStream::connect(to).await?;
    match connector
        .connect(ServerName::IpAddress(to.ip().into()), tcp)
        .await
    {
        Ok(mut stream) => send_then_closed(&mut stream, &framed(message), what).await,
        Err(_) => Ok(()),
    }
}

/// A client that trusts the cluster's CA and shows no certificate.
fn no_client_certificate(ca: &Path) -> Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A client that trusts the cluster's CA and shows lb1's certificate and
/// key of another cluster's `lb-ctl cluster init` (another CA).
fn stranger(pair: &FlowPair) -> Result<Tls> {
    let dir = pair.rig.dir();
    let other = dir.join("stranger");
    fs::create_dir_all(&other)?;
    cluster_init(&bin(), &dir.join("plan.toml"), &other)?;
    let mixed = dir.join("stranger-tls");
    fs::create_dir_all(&mixed)?;
    fs::copy(dir.join("lb1/tls/ca.pem"), mixed.join("ca.pem"))?;
    for file in ["lb1.pem", "lb1.key"] {
        fs::copy(other.join("lb1/tls").join(file), mixed.join(file))?;
    }
    ensure!(
        fs::read(other.join("lb1/tls/ca.pem"))? != fs::read(dir.join("lb1/tls/ca.pem"))?,
        "the other cluster has the same CA"
    );
    Tls::load(&mixed, "lb1")
}

/// An HTTP/1.1 keep-alive connection through the VIP, from the client.
struct KeepAlive {
    stream: TcpStream,
    /// The backend that answered first (its name).
    first: String,
}

impl KeepAlive {
    fn open(rig: &Rig) -> Result<Self> {
        let vip = SocketAddr::new(VIP_V4.into(), 80);
        let mut stream = rig.client.run_in(|| {
            let stream = TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(15)))?;
            Ok(stream)
        })?;
        let first = get(&mut stream)?;
        Ok(Self { stream, first })
    }
}

/// `GET /` on `stream`; the body (the backend's name).
fn get(stream: &mut TcpStream) -> Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: keep-alive\r\n\r\n")?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "closed by the peer");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .context("no content-length")?
        .trim()
        .parse()?;
    while data.len() < head_end + length {
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "closed inside the body");
        data.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&data[head_end..head_end + length])
        .trim()
        .to_owned())
}

#[test]
fn garbage_replayed_or_unauthenticated_replication_messages_change_nothing() -> Result<()> {
    let pair = FlowPair::start(
        &bin(),
        4,
        |rig| rig.start_nginx(),
        // The NAT service on the VIP's port 80 with every backend but the
        // last (added before the failover).
        |rig| {
            format!(
                "metrics = \"{METRICS}\"\n{}",
                flow_scenario::service(rig, "web", "tcp", 80, "nat")
            )
        },
    )?;
    let rig = &pair.rig;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;
    let mut connections = (0..BEFORE)
        .map(|_| KeepAlive::open(rig))
        .collect::<Result<Vec<_>>>()?;
    let start = settled(&pair)?;
    ensure!(
        start.table.len() > BEFORE,
        "lb2 holds {} flows, fewer than the connections",
        start.table.len()
    );
    let epoch = number(&start.lb2, "epoch")?;
    eprintln!(
        "lb2 holds {} flows of epoch {epoch}: {}",
        start.table.len(),
        start.lb2
    );

    let lb1_ns = &rig.nodes[0].ns;
    let lb2_ns = &rig.nodes[1].ns;
    let standby = SocketAddr::new(
        IpAddr::V4(rig.nodes[1].interconnects[0].v4),
        DEFAULT_REPLICATION_PORT,
    );
    let active = SocketAddr::new(
        IpAddr::V4(rig.nodes[0].interconnects[0].v4),
        DEFAULT_REPLICATION_PORT,
    );
    let bogus = bogus_flow(rig);
    // Would begin a new epoch with the bogus flow, if it were taken.
    let newer = &records(epoch + 1, 0, bogus);
    let cluster = Tls::load(&rig.dir().join("lb1/tls"), "lb1")?;
    let lb2_tls = Tls::load(&rig.dir().join("lb2/tls"), "lb2")?;
    let stranger = stranger(&pair)?;
    let no_cert = no_client_certificate(&rig.dir().join("lb1/tls/ca.pem"))?;

    // 1. Plain TCP: a framed message without TLS; a connection that says
    // nothing (closed when the handshake's time is up, 5 s).
    attack(
        &pair,
        "plain TCP",
        "lb2",
        &[("refused_connections", 1)],
        || {
            from_ns(lb1_ns, move || async move {
                let mut tcp = tokio::net::TcpStream::connect(standby).await?;
                send_then_closed(&mut tcp, &framed(newer), "plain TCP").await
            })
        },
    )?;
    attack(
        &pair,
        "a silent connection",
        "lb2",
        &[("refused_connections", 1)],
        || {
            from_ns(lb1_ns, move || async move {
                let mut tcp = tokio::net::TcpStream::connect(standby).await?;
                closed(&mut tcp, "a silent connection").await
            })
        },
    )?;

    // 2. TLS without a client certificate, and with one of another CA.
    attack(
        &pair,
        "TLS without a client certificate",
        "lb2",
        &[("refused_connections", 1)],
        || {
            from_ns(lb1_ns, move || {
                tls_refused(no_cert, standby, newer, "no client certificate")
            })
        },
    )?;
    attack(
        &pair,
        "TLS with another CA's certificate",
        "lb2",
        &[("refused_connections", 1)],
        || {
            from_ns(lb1_ns, move || {
                tls_refused(stranger.connector.clone(), standby, newer, "another CA")
            })
        },
    )?;

    // 3. The cluster's own certificate, frames that do not decode.
    let mut bad_record = message::encode(newer).unwrap();
    // The first record's protocol byte (type, epoch, seq, count, kind, family).
    bad_record[17 + 2 + 2] = 99;
    let mut oversized = vec![0xff; 4];
    oversized.extend(framed(newer));
    let garbage: [(&str, Vec<u8>); 4] = [
        ("an unknown message type", wire::frame(&[9, 9, 9])),
        (
            "a records message with a bad record",
            wire::frame(&bad_record),
        ),
        ("an oversized frame", oversized),
        ("an empty frame", vec![0; 4]),
    ];
    for (what, bytes) in &garbage {
        let cluster = &cluster;
        attack(&pair, what, "lb2", &[("garbage", 1)], || {
            from_ns(lb1_ns, move || async move {
                let (mut stream, _) =
                    wire::connect(cluster, &[standby], Duration::from_secs(5)).await?;
                send_then_closed(&mut stream, bytes, what).await
            })
        })?;
    }

    // 4. The cluster's own certificate, well-formed messages: on another
    // connection than the stream's, an applied sequence number of this
    // epoch replayed, the next one (which lb2 would apply at once, and take
    // the real one for a duplicate) and one ahead of the stream (which it
    // would hold, then apply in place of the real one); the previous epoch,
    // an epoch never used. The connection stays open (they are not
    // garbage). lb2 applied every message of its one epoch: the next is
    // their count.
    let next = number(&settled(&pair)?.lb2, "messages")?;
    let replays = [
        (
            "a replayed sequence number",
            records(epoch, 0, bogus),
            "foreign",
        ),
        (
            "the next sequence number",
            records(epoch, next, bogus),
            "foreign",
        ),
        (
            "a sequence number ahead",
            records(epoch, 1 << 20, bogus),
            "foreign",
        ),
        ("the previous epoch", records(epoch - 1, 0, bogus), "stale"),
        ("an epoch never used", records(1, 3, bogus), "stale"),
    ];
    for (what, replay, counter) in &replays {
        let cluster = &cluster;
        attack(&pair, what, "lb2", &[(counter, 1)], || {
            from_ns(lb1_ns, move || async move {
                let (mut stream, _) =
                    wire::connect(cluster, &[standby], Duration::from_secs(5)).await?;
                stream.write_all(&framed(replay)).await?;
                stream.flush().await?;
                // Long enough for lb2 to take it before the close.
                tokio::time::sleep(Duration::from_millis(300)).await;
                stream.shutdown().await?;
                Ok(())
            })
        })?;
    }

    // The active takes feedback only on the stream's own connection: a
    // resync request and a gap report of its epoch on another one (lb2's
    // certificate, from lb2's namespace) change nothing.
    let feedback: [(&str, FlowMessage); 2] = [
        (
            "a resync request on another connection",
            Message::ResyncRequest { epoch },
        ),
        (
            "a gap report on another connection",
            Message::Nack {
                epoch,
                from: 0,
                to: 1,
            },
        ),
    ];
    for (what, message) in &feedback {
        let lb2_tls = &lb2_tls;
        attack(&pair, what, "lb1", &[], || {
            from_ns(lb2_ns, move || async move {
                let (mut stream, _) =
                    wire::connect(lb2_tls, &[active], Duration::from_secs(5)).await?;
                stream.write_all(&framed(message)).await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                stream.shutdown().await?;
                Ok(())
            })
        })?;
    }

    // 5. The real stream still works. The connections still answer, from
    // the same backend (through lb1).
    for (i, connection) in connections.iter_mut().enumerate() {
        let again = get(&mut connection.stream).with_context(|| format!("connection {i}"))?;
        ensure!(
            again == connection.first,
            "connection {i}: answered by {}, then by {again}",
            connection.first
        );
    }
    // New connections reach lb2's table.
    let seen = settled(&pair)?;
    let flows = number(&seen.lb2, "flows")?;
    for _ in 0..AFTER {
        connections.push(KeepAlive::open(rig)?);
    }
    wait_for("lb2 holds the new flows", Duration::from_secs(10), || {
        flow_table(&pair.lb2).is_ok_and(|t| t.len() >= seen.table.len() + AFTER)
    })?;
    let now = settled(&pair)?;
    ensure!(
        number(&now.lb2, "flows")? >= flows + AFTER as u64,
        "lb2 counts fewer new flows than the connections: {}",
        now.lb2
    );
    ensure!(now.table.keys().all(|k| !is_bogus(k)));

    // A backend added (Maglev alone would move about a third of the flows
    // to it), then the failover: every connection answers again from the
    // same backend, through lb2.
    let added = rig.backends.last().context("backends")?;
    pair.add_backend(&format!("tcp/{VIP_V4}:80"), &format!("{}:80", added.v4))?;
    std::thread::sleep(Duration::from_millis(300));
    pair.failover()?;
    let mut broken = Vec::new();
    for (i, connection) in connections.iter_mut().enumerate() {
        match get(&mut connection.stream) {
            Ok(again) if again == connection.first => {}
            Ok(again) => broken.push(format!(
                "connection {i}: answered by {}, then by {again}",
                connection.first
            )),
            Err(err) => broken.push(format!("connection {i}: {err:#}")),
        }
    }
    ensure!(
        broken.is_empty(),
        "{} of {} connections broke after the failover:\n{}",
        broken.len(),
        connections.len(),
        broken.join("\n")
    );
    ensure!(replication(&pair.lb2)["stream"] == "sending");
    rig.curl(&format!("http://{VIP_V4}/"))
        .context("a new request through lb2")?;
    Ok(())
}
