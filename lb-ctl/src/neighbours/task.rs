//! The daemon's neighbour task (an edge): makes the entries before the
//! program is attached, then re-reads and keeps them, feeding each reading
//! to the daemon (which raises the alerts).
use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use super::{INTERVAL, Reading, START_WAIT, Tracker, netlink::Netlink};
use crate::{config::Config, daemon::Shared};

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
/// [`INTERVAL`], and at once after a change.
pub async fn keep_neighbours(shared: Shared, netlink: Netlink) {
    let wake = shared.lock().await.neighbour_wake();
    let mut reported = BTreeSet::new();
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(INTERVAL) => {}
        }
        let targets = shared.lock().await.forward_targets();
        let reading = netlink.sync(&targets).await;
        // Each failure logged once while it lasts.
        let errors: BTreeSet<String> = reading.errors.iter().cloned().collect();
        for error in errors.difference(&reported) {
            tracing::warn!(%error, "neighbour entries");
        }
        reported = errors;
        shared.lock().await.on_neighbours(&reading);
    }
}
