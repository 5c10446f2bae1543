//! Changes to the configuration: the operator's (a whole file imported, or
//! one [`Change`]), and the settings the active pushes to a standby. Each
//! is validated, applied to the maps in `Ops` order, persisted, and only
//! then committed; a change that fails at any step leaves maps and file as
//! they were, and an alert says why.
use std::net::SocketAddr;

use crate::{
    api::{AlertEvent, AlertLevel, Applied, Change, ConfigCheck, ConfigProblem, ServiceRef},
    balancer::{Balancer, Ops},
    cluster::{
        config::{ClusterConfig, live},
        serve::settings_hash,
        sync::{self, SyncMessage, SyncReply, Verdict},
    },
    config::{Config, ConfigFile as _, ServiceConfig},
    role::Role,
};

/// A configuration that passed every check: the balancer's next state and
/// the map operations that get there, and the `[cluster]` keys the
/// cluster's loop takes live.
struct Checked {
    next: Balancer,
    ops: Ops,
    cluster_changes: Vec<String>,
}

/// Why a configuration is refused, and the key it is about (None: the
/// whole).
struct Refused {
    key: Option<String>,
    error: ChangeError,
}

impl Refused {
    fn whole(error: ChangeError) -> Refused {
        Refused { key: None, error }
    }
}

use super::{ChangeError, Daemon, health_targets};

