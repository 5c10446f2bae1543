//! The balancer core: from the wanted services and backends to what the data
//! plane's maps must hold, and the operations that get them there. Pure: no
//! I/O; `dataplane` applies the operations.
//!
//! Ids: services and backends get small integer ids (indexes into the Maglev
//! and statistics maps). An id stays with its service or backend as long as
//! it exists; new ones take the lowest free id, in sorted order of identity,
//! so the same configuration applied from scratch gives the same ids, and so
//! byte-identical maps, whatever order it was written in. A backend id given
//! to another backend gets a new generation, so that flows pinned to the old
//! backend are not sent to the new one.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    AF_INET, AF_INET6, Backend, BackendVip, BackendVips, MAX_BACKEND_VIPS, MAX_BACKENDS,
    MAX_SERVICES, NO_BACKEND, SERVICE_ADDR_WORDS, Service, ServiceKey, backend_flags, mode,
};

use crate::maglev::{self, MaglevBackend};

/// The heaviest weight a backend may have.
pub const MAX_WEIGHT: u32 = 10_000;

// The values a service is made of are the API's (and the configuration
// file's): plain data in `lb_common::api`.
pub use lb_common::api::{BackendState, Mode, Protocol, ServiceName};

/// A backend as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
}

/// A service as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub backends: Vec<BackendSpec>,
    /// Where new flows go when no backend can take them.
    pub sorry: Option<SocketAddr>,
}

impl ServiceSpec {
    pub fn name(&self) -> ServiceName {
        ServiceName {
            protocol: self.protocol,
            vip: SocketAddr::new(self.vip, self.port),
        }
    }

    /// The data plane's key of this service.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            addr: addr_bytes(self.vip),
            port: self.port.to_be_bytes(),
            proto: self.protocol.number(),
            family: family(self.vip),
        }
    }
}

/// Why a configuration cannot be applied. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("service {0} is configured twice")]
    DuplicateService(ServiceName),
    #[error("service {service}: backend {backend} is listed twice")]
    DuplicateBackend {
        service: ServiceName,
        backend: SocketAddr,
    },
    #[error("service {service}: {what} {addr} is not of the VIP's address family")]
    FamilyMismatch {
        service: ServiceName,
        what: &'static str,
        addr: SocketAddr,
    },
    #[error(
        "service {service}: {what} {addr} must use the VIP's port {port} in DSR mode (the packet is not rewritten)"
    )]
    DsrPortChange {
        service: ServiceName,
        what: &'static str,
        addr: SocketAddr,
        port: u16,
    },
    #[error("service {service}: {what} {addr} is not a usable unicast address and port")]
    BadAddress {
        service: ServiceName,
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("service {service}: backend {backend} has weight {weight}; the most is {MAX_WEIGHT}")]
    WeightTooLarge {
        service: ServiceName,
        backend: SocketAddr,
        weight: u32,
    },
    #[error("{count} services configured; the data plane holds at most {MAX_SERVICES}")]
    TooManyServices { count: usize },
    #[error(
        "{count} backends configured (sorry servers included); the data plane holds at most {MAX_BACKENDS}"
    )]
    TooManyBackends { count: usize },
    #[error("service {service}: {source}")]
    Maglev {
        service: ServiceName,
        source: maglev::MaglevError,
    },
}

/// A backend's identity: which service, which address, and whether it is
/// that service's sorry server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BackendIdentity {
    service: ServiceKey,
    sorry: bool,
    addr: SocketAddr,
}

/// What the maps hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub services: BTreeMap<ServiceKey, Service>,
    /// Backends by id (only ids in use).
    pub backends: BTreeMap<u32, Backend>,
    /// Maglev tables by service id (services with a usable backend).
    pub maglev: BTreeMap<u32, Vec<u32>>,
}

