//! What the cluster's loop publishes of itself: the [`ClusterStatus`]
//! (status, console, metrics), with the failovers to this node and the
//! settings sync's state.
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::super::{
    Role,
    config::ClusterConfig,
    heartbeat,
    link::RefusedCounts,
    membership::{Membership, Reason},
    monitors::Monitors,
    sync::hex,
};

// What it publishes is an API value (in `lb-ctl status`): the types are
// `lb_common::api`'s.
pub use lb_common::api::{ClusterStatus, SyncState, Takeovers};

/// Counts a role change made `at` in `takeovers` when it is a failover to
/// this node: the group taken from a peer that was lost or handed it over.
pub fn count_takeover(takeovers: &mut Takeovers, role: Role, reason: Reason, at: SystemTime) {
    if role == Role::Active && matches!(reason, Reason::PeerLost | Reason::Handover) {
        takeovers.count += 1;
        takeovers.last_unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
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
        count_takeover(&mut t, Role::Active, Reason::NobodyActive, at);
        count_takeover(&mut t, Role::Active, Reason::PeerNeverHeard, at);
        count_takeover(&mut t, Role::Standby, Reason::Operator, at);
        assert_eq!(t, Takeovers::default());
        count_takeover(&mut t, Role::Active, Reason::PeerLost, at);
        count_takeover(
            &mut t,
            Role::Active,
            Reason::Handover,
            at + Duration::from_secs(5),
        );
        assert_eq!(
            t,
            Takeovers {
                count: 2,
                last_unix: Some(1_795_618_450)
            }
        );
    }
}
