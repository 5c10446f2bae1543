//! The cluster inside the daemon: starts the node's event loop
//! ([`node::run`]) and connects it to the daemon: role changes to the data
//! plane's role map, events to the alert log, the settings' generation and
//! hash into the heartbeats, status and the operator's requests to the API.
use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{
    Role,
    config::ClusterConfig,
    keys::KeyFile,
    membership::Reason,
    monitors::MonitorState,
    node::{self, ClusterEvent, ClusterStatus, NodeSetup, OperationRequest},
};
use crate::{api::AlertLevel, config::Config, daemon::Shared};

/// What the daemon keeps of its cluster: the status to show and where to
/// send the operator's requests.
#[derive(Clone, Debug)]
pub struct ClusterLink {
    pub status: watch::Receiver<ClusterStatus>,
    pub operations: mpsc::Sender<OperationRequest>,
}

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
) -> Result<(ClusterLink, JoinHandle<Result<()>>)> {
    let keys = KeyFile::load(&cluster.key_file).map_err(anyhow::Error::msg)?;
    let interval = std::time::Duration::from_millis(cluster.heartbeat_interval_ms);
    let (role_tx, mut role_rx) = mpsc::channel::<node::RoleRequest>(4);
    let (event_tx, mut event_rx) = mpsc::channel::<ClusterEvent>(64);
    let (status_tx, status) = watch::channel(ClusterStatus::default());
    let (operations, operation_rx) = mpsc::channel(4);
    let (settings_tx, settings) = watch::channel((0u64, [0u8; 32]));
    let (lease_tx, mut lease_rx) = mpsc::channel::<()>(1);
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
    futures_util::FutureExt::now_or_never(shared.lock())
        .context("the daemon is busy at the cluster's start")?
        .set_floating(&group)?;
    tokio::spawn({
        let shared = shared.clone();
        async move {
            while lease_rx.recv().await.is_some() {
                let until = monotonic_ns() + lease.as_nanos() as u64;
                if let Err(err) = shared.lock().await.renew_lease(until) {
                    tracing::error!(error = %format!("{err:#}"), "renewing the lease");
                }
            }
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
    let setup = NodeSetup {
        cluster,
        node_name,
        keys,
        start_role: Role::Standby,
        settings,
    };
    let task = tokio::spawn(async move {
        node::run(
            setup,
            role_tx,
            event_tx,
            status_tx,
            operation_rx,
            lease_tx,
            stop,
        )
        .await
        .context("the cluster's event loop stopped")
    });
    Ok((ClusterLink { status, operations }, task))
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
        ClusterEvent::FinalAction => (
            AlertLevel::Error,
            "final_action",
            "a monitor failed but the maximum failover count is reached: the group stays".into(),
        ),
        ClusterEvent::Error(message) => (AlertLevel::Error, "cluster_error", message.clone()),
    }
}
