//! The node daemon (`lb-ctl run`): owns the data plane, applies and persists
//! changes, runs the health checks, serves the local API and the metrics.
//!
//! The decisions live in `balancer` (what the maps must hold) and `config`
//! (what is valid); this file sequences them with the I/O: every change is
//! validated, applied to the maps, persisted, and only then committed; a
//! change that fails at any step leaves maps and file as they were.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use tokio::sync::{Mutex, Notify, mpsc};

use crate::{
    alerts::AlertLog,
    api::{
        AlertLevel, Applied, BackendView, Change, NextHop, ServiceRef, ServiceView, Stats, Status,
        Traffic,
    },
    balancer::{BackendState, Balancer, Ops, ServiceName, ServiceSpec, Tables},
    bpffs,
    cluster::{
        serve::{ClusterLink, settings_hash},
        sync::{self, SyncMessage, SyncReply, Verdict},
    },
    config::{Config, ServiceConfig, XdpMode},
    dataplane::{self, AttachMode, Dataplane, PinState},
    health::{self, Health, Monitor},
    neighbours::{self, Resolution},
    role::Role,
};

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

/// The daemon's state, behind one lock: changes are applied one at a time.
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

pub type Shared = Arc<Mutex<Daemon>>;

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
                    "dataplane_replaced",
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
        daemon.dataplane.set_role(role)?;
        // No lease until a cluster renews one (a lease a clustered daemon
        // left in the pins must not fence a standalone node).
        daemon.dataplane.set_lease(0)?;
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
            "daemon_started",
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
                let mut spec = service.spec();
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

    /// Validates, applies and persists a whole new configuration (the
    /// operator's: refused on a clustered standby, whose settings come from
    /// the active).
    pub fn apply_config(&mut self, mut new: Config, what: &str) -> Result<Applied, ChangeError> {
        if let Some(refusal) = self.standby_refusal() {
            return self.reject(what, ChangeError::Conflict(refusal));
        }
        new.generation = self.config.generation + 1;
        self.commit_config(new, what)
    }

    /// On a clustered standby, why the operator's change is refused (it
    /// names the active node, the peer).
    fn standby_refusal(&self) -> Option<String> {
        if self.cluster.is_none() || self.role != Role::Standby {
            return None;
        }
        let me = &self.config.node.name;
        let peer = self
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.servers.iter().find(|s| &s.name != me))
            .map_or("the peer", |s| s.name.as_str());
        Some(sync::standby_refusal(peer))
    }

    /// The settings the active pushed (see `cluster::sync`): applied with
    /// the active's generation, keeping this node's `[node]` and
    /// `[cluster]`; a stale generation is refused (409), so is a push to an
    /// active node.
    pub fn apply_replicated(&mut self, message: SyncMessage) -> SyncReply {
        let held = (self.config.generation, settings_hash(&self.config));
        let reply = |status: u16, message: String, generation: u64| SyncReply {
            status,
            message,
            generation,
        };
        if self.role == Role::Active {
            return reply(
                409,
                "this node is active: it takes no settings from its peer".into(),
                held.0,
            );
        }
        let mut new = self.config.clone();
        new.services = message.services.clone();
        let computed = settings_hash(&new);
        match sync::judge(held, &message, &computed) {
            Verdict::Apply => {}
            Verdict::AlreadyHeld => return reply(200, "already held".into(), held.0),
            Verdict::Stale(why) => {
                self.alerts.record(
                    AlertLevel::Warning,
                    "sync_refused",
                    format!("settings from the active refused: {why}"),
                );
                return reply(409, why, held.0);
            }
            Verdict::Invalid(why) => return reply(400, why, held.0),
        }
        new.generation = message.generation;
        match self.commit_config(new, "settings replicated from the active") {
            Ok(applied) => reply(200, "applied".into(), applied.generation),
            Err(err @ ChangeError::Failed(_)) => reply(500, err.to_string(), held.0),
            Err(err) => reply(400, err.to_string(), held.0),
        }
    }

    /// Validates, applies and persists `new` (its generation already set).
    fn commit_config(&mut self, new: Config, what: &str) -> Result<Applied, ChangeError> {
        if new.node != self.config.node {
            return self.reject(
                what,
                ChangeError::Invalid(
                    "the [node] section cannot change while the daemon runs: edit the file and restart lb-ctl run".into(),
                ),
            );
        }
        if let Err((_, message)) = new.validate() {
            return self.reject(what, ChangeError::Invalid(message));
        }
        let (next, ops) = match self.balancer.plan(&self.specs(&new)) {
            Ok(plan) => plan,
            Err(err) => return self.reject(what, ChangeError::Invalid(err.to_string())),
        };
        if let Err(err) = self.dataplane.apply(&ops) {
            self.roll_back(&next);
            return self.reject(
                what,
                ChangeError::Failed(format!("writing the maps: {err:#}")),
            );
        }
        if let Err(err) = new.save(&self.config_path) {
            self.roll_back(&next);
            return self.reject(
                what,
                ChangeError::Failed(format!(
                    "saving {}: {err}; the change was undone",
                    self.config_path.display()
                )),
            );
        }
        self.balancer = next;
        self.config = new;
        let targets = health_targets(&self.config);
        // Health of backends (or checks) that are gone is forgotten.
        self.health
            .retain(|key, _| targets.iter().any(|(k, _, _)| k == key));
        self.monitor.reconcile(targets);
        self.neighbour_wake.notify_one();
        self.alerts.record(
            AlertLevel::Info,
            "config_applied",
            format!("{what} (generation {})", self.config.generation),
        );
        Ok(Applied {
            generation: self.config.generation,
        })
    }

    fn reject(&self, what: &str, err: ChangeError) -> Result<Applied, ChangeError> {
        self.alerts.record(
            AlertLevel::Warning,
            "config_rejected",
            format!("{what}: {err}"),
        );
        Err(err)
    }

    /// Brings the maps back from `failed` (partly applied) to the committed
    /// state.
    fn roll_back(&mut self, failed: &Balancer) {
        let back = failed
            .plan(&self.specs(&self.config))
            .map(|(_, ops)| ops)
            .unwrap_or_else(|_| Ops::default());
        if let Err(err) = self.dataplane.apply(&back) {
            tracing::error!(error = %format!("{err:#}"), "rolling the maps back failed");
        }
    }

    /// Applies one change.
    pub fn change(&mut self, change: Change) -> Result<Applied, ChangeError> {
        let what = describe(&change);
        let mut new = self.config.clone();
        if let Err(err) = edit(&mut new, change) {
            return self.reject(&what, err);
        }
        self.apply_config(new, &what)
    }

    /// A health check changed state: the backend leaves or rejoins.
    pub fn on_health(&mut self, event: health::Event<HealthKey>) {
        let (service, address) = event.key;
        let before = self.usable(&service);
        self.health.insert((service, address), event.health);
        let (level, name, verb) = match event.health {
            Health::Down => (AlertLevel::Warning, "backend_down", "down"),
            Health::Up => (AlertLevel::Info, "backend_up", "up"),
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
                "no_usable_backend",
                format!("service {service} has no usable backend: {then}"),
            );
        } else if !before && after {
            self.alerts.record(
                AlertLevel::Info,
                "service_recovered",
                format!("service {service} has a usable backend again"),
            );
        }
    }

    /// True when the service has a backend that may take new flows.
    fn usable(&self, service: &ServiceName) -> bool {
        let Some(config) = self.config.services.iter().find(|s| &s.name() == service) else {
            return false;
        };
        config.backends.iter().any(|b| {
            b.state == BackendState::Enabled
                && b.weight > 0
                && self.health.get(&(*service, b.address)) != Some(&Health::Down)
        })
    }

    /// The cluster changed this node's role: the data plane's role map
    /// first (forwarding starts or stops at once), then the daemon's state.
    pub fn set_role(&mut self, role: Role) -> Result<()> {
        self.dataplane.set_role(role)?;
        self.role = role;
        Ok(())
    }

    /// A handle of the lease map for the cluster's event loop (see
    /// `lb_common::maps::LEASE`).
    pub fn lease_handle(&self) -> Result<crate::dataplane::Lease> {
        self.dataplane.lease_handle()
    }

    /// The floating IPs the data plane fences (see `lb_common::maps::LEASE`).
    pub fn set_floating(&mut self, addresses: &[std::net::IpAddr]) -> Result<()> {
        self.dataplane.set_floating(addresses)
    }

    /// Connects the cluster's status and requests (see `cluster::serve`).
    pub fn attach_cluster(&mut self, link: ClusterLink) {
        self.cluster = Some(link);
    }

    /// The node's role in the data plane.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the operator's cluster requests go, when clustered.
    pub fn cluster(&self) -> Option<&ClusterLink> {
        self.cluster.as_ref()
    }

    pub fn status(&self) -> Status {
        let backends: usize = self.config.services.iter().map(|s| s.backends.len()).sum();
        Status {
            node: self.config.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            role: self.role,
            generation: self.config.generation,
            uptime_seconds: self.started.elapsed().as_secs(),
            interfaces: self.config.node.interfaces.clone(),
            xdp_mode: format!("{:?}", self.config.node.xdp_mode).to_lowercase(),
            adopted: self.adopted,
            services: self.config.services.len(),
            backends,
            backends_down: self.health.values().filter(|h| **h == Health::Down).count(),
            neighbours_unresolved: self.neighbours.failed(),
            config_file: self.config_path.display().to_string(),
            cluster: self.cluster.as_ref().map(|c| {
                let mut status = c.status.borrow().clone();
                status.sync = c.sync.borrow().clone();
                status
            }),
        }
    }

    pub fn services(&self) -> Vec<ServiceView> {
        self.config
            .services
            .iter()
            .map(|service| self.service_view(service))
            .collect()
    }

    fn service_view(&self, service: &ServiceConfig) -> ServiceView {
        let key = service.spec().key();
        let traffic = self
            .balancer
            .service_id(&key)
            .and_then(|id| self.dataplane.service_traffic(id).ok())
            .map(Traffic::from)
            .unwrap_or_default();
        ServiceView {
            service: service.name(),
            name: service.name.clone(),
            mode: service.mode,
            sorry: service.sorry,
            no_usable_backend: !self.usable(&service.name()),
            traffic,
            backends: service
                .backends
                .iter()
                .map(|b| BackendView {
                    address: b.address,
                    weight: b.weight,
                    state: b.state,
                    health: self
                        .health
                        .get(&(service.name(), b.address))
                        .copied()
                        .unwrap_or(Health::Up),
                    traffic: self
                        .balancer
                        .backend_id(&key, b.address)
                        .and_then(|id| self.dataplane.backend_traffic(id).ok())
                        .map(Traffic::from)
                        .unwrap_or_default(),
                    neighbour: self.neighbour_of(b.address.ip()).0,
                    next_hop: self.neighbour_of(b.address.ip()).1,
                })
                .collect(),
        }
    }

    /// A backend address's neighbour and the entry it needs.
    fn neighbour_of(&self, address: IpAddr) -> (Resolution, Option<NextHop>) {
        match self.neighbours.status(address) {
            None => (Resolution::Resolving, None),
            Some(status) => (
                status.resolution,
                status.next_hop.map(|key| NextHop {
                    address: key.address,
                    interface: neighbours::netlink::interface_name(key.ifindex),
                }),
            ),
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

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            counters: self
                .dataplane
                .counters()?
                .into_iter()
                .map(|(c, v)| (c.name().to_owned(), v))
                .collect(),
            services: self.services(),
        })
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
            "bpffs_private",
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
                    "daemon_stopped",
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
        self.alerts.record(level, "daemon_stopped", message);
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

