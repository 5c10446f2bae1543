//! The edge to the kernel's data plane: the embedded XDP object, loading it,
//! attaching it to interfaces, and reading and writing its maps.
use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapInfo, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
    util::nr_cpus,
};
use lb_common::{
    AF_INET, AF_INET6, Backend, BackendVips, Counter, FloatingKey, Flow, FlowKey, ICMP_PROGRAM,
    JUMP_ICMP, JUMP_TTL, JUMP_UNCONFIRMED, MAGLEV_NO_BACKEND, MAGLEV_TABLE_SIZE, MaglevTable,
    NewFlowTags, NewFlowWays, Reply, Service, ServiceKey, Settings, TTL_PROGRAM, Traffic,
    UNCONFIRMED_PROGRAM, XDP_PROGRAM, hash, maps,
};

use crate::{
    balancer::{Ops, Tables},
    role::Role,
};

mod filter;
mod flows;
pub use filter::{FlowFilter, Rebuilt, rebuild_due};
pub use flows::{
    AsyncFlowRecords, BadItem, FlowFilterKeeper, FlowRecords, FlowsReader, RING_CAPACITY,
};

/// Every map of the object with the (key size, value size, max entries) this
/// build expects: pinned maps that differ were made by an incompatible
/// version.
fn expected_maps() -> [(&'static str, usize, usize, u32); 26] {
    use core::mem::size_of;
    use lb_common::*;
    [
        (
            maps::SERVICES,
            size_of::<ServiceKey>(),
            size_of::<Service>(),
            MAX_SERVICES,
        ),
        (maps::BACKENDS, 4, size_of::<Backend>(), MAX_BACKENDS),
        (maps::MAGLEV, 4, size_of::<MaglevTable>(), MAX_SERVICES),
        (
            maps::FLOWS,
            size_of::<FlowKey>(),
            size_of::<Flow>(),
            MAX_FLOWS,
        ),
        (
            maps::REPLIES,
            size_of::<FlowKey>(),
            size_of::<Reply>(),
            MAX_FLOWS,
        ),
        (maps::NEW_FLOWS, 4, size_of::<NewFlowWays>(), NEW_FLOW_SETS),
        (
            maps::NEW_FLOW_TAGS,
            4,
            size_of::<NewFlowTags>(),
            NEW_FLOW_SETS,
        ),
        (maps::FLOW_FILTER, 4, 8, FLOW_FILTER_ENTRIES),
        (
            maps::BACKEND_VIPS,
            size_of::<ServiceKey>(),
            size_of::<BackendVips>(),
            MAX_BACKENDS,
        ),
        (maps::SERVICE_ADDRS, 4, 8, SERVICE_ADDR_WORDS),
        (maps::SETTINGS, 4, size_of::<Settings>(), 1),
        (maps::TX_PORTS, 4, 8, MAX_TX_PORTS),
        (maps::JUMP, 4, 4, JUMP_SLOTS),
        (maps::STATS, 4, 8, Counter::COUNT),
        (maps::SERVICE_STATS, 4, size_of::<Traffic>(), MAX_SERVICES),
        (maps::BACKEND_STATS, 4, size_of::<Traffic>(), MAX_BACKENDS),
        (maps::NEXTHOPS, 4, size_of::<NextHop>(), MAX_BACKENDS),
        (
            maps::CLIENT_HOPS,
            4,
            size_of::<ClientHop>(),
            CLIENT_HOP_SLOTS,
        ),
        (
            maps::FRAGMENTS,
            size_of::<FragmentKey>(),
            size_of::<Fragment>(),
            MAX_FRAGMENTS,
        ),
        (maps::ICMP_BUDGET, 4, size_of::<IcmpBudget>(), 1),
        (maps::FLOATING, size_of::<FloatingKey>(), 1, MAX_FLOATING),
        (maps::LEASE, 4, 8, 1),
        (maps::FENCE_CHECK, 4, size_of::<FenceCheck>(), 1),
        (maps::FLOW_HASH, 4, size_of::<FlowHashMemo>(), 1),
        (maps::REPLICATE, 4, 4, 1),
        // A ring buffer has no keys nor values; its size is in bytes.
        (maps::FLOW_RECORDS, 0, 0, FLOW_RECORDS_BYTES),
    ]
}

/// What [`Dataplane::open`] found in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Nothing pinned: new maps.
    Fresh,
    /// Maps of a compatible previous daemon: adopted with their contents.
    Adopted,
    /// Pinned maps of an incompatible version: removed, new maps made.
    Replaced { reason: String },
}

