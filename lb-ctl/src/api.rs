//! The local API's request and response types: one set for the daemon, the
//! CLI and the console, in [`lb_common::api`] (with the table of routes);
//! re-exported here for the daemon's and the CLI's code.
pub use lb_common::api::{
    Accepted, Alert, AlertEvent, AlertLevel, ApiError, Applied, BackendView, Change,
    ClusterOperation, ConfigCheck, ConfigProblem, NextHop, ServiceRef, ServiceView, Stats, Status,
    Synchronized, Traffic,
};
