//! The `[cluster]` section: the two servers, the interconnects, heartbeat
//! timing, network-partition (NP) targets, the failover group (floating IPs)
//! and the monitors. Validated as a whole; an error names the key it is
//! about (a [`Path`] the configuration file turns into line and column).
//!
//! Default timing, and why: a heartbeat every 40 ms on every interconnect,
//! the peer lost after 5 missed on all of them (200 ms). The dead time stays
//! well under the 300 ms a failover may take in all; a false takeover needs
//! 5 consecutive losses on every interconnect at once: with two
//! interconnects each losing 10 % of heartbeats, 0.1^10 per 40 ms, about
//! once in 10^7 hours. 25 datagrams of 108 bytes a second per interconnect
//! cost nothing.
use std::{collections::BTreeSet, time::Duration};

use super::membership::Params;

pub mod live;

// The section's types are the API's (`GET`/`PUT /v1/config` carry them):
// plain data in `lb_common::api::config`. What checks them is here
// ([`ClusterRules`]).
pub use lb_common::api::config::{
    ClusterConfig, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_LOST_AFTER,
    DEFAULT_HEARTBEAT_PORT, DEFAULT_REPLICATION_PORT, DEFAULT_SYNC_PORT, FinalAction, FloatingIp,
    Interconnect, Monitor, MonitorKind, MonitorWhen, Server, default_key_file, default_tls_dir,
};

/// One step of the path to a key: `cluster.interconnects[1].addresses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    /// A key known only at run time (a server's name).
    Name(String),
    Index(usize),
}

/// Where a problem is, from the document's root.
pub type Path = Vec<Seg>;

/// A `[cluster]` section that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterError {
    pub path: Path,
    pub message: String,
}

fn at(path: &[Seg], message: impl Into<String>) -> ClusterError {
    let mut full = vec![Seg::Key("cluster")];
    full.extend_from_slice(path);
    ClusterError {
        path: full,
        message: format!("cluster: {}", message.into()),
    }
}

use Seg::{Index, Key};

/// What the daemon checks and derives of a `[cluster]` section.
pub trait ClusterRules {
    /// Checks the section against this node (`node.name`, its interfaces).
    fn validate(&self, node_name: &str, interfaces: &[String]) -> Result<(), ClusterError>;
    /// The membership parameters for this node (after
    /// [`validate`](Self::validate)).
    fn params(&self, node_name: &str) -> Option<Params>;
}

impl ClusterRules for ClusterConfig {
    fn validate(&self, node_name: &str, interfaces: &[String]) -> Result<(), ClusterError> {
        self.validate_identity()?;
        self.validate_servers(node_name)?;
        self.validate_interconnects()?;
        self.validate_timing()?;
        self.validate_floating_ips(interfaces)?;
        self.validate_monitors(interfaces)
    }

    fn params(&self, node_name: &str) -> Option<Params> {
        let me = self.me(node_name)?;
        let survivor = match &self.survivor {
            Some(name) => self.me(name)?,
            None => 0,
        };
        let interval = Duration::from_millis(self.heartbeat_interval_ms);
        Some(Params {
            me,
            peer: 1 - me,
            links: self.interconnects.len(),
            interval,
            lost_after: self.heartbeat_lost_after,
            np_targets: !self.np_targets.is_empty(),
            np_recheck: (interval * self.heartbeat_lost_after).max(Duration::from_secs(1)),
            auto_failback: self.auto_failback,
            survivor,
            max_failovers: self.max_failovers,
            failover_window: Duration::from_secs(self.failover_window_s),
        })
    }
}

/// The checks [`ClusterRules::validate`] is made of, one per part.
trait Checks {
    fn validate_identity(&self) -> Result<(), ClusterError>;
    fn validate_servers(&self, node_name: &str) -> Result<(), ClusterError>;
    fn validate_interconnects(&self) -> Result<(), ClusterError>;
    fn validate_timing(&self) -> Result<(), ClusterError>;
    fn validate_floating_ips(&self, interfaces: &[String]) -> Result<(), ClusterError>;
    fn validate_monitors(&self, interfaces: &[String]) -> Result<(), ClusterError>;
    /// The servers' names, for messages: `lb1, lb2`.
    fn server_names(&self) -> String;
}

