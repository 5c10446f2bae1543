//! The tokio tasks that check the daemon's targets ([`Monitor`]), and the
//! state a target keeps when its task is replaced.
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::mpsc,
    task::AbortHandle,
    time::{Instant, MissedTickBehavior},
};

use super::{Check, Health, HealthSpec, Tracker, lock, probe};

/// A change of a checked target's health, for the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<K> {
    /// The target's key, as given to [`Monitor::reconcile`].
    pub key: K,
    /// The new state.
    pub health: Health,
    /// Why: the last probe's error (`HTTP status 503, expected 200`),
    /// `2 probes succeeded`, or `health checking is off` when a down target's
    /// check became [`Check::None`].
    pub reason: String,
}

/// Runs the checks: a tokio task per checked target, which probes every
/// interval, feeds a [`Tracker`] and reports state changes as [`Event`]s.
///
/// `K` is the caller's key for a target, e.g. (service, backend address).
/// The tasks are aborted when their target is removed or changed, and when
/// the monitor is dropped.
pub struct Monitor<K> {
    events: mpsc::Sender<Event<K>>,
    shared: Arc<Mutex<BTreeMap<K, Slot>>>,
    tasks: BTreeMap<K, Running>,
    generation: u64,
}

/// A target's state as the monitor and the daemon see it; `generation` names
/// the task allowed to change it, so that a replaced task that is still
/// finishing a probe cannot.
#[derive(Clone, Copy, Debug)]
struct Slot {
    health: Health,
    generation: u64,
}

struct Running {
    target: SocketAddr,
    spec: HealthSpec,
    task: Option<AbortHandle>,
}

