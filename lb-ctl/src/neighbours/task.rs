//! The daemon's neighbour task (an edge): makes the entries before the
//! program is attached, then re-reads and keeps them, feeding each reading
//! to the daemon's event loop (which raises the alerts). The netlink waits
//! are here, never in the daemon's loop.
use std::{collections::BTreeSet, net::IpAddr, sync::Arc, time::Instant};

use tokio::sync::Notify;

use super::{INTERVAL, Reading, START_WAIT, Tracker, netlink::Netlink};
use crate::{
    config::Config,
    daemon::{Event, Handle, LoopError},
};

/// Every address the program may forward to under `config`: backends (in
/// any state) and sorry servers.
pub fn forward_targets(config: &Config) -> BTreeSet<IpAddr> {
    config
        .services
        .iter()
        .flat_map(|s| {
            s.backends
                .iter()
                .map(|b| b.address.ip())
                .chain(s.sorry.map(|a| a.ip()))
        })
        .collect()
}

/// Before the program is attached: makes the neighbour entries `config`
/// needs and waits (at most [`START_WAIT`]) until each is
/// resolved or has failed, so that a fresh node forwards its first packet.
/// Returns the last reading.
pub async fn first_neighbours(netlink: &Netlink, config: &Config) -> Reading {
    let targets = forward_targets(config);
    let deadline = Instant::now() + START_WAIT;
    let mut tracker = Tracker::new();
    loop {
        let reading = netlink.sync(&targets).await;
        for error in &reading.errors {
            tracing::warn!(%error, "neighbour entries");
        }
        tracker.observe(&reading.routes, &reading.table);
        if tracker.settled() || Instant::now() >= deadline {
            if !tracker.settled() {
                tracing::info!("some backends' neighbours are still being resolved");
            }
            return reading;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Keeps the neighbour entries of the backends: every
/// [`INTERVAL`], and at once after a change (`wake`). Ends with the
/// daemon's event loop; a round it does not answer is skipped.
pub async fn keep_neighbours(daemon: Handle, wake: Arc<Notify>, netlink: Netlink) {
    let mut reported = BTreeSet::new();
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(INTERVAL) => {}
        }
        let targets = match daemon.ask(Event::ForwardTargets).await {
            Ok(targets) => targets,
            Err(LoopError::Stopped) => return,
            Err(err @ LoopError::NotAnswering(_)) => {
                tracing::warn!(error = %err, "neighbour entries not read this round");
                continue;
            }
        };
        let reading = netlink.sync(&targets).await;
        // Each failure logged once while it lasts.
        let errors: BTreeSet<String> = reading.errors.iter().cloned().collect();
        for error in errors.difference(&reported) {
            tracing::warn!(%error, "neighbour entries");
        }
        reported = errors;
        match daemon.tell(Event::Neighbours(reading)).await {
            Ok(()) => {}
            Err(LoopError::Stopped) => return,
            Err(err @ LoopError::NotAnswering(_)) => {
                tracing::warn!(error = %err, "a neighbour reading was dropped");
            }
        }
    }
}
