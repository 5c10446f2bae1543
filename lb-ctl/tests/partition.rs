//! The pair under faults of its interconnects, with real daemons (two
//! `lb-ctl run` made by `lb-ctl cluster init`, in the namespaces of
//! [`PairNet`]): heartbeats lost fewer times in a row than the count, forged
//! and replayed heartbeats, a partition with both sides reaching the NP
//! target (dual-active) that heals, a partition with one side isolated,
//! both nodes restarted at once, and one interconnect of two cut.
//!
//! Faults are made inside the nodes' namespaces only: nftables rules in a
//! table of their own there ([`drop_in`]), links set down there, datagrams
//! sent from there. One pair at a time ([`SERIAL`]): four daemons on a
//! shared machine's two cores would bend the heartbeat timing these tests
//! are about.
use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_ctl::cluster::{
    Role,
    config::DEFAULT_HEARTBEAT_PORT,
    heartbeat::{self, Heartbeat, Key, Keyring, WIRE_LEN},
};
use lb_tests::{
    capture,
    daemon::DaemonProcess,
    netns::Netns,
    pair::{PairNet, PlanExtras},
    wait::{holds_for, wait_for},
};
use serde_json::Value;

/// One pair at a time in this file.
static SERIAL: Mutex<()> = Mutex::new(());

/// The nftables table the tests' rules go in (in a node's namespace).
const TABLE: &str = "lbtest";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// Two daemons on their network, lb1 active and lb2 standby once started.
/// The daemons go first on drop, then the namespaces.
struct Pair {
    daemons: [DaemonProcess; 2],
    net: PairNet,
    scratch: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Pair {
    fn start(extras: &PlanExtras) -> Result<Self> {
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let net = PairNet::build()?;
        let scratch = tempfile::tempdir()?;
        let daemons = net.start_daemons(&bin(), scratch.path(), extras)?;
        let pair = Pair {
            daemons,
            net,
            scratch,
            _serial: serial,
        };
        wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
            pair.roles() == ["active", "standby"]
        })
        .with_context(|| pair.describe())?;
        Ok(pair)
    }

    /// Both nodes' roles (empty: no answer).
    fn roles(&self) -> [String; 2] {
        [0, 1].map(|i| self.daemons[i].cluster_role().unwrap_or_default())
    }

    /// Node `i`'s `cluster` section of `lb-ctl --json status`.
    fn cluster(&self, i: usize) -> Value {
        self.daemons[i]
            .status_json()
            .map(|s| s["cluster"].clone())
            .unwrap_or_default()
    }

    /// Each interconnect and whether node `i` reports it up.
    fn links(&self, i: usize) -> Vec<(String, bool)> {
        serde_json::from_value(self.cluster(i)["links"].clone()).unwrap_or_default()
    }

    /// The heartbeats node `i` refused, by reason.
    fn refused(&self, i: usize) -> BTreeMap<String, u64> {
        let list: Vec<(String, u64)> =
            serde_json::from_value(self.cluster(i)["refused"].clone()).unwrap_or_default();
        list.into_iter().collect()
    }

    /// Node `active` serves and holds the floating IP, the other is
    /// standby without it.
    fn serving(&self, active: usize) -> bool {
        let mut want = ["standby"; 2];
        want[active] = "active";
        self.roles() == want && self.net.holds_fip(active) && !self.net.holds_fip(1 - active)
    }

    /// Checks that node `active` serves all along `period`.
    fn keeps_serving(&self, active: usize, period: Duration) -> Result<()> {
        holds_for(
            &format!("lb{} serves alone", active + 1),
            period,
            || self.serving(active),
            || self.describe(),
        )
    }

    /// Both nodes' roles, floating IP, interconnects, last change and alerts.
    fn describe(&self) -> String {
        [0, 1]
            .map(|i| {
                let cluster = self.cluster(i);
                format!(
                    "lb{}: role {}, holds the floating IP: {}, links {}, last change {}, alerts {:?}",
                    i + 1,
                    cluster["role"],
                    self.net.holds_fip(i),
                    cluster["links"],
                    cluster["last_change"],
                    self.daemons[i].alert_events(),
                )
            })
            .join("\n")
    }

    /// The cluster id `cluster init` made (in both nodes' configuration).
    fn cluster_id(&self) -> Result<[u8; 16]> {
        let text = std::fs::read_to_string(self.scratch.path().join("lb1/lb.toml"))?;
        let config: toml::Table = toml::from_str(&text)?;
        let id = config["cluster"]["id"].as_str().context("cluster.id")?;
        let bytes: Vec<u8> = (0..id.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&id[i..i + 2], 16))
            .collect::<Result<_, _>>()?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("cluster.id {id} is not 16 bytes"))
    }
}

