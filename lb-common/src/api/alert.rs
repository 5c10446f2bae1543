//! The alert log's lines as the API gives them (`GET /v1/alerts`): each
//! with a level and a typed event.
use std::{fmt, prelude::rust_2024::*};

use serde::{Deserialize, Serialize};

/// One line of the alert log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// RFC 3339, UTC.
    pub time: String,
    pub level: AlertLevel,
    /// What happened (a stable name in JSON: `backend_down`, `failover`...).
    pub event: AlertEvent,
    pub message: String,
}

/// What an alert is about: one stable name each (the JSON and the log say
/// it in snake case). An alert log written by another version may hold
/// names this one does not know: they read as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A backend's health check failed (it takes no new flows).
    BackendDown,
    /// A backend's health check passes again.
    BackendUp,
    /// A service has no usable backend (its sorry server, if any, answers).
    NoUsableBackend,
    /// A service has a usable backend again.
    ServiceRecovered,
    /// A backend's next hop answers ARP / neighbour discovery.
    NeighbourResolved,
    /// A backend's next hop does not answer, or there is no route to it.
    NeighbourUnresolved,
    /// A configuration change was applied.
    ConfigApplied,
    /// A configuration change was refused; nothing changed.
    ConfigRejected,
    /// The daemon started (or adopted a running data plane).
    DaemonStarted,
    /// The daemon stopped (what keeps forwarding is said).
    DaemonStopped,
    /// Pinned maps of an incompatible version were replaced.
    DataplaneReplaced,
    /// The pins are on a bpffs private to the daemon's mount namespace.
    BpffsPrivate,
    /// The standby refused a push of the settings.
    SyncRefused,
    /// The settings could not be pushed to the peer.
    SyncFailed,
    /// The settings reached the peer again after a failure.
    SyncRecovered,
    /// This node took the group from a lost or yielding peer.
    Failover,
    /// The group went back to the preferred server.
    Failback,
    /// This node became active (at start, or with nobody active).
    ClusterActive,
    /// This node became standby.
    ClusterStandby,
    /// The operator moved the group to the peer.
    GroupMoved,
    /// This node reaches neither its peer nor any NP target: it stepped down.
    Isolated,
    /// Both nodes were active; this one stepped down.
    DualActiveResolved,
    /// A failed monitor moved the group to the peer.
    MonitorFailover,
    /// A monitor reports an error.
    MonitorError,
    /// A monitor is normal (or offline) again.
    MonitorRecovered,
    /// A monitor failed with the maximum failover count reached.
    FinalAction,
    /// This node's cluster service stopped.
    ClusterStopped,
    /// This node's cluster service started again.
    ClusterStarted,
    /// The peer's cluster service stopped.
    PeerStopped,
    /// The peer's cluster service started again.
    PeerStarted,
    /// The cluster could not carry out a decision (a role change failed...).
    ClusterError,
    /// The active node found floating IPs missing and added them again.
    FloatingRestored,
    /// A name this version does not know.
    #[serde(other)]
    Other,
}

impl AlertEvent {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            AlertEvent::BackendDown => "backend_down",
            AlertEvent::BackendUp => "backend_up",
            AlertEvent::NoUsableBackend => "no_usable_backend",
            AlertEvent::ServiceRecovered => "service_recovered",
            AlertEvent::NeighbourResolved => "neighbour_resolved",
            AlertEvent::NeighbourUnresolved => "neighbour_unresolved",
            AlertEvent::ConfigApplied => "config_applied",
            AlertEvent::ConfigRejected => "config_rejected",
            AlertEvent::DaemonStarted => "daemon_started",
            AlertEvent::DaemonStopped => "daemon_stopped",
            AlertEvent::DataplaneReplaced => "dataplane_replaced",
            AlertEvent::BpffsPrivate => "bpffs_private",
            AlertEvent::SyncRefused => "sync_refused",
            AlertEvent::SyncFailed => "sync_failed",
            AlertEvent::SyncRecovered => "sync_recovered",
            AlertEvent::Failover => "failover",
            AlertEvent::Failback => "failback",
            AlertEvent::ClusterActive => "cluster_active",
            AlertEvent::ClusterStandby => "cluster_standby",
            AlertEvent::GroupMoved => "group_moved",
            AlertEvent::Isolated => "isolated",
            AlertEvent::DualActiveResolved => "dual_active_resolved",
            AlertEvent::MonitorFailover => "monitor_failover",
            AlertEvent::MonitorError => "monitor_error",
            AlertEvent::MonitorRecovered => "monitor_recovered",
            AlertEvent::FinalAction => "final_action",
            AlertEvent::ClusterStopped => "cluster_stopped",
            AlertEvent::ClusterStarted => "cluster_started",
            AlertEvent::PeerStopped => "peer_stopped",
            AlertEvent::PeerStarted => "peer_started",
            AlertEvent::ClusterError => "cluster_error",
            AlertEvent::FloatingRestored => "floating_restored",
            AlertEvent::Other => "other",
        }
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Info,
    Warning,
    Error,
}

impl fmt::Display for AlertLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertLevel::Info => "info",
            AlertLevel::Warning => "warning",
            AlertLevel::Error => "error",
        })
    }
}
