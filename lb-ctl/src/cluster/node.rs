//! The cluster's event loop on one node: it carries out what the pure parts
//! decide. Heartbeats arrive from the interconnects (`link`), monitor
//! results and NP answers from checks it starts; after each event it asks
//! [`Membership::decide`] and, for a role change, applies it in order
//! (the data plane's role map first, then the floating IPs, then the
//! announcement burst), and commits it only once applied. It sends its own
//! heartbeats every interval and publishes a [`ClusterStatus`].
//!
//! The data plane is reached through `roles`: a request with the wanted
//! role, answered once the role map holds it (the daemon owns the map).
//!
//! The operator's requests ([`Operation`]) go to the membership; an
//! operator's stop on the active is answered only once the peer holds the
//! group (or the handover failed, bounded by [`STOP_WAIT_DEAD_TIMES`]).
use crate::replication::status::eligible as replication_eligible;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Role,
    config::{ClusterConfig, FinalAction, MonitorKind},
    floating::{AddrOp, Announcer, netlink::FloatingIps},
    heartbeat::{self, Heartbeat, Keyring, first_seq},
    link::{Links, RefusedCounts},
    membership::{Decision, Membership, PeerView, Reason, StartOutcome, StopOutcome},
    monitors::{MonitorState, Monitors, probe},
    sync::hex,
};

/// How often the group is announced again while active.
pub const ANNOUNCE_REFRESH: Duration = Duration::from_secs(10);
/// How often an active node checks that it still holds the group's
/// addresses (an interface set down and up loses its IPv6 addresses):
/// what is missing is added again, announced and alerted.
pub const FLOATING_CHECK: Duration = Duration::from_secs(1);

/// A role change for the data plane; answer when the role map holds it.
pub type RoleRequest = (Role, oneshot::Sender<Result<()>>);

/// How long an operator's stop on the active waits for the peer to hold
/// the group, in dead times (heartbeat interval x lost count).
pub const STOP_WAIT_DEAD_TIMES: u32 = 3;

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

/// A notable event, for the alert log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    RoleChanged {
        role: Role,
        reason: Reason,
    },
    MonitorChanged {
        monitor: String,
        state: MonitorState,
        detail: Option<String>,
    },
    /// The maximum failover count is reached; `stopped`: the final action
    /// stopped this node's cluster service.
    FinalAction {
        stopped: bool,
    },
    /// The operator stopped (`forced`: although the peer could not take
    /// the group) or started this node's cluster service.
    ServiceChanged {
        stopped: bool,
        forced: bool,
    },
    /// The peer's heartbeats say its cluster service stopped or started.
    PeerServiceChanged {
        stopped: bool,
    },
    /// The active node found group addresses missing from its interfaces
    /// and added them again.
    FloatingRestored {
        addresses: Vec<String>,
    },
    Error(String),
}

pub struct NodeSetup {
    pub cluster: ClusterConfig,
    pub node_name: String,
    pub keys: Keyring,
    /// The role the node starts in (standby, or active when it adopted a
    /// data plane that was serving).
    pub start_role: Role,
    /// The settings generation and hash this node holds.
    pub settings: watch::Receiver<(u64, [u8; 32])>,
    /// The daemon's event loop, which a `stall` monitor asks to answer
    /// (None: the monitor watches only this loop).
    pub daemon: Option<DaemonPing>,
    /// Whether this node's flow replication has caught up with the active
    /// (None: it does not replicate): a standby behind an active peer is
    /// not eligible.
    pub caught_up: Option<watch::Receiver<bool>>,
}

/// Where a `stall` monitor asks the daemon's event loop to answer.
pub type DaemonPing = mpsc::Sender<oneshot::Sender<()>>;

