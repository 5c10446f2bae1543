//! The local API: JSON over a Unix socket that only root can open. One set of
//! request and response types for the daemon, the CLI and the console, the
//! values they carry, and the [`Client`].
//!
//! Plain data: serde (the JSON on the socket, and the TOML of the
//! configuration file, which is the same [`Config`]), `Display` and parsing
//! (`tcp/198.18.0.100:80`), and the checks a value makes of itself (a
//! health check's ranges). No I/O but the client's, and no daemon logic:
//! what validates a configuration against the balancer's rules, reads and
//! writes the file, plans the maps or runs the checks is `lb-ctl`'s.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | [`Status`] |
//! | GET | `/v1/services` | | `[ServiceView]` |
//! | GET | `/v1/stats` | | [`Stats`] |
//! | GET | `/v1/alerts?limit=N` | | `[Alert]` (oldest first) |
//! | GET | `/v1/config` | | the configuration (export) |
//! | PUT | `/v1/config` | a configuration (import) | [`Applied`] |
//! | POST | `/v1/config/check` | a configuration | [`ConfigCheck`]: what `PUT` would do; nothing changed |
//! | POST | `/v1/changes` | [`Change`] | [`Applied`] |
//! | POST | `/v1/cluster/{failover,failback,stop,force-stop,start}` | | `{"accepted": ..., "message": ...}` (409: refused, with the reason) |
//! | POST | `/v1/cluster/sync` | | `{"synchronized": ...}` (409: the peer did not take them) |
//!
//! Errors answer with a status (400 invalid, 404 no such service or backend,
//! 409 already exists or a standby's refusal, 500 the node failed) and an [`ApiError`] body.
use std::{collections::BTreeMap, fmt, net::SocketAddr, prelude::rust_2024::*, str::FromStr};

use serde::{Deserialize, Serialize};

pub mod alert;
pub mod client;
pub mod cluster;
pub mod config;
pub mod health;
pub mod service;
pub mod status;

pub use alert::{Alert, AlertEvent, AlertLevel};
pub use client::{Client, ClientError};
pub use cluster::{
    ClusterStatus, MonitorState, ReplicationStatus, StreamRole, SyncState, Takeovers,
};
pub use config::{ClusterConfig, Config, LogFormat, Node, XdpMode, default_api_socket};
pub use health::{Check, HealthSpec, Timing};
pub use service::{
    BackendConfig, BackendState, BackendView, Health, Mode, NextHop, Protocol, Resolution,
    ServiceConfig, ServiceName, ServiceRef, ServiceView, Traffic,
};
pub use status::{Role, Status};

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

/// What `PUT /v1/config` would do with a configuration (`POST
/// /v1/config/check`): the same checks, nothing changed. Answered with 200
/// whatever the verdict (a request that is no configuration at all gets
/// 400).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigCheck {
    /// `PUT /v1/config` would apply it.
    pub valid: bool,
    /// Why not (None when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ConfigProblem>,
    /// The `[cluster]` keys it changes, all of which the running cluster
    /// takes live (`cluster.monitors`, `cluster.auto_failback`...); empty
    /// when the section is the same.
    #[serde(default)]
    pub cluster_changes: Vec<String>,
}

/// A configuration's problem: where and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The key it is about, from the document's root
    /// (`cluster.monitors[1].interval_ms`, `services[0].backends[2]`; for
    /// keys that cannot change while running the first of them,
    /// `cluster.heartbeat_interval_ms`, or `cluster` when the section is
    /// added or removed); None when it is about the whole (a standby's
    /// refusal, the `[node]` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
}

/// A change was applied and persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub generation: u64,
}

/// An operation on the pair: `POST /v1/cluster/{operation}`, with the
/// path's spelling (`force-stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterOperation {
    /// Move the group to the peer.
    Failover,
    /// Move the group back to the preferred server.
    Failback,
    /// Stop this node's cluster service (the active hands the group over
    /// first; refused when the peer cannot take it).
    Stop,
    /// Stop it even when the peer cannot take the group.
    ForceStop,
    /// Start it again (a standby).
    Start,
}

impl ClusterOperation {
    pub const ALL: [ClusterOperation; 5] = [
        ClusterOperation::Failover,
        ClusterOperation::Failback,
        ClusterOperation::Stop,
        ClusterOperation::ForceStop,
        ClusterOperation::Start,
    ];

    /// The name in the path and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ClusterOperation::Failover => "failover",
            ClusterOperation::Failback => "failback",
            ClusterOperation::Stop => "stop",
            ClusterOperation::ForceStop => "force-stop",
            ClusterOperation::Start => "start",
        }
    }

    /// The API's path of the operation.
    pub fn path(self) -> String {
        format!("/v1/cluster/{}", self.name())
    }
}

impl fmt::Display for ClusterOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClusterOperation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ClusterOperation::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                format!(
                    "no cluster operation {s:?} (failover, failback, stop, force-stop, start, sync)"
                )
            })
    }
}

/// A cluster operation was carried out (`POST /v1/cluster/{operation}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: ClusterOperation,
    /// What the node did, for people.
    pub message: String,
}

/// The standby took the settings (`POST /v1/cluster/sync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synchronized {
    /// What was pushed, for people.
    pub synchronized: String,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Counters (`lb-ctl stats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Global packet counters by name (`forwarded`, `pass_not_service`...).
    pub counters: BTreeMap<String, u64>,
    pub services: Vec<ServiceView>,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_config_check_has_a_stable_json_form() {
        let check = ConfigCheck {
            valid: false,
            error: Some(ConfigProblem {
                key: Some("cluster.monitors[0].retries".into()),
                message: "cluster: monitor \"uplink\": retries must be at least 1".into(),
            }),
            cluster_changes: Vec::new(),
        };
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(
            json,
            r#"{"valid":false,"error":{"key":"cluster.monitors[0].retries","message":"cluster: monitor \"uplink\": retries must be at least 1"},"cluster_changes":[]}"#
        );
        assert_eq!(serde_json::from_str::<ConfigCheck>(&json).unwrap(), check);
        assert_eq!(
            serde_json::from_str::<ConfigCheck>(r#"{"valid":true}"#).unwrap(),
            ConfigCheck {
                valid: true,
                error: None,
                cluster_changes: Vec::new()
            }
        );
    }

    #[test]
    fn cluster_operations_are_spelled_as_in_their_path() {
        for op in ClusterOperation::ALL {
            assert_eq!(op.name().parse::<ClusterOperation>(), Ok(op));
            assert_eq!(
                serde_json::to_string(&op).unwrap(),
                format!("\"{}\"", op.name())
            );
        }
        assert_eq!(ClusterOperation::ForceStop.path(), "/v1/cluster/force-stop");
        assert!("sync".parse::<ClusterOperation>().is_err());
        let answer = Accepted {
            accepted: ClusterOperation::ForceStop,
            message: "stopped".into(),
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"accepted":"force-stop","message":"stopped"}"#
        );
    }
}
