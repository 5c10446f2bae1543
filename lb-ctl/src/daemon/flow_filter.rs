//! The flow filter's upkeep (see `dataplane::FlowFilter`): rebuilt from
//! the connection table when the daemon adopts a previous daemon's maps
//! (their filter may lack flows an older program confirmed), then by a
//! task of its own whenever enough bits were set since the last rebuild
//! ([`dataplane::rebuild_due`]), outside the daemon's loop (a walk of a
//! full table takes seconds).
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::dataplane::{self, FlowFilterKeeper};

use super::Daemon;

/// How often the task looks at the filter.
const CHECK_EVERY: Duration = Duration::from_secs(5);

impl Daemon {
    /// The filter and a reader of the connection table of its own, for
    /// [`keep`].
    pub fn flow_filter_keeper(&self) -> Result<FlowFilterKeeper> {
        self.dataplane.flow_filter_keeper()
    }

    /// Rebuilds the filter in the calling thread (at start, before the
    /// program is attached or replaced).
    pub(super) fn rebuild_flow_filter(&self) -> Result<()> {
        let started = Instant::now();
        let rebuilt = self.dataplane.rebuild_flow_filter()?;
        tracing::info!(
            flows = rebuilt.flows,
            bits = rebuilt.bits,
            took_ms = started.elapsed().as_millis() as u64,
            "flow filter rebuilt from the adopted connection table"
        );
        Ok(())
    }
}

/// Rebuilds the filter once at start (flows an older program confirmed
/// before this daemon's program replaced it), then whenever one is due.
/// A failed rebuild leaves the filter the program reads as it was; it is
/// said, and tried again at the next check.
pub async fn keep(keeper: FlowFilterKeeper) {
    let keeper = std::sync::Arc::new(keeper);
    let mut after_last = None;
    let mut last = Instant::now();
    loop {
        let due = match after_last {
            None => true,
            Some(after_last) => dataplane::rebuild_due(keeper.bits(), after_last, last.elapsed()),
        };
        if due {
            let started = Instant::now();
            let task = std::sync::Arc::clone(&keeper);
            match tokio::task::spawn_blocking(move || task.rebuild()).await {
                Ok(Ok(rebuilt)) => {
                    tracing::debug!(
                        flows = rebuilt.flows,
                        bits = rebuilt.bits,
                        took_ms = started.elapsed().as_millis() as u64,
                        "flow filter rebuilt"
                    );
                    after_last = Some(rebuilt.bits);
                    last = Instant::now();
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %format!("{err:#}"), "flow filter not rebuilt; the program reads the previous one")
                }
                Err(err) => tracing::warn!(error = %err, "the flow filter's rebuild stopped"),
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
