//! Scenarios on a simulated pair: two state machines, heartbeats carried
//! (or lost) on each interconnect every interval, NP targets each node may or
//! may not reach. Time is simulated; nothing sleeps.
use std::time::{Duration, Instant};

use super::*;

mod operator;

const INTERVAL: Duration = Duration::from_millis(50);
const STEP: Duration = Duration::from_millis(10);

fn params(me: u8, np_targets: bool) -> Params {
    Params {
        me,
        peer: 1 - me,
        links: 2,
        interval: INTERVAL,
        lost_after: 4,
        np_targets,
        np_recheck: Duration::from_secs(1),
        auto_failback: false,
        survivor: 0,
        max_failovers: 2,
        failover_window: Duration::from_secs(600),
    }
}

struct Node {
    m: Membership,
    running: bool,
    reaches_np: bool,
    next_beat: Instant,
}

struct Sim {
    now: Instant,
    nodes: [Node; 2],
    /// links[i]: interconnect i carries heartbeats.
    links: [bool; 2],
    /// Drops heartbeats when it returns true (link, sender).
    loss: Box<dyn FnMut(usize, usize) -> bool>,
    /// (time, node, role, reason) of every committed change.
    log: Vec<(Duration, usize, Role, Reason)>,
    start: Instant,
    /// Longest time both were active at once.
    max_dual: Duration,
    dual_since: Option<Instant>,
    final_actions: usize,
    /// The next heartbeat's sequence number (shared: unique is enough).
    seq: u64,
}

impl Sim {
    fn new(np_targets: bool, roles: [Role; 2]) -> Sim {
        let now = Instant::now();
        let node = |me: u8| Node {
            m: Membership::new(params(me, np_targets), roles[me as usize], now),
            running: true,
            reaches_np: true,
            next_beat: now,
        };
        Sim {
            now,
            nodes: [node(0), node(1)],
            links: [true, true],
            loss: Box::new(|_, _| false),
            log: Vec::new(),
            start: now,
            max_dual: Duration::ZERO,
            dual_since: None,
            final_actions: 0,
            seq: 1,
        }
    }

    fn with_params(mut self, f: impl Fn(&mut Params)) -> Sim {
        for node in &mut self.nodes {
            f(&mut node.m.p);
        }
        self
    }

    fn view(m: &Membership) -> PeerView {
        PeerView {
            role: m.role(),
            healthy: m.healthy(),
            eligible: m.eligible(),
            yielding: m.yielding(),
            generation: 1,
            settings_hash: [0; 32],
            stopped: m.stopped(),
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        for i in 0..2 {
            if !self.nodes[i].running || self.now < self.nodes[i].next_beat {
                continue;
            }
            self.nodes[i].next_beat = self.now + INTERVAL;
            let view = Self::view(&self.nodes[i].m);
            for link in 0..2 {
                if self.links[link] && self.nodes[1 - i].running && !(self.loss)(link, i) {
                    let now = self.now;
                    let seq = self.seq;
                    self.seq += 1;
                    self.nodes[1 - i].m.observe_heartbeat(now, link, seq, view);
                }
            }
        }
        for i in 0..2 {
            if !self.nodes[i].running {
                continue;
            }
            let now = self.now;
            let node = &mut self.nodes[i];
            node.m.tick(now);
            match node.m.decide(now) {
                Decision::Stay => {}
                Decision::CheckNp => {
                    // The check answers at once here.
                    node.m.np_started();
                    let reaches = node.reaches_np;
                    node.m.observe_np(now, reaches);
                }
                Decision::Become(role, reason) => {
                    node.m.commit(now, role, reason);
                    self.log.push((now - self.start, i, role, reason));
                }
                Decision::FinalAction => self.final_actions += 1,
            }
        }
        let serving = (0..2)
            .filter(|&i| self.nodes[i].running && self.nodes[i].m.role() == Role::Active)
            .count();
        if serving == 2 {
            let since = *self.dual_since.get_or_insert(self.now);
            self.max_dual = self.max_dual.max(self.now - since);
        } else {
            self.dual_since = None;
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn role(&self, i: usize) -> Role {
        self.nodes[i].m.role()
    }

    fn active(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| self.nodes[i].running && self.role(i) == Role::Active)
            .collect()
    }

    /// Time from `t` until the first change to active after it.
    fn takeover_after(&self, t: Duration) -> Option<Duration> {
        self.log
            .iter()
            .find(|(at, _, role, _)| *at >= t && *role == Role::Active)
            .map(|(at, ..)| *at - t)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

#[test]
fn two_nodes_starting_together_make_the_first_server_active() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.len(), 1, "{:?}", sim.log);
    assert_eq!(sim.log[0].3, Reason::NobodyActive);
    // Within a heartbeat or two of hearing each other, not after a dead time.
    assert!(sim.log[0].0 <= INTERVAL * 2, "{:?}", sim.log);
}

#[test]
fn a_lone_node_serves_after_the_dead_time_when_it_reaches_an_np_target() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    // Never heard: a start alone, not a failover.
    assert_eq!(sim.log[0].3, Reason::PeerNeverHeard);
    assert!(sim.log[0].0 >= INTERVAL * 4, "not before the dead time");
}

#[test]
fn the_standby_takes_over_within_the_dead_time_when_the_active_dies() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    sim.nodes[0].running = false;
    let t = sim.elapsed();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    let gap = sim.takeover_after(t).unwrap();
    // Dead time (4 x 50 ms) plus at most one interval and a step.
    assert!(gap >= INTERVAL * 3 && gap <= INTERVAL * 5 + STEP, "{gap:?}");
    assert_eq!(sim.log.last().unwrap().3, Reason::PeerLost);
}

