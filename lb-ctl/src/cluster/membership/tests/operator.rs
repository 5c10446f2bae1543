//! The operator's `cluster stop` / `cluster start` on the simulated pair.
use super::*;

/// A pair settled with node 0 active.
fn settled() -> Sim {
    let mut sim = Sim::new(true, [Role::Standby, Role::Standby]);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    sim
}

#[test]
fn the_operators_stop_on_the_active_hands_the_group_over_then_stops() {
    let mut sim = settled();
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Ok(StopOutcome::HandingOver)
    );
    // Not stopped before the peer holds the group.
    assert!(sim.nodes[0].m.stop_pending() && !sim.nodes[0].m.stopped());
    let t = sim.elapsed();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert_eq!(sim.max_dual, Duration::ZERO);
    assert!(sim.takeover_after(t).unwrap() <= INTERVAL + 2 * STEP);
    let changes: Vec<_> = sim.log[1..].iter().map(|e| (e.1, e.2, e.3)).collect();
    assert_eq!(
        changes,
        vec![
            (0, Role::Standby, Reason::Operator),
            (1, Role::Active, Reason::Handover)
        ]
    );
    assert!(sim.nodes[0].m.stopped() && !sim.nodes[0].m.stop_pending());
    // The peer sees it alive and stopped (Offline), not lost; nothing counted.
    let now = sim.now;
    let seen = sim.nodes[1].m.peer(now).expect("alive");
    assert!(seen.stopped);
    assert_eq!(sim.nodes[0].m.failovers(now), 0);
    assert_eq!(sim.nodes[1].m.failovers(now), 0);
    // Stopping again changes nothing.
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Ok(StopOutcome::AlreadyStopped)
    );
}

#[test]
fn a_stopped_peer_is_never_lost_and_never_triggers_a_failover() {
    let mut sim = settled();
    let now = sim.now;
    assert_eq!(
        sim.nodes[1].m.request_stop(now, false),
        Ok(StopOutcome::Stopped),
        "a standby stops at once"
    );
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.len(), 1, "{:?}", sim.log);
    let now = sim.now;
    assert!(sim.nodes[0].m.peer(now).expect("alive").stopped);
    // The active's failed monitor has nobody to hand over to: it stays.
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.final_actions, 0);
    assert_eq!(sim.nodes[0].m.failovers(sim.now), 0);
    // Nor may the operator move the group onto it.
    let now = sim.now;
    sim.nodes[0].m.observe_monitors(true);
    assert_eq!(
        sim.nodes[0].m.request_failover(now),
        Err(Refusal::PeerStopped)
    );
}

#[test]
fn the_stop_on_the_active_is_refused_when_the_peer_cannot_take_the_group() {
    let mut sim = settled();
    let now = sim.now;
    sim.nodes[1].m.request_stop(now, false).unwrap();
    sim.run(Duration::from_millis(200));
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Err(Refusal::PeerStopped)
    );
    // Nothing changed.
    assert!(!sim.nodes[0].m.stop_pending() && !sim.nodes[0].m.yielding());
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    // A peer that has not caught up with the settings, a lost peer.
    sim.nodes[1].m.request_start();
    sim.nodes[1].m.observe_eligible(false);
    sim.run(Duration::from_millis(200));
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Err(Refusal::PeerNotCandidate)
    );
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Err(Refusal::PeerLost)
    );
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert!(!sim.nodes[0].m.stopped());
}

#[test]
fn a_forced_stop_steps_down_although_the_peer_cannot_take_the_group() {
    let mut sim = settled();
    let now = sim.now;
    sim.nodes[1].m.request_stop(now, false).unwrap();
    sim.run(Duration::from_millis(200));
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, true),
        Ok(StopOutcome::Forced(Refusal::PeerStopped))
    );
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), Vec::<usize>::new(), "nobody serves");
    assert!(
        sim.log
            .iter()
            .any(|e| (e.1, e.2, e.3) == (0, Role::Standby, Reason::Stopped))
    );
    // Node 1 started: nobody is active, it takes the group.
    assert_eq!(sim.nodes[1].m.request_start(), StartOutcome::Started);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert_eq!(sim.log.last().unwrap().3, Reason::NobodyActive);
}

#[test]
fn a_started_node_rejoins_as_standby_and_takes_the_group_only_by_the_usual_rules() {
    let mut sim = settled();
    let now = sim.now;
    sim.nodes[0].m.request_stop(now, false).unwrap();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    assert_eq!(sim.nodes[1].m.request_start(), StartOutcome::AlreadyRunning);
    assert_eq!(sim.nodes[0].m.request_start(), StartOutcome::Started);
    sim.run(Duration::from_secs(3));
    // The first server back, but no automatic failback: it stays standby.
    assert_eq!(sim.active(), vec![1]);
    let now = sim.now;
    let seen = sim.nodes[1].m.peer(now).expect("alive");
    assert!(!seen.stopped && seen.role == Role::Standby);
    // It takes the group when the active goes (eligible: it holds the
    // settings here).
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.log.last().unwrap().3, Reason::PeerLost);
}

