//! The node's state as the program sees it: its role (active or standby,
//! in `LB_SETTINGS`), the active's lease (CLOCK_MONOTONIC ns, past which
//! the program fences the node), with a handle of its own for the
//! cluster's event loop, and the floating IPs a fenced node stops
//! answering for.
use anyhow::{Context as _, Result};
use aya::maps::Array;
use lb_common::{AF_INET, AF_INET6, FloatingKey, Settings, maps};

use super::{Dataplane, map_mut};
use crate::role::Role;

impl Dataplane {
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
