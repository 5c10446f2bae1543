//! The node daemon (`lb-ctl run`): owns the data plane, applies and persists
//! changes, lays health over the configuration, raises the alerts.
//!
//! The decisions live in `balancer` (what the maps must hold) and `config`
//! (what is valid); the daemon sequences them with the I/O. Its state, the
//! [`Daemon`], is owned by one task, the event loop (`event_loop.rs`):
//! every request and every result of the other tasks (API, health checks,
//! neighbour readings, the cluster) comes to it as an [`Event`], one at a
//! time, and nothing else holds the daemon.
//!
//! - `mod.rs`: the [`Daemon`], its start and stop, health and neighbour
//!   readings laid over it;
//! - `changes.rs`: the changes (import, one change, the active's pushed
//!   settings): validated, applied, persisted, committed or rolled back;
//! - `views.rs`: status, services, counters;
//! - `cluster.rs`: the role map, lease and floating IPs, and the alerts of
//!   the cluster's events and settings pushes;
//! - `event_loop.rs`: the [`Event`]s, the loop that owns the daemon, and the
//!   [`Handle`] other tasks send through (with a bounded wait);
//! - `setup.rs`: the bpffs and the API socket, before the daemon starts.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::Result;
use tokio::sync::{Notify, mpsc};

use crate::{
    alerts::AlertLog,
    api::{AlertEvent, AlertLevel},
    balancer::{BackendState, Balancer, ServiceName, ServiceSpec, Tables},
    bpffs,
    cluster::serve::ClusterLink,
    config::{Config, XdpMode},
    dataplane::{self, AttachMode, Dataplane, PinState},
    health::{self, Health, Monitor},
    neighbours,
    role::Role,
};

mod changes;
mod cluster;
pub mod event_loop;
pub mod flow_filter;
mod replication;
mod setup;
mod views;

pub use event_loop::{Event, Handle, LoopError};
pub use setup::{bind_api, ensure_bpffs};

/// A backend's health-check key: its service and address.
pub type HealthKey = (ServiceName, SocketAddr);

/// Why a change was not applied. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// The daemon's state, owned by its event loop: changes are applied one at
/// a time.
pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    balancer: Balancer,
    dataplane: Dataplane,
    health: BTreeMap<HealthKey, Health>,
    monitor: Monitor<HealthKey>,
    alerts: AlertLog,
    started: Instant,
    adopted: bool,
    role: Role,
    /// The backends' neighbour entries, as last read.
    neighbours: neighbours::Tracker,
    /// Wakes the neighbour task after a change (new backends get their
    /// entries at once).
    neighbour_wake: Arc<Notify>,
    /// The pins vanish with this process (see `bpffs`).
    bpffs_private: bool,
    /// The cluster's status and requests, when the node is clustered.
    cluster: Option<ClusterLink>,
}

