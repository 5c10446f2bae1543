//! The operator's requests to the cluster ([`Operation`]): carried to the
//! membership and worded for the operator; a stop on the active is
//! answered only once the peer holds the group ([`PendingStop`]).
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::super::{
    Role,
    membership::{Membership, StartOutcome, StopOutcome},
};
use super::ClusterEvent;

/// The operator's requests to the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Move the group to the peer.
    Failover,
    /// Move the group to the first server.
    Failback,
    /// Stop this node's cluster service (on the active: after the peer
    /// took the group; refused when it cannot).
    Stop,
    /// Stop it even when the peer cannot take the group.
    ForceStop,
    /// Start this node's cluster service again (as a standby).
    Start,
}

/// An operation and where to answer: what was done, or why it was refused.
pub type OperationRequest = (Operation, oneshot::Sender<Result<String, String>>);

/// How the loop answers an operation.
pub(super) enum Answer {
    /// At once.
    Now(Result<Done, String>),
    /// Once the peer holds the group (the operator's stop on the active).
    WhenHandedOver,
}

/// An operation done: the operator's message, and the event to log.
pub(super) struct Done {
    pub(super) message: String,
    pub(super) event: Option<ClusterEvent>,
}

impl Done {
    fn said(message: impl Into<String>) -> Done {
        Done {
            message: message.into(),
            event: None,
        }
    }
}

/// Carries an operation to the membership and words the outcome.
pub(super) fn operate(
    membership: &mut Membership,
    operation: Operation,
    now: Instant,
    peer: &str,
) -> Answer {
    let refused = |refusal: super::super::membership::Refusal| refusal.to_string();
    let result = match operation {
        Operation::Failover => membership
            .request_failover(now)
            .map(|()| {
                Done::said(format!(
                    "the group is moving to {peer} (`lb-ctl status` shows where it runs)"
                ))
            })
            .map_err(refused),
        Operation::Failback => membership
            .request_failback(now)
            .map(|()| {
                Done::said(
                    "the group is moving to the first server (`lb-ctl status` shows where it runs)",
                )
            })
            .map_err(refused),
        Operation::Stop | Operation::ForceStop => {
            match membership.request_stop(now, operation == Operation::ForceStop) {
                Ok(StopOutcome::HandingOver) => return Answer::WhenHandedOver,
                Ok(outcome) => Ok(stopped(outcome, peer)),
                Err(why) => Err(format!(
                    "not stopped, nothing changed: {why}; `lb-ctl cluster stop --force` stops this node anyway (the service is then down)"
                )),
            }
        }
        Operation::Start => match membership.request_start() {
            StartOutcome::AlreadyRunning => Ok(Done::said(
                "this node's cluster service is already running",
            )),
            StartOutcome::Stopping => Err(
                "a `cluster stop` is handing the group to the peer: start once it is done".into(),
            ),
            StartOutcome::Started => Ok(Done {
                message: "this node's cluster service is started: it rejoins as standby (eligible once it holds the active's settings)".into(),
                event: Some(ClusterEvent::ServiceChanged {
                    stopped: false,
                    forced: false,
                }),
            }),
        },
    };
    Answer::Now(result)
}

/// The answer to a stop done at once (not a handover).
fn stopped(outcome: StopOutcome, peer: &str) -> Done {
    let event = |forced| {
        Some(ClusterEvent::ServiceChanged {
            stopped: true,
            forced,
        })
    };
    match outcome {
        StopOutcome::AlreadyStopped => Done::said(
            "this node's cluster service is already stopped (`lb-ctl cluster start` starts it)",
        ),
        StopOutcome::Forced(why) => Done {
            message: format!(
                "this node's cluster service is stopped (forced) although {peer} could not take the group ({why}): the service is down until a node takes the group"
            ),
            event: event(true),
        },
        StopOutcome::Stopped | StopOutcome::HandingOver => Done {
            message: format!(
                "this node's cluster service is stopped: {peer} keeps the group and has no standby until `lb-ctl cluster start`"
            ),
            event: event(false),
        },
    }
}

/// An operator's stop on the active, waiting for the peer to hold the
/// group, answered at `deadline` at the latest.
pub(super) struct PendingStop {
    pub(super) deadline: Instant,
    pub(super) answers: Vec<oneshot::Sender<Result<String, String>>>,
}

impl PendingStop {
    /// The answer once there is one, with the event to log: stopped (the
    /// peer holds the group), or given up (the group came back, or the peer
    /// did not take it in time). `None`: still waiting.
    pub(super) fn progress(
        &self,
        membership: &mut Membership,
        now: Instant,
        peer: &str,
    ) -> Option<(Result<String, String>, Option<ClusterEvent>)> {
        if membership.stopped() {
            let moved = membership.peer(now).is_some_and(|p| p.role == Role::Active);
            let message = if moved {
                format!(
                    "the group moved to {peer}, which is active; this node's cluster service is stopped (`lb-ctl cluster start` starts it)"
                )
            } else {
                format!(
                    "this node's cluster service is stopped (forced) although {peer} did not take the group: the service is down until a node takes the group"
                )
            };
            let event = ClusterEvent::ServiceChanged {
                stopped: true,
                forced: !moved,
            };
            return Some((Ok(message), Some(event)));
        }
        if !membership.stop_pending() {
            let why = format!(
                "not stopped: {peer} could not take the group (it stopped, failed or was lost meanwhile): this node keeps it and its cluster service keeps running"
            );
            return Some((Err(why), None));
        }
        if now >= self.deadline {
            membership.cancel_stop();
            let why = format!(
                "not stopped: {peer} did not take the group in time; the cluster service keeps running (`lb-ctl status` shows where the group runs)"
            );
            return Some((Err(why), None));
        }
        None
    }
}
