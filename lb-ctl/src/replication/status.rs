//! What the replication shows (`lb-ctl status`, metrics): the stream's side
//! on this node, whether it is caught up, its lag and its counters. Pure: the
//! edge (`cluster::replicate`) fills it from the stream's state machines.
pub use lb_common::api::{ReplicationStatus, StreamRole};

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
