//! The cluster inside the daemon: starts the node's event loop
//! ([`node::run`]) and connects it to the daemon: role changes to the data
//! plane's role map, events to the alert log, the settings' generation and
//! hash into the heartbeats, status and the operator's requests to the API.
use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Role,
    config::ClusterConfig,
    keys::KeyFile,
    membership::Reason,
    monitors::MonitorState,
    node::{self, ClusterEvent, ClusterStatus, NodeSetup, OperationRequest, SyncState},
    sync::{self as settings_sync, SyncMessage, Tls, hex},
};
use crate::{api::AlertLevel, config::Config, daemon::Shared};

/// What the daemon keeps of its cluster: the status to show and where to
/// send the operator's requests.
#[derive(Clone, Debug)]
pub struct ClusterLink {
    pub status: watch::Receiver<ClusterStatus>,
    pub operations: mpsc::Sender<OperationRequest>,
    /// The last push of the settings to the peer (None: none yet).
    pub sync: watch::Receiver<Option<SyncState>>,
    /// `lb-ctl sync`: push now; answered with what the peer said.
    pub sync_requests: mpsc::Sender<SyncRequest>,
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

/// Starts the cluster for the daemon in `shared`. The node starts standby:
/// it serves only once membership says so.
pub fn start(
    cluster: ClusterConfig,
    node_name: String,
    shared: Shared,
    stop: watch::Receiver<bool>,
) -> Result<(ClusterLink, oneshot::Receiver<Result<()>>)> {
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
    let first = cluster
        .interconnects
        .first()
        .context("the cluster has no interconnect")?;
    let here = std::net::SocketAddr::new(first.addresses[params.me as usize], cluster.sync_port);
    let peer = std::net::SocketAddr::new(first.addresses[params.peer as usize], cluster.sync_port);
    let peer_name = cluster.servers[params.peer as usize].name.clone();
    let interval = std::time::Duration::from_millis(cluster.heartbeat_interval_ms);
    let (role_tx, mut role_rx) = mpsc::channel::<node::RoleRequest>(4);
    let (event_tx, mut event_rx) = mpsc::channel::<ClusterEvent>(64);
    let (status_tx, status) = watch::channel(ClusterStatus::default());
    let (operations, operation_rx) = mpsc::channel(4);
    let (settings_tx, settings) = watch::channel((0u64, [0u8; 32]));
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
    let mut lease_map = {
        let mut daemon = futures_util::FutureExt::now_or_never(shared.lock())
            .context("the daemon is busy at the cluster's start")?;
        daemon.set_floating(&group)?;
        daemon.lease_handle()?
    };
    // Renewed by the event loop itself, on every pass, without the daemon.
    let renew_lease = Box::new(move || {
        let until = monotonic_ns() + lease.as_nanos() as u64;
        if let Err(err) = lease_map.renew(until) {
            tracing::error!(error = %format!("{err:#}"), "renewing the lease");
        }
    });
    // Role changes: the role map, answered once it holds the role.
    tokio::spawn({
        let shared = shared.clone();
        async move {
            while let Some((role, ack)) = role_rx.recv().await {
                let _ = ack.send(shared.lock().await.set_role(role));
            }
        }
    });
    // Events: the alert log.
    tokio::spawn({
        let shared = shared.clone();
        async move {
            while let Some(event) = event_rx.recv().await {
                let (level, name, message) = alert(&event);
                shared.lock().await.alerts().record(level, name, message);
            }
        }
    });
    // The settings' generation and hash, for the heartbeats.
    tokio::spawn({
        let shared = shared.clone();
        let mut stop = stop.clone();
        async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let generation = shared.lock().await.config().generation;
                let stale = {
                    let held = settings_tx.borrow();
                    held.0 != generation || held.1 == [0; 32]
                };
                if stale {
                    let hash = settings_hash(shared.lock().await.config());
                    let _ = settings_tx.send((generation, hash));
                }
            }
        }
    });
    // The settings sync: the standby's side takes pushes...
    let listener = std::net::TcpListener::bind(here)
        .with_context(|| format!("listening for the settings sync on {here}"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (incoming_tx, mut incoming) = mpsc::channel::<settings_sync::Incoming>(4);
    tokio::spawn(settings_sync::serve(listener, tls.clone(), incoming_tx));
    tokio::spawn({
        let shared = shared.clone();
        async move {
            while let Some((message, answer)) = incoming.recv().await {
                let reply = shared.lock().await.apply_replicated(message);
                let _ = answer.send(reply);
            }
        }
    });
    // ...the active's side pushes after every change, and on request.
    let (sync_state, sync) = watch::channel(None);
    let (sync_requests, mut sync_rx) = mpsc::channel::<SyncRequest>(4);
    tokio::spawn({
        let shared = shared.clone();
        let mut settings = settings.clone();
        let mut stop = stop.clone();
        async move {
            loop {
                let answer = tokio::select! {
                    changed = settings.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        None
                    }
                    Some(answer) = sync_rx.recv() => Some(answer),
                    _ = stop.changed() => return,
                };
                let role = shared.lock().await.role();
                if role != Role::Active {
                    if let Some(answer) = answer {
                        let _ = answer.send(Err(format!(
                            "this node is standby: run lb-ctl sync on the active node ({peer_name})"
                        )));
                    }
                    continue;
                }
                let result = push_settings(&shared, &tls, peer, &sync_state).await;
                if let Some(answer) = answer {
                    let _ = answer.send(result);
                }
            }
        }
    });
    let setup = NodeSetup {
        cluster,
        node_name,
        keys,
        start_role: Role::Standby,
        settings,
    };
    // The event loop runs on a thread and runtime of its own: nothing the
    // daemon does (a long configuration change on the main runtime) can
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
    Ok((
        ClusterLink {
            status,
            operations,
            sync,
            sync_requests,
        },
        task,
    ))
}

