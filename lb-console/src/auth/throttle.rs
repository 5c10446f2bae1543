//! Failed logins slow the next attempts down: from one source address,
//! after [`FREE_FAILURES`] failures in a row, each next attempt must wait,
//! 30 s after the first extra failure and twice as long after each next
//! one, up to 15 minutes. A successful login, or a quiet quarter of an
//! hour, clears the source's record. The limit is per source, so that
//! an attacker elsewhere cannot lock the administrator out.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Failures from one source allowed before attempts must wait.
pub const FREE_FAILURES: u32 = 5;
/// The first wait.
pub const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait.
pub const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// A source quiet this long starts again from nothing.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The most sources remembered (the quietest are forgotten first).
pub const MAX_SOURCES: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Throttle {
    by_source: HashMap<IpAddr, Failures>,
}

impl Throttle {
    /// `Ok` when `from` may try to log in at `now`, or how long it must
    /// still wait.
    pub fn check(&self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(f) = self.by_source.get(&from) else {
            return Ok(());
        };
        let Some(wait) = wait_after(f.count) else {
            return Ok(());
        };
        let since = now.saturating_duration_since(f.last);
        if since >= FORGET_AFTER || since >= wait {
            Ok(())
        } else {
            Err(wait - since)
        }
    }

    /// Records a failed login from `from` at `now`.
    pub fn failed(&mut self, from: IpAddr, now: Instant) {
        self.by_source
            .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        if self.by_source.len() >= MAX_SOURCES
            && !self.by_source.contains_key(&from)
            && let Some(quietest) = self
                .by_source
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip)
        {
            self.by_source.remove(&quietest);
        }
        let entry = self.by_source.entry(from).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Records a successful login from `from`: its failures are forgotten.
    pub fn succeeded(&mut self, from: IpAddr) {
        self.by_source.remove(&from);
    }
}

/// How long a source with `count` failures in a row waits (None: no wait).
fn wait_after(count: u32) -> Option<Duration> {
    let extra = count.checked_sub(FREE_FAILURES)?;
    let doublings = extra.min(16);
    Some((FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 10));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 11));

    #[test]
    fn five_failures_are_free_then_waits_double_up_to_the_longest() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check(A, t0), Ok(()));
            t.failed(A, t0);
        }
        // Five in a row: the sixth attempt waits.
        assert_eq!(t.check(A, t0), Err(FIRST_WAIT));
        let mut now = t0 + FIRST_WAIT;
        assert_eq!(t.check(A, now), Ok(()));
        t.failed(A, now);
        assert_eq!(t.check(A, now), Err(FIRST_WAIT * 2));
        // Another source is not affected.
        assert_eq!(t.check(B, now), Ok(()));
        // Failures ten minutes apart (less than FORGET_AFTER) keep counting.
        for _ in 0..10 {
            now += Duration::from_secs(600);
            t.failed(A, now);
        }
        assert_eq!(t.check(A, now), Err(LONGEST_WAIT));
        assert_eq!(
            t.check(A, now + Duration::from_secs(60)),
            Err(LONGEST_WAIT - Duration::from_secs(60))
        );
    }

    #[test]
    fn success_or_a_quiet_quarter_hour_forgets_the_failures() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES + 2 {
            t.failed(A, t0);
        }
        assert!(t.check(A, t0).is_err());
        t.succeeded(A);
        assert_eq!(t.check(A, t0), Ok(()));

        for _ in 0..FREE_FAILURES + 2 {
            t.failed(B, t0);
        }
        let later = t0 + FORGET_AFTER;
        assert_eq!(t.check(B, later), Ok(()));
        // And the count starts again from one.
        t.failed(B, later);
        assert_eq!(t.check(B, later), Ok(()));
    }
}