impl Running {
    fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl<K> Monitor<K>
where
    K: Clone + Ord + Send + Sync + fmt::Debug + 'static,
{
    /// A monitor that sends state changes on `events`. If the receiver is
    /// dropped the checks go on and [`Monitor::states`] stays current.
    pub fn new(events: mpsc::Sender<Event<K>>) -> Self {
        Monitor {
            events,
            shared: Arc::new(Mutex::new(BTreeMap::new())),
            tasks: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Makes the set of checked targets exactly `targets` (a key given twice:
    /// the last one counts). Starts tasks for new keys (up), stops tasks of
    /// removed keys (no event), and restarts tasks whose spec or address
    /// changed; a task that keeps running keeps its state and counts, and a
    /// restarted one keeps its state (a down target stays down until `rise`
    /// probes succeed, so every change is announced by an event). A key
    /// whose check is [`Check::None`] has no task and is up; if it was down,
    /// an event says it is up again.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime when it has a task to start.
    pub fn reconcile(&mut self, targets: impl IntoIterator<Item = (K, SocketAddr, HealthSpec)>) {
        let wanted: BTreeMap<K, (SocketAddr, HealthSpec)> = targets
            .into_iter()
            .map(|(key, target, spec)| (key, (target, spec)))
            .collect();
        let mut shared = lock(&self.shared);
        self.tasks.retain(|key, running| {
            let keep = wanted.contains_key(key);
            if !keep {
                running.stop();
                shared.remove(key);
            }
            keep
        });
        for (key, (target, spec)) in wanted {
            if let Some(running) = self.tasks.get(&key) {
                if running.target == target && running.spec == spec {
                    continue;
                }
                running.stop();
            }
            let initial = shared.get(&key).map_or(Health::Up, |slot| slot.health);
            self.generation += 1;
            shared.insert(
                key.clone(),
                Slot {
                    health: initial,
                    generation: self.generation,
                },
            );
            let task = (spec.check != Check::None || initial == Health::Down).then(|| {
                let checker = Checker {
                    key: key.clone(),
                    target,
                    spec: spec.clone(),
                    generation: self.generation,
                    shared: Arc::clone(&self.shared),
                    events: self.events.clone(),
                };
                tokio::spawn(checker.run(initial)).abort_handle()
            });
            self.tasks.insert(key, Running { target, spec, task });
        }
    }

    /// The current state of each key.
    pub fn states(&self) -> BTreeMap<K, Health> {
        lock(&self.shared)
            .iter()
            .map(|(key, slot)| (key.clone(), slot.health))
            .collect()
    }
}

impl<K> Drop for Monitor<K> {
    fn drop(&mut self) {
        for running in self.tasks.values() {
            running.stop();
        }
    }
}

/// One target's task.
struct Checker<K> {
    key: K,
    target: SocketAddr,
    spec: HealthSpec,
    generation: u64,
    shared: Arc<Mutex<BTreeMap<K, Slot>>>,
    events: mpsc::Sender<Event<K>>,
}

impl<K> Checker<K>
where
    K: Clone + Ord + Send + Sync + fmt::Debug + 'static,
{
    async fn run(self, initial: Health) {
        if self.spec.check == Check::None {
            if initial == Health::Down {
                self.publish(Health::Up, "health checking is off".to_owned())
                    .await;
            }
            return;
        }
        let timing = self.spec.timing;
        let mut tracker = Tracker::with_state(&timing, initial);
        let interval = timing.interval();
        let timeout = timing.timeout();
        // Probes are measured start to start; the timeout is at most the
        // interval, so a slow probe delays the next one at most to its end.
        let mut ticks = tokio::time::interval_at(Instant::now() + first_delay(interval), interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = probe(&self.spec.check, self.target, timeout).await;
            if let Err(error) = &result {
                tracing::debug!(key = ?self.key, target = %self.target, %error, "health probe failed");
            }
            let Some(health) = tracker.observe(result.is_ok()) else {
                continue;
            };
            let reason = match result {
                Ok(()) if timing.rise <= 1 => "1 probe succeeded".to_owned(),
                Ok(()) => format!("{} probes succeeded", timing.rise),
                Err(error) => error.to_string(),
            };
            self.publish(health, reason).await;
        }
    }

    /// Records the new state and sends the event, unless this task has been
    /// replaced or removed meanwhile.
    async fn publish(&self, health: Health, reason: String) {
        tracing::debug!(key = ?self.key, target = %self.target, %health, %reason, "health changed");
        if !self.current(|slot| slot.health = health) {
            return;
        }
        // The state is recorded at once; the event waits for room in the
        // channel, and is sent (without waiting, under the lock) only if no
        // reconcile replaced this task meanwhile.
        let Ok(permit) = self.events.reserve().await else {
            return; // the daemon is gone; states() stays current
        };
        self.current(|_| {
            permit.send(Event {
                key: self.key.clone(),
                health,
                reason,
            });
        });
    }

    /// Runs `action` on this task's slot, under the lock, if the slot is
    /// still this task's; tells whether it was.
    fn current(&self, action: impl FnOnce(&mut Slot)) -> bool {
        let mut shared = lock(&self.shared);
        match shared.get_mut(&self.key) {
            Some(slot) if slot.generation == self.generation => {
                action(slot);
                true
            }
            _ => false,
        }
    }
}

/// Where in its interval a new task probes first: spread evenly (by the
/// golden ratio) so that many targets do not all probe at the same moment.
fn first_delay(interval: Duration) -> Duration {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let fraction = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::{net::TcpListener, time::sleep};

    use super::*;
    use crate::health::{Timing, testing::*};

    // ---- Monitor ----

    fn flip_server(healthy: Arc<AtomicBool>) -> impl Fn() -> Option<Vec<u8>> + Send + Sync {
        move || {
            Some(if healthy.load(Ordering::SeqCst) {
                response("200 OK", "ok")
            } else {
                response("503 Service Unavailable", "no")
            })
        }
    }

    async fn next_event(
        events: &mut mpsc::Receiver<Event<&'static str>>,
        within: Duration,
    ) -> Event<&'static str> {
        tokio::time::timeout(within, events.recv())
            .await
            .expect("an event in time")
            .expect("the channel is open")
    }

    const INTERVAL: Duration = Duration::from_millis(100);

    /// Allowance for a loaded machine on top of the expected time.
    const SLACK: Duration = Duration::from_secs(1);

    /// Waits (at most 2 s) until `condition` holds.
    async fn wait_until(condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not met in 2 s");
            sleep(Duration::from_millis(10)).await;
        }
    }

    fn fast_http() -> HealthSpec {
        HealthSpec {
            check: http("/", 200, Some("ok")),
            timing: timing(100, 50, 2, 2),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn monitor_follows_a_backend_down_and_up_and_stops() {
        let healthy = Arc::new(AtomicBool::new(true));
        let server = http_server(flip_server(Arc::clone(&healthy))).await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        monitor.reconcile([("web", server.addr, fast_http())]);
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Up)]));

        // Healthy: probes run, nothing changes.
        let connections = Arc::clone(&server.connections);
        wait_until(|| connections.load(Ordering::SeqCst) >= 3).await;
        assert!(events.try_recv().is_err());

        // fall = 2 failures, 100 ms apart: the second one comes at most
        // 2 intervals after the flip.
        healthy.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let event = next_event(&mut events, 2 * INTERVAL + SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Down,
                reason: "HTTP status 503, expected 200".to_owned()
            }
        );
        // Not on the first failure (which may have started just before the
        // flip): the second one starts an interval after it.
        assert!(started.elapsed() >= INTERVAL / 2, "{:?}", started.elapsed());
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Down)]));

        healthy.store(true, Ordering::SeqCst);
        let event = next_event(&mut events, 2 * INTERVAL + SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Up,
                reason: "2 probes succeeded".to_owned()
            }
        );
        assert_eq!(monitor.states(), BTreeMap::from([("web", Health::Up)]));

        // Removed: the task stops, no more connections, no state.
        monitor.reconcile([]);
        assert!(monitor.states().is_empty());
        sleep(Duration::from_millis(50)).await;
        let connections = server.connections.load(Ordering::SeqCst);
        sleep(Duration::from_millis(400)).await;
        assert_eq!(server.connections.load(Ordering::SeqCst), connections);
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn monitor_keeps_running_tasks_and_carries_state_into_restarted_ones() {
        let healthy = Arc::new(AtomicBool::new(false));
        let server = http_server(flip_server(Arc::clone(&healthy))).await;
        let other = http_server(|| Some(response("200 OK", "ok"))).await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        monitor.reconcile([
            ("web", server.addr, fast_http()),
            ("other", other.addr, fast_http()),
            (
                "off",
                other.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        assert!(monitor.tasks["off"].task.is_none());
        let event = next_event(&mut events, SLACK).await;
        assert_eq!((event.key, event.health), ("web", Health::Down));
        assert_eq!(
            monitor.states(),
            BTreeMap::from([
                ("off", Health::Up),
                ("other", Health::Up),
                ("web", Health::Down)
            ])
        );

        // The same targets again: the same tasks go on.
        let task_ids = |monitor: &Monitor<&'static str>| -> Vec<_> {
            monitor
                .tasks
                .values()
                .map(|running| running.task.as_ref().map(AbortHandle::id))
                .collect()
        };
        let before = task_ids(&monitor);
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            ("web", server.addr, fast_http()),
            (
                "off",
                other.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        assert_eq!(task_ids(&monitor), before);

        // New timing for "web": a new task, still down; "off" removed.
        let slower = HealthSpec {
            timing: timing(150, 50, 2, 2),
            ..fast_http()
        };
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            ("web", server.addr, slower),
        ]);
        assert_ne!(task_ids(&monitor)[1], before[2]);
        assert_eq!(task_ids(&monitor)[0], before[1]);
        assert_eq!(
            monitor.states(),
            BTreeMap::from([("other", Health::Up), ("web", Health::Down)])
        );
        sleep(Duration::from_millis(400)).await;
        assert!(events.try_recv().is_err());
        assert_eq!(monitor.states()["web"], Health::Down);

        // Checking turned off while down: up again, with an event.
        monitor.reconcile([
            ("other", other.addr, fast_http()),
            (
                "web",
                server.addr,
                HealthSpec {
                    check: Check::None,
                    timing: Timing::default(),
                },
            ),
        ]);
        let event = next_event(&mut events, SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "web",
                health: Health::Up,
                reason: "health checking is off".to_owned()
            }
        );
        assert_eq!(monitor.states()["web"], Health::Up);

        // Dropping the monitor stops every task.
        drop(monitor);
        sleep(Duration::from_millis(50)).await;
        let counts = (
            server.connections.load(Ordering::SeqCst),
            other.connections.load(Ordering::SeqCst),
        );
        sleep(Duration::from_millis(300)).await;
        assert_eq!(
            (
                server.connections.load(Ordering::SeqCst),
                other.connections.load(Ordering::SeqCst)
            ),
            counts
        );
        assert!(events.recv().await.is_none());
    }

    #[tokio::test]
    async fn monitor_tcp_and_icmp_targets() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = closed_port().await;
        let (tx, mut events) = mpsc::channel(16);
        let mut monitor = Monitor::new(tx);
        let spec = |check| HealthSpec {
            check,
            timing: timing(100, 100, 1, 1),
        };
        monitor.reconcile([
            ("open", open, spec(Check::Tcp)),
            ("closed", closed, spec(Check::Tcp)),
            ("ping", SocketAddr::new(LOCALHOST, 0), spec(Check::Icmp)),
        ]);
        let event = next_event(&mut events, SLACK).await;
        assert_eq!(
            event,
            Event {
                key: "closed",
                health: Health::Down,
                reason: format!("connect to {closed}: connection refused")
            }
        );
        sleep(Duration::from_millis(300)).await;
        assert!(events.try_recv().is_err());
        assert_eq!(
            monitor.states(),
            BTreeMap::from([
                ("closed", Health::Down),
                ("open", Health::Up),
                ("ping", Health::Up)
            ])
        );
    }
}
