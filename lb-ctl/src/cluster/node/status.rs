//! What the cluster's loop publishes of itself: the [`ClusterStatus`]
//! (status, console, metrics), with the failovers to this node and the
//! settings sync's state.
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::super::{
    Role,
    config::ClusterConfig,
    heartbeat,
    link::RefusedCounts,
    membership::{Membership, Reason},
    monitors::{MonitorState, Monitors},
    sync::hex,
};

/// The failovers to a node: the group taken from a peer that was lost or
/// handed it over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeovers {
    pub count: u64,
    /// When the last one happened (Unix seconds).
    pub last_unix: Option<u64>,
}

impl Takeovers {
    /// Counts a role change made `at` when it is a failover to this node.
    pub fn observe(&mut self, role: Role, reason: Reason, at: SystemTime) {
        if role == Role::Active && matches!(reason, Reason::PeerLost | Reason::Handover) {
            self.count += 1;
            self.last_unix = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
        }
    }
}

/// What the loop publishes (status, console, metrics).
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
    pub replication: Option<crate::replication::status::ReplicationStatus>,
}

/// Whether the peer took the settings this node last pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncState {
    Synchronized { generation: u64 },
    NotSynchronized { reason: String },
}

#[allow(clippy::too_many_arguments)]
pub(super) fn publish(
    status: &watch::Sender<ClusterStatus>,
    membership: &Membership,
    monitors: &Monitors,
    cluster: &ClusterConfig,
    now: Instant,
    since: SystemTime,
    last_change: &Option<String>,
    refused: &RefusedCounts,
    settings: (u64, [u8; 32]),
    peer_monitors: u16,
    takeovers: Takeovers,
) {
    let role = membership.role();
    let peer = membership.peer(now);
    let monitor_states = monitors.states(role, now);
    // The peer's states as its last heartbeat gave them; unknown while it
    // is lost.
    let peer_states = match peer {
        Some(_) => heartbeat::unpack_monitors(peer_monitors, monitor_states.len()),
        None => vec![None; monitor_states.len()],
    };
    let next = ClusterStatus {
        role: Some(role),
        since_unix: since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        peer_alive: peer.is_some(),
        peer_role: peer.map(|p| p.role),
        peer_eligible: peer.is_some_and(|p| p.eligible),
        links: cluster
            .interconnects
            .iter()
            .zip(membership.links_up(now))
            .map(|(ic, up)| (ic.name.clone(), up))
            .collect(),
        peer_monitors: monitor_states
            .iter()
            .zip(peer_states)
            .map(|((name, _, _), state)| (name.clone(), state))
            .collect(),
        monitors: monitor_states
            .into_iter()
            .map(|(name, _, state)| (name, state))
            .collect(),
        servers: {
            let params = membership.params();
            let name = |i: u8| {
                cluster
                    .servers
                    .get(i as usize)
                    .map(|s| s.name.clone())
                    .unwrap_or_default()
            };
            (name(params.me), name(params.peer))
        },
        healthy: membership.healthy(),
        last_change: last_change.clone(),
        takeovers,
        failovers: membership.failovers(now),
        stopped: membership.stopped(),
        stopping: membership.stop_pending(),
        peer_stopped: peer.is_some_and(|p| p.stopped),
        refused: refused
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.name().to_owned(), *v)).collect())
            .unwrap_or_default(),
        settings: (settings.0, hex(&settings.1)),
        peer_settings: peer.map(|p| (p.generation, hex(&p.settings_hash))),
        sync: None,
        replication: None,
    };
    status.send_if_modified(|current| {
        let changed = *current != next;
        if changed {
            *current = next;
        }
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_group_taken_from_a_lost_or_yielding_peer_counts_as_a_failover() {
        let mut t = Takeovers::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_618_445);
        t.observe(Role::Active, Reason::NobodyActive, at);
        t.observe(Role::Active, Reason::PeerNeverHeard, at);
        t.observe(Role::Standby, Reason::Operator, at);
        assert_eq!(t, Takeovers::default());
        t.observe(Role::Active, Reason::PeerLost, at);
        t.observe(Role::Active, Reason::Handover, at + Duration::from_secs(5));
        assert_eq!(
            t,
            Takeovers {
                count: 2,
                last_unix: Some(1_795_618_450)
            }
        );
    }
}