#[test]
fn a_started_first_server_takes_the_group_back_with_automatic_failback() {
    let mut sim =
        Sim::new(true, [Role::Standby, Role::Standby]).with_params(|p| p.auto_failback = true);
    sim.run(Duration::from_secs(1));
    let now = sim.now;
    sim.nodes[0].m.request_stop(now, false).unwrap();
    sim.run(Duration::from_secs(1));
    assert_eq!(
        sim.active(),
        vec![1],
        "a stopped node is no failback target"
    );
    sim.nodes[0].m.request_start();
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert_eq!(sim.max_dual, Duration::ZERO);
}

#[test]
fn a_stopped_node_never_becomes_active_not_even_as_the_dual_active_survivor() {
    // Both start active (a restart); node 0 is the survivor but stopped.
    let mut sim = Sim::new(false, [Role::Active, Role::Active]);
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].m.request_stop(now, true),
        Ok(StopOutcome::Forced(Refusal::PeerLost))
    );
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    // Node 1 kept the group: a stopped peer does not make it step down.
    assert!(
        !sim.log.iter().any(|e| e.1 == 1 && e.2 == Role::Standby),
        "{:?}",
        sim.log
    );
    // Not when the peer dies either.
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.active(), Vec::<usize>::new());
}

#[test]
fn cluster_start_recovers_a_node_the_final_action_stopped() {
    let mut sim = settled();
    sim.nodes[0].m.observe_monitors(false);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![1]);
    sim.nodes[0].m.stop_service();
    sim.run(Duration::from_millis(200));
    assert!(sim.nodes[0].m.stopped() && !sim.nodes[0].m.healthy());
    assert_eq!(sim.nodes[0].m.request_start(), StartOutcome::Started);
    sim.nodes[0].m.observe_monitors(true);
    let now = sim.now;
    assert_eq!(sim.nodes[0].m.failovers(now), 0, "counted afresh");
    assert!(sim.nodes[0].m.healthy());
    sim.nodes[1].running = false;
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
}

#[test]
fn a_stop_given_up_leaves_the_active_serving_and_start_waits_for_a_stop_under_way() {
    let mut sim = settled();
    let now = sim.now;
    sim.nodes[0].m.request_stop(now, false).unwrap();
    assert_eq!(sim.nodes[0].m.request_start(), StartOutcome::Stopping);
    assert_eq!(
        sim.nodes[0].m.request_stop(now, false),
        Ok(StopOutcome::HandingOver)
    );
    sim.nodes[0].m.cancel_stop();
    assert!(!sim.nodes[0].m.stop_pending() && !sim.nodes[0].m.yielding());
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.active(), vec![0]);
    assert!(!sim.nodes[0].m.stopped());
}

#[test]
fn the_stopped_flag_alone_makes_a_peer_no_candidate() {
    // The first server, standby, says it is healthy and eligible but
    // stopped: the second server takes the group at once.
    let t0 = Instant::now();
    let mut m = Membership::new(params(1, true), Role::Standby, t0);
    let view = healthy_peer(Role::Standby, true);
    m.observe_heartbeat(t0, 0, 1, view);
    let later = t0 + INTERVAL * 2;
    m.observe_heartbeat(later, 0, 2, view);
    assert_eq!(
        m.decide(later),
        Decision::Become(Role::Active, Reason::NobodyActive)
    );
}

#[test]
fn a_handover_that_fails_gives_the_group_back_unless_the_stop_was_forced() {
    // The peer stops at the moment the active hands over (the active's view
    // of it still shows a candidate).
    for force in [false, true] {
        let mut sim = settled();
        let now = sim.now;
        assert_eq!(
            sim.nodes[0].m.request_stop(now, force),
            Ok(StopOutcome::HandingOver)
        );
        sim.nodes[1].m.request_stop(now, false).unwrap();
        sim.run(Duration::from_secs(1));
        assert!(!sim.nodes[0].m.stop_pending());
        if force {
            assert_eq!(sim.active(), Vec::<usize>::new());
            assert!(sim.nodes[0].m.stopped());
            assert!(
                !sim.log[1..].iter().any(|e| e.2 == Role::Active),
                "it does not take the group back: {:?}",
                sim.log
            );
        } else {
            assert_eq!(sim.active(), vec![0], "the group came back");
            assert!(!sim.nodes[0].m.stopped());
        }
    }
}
