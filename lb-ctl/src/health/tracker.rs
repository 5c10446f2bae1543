//! The up/down state machine: pure, no I/O, and not tied to backends.
use super::Timing;

pub use lb_common::api::Health;

/// The up/down state machine of one checked target: pure, no I/O, fed with
/// probe results of any kind (a backend's check, or any other monitor's).
///
/// It starts up unless told otherwise (a restarted daemon must not take
/// backends out while it checks them again). Up goes down after `fall` failed
/// probes in a row; down comes up after `rise` successful probes in a row. A
/// result of the other kind starts the count again, so a flapping target
/// keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    state: Health,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker that starts up. A `rise` or `fall` of 0 counts as 1.
    pub fn new(timing: &Timing) -> Self {
        Self::with_state(timing, Health::Up)
    }

    /// A tracker that starts in `state`, with no probes counted (used when a
    /// backend's check is restarted with new settings: it keeps its state).
    pub fn with_state(timing: &Timing, state: Health) -> Self {
        Self::with_counts(timing.rise, timing.fall, state)
    }

    /// A tracker that starts in `state` and changes after `rise` successes
    /// or `fall` failures in a row (0 counts as 1), with no probes counted.
    pub fn with_counts(rise: u32, fall: u32, state: Health) -> Self {
        Tracker {
            state,
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one probe result; returns `Some(new state)` when the state
    /// changes: up to down after `fall` consecutive failures, down to up
    /// after `rise` consecutive successes.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == Health::Down && self.successes >= self.rise {
                self.state = Health::Up;
                return Some(Health::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == Health::Up && self.failures >= self.fall {
                self.state = Health::Down;
                return Some(Health::Down);
            }
        }
        None
    }

    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testing::*;

    // ---- Tracker ----

    /// Feeds `results` ('T' success, 'F' failure) and returns what each
    /// observation returned: '-' no change, 'U' up, 'D' down.
    fn run(tracker: &mut Tracker, results: &str) -> String {
        results
            .chars()
            .map(|c| match tracker.observe(c == 'T') {
                None => '-',
                Some(Health::Up) => 'U',
                Some(Health::Down) => 'D',
            })
            .collect()
    }

    #[test]
    fn tracker_goes_down_after_fall_failures_and_up_after_rise_successes() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 2, 3));
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "TTFFF"), "----D");
        assert_eq!(tracker.state(), Health::Down);
        // More failures, and a single success: no change.
        assert_eq!(run(&mut tracker, "FFT"), "---");
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "T"), "U");
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "TTTT"), "----");
    }

    #[test]
    fn tracker_flapping_resets_the_counts() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 2, 3));
        assert_eq!(run(&mut tracker, "FFTFFTFFT"), "---------");
        assert_eq!(tracker.state(), Health::Up);
        assert_eq!(run(&mut tracker, "FFF"), "--D");
        assert_eq!(run(&mut tracker, "TFTFTF"), "------");
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "TT"), "-U");
    }

    #[test]
    fn tracker_rise_and_fall_of_one() {
        let mut tracker = Tracker::new(&timing(2000, 1000, 1, 1));
        assert_eq!(run(&mut tracker, "TFFTTFT"), "-D-U-DU");
        // 0 counts as 1.
        let mut tracker = Tracker::new(&timing(2000, 1000, 0, 0));
        assert_eq!(run(&mut tracker, "FT"), "DU");
    }

    #[test]
    fn tracker_can_start_down() {
        let mut tracker = Tracker::with_state(&timing(2000, 1000, 3, 1), Health::Down);
        assert_eq!(tracker.state(), Health::Down);
        assert_eq!(run(&mut tracker, "FTTT"), "---U");
    }
}
