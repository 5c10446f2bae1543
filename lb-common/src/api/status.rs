//! The node at a glance: [`Status`] (`GET /v1/status`, `lb-ctl status`),
//! with the node's [`Role`].
use std::{fmt, prelude::rust_2024::*};

use serde::{Deserialize, Serialize};

use super::{cluster::ClusterStatus, config::XdpMode};

/// What a node does with service traffic. Serde: `"active"`, `"standby"`
/// (the API's spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Forwards service traffic.
    Active,
    /// Forwards nothing for services: their packets go to the kernel.
    Standby,
}

impl Role {
    /// The value the data plane's settings map holds for this role (the
    /// one conversion to [`crate::role`]'s `u32`).
    pub fn to_map(self) -> u32 {
        match self {
            Role::Active => crate::role::ACTIVE,
            Role::Standby => crate::role::STANDBY,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Standby => "standby",
        })
    }
}

/// The node at a glance (`lb-ctl status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub version: String,
    pub role: Role,
    pub generation: u64,
    pub uptime_seconds: u64,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// True when this daemon adopted a program left attached by a previous
    /// one (restart without interruption).
    pub adopted: bool,
    pub services: usize,
    pub backends: usize,
    pub backends_down: usize,
    /// Backend addresses whose next hop's link-layer address cannot be
    /// resolved (or that have no route).
    #[serde(default)]
    pub neighbours_unresolved: usize,
    pub config_file: String,
    /// The pair, when this node is clustered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}
