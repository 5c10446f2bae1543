//! The local API: JSON over a Unix socket that only root can open. One set of
//! request and response types for the daemon, the CLI and the console.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | [`Status`] |
//! | GET | `/v1/services` | | `[ServiceView]` |
//! | GET | `/v1/stats` | | [`Stats`] |
//! | GET | `/v1/alerts?limit=N` | | `[Alert]` (oldest first) |
//! | GET | `/v1/config` | | the configuration (export) |
//! | PUT | `/v1/config` | a configuration (import) | [`Applied`] |
//! | POST | `/v1/changes` | [`Change`] | [`Applied`] |
//! | POST | `/v1/cluster/failover`, `/v1/cluster/failback` | | `{"accepted": ...}` |
//! | POST | `/v1/cluster/sync` | | `{"synchronized": ...}` (409: the peer did not take them) |
//!
//! Errors answer with a status (400 invalid, 404 no such service or backend,
//! 409 already exists or a standby's refusal, 500 the node failed) and an [`ApiError`] body.
use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use crate::{
    balancer::{BackendState, Mode, Protocol, ServiceName},
    config::{BackendConfig, ServiceConfig},
    health::Health,
    neighbours::Resolution,
    role::Role,
};

/// A service as the CLI names it: `tcp/198.18.0.100:80`,
/// `udp/[2001:db8::100]:53`.
pub type ServiceRef = ServiceName;

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (protocol, vip) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: write a service as PROTOCOL/VIP:PORT, e.g. tcp/198.18.0.100:80")
        })?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(format!("{s:?}: unknown protocol {other:?} (tcp or udp)")),
        };
        let vip = vip
            .parse()
            .map_err(|_| format!("{s:?}: {vip:?} is not an address:port (IPv6 in brackets)"))?;
        Ok(ServiceName { protocol, vip })
    }
}

/// A change to the LB configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    AddService {
        service: ServiceConfig,
    },
    /// Replaces a service's settings (mode, sorry server, name, health);
    /// its backends stay as they are unless `service.backends` is not empty.
    SetService {
        service: ServiceConfig,
    },
    DelService {
        service: ServiceRef,
    },
    AddBackend {
        service: ServiceRef,
        backend: BackendConfig,
    },
    DelBackend {
        service: ServiceRef,
        address: SocketAddr,
    },
    /// Changes a backend's weight and/or state.
    SetBackend {
        service: ServiceRef,
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<BackendState>,
    },
}

/// A change was applied and persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub generation: u64,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// The node at a glance (`lb-ctl status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub version: String,
    pub role: Role,
    pub generation: u64,
    pub uptime_seconds: u64,
    pub interfaces: Vec<String>,
    pub xdp_mode: String,
    /// True when this daemon adopted a program left attached by a previous
    /// one (restart without interruption).
    pub adopted: bool,
    pub services: usize,
    pub backends: usize,
    pub backends_down: usize,
    /// Backend addresses whose next hop's link-layer address cannot be
    /// resolved (or that have no route).
    #[serde(default)]
    pub neighbours_unresolved: usize,
    pub config_file: String,
    /// The pair, when this node is clustered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::node::ClusterStatus>,
}

/// Packets, bytes and new flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

impl From<lb_common::Traffic> for Traffic {
    fn from(t: lb_common::Traffic) -> Self {
        Traffic {
            packets: t.packets,
            bytes: t.bytes,
            new_flows: t.new_flows,
        }
    }
}

/// A service with its backends, their health and traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: ServiceRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry: Option<SocketAddr>,
    /// New flows go to the sorry server (or are dropped): no backend can
    /// take them.
    pub no_usable_backend: bool,
    pub traffic: Traffic,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    pub health: Health,
    pub traffic: Traffic,
    /// Whether the next hop towards the backend is resolved (its
    /// link-layer address known): `resolved`, `resolving`, `unresolved`,
    /// `no_route`. Independent of health checks.
    #[serde(default)]
    pub neighbour: Resolution,
    /// The neighbour entry the backend needs: the backend itself, or the
    /// gateway towards it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<NextHop>,
}

/// An address on an interface of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub address: IpAddr,
    pub interface: String,
}

/// Counters (`lb-ctl stats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Global packet counters by name (`forwarded`, `pass_not_service`...).
    pub counters: BTreeMap<String, u64>,
    pub services: Vec<ServiceView>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_refs_parse_and_print() {
        for text in ["tcp/198.18.0.100:80", "udp/[2001:db8::100]:53"] {
            let r: ServiceRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        for (bad, why) in [
            ("198.18.0.100:80", "write a service as PROTOCOL/VIP:PORT"),
            ("sctp/198.18.0.100:80", "unknown protocol \"sctp\""),
            ("tcp/198.18.0.100", "is not an address:port"),
        ] {
            let err = bad.parse::<ServiceRef>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn changes_have_a_stable_json_form() {
        let change = Change::SetBackend {
            service: "tcp/198.18.0.100:80".parse().unwrap(),
            address: "198.18.1.11:80".parse().unwrap(),
            weight: None,
            state: Some(BackendState::Drained),
        };
        let json = serde_json::to_string(&change).unwrap();
        assert_eq!(
            json,
            r#"{"op":"set_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.11:80","state":"drained"}"#
        );
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
        assert!(serde_json::from_str::<Change>(r#"{"op":"explode"}"#).is_err());
    }
}
