//! The program's counters, summed over all CPUs: the global counters
//! (`LB_STATS`) and each service's and backend's traffic.
use anyhow::{Context as _, Result};
use aya::maps::PerCpuArray;
use lb_common::{Counter, Traffic, maps};

use super::{Dataplane, map_ref};

impl Dataplane {
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
}