/// Map operations, in the order they must be applied so that no packet
/// ever sees a service whose table or backends are not written yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// 1. New or changed backends (a disabled backend is written without
    ///    [`backend_flags::LIVE`]).
    pub put_backends: Vec<(u32, Backend)>,
    /// Ids newly given out: their statistics start from zero.
    pub fresh_backend_ids: Vec<u32>,
    pub fresh_service_ids: Vec<u32>,
    /// 2. New or changed Maglev tables.
    pub put_tables: Vec<(u32, Vec<u32>)>,
    /// 2b. Words of [`lb_common::maps::SERVICE_ADDRS`] that gain bits,
    ///    with the bits of the old and the new services both: a service is
    ///    never in the map while its address's bit is clear.
    pub set_service_addrs: Vec<(u32, u64)>,
    /// 3. New or changed services.
    pub put_services: Vec<(ServiceKey, Service)>,
    /// 4. Services removed.
    pub del_services: Vec<ServiceKey>,
    /// 4b. Words of [`lb_common::maps::SERVICE_ADDRS`] that lose bits
    ///    (addresses no service has any more), written with their new value
    ///    once those services are gone.
    pub clear_service_addrs: Vec<(u32, u64)>,
    /// 5. Tables removed (service removed or left without a usable backend).
    pub del_tables: Vec<u32>,
    /// 6. Backends removed: written back without [`backend_flags::LIVE`] so
    ///    that their flows move.
    pub retire_backends: Vec<(u32, Backend)>,
    /// 7. When it changed (or the maps were adopted): the whole content of
    ///    [`lb_common::maps::BACKEND_VIPS`], to which the map is brought.
    pub backend_vips: Option<BTreeMap<ServiceKey, BackendVips>>,
}

impl Ops {
    pub fn is_empty(&self) -> bool {
        *self == Ops::default()
    }
}

/// The balancer's state: the ids given out and the tables last applied.
#[derive(Clone, Debug, Default)]
pub struct Balancer {
    service_ids: BTreeMap<ServiceKey, u32>,
    backend_ids: BTreeMap<BackendIdentity, u32>,
    /// Per backend id, the generation it was last given out with.
    generations: BTreeMap<u32, u32>,
    tables: Tables,
    /// The NAT services of each backend address (see [`Ops::backend_vips`]).
    backend_vips: BTreeMap<ServiceKey, BackendVips>,
    /// The tables were read from maps a previous daemon left (see
    /// [`Balancer::adopt`]).
    adopted: bool,
}

