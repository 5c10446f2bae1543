//! The pair as a node sees it: [`ClusterStatus`] (in [`super::Status`]),
//! the monitors' states, the settings sync and the flow replication.
use std::{fmt, prelude::rust_2024::*};

use serde::{Deserialize, Serialize};

use super::status::Role;

/// The failovers to a node: the group taken from a peer that was lost or
/// handed it over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeovers {
    pub count: u64,
    /// When the last one happened (Unix seconds).
    pub last_unix: Option<u64>,
}

/// What the cluster's loop publishes (status, console, metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub role: Option<Role>,
    /// Since when (Unix seconds) this node has its role.
    pub since_unix: u64,
    pub peer_alive: bool,
    pub peer_role: Option<Role>,
    /// The peer's last heartbeat says it may take the group (it holds the
    /// active's settings and, replicating, has caught up with its flows).
    #[serde(default)]
    pub peer_eligible: bool,
    /// Per interconnect, in configuration order: heard within the dead time.
    pub links: Vec<(String, bool)>,
    pub monitors: Vec<(String, MonitorState)>,
    /// The same monitors on the peer, from its heartbeats (None: unknown:
    /// the peer is lost, or its version does not send them).
    #[serde(default)]
    pub peer_monitors: Vec<(String, Option<MonitorState>)>,
    /// This server's name and the peer's.
    #[serde(default)]
    pub servers: (String, String),
    pub healthy: bool,
    /// The last role change and why.
    pub last_change: Option<String>,
    /// Monitor-caused failovers still counted.
    pub failovers: usize,
    /// The failovers to this node since its daemon started.
    #[serde(default)]
    pub takeovers: Takeovers,
    /// This node's cluster service is stopped (Offline): it serves nothing.
    #[serde(default)]
    pub stopped: bool,
    /// The operator's stop is handing the group to the peer.
    #[serde(default)]
    pub stopping: bool,
    /// The peer's heartbeats say its cluster service is stopped (Offline).
    #[serde(default)]
    pub peer_stopped: bool,
    /// Heartbeats refused, by reason.
    pub refused: Vec<(String, u64)>,
    /// The settings this node holds: generation and hash (hex).
    #[serde(default)]
    pub settings: (u64, String),
    /// The settings the peer's last heartbeat reported.
    #[serde(default)]
    pub peer_settings: Option<(u64, String)>,
    /// The last push of the settings to the peer (the active's; filled in
    /// by the daemon, not by the loop).
    #[serde(default)]
    pub sync: Option<SyncState>,
    /// The flow replication (filled in by the daemon, not by the loop).
    #[serde(default)]
    pub replication: Option<ReplicationStatus>,
}

/// Whether the peer took the settings this node last pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncState {
    Synchronized { generation: u64 },
    NotSynchronized { reason: String },
}

/// A monitor's state on one server, as the manual shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorState {
    Normal,
    Error,
    /// Not running here now.
    Offline,
}

impl fmt::Display for MonitorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MonitorState::Normal => "normal",
            MonitorState::Error => "error",
            MonitorState::Offline => "offline",
        })
    }
}

/// This node's side of the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// Not started yet.
    #[default]
    Idle,
    /// The active: it sends its flows to the standby.
    Sending,
    /// The standby: it applies the active's flows.
    Receiving,
}

impl fmt::Display for StreamRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamRole::Idle => "idle",
            StreamRole::Sending => "sending",
            StreamRole::Receiving => "receiving",
        })
    }
}

/// The replication's state and counters on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub stream: StreamRole,
    /// A connection with the peer is up.
    pub connected: bool,
    /// Sending: the standby acknowledged the bulk copy of this epoch.
    /// Receiving: the bulk copy of the active's epoch is applied (eligible).
    pub caught_up: bool,
    /// The stream's epoch: the one this node sends (sending) or follows
    /// (receiving); 0 before any.
    pub epoch: u64,
    /// Sending: messages sent and not acknowledged.
    pub lag_messages: u64,
    /// Sending: the flows they carry.
    pub lag_flows: u64,
    /// Sending: how long the oldest has waited (ms).
    pub lag_ms: u64,
    /// Messages sent (sending) or applied (receiving).
    pub messages: u64,
    /// Flows sent (sending) or written into the tables (receiving).
    pub flows: u64,
    /// Messages sent again (after a gap report or a timeout).
    pub resends: u64,
    /// Gaps reported (receiving) or heard of (sending).
    pub gaps: u64,
    /// Resyncs (bulk copies) started (sending) or epochs begun (receiving).
    pub resyncs: u64,
    /// Long-lived flows re-sent by the periodic refresh (sending).
    pub refreshed: u64,
    /// Receiving: duplicates, messages of an older epoch, messages dropped
    /// ahead of a gap with no room to hold them.
    pub duplicates: u64,
    pub stale: u64,
    pub dropped: u64,
    /// Receiving: messages of the current epoch on another connection than
    /// the one it began on (ignored: the active sends an epoch on one
    /// connection).
    #[serde(default)]
    pub foreign: u64,
    /// Receiving: flows not applied, their service or backend unknown here.
    pub unknown_service: u64,
    pub unknown_backend: u64,
    /// Flows the program could not report (the ring was full): the
    /// `flow_records_lost` counter (filled in by the daemon).
    pub records_lost: u64,
    /// Frames that did not decode (the connection is closed; nothing
    /// applied) and connections refused at the TLS handshake.
    pub garbage: u64,
    pub refused_connections: u64,
    /// The last failure of the connection to the peer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
