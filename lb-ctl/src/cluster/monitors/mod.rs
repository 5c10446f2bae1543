//! Monitor resources (the manual's miiw, ipw, psw, userw and custom
//! monitors): which run on this server and when, their Normal / Error /
//! Offline state from the results of their checks, and whether the node is
//! healthy (every monitor that runs is Normal). Pure: the checks themselves
//! are in `probe` (the edge), the schedule and the states here.
//!
//! A monitor is Offline on a server it is not configured for, while the
//! node is standby when it runs only while active, and during its
//! `start_wait_ms` after the node started (or after it became active, for
//! one that runs only while active). It goes to Error after `retries` failed
//! checks in a row and back to Normal after one good check (the health
//! [`Tracker`] with rise 1, fall `retries`).
use std::time::{Duration, Instant};

use super::{
    Role,
    config::{Monitor, MonitorKind, MonitorWhen},
};
use crate::health::{Health, Tracker};

pub mod probe;

pub use lb_common::api::MonitorState;

/// A change worth an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub monitor: String,
    pub state: MonitorState,
    /// Why the last check failed (for an Error).
    pub detail: Option<String>,
}

#[derive(Clone, Debug)]
struct Run {
    config: Monitor,
    here: bool,
    tracker: Tracker,
    /// No check before this.
    start_at: Instant,
    next: Instant,
    /// A check is running (its result not yet observed).
    in_flight: bool,
    last_error: Option<String>,
}

/// The monitors of this node.
#[derive(Clone, Debug)]
pub struct Monitors {
    runs: Vec<Run>,
}

impl Monitors {
    /// `server` is this node's name; `now` its start.
    pub fn new(config: &[Monitor], server: &str, now: Instant) -> Self {
        let runs = config
            .iter()
            .map(|m| {
                let start_at = now + Duration::from_millis(m.start_wait_ms);
                Run {
                    here: m.servers.is_empty() || m.servers.iter().any(|s| s == server),
                    tracker: Tracker::with_counts(1, m.retries, Health::Up),
                    start_at,
                    next: start_at,
                    in_flight: false,
                    last_error: None,
                    config: m.clone(),
                }
            })
            .collect();
        Monitors { runs }
    }

    /// The operator changed the monitors while the node runs: a monitor
    /// whose settings are the same keeps its state and schedule; a new or
    /// changed one starts as at the node's start (its wait from `now`,
    /// Normal until its checks fail); a removed one is gone.
    pub fn reconfigure(&mut self, config: &[Monitor], server: &str, now: Instant) {
        let fresh = Monitors::new(config, server, now);
        let mut old = std::mem::take(&mut self.runs);
        self.runs = fresh
            .runs
            .into_iter()
            .map(|run| {
                match old
                    .iter()
                    .position(|o| o.config == run.config && o.here == run.here)
                {
                    Some(i) => old.swap_remove(i),
                    None => run,
                }
            })
            .collect();
    }

