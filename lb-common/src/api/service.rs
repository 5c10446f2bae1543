//! Services and backends as the API, the CLI and the configuration file
//! name them and show them: identity ([`ServiceName`], written
//! `tcp/198.18.0.100:80`), settings ([`ServiceConfig`], [`BackendConfig`])
//! and the daemon's view of them ([`ServiceView`], [`BackendView`]).
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    prelude::rust_2024::*,
};

use serde::{Deserialize, Serialize};

use super::health::HealthSpec;
use crate::{IPPROTO_TCP, IPPROTO_UDP};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number (the data plane's service key holds it).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a service's packets reach its backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    /// Two-arm NAT: backends route their replies through the LB.
    Nat,
    /// Direct server return: backends hold the VIP and answer directly.
    Dsr,
}

/// What a backend may receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// New and existing flows.
    #[default]
    Enabled,
    /// Its existing flows only; no new ones.
    Drained,
    /// Nothing: its flows move to the other backends.
    Disabled,
}

/// A service's identity, written as the CLI takes it and as every message
/// and metric shows it: `tcp/198.18.0.100:80`, `udp/[2001:db8::100]:53`.
/// In JSON: `{"protocol": "tcp", "vip": "198.18.0.100:80"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceName {
    pub protocol: Protocol,
    pub vip: SocketAddr,
}

/// A service as the API and the CLI refer to it.
pub type ServiceRef = ServiceName;

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.vip)
    }
}

impl core::str::FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (protocol, vip) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: write a service as PROTOCOL/VIP:PORT, e.g. tcp/198.18.0.100:80")
        })?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(format!("{s:?}: unknown protocol {other:?} (tcp or udp)"));
            }
        };
        let vip = vip
            .parse()
            .map_err(|_| format!("{s:?}: {vip:?} is not an address:port (IPv6 in brackets)"))?;
        Ok(ServiceName { protocol, vip })
    }
}

/// A service (distribution group), as the configuration file and the API
/// write it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A label for people; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: Mode,
    /// Where new flows go when no backend can take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry: Option<SocketAddr>,
    /// The health check of every backend (a backend may override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

/// A backend (distribution node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub address: SocketAddr,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub state: BackendState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
}

fn default_weight() -> u32 {
    1
}

impl ServiceConfig {
    pub fn name(&self) -> ServiceName {
        ServiceName {
            protocol: self.protocol,
            vip: SocketAddr::new(self.vip, self.port),
        }
    }

    /// The health check of a backend: its own, else the service's.
    pub fn health_of<'a>(&'a self, backend: &'a BackendConfig) -> Option<&'a HealthSpec> {
        backend.health.as_ref().or(self.health.as_ref())
    }
}

/// A checked target's health (a backend's: up gets new flows, down does
/// not). Serde: `"up"`, `"down"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The last `rise` probes succeeded (or it was never down).
    Up,
    /// The last `fall` probes failed, and fewer than `rise` succeeded since.
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// Whether a backend's next hop is resolved: serde `"resolved"`,
/// `"resolving"`, `"unresolved"`, `"no_route"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The next hop's link-layer address is known: packets go out.
    Resolved,
    /// Not known yet, and resolution has not failed (so far).
    #[default]
    Resolving,
    /// Resolution failed (nobody answers ARP or neighbour solicitations):
    /// DSR packets to the backend are dropped (`drop_no_neighbour`), NAT
    /// packets go to the kernel, which drops them too.
    Unresolved,
    /// The node has no route to the backend.
    NoRoute,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolution::Resolved => "resolved",
            Resolution::Resolving => "resolving",
            Resolution::Unresolved => "unresolved",
            Resolution::NoRoute => "no route",
        })
    }
}

/// Packets, bytes and new flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

impl From<crate::Traffic> for Traffic {
    fn from(t: crate::Traffic) -> Self {
        Traffic {
            packets: t.packets,
            bytes: t.bytes,
            new_flows: t.new_flows,
        }
    }
}

/// A service with its backends, their health and traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: ServiceRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry: Option<SocketAddr>,
    /// New flows go to the sorry server (or are dropped): no backend can
    /// take them.
    pub no_usable_backend: bool,
    pub traffic: Traffic,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    pub health: Health,
    pub traffic: Traffic,
    /// Whether the next hop towards the backend is resolved (its
    /// link-layer address known): `resolved`, `resolving`, `unresolved`,
    /// `no_route`. Independent of health checks.
    #[serde(default)]
    pub neighbour: Resolution,
    /// The neighbour entry the backend needs: the backend itself, or the
    /// gateway towards it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<NextHop>,
}

/// An address on an interface of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub address: IpAddr,
    pub interface: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_refs_parse_and_print() {
        for text in ["tcp/198.18.0.100:80", "udp/[2001:db8::100]:53"] {
            let r: ServiceRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        for (bad, why) in [
            ("198.18.0.100:80", "write a service as PROTOCOL/VIP:PORT"),
            ("sctp/198.18.0.100:80", "unknown protocol \"sctp\""),
            ("tcp/198.18.0.100", "is not an address:port"),
        ] {
            let err = bad.parse::<ServiceRef>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn values_have_their_json_spelling() {
        fn json<T: Serialize>(value: T) -> String {
            serde_json::to_string(&value).unwrap()
        }
        assert_eq!(json(Protocol::Udp), "\"udp\"");
        assert_eq!(json(Mode::Dsr), "\"dsr\"");
        assert_eq!(json(BackendState::Drained), "\"drained\"");
        assert_eq!(json(Health::Down), "\"down\"");
        assert_eq!(json(Resolution::NoRoute), "\"no_route\"");
    }
}