/// Pushes the daemon's settings to the peer; records the outcome in
/// `state` and the alert log (`sync_failed` on every failure,
/// `sync_recovered` on the first success after one).
async fn push_settings(
    shared: &Shared,
    tls: &Tls,
    peer: std::net::SocketAddr,
    state: &watch::Sender<Option<SyncState>>,
) -> Result<String, String> {
    let message = {
        let daemon = shared.lock().await;
        let config = daemon.config();
        SyncMessage {
            generation: config.generation,
            hash: hex(&settings_hash(config)),
            services: config.services.clone(),
        }
    };
    let generation = message.generation;
    let result = match settings_sync::push(tls, peer, &message, PUSH_TIMEOUT).await {
        Ok(reply) if reply.status == 200 => Ok(format!(
            "the peer holds generation {} ({})",
            reply.generation, reply.message
        )),
        Ok(reply) => Err(format!(
            "the peer refused generation {generation} ({}): {}",
            reply.status, reply.message
        )),
        Err(err) => Err(format!("{err:#}")),
    };
    let was_failing = matches!(*state.borrow(), Some(SyncState::NotSynchronized { .. }));
    let daemon = shared.lock().await;
    match &result {
        Ok(_) => {
            if was_failing {
                daemon.alerts().record(
                    AlertLevel::Info,
                    "sync_recovered",
                    format!("settings synchronized with the peer (generation {generation})"),
                );
            }
            state.send_replace(Some(SyncState::Synchronized { generation }));
        }
        Err(reason) => {
            daemon.alerts().record(
                AlertLevel::Error,
                "sync_failed",
                format!(
                    "settings generation {generation} not synchronized with the peer: {reason}; it applies here; run lb-ctl sync once the peer is back"
                ),
            );
            state.send_replace(Some(SyncState::NotSynchronized {
                reason: reason.clone(),
            }));
        }
    }
    result
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The alert-log line of an event: level, stable name, message.
fn alert(event: &ClusterEvent) -> (AlertLevel, &'static str, String) {
    match event {
        ClusterEvent::RoleChanged {
            role: Role::Active,
            reason,
        } => {
            let name = match reason {
                Reason::Handover | Reason::PeerLost => "failover",
                _ => "cluster_active",
            };
            (
                AlertLevel::Warning,
                name,
                format!("this node is now active ({reason:?}); the floating IPs moved here"),
            )
        }
        ClusterEvent::RoleChanged {
            role: Role::Standby,
            reason,
        } => {
            let name = match reason {
                Reason::DualActive => "dual_active_resolved",
                Reason::Isolated => "isolated",
                Reason::Operator => "group_moved",
                Reason::AutoFailback => "failback",
                Reason::MonitorFailed => "monitor_failover",
                _ => "cluster_standby",
            };
            (
                AlertLevel::Warning,
                name,
                format!("this node is now standby ({reason:?}); the floating IPs left"),
            )
        }
        ClusterEvent::MonitorChanged {
            monitor,
            state: MonitorState::Error,
            detail,
        } => (
            AlertLevel::Error,
            "monitor_error",
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
            "monitor_recovered",
            format!("monitor {monitor}: {state}"),
        ),
        ClusterEvent::FinalAction { stopped: false } => (
            AlertLevel::Error,
            "final_action",
            "a monitor failed but the maximum failover count is reached: the group stays".into(),
        ),
        ClusterEvent::FinalAction { stopped: true } => (
            AlertLevel::Error,
            "final_action",
            "a monitor failed and the maximum failover count is reached: final action stop, this node's cluster service stopped (it serves nothing until `lb-ctl cluster start`)".into(),
        ),
        ClusterEvent::ServiceChanged {
            stopped: true,
            forced: false,
        } => (
            AlertLevel::Info,
            "cluster_stopped",
            "this node's cluster service was stopped (lb-ctl cluster stop): it serves nothing until `lb-ctl cluster start`".into(),
        ),
        ClusterEvent::ServiceChanged {
            stopped: true,
            forced: true,
        } => (
            AlertLevel::Warning,
            "cluster_stopped",
            "this node's cluster service was stopped with --force although the peer could not take the group: the service may be down".into(),
        ),
        ClusterEvent::ServiceChanged { stopped: false, .. } => (
            AlertLevel::Info,
            "cluster_started",
            "this node's cluster service was started (lb-ctl cluster start): it rejoins as standby".into(),
        ),
        ClusterEvent::PeerServiceChanged { stopped: true } => (
            AlertLevel::Info,
            "peer_stopped",
            "the peer's cluster service is stopped (Offline): it takes no group, this node has no standby".into(),
        ),
        ClusterEvent::PeerServiceChanged { stopped: false } => (
            AlertLevel::Info,
            "peer_started",
            "the peer's cluster service is started again".into(),
        ),
        ClusterEvent::Error(message) => (AlertLevel::Error, "cluster_error", message.clone()),
    }
}
