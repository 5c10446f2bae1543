//! Traffic over the last minutes for the Statistics page: the console
//! samples the daemon's `GET /v1/stats` every [`INTERVAL`] ([`sampler`],
//! the thin edge, each answer bounded in time) into a [`History`] (pure,
//! time is an argument): per service and per backend a bounded ring of
//! [`Point`]s, each the rates (packets, bytes and new flows per second)
//! over the interval before it, from the counters' deltas. A counter that
//! went backwards (the daemon restarted, the backend was added again)
//! starts over: that interval is a gap, never a negative rate; so is a
//! sample the daemon did not answer: a gap, never zero.
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lb_common::api::{Client, Stats, Traffic};

/// How often the daemon is asked.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How many points a series keeps (with [`INTERVAL`]: the last 10 minutes).
pub const POINTS: usize = 60;

/// What a series is of: a service (`PROTOCOL/VIP:PORT`) or one of its
/// backends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Service(String),
    Backend(String, SocketAddr),
}

/// Per second, over one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub packets: f64,
    pub bytes: f64,
    pub new_flows: f64,
}

/// One point of a series, at the end of the interval it covers: its rates,
/// or `None`, a gap (the daemon did not answer, the counters started over,
/// the series was not in the answer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub at: Instant,
    pub rates: Option<Rates>,
}

#[derive(Clone, Debug, Default)]
struct Series {
    /// The last counters read and when: what the next rates are from.
    last: Option<(Instant, Traffic)>,
    points: VecDeque<Point>,
}

/// The last sample: when, and why the daemon did not answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    pub error: Option<String>,
}

/// The samples of every service and backend, bounded.
#[derive(Clone, Debug)]
pub struct History {
    interval: Duration,
    capacity: usize,
    series: BTreeMap<Key, Series>,
    last: Option<Sample>,
}

impl Default for History {
    fn default() -> Self {
        History::new(INTERVAL, POINTS)
    }
}

/// The counters of each service and backend in an answer.
fn counters(stats: &Stats) -> Vec<(Key, Traffic)> {
    let mut out = Vec::new();
    for s in &stats.services {
        let name = s.service.to_string();
        out.push((Key::Service(name.clone()), s.traffic));
        for b in &s.backends {
            out.push((Key::Backend(name.clone(), b.address), b.traffic));
        }
    }
    out
}

/// The rates from `before` to `now` over `seconds`; `None` when a counter
/// went backwards (it started over).
pub fn rates(before: Traffic, now: Traffic, seconds: f64) -> Option<Rates> {
    let delta = |a: u64, b: u64| b.checked_sub(a).map(|d| d as f64 / seconds);
    Some(Rates {
        packets: delta(before.packets, now.packets)?,
        bytes: delta(before.bytes, now.bytes)?,
        new_flows: delta(before.new_flows, now.new_flows)?,
    })
}

impl History {
    /// Samples `interval` apart, `capacity` points per series.
    pub fn new(interval: Duration, capacity: usize) -> History {
        History {
            interval,
            capacity: capacity.max(2),
            series: BTreeMap::new(),
            last: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How far back the charts go.
    pub fn window(&self) -> Duration {
        self.interval * self.capacity as u32
    }

    /// The last sample, if any was taken.
    pub fn last(&self) -> Option<&Sample> {
        self.last.as_ref()
    }

    /// Every series, services before their backends.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.series.keys()
    }

    /// A series' points, oldest first.
    pub fn points(&self, key: &Key) -> Vec<Point> {
        self.series
            .get(key)
            .map(|s| s.points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The rates of the last sample, if it gave `key` some.
    pub fn now(&self, key: &Key) -> Option<Rates> {
        let last = self.last.as_ref()?;
        let point = self.series.get(key)?.points.back()?;
        (point.at == last.at).then_some(point.rates).flatten()
    }

    /// Records the daemon's answer at `at` (or why it gave none).
    pub fn record(&mut self, at: Instant, answer: Result<&Stats, String>) {
        if self.last.as_ref().is_some_and(|l| at <= l.at) {
            // Time does not go back; a sample at the same time adds nothing.
            return;
        }
        match answer {
            Ok(stats) => {
                let now = counters(stats);
                // What is no longer there: a gap, and it starts over if
                // it comes back.
                for (key, series) in self.series.iter_mut() {
                    if !now.iter().any(|(k, _)| k == key) {
                        series.last = None;
                        series.points.push_back(Point { at, rates: None });
                    }
                }
                for (key, traffic) in now {
                    let series = self.series.entry(key).or_default();
                    if let Some((then, before)) = series.last {
                        let seconds = at.duration_since(then).as_secs_f64();
                        series.points.push_back(Point {
                            at,
                            rates: rates(before, traffic, seconds),
                        });
                    }
                    series.last = Some((at, traffic));
                }
                self.last = Some(Sample { at, error: None });
            }
            Err(why) => {
                for series in self.series.values_mut() {
                    series.last = None;
                    series.points.push_back(Point { at, rates: None });
                }
                self.last = Some(Sample {
                    at,
                    error: Some(why),
                });
            }
        }
        let oldest = at.checked_sub(self.window());
        for series in self.series.values_mut() {
            while series.points.len() > self.capacity
                || series
                    .points
                    .front()
                    .is_some_and(|p| oldest.is_some_and(|o| p.at < o))
            {
                series.points.pop_front();
            }
        }
        // A series gone from the answers and with nothing left to show.
        self.series
            .retain(|_, s| s.last.is_some() || s.points.iter().any(|p| p.rates.is_some()));
    }
}

/// The history the pages read and the sampler writes.
pub type Shared = Arc<Mutex<History>>;

/// Asks the daemon once (bounded by `limit` and the daemon client's own
/// bound) and records its answer at `at`.
pub async fn sample(client: &Client, history: &Mutex<History>, at: Instant, limit: Duration) {
    let answer =
        match tokio::time::timeout(limit, crate::daemon::get::<Stats>(client, "/v1/stats")).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "the lb-ctl daemon at {} did not answer within {} s",
                client.socket().display(),
                limit.as_secs_f64()
            )),
        };
    history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(at, answer.as_ref().map_err(Clone::clone));
}