impl Balancer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A balancer that continues from maps a previous daemon left: `tables`
    /// is what they hold. Service ids stay; the first plan gives a backend
    /// the id it had when its address is still there, without a new
    /// generation, so that pinned flows keep going (and their counters
    /// keep counting); whatever the maps hold that the plan does not is
    /// removed or retired by its operations.
    pub fn adopt(tables: Tables) -> Self {
        Balancer {
            service_ids: tables
                .services
                .iter()
                .map(|(key, service)| (*key, service.id))
                .collect(),
            backend_ids: BTreeMap::new(),
            generations: tables
                .backends
                .iter()
                .map(|(&id, b)| (id, b.generation))
                .collect(),
            tables,
            // Unknown: the first plan writes the map whole.
            backend_vips: BTreeMap::new(),
            adopted: true,
        }
    }

    /// What the maps hold after the last committed plan.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The id of a service, if it is configured.
    pub fn service_id(&self, key: &ServiceKey) -> Option<u32> {
        self.service_ids.get(key).copied()
    }

    /// The id of a backend (not a sorry server) of a service.
    pub fn backend_id(&self, service: &ServiceKey, addr: SocketAddr) -> Option<u32> {
        self.backend_ids
            .get(&BackendIdentity {
                service: *service,
                sorry: false,
                addr,
            })
            .copied()
    }

    /// The id of the sorry server at `addr` of a service.
    pub fn sorry_id(&self, service: &ServiceKey, addr: SocketAddr) -> Option<u32> {
        self.backend_ids
            .get(&BackendIdentity {
                service: *service,
                sorry: true,
                addr,
            })
            .copied()
    }

    /// Validates `wanted` and computes the next state and the operations
    /// from the current one. `self` is not changed: commit the returned
    /// balancer once the operations are applied.
    pub fn plan(&self, wanted: &[ServiceSpec]) -> Result<(Balancer, Ops), SpecError> {
        validate(wanted)?;
        let mut next = Balancer {
            generations: self.generations.clone(),
            ..Balancer::default()
        };
        next.assign_service_ids(self, wanted);
        next.assign_backend_ids(self, wanted);
        next.tables = next.build_tables(wanted)?;
        next.backend_vips = next.build_backend_vips();
        let ops = diff(self, &next);
        Ok((next, ops))
    }

    fn assign_service_ids(&mut self, prev: &Balancer, wanted: &[ServiceSpec]) {
        let keys: BTreeSet<ServiceKey> = wanted.iter().map(ServiceSpec::key).collect();
        for key in &keys {
            if let Some(&id) = prev.service_ids.get(key) {
                self.service_ids.insert(*key, id);
            }
        }
        let mut free = lowest_free(self.service_ids.values().copied().collect());
        for key in keys {
            self.service_ids
                .entry(key)
                .or_insert_with(|| free.next_id());
        }
    }

    fn assign_backend_ids(&mut self, prev: &Balancer, wanted: &[ServiceSpec]) {
        let identities: BTreeSet<BackendIdentity> = wanted.iter().flat_map(identities).collect();
        for identity in &identities {
            if let Some(&id) = prev.backend_ids.get(identity) {
                self.backend_ids.insert(*identity, id);
            }
        }
        let mut free = lowest_free(self.backend_ids.values().copied().collect());
        for identity in identities {
            if !self.backend_ids.contains_key(&identity) {
                let id = free.next_id();
                // A fresh generation whenever an id changes hands (but not
                // when adopting an entry that already is this backend).
                let same = prev.adopted
                    && prev.tables.backends.get(&id).is_some_and(|b| {
                        b.addr == addr_bytes(identity.addr.ip())
                            && b.port == identity.addr.port().to_be_bytes()
                    });
                if !same {
                    *self.generations.entry(id).or_insert(0) += 1;
                }
                self.backend_ids.insert(identity, id);
            }
        }
    }

    fn build_tables(&self, wanted: &[ServiceSpec]) -> Result<Tables, SpecError> {
        let mut tables = Tables::default();
        for spec in wanted {
            let key = spec.key();
            let service_id = self.service_ids[&key];
            let id_of = |addr, sorry| {
                self.backend_ids[&BackendIdentity {
                    service: key,
                    sorry,
                    addr,
                }]
            };
            for backend in &spec.backends {
                let id = id_of(backend.addr, false);
                let live = backend.state != BackendState::Disabled;
                tables
                    .backends
                    .insert(id, self.backend_entry(id, backend.addr, live));
            }
            let sorry = spec.sorry.map(|addr| {
                let id = id_of(addr, true);
                tables
                    .backends
                    .insert(id, self.backend_entry(id, addr, true));
                id
            });
            tables.services.insert(
                key,
                Service {
                    id: service_id,
                    mode: match spec.mode {
                        Mode::Nat => mode::NAT,
                        Mode::Dsr => mode::DSR,
                    },
                    sorry: sorry.unwrap_or(NO_BACKEND),
                },
            );
            if let Some(table) = self.maglev_table(spec, |addr| id_of(addr, false))? {
                tables.maglev.insert(service_id, table);
            }
        }
        Ok(tables)
    }

    /// For each backend address of a NAT service (sorry servers too): the
    /// NAT services it serves with its id there, at most
    /// [`MAX_BACKEND_VIPS`] (the first by VIP and port).
    fn build_backend_vips(&self) -> BTreeMap<ServiceKey, BackendVips> {
        let mut all: BTreeMap<ServiceKey, Vec<BackendVip>> = BTreeMap::new();
        for (identity, &id) in &self.backend_ids {
            let service = identity.service;
            let nat = self
                .tables
                .services
                .get(&service)
                .is_some_and(|s| s.mode == mode::NAT);
            if !nat {
                continue;
            }
            let key = ServiceKey {
                addr: addr_bytes(identity.addr.ip()),
                port: identity.addr.port().to_be_bytes(),
                proto: service.proto,
                family: service.family,
            };
            all.entry(key).or_default().push(BackendVip {
                vip: service.addr,
                vport: service.port,
                pad: [0; 2],
                backend: id,
            });
        }
        all.into_iter()
            .map(|(key, mut vips)| {
                vips.sort();
                vips.truncate(MAX_BACKEND_VIPS);
                let mut value = BackendVips {
                    count: vips.len() as u32,
                    ..BackendVips::default()
                };
                value.vips[..vips.len()].copy_from_slice(&vips);
                (key, value)
            })
            .collect()
    }

    fn backend_entry(&self, id: u32, addr: SocketAddr, live: bool) -> Backend {
        Backend {
            addr: addr_bytes(addr.ip()),
            port: addr.port().to_be_bytes(),
            family: family(addr.ip()),
            flags: if live { backend_flags::LIVE } else { 0 },
            generation: self.generations.get(&id).copied().unwrap_or(0),
        }
    }

    /// The service's Maglev table in backend ids, or `None` when no backend
    /// may take new flows.
    fn maglev_table(
        &self,
        spec: &ServiceSpec,
        id_of: impl Fn(SocketAddr) -> u32,
    ) -> Result<Option<Vec<u32>>, SpecError> {
        let usable: Vec<&BackendSpec> = spec
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Enabled && b.weight > 0)
            .collect();
        let keys: Vec<[u8; 18]> = usable.iter().map(|b| maglev_key(b.addr)).collect();
        let entries: Vec<MaglevBackend<'_>> = usable
            .iter()
            .zip(&keys)
            .map(|(b, key)| MaglevBackend {
                key,
                weight: b.weight,
            })
            .collect();
        let table =
            maglev::build_table(&entries, lb_common::MAGLEV_TABLE_SIZE).map_err(|source| {
                SpecError::Maglev {
                    service: spec.name(),
                    source,
                }
            })?;
        Ok(table.map(|slots| {
            slots
                .into_iter()
                .map(|i| id_of(usable[i as usize].addr))
                .collect()
        }))
    }
}

