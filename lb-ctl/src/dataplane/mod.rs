//! The edge to the kernel's data plane: the embedded XDP object, loading it,
//! attaching it to interfaces, and reading and writing its maps.
//!
//! [`Dataplane`] is the loaded object; its methods are split by concern:
//! loading (`load.rs`), the maps pinned in bpffs (`pins.rs`), attaching
//! (`attach.rs`), the balancer's tables (`tables.rs`), the node's role,
//! lease and floating IPs (`node.rs`), counters (`counters.rs`), the flow
//! tables' entries (`flow_tables.rs`), flow replication (`flows.rs`) and
//! the flow filter (`filter.rs`); the benchmark's baseline programs are in
//! `baseline.rs`. This module holds the type and the typed map access the
//! others share.
use anyhow::{Context as _, Result};
use aya::{Ebpf, programs::xdp::XdpLinkId};

mod attach;
mod baseline;
mod counters;
mod filter;
mod flow_tables;
mod flows;
mod load;
mod node;
mod pins;
mod tables;
pub use attach::{AttachMode, ifindex, link_pinned, unpin_links};
pub use baseline::{Baseline, baseline_program, load_baseline};
pub use filter::{FlowFilter, Rebuilt, rebuild_due};
pub use flows::{
    AsyncFlowRecords, BadItem, FlowFilterKeeper, FlowRecords, FlowsReader, RING_CAPACITY,
};
pub use load::{object, program};
pub use node::{Lease, monotonic_ns};
pub use pins::{PinState, unpin_all};

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
    /// The underlying object, for tools that drive the program directly
    /// (packet fixtures, benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
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
