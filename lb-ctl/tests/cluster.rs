//! The pair with real daemons: `lb-ctl cluster init` writes both nodes'
//! files, two `lb-ctl run` hold the floating IP between them. A `kill -9`
//! of the active daemon leaves its node fenced (its kernel still has the
//! address, the program answers nothing for it) while the peer serves;
//! restart, manual failover and a clean stop move the group as documented.
//! The whole pair rig (client, two nodes, nginx backends behind the floating
//! gateway) keeps the VIP answering through failover and kill -9.
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_tests::{
    daemon::{DaemonProcess, NodeFiles},
    pair::{PairNet, PlanExtras},
    rig::{NODES, Rig, RigOptions, VIP_V4, VIP_V6},
    wait::{holds_for, wait_for},
};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// lb1's metrics on its first interconnect address.
const LB1_METRICS: PlanExtras = PlanExtras {
    cluster_keys: "",
    cluster_tables: "",
    node_keys: ["metrics = \"198.18.8.1:9650\"\n", ""],
};

/// The metrics of [`LB1_METRICS`], and a stall monitor on both nodes (both
/// event loops must answer within a second).
const WATCHED: PlanExtras = PlanExtras {
    cluster_keys: "",
    cluster_tables: "\n[[cluster.monitors]]\nname = \"stall\"\nkind = \"stall\"\ninterval_ms = 200\ntimeout_ms = 1000\n",
    node_keys: LB1_METRICS.node_keys,
};

/// `cluster init` from the network's plan into `dir`, then both daemons.
fn start_pair(net: &PairNet, dir: &Path) -> Result<(DaemonProcess, DaemonProcess)> {
    let [lb1, lb2] = net.start_daemons(&bin(), dir, &LB1_METRICS)?;
    Ok((lb1, lb2))
}

