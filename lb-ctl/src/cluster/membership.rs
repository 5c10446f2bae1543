//! Membership: which of the two nodes serves. A pure state machine: the
//! node's event loop feeds it what it observed (heartbeats, network-partition
//! checks, its own monitors, the operator's requests) and asks it what to do
//! ([`Membership::decide`]); the loop carries out a role change (role map,
//! floating IPs...) and only then [`commits`](Membership::commit) it, as
//! `Balancer::plan` does for map changes.
//!
//! The rules, in order of precedence:
//! - A node is a *candidate* to serve when its monitors are all Normal, it
//!   holds the active's current settings (eligible) and it is not yielding.
//! - Peer alive (heard on any interconnect within the dead time):
//!   - both active (a healed partition, a restart): the configured survivor
//!     stays, the other steps down at once;
//!   - I am active and wish to hand over (the operator's failover or
//!     failback, a failed monitor, automatic failback): when the peer is a
//!     standby candidate, I step down first and yield; the peer then sees
//!     nobody active and a yielding node, and takes over. Never two active;
//!   - nobody active: the candidate takes over; of two candidates, the one
//!     first in `[[cluster.servers]]`.
//! - Peer lost (every interconnect silent for the dead time, or not heard
//!   since start): with NP targets configured, a check made after the loss
//!   decides: an active that reaches none steps down (it is the isolated
//!   one), a standby candidate that reaches one takes over; without targets
//!   the standby candidate takes over and the active stays.
//! - An active whose peer is lost keeps serving even with a failed monitor
//!   (there is nobody to hand over to).
//! - A node whose cluster service is stopped (the operator's `cluster stop`,
//!   or the final action `stop`) serves nothing and never becomes active,
//!   not even by dual-active resolution; it keeps sending heartbeats that
//!   say so, and its peer shows it Offline: alive (never lost, no failover),
//!   just no candidate. The operator's stop on the active first hands the
//!   group over as a failover does and stops only once the peer holds it;
//!   it is refused (nothing changes) when the peer cannot take the group,
//!   unless forced. `cluster start` makes it a standby again, under the
//!   usual rules.
use std::time::{Duration, Instant};

use super::Role;

/// The cluster's settings that decide membership.
#[derive(Clone, Debug)]
pub struct Params {
    /// This node's index in `[[cluster.servers]]` (0 is the preferred one).
    pub me: u8,
    /// The peer's index.
    pub peer: u8,
    /// Number of interconnects.
    pub links: usize,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Heartbeats missed on every interconnect before the peer is lost.
    pub lost_after: u32,
    /// NP (network partition) targets are configured.
    pub np_targets: bool,
    /// How long an NP answer stays good while the peer stays lost.
    pub np_recheck: Duration,
    /// Give the group back to the preferred server when it is a candidate.
    pub auto_failback: bool,
    /// The server that keeps serving when both are found active.
    pub survivor: u8,
    /// Failovers a failed monitor may cause before the final action.
    pub max_failovers: u32,
    /// A failover older than this no longer counts against the maximum.
    pub failover_window: Duration,
}

impl Params {
    /// How long the peer may be silent on every interconnect.
    pub fn dead_time(&self) -> Duration {
        self.interval * self.lost_after
    }

    fn preferred(&self) -> u8 {
        self.me.min(self.peer)
    }
}

/// Why a node changes role, or asks the peer to take the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The peer is lost and NP resolution (if any) says we are not isolated.
    PeerLost,
    /// The peer was never heard since this node started (it is not up, or
    /// no interconnect reaches it) and NP resolution (if any) says we are
    /// not isolated: a start alone, not a failover.
    PeerNeverHeard,
    /// Both nodes up, neither active (start, or after a step-down).
    NobodyActive,
    /// The peer yielded the group to us.
    Handover,
    /// Both were active; we are not the survivor.
    DualActive,
    /// The peer is lost and we reach no NP target.
    Isolated,
    /// The operator moved the group (failover, failback, cluster stop).
    Operator,
    /// One of our monitors failed.
    MonitorFailed,
    /// Automatic failback to the preferred server.
    AutoFailback,
    /// This node's cluster service stopped (the operator's `cluster stop`,
    /// or the final action `stop`).
    Stopped,
}