/// Loads `rules` into the input hook of `ns` (table [`TABLE`], replacing
/// what the tests put there before).
fn drop_in(ns: &Netns, rules: &[&str]) -> Result<()> {
    let _ = lift(ns);
    ns.nft(&format!(
        "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    {}\n  }}\n}}\n",
        rules.join("\n    ")
    ))
}

/// Removes the tests' rules from `ns`.
fn lift(ns: &Netns) -> Result<()> {
    ns.nft(&format!("delete table inet {TABLE}\n"))
}

/// The packets each rule of [`TABLE`] in `ns` counted, in rule order.
fn counters(ns: &Netns) -> Result<Vec<u64>> {
    let out = ns.exec("nft", ["-j", "list", "table", "inet", TABLE])?;
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    let rules = listing["nftables"]
        .as_array()
        .context("nft -j: no nftables array")?
        .iter()
        .filter_map(|item| item.get("rule"));
    Ok(rules
        .map(|rule| {
            rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .unwrap_or(0)
        })
        .collect())
}

/// Sends `datagrams` from `from` (an address of `ns`, any port) to `to`.
fn send_from(ns: &Netns, from: &str, to: SocketAddr, datagrams: &[Vec<u8>]) -> Result<()> {
    let from: SocketAddr = format!("{from}:0").parse()?;
    ns.run_in(|| {
        let socket = UdpSocket::bind(from)?;
        for datagram in datagrams {
            socket.send_to(datagram, to)?;
            // Not faster than a peer would: no burst for a queue to drop.
            thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
}

/// The role-change alerts `daemon` logged so far (a takeover or a
/// step-down, whatever the reason).
fn role_changes(daemon: &DaemonProcess) -> Vec<String> {
    const ROLE_EVENTS: [&str; 6] = [
        "failover",
        "cluster_active",
        "cluster_standby",
        "dual_active_resolved",
        "isolated",
        "group_moved",
    ];
    daemon
        .alert_events()
        .into_iter()
        .filter(|e| ROLE_EVENTS.contains(&e.as_str()))
        .collect()
}

#[test]
fn heartbeats_lost_fewer_times_in_a_row_than_the_count_move_nothing() -> Result<()> {
    let pair = Pair::start(&PlanExtras::default())?;
    let before = [0, 1].map(|i| role_changes(&pair.daemons[i]));
    // How far apart lb1's heartbeats come (printed: the margin below
    // assumes one interval).
    let beats = capture::udp(
        pair.net.node(1),
        "hb0",
        &format!("udp dst port {DEFAULT_HEARTBEAT_PORT} and src host 198.18.8.1"),
        51,
        Duration::from_secs(5),
        &pair.scratch.path().join("hb0.pcap"),
    )?;
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1].at - w[0].at).collect();
    let four: Vec<Duration> = gaps.windows(4).map(|w| w.iter().sum()).collect();
    eprintln!(
        "lb1's heartbeats on hb0: {} in {:?}, gaps {:?} to {:?}, four in a row up to {:?}",
        beats.len(),
        beats[beats.len() - 1].at - beats[0].at,
        gaps.iter().min(),
        gaps.iter().max(),
        four.iter().max(),
    );
    // The defaults (lb-ctl/src/cluster/config.rs): a heartbeat every 40 ms
    // on every interconnect, the peer lost after 5 missed on all of them,
    // a dead time of 5 x 40 = 200 ms. Each node drops 3 of every 4
    // heartbeats that arrive on each interconnect at the heartbeat port
    // (29101 by default; a counter of its own per rule, so the same share
    // on both), 3 lost in a row where 5 are needed: the longest silence on
    // an interconnect is 4 intervals, 160 ms, one interval (40 ms) under
    // the dead time. That margin covers a beat sent late (the sender's
    // timer, measured above: 38 to 42 ms apart, four in a row up to
    // 162 ms) and the receiver's reading (its loop wakes every 10 ms).
    // On top of that hb1 loses half of what is left at random: the peer
    // stays alive through hb0 alone.
    let rules = [
        "iifname \"hb0\" udp dport 29101 counter",
        "iifname \"hb0\" udp dport 29101 numgen inc mod 4 < 3 counter drop",
        "iifname \"hb1\" udp dport 29101 counter",
        "iifname \"hb1\" udp dport 29101 numgen inc mod 4 < 3 counter drop",
        "iifname \"hb1\" udp dport 29101 numgen random mod 2 == 0 counter drop",
    ];
    for ns in pair.net.nodes() {
        drop_in(ns, &rules)?;
    }
    let started = Instant::now();
    let held = pair.keeps_serving(0, Duration::from_secs(5));
    let counted = [counters(pair.net.node(0))?, counters(pair.net.node(1))?];
    for ns in pair.net.nodes() {
        lift(ns)?;
    }
    held?;
    eprintln!(
        "lb1 served alone for {:?} of lossy interconnects; rule counters lb1 {:?}, lb2 {:?}",
        started.elapsed(),
        counted[0],
        counted[1]
    );
    for (i, counts) in counted.iter().enumerate() {
        let [hb0, hb0_dropped, hb1, hb1_dropped, hb1_random] = counts[..] else {
            bail!("lb{}: rules {counts:?}", i + 1);
        };
        // 5 s of heartbeats every 40 ms: about 125 on each interconnect.
        ensure!(
            hb0 > 60 && hb1 > 60,
            "lb{}: too few heartbeats {counts:?}",
            i + 1
        );
        // Exactly 3 of every 4 dropped, give or take the cycle in progress.
        ensure!(
            hb0_dropped.abs_diff(hb0 * 3 / 4) <= 3,
            "lb{}: {counts:?}",
            i + 1
        );
        ensure!(
            hb1_dropped.abs_diff(hb1 * 3 / 4) <= 3,
            "lb{}: {counts:?}",
            i + 1
        );
        ensure!(hb1_random > 0, "lb{}: {counts:?}", i + 1);
    }
    for (i, daemon) in pair.daemons.iter().enumerate() {
        assert_eq!(
            role_changes(daemon),
            before[i],
            "lb{} changed role:\n{}",
            i + 1,
            pair.describe()
        );
    }
    pair.keeps_serving(0, Duration::from_millis(500))?;
    Ok(())
}

#[test]
fn forged_and_replayed_heartbeats_are_refused_counted_and_move_nothing() -> Result<()> {
    // lb2 is the configured survivor: lb1, active, would step down for an
    // authentic heartbeat saying lb2 is active too.
    let pair = Pair::start(&PlanExtras {
        cluster_keys: "survivor = \"lb2\"\n",
        ..PlanExtras::default()
    })?;
    let before = [0, 1].map(|i| role_changes(&pair.daemons[i]));
    let [n1, n2] = pair.net.nodes();
    let port = DEFAULT_HEARTBEAT_PORT;
    let to_lb1: SocketAddr = format!("198.18.8.1:{port}").parse()?;
    let to_lb2: SocketAddr = format!("198.18.8.2:{port}").parse()?;

    // Real heartbeats of lb1 to lb2 on hb0, captured on the wire.
    let captured = capture::udp(
        n2,
        "hb0",
        &format!("udp dst port {port} and src host 198.18.8.1"),
        4,
        Duration::from_secs(3),
        &pair.scratch.path().join("hb0.pcap"),
    )?;
    let gaps: Vec<Duration> = captured.windows(2).map(|w| w[1].at - w[0].at).collect();
    eprintln!("lb1's heartbeats on hb0 came {gaps:?} apart");
    assert!(captured.iter().all(|d| d.payload.len() == WIRE_LEN));
    assert_eq!(pair.refused(0), BTreeMap::new(), "{}", pair.describe());
    assert_eq!(pair.refused(1), BTreeMap::new(), "{}", pair.describe());

    // (a) Garbage from lb1's address: too short, and a heartbeat's length
    // without its magic.
    let garbage = [b"lb2, step up".to_vec(), vec![0xa5; WIRE_LEN]];
    for _ in 0..5 {
        send_from(n1, "198.18.8.1", to_lb2, &garbage)?;
    }

    // (b) Heartbeats sealed with a key of the same id but another secret:
    // to lb1 from lb2's address, "lb2 is active" (lb2 is the survivor);
    // to lb2 from lb1's address, "lb1 is standby and yields" (lb2 would
    // take the group). Sequence numbers far ahead of the real ones.
    let wrong = Keyring::new(
        vec![Key {
            id: 1,
            secret: vec![0x5a; 32],
        }],
        1,
    )?;
    let cluster = pair.cluster_id()?;
    let forged = |node: u8, role: Role, yielding: bool| Heartbeat {
        cluster,
        node,
        link: 0,
        seq: u64::MAX / 2,
        role,
        healthy: true,
        eligible: true,
        yielding,
        stopped: false,
        monitors: 0,
        generation: 0,
        settings_hash: [0; 32],
    };
    let as_lb2 = heartbeat::seal(&forged(1, Role::Active, false), &wrong).to_vec();
    let as_lb1 = heartbeat::seal(&forged(0, Role::Standby, true), &wrong).to_vec();
    send_from(n2, "198.18.8.2", to_lb1, &vec![as_lb2; 5])?;
    send_from(n1, "198.18.8.1", to_lb2, &vec![as_lb1; 5])?;

    // (c) The captured heartbeats again, later, from lb1's address.
    thread::sleep(Duration::from_millis(500));
    let replayed: Vec<Vec<u8>> = captured.into_iter().map(|d| d.payload).collect();
    send_from(n1, "198.18.8.1", to_lb2, &replayed)?;

    let want_lb1 = BTreeMap::from([("bad_mac".to_owned(), 5)]);
    let want_lb2 = BTreeMap::from([
        ("bad_mac".to_owned(), 5),
        ("length".to_owned(), 5),
        ("magic".to_owned(), 5),
        ("replayed".to_owned(), 4),
    ]);
    wait_for("every forgery counted", Duration::from_secs(2), || {
        pair.refused(0) == want_lb1 && pair.refused(1) == want_lb2
    })
    .with_context(|| format!("lb1 {:?}, lb2 {:?}", pair.refused(0), pair.refused(1)))?;
    pair.keeps_serving(0, Duration::from_secs(1))?;
    for (i, daemon) in pair.daemons.iter().enumerate() {
        assert_eq!(role_changes(daemon), before[i], "{}", pair.describe());
    }
    let status = pair.daemons[1].ctl().arg("status").output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("heartbeats refused") && text.contains("replayed 4"),
        "{text}"
    );
    Ok(())
}