/// The identities of a service's backends and sorry server.
fn identities(spec: &ServiceSpec) -> impl Iterator<Item = BackendIdentity> + '_ {
    let service = spec.key();
    spec.backends
        .iter()
        .map(move |b| BackendIdentity {
            service,
            sorry: false,
            addr: b.addr,
        })
        .chain(spec.sorry.map(|addr| BackendIdentity {
            service,
            sorry: true,
            addr,
        }))
}

/// The bytes Maglev hashes for a backend: its address (16 bytes, IPv4 in
/// the first 4) and port, so every node derives the same permutation.
fn maglev_key(addr: SocketAddr) -> [u8; 18] {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&addr_bytes(addr.ip()));
    key[16..].copy_from_slice(&addr.port().to_be_bytes());
    key
}

/// An address as the data plane stores it: network order, IPv4 in the
/// first 4 bytes.
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

pub fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn validate(wanted: &[ServiceSpec]) -> Result<(), SpecError> {
    if wanted.len() > MAX_SERVICES as usize {
        return Err(SpecError::TooManyServices {
            count: wanted.len(),
        });
    }
    let backends: usize = wanted
        .iter()
        .map(|s| s.backends.len() + usize::from(s.sorry.is_some()))
        .sum();
    if backends > MAX_BACKENDS as usize {
        return Err(SpecError::TooManyBackends { count: backends });
    }
    let mut seen = BTreeSet::new();
    for spec in wanted {
        let service = spec.name();
        if !seen.insert(spec.key()) {
            return Err(SpecError::DuplicateService(service));
        }
        if !usable(service.vip) {
            return Err(SpecError::BadAddress {
                service,
                what: "VIP",
                addr: service.vip,
            });
        }
        let mut addrs = BTreeSet::new();
        for backend in &spec.backends {
            if !addrs.insert(backend.addr) {
                return Err(SpecError::DuplicateBackend {
                    service,
                    backend: backend.addr,
                });
            }
            if backend.weight > MAX_WEIGHT {
                return Err(SpecError::WeightTooLarge {
                    service,
                    backend: backend.addr,
                    weight: backend.weight,
                });
            }
            check_target(spec, "backend", backend.addr)?;
        }
        if let Some(sorry) = spec.sorry {
            check_target(spec, "sorry server", sorry)?;
        }
    }
    Ok(())
}

