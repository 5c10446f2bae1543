//! The cluster inside the daemon: starts the node's event loop
//! ([`node::run`]) and connects it to the daemon's event loop, through
//! channels only: role changes to the data plane's role map, events to the
//! alert log, the settings' generation and hash into the heartbeats, pushes
//! from the active to `Daemon::apply_replicated`, status and the
//! operator's requests to the API; and starts the flow replication
//! (`replicate`), through which role requests pass.
//!
//! `node::run` keeps a thread and a current-thread runtime of its own:
//! nothing the daemon does (a long change, a stalled loop) may delay its
//! heartbeats or its lease.
use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Role,
    config::{ClusterConfig, ClusterRules as _},
    keys::KeyFile,
    membership::Reason,
    monitors::MonitorState,
    node::{self, ClusterEvent, ClusterStatus, NodeSetup, OperationRequest, SyncState},
    replicate,
    sync::{self as settings_sync, PushQueue, SyncMessage, Tls, hex},
};
use crate::{
    api::{AlertEvent, AlertLevel},
    config::Config,
    daemon::{Daemon, Event, Handle, event_loop},
    replication::status::ReplicationStatus,
};

/// What the daemon keeps of its cluster: the status to show, where to send
/// the operator's requests, and the last push of the settings.
#[derive(Clone, Debug)]
pub struct ClusterLink {
    pub status: watch::Receiver<ClusterStatus>,
    pub operations: mpsc::Sender<OperationRequest>,
    /// The last push of the settings to the peer (None: none yet).
    pub sync: Option<SyncState>,
    /// The flow replication's status.
    pub replication: watch::Receiver<ReplicationStatus>,
    /// The `[cluster]` section the loop runs with: the daemon sends a
    /// change of the keys `config::live` allows, the loop takes it live.
    pub settings: watch::Sender<ClusterConfig>,
}

/// A request to push the settings now, and where to answer.
pub type SyncRequest = oneshot::Sender<Result<String, String>>;

