//! The node's configuration as the API carries it (`GET` and `PUT
//! /v1/config`) and the file holds it: [`Config`], its `[node]` and its
//! `[cluster]` sections. Plain data with its serde form and defaults; what
//! checks it against the rest (validation, the balancer's rules) and reads
//! and writes the file is the daemon's (`lb-ctl`'s `config`).
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    prelude::rust_2024::*,
};

use serde::{Deserialize, Serialize};

use super::service::ServiceConfig;

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Bumped by every change the daemon applies and persists.
    #[serde(default)]
    pub generation: u64,
    pub node: Node,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// The two-node cluster; a standalone node has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// This node: per-node settings, never replicated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// Interfaces the XDP program is attached to (client and backend sides).
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// The local API's Unix socket (root only).
    #[serde(default = "default_api_socket")]
    pub api_socket: PathBuf,
    /// Where the program's link and maps are pinned (on a bpffs).
    #[serde(default = "default_bpffs_dir")]
    pub bpffs_dir: PathBuf,
    /// The alert log (JSON lines, rotated).
    #[serde(default = "default_alert_log")]
    pub alert_log: PathBuf,
    /// Prometheus metrics listen address; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Detach the program when the daemon stops. Default false: forwarding
    /// goes on with the pinned program and maps until the next daemon
    /// adopts them.
    #[serde(default)]
    pub detach_on_stop: bool,
    /// Run even when `bpffs_dir` is on a bpffs private to the daemon's mount
    /// namespace (started with `ip netns exec`...): its pins, and so the
    /// XDP program, vanish when it exits. Default false: refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_private_bpffs: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver: the fast path.
    #[default]
    Native,
    /// In the kernel's generic path, for drivers without XDP (slow).
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn default_api_socket() -> PathBuf {
    PathBuf::from("/run/lb/lb.sock")
}

pub fn default_bpffs_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/lb")
}

pub fn default_alert_log() -> PathBuf {
    PathBuf::from("/var/log/lb/alerts.jsonl")
}

// ---- [cluster] ----

pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 40;
pub const DEFAULT_HEARTBEAT_LOST_AFTER: u32 = 5;
/// UDP port of the heartbeats, on every interconnect address.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 29101;
/// TCP port of the settings sync (TLS), on every interconnect address.
pub const DEFAULT_SYNC_PORT: u16 = 29102;
/// TCP port of the flow replication (TLS), on every interconnect address.
pub const DEFAULT_REPLICATION_PORT: u16 = 29103;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// 32 hex digits, made by `lb-ctl cluster init`: heartbeats and
    /// replication of another cluster are refused.
    #[serde(default)]
    pub id: String,
    /// The heartbeat keys (a file of its own, root only; see
    /// `lb-ctl cluster init`).
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// The cluster's TLS material: `ca.pem`, and `NAME.pem` / `NAME.key`
    /// for each server (made by `lb-ctl cluster init`).
    #[serde(default = "default_tls_dir")]
    pub tls_dir: PathBuf,
    /// TCP port of the settings sync (mutual TLS) on each server's
    /// interconnect addresses (pushed over the first that answers).
    #[serde(default = "default_sync_port")]
    pub sync_port: u16,
    /// TCP port of the flow replication (mutual TLS) on each server's
    /// interconnect addresses: the active connects to the standby's over
    /// the first interconnect that answers, again after a break.
    #[serde(default = "default_replication_port")]
    pub replication_port: u16,
    #[serde(default = "default_interval")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_lost_after")]
    pub heartbeat_lost_after: u32,
    /// Give the group back to the first server when it is healthy again.
    #[serde(default)]
    pub auto_failback: bool,
    /// The server that keeps serving when both are found active; the first
    /// server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor: Option<String>,
    /// Failovers a failed monitor of one server may cause within
    /// `failover_window_s` before the final action applies instead.
    #[serde(default = "default_max_failovers")]
    pub max_failovers: u32,
    #[serde(default = "default_failover_window")]
    pub failover_window_s: u64,
    #[serde(default)]
    pub final_action: FinalAction,
    /// Addresses a node pings when it hears its peer on no interconnect: one
    /// that reaches none of them is the isolated one and does not serve.
    #[serde(default)]
    pub np_targets: Vec<IpAddr>,
    /// In priority order: the first is preferred (failback goes to it).
    pub servers: Vec<Server>,
    /// In priority order.
    pub interconnects: Vec<Interconnect>,
    /// The failover group: moved together to the active node.
    #[serde(default)]
    pub floating_ips: Vec<FloatingIp>,
    #[serde(default)]
    pub monitors: Vec<Monitor>,
}

pub fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/lb/cluster.keys")
}
pub fn default_tls_dir() -> PathBuf {
    PathBuf::from("/etc/lb/tls")
}
fn default_sync_port() -> u16 {
    DEFAULT_SYNC_PORT
}
fn default_replication_port() -> u16 {
    DEFAULT_REPLICATION_PORT
}
fn default_interval() -> u64 {
    DEFAULT_HEARTBEAT_INTERVAL_MS
}
fn default_lost_after() -> u32 {
    DEFAULT_HEARTBEAT_LOST_AFTER
}
fn default_max_failovers() -> u32 {
    3
}
fn default_failover_window() -> u64 {
    3600
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalAction {
    /// Keep serving where the group is; alert.
    #[default]
    None,
    /// Stop the cluster service on the node (it forwards nothing).
    Stop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Must equal that node's `node.name`.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interconnect {
    pub name: String,
    /// One address per server, in the order of `servers`.
    pub addresses: Vec<IpAddr>,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    DEFAULT_HEARTBEAT_PORT
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIp {
    /// Address and prefix length: `198.18.0.100/24`.
    pub address: String,
    pub interface: String,
}

impl FloatingIp {
    /// The address and prefix length, checked.
    pub fn parse(&self) -> Result<(IpAddr, u8), String> {
        let (addr, len) = self
            .address
            .split_once('/')
            .ok_or_else(|| format!("{:?} needs a prefix length (198.18.0.100/24)", self.address))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length {len:?} is not 0..={max}"))?;
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(format!("{addr} cannot be a floating IP"));
        }
        Ok((addr, len))
    }
}

/// A monitor resource. The fields after `kind` belong to one kind each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub name: String,
    pub kind: MonitorKind,
    #[serde(default = "default_monitor_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_monitor_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures before the monitor is in Error.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long after start the monitor waits before its first check.
    #[serde(default)]
    pub start_wait_ms: u64,
    #[serde(default)]
    pub when: MonitorWhen,
    /// Servers that run it; all when empty.
    #[serde(default)]
    pub servers: Vec<String>,
    /// `link`: the interface whose carrier is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// `ip`: addresses pinged; Error when none answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<IpAddr>,
    /// `process`: a process name (as in /proc/PID/comm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// `exec`: the program and its arguments; exit status 0 is Normal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

fn default_monitor_interval() -> u64 {
    1000
}
fn default_monitor_timeout() -> u64 {
    1000
}
fn default_retries() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    /// Carrier of an interface (rtnetlink link events).
    Link,
    /// ICMP to a list of addresses.
    Ip,
    /// A named process runs.
    Process,
    /// The daemon's own event loop answers (watchdog).
    Stall,
    /// A command's exit status.
    Exec,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorWhen {
    #[default]
    Always,
    /// Only while the node is active.
    Active,
}

impl ClusterConfig {
    /// This node's index among the servers.
    pub fn me(&self, node_name: &str) -> Option<u8> {
        self.servers
            .iter()
            .position(|s| s.name == node_name)
            .map(|i| i as u8)
    }
}
