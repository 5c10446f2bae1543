//! Health checks: what to check ([`Check`], [`Timing`], [`HealthSpec`]:
//! `spec.rs`, with the configuration's TOML), the probes ([`probe()`], and
//! one module per kind under [`probe`]), the up/down state machine
//! ([`Tracker`]) and the tokio tasks that run them for the daemon's backends
//! ([`Monitor`]: `task.rs`).
//!
//! A backend starts up (a restarted daemon must not take backends out while
//! it checks them again), goes down after `fall` failed probes in a row and
//! comes back after `rise` successful probes in a row. Every change is sent
//! to the daemon as an [`Event`]; the daemon turns it into data-plane updates
//! (no new flows to a down backend, the sorry server when all are down) and
//! alert-log lines. This module does no data-plane work itself.
//!
//! The probes and the tracker know nothing of backends or services: each
//! probe kind is one function from its parameters, a target address and a
//! timeout to `Result<(), ProbeError>` ([`probe::tcp::probe`],
//! [`probe::http::probe`], [`probe::https::probe`], [`probe::icmp::probe`]),
//! and a [`Tracker`] turns any stream of results into up/down changes, so
//! that other monitors (an ICMP check of a list of addresses, say) reuse
//! them as they are.
use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod probe;
mod spec;
mod task;
#[cfg(test)]
mod testing;
mod tracker;

pub use probe::{BODY_LIMIT, ProbeError, Stage, probe};
pub use spec::{Check, HealthSpec, MAX_INTERVAL_MS, MIN_INTERVAL_MS, SpecError, Timing};
pub use task::{Event, Monitor};
pub use tracker::{Health, Tracker};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lock is never held across anything that can panic half-way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