/// How long the active waits for the standby to take a push.
pub const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The hash of the settings both nodes must hold alike (the LB settings:
/// services, backends, sorry servers).
pub fn settings_hash(config: &Config) -> [u8; 32] {
    let canonical = serde_json::to_vec(&config.services).expect("services serialize");
    Sha256::digest(&canonical).into()
}

/// The daemon's event loop's side of the settings sync: the settings it
/// publishes for the heartbeats, and the pushes to the peer (on the
/// active), one at a time.
pub struct Pusher {
    tls: Tls,
    /// The peer's sync address on each interconnect, in priority order.
    peers: Vec<std::net::SocketAddr>,
    /// The peer's name, for the refusals.
    pub peer_name: String,
    settings: watch::Sender<(u64, [u8; 32])>,
    pub queue: PushQueue<SyncRequest>,
}

impl Pusher {
    /// The settings generation the heartbeats carry.
    pub fn published(&self) -> u64 {
        self.settings.borrow().0
    }

    /// Puts `config`'s settings into the heartbeats.
    pub fn publish(&self, config: &Config) {
        self.settings
            .send_replace((config.generation, settings_hash(config)));
    }

    /// Pushes `config`'s settings to the peer (the network, so the daemon's
    /// loop runs it in a task of its own): what the peer said.
    pub fn push(
        &self,
        config: &Config,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send + 'static {
        let message = SyncMessage {
            generation: config.generation,
            hash: hex(&settings_hash(config)),
            services: config.services.clone(),
            cluster: config.cluster.clone(),
        };
        push_settings(self.tls.clone(), self.peers.clone(), message)
    }
}

/// Starts the cluster for `daemon` (before its event loop starts), which
/// `events` reaches. The node starts standby: it serves only once
/// membership says so. Returns the loop's side of the settings sync and the
/// cluster's end.
pub fn start(
    cluster: ClusterConfig,
    node_name: String,
    daemon: &mut Daemon,
    events: Handle,
    stop: watch::Receiver<bool>,
) -> Result<(Pusher, oneshot::Receiver<Result<()>>)> {
    let keys = KeyFile::load(&cluster.key_file).map_err(anyhow::Error::msg)?;
    let tls = Tls::load(&cluster.tls_dir, &node_name).with_context(|| {
        format!(
            "the cluster's TLS material in {}",
            cluster.tls_dir.display()
        )
    })?;
    let params = cluster
        .params(&node_name)
        .context("this node is not among the cluster's servers")?;
    // The settings sync listens on every interconnect and pushes over the
    // first that answers, in their priority order: one cut interconnect
    // does not stop it, as it does not stop the heartbeats.
    let at = |i: u8| -> Vec<std::net::SocketAddr> {
        cluster
            .interconnects
            .iter()
            .map(|ic| std::net::SocketAddr::new(ic.addresses[i as usize], cluster.sync_port))
            .collect()
    };
    let (heres, peers) = (at(params.me), at(params.peer));
    let replication_at = |i: u8| -> Vec<std::net::SocketAddr> {
        cluster
            .interconnects
            .iter()
            .map(|ic| std::net::SocketAddr::new(ic.addresses[i as usize], cluster.replication_port))
            .collect()
    };
    if heres.is_empty() {
        anyhow::bail!("the cluster has no interconnect");
    }
    let peer_name = cluster.servers[params.peer as usize].name.clone();
    let interval = std::time::Duration::from_millis(cluster.heartbeat_interval_ms);
    let (role_tx, role_rx) = mpsc::channel::<node::RoleRequest>(4);
    let (event_tx, event_rx) = mpsc::channel::<ClusterEvent>(64);
    let (status_tx, status) = watch::channel(ClusterStatus::default());
    let (operations, operation_rx) = mpsc::channel(4);
    let (settings_tx, settings) =
        watch::channel((daemon.config().generation, settings_hash(daemon.config())));
    // The lease: shorter than the peer's dead time, so that a node whose
    // loop stops is fenced before the peer takes over.
    let lease = interval * cluster.heartbeat_lost_after * 3 / 4;
    let group: Vec<std::net::IpAddr> = cluster
        .floating_ips
        .iter()
        .filter_map(|f| f.parse().ok().map(|(addr, _)| addr))
        .collect();
    // The addresses a fenced node stops answering for, before it can be
    // active.
    daemon.set_floating(&group)?;
    let mut lease_map = daemon.lease_handle()?;
    // Renewed by the event loop itself, on every pass, without the daemon.
    let renew_lease = Box::new(move || {
        let until = crate::dataplane::monotonic_ns() + lease.as_nanos() as u64;
        if let Err(err) = lease_map.renew(until) {
            tracing::error!(error = %format!("{err:#}"), "renewing the lease");
        }
    });
    // Role changes (the role map, answered once it holds the role),
    // events (the alert log) and the stall monitors' pings go to the
    // daemon's loop.
    let (ping_tx, ping_rx) = mpsc::channel(4);
    tokio::spawn(event_loop::forward(ping_rx, events.clone(), Event::Ping));
    // Role requests pass through the flow replication on their way to the
    // daemon's loop: everything it received is applied before a role
    // change (see `replicate`). The program reports new flows from here on.
    let (ring, flows) = daemon.replication_handles()?;
    let replication = replicate::start(
        replicate::Setup {
            tls: tls.clone(),
            listen: replication_at(params.me),
            peers: replication_at(params.peer),
        },
        ring.into_async()?,
        flows,
        events.clone(),
        role_rx,
    )?;
    tokio::spawn(event_loop::forward(
        event_rx,
        events.clone(),
        Event::Cluster,
    ));
    // The settings sync: the standby's side takes pushes (applied by the
    // daemon's loop)...
    let (incoming_tx, incoming) = mpsc::channel::<settings_sync::Incoming>(4);
    for here in &heres {
        let listener = std::net::TcpListener::bind(here)
            .with_context(|| format!("listening for the settings sync on {here}"))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(settings_sync::serve(
            listener,
            tls.clone(),
            incoming_tx.clone(),
        ));
    }
    drop(incoming_tx);
    tokio::spawn(event_loop::forward(
        incoming,
        events,
        |(message, answer)| Event::SettingsPush { message, answer },
    ));
    // ...the active's side is the daemon's loop's: it publishes the
    // settings after every change and pushes them (see `Pusher`).
    let (reconfigure_tx, reconfigure) = watch::channel(cluster.clone());
    daemon.attach_cluster(ClusterLink {
        status,
        operations,
        sync: None,
        replication: replication.status,
        settings: reconfigure_tx,
    });
    let pusher = Pusher {
        tls,
        peers,
        peer_name,
        settings: settings_tx,
        queue: PushQueue::default(),
    };
    let setup = NodeSetup {
        cluster,
        node_name,
        keys,
        start_role: Role::Standby,
        settings,
        daemon: Some(ping_tx),
        caught_up: Some(replication.caught_up),
        reconfigure: Some(reconfigure),
    };
    // The event loop runs on a thread and runtime of its own: nothing the
    // daemon does (a long configuration change in the daemon's loop) can
    // delay its heartbeats or its lease.
    let (done, task) = oneshot::channel();
    std::thread::Builder::new()
        .name("lb-cluster".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the cluster's runtime")
                .and_then(|rt| {
                    rt.block_on(node::run(
                        setup,
                        role_tx,
                        event_tx,
                        status_tx,
                        operation_rx,
                        renew_lease,
                        stop,
                    ))
                })
                .context("the cluster's event loop stopped");
            let _ = done.send(result);
        })
        .context("starting the cluster's thread")?;
    Ok((pusher, task))
}