impl Daemon {
    /// Loads the data plane (adopting what a previous daemon pinned), fills
    /// the maps from `config`, sets `role` (decided by `role::decide`),
    /// attaches, and starts the health checks.
    pub fn start(
        config_path: PathBuf,
        config: Config,
        role: Role,
        events: mpsc::Sender<health::Event<HealthKey>>,
    ) -> Result<Self> {
        let alerts = AlertLog::open(&config.node.alert_log)?;
        let dir = config.node.bpffs_dir.clone();
        ensure_bpffs(&dir)?;
        let (dataplane, pins) = Dataplane::open(&dir)?;
        let balancer = match &pins {
            PinState::Adopted => Balancer::adopt(dataplane.read_tables()?),
            PinState::Fresh => Balancer::new(),
            PinState::Replaced { reason } => {
                alerts.record(
                    AlertLevel::Warning,
                    AlertEvent::DataplaneReplaced,
                    format!("pinned maps of an incompatible version were replaced: {reason}"),
                );
                Balancer::new()
            }
        };
        let mut daemon = Daemon {
            config_path,
            balancer,
            dataplane,
            health: BTreeMap::new(),
            monitor: Monitor::new(events),
            alerts,
            started: Instant::now(),
            adopted: pins == PinState::Adopted,
            role,
            cluster: None,
            config: config.clone(),
            neighbours: neighbours::Tracker::new(),
            neighbour_wake: Arc::new(Notify::new()),
            bpffs_private: false,
        };
        // Maps first, then the program: the first packet already sees every
        // service.
        let (next, ops) = daemon
            .balancer
            .plan(&daemon.specs(&config))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        daemon.dataplane.apply(&ops)?;
        daemon.balancer = next;
        if daemon.adopted {
            // Before the program is replaced: the adopted table's flows
            // keep their backends from their next SYN on. A walk that
            // fails does not stop the start: the filter's task walks again
            // as soon as it runs.
            if let Err(err) = daemon.rebuild_flow_filter() {
                tracing::warn!(error = %format!("{err:#}"), "the flow filter was not rebuilt at start; its task tries again");
            }
        }
        daemon.dataplane.set_role(role)?;
        // No lease until a cluster renews one (a lease a clustered daemon
        // left in the pins must not fence a standalone node).
        daemon.dataplane.set_lease(0)?;
        // No flow reports until a cluster reads them (a switch a clustered
        // daemon left on in the pins would fill the ring of a standalone
        // node, and count every new flow as lost).
        daemon.dataplane.set_replicate(false)?;
        let mode = match config.node.xdp_mode {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => {
                tracing::warn!(
                    "generic XDP mode: every packet goes through the kernel's skb path first"
                );
                AttachMode::Generic
            }
        };
        let mut adopted_links = Vec::new();
        for iface in &config.node.interfaces {
            if daemon.dataplane.attach_pinned(iface, mode, &dir)? {
                adopted_links.push(iface.clone());
            }
        }
        daemon.monitor.reconcile(health_targets(&config));
        let how = if adopted_links.is_empty() {
            "attached".to_owned()
        } else {
            format!(
                "adopted the running program on {}",
                adopted_links.join(", ")
            )
        };
        daemon.alerts.record(
            AlertLevel::Info,
            AlertEvent::DaemonStarted,
            format!(
                "lb-ctl {} started on {} ({how}; configuration generation {})",
                env!("CARGO_PKG_VERSION"),
                config.node.name,
                config.generation
            ),
        );
        Ok(daemon)
    }

    /// What the balancer gets: the configuration with health laid over it
    /// (a backend whose check is down is disabled: its flows move).
    fn specs(&self, config: &Config) -> Vec<ServiceSpec> {
        config
            .services
            .iter()
            .map(|service| {
                let mut spec = ServiceSpec::from(service);
                for backend in &mut spec.backends {
                    let down =
                        self.health.get(&(service.name(), backend.addr)) == Some(&Health::Down);
                    if down {
                        backend.state = BackendState::Disabled;
                    }
                }
                spec
            })
            .collect()
    }

    /// A health check changed state: the backend leaves or rejoins.
    pub fn on_health(&mut self, event: health::Event<HealthKey>) {
        let (service, address) = event.key;
        let before = self.usable(&service);
        self.health.insert((service, address), event.health);
        let (level, name, verb) = match event.health {
            Health::Down => (AlertLevel::Warning, AlertEvent::BackendDown, "down"),
            Health::Up => (AlertLevel::Info, AlertEvent::BackendUp, "up"),
        };
        self.alerts.record(
            level,
            name,
            format!(
                "service {service}: backend {address} is {verb}: {}",
                event.reason
            ),
        );
        match self.balancer.plan(&self.specs(&self.config)) {
            Ok((next, ops)) => match self.dataplane.apply(&ops) {
                Ok(()) => self.balancer = next,
                Err(err) => {
                    self.roll_back(&next);
                    tracing::error!(error = %format!("{err:#}"), "applying a health change failed");
                }
            },
            Err(err) => tracing::error!(error = %err, "planning a health change failed"),
        }
        let after = self.usable(&service);
        if before && !after {
            let sorry = self
                .config
                .services
                .iter()
                .find(|s| s.name() == service)
                .and_then(|s| s.sorry);
            let then = match sorry {
                Some(addr) => format!("new flows go to the sorry server {addr}"),
                None => "new flows are dropped (no sorry server)".to_owned(),
            };
            self.alerts.record(
                AlertLevel::Error,
                AlertEvent::NoUsableBackend,
                format!("service {service} has no usable backend: {then}"),
            );
        } else if !before && after {
            self.alerts.record(
                AlertLevel::Info,
                AlertEvent::ServiceRecovered,
                format!("service {service} has a usable backend again"),
            );
        }
    }