/// Applies a change to a configuration, or says why it does not apply.
fn edit(config: &mut Config, change: Change) -> Result<(), ChangeError> {
    match change {
        Change::AddService { service } => {
            if config.services.iter().any(|s| s.name() == service.name()) {
                return Err(ChangeError::Conflict(format!(
                    "service {} already exists",
                    service.name()
                )));
            }
            config.services.push(service);
        }
        Change::SetService { service } => {
            let i = find(config, &service.name())?;
            let old = &mut config.services[i];
            let backends = if service.backends.is_empty() {
                std::mem::take(&mut old.backends)
            } else {
                service.backends.clone()
            };
            *old = ServiceConfig {
                backends,
                ..service
            };
        }
        Change::DelService { service } => {
            let i = find(config, &service)?;
            config.services.remove(i);
        }
        Change::AddBackend { service, backend } => {
            let i = find(config, &service)?;
            let backends = &mut config.services[i].backends;
            if backends.iter().any(|b| b.address == backend.address) {
                return Err(ChangeError::Conflict(format!(
                    "service {service} already has backend {}",
                    backend.address
                )));
            }
            backends.push(backend);
        }
        Change::DelBackend { service, address } => {
            let (i, j) = find_backend(config, &service, address)?;
            config.services[i].backends.remove(j);
        }
        Change::SetBackend {
            service,
            address,
            weight,
            state,
        } => {
            let (i, j) = find_backend(config, &service, address)?;
            let backend = &mut config.services[i].backends[j];
            if weight.is_none() && state.is_none() {
                return Err(ChangeError::Invalid(
                    "set_backend changes nothing: give a weight or a state".into(),
                ));
            }
            if let Some(weight) = weight {
                backend.weight = weight;
            }
            if let Some(state) = state {
                backend.state = state;
            }
        }
    }
    Ok(())
}

