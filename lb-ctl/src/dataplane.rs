//! The edge to the kernel's data plane: the embedded XDP object, loading it,
//! attaching it to interfaces, and reading and writing its maps.
use std::ffi::CString;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, DevMapHash, HashMap, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
    util::nr_cpus,
};
use lb_common::{
    Backend, Counter, Flow, FlowKey, ICMP_PROGRAM, JUMP_ICMP, MAGLEV_TABLE_SIZE, MaglevTable,
    NO_BACKEND, Reply, Service, ServiceKey, Settings, Traffic, XDP_PROGRAM, maps, role,
};

use crate::balancer::Ops;

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

/// The node's role as the data plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Active,
    Standby,
}

/// The loaded object. Dropping it detaches the program from every interface
/// it was attached to through this value.
pub struct Dataplane {
    ebpf: Ebpf,
    attached: Vec<(String, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded object into the kernel (verifier included).
    pub fn load() -> Result<Self> {
        raise_memlock_limit();
        let mut ebpf = Ebpf::load(object()).context("loading the XDP object into the kernel")?;
        program(&mut ebpf)?
            .load()
            .with_context(|| format!("the kernel's verifier rejected {XDP_PROGRAM}"))?;
        let icmp: &mut Xdp = ebpf
            .program_mut(ICMP_PROGRAM)
            .with_context(|| format!("program {ICMP_PROGRAM} missing from the object"))?
            .try_into()?;
        icmp.load()
            .with_context(|| format!("the kernel's verifier rejected {ICMP_PROGRAM}"))?;
        let icmp_fd = icmp.fd()?.try_clone()?;
        let mut jump: ProgramArray<_> = map_mut(&mut ebpf, maps::JUMP)?;
        jump.set(JUMP_ICMP, &icmp_fd, 0)
            .context("putting the ICMP program in the jump table")?;
        Ok(Self {
            ebpf,
            attached: Vec::new(),
        })
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
        self.attached.push((iface.to_owned(), link));
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
                backends: [NO_BACKEND; MAGLEV_TABLE_SIZE as usize],
            });
            for (id, slots) in &ops.put_tables {
                if slots.len() != table.backends.len() {
                    bail!(
                        "Maglev table of service {id} has {} slots, the data plane takes {}",
                        slots.len(),
                        table.backends.len()
                    );
                }
                table.backends.copy_from_slice(slots);
                tables
                    .insert(id, table.as_ref(), 0)
                    .with_context(|| format!("writing the Maglev table of service {id}"))?;
            }
        }
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
        {
            let mut tables: HashMap<_, u32, MaglevTable> = map_mut(&mut self.ebpf, maps::MAGLEV)?;
            for id in &ops.del_tables {
                remove_if_present(tables.remove(id))
                    .with_context(|| format!("removing the Maglev table of service {id}"))?;
            }
        }
        let mut backends: Array<_, Backend> = map_mut(&mut self.ebpf, maps::BACKENDS)?;
        for (id, backend) in &ops.retire_backends {
            backends
                .set(*id, backend, 0)
                .with_context(|| format!("retiring backend {id}"))?;
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
        let mut settings: Array<_, Settings> = map_mut(&mut self.ebpf, maps::SETTINGS)?;
        let role = match node_role {
            Role::Active => role::ACTIVE,
            Role::Standby => role::STANDBY,
        };
        settings.set(0, Settings { role }, 0)?;
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

/// The XDP program of the object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing from the object"))?;
    Ok(program.try_into()?)
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