/// The compiled `lb-ebpf` object, built by this crate's build.rs.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb"))
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (fast path; veth supports it).
    Native,
    /// In the generic network stack (slow; for drivers without XDP support).
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// The loaded object. Dropping it detaches the program from every interface
/// it was attached to through this value.
pub struct Dataplane {
    ebpf: Ebpf,
    /// `LB_FLOW_FILTER`, mapped.
    filter: FlowFilter,
    /// Interfaces attached through this value (with the link, unless it is
    /// pinned and outlives us).
    attached: Vec<(String, Option<XdpLinkId>)>,
}

impl Dataplane {
    /// Loads the embedded object into the kernel (verifier included), with
    /// maps of its own (nothing pinned).
    pub fn load() -> Result<Self> {
        raise_memlock_limit();
        let ebpf = Ebpf::load(object()).context("loading the XDP object into the kernel")?;
        Self::finish_load(ebpf)
    }

    /// Loads the programs and fills the jump table.
    fn finish_load(mut ebpf: Ebpf) -> Result<Self> {
        load_program(program(&mut ebpf)?, XDP_PROGRAM)?;
        for (name, slot) in [
            (ICMP_PROGRAM, JUMP_ICMP),
            (TTL_PROGRAM, JUMP_TTL),
            (UNCONFIRMED_PROGRAM, JUMP_UNCONFIRMED),
        ] {
            let tail: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            load_program(tail, name)?;
            let fd = tail.fd()?.try_clone()?;
            let mut jump: ProgramArray<_> = map_mut(&mut ebpf, maps::JUMP)?;
            jump.set(slot, &fd, 0)
                .with_context(|| format!("putting {name} in the jump table"))?;
        }
        Ok(Self {
            filter: FlowFilter::map(&ebpf)?,
            ebpf,
            attached: Vec::new(),
        })
    }

