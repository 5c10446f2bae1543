//! What the daemon shows: its status, the services with their backends'
//! health, traffic and neighbours, and the counters. Read only.
use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Result;

use crate::{
    api::{BackendView, NextHop, ServiceView, Stats, Status, Traffic},
    balancer::{BackendState, ServiceName, ServiceSpec},
    config::ServiceConfig,
    health::Health,
    neighbours::{self, Resolution},
};

use super::Daemon;

impl Daemon {
    /// True when the service has a backend that may take new flows.
    pub(super) fn usable(&self, service: &ServiceName) -> bool {
        let Some(config) = self.config.services.iter().find(|s| &s.name() == service) else {
            return false;
        };
        config.backends.iter().any(|b| {
            b.state == BackendState::Enabled
                && b.weight > 0
                && self.health.get(&(*service, b.address)) != Some(&Health::Down)
        })
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
            xdp_mode: self.config.node.xdp_mode,
            adopted: self.adopted,
            services: self.config.services.len(),
            backends,
            backends_down: self.health.values().filter(|h| **h == Health::Down).count(),
            neighbours_unresolved: self.neighbours.failed(),
            config_file: self.config_path.display().to_string(),
            cluster: self.cluster.as_ref().map(|c| {
                let mut status = c.status.borrow().clone();
                status.sync = c.sync.clone();
                let mut replication = c.replication.borrow().clone();
                replication.records_lost = self
                    .dataplane
                    .counters()
                    .ok()
                    .and_then(|all| {
                        all.into_iter()
                            .find(|(c, _)| *c == lb_common::Counter::FlowRecordsLost)
                    })
                    .map_or(0, |(_, v)| v);
                status.replication = Some(replication);
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
        let key = ServiceSpec::from(service).key();
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

    /// The data plane's packet counters by name.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .dataplane
            .counters()?
            .into_iter()
            .map(|(c, v)| (c.name().to_owned(), v))
            .collect())
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            counters: self.counters()?,
            services: self.services(),
        })
    }
}
