//! The two-node cluster's core: who serves (membership) and what the nodes
//! say to each other (heartbeats). Pure and unit-tested; the daemon's edges
//! carry out what it decides.
pub mod config;
pub mod floating;
pub mod heartbeat;
pub mod init;
pub mod keys;
pub mod membership;

/// A node's role: the active serves the floating IPs and forwards; the
/// standby forwards nothing and waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Active,
    Standby,
}
