//! What the replication shows (`lb-ctl status`, metrics): the stream's side
//! on this node, whether it is caught up, its lag and its counters. Pure: the
//! edge (`cluster::replicate`) fills it from the stream's state machines.
use serde::{Deserialize, Serialize};

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

impl std::fmt::Display for StreamRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// Caught up for eligibility: a standby that must hear an active peer's
/// flows may take over (on request) only once it has applied the bulk copy;
/// with no active peer (lost, or none yet) there is no one else, and a node
/// is eligible as it is. `caught_up` is None when the node does not
/// replicate (then this adds no condition).
pub fn eligible(peer_active: bool, caught_up: Option<bool>) -> bool {
    !peer_active || caught_up.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_behind_an_active_peer_is_not_eligible_but_takes_over_a_lost_one() {
        assert!(!eligible(true, Some(false)));
        assert!(eligible(true, Some(true)));
        // The active peer is lost (or there is none): no one else.
        assert!(eligible(false, Some(false)));
        // A node that does not replicate adds no condition.
        assert!(eligible(true, None));
    }

    #[test]
    fn the_status_reads_in_json_with_snake_case_names() {
        let status = ReplicationStatus {
            stream: StreamRole::Receiving,
            caught_up: true,
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["stream"], "receiving");
        assert_eq!(json["caught_up"], true);
        assert!(json.get("last_error").is_none());
        let back: ReplicationStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
