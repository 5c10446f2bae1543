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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MonitorState, StreamRole, SyncState};

    /// A clustered node's status as the daemon sends it, written out by
    /// hand: it reads into the types and writes back to the same text.
    const CLUSTERED: &str = concat!(
        r#"{"node":"lb2","version":"0.1.0","role":"standby","generation":3,"uptime_seconds":61,"#,
        r#""interfaces":["ext0","int0"],"xdp_mode":"generic","adopted":true,"services":1,"#,
        r#""backends":2,"backends_down":0,"neighbours_unresolved":1,"config_file":"/etc/lb/lb.toml","#,
        r#""cluster":{"role":"standby","since_unix":1795618445,"peer_alive":true,"#,
        r#""peer_role":"active","peer_eligible":true,"links":[["hb1",true],["hb2",false]],"#,
        r#""monitors":[["uplink","normal"]],"peer_monitors":[["uplink",null]],"#,
        r#""servers":["lb2","lb1"],"healthy":true,"last_change":"peer active","failovers":0,"#,
        r#""takeovers":{"count":1,"last_unix":1795618400},"stopped":false,"stopping":false,"#,
        r#""peer_stopped":false,"refused":[["bad_mac",2]],"settings":[3,"ab12"],"#,
        r#""peer_settings":[3,"ab12"],"sync":{"state":"synchronized","generation":3},"#,
        r#""replication":{"stream":"receiving","connected":true,"caught_up":true,"epoch":2,"#,
        r#""lag_messages":0,"lag_flows":0,"lag_ms":0,"messages":10,"flows":40,"resends":0,"#,
        r#""gaps":0,"resyncs":1,"refreshed":0,"duplicates":0,"stale":0,"dropped":0,"foreign":0,"#,
        r#""unknown_service":0,"unknown_backend":0,"records_lost":0,"garbage":0,"#,
        r#""refused_connections":0}}}"#
    );

    #[test]
    fn a_clustered_status_reads_and_writes_the_daemons_json() {
        let status: Status = serde_json::from_str(CLUSTERED).unwrap();
        assert_eq!(status.role, Role::Standby);
        assert_eq!(status.xdp_mode, XdpMode::Generic);
        let cluster = status.cluster.as_ref().unwrap();
        assert_eq!(cluster.peer_role, Some(Role::Active));
        assert_eq!(cluster.monitors, [("uplink".into(), MonitorState::Normal)]);
        assert_eq!(
            cluster.sync,
            Some(SyncState::Synchronized { generation: 3 })
        );
        assert_eq!(
            cluster.replication.as_ref().unwrap().stream,
            StreamRole::Receiving
        );
        assert_eq!(serde_json::to_string(&status).unwrap(), CLUSTERED);
    }

    #[test]
    fn roles_are_spelled_in_lower_case() {
        for (role, text) in [(Role::Active, "active"), (Role::Standby, "standby")] {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{text}\""));
            assert_eq!(role.to_string(), text);
        }
        assert!(serde_json::from_str::<Role>("\"Active\"").is_err());
        assert_eq!(Role::Active.to_map(), crate::role::ACTIVE);
        assert_eq!(Role::Standby.to_map(), crate::role::STANDBY);
        // A zeroed settings map means active.
        assert_eq!(Role::Active.to_map(), 0);
    }
}