/// Runs until `stop` turns true.
pub async fn run(
    setup: NodeSetup,
    roles: mpsc::Sender<RoleRequest>,
    events: mpsc::Sender<ClusterEvent>,
    status: watch::Sender<ClusterStatus>,
    mut operations: mpsc::Receiver<OperationRequest>,
    mut renew_lease: Box<dyn FnMut() + Send>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let NodeSetup {
        cluster,
        node_name,
        keys,
        start_role,
        settings,
        daemon,
        caught_up,
    } = setup;
    let params = cluster
        .params(&node_name)
        .context("this node is not among the cluster's servers")?;
    let me = params.me;
    let interval = params.interval;
    let now = Instant::now();
    let mut membership = Membership::new(params, start_role, now);
    let (received_tx, mut received) = mpsc::channel(64);
    let refused = RefusedCounts::default();
    let links = Links::open(&cluster, me, keys, received_tx, refused.clone()).await?;
    let floating = FloatingIps::open(&cluster.floating_ips).await?;
    let mut monitors = Monitors::new(&cluster.monitors, &node_name, now);
    let mut announcer = Announcer::new(ANNOUNCE_REFRESH);
    let mut next_floating_check = Instant::now() + FLOATING_CHECK;
    // The group matches the starting role before anything else.
    floating.converge(start_role).await?;
    announcer.role_changed(start_role, now);
    let (check_tx, mut checks) = mpsc::channel::<(usize, Result<(), String>)>(16);
    let (np_tx, mut np) = mpsc::channel::<bool>(4);
    let unix_micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut seq = first_seq(unix_micros);
    let mut next_beat = now;
    let mut since = SystemTime::now();
    let mut last_change: Option<String> = None;
    let mut previous = now;
    let mut final_action_taken = false;
    let peer_name = cluster
        .servers
        .get(usize::from(membership.params().peer))
        .map_or_else(|| "the peer".to_owned(), |s| s.name.clone());
    // An operator's stop waiting for the peer to take the group.
    let mut stopping: Option<PendingStop> = None;
    let mut peer_stopped: Option<bool> = None;
    // The monitors' states in the peer's last heartbeat.
    let mut peer_monitors: u16 = 0;
    // The group taken from a lost or yielding peer: how often, and when
    // last (Unix seconds).
    let mut takeovers = Takeovers::default();
    let mut tick = tokio::time::interval(interval / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(r) = received.recv() => {
                let hb = r.heartbeat;
                peer_monitors = hb.monitors;
                membership.observe_heartbeat(Instant::now(), r.link, hb.seq, PeerView {
                    role: hb.role,
                    healthy: hb.healthy,
                    eligible: hb.eligible,
                    yielding: hb.yielding,
                    stopped: hb.stopped,
                    generation: hb.generation,
                    settings_hash: hb.settings_hash,
                });
            }
            Some((i, result)) = checks.recv() => {
                if let Some(change) = monitors.observe(i, result) {
                    let _ = events.try_send(ClusterEvent::MonitorChanged {
                        monitor: change.monitor,
                        state: change.state,
                        detail: change.detail,
                    });
                }
            }
            Some(reachable) = np.recv() => membership.observe_np(Instant::now(), reachable),
            Some((operation, answer)) = operations.recv() => {
                let now = Instant::now();
                // The peer learns at once what changed (yielding, stopped).
                next_beat = now;
                match operate(&mut membership, operation, now, &peer_name) {
                    Answer::Now(result) => {
                        let result = result.map(|done| {
                            if let Some(event) = done.event {
                                let _ = events.try_send(event);
                            }
                            done.message
                        });
                        let _ = answer.send(result);
                    }
                    Answer::WhenHandedOver => {
                        // A second stop meanwhile gets the same answer.
                        let deadline = now + membership.params().dead_time() * STOP_WAIT_DEAD_TIMES;
                        stopping
                            .get_or_insert_with(|| PendingStop { deadline, answers: Vec::new() })
                            .answers
                            .push(answer);
                    }
                }
            }
            _ = tick.tick() => {}
            // The next heartbeat is sent when it is due, not at the next tick.
            _ = tokio::time::sleep_until(next_beat.into()) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    step_down(&mut membership, &roles, &floating, &links, &mut seq, &settings).await;
                    break;
                }
            }
        }
        let now = Instant::now();
        // Every pass renews the data plane's lease: a loop that stops
        // passing (a dead or stalled daemon) fences its node.
        renew_lease();
        let role = membership.role();
        membership.tick(now);
        let gap = now.saturating_duration_since(previous);
        previous = now;
        start_checks(&mut monitors, role, now, gap, daemon.as_ref(), &check_tx);
        membership.observe_monitors(monitors.healthy(role, now));
        if membership.healthy() {
            final_action_taken = false;
        }
        let peer = membership.peer(now);
        let peer_active = peer.is_some_and(|p| p.role == Role::Active);
        membership.observe_eligible(
            holds_active_settings(peer, *settings.borrow())
                && replication_eligible(peer_active, caught_up.as_ref().map(|c| *c.borrow())),
        );
        match membership.decide(now) {
            Decision::Stay => {}
            Decision::Become(new, reason) => {
                match change_role(&roles, &floating, new).await {
                    Ok(()) => {
                        let now = Instant::now();
                        membership.commit(now, new, reason);
                        monitors.role_changed(new, now);
                        announcer.role_changed(new, now);
                        since = SystemTime::now();
                        last_change = Some(format!("{new} ({reason:?})"));
                        takeovers.observe(new, reason, since);
                        let _ = events.try_send(ClusterEvent::RoleChanged { role: new, reason });
                        // The peer learns at once.
                        next_beat = now;
                    }
                    Err(err) => {
                        let _ = events
                            .try_send(ClusterEvent::Error(format!("becoming {new}: {err:#}")));
                    }
                }
            }
            Decision::CheckNp => {
                membership.np_started();
                let targets = cluster.np_targets.clone();
                let timeout = interval * 2;
                let tx = np_tx.clone();
                tokio::spawn(async move {
                    let reached = probe::ip(&targets, timeout).await.is_ok();
                    let _ = tx.send(reached).await;
                });
            }
            Decision::FinalAction => {
                // Once until the monitors recover, not on every pass.
                if !final_action_taken {
                    final_action_taken = true;
                    let stop = cluster.final_action == FinalAction::Stop;
                    let _ = events.try_send(ClusterEvent::FinalAction { stopped: stop });
                    if stop {
                        membership.stop_service();
                    }
                }
            }
        }
        let now = Instant::now();
        if let Some(pending) = &stopping
            && let Some((result, event)) = pending.progress(&mut membership, now, &peer_name)
        {
            if let Some(event) = event {
                let _ = events.try_send(event);
            }
            // The peer learns at once.
            next_beat = now;
            for answer in stopping.take().map(|p| p.answers).unwrap_or_default() {
                let _ = answer.send(result.clone());
            }
        }
        let peer_now = membership.peer(now).map(|p| p.stopped);
        if let (Some(before), Some(after)) = (peer_stopped, peer_now)
            && before != after
        {
            let _ = events.try_send(ClusterEvent::PeerServiceChanged { stopped: after });
        }
        if peer_now.is_some() {
            peer_stopped = peer_now;
        }
        if now >= next_beat {
            let (generation, settings_hash) = *settings.borrow();
            let hb = Heartbeat {
                cluster: links.cluster(),
                node: me,
                link: 0,
                seq: 0,
                role: membership.role(),
                healthy: membership.healthy(),
                eligible: membership.eligible(),
                yielding: membership.yielding(),
                stopped: membership.stopped(),
                monitors: heartbeat::pack_monitors(
                    &monitors
                        .states(membership.role(), now)
                        .into_iter()
                        .map(|(_, _, state)| state)
                        .collect::<Vec<_>>(),
                ),
                generation,
                settings_hash,
            };
            // Links fills in the link and sequence number.
            for (link, err) in links.send(&hb, &mut seq).await {
                tracing::debug!(link, error = %err, "heartbeat not sent");
            }
            // Due one interval after this one was due, not after it went
            // out: a beat a tick late must not push every later one back
            // (the peer counts its dead time in intervals, and beats sent
            // 40 to 50 ms apart came up to 200 ms apart in four). After a
            // stall of an interval or more, the schedule starts again from
            // now, without a burst to catch up.
            let due = next_beat + interval;
            next_beat = if due > now { due } else { now + interval };
        }
        if membership.role() == Role::Active && now >= next_floating_check {
            next_floating_check = now + FLOATING_CHECK;
            restore_floating(&floating, &events).await;
        }
        if announcer.due(now)
            && let Err(err) = floating.announce()
        {
            tracing::warn!(error = %format!("{err:#}"), "announcing the floating IPs");
        }
        publish(
            &status,
            &membership,
            &monitors,
            &cluster,
            now,
            since,
            &last_change,
            &refused,
            *settings.borrow(),
            peer_monitors,
            takeovers,
        );
    }
    Ok(())
}

