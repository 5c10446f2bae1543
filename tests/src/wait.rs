//! Bounded waits for the rig tests: until a condition holds (within a
//! limit), or that it keeps holding (for a while). Never a timed assertion
//! of speed: the limits are generous bounds, speed is the benches' business.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

/// How often the conditions are checked.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, at most `limit`; the time it took.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Ok(start.elapsed());
        }
        thread::sleep(POLL);
    }
    bail!("{what}: not within {limit:?}")
}

/// Checks that `cond` holds all along `period` (checked again and again);
/// fails at the first time it does not, with what `describe` then says.
pub fn holds_for(
    what: &str,
    period: Duration,
    mut cond: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < period {
        if !cond() {
            bail!(
                "{what}: no longer after {:?}: {}",
                start.elapsed(),
                describe()
            );
        }
        thread::sleep(POLL);
    }
    Ok(())
}