#[test]
fn a_killed_active_is_fenced_while_the_peer_serves_and_the_group_moves_on_request() -> Result<()> {
    let net = PairNet::build()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let (mut lb1, lb2) = start_pair(&net, dir)?;
    let (mac1, mac2) = (net.mac(0), net.mac(1));

    // The first server is elected; the client reaches it at the floating IP.
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    assert!(net.holds_fip(0) && !net.holds_fip(1));
    assert_eq!(net.client_resolves_fip(), Some(mac1.clone()));
    assert_eq!(net.arp_answers()?, std::slice::from_ref(&mac1));
    let status = lb1.ctl().arg("status").output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("cluster role") && text.contains("interconnect hb1"),
        "{text}"
    );

    // kill -9 of the active daemon: lb2 takes over; lb1's kernel still has
    // the address, but its program, fenced, answers nothing for it.
    lb1.kill9();
    wait_for("lb2 active", Duration::from_secs(3), || {
        lb2.cluster_role().as_deref() == Some("active")
    })?;
    assert!(
        net.holds_fip(0),
        "the killed node's kernel keeps the address"
    );
    assert_eq!(
        net.arp_answers()?,
        std::slice::from_ref(&mac2),
        "only lb2 answers ARP"
    );
    for _ in 0..3 {
        assert_eq!(net.client_resolves_fip(), Some(mac2.clone()));
    }
    assert!(lb2.alerts().contains("\"failover\""), "{}", lb2.alerts());
    let takeovers = &cluster_status(&lb2)["takeovers"];
    assert_eq!(takeovers["count"], 1, "{takeovers}");
    assert!(takeovers["last_unix"].as_u64().is_some(), "{takeovers}");

    // lb1 comes back: standby (no automatic failback), the address gone.
    lb1.restart(net.node(0))?;
    wait_for(
        "lb1 standby without the address",
        Duration::from_secs(5),
        || lb1.cluster_role().as_deref() == Some("standby") && !net.holds_fip(0),
    )?;
    assert_eq!(lb2.cluster_role().as_deref(), Some("active"));

    // Failover on request, from the active.
    let refused = lb1.ctl().arg("failover").output()?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("this node is not active"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A requested failback waits for lb1 to catch up with lb2's flows
    // (and for lb2 to hear it).
    wait_for("lb1 caught up", Duration::from_secs(5), || {
        lb1.replication_caught_up() && lb2.peer_eligible()
    })?;
    lb2.ctl_ok(&["failback"])?;
    wait_for("lb1 active again", Duration::from_secs(3), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    wait_for("the client reaches lb1", Duration::from_secs(3), || {
        net.client_resolves_fip() == Some(mac1.clone())
    })?;

    // A clean stop of the active: it yields, lb2 takes over.
    lb1.terminate()?.context("lb1 was running")?;
    wait_for(
        "lb2 active after lb1 stopped",
        Duration::from_secs(3),
        || lb2.cluster_role().as_deref() == Some("active"),
    )?;
    assert!(!net.holds_fip(0), "a clean stop gives the address up");
    assert_eq!(net.client_resolves_fip(), Some(mac2));
    drop(lb2);
    Ok(())
}

/// The settings (generation, hash) a node reports, and those of its peer.
fn settings(daemon: &DaemonProcess) -> Option<(Value, Value)> {
    let status = daemon.status_json()?;
    Some((
        status["cluster"]["settings"].clone(),
        status["cluster"]["peer_settings"].clone(),
    ))
}

fn services(daemon: &DaemonProcess) -> Result<Value> {
    let out = daemon.ctl().args(["config", "export"]).output()?;
    let config: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    let services = config
        .get("services")
        .cloned()
        .unwrap_or(toml::Value::Array(vec![]));
    Ok(serde_json::to_value(services)?)
}

/// lb1's metrics, from inside its namespace.
fn lb1_metrics(net: &PairNet) -> String {
    net.node(0)
        .exec(
            "curl",
            ["-s", "--max-time", "2", "http://198.18.8.1:9650/metrics"],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn status_text(daemon: &DaemonProcess) -> String {
    daemon
        .ctl()
        .arg("status")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn settings_changed_on_the_active_reach_the_standby_and_a_missed_push_shows_until_sync()
-> Result<()> {
    let net = PairNet::build()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let [lb1, mut lb2] = net.start_daemons(&bin(), dir, &WATCHED)?;
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    // Both loops of both daemons answer: the stall monitor stays normal
    // (over more than its timeout).
    let stall_normal = || {
        [&lb1, &lb2].iter().all(|d| {
            d.status_json().is_some_and(|s| {
                s["cluster"]["monitors"] == serde_json::json!([["stall", "normal"]])
            })
        })
    };
    holds_for(
        "the stall monitors normal",
        Duration::from_millis(1500),
        stall_normal,
        || format!("{:?} {:?}", lb1.status_json(), lb2.status_json()),
    )?;
    // Each node shows the peer's monitors too, from its heartbeats.
    let status = lb1.status_json().context("lb1 status")?;
    assert_eq!(
        status["cluster"]["peer_monitors"],
        serde_json::json!([["stall", "normal"]]),
        "{status}"
    );
    assert!(
        status_text(&lb1).contains("lb1 normal, lb2 normal"),
        "{}",
        status_text(&lb1)
    );

    // A change on the active reaches the standby: same services, same
    // generation and hash on both, seen in each other's heartbeats.
    lb1.ctl_ok(&["service", "add", "tcp/198.18.0.100:80"])?;
    wait_for(
        "lb2 holds lb1's settings",
        Duration::from_secs(5),
        || match (settings(&lb1), settings(&lb2)) {
            (Some((mine, peer)), Some((theirs, _))) => {
                mine == theirs && peer == mine && mine[0] == 1
            }
            _ => false,
        },
    )?;
    assert_eq!(services(&lb2)?, services(&lb1)?);
    assert_eq!(services(&lb2)?[0]["vip"], "198.18.0.100");
    assert!(
        status_text(&lb1).contains("synchronized (generation 1)"),
        "{}",
        status_text(&lb1)
    );

    // The standby refuses a change, naming the active, and keeps its
    // settings; so it does `lb-ctl sync`.
    let refused = lb2.ctl_refused(&["service", "add", "tcp/198.18.0.101:80"])?;
    assert!(
        refused.contains("this node is standby: change the settings on the active node (lb1)"),
        "{refused}"
    );
    let refused = lb2.ctl_refused(&["sync"])?;
    assert!(refused.contains("active node (lb1)"), "{refused}");
    assert_eq!(services(&lb2)?, services(&lb1)?);

    // The standby is down: the change applies on the active, which says it
    // is not synchronized, in status and in the alert log.
    lb2.kill9();
    lb1.ctl_ok(&["service", "del", "tcp/198.18.0.100:80"])?;
    assert_eq!(services(&lb1)?, Value::Array(vec![]));
    wait_for("lb1 not synchronized", Duration::from_secs(5), || {
        status_text(&lb1).contains("not synchronized")
    })?;
    assert!(lb1.alerts().contains("\"sync_failed\""), "{}", lb1.alerts());
    assert!(
        lb1_metrics(&net).contains("lb_cluster_settings_synchronized 0"),
        "{}",
        lb1_metrics(&net)
    );

    // Back, the standby still holds generation 1 (its heartbeats show the
    // drift) until `lb-ctl sync` on the active.
    lb2.restart(net.node(1))?;
    wait_for("lb2 standby again", Duration::from_secs(5), || {
        lb2.cluster_role().as_deref() == Some("standby")
    })?;
    assert_eq!(settings(&lb2).context("lb2 status")?.0[0], 1);
    assert!(status_text(&lb1).contains("not synchronized"));
    lb1.ctl_ok(&["sync"])?;
    wait_for("both at generation 2", Duration::from_secs(5), || {
        match (settings(&lb1), settings(&lb2)) {
            (Some((mine, peer)), Some((theirs, _))) => {
                mine == theirs && peer == mine && mine[0] == 2
            }
            _ => false,
        }
    })?;
    assert_eq!(services(&lb2)?, Value::Array(vec![]));
    assert!(
        status_text(&lb1).contains("synchronized (generation 2)"),
        "{}",
        status_text(&lb1)
    );
    assert!(
        lb1.alerts().contains("\"sync_recovered\""),
        "{}",
        lb1.alerts()
    );
    assert!(
        lb1_metrics(&net).contains("lb_cluster_settings_synchronized 1"),
        "{}",
        lb1_metrics(&net)
    );

    let metrics = lb1_metrics(&net);
    for want in [
        "lb_cluster_active 1",
        "lb_cluster_peer_alive 1",
        "lb_cluster_interconnect_up{interconnect=\"hb0\"} 1",
        "# TYPE lb_cluster_heartbeats_refused_total counter",
    ] {
        assert!(metrics.contains(want), "{want} missing from:\n{metrics}");
    }

    // The first interconnect cut: the next change goes over the second.
    net.node(1).ip(["link", "set", "hb0", "down"])?;
    wait_for("hb0 down in the metrics", Duration::from_secs(3), || {
        lb1_metrics(&net).contains("lb_cluster_interconnect_up{interconnect=\"hb0\"} 0")
    })?;
    lb1.ctl_ok(&["service", "add", "tcp/198.18.0.102:80"])?;
    wait_for(
        "generation 3 on lb2 over hb1",
        Duration::from_secs(10),
        || match (settings(&lb1), settings(&lb2)) {
            (Some((mine, _)), Some((theirs, _))) => mine == theirs && mine[0] == 3,
            _ => false,
        },
    )?;
    assert_eq!(services(&lb2)?, services(&lb1)?);
    assert!(
        status_text(&lb1).contains("synchronized (generation 3)"),
        "{}",
        status_text(&lb1)
    );
    net.node(1).ip(["link", "set", "hb0", "up"])?;
    Ok(())
}

/// The plan of the pair rig with a NAT service over its backends per
/// address family.
fn rig_plan(rig: &Rig, dir: &Path, files: &[NodeFiles; 2]) -> String {
    let mut plan = rig.cluster_plan(dir, files);
    for (name, vip, v6) in [
        ("web", VIP_V4.to_string(), false),
        ("web6", VIP_V6.to_string(), true),
    ] {
        plan.push_str(&format!(
            "\n[[services]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n"
        ));
        for backend in &rig.backends {
            let address = if v6 {
                format!("[{}]:80", backend.v6)
            } else {
                format!("{}:80", backend.v4)
            };
            plan.push_str(&format!(
                "\n[[services.backends]]\naddress = \"{address}\"\n"
            ));
        }
    }
    plan
}

/// The client reaches a backend through the VIP (NAT: the backend answers
/// through the floating gateway), within `limit` (the client and the
/// backends may still have the old node's MAC while it moves).
fn vip_answers(rig: &Rig, limit: Duration) -> Result<()> {
    let names: Vec<String> = rig.backends.iter().map(|b| b.name.clone()).collect();
    for url in [format!("http://{VIP_V4}/"), format!("http://[{VIP_V6}]/")] {
        wait_for(&format!("curl {url}"), limit, || {
            rig.curl(&url)
                .is_ok_and(|body| names.contains(&body.trim().to_owned()))
        })?;
        // And it keeps answering.
        for _ in 0..5 {
            let body = rig.curl(&url)?;
            assert!(names.contains(&body.trim().to_owned()), "{url}: {body}");
        }
    }
    Ok(())
}

/// Exactly node `active` answers ARP and neighbour solicitations for the
/// VIPs (a stale standby answering is the classic outage after a
/// failover).
fn only_answers(rig: &Rig, active: usize) -> Result<()> {
    let mac = rig.nodes[active].ext_mac();
    for vip in [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)] {
        let answers = rig.neighbour_answers(vip)?;
        if answers != [mac.clone()] {
            bail!(
                "{vip}: answered by {answers:?}, only {} ({mac}) expected",
                rig.nodes[active].name
            );
        }
    }
    Ok(())
}

/// The pair rig with nginx backends and both daemons started from `cluster
/// init`, lb1 active and the VIP answering.
fn start_rig_pair() -> Result<(Rig, DaemonProcess, DaemonProcess)> {
    let mut rig = Rig::build(&RigOptions {
        pair: true,
        ..Default::default()
    })?;
    rig.start_nginx()?;
    let dir = rig.dir().to_owned();
    let files = NODES.map(|name| rig.node_files(&dir, name));
    let plan = dir.join("plan.toml");
    fs::write(&plan, rig_plan(&rig, &dir, &files))?;
    lb_tests::daemon::cluster_init(&bin(), &plan, &dir)?;
    let [f1, f2] = files;
    let [n1, n2] = &rig.nodes[..] else {
        bail!("a pair has two nodes, not {}", rig.nodes.len());
    };
    let lb1 = DaemonProcess::start(&n1.ns, &bin(), f1, &dir.join("lb1/lb.toml"))?;
    let lb2 = DaemonProcess::start(&n2.ns, &bin(), f2, &dir.join("lb2/lb.toml"))?;
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    // A requested failover needs lb2 caught up with lb1's flows.
    wait_for("lb2 caught up", Duration::from_secs(5), || {
        lb2.replication_caught_up() && lb1.peer_eligible()
    })?;
    vip_answers(&rig, Duration::from_secs(5))?;
    Ok((rig, lb1, lb2))
}

#[test]
fn the_vip_answers_through_the_pair_across_failover_kill_and_carrier_loss() -> Result<()> {
    let (rig, lb1, mut lb2) = start_rig_pair()?;

    // Failover on request: lb2 holds the VIP and the gateway.
    lb1.ctl_ok(&["failover"])?;
    wait_for("lb2 active", Duration::from_secs(3), || {
        lb2.cluster_role().as_deref() == Some("active")
            && lb1.cluster_role().as_deref() == Some("standby")
    })?;
    vip_answers(&rig, Duration::from_secs(5))?;
    only_answers(&rig, 1)?;

    // kill -9 of the active: lb1 takes over.
    lb2.kill9();
    wait_for("lb1 active again", Duration::from_secs(3), || {
        lb1.cluster_role().as_deref() == Some("active")
    })?;
    vip_answers(&rig, Duration::from_secs(5))?;
    only_answers(&rig, 0)?;

    // lb2 back (standby), then the active's client link loses its carrier
    // (the switch's port to it goes down): its link monitor fails and lb2
    // takes the group; with the carrier back, lb1 stays standby.
    lb2.restart(&rig.nodes[1].ns)?;
    wait_for("lb2 standby", Duration::from_secs(5), || {
        lb2.cluster_role().as_deref() == Some("standby")
    })?;
    rig.switch.ip(["link", "set", "p-lb1x", "down"])?;
    wait_for(
        "lb2 active after lb1's carrier loss",
        Duration::from_secs(5),
        || {
            lb2.cluster_role().as_deref() == Some("active")
                && lb1.cluster_role().as_deref() == Some("standby")
        },
    )?;
    vip_answers(&rig, Duration::from_secs(5))?;
    only_answers(&rig, 1)?;
    assert!(lb2.alerts().contains("\"failover\""), "{}", lb2.alerts());
    assert!(
        lb1.alerts().contains("\"monitor_error\""),
        "{}",
        lb1.alerts()
    );
    rig.switch.ip(["link", "set", "p-lb1x", "up"])?;
    holds_for(
        "lb1 standby with its carrier back (no automatic failback)",
        Duration::from_secs(2),
        || lb1.cluster_role().as_deref() == Some("standby"),
        || lb1.alerts(),
    )?;
    vip_answers(&rig, Duration::from_secs(5))?;

    // The active loses its IPv6 VIP (as an interface set down and up loses
    // its IPv6 addresses): it adds it back within a few seconds, says so,
    // and the VIP answers again.
    let lb2_ns = &rig.nodes[1].ns;
    let vip6 = String::from_utf8(
        lb2_ns
            .ip(["-6", "-o", "addr", "show", "dev", "ext0"])?
            .stdout,
    )?
    .split_whitespace()
    .find(|w| w.starts_with(&format!("{VIP_V6}/")))
    .map(str::to_owned)
    .context("lb2 holds the IPv6 VIP")?;
    lb2_ns.ip(["addr", "del", &vip6, "dev", "ext0"])?;
    wait_for("the IPv6 VIP back on lb2", Duration::from_secs(5), || {
        lb2.alerts().contains("\"floating_restored\"")
    })?;
    vip_answers(&rig, Duration::from_secs(5))?;

    // Nothing is left: the daemons' pins, the namespaces.
    let prefix = rig.prefix.clone();
    drop((lb1, lb2, rig));
    for name in NODES {
        let pins = PathBuf::from(format!("/sys/fs/bpf/{prefix}-{name}"));
        assert!(!pins.exists(), "{} is left", pins.display());
    }
    let left: Vec<String> = lb_tests::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

/// A configuration change that keeps the active's daemon busy for a long
/// time (here: forty services of ten backends imported at once, their
/// Maglev tables computed by a debug build) must not look like a dead
/// node: the cluster's event loop and its lease run on a thread of their
/// own. Before they did, the standby took over and both were active.
#[test]
fn a_long_configuration_change_on_the_active_moves_nothing() -> Result<()> {
    let net = PairNet::build()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let (lb1, lb2) = start_pair(&net, dir)?;
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    let exported = lb1.ctl().args(["config", "export"]).output()?;
    let mut config: toml::Table = toml::from_str(&String::from_utf8(exported.stdout)?)?;
    let mut services = String::new();
    for s in 0..40u16 {
        services.push_str(&format!(
            "\n[[services]]\nvip = \"198.18.0.100\"\nport = {}\nprotocol = \"tcp\"\n",
            1000 + s
        ));
        for b in 0..10 {
            services.push_str(&format!(
                "\n[[services.backends]]\naddress = \"198.18.5.{}:80\"\n",
                b + 1
            ));
        }
    }
    let services: toml::Table = toml::from_str(&services)?;
    config.insert("services".into(), services["services"].clone());
    let text = toml::to_string(&config)?;
    let file = dir.join("big.toml");
    fs::write(&file, text)?;
    let started = Instant::now();
    let imported = lb1.ctl().args(["config", "import"]).arg(&file).output()?;
    let took = started.elapsed();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    eprintln!("the import kept lb1's daemon busy for {took:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lb1.cluster_role().as_deref(), Some("active"));
    assert_eq!(lb2.cluster_role().as_deref(), Some("standby"));
    assert!(
        !lb2.alerts().contains("\"failover\""),
        "lb2 took over: {}",
        lb2.alerts()
    );
    assert!(net.holds_fip(0) && !net.holds_fip(1));
    Ok(())
}

/// The node's `cluster` object from `lb-ctl --json status`.
fn cluster_status(daemon: &DaemonProcess) -> Value {
    daemon
        .ctl()
        .args(["--json", "status"])
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice::<Value>(&out.stdout).ok())
        .map_or(Value::Null, |status| status["cluster"].clone())
}

/// Waits until the node's status shows its peer Offline (stopped).
fn sees_peer_stopped(daemon: &DaemonProcess) -> Result<Duration> {
    wait_for("the peer shown stopped", Duration::from_secs(3), || {
        cluster_status(daemon)["peer_stopped"] == true
    })
}

/// `lb-ctl cluster ARGS...`: its exit code, stdout and stderr.
fn cluster_cmd(daemon: &DaemonProcess, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = daemon.ctl().arg("cluster").args(args).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn cluster_stop_moves_the_group_first_and_cluster_start_brings_the_node_back_as_standby()
-> Result<()> {
    let (rig, lb1, lb2) = start_rig_pair()?;

    // Stop on the active: the answer comes once lb2 holds the group.
    let (code, out, err) = cluster_cmd(&lb1, &["stop"])?;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the group moved to lb2"), "{out}");
    assert_eq!(lb2.cluster_role().as_deref(), Some("active"));
    let c1 = cluster_status(&lb1);
    assert_eq!(
        (&c1["role"], &c1["stopped"]),
        (&"standby".into(), &true.into())
    );
    vip_answers(&rig, Duration::from_secs(5))?;
    // lb2 sees it alive and Offline: no failover counted, info alerts only.
    sees_peer_stopped(&lb2)?;
    let c2 = cluster_status(&lb2);
    assert_eq!(
        (&c2["peer_alive"], &c2["peer_stopped"], &c2["failovers"]),
        (&true.into(), &true.into(), &0.into()),
        "{c2}"
    );
    assert!(
        status_text(&lb2).contains("Offline: cluster service stopped: this node has no standby"),
        "{}",
        status_text(&lb2)
    );
    assert!(status_text(&lb1).contains("Offline: cluster service stopped"));
    wait_for("the peer_stopped alert", Duration::from_secs(3), || {
        lb2.alerts().contains("\"peer_stopped\"")
    })?;
    assert!(
        lb1.alerts().contains("\"cluster_stopped\""),
        "{}",
        lb1.alerts()
    );
    // Idempotent.
    let (code, out, _) = cluster_cmd(&lb1, &["stop"])?;
    assert_eq!(code, Some(0));
    assert!(out.contains("already stopped"), "{out}");

    // Stop on the active whose peer is stopped: refused, nothing changes.
    let (code, out, err) = cluster_cmd(&lb2, &["stop"])?;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains("nothing changed") && err.contains("the peer's cluster service is stopped"),
        "{err}"
    );
    let c2 = cluster_status(&lb2);
    assert_eq!(
        (&c2["role"], &c2["stopped"]),
        (&"active".into(), &false.into())
    );
    vip_answers(&rig, Duration::from_secs(5))?;

    // Start: lb1 rejoins as standby; without automatic failback it stays so.
    let (code, out, err) = cluster_cmd(&lb1, &["start"])?;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rejoins as standby"), "{out}");
    wait_for("lb2 sees lb1 standby", Duration::from_secs(3), || {
        let c2 = cluster_status(&lb2);
        c2["peer_role"] == "standby" && c2["peer_stopped"] == false
    })?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lb1.cluster_role().as_deref(), Some("standby"));
    assert_eq!(lb2.cluster_role().as_deref(), Some("active"));
    let (_, out, _) = cluster_cmd(&lb1, &["start", "--json"])?;
    let answer: Value = serde_json::from_str(&out)?;
    assert_eq!(answer["accepted"], "start", "{out}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("already running")),
        "{out}"
    );

    // The standby stops at once; then --force stops the active although
    // its peer cannot take the group: nobody serves.
    let (code, out, _) = cluster_cmd(&lb1, &["stop"])?;
    assert_eq!(code, Some(0));
    assert!(out.contains("lb2 keeps the group"), "{out}");
    sees_peer_stopped(&lb2)?;
    let (code, out, err) = cluster_cmd(&lb2, &["stop", "--force"])?;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the service is down"), "{out}");
    wait_for("both standby and stopped", Duration::from_secs(3), || {
        [&lb1, &lb2].iter().all(|d| {
            let c = cluster_status(d);
            c["role"] == "standby" && c["stopped"] == true
        })
    })?;
    assert!(
        rig.curl(&format!("http://{VIP_V4}/")).is_err(),
        "nobody serves the VIP"
    );

    // lb2 started: no active peer, it takes the group.
    let (code, ..) = cluster_cmd(&lb2, &["start"])?;
    assert_eq!(code, Some(0));
    wait_for("lb2 active again", Duration::from_secs(3), || {
        lb2.cluster_role().as_deref() == Some("active")
    })?;
    vip_answers(&rig, Duration::from_secs(5))?;
    assert_eq!(lb1.cluster_role().as_deref(), Some("standby"));
    Ok(())
}