impl Checks for ClusterConfig {
    fn validate_identity(&self) -> Result<(), ClusterError> {
        if self.id.len() != 32 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(at(
                &[Key("id")],
                "id must be 32 hex digits (`lb-ctl cluster init` makes one)",
            ));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(at(&[Key("key_file")], "key_file must name a file"));
        }
        if self.tls_dir.as_os_str().is_empty() {
            return Err(at(&[Key("tls_dir")], "tls_dir must name a directory"));
        }
        Ok(())
    }

    fn validate_servers(&self, node_name: &str) -> Result<(), ClusterError> {
        if self.servers.len() != 2 {
            return Err(at(
                &[Key("servers")],
                format!(
                    "a cluster has exactly two servers, {} are configured",
                    self.servers.len()
                ),
            ));
        }
        for (i, server) in self.servers.iter().enumerate() {
            if server.name.trim().is_empty() {
                return Err(at(&[Key("servers"), Index(i)], "a server needs a name"));
            }
            if self.servers[..i].iter().any(|s| s.name == server.name) {
                return Err(at(
                    &[Key("servers"), Index(i)],
                    format!("server {:?} is listed twice", server.name),
                ));
            }
        }
        if self.me(node_name).is_none() {
            return Err(at(
                &[Key("servers")],
                format!(
                    "this node ({node_name:?}, node.name) is not among the servers ({})",
                    self.server_names()
                ),
            ));
        }
        if let Some(survivor) = &self.survivor
            && self.servers.iter().all(|s| &s.name != survivor)
        {
            return Err(at(
                &[Key("survivor")],
                format!(
                    "survivor {survivor:?} is not one of the servers ({})",
                    self.server_names()
                ),
            ));
        }
        Ok(())
    }

    fn server_names(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn validate_interconnects(&self) -> Result<(), ClusterError> {
        if self.interconnects.is_empty() {
            return Err(at(
                &[Key("interconnects")],
                "at least one interconnect is needed (two or more ride out a cut link)",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, link) in self.interconnects.iter().enumerate() {
            let here = [Key("interconnects"), Index(i)];
            if link.name.trim().is_empty() {
                return Err(at(&here, "an interconnect needs a name"));
            }
            if self.interconnects[..i].iter().any(|l| l.name == link.name) {
                return Err(at(
                    &here,
                    format!("interconnect {:?} is listed twice", link.name),
                ));
            }
            let addrs = [Key("interconnects"), Index(i), Key("addresses")];
            if link.addresses.len() != self.servers.len() {
                return Err(at(
                    &addrs,
                    format!(
                        "interconnect {:?} needs one address per server ({}), it has {}",
                        link.name,
                        self.servers.len(),
                        link.addresses.len()
                    ),
                ));
            }
            if link
                .addresses
                .iter()
                .any(|a| a.is_ipv4() != link.addresses[0].is_ipv4())
            {
                return Err(at(
                    &addrs,
                    format!("interconnect {:?} mixes IPv4 and IPv6", link.name),
                ));
            }
            for addr in &link.addresses {
                if addr.is_unspecified() || addr.is_multicast() {
                    return Err(at(
                        &addrs,
                        format!("{addr} cannot be an interconnect address"),
                    ));
                }
                if !seen.insert(*addr) {
                    return Err(at(
                        &addrs,
                        format!("{addr} is used twice among the interconnects"),
                    ));
                }
            }
            if link.port == 0 {
                return Err(at(&[Key("interconnects"), Index(i), Key("port")], "port 0"));
            }
        }
        Ok(())
    }

    fn validate_timing(&self) -> Result<(), ClusterError> {
        if !(10..=10_000).contains(&self.heartbeat_interval_ms) {
            return Err(at(
                &[Key("heartbeat_interval_ms")],
                format!(
                    "heartbeat_interval_ms {} is not 10..=10000",
                    self.heartbeat_interval_ms
                ),
            ));
        }
        if !(2..=100).contains(&self.heartbeat_lost_after) {
            return Err(at(
                &[Key("heartbeat_lost_after")],
                format!(
                    "heartbeat_lost_after {} is not 2..=100 (one lost heartbeat must never fail over)",
                    self.heartbeat_lost_after
                ),
            ));
        }
        if self.sync_port == 0 {
            return Err(at(&[Key("sync_port")], "sync_port must be above 0"));
        }
        if self.replication_port == 0 {
            return Err(at(
                &[Key("replication_port")],
                "replication_port must be above 0",
            ));
        }
        if self.replication_port == self.sync_port {
            return Err(at(
                &[Key("replication_port")],
                format!(
                    "replication_port {} is the sync_port too: each needs a port of its own",
                    self.replication_port
                ),
            ));
        }
        if self.failover_window_s == 0 {
            return Err(at(
                &[Key("failover_window_s")],
                "failover_window_s must be above 0",
            ));
        }
        for (i, target) in self.np_targets.iter().enumerate() {
            if target.is_unspecified() || target.is_multicast() || target.is_loopback() {
                return Err(at(
                    &[Key("np_targets"), Index(i)],
                    format!("{target} cannot be an NP target (it must be outside this node)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_floating_ips(&self, interfaces: &[String]) -> Result<(), ClusterError> {
        let mut seen = BTreeSet::new();
        for (i, fip) in self.floating_ips.iter().enumerate() {
            let here = [Key("floating_ips"), Index(i), Key("address")];
            let (addr, _) = fip
                .parse()
                .map_err(|e| at(&here, format!("floating IP: {e}")))?;
            if !seen.insert(addr) {
                return Err(at(&here, format!("floating IP {addr} is listed twice")));
            }
            if self
                .interconnects
                .iter()
                .any(|l| l.addresses.contains(&addr))
            {
                return Err(at(
                    &here,
                    format!("floating IP {addr} is also an interconnect address"),
                ));
            }
            if !interfaces.contains(&fip.interface) {
                return Err(at(
                    &[Key("floating_ips"), Index(i), Key("interface")],
                    format!(
                        "floating IP {addr}: interface {:?} is not one of node.interfaces",
                        fip.interface
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_monitors(&self, interfaces: &[String]) -> Result<(), ClusterError> {
        if self.monitors.len() > super::heartbeat::MAX_MONITORS {
            return Err(at(
                &[Key("monitors"), Index(super::heartbeat::MAX_MONITORS)],
                format!(
                    "at most {} monitors (each one's state travels in the heartbeats); this has {}",
                    super::heartbeat::MAX_MONITORS,
                    self.monitors.len()
                ),
            ));
        }
        for (i, m) in self.monitors.iter().enumerate() {
            let here = |key| [Key("monitors"), Index(i), Key(key)];
            let name = &m.name;
            if name.trim().is_empty() {
                return Err(at(&here("name"), "a monitor needs a name"));
            }
            if self.monitors[..i].iter().any(|o| &o.name == name) {
                return Err(at(
                    &here("name"),
                    format!("monitor {name:?} is listed twice"),
                ));
            }
            if m.interval_ms < 10 || m.timeout_ms < 10 {
                return Err(at(
                    &here("interval_ms"),
                    format!("monitor {name:?}: interval_ms and timeout_ms must be at least 10"),
                ));
            }
            if m.retries == 0 {
                return Err(at(
                    &here("retries"),
                    format!("monitor {name:?}: retries must be at least 1"),
                ));
            }
            for server in &m.servers {
                if self.servers.iter().all(|s| &s.name != server) {
                    return Err(at(
                        &here("servers"),
                        format!(
                            "monitor {name:?}: {server:?} is not one of the servers ({})",
                            self.server_names()
                        ),
                    ));
                }
            }
            // Each kind's own field, and no other kind's.
            let fields = [
                ("interface", m.interface.is_some(), MonitorKind::Link),
                ("targets", !m.targets.is_empty(), MonitorKind::Ip),
                ("process", m.process.is_some(), MonitorKind::Process),
                ("command", !m.command.is_empty(), MonitorKind::Exec),
            ];
            for (field, present, owner) in fields {
                if present && owner != m.kind {
                    return Err(at(
                        &here(field),
                        format!(
                            "monitor {name:?}: `{field}` belongs to kind {owner:?}, not {:?}",
                            m.kind
                        )
                        .to_lowercase(),
                    ));
                }
                if !present && owner == m.kind {
                    return Err(at(
                        &here("kind"),
                        format!("monitor {name:?}: kind {:?} needs `{field}`", m.kind)
                            .to_lowercase(),
                    ));
                }
            }
            if let Some(iface) = &m.interface
                && !interfaces.contains(iface)
            {
                return Err(at(
                    &here("interface"),
                    format!("monitor {name:?}: interface {iface:?} is not one of node.interfaces"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