#[test]
fn one_interconnect_cut_changes_nothing() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.links[0] = false;
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.len(), 1);
    let now = sim.now;
    assert_eq!(sim.nodes[1].m.links_up(now), vec![false, true]);
}

#[test]
fn heartbeats_lost_now_and_then_cause_no_takeover() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    // A fixed pseudo-random sequence: 30 % of heartbeats lost on each link.
    let mut x: u32 = 12345;
    sim.loss = Box::new(move |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % 100 < 30
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.len(), 1, "{:?}", sim.log);
}

#[test]
fn losing_every_heartbeat_of_fewer_than_the_count_causes_no_takeover() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    // Three intervals of silence on both links (the count is four).
    sim.links = [false, false];
    sim.run(INTERVAL * 3 - STEP);
    sim.links = [true, true];
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.len(), 1, "{:?}", sim.log);
}

#[test]
fn an_isolated_active_steps_down_and_the_other_side_takes_over() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    // Node 0 loses the network: no interconnect, no NP target.
    sim.links = [false, false];
    sim.nodes[0].reaches_np = false;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![1]);
    assert!(sim.log.iter().any(|&(_, node, role, reason)| node == 0
        && role == Role::Standby
        && reason == Reason::Isolated));
    // It heals: node 1 keeps the group (no automatic failback), one active.
    sim.links = [true, true];
    sim.nodes[0].reaches_np = true;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![1]);
}

#[test]
fn an_isolated_standby_does_not_take_over() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.links = [false, false];
    sim.nodes[1].reaches_np = false;
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.max_dual, Duration::ZERO);
}

#[test]
fn a_healed_partition_without_np_targets_leaves_the_survivor_alone_within_a_heartbeat() {
    let mut sim = Sim::new(false, [Role::Standby, Role::Standby]).with_params(|p| p.survivor = 1);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    // Without NP targets both serve during a partition...
    sim.links = [false, false];
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0, 1]);
    // ...and when it heals, the configured survivor (1) keeps serving.
    sim.links = [true, true];
    let t = sim.elapsed();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    let (at, node, _, reason) = *sim.log.last().unwrap();
    assert_eq!((node, reason), (0, Reason::DualActive));
    assert!(
        at - t <= INTERVAL + STEP,
        "resolved within one heartbeat: {:?}",
        at - t
    );
}

#[test]
fn both_restarting_as_active_end_with_one_active() {
    let mut sim = Sim::new(true, [Role::Active, Role::Active]);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert!(sim.max_dual <= INTERVAL + STEP);
}

