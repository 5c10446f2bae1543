//! Map names, as user space finds them in the object (at most 15 bytes: the
//! kernel keeps no more).
/// `HashMap<ServiceKey, Service>`.
pub const SERVICES: &str = "LB_SERVICES";
/// `Array<Backend>`, indexed by backend id.
pub const BACKENDS: &str = "LB_BACKENDS";
/// `HashMap<u32 (service id), MaglevTable>`, no preallocation.
pub const MAGLEV: &str = "LB_MAGLEV";
/// `LruHashMap<FlowKey (client side), Flow>`.
pub const FLOWS: &str = "LB_FLOWS";
/// `LruHashMap<FlowKey (backend side, as the reply arrives), Reply>`.
pub const REPLIES: &str = "LB_REPLIES";
/// `Array<NewFlowWays>`, indexed by [`hash::new_flow_set`] of the
/// client's side: flows of which one packet only was seen (a SYN, a
/// first datagram) and, for NAT, how to translate their first replies
/// (a SYN-ACK). Kept apart from [`FLOWS`] so that a flood of new flows
/// churns only this table; the client's next packet (not a SYN) confirms
/// the flow into [`FLOWS`] (and [`REPLIES`]) and frees its way. A set
/// of [`NEW_FLOW_WAYS`] ways: a new flow takes a free way, else the
/// next way of the set's round robin. One table written once per new
/// flow, found from both directions (the client's address and port are
/// in both). Which ways hold what is in [`NEW_FLOW_TAGS`].
///
/// [`NEW_FLOW_WAYS`]: crate::NEW_FLOW_WAYS
/// [`hash::new_flow_set`]: crate::hash::new_flow_set
pub const NEW_FLOWS: &str = "LB_NEW_FLOWS";
/// `Array<NewFlowTags>`, indexed like [`NEW_FLOWS`]: each set's tags
/// (which ways are free, which flow each holds) and round robin. Apart
/// from the ways so that it is dense (8 bytes a set, 512 KiB, which
/// stays in a CPU's cache where the 14 MiB of ways cannot): a new flow
/// reads only this and writes its way, a store that does not wait for
/// the cold line as a load would. Only a tag that matches reads a way.
pub const NEW_FLOW_TAGS: &str = "LB_NEW_TAGS";
/// `Array<u64>` of [`FLOW_FILTER_ENTRIES`] words, mmapable: whether a
/// flow may be in [`FLOWS`], a bit per [`hash::flow_filter_bit`] (a
/// filter: a clear bit means the flow is not there). A SYN whose bit is
/// clear is a new flow and skips the connection table's lookup, a cold
/// miss in its 16 MiB of buckets that a flood of new flows would pay
/// on every packet. Entry [`FLOW_FILTER_READ`] says which of the two
/// halves of [`FLOW_FILTER_WORDS`] words the program reads; both are
/// set, by the program (an atomic or, after the flow's insert) and by
/// user space (after its own inserts), and never cleared but by user
/// space's rebuild: the half not read is cleared, then set again for
/// every flow in [`FLOWS`], then read. A flow in the table always has
/// its bit in the half read.
///
/// [`FLOW_FILTER_ENTRIES`]: crate::FLOW_FILTER_ENTRIES
/// [`FLOW_FILTER_WORDS`]: crate::FLOW_FILTER_WORDS
/// [`FLOW_FILTER_READ`]: crate::FLOW_FILTER_READ
/// [`hash::flow_filter_bit`]: crate::hash::flow_filter_bit
pub const FLOW_FILTER: &str = "LB_FLOW_FILTER";
/// `HashMap<ServiceKey (a NAT backend's address, port, protocol), BackendVips>`:
/// the NAT services a backend (or sorry server) serves, to rebuild a
/// reply entry pushed out of [`REPLIES`] from its flow's entry in
/// [`FLOWS`] (the two tables evict apart).
pub const BACKEND_VIPS: &str = "LB_BACKEND_VIPS";
/// `Array<u64>` of [`SERVICE_ADDR_WORDS`] words: a bit per
/// [`hash::service_addr_bit`], set for every address some service has
/// (a filter: a clear bit means no service has the address). A packet
/// whose destination's bit is clear is not to a service, so it cannot
/// be in [`FLOWS`]: the program looks it up in [`REPLIES`] straight
/// away (the answer of a NAT flow), one table instead of three. User
/// space sets a service's bit before it writes the service, and clears
/// it only after the last service of that address is removed.
///
/// [`SERVICE_ADDR_WORDS`]: crate::SERVICE_ADDR_WORDS
/// [`hash::service_addr_bit`]: crate::hash::service_addr_bit
pub const SERVICE_ADDRS: &str = "LB_SERVICE_ADDRS";
/// `Array<Settings>`, one entry.
pub const SETTINGS: &str = "LB_SETTINGS";
/// `DevMapHash` keyed by ifindex: the interfaces the program may
/// redirect to.
pub const TX_PORTS: &str = "LB_TX_PORTS";
/// `PerCpuArray<NextHop>` indexed by backend id: each CPU's cache of the
/// FIB's answer for the backend.
pub const NEXTHOPS: &str = "LB_NEXTHOPS";
/// `PerCpuArray<ClientHop>` of [`CLIENT_HOP_SLOTS`], indexed by
/// [`hash::client_hop_slot`] of the client's address: each CPU's cache
/// of the FIB's answer for NAT replies to a client, direct-mapped (a
/// client takes over the slot of another whose address hashes alike).
/// An array rather than a hash because the verifier inlines its lookup:
/// a NAT reply makes one helper call fewer.
///
/// [`CLIENT_HOP_SLOTS`]: crate::CLIENT_HOP_SLOTS
/// [`hash::client_hop_slot`]: crate::hash::client_hop_slot
pub const CLIENT_HOPS: &str = "LB_CLIENT_HOPS";
/// `LruHashMap<FragmentKey, Fragment>`: where the first fragment of an
/// IP datagram went, for its later fragments (which carry no ports).
pub const FRAGMENTS: &str = "LB_FRAGMENTS";
/// `PerCpuArray<IcmpBudget>`, one entry: each CPU's budget of ICMP time
/// exceeded messages (see [`super::ICMP_BURST`]).
pub const ICMP_BUDGET: &str = "LB_ICMP_BUDGET";
/// `ProgramArray`: the programs `lb_xdp` tail-calls (see
/// [`super::JUMP_ICMP`], [`super::JUMP_TTL`], [`super::JUMP_UNCONFIRMED`]).
pub const JUMP: &str = "LB_JUMP";
/// `PerCpuArray<u64>` indexed by [`super::Counter`].
pub const STATS: &str = "LB_STATS";
/// `HashMap<FloatingKey, u8>`: the failover group's addresses, which a
/// fenced node stops answering for (see [`LEASE`]).
pub const FLOATING: &str = "LB_FLOATING";
/// `Array<u64>`, one entry: the active's lease, in `bpf_ktime_get_ns`
/// time (CLOCK_MONOTONIC). A clustered node's event loop renews it on
/// every pass, without the daemon (a map of its own, so that a long
/// configuration change never delays it). Once it has passed the node
/// is *fenced*: it forwards nothing for services and drops what is
/// addressed to its floating IPs (ARP and neighbour solicitations for
/// them too), so a node whose daemon died or stalled never serves
/// beside the peer that took over. 0: no lease (a standalone node).
pub const LEASE: &str = "LB_LEASE";
/// `PerCpuArray<FenceCheck>`, one entry: each CPU's last comparison of
/// the clock with [`LEASE`], so that the clock (a helper call, dear in a
/// VM) is read at most once per jiffy per CPU rather than twice per
/// packet. A lease that passes is noticed within a jiffy (4 ms at
/// HZ=250); a new lease value is compared at once.
pub const FENCE_CHECK: &str = "LB_FENCE_CHECK";
/// `PerCpuArray<FlowHashMemo>`, one entry: the flow hash of the last
/// new flow's SYN `lb_xdp` hashed on this CPU (for the flow filter),
/// with its key. `lb_unconfirmed`, which the SYN is handed to, takes
/// its Maglev slot from it rather than hashing the 5-tuple again; a
/// memo of another key is not used (a zeroed one matches no key).
pub const FLOW_HASH: &str = "LB_FLOW_HASH";
/// `RingBuf` of [`super::FlowRecord`]s: every flow the program pins
/// (new, or picked again), reported for replication to the standby
/// while [`REPLICATE`] is on. Never waited on: a full ring is counted
/// ([`super::Counter::FlowRecordsLost`]) and the packet goes on.
pub const FLOW_RECORDS: &str = "LB_FLOW_RECORDS";
/// `Array<u32>`, one entry: [`super::REPLICATE_ON`] while the node is
/// clustered and reports its new flows into [`FLOW_RECORDS`]; 0 (a
/// zeroed map, a standalone node): nothing reported, one array read
/// per new flow.
pub const REPLICATE: &str = "LB_REPLICATE";
/// `PerCpuArray<u64>` with [`super::BENCH_SLOTS`] entries: the
/// bench-only programs' counters ([`super::BENCH_SEQUENCE`],
/// [`super::BENCH_DELIVERED`]). The daemon never touches it.
pub const BENCH: &str = "LB_BENCH";
/// `PerCpuArray<Traffic>` indexed by service id.
pub const SERVICE_STATS: &str = "LB_SVC_STATS";
/// `PerCpuArray<Traffic>` indexed by backend id.
pub const BACKEND_STATS: &str = "LB_BE_STATS";