/// Every datagram that arrives on an interconnect is dropped (heartbeats
/// and the settings sync): the interconnects are cut, the links stay up.
const CUT_INTERCONNECTS: &str = "iifname { \"hb0\", \"hb1\" } counter drop";
/// ...and what arrives on the client segment too: the node reaches no NP
/// target (its pings get no answer).
const CUT_EVERYTHING: &str = "iifname { \"hb0\", \"hb1\", \"ext0\" } counter drop";

#[test]
fn a_partition_with_both_sides_reaching_np_heals_to_the_configured_survivor() -> Result<()> {
    // lb2 is the survivor: after the partition it keeps the group that lb1
    // held before (the configuration decides, not who served first).
    let pair = Pair::start(&PlanExtras {
        cluster_keys: "survivor = \"lb2\"\n",
        ..PlanExtras::default()
    })?;
    let mac2 = pair.net.mac(1);
    let before = [0, 1].map(|i| pair.daemons[i].alert_events().len());

    // Every interconnect cut, both nodes reach the client: lb2 takes over
    // and lb1 stays active: dual-active, both hold the floating IP.
    for ns in pair.net.nodes() {
        drop_in(ns, &[CUT_INTERCONNECTS])?;
    }
    wait_for("both active", Duration::from_secs(5), || {
        pair.roles() == ["active", "active"] && pair.net.holds_fip(0) && pair.net.holds_fip(1)
    })
    .with_context(|| pair.describe())?;
    assert!(
        pair.daemons[1].alert_events()[before[1]..].contains(&"failover".to_owned()),
        "{}",
        pair.describe()
    );

    // Healed: lb1 steps down, lb2 never does; never both standby. Read
    // through the floating IP (cheaper to read often than the status).
    let healed = Instant::now();
    for ns in pair.net.nodes() {
        lift(ns)?;
    }
    let mut seen = Vec::new();
    wait_for(
        "lb1 gives the floating IP up",
        Duration::from_secs(2),
        || {
            let held = [pair.net.holds_fip(0), pair.net.holds_fip(1)];
            seen.push(held);
            !held[0]
        },
    )
    .with_context(|| pair.describe())?;
    eprintln!(
        "dual-active resolved within {:?} of the heal ({} readings)",
        healed.elapsed(),
        seen.len()
    );
    assert!(
        seen.iter().all(|held| held[1]),
        "the survivor gave the floating IP up: {seen:?}"
    );
    wait_for("lb1 standby, lb2 active", Duration::from_secs(2), || {
        pair.roles() == ["standby", "active"]
    })
    .with_context(|| pair.describe())?;
    pair.keeps_serving(1, Duration::from_secs(1))?;
    let events = [0, 1].map(|i| pair.daemons[i].alert_events()[before[i]..].to_vec());
    assert!(
        events[0].contains(&"dual_active_resolved".to_owned()),
        "{}",
        pair.describe()
    );
    assert!(
        !events[1]
            .iter()
            .any(|e| ["cluster_standby", "dual_active_resolved", "isolated"].contains(&e.as_str())),
        "{}",
        pair.describe()
    );
    // Exactly one node answers ARP for the floating IP: the survivor.
    assert_eq!(pair.net.arp_answers()?, std::slice::from_ref(&mac2));
    assert_eq!(pair.net.client_resolves_fip(), Some(mac2));
    Ok(())
}