#[test]
fn manual_failover_and_failback_move_the_group_without_two_actives() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    let now = sim.now;
    assert_eq!(
        sim.nodes[1].m.request_failover(now),
        Err(Refusal::NotActive)
    );
    assert_eq!(
        sim.nodes[0].m.request_failback(now),
        Err(Refusal::AlreadyPreferred)
    );
    sim.nodes[0].m.request_failover(now).unwrap();
    let t = sim.elapsed();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert_eq!(sim.max_dual, Duration::ZERO);
    // The gap: node 0 steps down at once, node 1 takes over on its next
    // heartbeat.
    assert!(sim.takeover_after(t).unwrap() <= INTERVAL + 2 * STEP);
    // No automatic failback: it stays on node 1.
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.active(), vec![1]);
    let now = sim.now;
    sim.nodes[1].m.request_failback(now).unwrap();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.max_dual, Duration::ZERO);
}

#[test]
fn failover_is_refused_when_the_peer_cannot_take_the_group() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.nodes[1].m.observe_eligible(false);
    sim.run(Duration::from_millis(200));
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_failover(now),
        Err(Refusal::PeerNotCandidate)
    );
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    let now = sim.now;
    assert_eq!(sim.nodes[0].m.request_failover(now), Err(Refusal::PeerLost));
}

#[test]
fn a_standby_that_has_not_caught_up_does_not_take_over() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.nodes[1].m.observe_eligible(false);
    sim.nodes[0].running = false;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), Vec::<usize>::new());
    sim.nodes[1].m.observe_eligible(true);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
}

#[test]
fn a_failed_monitor_moves_the_group_until_the_maximum_then_the_final_action() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    // Node 0's monitor fails: the group moves to node 1.
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert_eq!(sim.max_dual, Duration::ZERO);
    let now = sim.now;
    assert_eq!(sim.nodes[0].m.failovers(now), 1);
    // Node 0 recovers, node 1's monitor fails: back to node 0 (count 1 there).
    sim.nodes[0].m.observe_monitors(true);
    sim.nodes[1].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    // Node 1 recovers; node 0 fails again: its second failover.
    sim.nodes[1].m.observe_monitors(true);
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    let now = sim.now;
    assert_eq!(sim.nodes[0].m.failovers(now), 2);
    // And a third time on node 0 would exceed its maximum (2): node 1 fails,
    // node 0 takes it back (its monitors are fine again), then fails again.
    sim.nodes[0].m.observe_monitors(true);
    sim.nodes[1].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    sim.nodes[1].m.observe_monitors(true);
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0], "the maximum is reached: it stays");
    assert!(sim.final_actions > 0);
}

#[test]
fn a_failed_monitor_does_not_stop_a_lone_active() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![0]);
}

#[test]
fn automatic_failback_returns_the_group_to_the_first_server() {
    let mut sim =
        Sim::new(true, [Role::Standby, Role::Standby]).with_params(|p| p.auto_failback = true);
    sim.run(Duration::from_secs(1));
    sim.nodes[0].running = false;
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    // Node 0 comes back (standby, as a restarted daemon does).
    let now = sim.now;
    sim.nodes[0].m = Membership::new(params(0, true), Role::Standby, now);
    sim.nodes[0].m.p.auto_failback = true;
    sim.nodes[0].running = true;
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.max_dual, Duration::ZERO);
    assert!(
        sim.log
            .iter()
            .any(|e| e.1 == 1 && e.3 == Reason::AutoFailback)
    );
}

#[test]
fn without_automatic_failback_a_returning_first_server_stays_standby() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.nodes[0].running = false;
    sim.run(Duration::from_secs(1));
    let now = sim.now;
    sim.nodes[0].m = Membership::new(params(0, true), Role::Standby, now);
    sim.nodes[0].running = true;
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.active(), vec![1]);
}

#[test]
fn the_final_action_stop_steps_down_and_never_serves_again() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    sim.nodes[0].m.stop_service();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert!(sim.log.iter().any(|e| e.1 == 0 && e.3 == Reason::Stopped));
    assert_eq!(sim.max_dual, Duration::ZERO);
    // Not even when the peer dies.
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), Vec::<usize>::new());
    assert!(!sim.nodes[0].m.healthy());
}