/// Samples the daemon every `history`'s interval until the task is
/// aborted; each answer waited for at most the interval.
pub fn sampler(client: Client, history: Shared) -> tokio::task::JoinHandle<()> {
    let interval = history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .interval();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let limit = interval.min(crate::daemon::ANSWER_TIMEOUT);
            sample(&client, &history, Instant::now(), limit).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "tcp/198.18.0.100:80";

    fn traffic(packets: u64, bytes: u64, new_flows: u64) -> Traffic {
        Traffic {
            packets,
            bytes,
            new_flows,
        }
    }

    /// A daemon's answer with the service `WEB` and its backend
    /// 198.18.1.11:80 (JSON as the daemon writes it).
    fn stats(service: Traffic, backend: Option<Traffic>) -> Stats {
        let t = |t: Traffic| {
            format!(
                r#"{{"packets":{},"bytes":{},"new_flows":{}}}"#,
                t.packets, t.bytes, t.new_flows
            )
        };
        let backends = backend
            .map(|b| {
                format!(
                    r#"{{"address":"198.18.1.11:80","weight":1,"state":"enabled","health":"up","traffic":{},"neighbour":"resolved"}}"#,
                    t(b)
                )
            })
            .unwrap_or_default();
        serde_json::from_str(&format!(
            r#"{{"counters":{{}},"services":[{{"service":{{"protocol":"tcp","vip":"198.18.0.100:80"}},"mode":"nat","no_usable_backend":false,"traffic":{},"backends":[{backends}]}}]}}"#,
            t(service)
        ))
        .unwrap()
    }

    fn service() -> Key {
        Key::Service(WEB.into())
    }

    fn backend() -> Key {
        Key::Backend(WEB.into(), "198.18.1.11:80".parse().unwrap())
    }

    fn rates_of(points: &[Point]) -> Vec<Option<(f64, f64, f64)>> {
        points
            .iter()
            .map(|p| p.rates.map(|r| (r.packets, r.bytes, r.new_flows)))
            .collect()
    }

    #[test]
    fn rates_are_the_deltas_over_the_interval() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(10 * i);
        let mut h = History::default();
        h.record(
            s(0),
            Ok(&stats(
                traffic(1000, 100_000, 10),
                Some(traffic(600, 60_000, 6)),
            )),
        );
        // The first sample only sets where the counting starts.
        assert_eq!(h.points(&service()), []);
        assert_eq!(h.now(&service()), None);
        h.record(
            s(1),
            Ok(&stats(
                traffic(1500, 150_000, 13),
                Some(traffic(900, 90_000, 8)),
            )),
        );
        h.record(
            s(2),
            Ok(&stats(
                traffic(1500, 150_000, 13),
                Some(traffic(900, 90_000, 8)),
            )),
        );
        assert_eq!(
            rates_of(&h.points(&service())),
            [Some((50.0, 5000.0, 0.3)), Some((0.0, 0.0, 0.0))]
        );
        assert_eq!(
            rates_of(&h.points(&backend())),
            [Some((30.0, 3000.0, 0.2)), Some((0.0, 0.0, 0.0))]
        );
        assert_eq!(h.points(&service())[1].at, s(2));
        assert_eq!(
            h.now(&service()),
            Some(Rates {
                packets: 0.0,
                bytes: 0.0,
                new_flows: 0.0
            })
        );
        assert_eq!(
            h.keys().cloned().collect::<Vec<_>>(),
            [service(), backend()]
        );
        // An interval that is not exactly 10 s: per second all the same.
        h.record(
            s(2) + Duration::from_secs(4),
            Ok(&stats(
                traffic(1502, 150_000, 13),
                Some(traffic(900, 90_000, 8)),
            )),
        );
        assert_eq!(h.now(&service()).unwrap().packets, 0.5);
    }

    #[test]
    fn a_counter_that_went_backwards_starts_over_without_a_negative_rate() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(10 * i);
        let mut h = History::default();
        h.record(s(0), Ok(&stats(traffic(1000, 100_000, 10), None)));
        h.record(s(1), Ok(&stats(traffic(1100, 110_000, 11), None)));
        // The daemon restarted: its counters begin again from 0.
        h.record(s(2), Ok(&stats(traffic(40, 4_000, 1), None)));
        h.record(s(3), Ok(&stats(traffic(140, 14_000, 3), None)));
        assert_eq!(
            rates_of(&h.points(&service())),
            [Some((10.0, 1000.0, 0.1)), None, Some((10.0, 1000.0, 0.2))]
        );
        // One counter alone going back is enough.
        h.record(s(4), Ok(&stats(traffic(150, 15_000, 2), None)));
        assert_eq!(h.points(&service())[3].rates, None);
        assert!(
            h.points(&service())
                .iter()
                .filter_map(|p| p.rates)
                .all(|r| r.packets >= 0.0 && r.bytes >= 0.0 && r.new_flows >= 0.0)
        );
    }

    #[test]
    fn a_sample_the_daemon_did_not_answer_is_a_gap_not_zero() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(10 * i);
        let mut h = History::default();
        h.record(s(0), Ok(&stats(traffic(0, 0, 0), Some(traffic(0, 0, 0)))));
        h.record(
            s(1),
            Ok(&stats(traffic(100, 1000, 1), Some(traffic(100, 1000, 1)))),
        );
        h.record(s(2), Err("cannot reach the lb-ctl daemon".into()));
        assert_eq!(
            h.last(),
            Some(&Sample {
                at: s(2),
                error: Some("cannot reach the lb-ctl daemon".into())
            })
        );
        assert_eq!(h.now(&service()), None);
        // Back: the first answer sets the counting again (the rate over
        // the silence is not known), the next one has rates.
        h.record(
            s(3),
            Ok(&stats(traffic(300, 3000, 3), Some(traffic(300, 3000, 3)))),
        );
        h.record(
            s(4),
            Ok(&stats(traffic(400, 4000, 4), Some(traffic(400, 4000, 4)))),
        );
        for key in [service(), backend()] {
            assert_eq!(
                rates_of(&h.points(&key)),
                [Some((10.0, 100.0, 0.1)), None, Some((10.0, 100.0, 0.1))]
            );
            assert_eq!(
                h.points(&key).iter().map(|p| p.at).collect::<Vec<_>>(),
                [s(1), s(2), s(4)]
            );
        }
        assert_eq!(h.last().unwrap().error, None);
    }

    #[test]
    fn the_rings_are_bounded_and_what_went_away_ages_out() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(10 * i);
        let mut h = History::new(Duration::from_secs(10), 5);
        assert_eq!(h.window(), Duration::from_secs(50));
        for i in 0..20 {
            h.record(
                s(i),
                Ok(&stats(traffic(i * 10, i * 100, i), Some(traffic(i, i, i)))),
            );
        }
        let points = h.points(&service());
        assert_eq!(points.len(), 5);
        assert_eq!(points[0].at, s(15));
        // The backend is deleted: a gap, then nothing once it is older
        // than the window.
        for i in 20..27 {
            h.record(s(i), Ok(&stats(traffic(i * 10, i * 100, i), None)));
        }
        assert_eq!(h.points(&service()).len(), 5);
        assert_eq!(h.keys().cloned().collect::<Vec<_>>(), [service()]);
        // A sample out of order is ignored.
        h.record(s(3), Err("late".into()));
        assert_eq!(h.last().unwrap().at, s(26));
    }
}