#[test]
fn a_partition_with_np_reachable_from_one_side_leaves_the_isolated_node_standby() -> Result<()> {
    let pair = Pair::start(&PlanExtras::default())?;
    let [n1, n2] = pair.net.nodes();
    let before = [0, 1].map(|i| role_changes(&pair.daemons[i]));

    // The standby isolated (interconnects and client segment), the active
    // hears nothing on the interconnects but reaches the client: nothing
    // moves.
    drop_in(n1, &[CUT_INTERCONNECTS])?;
    drop_in(n2, &[CUT_EVERYTHING])?;
    wait_for(
        "the peer lost on both sides",
        Duration::from_secs(2),
        || pair.links(0).iter().all(|(_, up)| !up) && pair.links(1).iter().all(|(_, up)| !up),
    )
    .with_context(|| pair.describe())?;
    let held = pair.keeps_serving(0, Duration::from_secs(3));
    let dropped = [counters(n1)?, counters(n2)?];
    lift(n1)?;
    lift(n2)?;
    held?;
    assert!(dropped.iter().all(|c| c[0] > 0), "{dropped:?}");
    for (i, daemon) in pair.daemons.iter().enumerate() {
        assert_eq!(role_changes(daemon), before[i], "{}", pair.describe());
    }
    wait_for(
        "lb1 and lb2 hear each other",
        Duration::from_secs(2),
        || pair.links(0).iter().all(|(_, up)| *up) && pair.links(1).iter().all(|(_, up)| *up),
    )?;
    pair.keeps_serving(0, Duration::from_millis(500))?;

    // The active isolated: it steps down and gives the floating IP up, the
    // standby (reaching the client) takes over.
    drop_in(n1, &[CUT_EVERYTHING])?;
    drop_in(n2, &[CUT_INTERCONNECTS])?;
    let moved = wait_for("lb2 serves alone", Duration::from_secs(5), || {
        pair.serving(1)
    });
    let events = [0, 1].map(|i| pair.daemons[i].alert_events());
    lift(n1)?;
    lift(n2)?;
    moved.with_context(|| pair.describe())?;
    assert!(events[0].contains(&"isolated".to_owned()), "{events:?}");
    assert!(events[1].contains(&"failover".to_owned()), "{events:?}");
    // Healed: lb2 keeps the group (no automatic failback).
    wait_for("lb1 hears lb2 again", Duration::from_secs(2), || {
        pair.links(0).iter().all(|(_, up)| *up)
    })?;
    pair.keeps_serving(1, Duration::from_secs(1))?;
    assert_eq!(pair.net.arp_answers()?, [pair.net.mac(1)]);
    Ok(())
}