impl std::fmt::Display for Reason {
    /// The operator's words for it (alerts, status).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::PeerLost => "the peer was lost",
            Reason::PeerNeverHeard => "started with no peer heard",
            Reason::NobodyActive => "neither node was active",
            Reason::Handover => "the peer handed the group over",
            Reason::DualActive => "both nodes were active, the peer keeps the group",
            Reason::Isolated => "the peer was lost and no NP target answers",
            Reason::Operator => "moved by the operator",
            Reason::MonitorFailed => "a monitor failed",
            Reason::AutoFailback => "automatic failback",
            Reason::Stopped => "the cluster service stopped",
        })
    }
}

/// What the event loop should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Stay,
    /// Change role (then [`Membership::commit`]).
    Become(Role, Reason),
    /// Run the NP check (ping the targets) and report with
    /// [`Membership::observe_np`].
    CheckNp,
    /// A failed monitor would move the group, but the maximum failover count
    /// is reached: the configured final action applies.
    FinalAction,
}

/// The peer as its last heartbeat described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub role: Role,
    pub healthy: bool,
    pub eligible: bool,
    pub yielding: bool,
    pub generation: u64,
    pub settings_hash: [u8; 32],
    /// Its cluster service is stopped (Offline): alive, but it takes nothing.
    pub stopped: bool,
}

impl PeerView {
    fn candidate(&self) -> bool {
        self.able() && !self.yielding
    }

    /// It could serve: monitors Normal, settings current, service running.
    fn able(&self) -> bool {
        self.healthy && self.eligible && !self.stopped
    }
}

/// Why the operator's request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this node is not active: run it on the active node")]
    NotActive,
    #[error("the peer is not reachable on any interconnect")]
    PeerLost,
    #[error("the peer's cluster service is stopped (run `lb-ctl cluster start` on it first)")]
    PeerStopped,
    #[error(
        "the peer cannot take the group (a monitor failed, or it has not caught up with the settings or the flows)"
    )]
    PeerNotCandidate,
    #[error("the group already runs on the preferred server")]
    AlreadyPreferred,
}

/// What the operator's `cluster stop` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The service was stopped already: nothing changed.
    AlreadyStopped,
    /// Stopped now (a standby; an active steps down at its next decision).
    Stopped,
    /// Forced although the peer cannot take the group (why not): stopped
    /// now, the group is served by nobody unless the peer takes it.
    Forced(Refusal),
    /// The active hands the group to the peer; the service stops once the
    /// peer holds it ([`Membership::stop_pending`] until then).
    HandingOver,
}

/// What the operator's `cluster start` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The service was running: nothing changed.
    AlreadyRunning,
    /// A stop is under way (the group moves to the peer): nothing changed.
    Stopping,
    /// The node is a standby again.
    Started,
}

#[derive(Clone, Debug)]
pub struct Membership {
    p: Params,
    role: Role,
    started: Instant,
    /// When each interconnect last carried a heartbeat.
    heard: Vec<Option<Instant>>,
    peer: Option<PeerView>,
    /// When the peer was first found lost (since it was last alive).
    lost_since: Option<Instant>,
    /// The last NP answer and when it came.
    np: Option<(Instant, bool)>,
    np_pending: bool,
    healthy: bool,
    eligible: bool,
    /// Why we want the peer to take the group (set while active), or why we
    /// gave it (while standby, until the peer is active).
    handover: Option<Reason>,
    /// Monitor-caused failovers, for the maximum.
    failovers: Vec<Instant>,
    /// The cluster service is stopped (the operator's `cluster stop`, the
    /// final action): serve nothing until `cluster start` (or a restart).
    stopped: bool,
    /// The operator's stop waits for the peer to take the group.
    stop_pending: bool,
    /// ... and was forced: should the handover fail, stop anyway.
    stop_forced: bool,
    /// When an NP check answered again after an isolation (none since).
    rejoined: Option<Instant>,
    /// The sequence number of the heartbeat `peer` comes from.
    peer_seq: u64,
    /// When the peer was heard again after it was lost (or first heard).
    peer_back: Option<Instant>,
    /// Until when this node's silence from the peer proves nothing: its
    /// own loop was stalled, and the peer's heartbeats may still wait in
    /// the sockets ([`Membership::observe_own_stall`]).
    deaf_until: Option<Instant>,
}

