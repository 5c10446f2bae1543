//! lb-ctl: the node daemon and the operator's command-line tool.
//!
//! The library holds everything the binary does so that tests and tools can
//! drive the same code: a pure core that decides (`balancer`, `maglev`,
//! `config`, `role`, the health `Tracker`) and thin edges that do I/O (`dataplane`,
//! `server`, `client`, `alerts`, the health probes).
pub mod alerts;
pub mod api;
pub mod balancer;
pub mod bpffs;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod human;
pub mod maglev;
pub mod neighbours;
pub mod replication;
pub mod role;
pub mod run;
pub mod server;