/// Adds back the group's addresses an active node lost (an interface set
/// down and up flushes its IPv6 addresses), announces them and says so.
async fn restore_floating(floating: &FloatingIps, events: &mpsc::Sender<ClusterEvent>) {
    match floating.converge(Role::Active).await {
        Ok(ops) if ops.is_empty() => {}
        Ok(ops) => {
            let addresses: Vec<String> = ops
                .iter()
                .map(|op| match op {
                    AddrOp::Add(held) | AddrOp::Del(held) => {
                        format!("{}/{}", held.address, held.prefix)
                    }
                })
                .collect();
            if let Err(err) = floating.announce() {
                tracing::warn!(error = %format!("{err:#}"), "announcing the floating IPs");
            }
            let _ = events.try_send(ClusterEvent::FloatingRestored { addresses });
        }
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "checking the floating IPs");
        }
    }
}

/// How the loop answers an operation.
enum Answer {
    /// At once.
    Now(Result<Done, String>),
    /// Once the peer holds the group (the operator's stop on the active).
    WhenHandedOver,
}

/// An operation done: the operator's message, and the event to log.
struct Done {
    message: String,
    event: Option<ClusterEvent>,
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
fn operate(membership: &mut Membership, operation: Operation, now: Instant, peer: &str) -> Answer {
    let refused = |refusal: super::membership::Refusal| refusal.to_string();
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
struct PendingStop {
    deadline: Instant,
    answers: Vec<oneshot::Sender<Result<String, String>>>,
}

impl PendingStop {
    /// The answer once there is one, with the event to log: stopped (the
    /// peer holds the group), or given up (the group came back, or the peer
    /// did not take it in time). `None`: still waiting.
    fn progress(
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

/// Eligible (a standby that may take over): it holds the active peer's
/// settings, generation and hash alike. A node with no active peer is
/// eligible.
pub fn holds_active_settings(peer: Option<PeerView>, held: (u64, [u8; 32])) -> bool {
    match peer {
        Some(peer) if peer.role == Role::Active => (peer.generation, peer.settings_hash) == held,
        _ => true,
    }
}

/// A clean stop: an active node stops forwarding, gives the floating IPs up
/// and tells the peer it yields, so the peer takes over at once instead of
/// after the dead time.
async fn step_down(
    membership: &mut Membership,
    roles: &mpsc::Sender<RoleRequest>,
    floating: &FloatingIps,
    links: &Links,
    seq: &mut u64,
    settings: &watch::Receiver<(u64, [u8; 32])>,
) {
    if membership.role() == Role::Active {
        if let Err(err) = change_role(roles, floating, Role::Standby).await {
            tracing::error!(error = %format!("{err:#}"), "stepping down at stop");
        }
        membership.commit(Instant::now(), Role::Standby, Reason::Operator);
    }
    let (generation, settings_hash) = *settings.borrow();
    let last = Heartbeat {
        cluster: links.cluster(),
        node: membership.params().me,
        link: 0,
        seq: 0,
        role: Role::Standby,
        // Not a candidate: the peer must not wait for us.
        healthy: false,
        eligible: false,
        yielding: true,
        // A daemon that goes away is lost to the peer, not Offline.
        stopped: false,
        monitors: 0,
        generation,
        settings_hash,
    };
    links.send(&last, seq).await;
}

/// The role map first, then the floating IPs (both directions: a standby
/// stops forwarding before it gives the addresses up; an active forwards
/// before it takes them).
async fn change_role(
    roles: &mpsc::Sender<RoleRequest>,
    floating: &FloatingIps,
    role: Role,
) -> Result<()> {
    let (ack, answer) = oneshot::channel();
    roles
        .send((role, ack))
        .await
        .context("the data plane is gone")?;
    answer.await.context("the data plane did not answer")??;
    floating.converge(role).await?;
    if role == Role::Active {
        floating.announce()?;
    }
    Ok(())
}

/// Starts the monitor checks that are due. A stall monitor watches both
/// event loops: this one (it wakes every quarter interval, so a `gap`
/// since its last pass longer than the monitor's timeout means it was
/// stalled; a loop that never comes back is the peer's to notice: its
/// heartbeats stop) and the daemon's, which must answer within the
/// timeout ([`ping_daemon`]).
fn start_checks(
    monitors: &mut Monitors,
    role: Role,
    now: Instant,
    gap: Duration,
    daemon: Option<&DaemonPing>,
    results: &mpsc::Sender<(usize, Result<(), String>)>,
) {
    for (i, monitor) in monitors.due(role, now) {
        if monitor.kind == MonitorKind::Stall {
            let limit = Duration::from_millis(monitor.timeout_ms);
            if gap > limit {
                let stalled = format!(
                    "the cluster's event loop was stalled for {} ms (limit {} ms)",
                    gap.as_millis(),
                    limit.as_millis()
                );
                let _ = results.try_send((i, Err(stalled)));
                continue;
            }
            match daemon {
                Some(daemon) => {
                    let (daemon, tx) = (daemon.clone(), results.clone());
                    tokio::spawn(async move {
                        let _ = tx.send((i, ping_daemon(&daemon, limit).await)).await;
                    });
                }
                None => {
                    let _ = results.try_send((i, Ok(())));
                }
            }
            continue;
        }
        let tx = results.clone();
        tokio::spawn(async move {
            let result = probe::check(&monitor).await;
            let _ = tx.send((i, result)).await;
        });
    }
}

/// Whether the daemon's event loop answers within `limit`.
pub async fn ping_daemon(daemon: &DaemonPing, limit: Duration) -> Result<(), String> {
    let (answer, answered) = oneshot::channel();
    let asked = async {
        daemon.send(answer).await.ok()?;
        answered.await.ok()
    };
    match tokio::time::timeout(limit, asked).await {
        Ok(Some(())) => Ok(()),
        Ok(None) => Err("the daemon's event loop is not running".into()),
        Err(_) => Err(format!(
            "the daemon's event loop did not answer within {} ms",
            limit.as_millis()
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn publish(
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

    fn peer(role: Role, generation: u64, hash: u8) -> Option<PeerView> {
        Some(PeerView {
            role,
            healthy: true,
            eligible: true,
            yielding: false,
            generation,
            settings_hash: [hash; 32],
            stopped: false,
        })
    }

    #[test]
    fn a_standby_is_eligible_only_with_the_active_peers_settings() {
        assert!(holds_active_settings(
            peer(Role::Active, 4, 7),
            (4, [7; 32])
        ));
        assert!(!holds_active_settings(
            peer(Role::Active, 3, 7),
            (4, [7; 32])
        ));
        assert!(!holds_active_settings(
            peer(Role::Active, 4, 8),
            (4, [7; 32])
        ));
        // No active peer (lost, or standby itself): nothing to match.
        assert!(holds_active_settings(None, (4, [7; 32])));
        assert!(holds_active_settings(
            peer(Role::Standby, 1, 1),
            (4, [7; 32])
        ));
    }

    #[tokio::test]
    async fn a_stall_monitor_needs_the_daemon_loop_to_answer_in_time() {
        let limit = Duration::from_millis(100);
        // A loop that answers.
        let (ping, mut asked) = mpsc::channel::<oneshot::Sender<()>>(1);
        tokio::spawn(async move {
            while let Some(answer) = asked.recv().await {
                let _ = answer.send(());
            }
        });
        assert_eq!(ping_daemon(&ping, limit).await, Ok(()));
        // A loop that takes the request and never answers: stalled.
        let (ping, mut asked) = mpsc::channel::<oneshot::Sender<()>>(1);
        let held = tokio::spawn(async move {
            let answer = asked.recv().await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(answer);
        });
        assert_eq!(
            ping_daemon(&ping, limit).await,
            Err("the daemon's event loop did not answer within 100 ms".into())
        );
        held.abort();
        // A loop that is gone.
        let (ping, asked) = mpsc::channel::<oneshot::Sender<()>>(1);
        drop(asked);
        assert_eq!(
            ping_daemon(&ping, limit).await,
            Err("the daemon's event loop is not running".into())
        );
    }

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
