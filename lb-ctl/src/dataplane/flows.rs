//! The data plane's edges for flow replication: the switch that makes the
//! program report new flows, the ring it reports them in (read at once or
//! awaited through tokio's `AsyncFd`, as aya documents), and the dump and
//! write of the flow and reply tables (a standby's bulk copy and stream).
//!
//! aya 0.14 has no batch map calls: a dump walks the table key by key and a
//! write updates one entry per syscall.
use std::{mem::size_of, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use lb_common::{
    Counter, FLOW_RECORD_ROOM, FLOW_RECORDS_BYTES, FLOW_RECORDS_POLL_MS, Flow, FlowKey, FlowRecord,
    REPLICATE_ON, Reply, maps,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{Dataplane, FlowFilter, Rebuilt, map_mut, map_ref};

impl Dataplane {
    /// Makes the program report every flow it pins into the flow record
    /// ring (`on`: a clustered node), or nothing (a standalone node).
    pub fn set_replicate(&mut self, on: bool) -> Result<()> {
        let mut switch: Array<_, u32> = map_mut(self.ebpf_mut(), maps::REPLICATE)?;
        let value = if on { REPLICATE_ON } else { 0 };
        switch
            .set(0, value, 0)
            .with_context(|| format!("writing {}", maps::REPLICATE))?;
        Ok(())
    }

    /// Whether the program reports new flows ([`Dataplane::set_replicate`]).
    pub fn replicating(&self) -> Result<bool> {
        let switch: Array<_, u32> = map_ref(self.ebpf(), maps::REPLICATE)?;
        let value = switch
            .get(&0, 0)
            .with_context(|| format!("reading {}", maps::REPLICATE))?;
        Ok(value == REPLICATE_ON)
    }

    /// The reader of the flow record ring. It is taken out of the object:
    /// there is one reader, and a second call fails.
    pub fn flow_records(&mut self) -> Result<FlowRecords> {
        let Some(map) = self.ebpf_mut().take_map(maps::FLOW_RECORDS) else {
            bail!(
                "the flow record ring {} was already taken (one reader only)",
                maps::FLOW_RECORDS
            );
        };
        let ring = RingBuf::try_from(map)
            .with_context(|| format!("map {} is not a ring buffer", maps::FLOW_RECORDS))?;
        Ok(FlowRecords { ring })
    }

    /// A reader of the flow table of its own (a second descriptor of the
    /// same map), for the replication's bulk copies and refreshes: they
    /// dump the table outside the daemon's loop.
    pub fn flows_reader(&self) -> Result<FlowsReader> {
        let flows = self.second_flows()?;
        let stats =
            PerCpuArray::try_from(aya::maps::Map::PerCpuArray(self.second_fd(maps::STATS)?))
                .context("the counters' map has an unexpected type")?;
        Ok(FlowsReader { flows, stats })
    }

    /// The connection table through a descriptor of its own.
    fn second_flows(&self) -> Result<HashMap<MapData, FlowKey, Flow>> {
        HashMap::try_from(aya::maps::Map::LruHashMap(self.second_fd(maps::FLOWS)?))
            .context("the flow table has an unexpected type")
    }

    /// A descriptor of its own of the object's map `name` (opened by id).
    fn second_fd(&self, name: &str) -> Result<MapData> {
        let map = self
            .ebpf()
            .map(name)
            .with_context(|| format!("map {name} missing from the object"))?;
        let info = match map {
            aya::maps::Map::LruHashMap(data) | aya::maps::Map::PerCpuArray(data) => data.info(),
            _ => bail!("map {name} is not an LRU hash or a per-CPU array"),
        };
        let id = info
            .with_context(|| format!("reading map {name}'s id"))?
            .id();
        MapData::from_id(id).with_context(|| format!("opening map {name} by id"))
    }

    /// Every entry of the flow table (client side 5-tuple, pinned backend).
    /// The program goes on writing while it is read: an entry added or
    /// evicted meanwhile may or may not be in the answer.
    pub fn dump_flows(&self) -> Result<Vec<(FlowKey, Flow)>> {
        let flows: HashMap<_, FlowKey, Flow> = map_ref(self.ebpf(), maps::FLOWS)?;
        flows
            .iter()
            .map(|entry| entry.with_context(|| format!("reading {}", maps::FLOWS)))
            .collect()
    }

    /// Every entry of the NAT reply table (backend side 5-tuple, the VIP its
    /// replies get back), as [`Dataplane::dump_flows`].
    pub fn dump_replies(&self) -> Result<Vec<(FlowKey, Reply)>> {
        let replies: HashMap<_, FlowKey, Reply> = map_ref(self.ebpf(), maps::REPLIES)?;
        replies
            .iter()
            .map(|entry| entry.with_context(|| format!("reading {}", maps::REPLIES)))
            .collect()
    }

    /// Writes flow table entries (added or replaced; a full table evicts
    /// its least recently used entries), each with its bit in the flow
    /// filter. Stops at the first that fails, saying which; those before it
    /// stay written.
    pub fn write_flows(&mut self, entries: &[(FlowKey, Flow)]) -> Result<()> {
        let filter = self.filter.clone();
        let mut flows: HashMap<_, FlowKey, Flow> = map_mut(self.ebpf_mut(), maps::FLOWS)?;
        for (i, (key, flow)) in entries.iter().enumerate() {
            flows.insert(key, flow, 0).with_context(|| {
                format!(
                    "writing entry {i} of {} into {} ({key:?})",
                    entries.len(),
                    maps::FLOWS
                )
            })?;
            // After the insert: see filter.rs.
            filter.add(key);
        }
        Ok(())
    }

    /// The flow filter, shared with the program.
    pub fn flow_filter(&self) -> &FlowFilter {
        &self.filter
    }

    /// Rebuilds the flow filter from the connection table (see
    /// [`FlowFilter::rebuild`]), in the calling thread.
    pub fn rebuild_flow_filter(&self) -> Result<Rebuilt> {
        self.flow_filter_keeper()?.rebuild()
    }

    /// What a task needs to rebuild the flow filter outside the daemon's
    /// loop: the filter and a reader of the connection table of its own.
    pub fn flow_filter_keeper(&self) -> Result<FlowFilterKeeper> {
        Ok(FlowFilterKeeper {
            filter: self.filter.clone(),
            flows: self.second_flows()?,
        })
    }

    /// Writes NAT reply table entries, as [`Dataplane::write_flows`].
    pub fn write_replies(&mut self, entries: &[(FlowKey, Reply)]) -> Result<()> {
        let mut replies: HashMap<_, FlowKey, Reply> = map_mut(self.ebpf_mut(), maps::REPLIES)?;
        for (i, (key, reply)) in entries.iter().enumerate() {
            replies.insert(key, reply, 0).with_context(|| {
                format!(
                    "writing entry {i} of {} into {} ({key:?})",
                    entries.len(),
                    maps::REPLIES
                )
            })?;
        }
        Ok(())
    }
}

/// The flow filter and the connection table, for a rebuild outside the
/// daemon ([`Dataplane::flow_filter_keeper`]).
pub struct FlowFilterKeeper {
    filter: FlowFilter,
    flows: HashMap<MapData, FlowKey, Flow>,
}

impl FlowFilterKeeper {
    /// Bits set in the half the program reads.
    pub fn bits(&self) -> u64 {
        self.filter.bits()
    }

    /// Rebuilds the filter from the table (blocking: one syscall a flow).
    pub fn rebuild(&self) -> Result<Rebuilt> {
        self.filter.rebuild(
            self.flows
                .keys()
                .map(|key| key.map_err(anyhow::Error::from)),
        )
    }
}

/// The flow table read outside the daemon ([`Dataplane::flows_reader`]).
pub struct FlowsReader {
    flows: HashMap<MapData, FlowKey, Flow>,
    stats: PerCpuArray<MapData, u64>,
}

impl FlowsReader {
    /// Every entry, as [`Dataplane::dump_flows`].
    pub fn dump(&self) -> Result<Vec<(FlowKey, Flow)>> {
        self.flows
            .iter()
            .map(|entry| entry.with_context(|| format!("reading {}", maps::FLOWS)))
            .collect()
    }

    /// Flow records the program could not put in the ring (it was full),
    /// since the program was loaded: `flow_records_lost`.
    pub fn records_lost(&self) -> Result<u64> {
        let per_cpu = self
            .stats
            .get(&(Counter::FlowRecordsLost as u32), 0)
            .with_context(|| format!("reading {}", maps::STATS))?;
        Ok(per_cpu.iter().sum())
    }
}

/// Records in a full ring: its size over a record's room in it (an 8-byte
/// header, the record rounded up to 8 bytes).
pub const RING_CAPACITY: usize = (FLOW_RECORDS_BYTES as u64 / FLOW_RECORD_ROOM) as usize;

/// Something in the ring that is not a [`FlowRecord`]: the program and this
/// build disagree (never expected; counted by the caller, skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {len}-byte item in the flow record ring, where records are {expected} bytes")]
pub struct BadItem {
    pub len: usize,
    pub expected: usize,
}

/// The reader of the flow record ring ([`Dataplane::flow_records`]).
pub struct FlowRecords {
    ring: RingBuf<MapData>,
}

impl FlowRecords {
    /// Takes up to `max` records out of the ring without waiting; items of
    /// the wrong size are consumed and returned apart.
    pub fn drain(&mut self, max: usize) -> (Vec<FlowRecord>, Vec<BadItem>) {
        drain(&mut self.ring, max)
    }

    /// For a tokio task: the ring behind `AsyncFd`, readable when the
    /// program has submitted records.
    pub fn into_async(self) -> Result<AsyncFlowRecords> {
        // SAFETY: the ring owns its map's descriptor, which stays open and
        // the same for as long as the ring lives (owned by the AsyncFd).
        let fd = unsafe { AsyncFd::register_with_interest(self.ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)
            .context("registering the flow record ring with tokio")?;
        Ok(AsyncFlowRecords { fd })
    }
}

/// The flow record ring, awaited ([`FlowRecords::into_async`]).
pub struct AsyncFlowRecords {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl AsyncFlowRecords {
    /// Waits until the ring holds records, then takes up to `max` of them
    /// (at least one record or bad item). The program submits without
    /// waking the reader, so the ring is read every
    /// [`FLOW_RECORDS_POLL_MS`]; a wakeup (an older program's) is taken
    /// too.
    pub async fn next_batch(&mut self, max: usize) -> Result<(Vec<FlowRecord>, Vec<BadItem>)> {
        let poll = Duration::from_millis(FLOW_RECORDS_POLL_MS);
        loop {
            // What is there first: a full batch leaves more behind.
            let batch = drain(self.fd.get_mut(), max);
            if !(batch.0.is_empty() && batch.1.is_empty()) {
                return Ok(batch);
            }
            if let Ok(guard) = tokio::time::timeout(poll, self.fd.readable_mut()).await {
                let mut guard = guard.context("waiting on the flow record ring")?;
                // Read at the top of the loop; a wakeup is not waited for
                // again until the next one.
                guard.clear_ready();
            }
        }
    }
}

impl AsyncFlowRecords {
    /// Takes up to `max` records without waiting (what is left in the ring
    /// when a node steps down).
    pub fn try_drain(&mut self, max: usize) -> (Vec<FlowRecord>, Vec<BadItem>) {
        drain(self.fd.get_mut(), max)
    }
}

fn drain(ring: &mut RingBuf<MapData>, max: usize) -> (Vec<FlowRecord>, Vec<BadItem>) {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    while records.len() + bad.len() < max {
        let Some(item) = ring.next() else { break };
        match parse(&item) {
            Ok(record) => records.push(record),
            Err(err) => bad.push(err),
        }
    }
    (records, bad)
}

fn parse(item: &[u8]) -> Result<FlowRecord, BadItem> {
    if item.len() != size_of::<FlowRecord>() {
        return Err(BadItem {
            len: item.len(),
            expected: size_of::<FlowRecord>(),
        });
    }
    // SAFETY: the length is checked; FlowRecord is plain data for which any
    // bytes are a value; the read is unaligned.
    Ok(unsafe { item.as_ptr().cast::<FlowRecord>().read_unaligned() })
}