    /// The index of the monitor named `name` (a check's result comes back
    /// by name: the monitors may have changed meanwhile).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.runs.iter().position(|r| r.config.name == name)
    }

    fn running(run: &Run, role: Role, now: Instant) -> bool {
        run.here
            && now >= run.start_at
            && (run.config.when == MonitorWhen::Always || role == Role::Active)
    }

    /// The node changed role: monitors that run only while active start
    /// again (after their wait) from a clean state.
    pub fn role_changed(&mut self, role: Role, now: Instant) {
        for run in &mut self.runs {
            if run.config.when == MonitorWhen::Active {
                run.tracker = Tracker::with_counts(1, run.config.retries, Health::Up);
                run.last_error = None;
                if role == Role::Active {
                    run.start_at = now + Duration::from_millis(run.config.start_wait_ms);
                    run.next = run.start_at;
                }
            }
        }
    }

    /// Each monitor's state.
    pub fn states(&self, role: Role, now: Instant) -> Vec<(String, MonitorKind, MonitorState)> {
        self.runs
            .iter()
            .map(|run| {
                let state = if !Self::running(run, role, now) {
                    MonitorState::Offline
                } else if run.tracker.state() == Health::Down {
                    MonitorState::Error
                } else {
                    MonitorState::Normal
                };
                (run.config.name.clone(), run.config.kind, state)
            })
            .collect()
    }

    /// Every running monitor is Normal.
    pub fn healthy(&self, role: Role, now: Instant) -> bool {
        self.states(role, now)
            .iter()
            .all(|(_, _, state)| *state != MonitorState::Error)
    }

    /// The monitors whose check is due now (marked in flight; report each
    /// with [`observe`](Self::observe)). Stall monitors are the event loop's
    /// own: the caller answers them at once.
    pub fn due(&mut self, role: Role, now: Instant) -> Vec<(usize, Monitor)> {
        let mut due = Vec::new();
        for (i, run) in self.runs.iter_mut().enumerate() {
            if !Self::running(run, role, now) || run.in_flight || now < run.next {
                continue;
            }
            run.in_flight = true;
            run.next = now + Duration::from_millis(run.config.interval_ms);
            due.push((i, run.config.clone()));
        }
        due
    }

    /// When the next check is due (for the loop's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.runs
            .iter()
            .filter(|r| r.here && !r.in_flight)
            .map(|r| r.next)
            .min()
    }

    /// A check's result; `Some` when the monitor's state changed.
    pub fn observe(&mut self, i: usize, result: Result<(), String>) -> Option<Change> {
        let run = self.runs.get_mut(i)?;
        run.in_flight = false;
        let ok = result.is_ok();
        if let Err(err) = result {
            run.last_error = Some(err);
        }
        let changed = run.tracker.observe(ok)?;
        Some(Change {
            monitor: run.config.name.clone(),
            state: match changed {
                Health::Up => MonitorState::Normal,
                Health::Down => MonitorState::Error,
            },
            detail: (changed == Health::Down)
                .then(|| run.last_error.clone())
                .flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(name: &str, kind: MonitorKind) -> Monitor {
        let mut m: Monitor = toml::from_str(&format!(
            "name = \"{name}\"\nkind = \"exec\"\ncommand = [\"true\"]\n"
        ))
        .unwrap();
        m.kind = kind;
        m
    }

    #[test]
    fn a_monitor_errs_after_its_retries_and_recovers_after_one_good_check() {
        let t0 = Instant::now();
        let mut m = monitor("gw", MonitorKind::Ip);
        m.retries = 3;
        m.interval_ms = 100;
        let mut mons = Monitors::new(&[m], "lb1", t0);
        let mut t = t0;
        let mut changes = Vec::new();
        for ok in [false, false, true, false, false, false, false, true] {
            let due = mons.due(Role::Active, t);
            assert_eq!(due.len(), 1, "one check per interval at {:?}", t - t0);
            assert!(
                mons.due(Role::Active, t).is_empty(),
                "not twice while in flight"
            );
            if let Some(change) = mons.observe(0, if ok { Ok(()) } else { Err("no answer".into()) })
            {
                changes.push(change);
            }
            t += Duration::from_millis(100);
        }
        assert_eq!(
            changes,
            [
                Change {
                    monitor: "gw".into(),
                    state: MonitorState::Error,
                    detail: Some("no answer".into())
                },
                Change {
                    monitor: "gw".into(),
                    state: MonitorState::Normal,
                    detail: None
                },
            ]
        );
    }

    #[test]
    fn offline_on_other_servers_while_waiting_and_for_active_only_monitors_on_a_standby() {
        let t0 = Instant::now();
        let mut only_lb2 = monitor("other", MonitorKind::Process);
        only_lb2.servers = vec!["lb2".into()];
        let mut waits = monitor("waits", MonitorKind::Link);
        waits.start_wait_ms = 5_000;
        let mut active = monitor("active", MonitorKind::Ip);
        active.when = MonitorWhen::Active;
        let mut mons = Monitors::new(&[only_lb2, waits, active], "lb1", t0);
        let states = |mons: &Monitors, role, t| {
            mons.states(role, t)
                .into_iter()
                .map(|(_, _, s)| s)
                .collect::<Vec<_>>()
        };
        use MonitorState::{Normal, Offline};
        assert_eq!(
            states(&mons, Role::Standby, t0),
            [Offline, Offline, Offline]
        );
        assert_eq!(states(&mons, Role::Active, t0), [Offline, Offline, Normal]);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(
            states(&mons, Role::Active, later),
            [Offline, Normal, Normal]
        );
        // Only what runs is checked.
        let due: Vec<String> = mons
            .due(Role::Standby, later)
            .into_iter()
            .map(|(_, m)| m.name)
            .collect();
        assert_eq!(due, ["waits"]);
    }

    #[test]
    fn a_live_change_keeps_the_state_of_unchanged_monitors_only() {
        let t0 = Instant::now();
        let mut kept = monitor("kept", MonitorKind::Ip);
        kept.retries = 1;
        let mut changed = monitor("changed", MonitorKind::Ip);
        changed.retries = 1;
        let gone = monitor("gone", MonitorKind::Ip);
        let mut mons = Monitors::new(&[gone, kept.clone(), changed.clone()], "lb1", t0);
        assert_eq!(mons.due(Role::Active, t0).len(), 3);
        for name in ["kept", "changed"] {
            let i = mons.index_of(name).unwrap();
            mons.observe(i, Err("down".into())).unwrap();
        }
        let states = |mons: &Monitors, t| {
            mons.states(Role::Active, t)
                .into_iter()
                .map(|(name, _, state)| format!("{name} {state}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(&mons, t0),
            ["gone normal", "kept error", "changed error"]
        );
        let t1 = t0 + Duration::from_millis(10);
        changed.start_wait_ms = 1_000;
        let mut added = monitor("added", MonitorKind::Ip);
        added.start_wait_ms = 1_000;
        mons.reconfigure(&[kept, changed, added], "lb1", t1);
        // Kept: its Error and its schedule; changed and added: from the
        // start, waiting; gone: gone.
        assert_eq!(
            states(&mons, t1),
            ["kept error", "changed offline", "added offline"]
        );
        assert_eq!(mons.index_of("gone"), None);
        assert_eq!(mons.index_of("added"), Some(2));
        let t2 = t1 + Duration::from_millis(1_000);
        assert_eq!(
            states(&mons, t2),
            ["kept error", "changed normal", "added normal"]
        );
    }

    #[test]
    fn a_failed_active_only_monitor_does_not_follow_the_node_to_standby() {
        let t0 = Instant::now();
        let mut active = monitor("active", MonitorKind::Ip);
        active.when = MonitorWhen::Active;
        active.retries = 1;
        let mut mons = Monitors::new(&[active], "lb1", t0);
        assert_eq!(mons.due(Role::Active, t0).len(), 1);
        mons.observe(0, Err("down".into())).unwrap();
        assert!(!mons.healthy(Role::Active, t0));
        // Standby: offline, and the node is healthy (it may take the group
        // back later); active again, it starts from Normal.
        mons.role_changed(Role::Standby, t0);
        assert!(mons.healthy(Role::Standby, t0));
        mons.role_changed(Role::Active, t0);
        assert!(mons.healthy(Role::Active, t0));
    }
}