#[test]
fn both_nodes_restarted_at_once_end_with_one_active_holding_the_group() -> Result<()> {
    let mut pair = Pair::start(&PlanExtras::default())?;
    for round in 1..=2 {
        let before = [0, 1].map(|i| pair.daemons[i].alert_events().len());
        for daemon in &mut pair.daemons {
            daemon.kill9();
        }
        // Both started at the same moment, each waited for on a thread.
        let Pair { daemons, net, .. } = &mut pair;
        let started = thread::scope(|scope| {
            let waits: Vec<_> = daemons
                .iter_mut()
                .zip(net.nodes())
                .map(|(daemon, ns)| scope.spawn(move || daemon.restart(ns)))
                .collect();
            waits
                .into_iter()
                .map(|w| w.join().expect("a restart panicked"))
                .collect::<Result<Vec<()>>>()
        });
        started?;
        wait_for(
            "one active, the other standby",
            Duration::from_secs(5),
            || pair.serving(0) || pair.serving(1),
        )
        .with_context(|| pair.describe())?;
        let active = usize::from(!pair.serving(0));
        pair.keeps_serving(active, Duration::from_secs(2))?;
        // One took the group; not both, one then stepping down.
        for (i, daemon) in pair.daemons.iter().enumerate() {
            let events = &daemon.alert_events()[before[i]..];
            assert!(
                !events.contains(&"dual_active_resolved".to_owned()),
                "{}",
                pair.describe()
            );
        }
        assert_eq!(pair.net.arp_answers()?, [pair.net.mac(active)]);
        eprintln!("round {round}: lb{} active", active + 1);
    }
    Ok(())
}