#[test]
fn a_node_back_from_isolation_waits_for_the_peer_before_taking_over() {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    sim.links = [false, false];
    sim.nodes[0].reaches_np = false;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![1]);
    // The NP target answers a little before the interconnects carry
    // heartbeats again (after its next NP check, within the dead time):
    // node 0 must not take the group.
    sim.nodes[0].reaches_np = true;
    let limit = sim.now + Duration::from_secs(2);
    while !matches!(sim.nodes[0].m.np, Some((_, true))) && sim.now < limit {
        sim.step();
    }
    assert!(matches!(sim.nodes[0].m.np, Some((_, true))));
    sim.step();
    sim.links = [true, true];
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![1], "{:?}", sim.log);
    assert_eq!(sim.max_dual, Duration::ZERO);
}

/// A peer's heartbeat: monitors Normal, settings current, not yielding.
fn healthy_peer(role: Role, stopped: bool) -> PeerView {
    PeerView {
        role,
        healthy: true,
        eligible: true,
        yielding: false,
        generation: 1,
        settings_hash: [0; 32],
        stopped,
    }
}

#[test]
fn heartbeats_held_back_by_a_link_do_not_make_a_standby_take_over() {
    let t0 = Instant::now();
    let mut m = Membership::new(params(0, true), Role::Standby, t0);
    let view = |role| healthy_peer(role, false);
    // The peer, active, heard long ago; then nothing (a cut link).
    m.observe_heartbeat(t0, 0, 100, view(Role::Active));
    let back = t0 + Duration::from_secs(5);
    // The link comes back: first a heartbeat queued while the peer was
    // still standby (an older sequence number than the last one seen is
    // ignored for the view; a newer but stale one is not acted on at once).
    m.observe_heartbeat(back, 0, 99, view(Role::Standby));
    assert_eq!(m.peer(back).unwrap().role, Role::Active);
    m.observe_heartbeat(back, 0, 101, view(Role::Standby));
    assert_eq!(
        m.decide(back),
        Decision::Stay,
        "not within an interval of the peer's return"
    );
    // The fresh heartbeat follows within the interval: nothing to do.
    let fresh = back + INTERVAL / 2;
    m.observe_heartbeat(fresh, 0, 140, view(Role::Active));
    assert_eq!(m.decide(fresh + INTERVAL), Decision::Stay);
}

#[test]
fn a_standby_whose_own_loop_stalled_listens_for_an_interval_before_taking_over() {
    let t0 = Instant::now();
    let view = |role| healthy_peer(role, false);
    let standby = || {
        let mut m = Membership::new(params(1, false), Role::Standby, t0);
        m.observe_heartbeat(t0, 0, 1, view(Role::Active));
        m
    };
    // The loop passes again 300 ms later (past the dead time): the peer's
    // heartbeats of that time may still wait in the sockets.
    let woke = t0 + Duration::from_millis(300);

    // Without knowing it stalled, the node takes the group at once.
    let mut unaware = standby();
    unaware.tick(woke);
    assert_eq!(
        unaware.decide(woke),
        Decision::Become(Role::Active, Reason::PeerLost)
    );

    // Knowing, it waits an interval; the waiting heartbeats are read
    // meanwhile: the peer is alive, nothing changes.
    let mut alive = standby();
    alive.observe_own_stall(woke);
    alive.tick(woke);
    assert_eq!(alive.decide(woke), Decision::Stay);
    let read = woke + STEP;
    alive.observe_heartbeat(read, 0, 2, view(Role::Active));
    alive.tick(woke + INTERVAL);
    assert_eq!(alive.decide(woke + INTERVAL), Decision::Stay);

    // A peer that really died is found lost one interval later.
    let mut dead = standby();
    dead.observe_own_stall(woke);
    assert_eq!(dead.decide(woke + INTERVAL - STEP), Decision::Stay);
    dead.tick(woke + INTERVAL);
    assert_eq!(
        dead.decide(woke + INTERVAL),
        Decision::Become(Role::Active, Reason::PeerLost)
    );
}