/// Pushes `message` to the peer over the first of its addresses (one an
/// interconnect, in priority order) that answers: what it said (Ok: it
/// holds the settings). A refusal is the peer's answer and ends the tries;
/// only an address that cannot be reached moves on to the next.
async fn push_settings(
    tls: Tls,
    peers: Vec<std::net::SocketAddr>,
    message: SyncMessage,
) -> Result<String, String> {
    let generation = message.generation;
    let mut unreachable = Vec::new();
    for peer in peers {
        match settings_sync::push(&tls, peer, &message, PUSH_TIMEOUT).await {
            Ok(reply) if reply.status == 200 => {
                return Ok(format!(
                    "the peer holds generation {} ({})",
                    reply.generation, reply.message
                ));
            }
            Ok(reply) => {
                return Err(format!(
                    "the peer refused generation {generation} ({}): {}",
                    reply.status, reply.message
                ));
            }
            Err(err) => unreachable.push(format!("{err:#}")),
        }
    }
    Err(unreachable.join("; "))
}

/// The alert-log line of an event: level, stable name, message.
pub fn alert(event: &ClusterEvent) -> (AlertLevel, AlertEvent, String) {
    match event {
        ClusterEvent::RoleChanged {
            role: Role::Active,
            reason,
        } => {
            let name = match reason {
                Reason::Handover | Reason::PeerLost => AlertEvent::Failover,
                _ => AlertEvent::ClusterActive,
            };
            (
                AlertLevel::Warning,
                name,
                format!("this node is now active ({reason}); the floating IPs moved here"),
            )
        }
        ClusterEvent::RoleChanged {
            role: Role::Standby,
            reason,
        } => {
            let name = match reason {
                Reason::DualActive => AlertEvent::DualActiveResolved,
                Reason::Isolated => AlertEvent::Isolated,
                Reason::Operator => AlertEvent::GroupMoved,
                Reason::AutoFailback => AlertEvent::Failback,
                Reason::MonitorFailed => AlertEvent::MonitorFailover,
                _ => AlertEvent::ClusterStandby,
            };
            (
                AlertLevel::Warning,
                name,
                format!("this node is now standby ({reason}); the floating IPs left"),
            )
        }
        ClusterEvent::MonitorChanged {
            monitor,
            state: MonitorState::Error,
            detail,
        } => (
            AlertLevel::Error,
            AlertEvent::MonitorError,
            format!(
                "monitor {monitor}: error{}",
                detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        ),
        ClusterEvent::MonitorChanged { monitor, state, .. } => (
            AlertLevel::Info,
            AlertEvent::MonitorRecovered,
            format!("monitor {monitor}: {state}"),
        ),
        ClusterEvent::FinalAction { stopped: false } => (
            AlertLevel::Error,
            AlertEvent::FinalAction,
            "a monitor failed but the maximum failover count is reached: the group stays".into(),
        ),
        ClusterEvent::FinalAction { stopped: true } => (
            AlertLevel::Error,
            AlertEvent::FinalAction,
            "a monitor failed and the maximum failover count is reached: final action stop, this node's cluster service stopped (it serves nothing until `lb-ctl cluster start`)".into(),
        ),
        ClusterEvent::ServiceChanged {
            stopped: true,
            forced: false,
        } => (
            AlertLevel::Info,
            AlertEvent::ClusterStopped,
            "this node's cluster service was stopped (lb-ctl cluster stop): it serves nothing until `lb-ctl cluster start`".into(),
        ),
        ClusterEvent::ServiceChanged {
            stopped: true,
            forced: true,
        } => (
            AlertLevel::Warning,
            AlertEvent::ClusterStopped,
            "this node's cluster service was stopped with --force although the peer could not take the group: the service may be down".into(),
        ),
        ClusterEvent::ServiceChanged { stopped: false, .. } => (
            AlertLevel::Info,
            AlertEvent::ClusterStarted,
            "this node's cluster service was started (lb-ctl cluster start): it rejoins as standby".into(),
        ),
        ClusterEvent::PeerServiceChanged { stopped: true } => (
            AlertLevel::Info,
            AlertEvent::PeerStopped,
            "the peer's cluster service is stopped (Offline): it takes no group, this node has no standby".into(),
        ),
        ClusterEvent::PeerServiceChanged { stopped: false } => (
            AlertLevel::Info,
            AlertEvent::PeerStarted,
            "the peer's cluster service is started again".into(),
        ),
        ClusterEvent::FloatingRestored { addresses } => (
            AlertLevel::Warning,
            AlertEvent::FloatingRestored,
            format!(
                "floating IPs were missing from this active node's interfaces (an interface set down and up loses its IPv6 addresses) and are added again: {}",
                addresses.join(", ")
            ),
        ),
        ClusterEvent::Error(message) => (AlertLevel::Error, AlertEvent::ClusterError, message.clone()),
    }
}