/// The index of a service.
fn find(config: &Config, service: &ServiceRef) -> Result<usize, ChangeError> {
    config
        .services
        .iter()
        .position(|s| &s.name() == service)
        .ok_or_else(|| ChangeError::NotFound(format!("no service {service}")))
}

/// The indexes of a service and of one of its backends.
fn find_backend(
    config: &Config,
    service: &ServiceRef,
    address: SocketAddr,
) -> Result<(usize, usize), ChangeError> {
    let i = find(config, service)?;
    let j = config.services[i]
        .backends
        .iter()
        .position(|b| b.address == address)
        .ok_or_else(|| {
            ChangeError::NotFound(format!("service {service} has no backend {address}"))
        })?;
    Ok((i, j))
}

fn describe(change: &Change) -> String {
    match change {
        Change::AddService { service } => format!("service {} added", service.name()),
        Change::SetService { service } => format!("service {} changed", service.name()),
        Change::DelService { service } => format!("service {service} removed"),
        Change::AddBackend { service, backend } => {
            format!("service {service}: backend {} added", backend.address)
        }
        Change::DelBackend { service, address } => {
            format!("service {service}: backend {address} removed")
        }
        Change::SetBackend {
            service,
            address,
            weight,
            state,
        } => {
            let mut what = Vec::new();
            if let Some(w) = weight {
                what.push(format!("weight {w}"));
            }
            if let Some(s) = state {
                what.push(format!("{s:?}").to_lowercase());
            }
            format!(
                "service {service}: backend {address} set to {}",
                what.join(", ")
            )
        }
    }
}

