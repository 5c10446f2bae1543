//! The two-node cluster's core: who serves (membership) and what the nodes
//! say to each other (heartbeats). Pure and unit-tested; the daemon's edges
//! carry out what it decides.
pub mod config;
pub mod floating;
pub mod heartbeat;
pub mod init;
pub mod keys;
pub mod link;
pub mod membership;
pub mod monitors;
pub mod node;
pub mod replicate;
pub mod serve;
pub mod sync;

pub use crate::role::Role;
