//! The maps of the XDP programs (the benchmark's `LB_BENCH` is bench.rs's).
//! User space finds each by the name its `#[map]` gives, not by where it is
//! declared; their keys and values are `lb-common`'s types.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lb_common::{
    Backend, BackendVips, CLIENT_HOP_SLOTS, ClientHop, Counter, FLOW_FILTER_ENTRIES,
    FLOW_RECORDS_BYTES, FenceCheck, FloatingKey, Flow, FlowHashMemo, FlowKey, Fragment,
    FragmentKey, IcmpBudget, JUMP_SLOTS, MAX_BACKENDS, MAX_FLOATING, MAX_FLOWS, MAX_FRAGMENTS,
    MAX_SERVICES, MAX_TX_PORTS, MaglevTable, NEW_FLOW_SETS, NewFlowTags, NewFlowWays, NextHop,
    Reply, SERVICE_ADDR_WORDS, Service, ServiceKey, Settings, Traffic,
};

#[map(name = "LB_SERVICES")]
pub(crate) static LB_SERVICES: HashMap<ServiceKey, Service> =
    HashMap::with_max_entries(MAX_SERVICES, 0);
#[map(name = "LB_BACKENDS")]
pub(crate) static LB_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_MAGLEV")]
pub(crate) static LB_MAGLEV: HashMap<u32, MaglevTable> =
    HashMap::with_max_entries(MAX_SERVICES, BPF_F_NO_PREALLOC);
#[map(name = "LB_FLOWS")]
pub(crate) static LB_FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map(name = "LB_REPLIES")]
pub(crate) static LB_REPLIES: LruHashMap<FlowKey, Reply> =
    LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map(name = "LB_FLOW_FILTER")]
pub(crate) static LB_FLOW_FILTER: Array<u64> =
    Array::with_max_entries(FLOW_FILTER_ENTRIES, BPF_F_MMAPABLE);
#[map(name = "LB_NEW_FLOWS")]
pub(crate) static LB_NEW_FLOWS: Array<NewFlowWays> = Array::with_max_entries(NEW_FLOW_SETS, 0);
#[map(name = "LB_NEW_TAGS")]
pub(crate) static LB_NEW_TAGS: Array<NewFlowTags> = Array::with_max_entries(NEW_FLOW_SETS, 0);
#[map(name = "LB_BACKEND_VIPS")]
pub(crate) static LB_BACKEND_VIPS: HashMap<ServiceKey, BackendVips> =
    HashMap::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_SERVICE_ADDRS")]
pub(crate) static LB_SERVICE_ADDRS: Array<u64> = Array::with_max_entries(SERVICE_ADDR_WORDS, 0);
#[map(name = "LB_SETTINGS")]
pub(crate) static LB_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map(name = "LB_TX_PORTS")]
pub(crate) static LB_TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);
#[map(name = "LB_NEXTHOPS")]
pub(crate) static LB_NEXTHOPS: PerCpuArray<NextHop> =
    PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_CLIENT_HOPS")]
pub(crate) static LB_CLIENT_HOPS: PerCpuArray<ClientHop> =
    PerCpuArray::with_max_entries(CLIENT_HOP_SLOTS, 0);
#[map(name = "LB_FRAGMENTS")]
pub(crate) static LB_FRAGMENTS: LruHashMap<FragmentKey, Fragment> =
    LruHashMap::with_max_entries(MAX_FRAGMENTS, 0);
#[map(name = "LB_ICMP_BUDGET")]
pub(crate) static LB_ICMP_BUDGET: PerCpuArray<IcmpBudget> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_JUMP")]
pub(crate) static LB_JUMP: ProgramArray = ProgramArray::with_max_entries(JUMP_SLOTS, 0);
#[map(name = "LB_STATS")]
pub(crate) static LB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);
#[map(name = "LB_SVC_STATS")]
pub(crate) static LB_SVC_STATS: PerCpuArray<Traffic> =
    PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map(name = "LB_BE_STATS")]
pub(crate) static LB_BE_STATS: PerCpuArray<Traffic> =
    PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "LB_LEASE")]
pub(crate) static LB_LEASE: Array<u64> = Array::with_max_entries(1, 0);
#[map(name = "LB_FLOW_HASH")]
pub(crate) static LB_FLOW_HASH: PerCpuArray<FlowHashMemo> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_FENCE_CHECK")]
pub(crate) static LB_FENCE_CHECK: PerCpuArray<FenceCheck> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "LB_REPLICATE")]
pub(crate) static LB_REPLICATE: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "LB_FLOW_RECORDS")]
pub(crate) static LB_FLOW_RECORDS: RingBuf = RingBuf::with_byte_size(FLOW_RECORDS_BYTES, 0);
#[map(name = "LB_FLOATING")]
pub(crate) static LB_FLOATING: HashMap<FloatingKey, u8> =
    HashMap::with_max_entries(MAX_FLOATING, 0);