/// Makes sure `dir` is on a bpffs, mounting `/sys/fs/bpf` if that is where
/// it should be and nothing is mounted there.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = Path::new("/sys/fs/bpf");
    let on_bpffs = |path: &Path| -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statfs writes into a zeroed struct we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
    };
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if on_bpffs(existing) {
        return Ok(());
    }
    if dir.starts_with(root) {
        let src = std::ffi::CString::new("bpf")?;
        let target = std::ffi::CString::new("/sys/fs/bpf")?;
        // SAFETY: mount(2) with valid NUL-terminated strings.
        let ret = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if ret != 0 {
            bail!(
                "mounting bpffs on /sys/fs/bpf: {}",
                std::io::Error::last_os_error()
            );
        }
        tracing::info!("mounted bpffs on /sys/fs/bpf");
        return Ok(());
    }
    bail!(
        "{} is not on a bpffs: mount one (mount -t bpf bpf DIR) or set node.bpffs_dir under /sys/fs/bpf",
        dir.display()
    )
}

/// Creates the API socket: its directory root-only, the socket mode 0600.
pub fn bind_api(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        // A daemon that is still running answers; a stale socket does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another lb-ctl daemon is running (its API answers on {})",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn config() -> Config {
        Config::parse(
            r#"
[node]
name = "lb1"
interfaces = ["ext0"]

[[services]]
vip = "198.18.0.100"
port = 80
protocol = "tcp"

[[services.backends]]
address = "198.18.1.11:80"
"#,
        )
        .unwrap()
    }

    fn svc() -> ServiceRef {
        "tcp/198.18.0.100:80".parse().unwrap()
    }

    #[test]
    fn edits_apply_or_say_why_not() {
        let mut c = config();
        let backend = BackendConfig {
            address: "198.18.1.12:80".parse().unwrap(),
            weight: 3,
            state: BackendState::Enabled,
            health: None,
        };
        edit(
            &mut c,
            Change::AddBackend {
                service: svc(),
                backend: backend.clone(),
            },
        )
        .unwrap();
        assert_eq!(c.services[0].backends.len(), 2);
        let cases: Vec<(Change, &str)> = vec![
            (
                Change::AddBackend {
                    service: svc(),
                    backend,
                },
                "service tcp 198.18.0.100:80 already has backend 198.18.1.12:80",
            ),
            (
                Change::DelService {
                    service: "udp/198.18.0.100:80".parse().unwrap(),
                },
                "no service udp 198.18.0.100:80",
            ),
            (
                Change::DelBackend {
                    service: svc(),
                    address: "198.18.1.99:80".parse().unwrap(),
                },
                "service tcp 198.18.0.100:80 has no backend 198.18.1.99:80",
            ),
            (
                Change::SetBackend {
                    service: svc(),
                    address: "198.18.1.11:80".parse().unwrap(),
                    weight: None,
                    state: None,
                },
                "set_backend changes nothing: give a weight or a state",
            ),
            (
                Change::AddService {
                    service: c.services[0].clone(),
                },
                "service tcp 198.18.0.100:80 already exists",
            ),
        ];
        for (change, message) in cases {
            let before = c.clone();
            let err = edit(&mut c, change).unwrap_err();
            assert_eq!(err.to_string(), message);
            assert_eq!(c, before);
        }
        edit(
            &mut c,
            Change::SetBackend {
                service: svc(),
                address: "198.18.1.11:80".parse().unwrap(),
                weight: Some(5),
                state: Some(BackendState::Drained),
            },
        )
        .unwrap();
        assert_eq!(c.services[0].backends[0].weight, 5);
        assert_eq!(c.services[0].backends[0].state, BackendState::Drained);
    }
}
