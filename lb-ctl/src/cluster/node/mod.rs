//! The cluster's event loop on one node: it carries out what the pure parts
//! decide. Heartbeats arrive from the interconnects (`link`), monitor
//! results and NP answers from checks it starts; after each event it asks
//! [`Membership::decide`] and, for a role change, applies it in order
//! (becoming active: the data plane's role map, the floating IPs, the
//! announcement burst; stepping down: the floating IPs, then the role
//! map), and commits it only once applied. It sends its own
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
use tokio::sync::{mpsc, oneshot, watch};

mod operations;
mod status;

pub use operations::{Operation, OperationRequest};
pub use status::{ClusterStatus, SyncState, Takeovers};

use operations::{Answer, PendingStop, operate};
use status::publish;

use super::{
    Role,
    config::{ClusterConfig, ClusterRules as _, FinalAction, MonitorKind},
    floating::{AddrOp, Announcer, netlink::FloatingIps},
    heartbeat::{self, Heartbeat, Keyring, first_seq},
    link::{Links, RefusedCounts},
    membership::{Decision, Membership, PeerView, Reason},
    monitors::{MonitorState, Monitors, probe},
};

/// How often the group is announced again while active.
pub const ANNOUNCE_REFRESH: Duration = Duration::from_secs(10);
/// How often an active node checks that it still holds the group's
/// addresses (an interface set down and up loses its IPv6 addresses):
/// what is missing is added again, announced and alerted.
pub const FLOATING_CHECK: Duration = Duration::from_secs(1);
/// How long that check may take (a netlink dump takes about a millisecond).
const FLOATING_CHECK_LIMIT: Duration = Duration::from_millis(50);

/// A role change for the data plane; answer when the role map holds it.
pub type RoleRequest = (Role, oneshot::Sender<Result<()>>);

/// How long an operator's stop on the active waits for the peer to hold
/// the group, in dead times (heartbeat interval x lost count).
pub const STOP_WAIT_DEAD_TIMES: u32 = 3;

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
    /// The `[cluster]` section as the daemon last applied it: a new one
    /// (only keys `config::live` allows changed) takes effect on the next
    /// pass (None: it never changes).
    pub reconfigure: Option<watch::Receiver<ClusterConfig>>,
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
        mut cluster,
        node_name,
        keys,
        start_role,
        settings,
        daemon,
        caught_up,
        mut reconfigure,
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
    // Check results by monitor name: the monitors may change meanwhile.
    let (check_tx, mut checks) = mpsc::channel::<(String, Result<(), String>)>(16);
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
            Some((name, result)) = checks.recv() => {
                let change = monitors
                    .index_of(&name)
                    .and_then(|i| monitors.observe(i, result));
                if let Some(change) = change {
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
            Some(new) = reconfigured(&mut reconfigure) => {
                // Only what `config::live` allows differs: the same
                // servers, links and timing, so the sockets, the group and
                // the role stay as they are.
                match new.params(&node_name) {
                    Some(params) => {
                        membership.reconfigure(params);
                        monitors.reconfigure(&new.monitors, &node_name, Instant::now());
                        tracing::info!(
                            monitors = new.monitors.len(),
                            auto_failback = new.auto_failback,
                            "the cluster's settings changed live"
                        );
                        cluster = new;
                    }
                    None => tracing::error!("new cluster settings without this node: ignored"),
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
        if gap >= 2 * interval {
            // The loop wakes every quarter interval: this long a gap is a
            // stall (the CPU, or an await in the loop). The peer saw no
            // heartbeat from here meanwhile, and what it sent may not have
            // been read yet.
            membership.observe_own_stall(now);
            tracing::warn!(
                gap_ms = gap.as_millis() as u64,
                interval_ms = interval.as_millis() as u64,
                "the cluster's event loop was stalled: no heartbeat went out meanwhile"
            );
        }
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
                if reason == Reason::PeerLost {
                    let heard: Vec<String> = membership
                        .heard_ago(now)
                        .iter()
                        .map(|ago| {
                            ago.map_or("never".to_owned(), |ago| {
                                format!("{} ms ago", ago.as_millis())
                            })
                        })
                        .collect();
                    tracing::warn!(heard = %heard.join(", "), "the peer is lost: its last heartbeat on each interconnect");
                }
                let changing = Instant::now();
                match change_role(&roles, &floating, new).await {
                    Ok(()) => {
                        let now = Instant::now();
                        tracing::info!(
                            role = %new,
                            took_ms = now.saturating_duration_since(changing).as_millis() as u64,
                            "role changed (data plane and floating IPs)"
                        );
                        membership.commit(now, new, reason);
                        monitors.role_changed(new, now);
                        announcer.role_changed(new, now);
                        since = SystemTime::now();
                        last_change = Some(format!("{new} ({reason})"));
                        status::count_takeover(&mut takeovers, new, reason, since);
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

/// The next `[cluster]` section the daemon applied; never, without one.
async fn reconfigured(
    changes: &mut Option<watch::Receiver<ClusterConfig>>,
) -> Option<ClusterConfig> {
    if let Some(changes) = changes
        && changes.changed().await.is_ok()
    {
        return Some(changes.borrow_and_update().clone());
    }
    // No sender (any more): nothing will change.
    std::future::pending().await
}

/// Adds back the group's addresses an active node lost (an interface set
/// down and up flushes its IPv6 addresses), announces them and says so.
async fn restore_floating(floating: &FloatingIps, events: &mpsc::Sender<ClusterEvent>) {
    // Bounded well under the dead time: this loop sends the heartbeats.
    let checked = tokio::time::timeout(FLOATING_CHECK_LIMIT, floating.converge(Role::Active)).await;
    let Ok(checked) = checked else {
        tracing::warn!("checking the floating IPs: netlink did not answer within 50 ms");
        return;
    };
    match checked {
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

/// Eligible (a standby that may take over): it holds the active peer's
/// settings, generation and hash alike. A node with no active peer is
/// eligible.
pub fn holds_active_settings(peer: Option<PeerView>, held: (u64, [u8; 32])) -> bool {
    match peer {
        Some(peer) if peer.role == Role::Active => (peer.generation, peer.settings_hash) == held,
        _ => true,
    }
}

/// A clean stop: an active node gives the floating IPs up, stops forwarding
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

/// The data plane forwards whenever the node holds the floating IPs: an
/// active node sets the role map, then takes the addresses and announces
/// them; a node stepping down gives the addresses up first, then sets the
/// role map. (The other way round, a standby program passes the clients'
/// packets to a kernel that still holds the VIP, and the kernel answers
/// them with resets: every TCP connection that sent a packet in that
/// moment would break.)
async fn change_role(
    roles: &mpsc::Sender<RoleRequest>,
    floating: &FloatingIps,
    role: Role,
) -> Result<()> {
    if role == Role::Standby {
        floating.converge(role).await?;
    }
    let (ack, answer) = oneshot::channel();
    roles
        .send((role, ack))
        .await
        .context("the data plane is gone")?;
    answer.await.context("the data plane did not answer")??;
    if role == Role::Active {
        floating.converge(role).await?;
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
    results: &mpsc::Sender<(String, Result<(), String>)>,
) {
    for (_, monitor) in monitors.due(role, now) {
        let i = monitor.name.clone();
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
}