impl Membership {
    /// A node starting with `role`: standby, or active when it adopted a
    /// data plane that was serving (a daemon restart inside the lease).
    pub fn new(p: Params, role: Role, now: Instant) -> Self {
        let links = p.links;
        Membership {
            p,
            role,
            started: now,
            heard: vec![None; links],
            peer: None,
            lost_since: None,
            np: None,
            np_pending: false,
            healthy: true,
            eligible: true,
            handover: None,
            failovers: Vec::new(),
            stopped: false,
            stop_pending: false,
            stop_forced: false,
            rejoined: None,
            peer_seq: 0,
            peer_back: None,
            deaf_until: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// New parameters from the operator's live change of `[cluster]`
    /// (`config::live`): failback, survivor, the failover limits, NP. Who
    /// this node is, its links and its timing stay (a change of those is
    /// refused before it gets here); the state (role, peer, counted
    /// failovers) is kept.
    pub fn reconfigure(&mut self, p: Params) {
        debug_assert_eq!(
            (p.me, p.peer, p.links, p.interval, p.lost_after),
            (
                self.p.me,
                self.p.peer,
                self.p.links,
                self.p.interval,
                self.p.lost_after
            ),
            "only the live parameters change"
        );
        self.p = p;
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// This node's own loop was stalled (it did not pass for longer than a
    /// heartbeat interval): what the peer sent meanwhile may still wait
    /// unread, so for one interval from now a silent peer is not taken for
    /// lost. A peer that really died is found lost one interval later; a
    /// busy node does not take the group from a live peer (seen on a loaded
    /// 2-core machine: a stall past the dead time, then both active).
    pub fn observe_own_stall(&mut self, now: Instant) {
        self.deaf_until = Some(now + self.p.interval);
    }

    /// How long ago each interconnect last carried a heartbeat (None:
    /// never), for the log when the peer is found lost.
    pub fn heard_ago(&self, now: Instant) -> Vec<Option<Duration>> {
        self.heard
            .iter()
            .map(|at| at.map(|at| now.saturating_duration_since(at)))
            .collect()
    }

    /// The peer's last heartbeat, while it is alive.
    pub fn peer(&self, now: Instant) -> Option<PeerView> {
        self.peer_alive(now).then_some(self.peer).flatten()
    }

    /// Whether each interconnect heard the peer within the dead time.
    pub fn links_up(&self, now: Instant) -> Vec<bool> {
        self.heard
            .iter()
            .map(|heard| {
                heard.is_some_and(|t| now.saturating_duration_since(t) < self.p.dead_time())
            })
            .collect()
    }

    /// What this node says of itself in its heartbeats.
    pub fn yielding(&self) -> bool {
        self.handover.is_some()
    }

    pub fn healthy(&self) -> bool {
        self.healthy && !self.stopped
    }

    /// The final action `stop` (and a forced or standby `cluster stop`):
    /// the node steps down (if active) and serves nothing until started;
    /// its heartbeats say it is stopped, so the peer takes the group.
    pub fn stop_service(&mut self) {
        self.stopped = true;
        self.stop_pending = false;
        self.stop_forced = false;
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The operator's stop is handing the group to the peer.
    pub fn stop_pending(&self) -> bool {
        self.stop_pending
    }

    pub fn eligible(&self) -> bool {
        self.eligible
    }

    /// Monitor-caused failovers that still count against the maximum.
    pub fn failovers(&self, now: Instant) -> usize {
        self.counted_failovers(now).count()
    }

    fn counted_failovers(&self, now: Instant) -> impl Iterator<Item = &Instant> {
        self.failovers
            .iter()
            .filter(move |t| now.saturating_duration_since(**t) < self.p.failover_window)
    }

    fn peer_alive(&self, now: Instant) -> bool {
        self.links_up(now).into_iter().any(|up| up)
    }

    /// An authentic, fresh heartbeat from the peer on interconnect `link`.
    /// An authentic heartbeat, `seq` its sequence number. Only the newest
    /// describes the peer: heartbeats a link held back (queued while it was
    /// down, for one) may arrive after newer ones.
    pub fn observe_heartbeat(&mut self, now: Instant, link: usize, seq: u64, view: PeerView) {
        if !self.peer_alive(now) {
            self.peer_back = Some(now);
        }
        if let Some(slot) = self.heard.get_mut(link) {
            *slot = Some(now);
        }
        if self.peer.is_some() && seq < self.peer_seq {
            return;
        }
        self.peer_seq = seq;
        self.peer = Some(view);
        self.lost_since = None;
        self.rejoined = None;
        // Our handover is complete once the peer serves; so is the first
        // half of the operator's stop.
        if self.role == Role::Standby && view.role == Role::Active {
            self.handover = None;
            if self.stop_pending {
                self.stop_service();
            }
        }
    }

    /// The NP check's answer: whether any target answered.
    pub fn observe_np(&mut self, now: Instant, reachable: bool) {
        // Back from isolation: the network answers again, but the peer's
        // heartbeats may not have arrived yet. Give them the dead time
        // before concluding that the peer is gone.
        if reachable && matches!(self.np, Some((_, false))) {
            self.rejoined = Some(now);
        }
        self.np = Some((now, reachable));
        self.np_pending = false;
    }

    /// Our monitors: all Normal or not. A failure while active asks the peer
    /// to take the group.
    pub fn observe_monitors(&mut self, healthy: bool) {
        self.healthy = healthy;
        if !healthy && self.role == Role::Active && self.handover.is_none() {
            self.handover = Some(Reason::MonitorFailed);
        }
        if healthy && self.handover == Some(Reason::MonitorFailed) && self.role == Role::Active {
            self.handover = None;
        }
    }

    /// Whether we hold the active's current settings (from the sync layer).
    pub fn observe_eligible(&mut self, eligible: bool) {
        self.eligible = eligible;
    }

    /// The operator's failover: move the group to the peer.
    pub fn request_failover(&mut self, now: Instant) -> Result<(), Refusal> {
        self.check_can_hand_over(now)?;
        self.handover = Some(Reason::Operator);
        Ok(())
    }

    /// The operator's failback: move the group to the preferred server.
    pub fn request_failback(&mut self, now: Instant) -> Result<(), Refusal> {
        if self.p.me == self.p.preferred() {
            return Err(Refusal::AlreadyPreferred);
        }
        self.check_can_hand_over(now)?;
        self.handover = Some(Reason::Operator);
        Ok(())
    }

    fn check_can_hand_over(&self, now: Instant) -> Result<(), Refusal> {
        if self.role != Role::Active {
            return Err(Refusal::NotActive);
        }
        let peer = self.peer(now).ok_or(Refusal::PeerLost)?;
        if peer.stopped {
            return Err(Refusal::PeerStopped);
        }
        if !peer.candidate() {
            return Err(Refusal::PeerNotCandidate);
        }
        Ok(())
    }

    /// The operator's `cluster stop`. A standby stops at once. The active
    /// hands the group to the peer first (as a failover) and stops once the
    /// peer holds it; when the peer cannot take it, the stop is refused and
    /// nothing changes, unless `force` (then it stops at once).
    pub fn request_stop(&mut self, now: Instant, force: bool) -> Result<StopOutcome, Refusal> {
        if self.stopped {
            return Ok(StopOutcome::AlreadyStopped);
        }
        if self.stop_pending {
            return Ok(StopOutcome::HandingOver);
        }
        if self.role == Role::Standby {
            self.stop_service();
            return Ok(StopOutcome::Stopped);
        }
        match self.check_can_hand_over(now) {
            Ok(()) => {
                // Forced or not, a peer that can take the group gets it
                // first.
                self.handover = Some(Reason::Operator);
                self.stop_pending = true;
                self.stop_forced = force;
                Ok(StopOutcome::HandingOver)
            }
            Err(why) if force => {
                self.stop_service();
                Ok(StopOutcome::Forced(why))
            }
            Err(why) => Err(why),
        }
    }

    /// Gives up an operator's stop whose handover did not complete in time
    /// (the event loop's bound): the node goes on as after a failover
    /// request; an active that has not stepped down keeps the group. A
    /// forced stop stops now instead.
    pub fn cancel_stop(&mut self) {
        if self.stop_pending && self.stop_forced {
            self.stop_service();
            return;
        }
        if self.stop_pending && self.role == Role::Active {
            self.handover = None;
        }
        self.stop_pending = false;
    }

    /// The operator's `cluster start`: a stopped node becomes a standby
    /// that takes the group only under the usual rules. Its failover count
    /// starts again (as after a restart), so a node the final action
    /// stopped is not stopped again by its next monitor failure.
    pub fn request_start(&mut self) -> StartOutcome {
        if self.stop_pending {
            return StartOutcome::Stopping;
        }
        if !self.stopped {
            return StartOutcome::AlreadyRunning;
        }
        self.stopped = false;
        self.handover = None;
        self.failovers.clear();
        StartOutcome::Started
    }

    /// What to do now. Pure: call as often as convenient (after every event
    /// and on a timer of a fraction of the heartbeat interval).
    pub fn decide(&self, now: Instant) -> Decision {
        if self.stopped {
            return match self.role {
                Role::Active => Decision::Become(Role::Standby, Reason::Stopped),
                Role::Standby => Decision::Stay,
            };
        }
        match self.peer(now) {
            Some(peer) => match self.decide_with_peer(now, peer) {
                // A peer just heard again may first deliver heartbeats that a
                // link held back: this node takes the group only from a view
                // at least one interval old. Stepping down needs no wait.
                Decision::Become(Role::Active, _)
                    if self
                        .peer_back
                        .is_some_and(|at| now.saturating_duration_since(at) < self.p.interval) =>
                {
                    Decision::Stay
                }
                decision => decision,
            },
            None if self.deaf_until.is_some_and(|until| now < until) => Decision::Stay,
            None => self.decide_alone(now),
        }
    }

    fn decide_with_peer(&self, now: Instant, peer: PeerView) -> Decision {
        match (self.role, peer.role) {
            (Role::Active, Role::Active) => {
                // A stopped peer steps down on its own, whoever survives.
                if self.p.me == self.p.survivor || peer.stopped {
                    Decision::Stay
                } else {
                    Decision::Become(Role::Standby, Reason::DualActive)
                }
            }
            (Role::Active, Role::Standby) => match self.wanted_handover() {
                Some(_) if !peer.candidate() => Decision::Stay,
                Some(Reason::MonitorFailed)
                    if self.counted_failovers(now).count() >= self.p.max_failovers as usize =>
                {
                    Decision::FinalAction
                }
                Some(reason) => Decision::Become(Role::Standby, reason),
                None => Decision::Stay,
            },
            (Role::Standby, Role::Active) => Decision::Stay,
            (Role::Standby, Role::Standby) => {
                // Nobody serves: the one that can takes it; of two, the one
                // the other yielded to, else the first server.
                let i_can = self.healthy && self.eligible;
                let peer_can = peer.able();
                let me_first = self.p.me < self.p.peer;
                let take = i_can
                    && (!peer_can
                        || match (self.yielding(), peer.yielding) {
                            (false, true) => true,
                            (true, false) => false,
                            _ => me_first,
                        });
                match (take, peer.yielding) {
                    (false, _) => Decision::Stay,
                    (true, true) => Decision::Become(Role::Active, Reason::Handover),
                    (true, false) => Decision::Become(Role::Active, Reason::NobodyActive),
                }
            }
        }
    }

    /// The handover an active node wants: asked for, or automatic failback.
    fn wanted_handover(&self) -> Option<Reason> {
        self.handover.or_else(|| {
            (self.p.auto_failback && self.p.me != self.p.preferred())
                .then_some(Reason::AutoFailback)
        })
    }

    fn decide_alone(&self, now: Instant) -> Decision {
        // At start the peer may simply not have been heard yet.
        if now.saturating_duration_since(self.started) < self.p.dead_time() {
            return Decision::Stay;
        }
        let may_serve = match self.role {
            Role::Active => true,
            Role::Standby => self.healthy && self.eligible,
        };
        if !may_serve {
            return Decision::Stay;
        }
        if self.p.np_targets {
            let since = self.lost_since.unwrap_or(self.started);
            let fresh = self.np.filter(|(at, _)| {
                *at >= since && now.saturating_duration_since(*at) < self.p.np_recheck
            });
            match (fresh, self.role) {
                (None, _) if self.np_pending => Decision::Stay,
                (None, _) => Decision::CheckNp,
                (Some((_, false)), Role::Active) => {
                    Decision::Become(Role::Standby, Reason::Isolated)
                }
                (Some((_, false)), Role::Standby) => Decision::Stay,
                (Some((_, true)), Role::Standby)
                    if self.rejoined.is_some_and(|at| {
                        now.saturating_duration_since(at) < self.p.dead_time()
                    }) =>
                {
                    Decision::Stay
                }
                (Some((_, true)), Role::Standby) => {
                    Decision::Become(Role::Active, self.lost_reason())
                }
                (Some((_, true)), Role::Active) => Decision::Stay,
            }
        } else {
            match self.role {
                Role::Standby => Decision::Become(Role::Active, self.lost_reason()),
                Role::Active => Decision::Stay,
            }
        }
    }

    /// Why a standby takes the group from a peer it does not hear.
    fn lost_reason(&self) -> Reason {
        if self.heard.iter().all(Option::is_none) {
            Reason::PeerNeverHeard
        } else {
            Reason::PeerLost
        }
    }

    /// The loop started the NP check that [`decide`](Self::decide) asked for.
    pub fn np_started(&mut self) {
        self.np_pending = true;
    }

    /// Marks the moment the peer was found lost, and settles an operator's
    /// stop whose handover fails (the peer can no longer take the group:
    /// lost, stopped, failed meanwhile): a forced stop stops now (instead
    /// of taking the group back); otherwise an active that has not stepped
    /// down keeps the group, and one that has takes it back by the usual
    /// rules. Call on every tick, before deciding (cheap).
    pub fn tick(&mut self, now: Instant) {
        if !self.peer_alive(now) && self.lost_since.is_none() {
            self.lost_since = Some(now);
        }
        if !self.stop_pending {
            return;
        }
        let peer = self.peer(now);
        let peer_can_take = match self.role {
            Role::Active => peer.is_some_and(|p| p.candidate()),
            Role::Standby => peer.is_some_and(|p| p.able() || p.role == Role::Active),
        };
        match (peer_can_take, self.stop_forced, self.role) {
            (true, ..) => {}
            (false, true, _) => self.stop_service(),
            (false, false, Role::Active) => self.cancel_stop(),
            (false, false, Role::Standby) => {}
        }
    }

    /// The loop applied a role change that [`decide`](Self::decide) asked for.
    pub fn commit(&mut self, now: Instant, role: Role, reason: Reason) {
        self.role = role;
        match (role, reason) {
            (Role::Standby, Reason::MonitorFailed) => {
                self.failovers.push(now);
                let window = self.p.failover_window;
                self.failovers
                    .retain(|t| now.saturating_duration_since(*t) < window);
                self.handover = Some(reason);
            }
            (Role::Standby, Reason::Operator | Reason::AutoFailback) => {
                self.handover = Some(reason);
            }
            (Role::Standby, _) => self.handover = None,
            (Role::Active, _) => {
                // The group came back (the peer could not keep it): an
                // operator's stop under way is given up.
                self.handover = None;
                self.stop_pending = false;
                self.stop_forced = false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