    /// What wakes the neighbour task.
    pub fn neighbour_wake(&self) -> Arc<Notify> {
        self.neighbour_wake.clone()
    }

    /// A reading of the routes and neighbour entries: the backends'
    /// neighbour states, and an alert for every failure and recovery.
    pub fn on_neighbours(&mut self, reading: &neighbours::Reading) {
        for t in self.neighbours.observe(&reading.routes, &reading.table) {
            let users = neighbours::users_of(&self.config, t.backend);
            let hop = t.next_hop.as_ref().map(neighbours::netlink::describe);
            let (level, event, message) = t.alert(&users, hop.as_deref());
            self.alerts.record(level, event, message);
        }
    }

    /// Every address the program may forward to: backends and sorry
    /// servers.
    pub fn forward_targets(&self) -> BTreeSet<IpAddr> {
        neighbours::task::forward_targets(&self.config)
    }

    pub fn alerts(&self) -> &AlertLog {
        &self.alerts
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tables(&self) -> &Tables {
        self.balancer.tables()
    }

    /// The pins are on a bpffs private to this process's mount namespace
    /// (allowed by `node.allow_private_bpffs`): said now, and at the stop.
    pub fn set_private_bpffs(&mut self, mount_point: &Path) {
        self.bpffs_private = true;
        self.alerts.record(
            AlertLevel::Warning,
            AlertEvent::BpffsPrivate,
            format!(
                "{} is on a bpffs ({}) that only this process's mount namespace has: the XDP program is detached when lb-ctl exits (node.allow_private_bpffs = true)",
                self.config.node.bpffs_dir.display(),
                mount_point.display()
            ),
        );
    }

    /// What stays after the daemon stops (logged, and in the alert log),
    /// as the pins show it.
    pub fn stop(&mut self) {
        let dir = &self.config.node.bpffs_dir;
        if self.config.node.detach_on_stop {
            match dataplane::unpin_links(dir) {
                Ok(ifaces) => self.alerts.record(
                    AlertLevel::Info,
                    AlertEvent::DaemonStopped,
                    format!("stopped; XDP detached from {}", ifaces.join(", ")),
                ),
                Err(err) => tracing::error!(error = %format!("{err:#}"), "detaching failed"),
            }
            return;
        }
        let links: Vec<(String, bool)> = self
            .config
            .node
            .interfaces
            .iter()
            .map(|iface| (iface.clone(), dataplane::link_pinned(dir, iface)))
            .collect();
        let (level, message) = bpffs::stop_message(&links, dir, self.bpffs_private);
        self.alerts
            .record(level, AlertEvent::DaemonStopped, message);
    }
}

/// Health-check targets: every backend of a service with a check.
fn health_targets(config: &Config) -> Vec<(HealthKey, SocketAddr, health::HealthSpec)> {
    let mut targets = Vec::new();
    for service in &config.services {
        for backend in &service.backends {
            if let Some(spec) = service.health_of(backend) {
                targets.push((
                    (service.name(), backend.address),
                    backend.address,
                    spec.clone(),
                ));
            }
        }
    }
    targets
}