    /// Loads the object with its maps pinned in `dir` (a bpffs directory):
    /// maps a compatible previous daemon left there are adopted with their
    /// contents; incompatible ones are removed first.
    pub fn open(dir: &Path) -> Result<(Self, PinState)> {
        raise_memlock_limit();
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut state = PinState::Fresh;
        for (name, reason) in disposable_pins_of_another_layout(dir) {
            let path = dir.join(name);
            tracing::warn!(map = name, %reason, "a pinned cache map is of another layout: replaced alone, the others are adopted");
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        if let Some(reason) = incompatible_pins(dir) {
            tracing::warn!(dir = %dir.display(), %reason, "pinned maps are of an incompatible version: replacing them");
            unpin_all(dir)?;
            state = PinState::Replaced { reason };
        } else if expected_maps()
            .iter()
            .any(|(name, ..)| dir.join(name).exists())
        {
            state = PinState::Adopted;
        }
        let paths: Vec<(&str, PathBuf)> = expected_maps()
            .iter()
            .map(|(name, ..)| (*name, dir.join(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader
            .load(object())
            .context("loading the XDP object into the kernel")?;
        Ok((Self::finish_load(ebpf)?, state))
    }

    /// Attaches the program to `iface` (in the calling thread's network
    /// namespace) through a link pinned in `dir`, so that it stays attached
    /// when the daemon stops. If a previous daemon's link is pinned there,
    /// its program is replaced by ours in one step (no packet goes
    /// unprocessed). Returns true when a link was adopted.
    pub fn attach_pinned(&mut self, iface: &str, mode: AttachMode, dir: &Path) -> Result<bool> {
        let ifindex = ifindex(iface)?;
        self.add_tx_port(ifindex)?;
        let path = dir.join(format!("link_{iface}"));
        if path.exists() {
            match self.adopt_link(&path) {
                Ok(()) => {
                    tracing::info!(
                        iface,
                        ifindex,
                        "adopted the pinned XDP link: program replaced in place"
                    );
                    self.attached.push((iface.to_owned(), None));
                    return Ok(true);
                }
                Err(err) => {
                    tracing::warn!(iface, error = %format!("{err:#}"), "the pinned XDP link cannot be adopted: attaching anew");
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        let program = program(&mut self.ebpf)?;
        let id = program
            .attach(iface, mode.xdp_mode())
            .with_context(|| format!("attaching XDP ({mode:?}) to interface {iface}"))?;
        let link: FdLink = program
            .take_link(id)?
            .try_into()
            .context("the kernel gave no bpf_link for XDP (kernel older than 5.9?)")?;
        link.pin(&path)
            .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
        tracing::info!(iface, ifindex, ?mode, pin = %path.display(), "XDP program attached");
        self.attached.push((iface.to_owned(), None));
        Ok(false)
    }

    fn adopt_link(&mut self, path: &Path) -> Result<()> {
        let pinned = PinnedLink::from_pin(path)
            .with_context(|| format!("opening the pinned link {}", path.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not XDP")?;
        let program = program(&mut self.ebpf)?;
        let id = program
            .attach_to_link(link)
            .context("replacing the program of the pinned link")?;
        // The link stays pinned; our handle is only closed, never detached.
        let link: FdLink = program.take_link(id)?.try_into()?;
        drop(link);
        Ok(())
    }

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

    /// Attaches the program to `iface` in the calling thread's network
    /// namespace, and lets the program redirect packets to it.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = ifindex(iface)?;
        self.add_tx_port(ifindex)?;
        let link = program(&mut self.ebpf)?
            .attach(iface, mode.xdp_mode())
            .with_context(|| format!("attaching XDP ({mode:?}) to interface {iface}"))?;
        tracing::info!(iface, ifindex, ?mode, "XDP program attached");
        self.attached.push((iface.to_owned(), Some(link)));
        Ok(())
    }

    /// Lets the program redirect packets to interface `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        let mut ports: DevMapHash<_> = map_mut(&mut self.ebpf, maps::TX_PORTS)?;
        ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding interface {ifindex} to {}", maps::TX_PORTS))?;
        Ok(())
    }

    /// Interfaces the program is attached to through this value.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(iface, _)| iface.as_str())
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

    /// Marks the node active (forwards service traffic) or standby (hands it
    /// to the kernel).
    pub fn set_role(&mut self, node_role: Role) -> Result<()> {
        self.update_settings(|s| s.role = node_role.to_map())
    }

    /// Sets the active's lease (CLOCK_MONOTONIC ns; 0: none, standalone).
    /// Past it, the program fences the node (see `lb_common::maps::LEASE`).
    pub fn set_lease(&mut self, until_ns: u64) -> Result<()> {
        let mut lease: Array<_, u64> = map_mut(&mut self.ebpf, maps::LEASE)?;
        lease.set(0, until_ns, 0)?;
        Ok(())
    }

    /// A handle of the lease map of its own, for the cluster's event loop,
    /// which renews it without the daemon (the pinned map stays shared).
    pub fn lease_handle(&self) -> Result<Lease> {
        let Some(aya::maps::Map::Array(ours)) = self.ebpf.map(maps::LEASE) else {
            anyhow::bail!("map {} missing from the object", maps::LEASE);
        };
        // A second descriptor of the same map, by its id.
        let id = ours.info().context("reading the lease map's id")?.id();
        let data = aya::maps::MapData::from_id(id).context("opening the lease map by id")?;
        let map = aya::maps::Map::Array(data);
        Ok(Lease {
            map: Array::try_from(map).context("the lease map has an unexpected type")?,
        })
    }

    fn update_settings(&mut self, change: impl FnOnce(&mut Settings)) -> Result<()> {
        let mut settings: Array<_, Settings> = map_mut(&mut self.ebpf, maps::SETTINGS)?;
        let mut value = settings.get(&0, 0)?;
        change(&mut value);
        settings.set(0, value, 0)?;
        Ok(())
    }

    /// The floating IPs a fenced node stops answering for (replaces the
    /// set).
    pub fn set_floating(&mut self, addresses: &[std::net::IpAddr]) -> Result<()> {
        let mut map: aya::maps::HashMap<_, FloatingKey, u8> =
            map_mut(&mut self.ebpf, maps::FLOATING)?;
        let wanted: Vec<FloatingKey> = addresses.iter().map(|a| floating_key(*a)).collect();
        let stale: Vec<FloatingKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in &wanted {
            map.insert(key, 1, 0)?;
        }
        for key in &stale {
            map.remove(key)?;
        }
        Ok(())
    }

    /// Global counters summed over all CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        let stats: PerCpuArray<_, u64> = map_ref(&self.ebpf, maps::STATS)?;
        Counter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = stats.get(&(counter as u32), 0)?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// One global counter summed over all CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let stats: PerCpuArray<_, u64> = map_ref(&self.ebpf, maps::STATS)?;
        Ok(stats.get(&(counter as u32), 0)?.iter().sum())
    }

    /// A service's traffic, summed over all CPUs.
    pub fn service_traffic(&self, id: u32) -> Result<Traffic> {
        self.traffic(maps::SERVICE_STATS, id)
    }

    /// A backend's traffic, summed over all CPUs.
    pub fn backend_traffic(&self, id: u32) -> Result<Traffic> {
        self.traffic(maps::BACKEND_STATS, id)
    }

    fn traffic(&self, name: &str, id: u32) -> Result<Traffic> {
        let stats: PerCpuArray<_, Traffic> = map_ref(&self.ebpf, name)?;
        let per_cpu = stats
            .get(&id, 0)
            .with_context(|| format!("reading {name}[{id}]"))?;
        Ok(per_cpu.iter().fold(Traffic::default(), |sum, t| Traffic {
            packets: sum.packets + t.packets,
            bytes: sum.bytes + t.bytes,
            new_flows: sum.new_flows + t.new_flows,
        }))
    }

    /// The flow table's entry for a client-side 5-tuple.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        let flows: HashMap<_, FlowKey, Flow> = map_ref(&self.ebpf, maps::FLOWS)?;
        optional(flows.get(key, 0))
    }

    /// The unconfirmed flow table's entry for a client-side 5-tuple (a flow
    /// of which one packet was seen), found as the program finds it.
    pub fn new_flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        let slot = hash::new_flow_slot(&key.src, key.sport, key.proto, key.family);
        let (tags, ways) = self.new_flow_set(slot.set)?;
        Ok(tags
            .tags
            .iter()
            .zip(&ways.ways)
            .find(|(tag, way)| **tag == slot.tag && way.is_flow(key))
            .map(|(_, way)| way.flow()))
    }

    /// The NAT translation of an unconfirmed flow's answer (backend-side
    /// 5-tuple), found as the program finds it.
    pub fn new_reply(&self, key: &FlowKey) -> Result<Option<Reply>> {
        let slot = hash::new_flow_slot(&key.dst, key.dport, key.proto, key.family);
        let (tags, ways) = self.new_flow_set(slot.set)?;
        let backends: Array<_, Backend> = map_ref(&self.ebpf, maps::BACKENDS)?;
        for (tag, way) in tags.tags.iter().zip(ways.ways) {
            if *tag == slot.tag && way.answered_by(key) {
                let backend = backends.get(&way.reply.backend, 0)?;
                if backend.is_source_of(key) {
                    return Ok(Some(way.reply));
                }
            }
        }
        Ok(None)
    }

    /// One set of the unconfirmed flow table: its tags and its ways.
    pub fn new_flow_set(&self, index: u32) -> Result<(NewFlowTags, NewFlowWays)> {
        let tags: Array<_, NewFlowTags> = map_ref(&self.ebpf, maps::NEW_FLOW_TAGS)?;
        let ways: Array<_, NewFlowWays> = map_ref(&self.ebpf, maps::NEW_FLOWS)?;
        Ok((tags.get(&index, 0)?, ways.get(&index, 0)?))
    }

    /// The reply table's entry for a backend-side 5-tuple.
    pub fn reply(&self, key: &FlowKey) -> Result<Option<Reply>> {
        let replies: HashMap<_, FlowKey, Reply> = map_ref(&self.ebpf, maps::REPLIES)?;
        optional(replies.get(key, 0))
    }

    /// The underlying object, for tools that drive the program directly
    /// (packet fixtures, benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}

/// Maps whose content is a cache, or which the first plan after an
/// adoption writes whole: a pinned one of another layout (an older
/// version's) is replaced alone and the others are adopted, so that an
/// upgrade that changes only these keeps the connections.
const DISPOSABLE_MAPS: [&str; 13] = [
    // Rebuilt from the connection table when adopted.
    maps::FLOW_FILTER,
    // Read back when adopted: a new, empty map has no table, so the first
    // plan writes every one, before the program is replaced (the previous
    // program keeps the map it had until then).
    maps::MAGLEV,
    // Handshakes under way: one that loses its unconfirmed way is picked
    // again by Maglev (the same backend unless the set changed); the answer
    // of a NAT backend that loses it goes to the kernel, and the client's
    // SYN sent again starts over. Either may be replaced alone: an adopted
    // tag over a new, zeroed way matches no flow (the way's family is 0).
    maps::NEW_FLOWS,
    maps::NEW_FLOW_TAGS,
    maps::CLIENT_HOPS,
    maps::NEXTHOPS,
    maps::FENCE_CHECK,
    maps::FLOW_HASH,
    maps::ICMP_BUDGET,
    maps::SERVICE_ADDRS,
    maps::BACKEND_VIPS,
    maps::FRAGMENTS,
    maps::JUMP,
];

/// The disposable maps pinned in `dir` with another layout, and how.
fn disposable_pins_of_another_layout(dir: &Path) -> Vec<(&'static str, String)> {
    expected_maps()
        .into_iter()
        .filter(|(name, ..)| DISPOSABLE_MAPS.contains(name))
        .filter_map(|(name, key, value, max)| {
            pin_layout_differs(dir, name, key, value, max).map(|reason| (name, reason))
        })
        .collect()
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, in which
/// [`Dataplane::set_lease`] takes the lease.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Why the maps pinned in `dir` cannot be adopted, if they cannot.
fn incompatible_pins(dir: &Path) -> Option<String> {
    expected_maps()
        .into_iter()
        .find_map(|(name, key, value, max)| pin_layout_differs(dir, name, key, value, max))
}

/// How the map pinned as `name` in `dir` differs from this build's, if it
/// is there and does.
fn pin_layout_differs(
    dir: &Path,
    name: &str,
    key: usize,
    value: usize,
    max: u32,
) -> Option<String> {
    let path = dir.join(name);
    if !path.exists() {
        return None;
    }
    let info = match MapInfo::from_pin(&path) {
        Ok(info) => info,
        Err(err) => return Some(format!("{}: {err}", path.display())),
    };
    let found = (
        info.key_size() as usize,
        info.value_size() as usize,
        info.max_entries(),
    );
    if found != (key, value, max) {
        return Some(format!(
            "map {name} has key/value/entries {found:?}, this version needs {:?}",
            (key, value, max)
        ));
    }
    None
}

/// Removes every pin in `dir` (maps and links): the kernel frees them once
/// nothing else holds them, and an unpinned link detaches its program.
pub fn unpin_all(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// True when the XDP link of `iface` is pinned in `dir` (a bpf_link that
/// keeps the program attached without any process).
pub fn link_pinned(dir: &Path, iface: &str) -> bool {
    PinnedLink::from_pin(dir.join(format!("link_{iface}"))).is_ok()
}

/// Removes the pinned links of `dir` (detaching the program from those
/// interfaces once the daemon's handles close), keeping the maps.
pub fn unpin_links(dir: &Path) -> Result<Vec<String>> {
    let mut detached = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(detached);
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(iface) = name.as_deref().and_then(|n| n.strip_prefix("link_")) {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            detached.push(iface.to_owned());
        }
    }
    Ok(detached)
}

/// The benchmark's yardsticks (lb-ebpf/src/baseline.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// `lb_baseline`: `lb_xdp`'s parse and NAT rewrite for one fixed
    /// service and backend, with no lookup at all.
    Plain,
    /// `lb_baseline_lookup`: the same and one lookup per packet in the
    /// connection table (`LB_FLOWS`, of its full size).
    OneLookup,
}

impl Baseline {
    /// The program's name in the object.
    pub fn program(self) -> &'static str {
        match self {
            Baseline::Plain => lb_common::BASELINE_PROGRAM,
            Baseline::OneLookup => lb_common::BASELINE_LOOKUP_PROGRAM,
        }
    }
}

/// Loads the object with the benchmark's baseline program `which`
/// configured by `config`, and loads that program only (not `lb_xdp`). The
/// tables it never uses are shrunk to one entry (the connection table
/// too, for [`Baseline::Plain`]).
pub fn load_baseline(config: &lb_common::BaselineConfig, which: Baseline) -> Result<Ebpf> {
    raise_memlock_limit();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(lb_common::BASELINE_GLOBAL, config, true)
        .map_max_entries(maps::REPLIES, 1)
        .map_max_entries(maps::NEW_FLOWS, 1)
        .map_max_entries(maps::NEW_FLOW_TAGS, 1);
    if which == Baseline::Plain {
        loader.map_max_entries(maps::FLOWS, 1);
    }
    let mut ebpf = loader
        .load(object())
        .context("loading the XDP object (baseline) into the kernel")?;
    load_program(baseline_program(&mut ebpf, which)?, which.program())?;
    Ok(ebpf)
}

/// How many times a load interrupted by a signal is tried (libbpf tries 5).
const LOAD_ATTEMPTS: usize = 5;

/// Loads `program` through the verifier. The verifier gives up with EAGAIN
/// when a signal is pending for the loading thread (a child's SIGCHLD under
/// tokio's handler, for one); like libbpf, such a load is tried again.
fn load_program(program: &mut Xdp, name: &str) -> Result<()> {
    retry_interrupted(
        LOAD_ATTEMPTS,
        || program.load(),
        |error| {
            matches!(
                error,
                aya::programs::ProgramError::LoadError { io_error, .. }
                    if io_error.raw_os_error() == Some(libc::EAGAIN)
            )
        },
    )
    .with_context(|| format!("the kernel's verifier rejected {name}"))
}

/// Runs `load` up to `attempts` times while it fails with an error that
/// `interrupted` says a signal caused; any other outcome is final.
fn retry_interrupted<E>(
    attempts: usize,
    mut load: impl FnMut() -> Result<(), E>,
    interrupted: impl Fn(&E) -> bool,
) -> Result<(), E> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(error) if attempt < attempts && interrupted(&error) => {
                tracing::debug!(
                    attempt,
                    "the verifier was interrupted by a signal: loading again"
                );
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The baseline program `which` of an object from [`load_baseline`].
pub fn baseline_program(ebpf: &mut Ebpf, which: Baseline) -> Result<&mut Xdp> {
    let name = which.program();
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    Ok(program.try_into()?)
}

/// The XDP program of the object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing from the object"))?;
    Ok(program.try_into()?)
}

/// The active's lease, renewed by the cluster's event loop (see
/// [`Dataplane::lease_handle`]).
pub struct Lease {
    map: Array<aya::maps::MapData, u64>,
}

impl Lease {
    /// The lease ends at `until_ns` (CLOCK_MONOTONIC ns).
    pub fn renew(&mut self, until_ns: u64) -> Result<()> {
        self.map.set(0, until_ns, 0)?;
        Ok(())
    }
}

fn floating_key(addr: std::net::IpAddr) -> FloatingKey {
    let mut key = FloatingKey::default();
    match addr {
        std::net::IpAddr::V4(v4) => {
            key.family = AF_INET;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            key.family = AF_INET6;
            key.addr = v6.octets();
        }
    }
    key
}

fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

fn optional<V>(result: Result<V, aya::maps::MapError>) -> Result<Option<V>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn remove_if_present(result: Result<(), aya::maps::MapError>) -> Result<()> {
    optional(result).map(|_| ())
}

/// The index of `iface` in the calling thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    let name = CString::new(iface).with_context(|| format!("interface name {iface:?}"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!(
            "no interface {iface} in this network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(index)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so that
/// large maps load there too. Harmless on newer kernels.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; newer kernels do not need it");
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::retry_interrupted;

    fn eagain(error: &io::Error) -> bool {
        error.raw_os_error() == Some(libc::EAGAIN)
    }

    /// A load that fails with the given errors first, then succeeds;
    /// returns the outcome and how many times it ran.
    fn run(attempts: usize, failures: &[i32]) -> (Result<(), io::Error>, usize) {
        let mut calls = 0;
        let outcome = retry_interrupted(
            attempts,
            || {
                calls += 1;
                match failures.get(calls - 1) {
                    Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
                    None => Ok(()),
                }
            },
            eagain,
        );
        (outcome, calls)
    }

    #[test]
    fn a_load_interrupted_by_signals_is_tried_again() {
        let (outcome, calls) = run(5, &[libc::EAGAIN, libc::EAGAIN]);
        assert!(outcome.is_ok());
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_rejection_is_not_tried_again() {
        let (outcome, calls) = run(5, &[libc::EINVAL]);
        assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(calls, 1);
    }

    #[test]
    fn interruptions_end_after_the_last_attempt() {
        let (outcome, calls) = run(5, &[libc::EAGAIN; 9]);
        assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        assert_eq!(calls, 5);
    }
}