/// A backend or sorry server of `spec`: unicast, same family, and in DSR
/// mode on the VIP's port.
fn check_target(spec: &ServiceSpec, what: &'static str, addr: SocketAddr) -> Result<(), SpecError> {
    let service = spec.name();
    if !usable(addr) {
        return Err(SpecError::BadAddress {
            service,
            what,
            addr,
        });
    }
    if addr.is_ipv4() != spec.vip.is_ipv4() {
        return Err(SpecError::FamilyMismatch {
            service,
            what,
            addr,
        });
    }
    if spec.mode == Mode::Dsr && addr.port() != spec.port {
        return Err(SpecError::DsrPortChange {
            service,
            what,
            addr,
            port: spec.port,
        });
    }
    Ok(())
}

fn usable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !ip.is_loopback()
}

/// Hands out the lowest ids not in use.
struct LowestFree {
    used: BTreeSet<u32>,
    next: u32,
}

impl LowestFree {
    fn next_id(&mut self) -> u32 {
        while self.used.contains(&self.next) {
            self.next += 1;
        }
        self.used.insert(self.next);
        self.next
    }
}

fn lowest_free(used: BTreeSet<u32>) -> LowestFree {
    LowestFree { used, next: 0 }
}

/// The operations from `prev`'s tables to `next`'s.
fn diff(prev: &Balancer, next: &Balancer) -> Ops {
    let (old, new) = (&prev.tables, &next.tables);
    let mut ops = Ops::default();
    for (&id, backend) in &new.backends {
        if old.backends.get(&id) != Some(backend) {
            ops.put_backends.push((id, *backend));
        }
        if old.backends.get(&id).map(|b| b.generation) != Some(backend.generation) {
            ops.fresh_backend_ids.push(id);
        }
    }
    for (&id, table) in &new.maglev {
        if old.maglev.get(&id) != Some(table) {
            ops.put_tables.push((id, table.clone()));
        }
    }
    for (key, service) in &new.services {
        if old.services.get(key) != Some(service) {
            ops.put_services.push((*key, *service));
        }
        if old.services.get(key).map(|s| s.id) != Some(service.id) {
            ops.fresh_service_ids.push(service.id);
        }
    }
    ops.del_services = old
        .services
        .keys()
        .filter(|k| !new.services.contains_key(k))
        .copied()
        .collect();
    ops.del_tables = old
        .maglev
        .keys()
        .filter(|id| !new.maglev.contains_key(id))
        .copied()
        .collect();
    ops.retire_backends = old
        .backends
        .iter()
        .filter(|(id, _)| !new.backends.contains_key(id))
        .map(|(&id, b)| {
            (
                id,
                Backend {
                    flags: b.flags & !backend_flags::LIVE,
                    ..*b
                },
            )
        })
        .collect();
    service_addr_ops(prev, next, &mut ops);
    if prev.adopted || prev.backend_vips != next.backend_vips {
        ops.backend_vips = Some(next.backend_vips.clone());
    }
    ops
}

/// The words of [`lb_common::maps::SERVICE_ADDRS`] for these services (the
/// words not listed are 0).
pub fn service_addr_words<'a>(
    services: impl IntoIterator<Item = &'a ServiceKey>,
) -> BTreeMap<u32, u64> {
    let mut words = BTreeMap::new();
    for key in services {
        let bit = lb_common::hash::service_addr_bit(&key.addr, key.family);
        *words.entry(bit / 64).or_insert(0) |= 1u64 << (bit % 64);
    }
    words
}

/// The filter's two steps (see [`Ops::set_service_addrs`]): every word when
/// the maps were adopted (the map may hold anything, or nothing when it is
/// new in this version), else the words that change.
fn service_addr_ops(prev: &Balancer, next: &Balancer, ops: &mut Ops) {
    let old = service_addr_words(prev.tables.services.keys());
    let new = service_addr_words(next.tables.services.keys());
    for index in 0..SERVICE_ADDR_WORDS {
        let was = old.get(&index).copied().unwrap_or(0);
        let will = new.get(&index).copied().unwrap_or(0);
        let both = was | will;
        if prev.adopted || both != was {
            ops.set_service_addrs.push((index, both));
        }
        if will != both {
            ops.clear_service_addrs.push((index, will));
        }
    }
}

#[cfg(test)]
mod tests;
