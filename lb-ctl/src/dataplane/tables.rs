//! The balancer's tables in the maps: a plan ([`Ops`]) applied in the
//! order it documents (backends, their traffic counters reset when fresh,
//! Maglev tables, the service address filter, services, retirements, the
//! backends' NAT services), and the tables read back from the maps for a
//! daemon adopting a previous one's.
use anyhow::{Context as _, Result, bail};
use aya::{
    maps::{Array, HashMap, PerCpuArray, PerCpuValues},
    util::nr_cpus,
};
use lb_common::{
    Backend, BackendVips, MAGLEV_NO_BACKEND, MAGLEV_TABLE_SIZE, MaglevTable, Service, ServiceKey,
    Traffic, maps,
};

use super::{Dataplane, map_mut, map_ref, remove_if_present};
use crate::balancer::{Ops, Tables};

impl Dataplane {
    /// What the maps hold: services, backends (entries ever written) and
    /// Maglev tables. For a daemon adopting a previous one's maps.
    pub fn read_tables(&self) -> Result<Tables> {
        let mut tables = Tables::default();
        let services: HashMap<_, ServiceKey, Service> = map_ref(&self.ebpf, maps::SERVICES)?;
        for entry in services.iter() {
            let (key, service) = entry.context("reading the services map")?;
            tables.services.insert(key, service);
        }
        let backends: Array<_, Backend> = map_ref(&self.ebpf, maps::BACKENDS)?;
        for (id, entry) in backends.iter().enumerate() {
            let backend = entry.context("reading the backends map")?;
            if backend.family != 0 {
                tables.backends.insert(id as u32, backend);
            }
        }
        let maglev: HashMap<_, u32, MaglevTable> = map_ref(&self.ebpf, maps::MAGLEV)?;
        for entry in maglev.iter() {
            let (id, table) = entry.context("reading the Maglev tables")?;
            let slots = table.backends.iter().map(|&slot| MaglevTable::id_of(slot));
            tables.maglev.insert(id, slots.collect());
        }
        Ok(tables)
    }

    /// Applies a balancer plan, in the order [`Ops`] documents.
    pub fn apply(&mut self, ops: &Ops) -> Result<()> {
        {
            let mut backends: Array<_, Backend> = map_mut(&mut self.ebpf, maps::BACKENDS)?;
            for (id, backend) in &ops.put_backends {
                backends
                    .set(*id, backend, 0)
                    .with_context(|| format!("writing backend {id}"))?;
            }
        }
        self.reset_traffic(maps::BACKEND_STATS, &ops.fresh_backend_ids)?;
        self.reset_traffic(maps::SERVICE_STATS, &ops.fresh_service_ids)?;
        {
            let mut tables: HashMap<_, u32, MaglevTable> = map_mut(&mut self.ebpf, maps::MAGLEV)?;
            let mut table = Box::new(MaglevTable {
                backends: [MAGLEV_NO_BACKEND; MAGLEV_TABLE_SIZE as usize],
            });
            for (id, slots) in &ops.put_tables {
                if slots.len() != table.backends.len() {
                    bail!(
                        "Maglev table of service {id} has {} slots, the data plane takes {}",
                        slots.len(),
                        table.backends.len()
                    );
                }
                for (to, &backend) in table.backends.iter_mut().zip(slots) {
                    *to = MaglevTable::slot_of(backend).with_context(|| {
                        format!(
                            "Maglev table of service {id}: backend id {backend} is out of range"
                        )
                    })?;
                }
                tables
                    .insert(id, table.as_ref(), 0)
                    .with_context(|| format!("writing the Maglev table of service {id}"))?;
            }
        }
        self.write_service_addrs(&ops.set_service_addrs)?;
        {
            let mut services: HashMap<_, ServiceKey, Service> =
                map_mut(&mut self.ebpf, maps::SERVICES)?;
            for (key, service) in &ops.put_services {
                services
                    .insert(key, service, 0)
                    .with_context(|| format!("writing service {}", service.id))?;
            }
            for key in &ops.del_services {
                remove_if_present(services.remove(key)).context("removing a service")?;
            }
        }
        self.write_service_addrs(&ops.clear_service_addrs)?;
        {
            let mut tables: HashMap<_, u32, MaglevTable> = map_mut(&mut self.ebpf, maps::MAGLEV)?;
            for id in &ops.del_tables {
                remove_if_present(tables.remove(id))
                    .with_context(|| format!("removing the Maglev table of service {id}"))?;
            }
        }
        {
            let mut backends: Array<_, Backend> = map_mut(&mut self.ebpf, maps::BACKENDS)?;
            for (id, backend) in &ops.retire_backends {
                backends
                    .set(*id, backend, 0)
                    .with_context(|| format!("retiring backend {id}"))?;
            }
        }
        if let Some(wanted) = &ops.backend_vips {
            let mut map: HashMap<_, ServiceKey, BackendVips> =
                map_mut(&mut self.ebpf, maps::BACKEND_VIPS)?;
            let present: Vec<ServiceKey> = map
                .keys()
                .collect::<Result<_, _>>()
                .context("listing the backends' NAT services")?;
            for key in present.iter().filter(|key| !wanted.contains_key(key)) {
                remove_if_present(map.remove(key)).context("removing a backend's NAT services")?;
            }
            for (key, vips) in wanted {
                map.insert(key, vips, 0)
                    .context("writing a backend's NAT services")?;
            }
        }
        Ok(())
    }

    fn write_service_addrs(&mut self, words: &[(u32, u64)]) -> Result<()> {
        let mut map: Array<_, u64> = map_mut(&mut self.ebpf, maps::SERVICE_ADDRS)?;
        for (index, word) in words {
            map.set(*index, word, 0)
                .with_context(|| format!("writing word {index} of the service address filter"))?;
        }
        Ok(())
    }

    fn reset_traffic(&mut self, name: &str, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let cpus = nr_cpus().map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?;
        let mut stats: PerCpuArray<_, Traffic> = map_mut(&mut self.ebpf, name)?;
        for &id in ids {
            let zeros = PerCpuValues::try_from(vec![Traffic::default(); cpus])?;
            stats
                .set(id, zeros, 0)
                .with_context(|| format!("resetting {name}[{id}]"))?;
        }
        Ok(())
    }
}
