//! Two cluster nodes in namespaces of their own, on a shared client segment
//! (a bridge) with two interconnects between them: the real event loop
//! (`cluster::node::run`) with real heartbeats, floating IPs and NP checks.
//! The data plane is stood in for by a role sink that records what it was
//! asked (the daemon's role map is the daemon tests' business).
use std::{
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Result;
use lb_ctl::cluster::{
    Role,
    config::ClusterConfig,
    heartbeat::{Key, Keyring},
    node::{ClusterEvent, ClusterStatus, NodeSetup, RoleRequest, run},
};
use lb_tests::{pair::PairNet, wait::wait_for};
use tokio::sync::{mpsc, watch};

struct Node {
    status: watch::Receiver<ClusterStatus>,
    stop: watch::Sender<bool>,
    roles: Arc<Mutex<Vec<Role>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Node {
    fn role(&self) -> Option<Role> {
        self.status.borrow().role
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The nodes stop before their network goes (fields drop in order).
struct Pair {
    nodes: [Node; 2],
    net: PairNet,
}

fn cluster_config() -> ClusterConfig {
    toml::from_str(
        r#"
id = "00112233445566778899aabbccddeeff"
np_targets = ["198.18.0.10"]
[[servers]]
name = "lb1"
[[servers]]
name = "lb2"
[[interconnects]]
name = "hb0"
addresses = ["198.18.8.1", "198.18.8.2"]
[[interconnects]]
name = "hb1"
addresses = ["198.18.9.1", "198.18.9.2"]
[[floating_ips]]
address = "198.18.0.100/24"
interface = "ext0"
"#,
    )
    .unwrap()
}

fn pair() -> Result<Pair> {
    let net = PairNet::build()?;
    let keys = Keyring::new(
        vec![Key {
            id: 1,
            secret: vec![0x5a; 32],
        }],
        1,
    )?;
    let node = |i: usize, name: &str| -> Result<Node> {
        let (status_tx, status) = watch::channel(ClusterStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let roles = Arc::new(Mutex::new(Vec::new()));
        let recorded = roles.clone();
        let name = name.to_owned();
        let keys = keys.clone();
        let thread = net.node(i).spawn_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let (role_tx, mut role_rx) = mpsc::channel::<RoleRequest>(4);
                tokio::spawn(async move {
                    while let Some((role, ack)) = role_rx.recv().await {
                        recorded.lock().unwrap().push(role);
                        let _ = ack.send(Ok(()));
                    }
                });
                let (event_tx, mut event_rx) = mpsc::channel::<ClusterEvent>(64);
                tokio::spawn(async move { while event_rx.recv().await.is_some() {} });
                let (_settings_tx, settings) = watch::channel((1u64, [0u8; 32]));
                let (_operations_tx, operations) = mpsc::channel(1);
                run(
                    NodeSetup {
                        cluster: cluster_config(),
                        node_name: name,
                        keys,
                        start_role: Role::Standby,
                        settings,
                        daemon: None,
                        caught_up: None,
                        reconfigure: None,
                    },
                    role_tx,
                    event_tx,
                    status_tx,
                    operations,
                    Box::new(|| {}),
                    stop_rx,
                )
                .await
            })
        })?;
        Ok(Node {
            status,
            stop,
            roles,
            thread: Some(thread),
        })
    };
    let n1 = node(0, "lb1")?;
    let n2 = node(1, "lb2")?;
    Ok(Pair {
        nodes: [n1, n2],
        net,
    })
}

fn client_sees(pair: &Pair, node: usize) -> bool {
    let want = pair.net.mac(node);
    !want.is_empty() && pair.net.client_resolves_fip() == Some(want)
}

#[test]
fn the_pair_elects_one_moves_the_group_on_node_loss_and_keeps_it_after_healing() -> Result<()> {
    let pair = pair()?;
    let [n1, n2] = &pair.nodes;
    let net = &pair.net;
    // Start: the first server serves, the other waits; one holds the FIP.
    wait_for("one active", Duration::from_secs(3), || {
        n1.role() == Some(Role::Active) && n2.role() == Some(Role::Standby)
    })?;
    assert!(net.holds_fip(0) && !net.holds_fip(1));
    wait_for(
        "the client reaches lb1 at the FIP",
        Duration::from_secs(3),
        || client_sees(&pair, 0),
    )?;
    assert_eq!(*n1.roles.lock().unwrap(), [Role::Active]);
    assert_eq!(
        n2.status.borrow().links,
        [("hb0".to_owned(), true), ("hb1".to_owned(), true)]
    );

    // One interconnect cut: nothing moves.
    net.node(0).ip(["link", "set", "hb0", "down"])?;
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        (n1.role(), n2.role()),
        (Some(Role::Active), Some(Role::Standby))
    );
    wait_for("hb0 reported down", Duration::from_secs(1), || {
        n2.status.borrow().links == [("hb0".to_owned(), false), ("hb1".to_owned(), true)]
    })?;
    net.node(0).ip(["link", "set", "hb0", "up"])?;

    // lb1 loses every link at once: lb2 takes the group; lb1, isolated (it
    // reaches no NP target), steps down and gives the FIP up.
    net.node_links(0, false)?;
    let gap = wait_for("lb2 active", Duration::from_secs(3), || {
        n2.role() == Some(Role::Active)
    })?;
    assert!(net.holds_fip(1));
    wait_for("lb1 isolated, standby", Duration::from_secs(3), || {
        n1.role() == Some(Role::Standby) && !net.holds_fip(0)
    })?;
    wait_for(
        "the client reaches lb2 at the FIP",
        Duration::from_secs(3),
        || client_sees(&pair, 1),
    )?;
    eprintln!("takeover after node loss: {gap:?}");

    // Healed: lb2 keeps the group (no automatic failback), one active.
    net.node_links(0, true)?;
    std::thread::sleep(Duration::from_millis(1_000));
    wait_for("lb1 hears lb2 again", Duration::from_secs(3), || {
        n1.status.borrow().peer_alive
    })?;
    assert_eq!(
        (n1.role(), n2.role()),
        (Some(Role::Standby), Some(Role::Active)),
        "lb1: {:?}, lb2: {:?}",
        n1.status.borrow().last_change,
        n2.status.borrow().last_change
    );
    assert!(net.holds_fip(1) && !net.holds_fip(0));
    assert_eq!(*n1.roles.lock().unwrap(), [Role::Active, Role::Standby]);
    assert_eq!(*n2.roles.lock().unwrap(), [Role::Active]);
    Ok(())
}