impl Daemon {
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
        // The active's `[cluster]`: its live keys are taken (the loop gets
        // them with the commit), else this node's section stays.
        if let Some(active) = &message.cluster {
            new.cluster = self.cluster_from_active(&new, active);
        }
        match sync::judge(held, &message, &computed) {
            Verdict::Apply => {}
            Verdict::AlreadyHeld => return reply(200, "already held".into(), held.0),
            Verdict::Stale(why) => {
                self.alerts.record(
                    AlertLevel::Warning,
                    AlertEvent::SyncRefused,
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

    /// What the operator's `new` configuration would do, nothing changed
    /// (`POST /v1/config/check`): the same checks as
    /// [`apply_config`](Self::apply_config) (the standby's refusal, the
    /// `[node]` section, the whole file's rules, the `[cluster]` keys a
    /// running node can change, the balancer's plan).
    pub fn check_config(&self, new: &Config) -> ConfigCheck {
        let outcome = match self.standby_refusal() {
            Some(refusal) => Err(Refused::whole(ChangeError::Conflict(refusal))),
            None => self.checked(new),
        };
        match outcome {
            Ok(checked) => ConfigCheck {
                valid: true,
                error: None,
                cluster_changes: checked.cluster_changes,
            },
            Err(refused) => ConfigCheck {
                valid: false,
                error: Some(ConfigProblem {
                    key: refused.key,
                    message: refused.error.to_string(),
                }),
                cluster_changes: Vec::new(),
            },
        }
    }

    /// The checks of a new configuration, before anything is touched: the
    /// plan that applies it, or why not (and where).
    fn checked(&self, new: &Config) -> Result<Checked, Refused> {
        if new.node != self.config.node {
            return Err(Refused::whole(ChangeError::Invalid(
                "the [node] section cannot change while the daemon runs: edit the file and restart lb-ctl run".into(),
            )));
        }
        if let Err((location, message)) = new.validate() {
            return Err(Refused {
                key: location.key(),
                error: ChangeError::Invalid(message),
            });
        }
        let cluster_changes = match live::judge(self.config.cluster.as_ref(), new.cluster.as_ref())
        {
            live::Verdict::Unchanged => Vec::new(),
            live::Verdict::Live(keys) => keys,
            live::Verdict::Refused { key, message } => {
                return Err(Refused {
                    key: Some(key),
                    error: ChangeError::Invalid(message),
                });
            }
        };
        let (next, ops) = self
            .balancer
            .plan(&self.specs(new))
            .map_err(|err| Refused::whole(ChangeError::Invalid(err.to_string())))?;
        Ok(Checked {
            next,
            ops,
            cluster_changes,
        })
    }

    /// The `[cluster]` section a standby runs with after a push that
    /// carries the active's: the active's when only live keys differ and
    /// it is valid here, else this node's own (with an alert naming why).
    fn cluster_from_active(&self, new: &Config, active: &ClusterConfig) -> Option<ClusterConfig> {
        let own = self.config.cluster.clone();
        let why = match live::judge(own.as_ref(), Some(active)) {
            live::Verdict::Unchanged => return own,
            live::Verdict::Live(_) => {
                let candidate = Config {
                    cluster: Some(active.clone()),
                    ..new.clone()
                };
                match candidate.validate() {
                    Ok(()) => return Some(active.clone()),
                    Err((_, why)) => why,
                }
            }
            live::Verdict::Refused { message, .. } => message,
        };
        self.alerts.record(
            AlertLevel::Warning,
            AlertEvent::SyncRefused,
            format!(
                "the active's [cluster] settings are not taken here, this node keeps its own: {why}"
            ),
        );
        own
    }

    /// Validates, applies and persists `new` (its generation already set):
    /// the maps, then the cluster's live settings, then the file; a step
    /// that fails undoes the ones before.
    fn commit_config(&mut self, new: Config, what: &str) -> Result<Applied, ChangeError> {
        let Checked {
            next,
            ops,
            cluster_changes,
        } = match self.checked(&new) {
            Ok(checked) => checked,
            Err(refused) => return self.reject(what, refused.error),
        };
        if let Err(err) = self.dataplane.apply(&ops) {
            self.roll_back(&next);
            return self.reject(
                what,
                ChangeError::Failed(format!("writing the maps: {err:#}")),
            );
        }
        if !cluster_changes.is_empty()
            && let Err(why) = self.reconfigure_cluster(new.cluster.as_ref())
        {
            self.roll_back(&next);
            return self.reject(what, ChangeError::Failed(why));
        }
        if let Err(err) = new.save(&self.config_path) {
            self.roll_back(&next);
            if !cluster_changes.is_empty() {
                let old = self.config.cluster.clone();
                if let Err(why) = self.reconfigure_cluster(old.as_ref()) {
                    tracing::error!(error = %why, "giving the cluster its settings back");
                }
            }
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
        let cluster = if cluster_changes.is_empty() {
            String::new()
        } else {
            format!("; the cluster took {} live", cluster_changes.join(", "))
        };
        self.alerts.record(
            AlertLevel::Info,
            AlertEvent::ConfigApplied,
            format!("{what} (generation {}){cluster}", self.config.generation),
        );
        Ok(Applied {
            generation: self.config.generation,
        })
    }

    /// Hands a `[cluster]` section to the cluster's loop (only keys
    /// `live` allows differ from what it runs).
    fn reconfigure_cluster(&self, cluster: Option<&ClusterConfig>) -> Result<(), String> {
        let (Some(link), Some(cluster)) = (self.cluster.as_ref(), cluster) else {
            return Err("the cluster's loop is not running: nothing was changed".into());
        };
        link.settings
            .send(cluster.clone())
            .map_err(|_| "the cluster's loop has stopped: nothing was changed".to_owned())
    }

    fn reject(&self, what: &str, err: ChangeError) -> Result<Applied, ChangeError> {
        self.alerts.record(
            AlertLevel::Warning,
            AlertEvent::ConfigRejected,
            format!("{what}: {err}"),
        );
        Err(err)
    }

    /// Brings the maps back from `failed` (partly applied) to the committed
    /// state.
    pub(super) fn roll_back(&mut self, failed: &Balancer) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{balancer::BackendState, config::BackendConfig};

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
                "service tcp/198.18.0.100:80 already has backend 198.18.1.12:80",
            ),
            (
                Change::DelService {
                    service: "udp/198.18.0.100:80".parse().unwrap(),
                },
                "no service udp/198.18.0.100:80",
            ),
            (
                Change::DelBackend {
                    service: svc(),
                    address: "198.18.1.99:80".parse().unwrap(),
                },
                "service tcp/198.18.0.100:80 has no backend 198.18.1.99:80",
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
                "service tcp/198.18.0.100:80 already exists",
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
