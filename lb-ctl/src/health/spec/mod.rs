//! What to check ([`Check`]) and when ([`Timing`]), together a
//! [`HealthSpec`]: API values (a service's settings carry them), so they
//! live in [`lb_common::api::health`] with their serde form (the
//! configuration's TOML) and their validation; the probes that carry them
//! out are this crate's ([`super::probe`]).
pub use lb_common::api::health::{
    Check, HealthSpec, MAX_INTERVAL_MS, MIN_INTERVAL_MS, SpecError, Timing,
};

#[cfg(test)]
mod tests;