#[test]
fn one_interconnect_cut_moves_nothing_and_shows_down() -> Result<()> {
    let pair = Pair::start(&PlanExtras::default())?;
    let before = [0, 1].map(|i| role_changes(&pair.daemons[i]));
    let links = |hb0: bool| vec![("hb0".to_owned(), hb0), ("hb1".to_owned(), true)];
    for cut in ["hb0", "hb1"] {
        // The veth's carrier goes with it: cut on both sides.
        pair.net.node(0).ip(["link", "set", cut, "down"])?;
        let want = |i: usize| -> bool {
            let got = pair.links(i);
            got.iter().all(|(name, up)| *up == (name != cut)) && got.len() == 2
        };
        let shown = wait_for(
            &format!("{cut} reported down"),
            Duration::from_secs(2),
            || want(0) && want(1),
        )
        .with_context(|| pair.describe());
        let held = shown.and_then(|_| pair.keeps_serving(0, Duration::from_secs(3)));
        let text = pair.daemons[1].ctl().arg("status").output();
        pair.net.node(0).ip(["link", "set", cut, "up"])?;
        held?;
        assert!(
            shows_down(&text?.stdout, cut),
            "lb2's status does not show {cut} down"
        );
        wait_for(
            "both interconnects up again",
            Duration::from_secs(3),
            || pair.links(0) == links(true) && pair.links(1) == links(true),
        )
        .with_context(|| pair.describe())?;
    }
    for (i, daemon) in pair.daemons.iter().enumerate() {
        assert_eq!(role_changes(daemon), before[i], "{}", pair.describe());
    }
    Ok(())
}

/// `lb-ctl status` shows interconnect `name` down.
fn shows_down(status: &[u8], name: &str) -> bool {
    String::from_utf8_lossy(status)
        .lines()
        .any(|line| line.contains(&format!("interconnect {name}")) && line.contains("down"))
}
