//! Types and constants shared by the XDP program (`lb-ebpf`) and user space.
//!
//! Everything here is `#[repr(C)]`, `Copy`, and laid out without implicit
//! padding: the kernel and user space read the same bytes. Map names, sizes
//! and layouts live only here. With the `user` feature the map types
//! implement `aya::Pod`.
//!
//! Byte order: addresses and ports are kept in network byte order, exactly as
//! they appear in the packet (an IPv4 address is the first 4 bytes of a
//! 16-byte address, the rest zero).
//!
//! With the `api` feature (std, user space only), [`api`] holds the
//! daemon's local API: its types and its client, shared by the daemon, the
//! CLI and the console.
#![no_std]

#[cfg(feature = "api")]
extern crate std;

#[cfg(feature = "api")]
pub mod api;
pub mod hash;

/// Map names, as user space finds them in the object (at most 15 bytes: the
/// kernel keeps no more).
pub mod maps {
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
}

/// Name of the XDP program in the object (the one attached).
pub const XDP_PROGRAM: &str = "lb_xdp";
/// Name of the XDP program that handles ICMP, tail-called by `lb_xdp`.
pub const ICMP_PROGRAM: &str = "lb_icmp";
/// Slot of [`ICMP_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_ICMP: u32 = 0;
/// Name of the XDP program that answers a packet to a service whose TTL or
/// hop limit expires here with an ICMP time exceeded, tail-called by
/// `lb_xdp`.
pub const TTL_PROGRAM: &str = "lb_ttl_expired";
/// Slot of [`TTL_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_TTL: u32 = 1;
/// Name of the XDP program for packets without a confirmed flow: new and
/// unconfirmed flows to a service, the answers of unconfirmed NAT flows (a
/// SYN-ACK: see [`maps::NEW_FLOWS`]); tail-called by `lb_xdp`.
pub const UNCONFIRMED_PROGRAM: &str = "lb_unconfirmed";
/// Slot of [`UNCONFIRMED_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_UNCONFIRMED: u32 = 2;
/// Slots in [`maps::JUMP`].
pub const JUMP_SLOTS: u32 = 3;

/// Name of the benchmark's baseline XDP program in the object: the same
/// parse and NAT rewrite as [`XDP_PROGRAM`] for one fixed service and
/// backend, without any map or FIB lookup.
pub const BASELINE_PROGRAM: &str = "lb_baseline";
/// Name of the benchmark's second yardstick: [`BASELINE_PROGRAM`] plus one
/// lookup per packet in [`maps::FLOWS`] (an insert when it misses), the
/// one lookup an established packet of [`XDP_PROGRAM`] cannot do without.
/// What [`XDP_PROGRAM`] costs beyond it is the price of everything else.
pub const BASELINE_LOOKUP_PROGRAM: &str = "lb_baseline_lookup";
/// Name of the read-only global ([`BaselineConfig`]) that configures
/// [`BASELINE_PROGRAM`] and [`BASELINE_LOOKUP_PROGRAM`]; user space sets
/// it when loading the object.
pub const BASELINE_GLOBAL: &str = "LB_BASELINE";

/// Name of the benchmark's packet generator: run by `BPF_PROG_TEST_RUN`
/// with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`), it writes
/// [`BenchGenConfig::frame`] over each frame, gives it the next source port
/// of [`BenchGenConfig::flows`] and sends it (`XDP_TX`). Never attached.
pub const BENCH_GEN_PROGRAM: &str = "lb_bench_gen";
/// Name of the read-only global ([`BenchGenConfig`]) of [`BENCH_GEN_PROGRAM`].
pub const BENCH_GEN_GLOBAL: &str = "LB_BENCH_GEN";
/// Name of the benchmark's counting sink, a tc ingress classifier on the
/// far end of the LB's outgoing link: it counts ([`BENCH_DELIVERED`]) and
/// drops the IPv4 TCP and UDP packets to [`BenchSinkConfig`]'s address and
/// port, and lets everything else through.
pub const BENCH_SINK_PROGRAM: &str = "lb_bench_sink";
/// The same sink as an XDP program, for the paths that redirect XDP
/// frames into the link (a veth hands those to XDP without building a
/// socket buffer: the cheaper sink for them).
pub const BENCH_SINK_XDP_PROGRAM: &str = "lb_bench_sink_xdp";
/// Name of the read-only global ([`BenchSinkConfig`]) of [`BENCH_SINK_PROGRAM`]
/// and [`BENCH_SINK_XDP_PROGRAM`].
pub const BENCH_SINK_GLOBAL: &str = "LB_BENCH_SINK";
/// Bytes of the generator's frames: the smallest Ethernet frame, 64 bytes on
/// the wire with its 4-byte FCS.
pub const BENCH_FRAME_BYTES: usize = 60;
/// Slot of [`maps::BENCH`]: frames the generator made on this CPU (it
/// picks the source port from it).
pub const BENCH_SEQUENCE: u32 = 0;
/// Slot of [`maps::BENCH`]: frames the sink counted and dropped on this CPU.
pub const BENCH_DELIVERED: u32 = 1;
/// Entries of [`maps::BENCH`].
pub const BENCH_SLOTS: u32 = 2;

// Map sizes. Memory (kernel, approximate, 64-bit):
// - services: hash, 1,024 x (20 B key + 12 B value + ~48 B element) ~ 80 KiB
// - backends: array, 16,384 x 24 B = 384 KiB
// - Maglev tables: hash without preallocation, one 256 KiB value (65,537 x
//   4 B) per configured service: 256 KiB each, 256 MiB at the 1,024 limit
// - flows and replies: LRU hash, 1,000,000 x (40 B key + 16 or 28 B value +
//   ~48 B element) ~ 105 MiB each, preallocated
// - unconfirmed flows: array, 65,536 sets x 232 B (4 ways of 56 B and
//   their tags) ~ 14.5 MiB
// - service address filter: array, 1,024 x 8 B = 8 KiB
// - statistics: per-CPU arrays, (1,024 + 16,384) x 24 B per CPU ~ 408 KiB/CPU
// - next hops: per-CPU array, 16,384 x 32 B per CPU = 512 KiB/CPU; client
//   next hops: per-CPU array, 16,384 x 48 B per CPU = 768 KiB/CPU
// - fragments: LRU hash, 8,192 x (40 B key + 32 B value + ~48 B element)
//   ~ 1 MiB, preallocated
// - ICMP budget: per-CPU array, 1 x 16 B per CPU
// - flow records: ring buffer, FLOW_RECORDS_BYTES = 4 MiB: 47,662 records
//   of 88 B (8 B header + 80 B record), about 0.5 s of new
//   flows at 100,000 a second before the daemon must have read them
/// Bytes of the flow record ring ([`maps::FLOW_RECORDS`]): a power of two
/// multiple of the page size, as the kernel requires.
pub const FLOW_RECORDS_BYTES: u32 = 4 << 20;
/// A flow record's room in the ring: an 8-byte header and the record
/// rounded up to 8 bytes.
pub const FLOW_RECORD_ROOM: u64 =
    8 + (core::mem::size_of::<FlowRecord>() as u64).next_multiple_of(8);
/// How often the daemon reads the flow record ring: the program submits
/// its records without waking the reader (a wakeup per record cost the
/// new flow's packet more than the record itself), so a record waits up
/// to this long before it is sent.
pub const FLOW_RECORDS_POLL_MS: u64 = 1;
/// In [`maps::REPLICATE`]: report new flows.
pub const REPLICATE_ON: u32 = 1;
/// Services (VIP, port, protocol).
pub const MAX_SERVICES: u32 = 1024;
/// Backends, all services together (including sorry servers).
pub const MAX_BACKENDS: u32 = 16384;
/// Flows in the connection table (and NAT replies in the reply table).
pub const MAX_FLOWS: u32 = 1_000_000;
/// Unconfirmed flows (one packet seen) with their NAT reply translations,
/// in [`maps::NEW_FLOWS`]: under a flood that fills the table, a flow must
/// be confirmed before four newer flows of its set arrive, about this many
/// newer flows in all, 0.26 s at 1,000,000 new flows a second (a handshake
/// on a LAN takes well under a millisecond; one that loses the race is
/// picked again by Maglev). 14 MiB of ways (65,536 sets of 224 bytes) and
/// 512 KiB of tags.
pub const MAX_NEW_FLOWS: u32 = NEW_FLOW_SETS * NEW_FLOW_WAYS;
/// Sets of [`maps::NEW_FLOWS`] (a power of two: the set is the hash's low
/// bits).
pub const NEW_FLOW_SETS: u32 = 65_536;
/// Ways of a set of [`maps::NEW_FLOWS`]: a flow is pushed out only when its set is full
/// and the set's round robin comes to its way (the way written longest ago
/// when the set filled in order; a way freed by a confirmation and taken
/// again may be passed over by it for one round).
pub const NEW_FLOW_WAYS: u32 = 4;
/// Words of each half of [`maps::FLOW_FILTER`]: 1,048,576 bits, 128 KiB
/// (a power of two). With 100,000 flows in the connection table about one
/// SYN in ten of a flood shares a bit with one of them and takes the
/// lookup it would have taken anyway.
pub const FLOW_FILTER_WORDS: u32 = 16_384;
/// Entries of [`maps::FLOW_FILTER`]: the half read, then the two halves.
pub const FLOW_FILTER_ENTRIES: u32 = 1 + 2 * FLOW_FILTER_WORDS;
/// The entry of [`maps::FLOW_FILTER`] that says which half the program
/// reads (0 or 1; only the lowest bit counts).
pub const FLOW_FILTER_READ: u32 = 0;

/// The entry of [`maps::FLOW_FILTER`] of `half`'s word `word` (a bit of
/// [`hash::flow_filter_bit`] divided by 64).
#[inline(always)]
pub const fn flow_filter_entry(half: u32, word: u32) -> u32 {
    1 + (half & 1) * FLOW_FILTER_WORDS + (word & (FLOW_FILTER_WORDS - 1))
}

/// Client addresses whose next hop each CPU caches for NAT replies.
pub const CLIENT_HOP_SLOTS: u32 = 16384;
/// Words of [`maps::SERVICE_ADDRS`]: 65,536 bits, 8 KiB. With a few
/// hundred service addresses, a client address shares a bit with one of them
/// about one time in a hundred (its replies then take the longer way,
/// correctly).
pub const SERVICE_ADDR_WORDS: u32 = 1024;
/// IP datagrams in fragments whose first fragment's destination is kept for
/// the later ones (the kernel's own reassembly keeps at most 4 MiB of
/// fragments; Cilium's fragment map holds 8,192 datagrams).
pub const MAX_FRAGMENTS: u32 = 8192;
/// IPv6 extension headers (hop-by-hop, destination options, fragment) the
/// program walks before TCP or UDP, as Cilium's `ipv6_hdrlen` does.
pub const IPV6_MAX_EXT_HEADERS: usize = 4;
/// Interfaces the program may redirect to.
pub const MAX_TX_PORTS: u32 = 64;
/// Slots of one Maglev lookup table: a prime, about 650 per backend at 100
/// backends (removing one of 100 backends moves about 1.6 % of the slots).
pub const MAGLEV_TABLE_SIZE: u32 = 65537;
/// "No backend" in backend-id fields.
pub const NO_BACKEND: u32 = u32::MAX;

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// A service: (VIP, port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// VIP, network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Port, network order.
    pub port: [u8; 2],
    pub proto: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
}

/// Forwarding mode of a service.
pub mod mode {
    /// Two-arm NAT: destination rewritten to the backend, replies rewritten
    /// back (backends route through the LB).
    pub const NAT: u32 = 0;
    /// Direct server return: only the destination MAC is rewritten; the
    /// backend holds the VIP and answers the client itself.
    pub const DSR: u32 = 1;
}

/// What the data plane knows of a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// Index into the Maglev tables and the service statistics.
    pub id: u32,
    /// [`mode::NAT`] or [`mode::DSR`].
    pub mode: u32,
    /// Backend id of the sorry server, or [`NO_BACKEND`].
    pub sorry: u32,
}

/// Backend flags.
pub mod backend_flags {
    /// The backend may receive packets (of new or existing flows). Cleared
    /// when it is removed or fails its health check: its flows then move.
    pub const LIVE: u8 = 1;
}

/// A backend (real server), at its id in [`maps::BACKENDS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Address, network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Port, network order (NAT rewrites to it; DSR requires the VIP's port).
    pub port: [u8; 2],
    pub family: u8,
    /// [`backend_flags`].
    pub flags: u8,
    /// Bumped each time the id is given to another backend, so that flows
    /// pinned to the old one are not sent to the new one.
    pub generation: u32,
}

impl Backend {
    /// Whether backend-side `key` comes from this backend (its address and
    /// port are the key's source).
    #[inline(always)]
    pub fn is_source_of(&self, key: &FlowKey) -> bool {
        self.port == key.sport && same_addr(&self.addr, &key.src)
    }
}

/// A flow's 5-tuple as it arrives (for [`maps::FLOWS`]: client to VIP; for
/// [`maps::REPLIES`]: backend to client). Aligned to 8 bytes (its layout
/// is the same as without), so that its addresses are read and compared
/// as words ([`FlowKey::src_words`]): the BPF target makes eight byte
/// loads of each unaligned word.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

impl FlowKey {
    /// The same 5-tuple (field by field, without a memory comparison,
    /// which the BPF target would make a call of).
    #[inline(always)]
    pub fn is(&self, other: &FlowKey) -> bool {
        (self.family == other.family)
            & (self.proto == other.proto)
            & (self.sport == other.sport)
            & (self.dport == other.dport)
            && self.src_words() == other.src_words()
            && self.dst_words() == other.dst_words()
    }

    /// The source address as two words (in memory order).
    #[inline(always)]
    pub fn src_words(&self) -> [u64; 2] {
        // SAFETY: `src` is at offset 0 of an 8-aligned struct (asserted
        // below).
        unsafe { aligned_addr_words(&self.src) }
    }

    /// The destination address as two words (in memory order).
    #[inline(always)]
    pub fn dst_words(&self) -> [u64; 2] {
        // SAFETY: `dst` is at offset 16 of an 8-aligned struct.
        unsafe { aligned_addr_words(&self.dst) }
    }
}

const _: () = assert!(
    core::mem::offset_of!(FlowKey, src) % 8 == 0
        && core::mem::offset_of!(FlowKey, dst) % 8 == 0
        && core::mem::align_of::<FlowKey>() == 8
);

/// An address as the two native words it is made of, read as words.
///
/// # Safety
/// `addr` is 8-aligned: a field at an offset that is a multiple of 8 of
/// an 8-aligned struct.
#[inline(always)]
unsafe fn aligned_addr_words(addr: &[u8; 16]) -> [u64; 2] {
    // SAFETY: 16 readable bytes, 8-aligned per the contract; any bits are
    // a valid u64.
    unsafe { *(addr as *const [u8; 16]).cast::<[u64; 2]>() }
}

/// Writes the two native words of an address.
///
/// # Safety
/// As for [`aligned_addr_words`].
#[inline(always)]
unsafe fn set_aligned_addr_words(addr: &mut [u8; 16], words: [u64; 2]) {
    // SAFETY: 16 writable bytes, 8-aligned per the contract.
    unsafe { *(addr as *mut [u8; 16]).cast::<[u64; 2]>() = words }
}

/// The value of [`maps::FLOW_HASH`]: a flow key and its
/// [`hash::flow_hash`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHashMemo {
    pub key: FlowKey,
    pub hash: u32,
    pub pad: u32,
}

/// A flow's pinned backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub backend: u32,
    /// The backend's [`Backend::generation`] when the flow was pinned.
    pub generation: u32,
    pub service: u32,
    /// The service's [`mode`] when the flow was pinned: the flow keeps it
    /// (and the fast path needs no service lookup for it).
    pub mode: u32,
}

/// How to translate a NAT reply back: its source becomes the VIP and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub pad: [u8; 2],
    pub service: u32,
    /// The backend that sends the replies (for its counters).
    pub backend: u32,
}

/// An unconfirmed flow in [`maps::NEW_FLOWS`]: the first packet's pick,
/// and for NAT how to translate the backend's answers. Matched from the
/// client's side by `client`, `cport`, `reply.vip`, `reply.vport`,
/// `proto`, `family`; from the backend's side by `client`, `cport`,
/// `proto`, `family` and the backend's address and port.
/// Aligned to 8 bytes (its layout is the same as without): its addresses
/// are read and written as words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    pub client: [u8; 16],
    /// The VIP and port (the translation of a NAT reply), service, backend.
    pub reply: Reply,
    pub cport: [u8; 2],
    pub proto: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// The backend's [`Backend::generation`] when the flow was picked.
    pub generation: u32,
    /// The service's [`mode`] when the flow was picked.
    pub mode: u32,
}

impl NewFlow {
    /// Whether this way holds the flow of client-side `key` (the client's
    /// next packet). The kernel and user space match with this one rule.
    #[inline(always)]
    pub fn is_flow(&self, key: &FlowKey) -> bool {
        // `&` where it is cheap: fewer branches for the verifier to follow.
        (self.family == key.family)
            & (self.proto == key.proto)
            & (self.cport == key.sport)
            & (self.reply.vport == key.dport)
            && self.client_words() == key.src_words()
            && self.vip_words() == key.dst_words()
    }

    /// The client's address as two words (in memory order).
    #[inline(always)]
    pub fn client_words(&self) -> [u64; 2] {
        // SAFETY: `client` is at offset 0 of an 8-aligned struct (asserted
        // below).
        unsafe { aligned_addr_words(&self.client) }
    }

    /// The VIP (`reply.vip`) as two words (in memory order).
    #[inline(always)]
    pub fn vip_words(&self) -> [u64; 2] {
        // SAFETY: `reply.vip` is at offset 16 of an 8-aligned struct.
        unsafe { aligned_addr_words(&self.reply.vip) }
    }

    /// Sets the client's address and the VIP from a client-side key's
    /// source and destination, as words.
    #[inline(always)]
    pub fn set_addrs(&mut self, key: &FlowKey) {
        // SAFETY: as in `client_words` and `vip_words`.
        unsafe {
            set_aligned_addr_words(&mut self.client, key.src_words());
            set_aligned_addr_words(&mut self.reply.vip, key.dst_words());
        }
    }

    /// Whether backend-side `key` (a backend's answer) is to this way's
    /// NAT flow, as far as the way can tell: the caller checks that its
    /// backend ([`NewFlow::reply`]'s) is the key's source
    /// ([`Backend::is_source_of`]).
    #[inline(always)]
    pub fn answered_by(&self, key: &FlowKey) -> bool {
        (self.family == key.family)
            & (self.proto == key.proto)
            & (self.mode == mode::NAT)
            & (self.cport == key.dport)
            && self.client_words() == key.dst_words()
    }

    /// The flow table's entry this unconfirmed flow becomes.
    pub fn flow(&self) -> Flow {
        Flow {
            backend: self.reply.backend,
            generation: self.generation,
            service: self.reply.service,
            mode: self.mode,
        }
    }
}

const _: () = assert!(
    core::mem::offset_of!(NewFlow, client) % 8 == 0
        && (core::mem::offset_of!(NewFlow, reply) + core::mem::offset_of!(Reply, vip)) % 8 == 0
        && core::mem::align_of::<NewFlow>() == 8
);

/// Two addresses, compared as two 64-bit words in registers (in BPF: no
/// memcmp call, and no 128-bit copies on the stack, which has no room).
#[inline(always)]
pub fn same_addr(a: &[u8; 16], b: &[u8; 16]) -> bool {
    addr_half(a, 0) == addr_half(b, 0) && addr_half(a, 8) == addr_half(b, 8)
}

#[inline(always)]
fn addr_half(a: &[u8; 16], at: usize) -> u64 {
    u64::from_ne_bytes([
        a[at],
        a[at + 1],
        a[at + 2],
        a[at + 3],
        a[at + 4],
        a[at + 5],
        a[at + 6],
        a[at + 7],
    ])
}

/// One set of [`maps::NEW_FLOW_TAGS`]: which ways of the set in
/// [`maps::NEW_FLOWS`] are free and which flow each holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowTags {
    /// Per way: 0 if it is free, else its flow's tag
    /// ([`hash::NewFlowSlot::tag`]). A lookup or a new flow reads these and
    /// only the ways whose tag matches.
    pub tags: [u8; NEW_FLOW_WAYS as usize],
    /// The way a new flow takes when none is free (modulo the ways): a round
    /// robin, which replaces about the way written longest ago.
    pub next: u32,
}

/// One set of [`maps::NEW_FLOWS`]: its ways (their tags are in
/// [`NewFlowTags`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowWays {
    pub ways: [NewFlow; NEW_FLOW_WAYS as usize],
}

/// NAT services a backend address serves, at most this many (a backend in
/// more keeps the first ones, by VIP: the others' replies are not rebuilt).
pub const MAX_BACKEND_VIPS: usize = 4;

/// One NAT service of a backend in [`maps::BACKEND_VIPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendVip {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub pad: [u8; 2],
    /// The backend's id in that service.
    pub backend: u32,
}

/// The NAT services of a backend address ([`maps::BACKEND_VIPS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendVips {
    /// Entries of `vips` in use.
    pub count: u32,
    pub vips: [BackendVip; MAX_BACKEND_VIPS],
}

/// [`FlowRecord::flags`].
pub mod record_flags {
    /// The backend is the service's sorry server (not one of its backends).
    pub const SORRY: u8 = 1;
}

/// A flow the program pinned, as it reports it in
/// [`maps::FLOW_RECORDS`]: the flow table's key and entry, and the
/// backend's address and port as the program read them with the entry (so
/// that user space learns the backend's identity without racing a
/// configuration change that gives its id to another backend). A NAT
/// flow's reply entry is not reported apart: it follows from these (key:
/// backend address and port to the client's; value: VIP and port, service,
/// backend).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Client side, as in [`maps::FLOWS`].
    pub key: FlowKey,
    /// The backend's [`Backend::addr`] and [`Backend::port`].
    pub backend_addr: [u8; 16],
    pub backend_port: [u8; 2],
    /// [`record_flags`].
    pub flags: u8,
    pub pad: u8,
    /// The entry written in [`maps::FLOWS`] (node-local ids).
    pub flow: Flow,
    /// To [`FlowKey`]'s alignment.
    pub pad2: u32,
}

/// ICMP time exceeded messages a CPU may send at once; it earns one more per
/// jiffy (HZ a second: 250 on Debian), as Linux's `icmp_msgs_burst` (50) and
/// `icmp_msgs_per_sec` (1,000) limit its own.
pub const ICMP_BURST: u64 = 50;

/// A CPU's budget of ICMP errors it builds itself (in
/// [`maps::ICMP_BUDGET`]): a token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpBudget {
    /// Messages it may send now (at most [`ICMP_BURST`]).
    pub tokens: u64,
    /// Jiffies when `tokens` was last brought up to date.
    pub updated: u64,
}

/// An IP datagram in fragments as its fragments arrive: (source,
/// destination, protocol, identification). For IPv4 the 16-bit
/// identification fills the first two bytes of `id`, the rest zero; for IPv6
/// it is the fragment header's 32-bit identification. Network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: [u8; 4],
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

/// What the first fragment of a datagram was, in [`Fragment::kind`].
pub mod fragment_kind {
    /// To a backend in NAT mode: the destination becomes the backend's
    /// address.
    pub const NAT: u32 = 0;
    /// To a backend in DSR mode: only the MACs change.
    pub const DSR: u32 = 1;
    /// A NAT reply from a backend: the source becomes [`super::Fragment::vip`].
    pub const REPLY: u32 = 2;
}

/// Where the first fragment of a datagram went: all a later fragment (which
/// carries no ports, so no flow key) needs to follow it. The backend's
/// address and next hop come from [`maps::BACKENDS`] and
/// [`maps::NEXTHOPS`] (a backend whose generation changed is not followed);
/// a reply's client is the fragment's own destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// [`fragment_kind`].
    pub kind: u32,
    /// The backend it went to (NAT, DSR) or that sent it (reply).
    pub backend: u32,
    /// That backend's [`Backend::generation`] then (NAT, DSR).
    pub generation: u32,
    /// The service (for its counters).
    pub service: u32,
    /// Reply: the VIP, its new source address. Zero otherwise.
    pub vip: [u8; 16],
}

/// How long a cached next hop is used before the FIB is asked again, in
/// jiffies: about a second (HZ is 250 on Debian kernels, 100 to 1000
/// elsewhere). A changed route or neighbour reaches the fast path within it.
pub const NEXTHOP_TTL_JIFFIES: u64 = 250;

/// A cached FIB answer for a backend (per CPU, in [`maps::NEXTHOPS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Output interface; 0 = empty.
    pub ifindex: u32,
    /// What the answer is for: the backend's [`Backend::generation`], or the
    /// address family of a client address.
    pub generation: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// The route's MTU: bigger packets ask the FIB (which answers "too big").
    pub mtu: u16,
    pub pad: [u8; 2],
    /// Jiffies after which the answer is not used.
    pub expires: u64,
}

/// A slot of [`maps::CLIENT_HOPS`]: this CPU's cached FIB answer for NAT
/// replies to `client` (its [`NextHop::generation`] is the address family).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHop {
    pub client: [u8; 16],
    pub hop: NextHop,
}

/// Node role, in [`Settings::role`].
pub mod role {
    /// Forwards service traffic (the default of a zeroed map).
    pub const ACTIVE: u32 = 0;
    /// Forwards nothing for services: their packets go to the kernel.
    pub const STANDBY: u32 = 1;
}

/// Node-wide settings, the one entry of [`maps::SETTINGS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// [`role`].
    pub role: u32,
}

/// A CPU's last lease check (see [`maps::FENCE_CHECK`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FenceCheck {
    /// `bpf_jiffies64` when the clock was read (0: never).
    pub jiffies: u64,
    /// The lease it was compared with.
    pub lease: u64,
    /// 1 when the lease had passed.
    pub expired: u64,
}

/// A floating IP (key of [`maps::FLOATING`]): the address as in
/// [`FlowKey`] (IPv4 in the first four bytes) and its family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FloatingKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub pad: [u8; 3],
}

/// Floating IPs a node may hold (the failover group).
pub const MAX_FLOATING: u32 = 64;

/// One Maglev lookup table: slot to backend id, in 16 bits
/// ([`MAGLEV_NO_BACKEND`]: none), so that the table a new flow reads one
/// random slot of is 128 KiB, not 256 (a cold line less often).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MaglevTable {
    pub backends: [u16; MAGLEV_TABLE_SIZE as usize],
}

/// "No backend" in a [`MaglevTable`] slot.
pub const MAGLEV_NO_BACKEND: u16 = u16::MAX;

// Every backend id fits a Maglev slot, and none is taken for "none".
const _: () = assert!(MAX_BACKENDS <= MAGLEV_NO_BACKEND as u32);

impl MaglevTable {
    /// The slot's value of backend `id` ([`NO_BACKEND`] included), or
    /// `None` for an id no slot can hold.
    pub fn slot_of(id: u32) -> Option<u16> {
        match id {
            NO_BACKEND => Some(MAGLEV_NO_BACKEND),
            id if id < MAX_BACKENDS => Some(id as u16),
            _ => None,
        }
    }

    /// The backend id of a slot's value ([`NO_BACKEND`] for none).
    #[inline(always)]
    pub fn id_of(slot: u16) -> u32 {
        if slot == MAGLEV_NO_BACKEND {
            NO_BACKEND
        } else {
            u32::from(slot)
        }
    }
}

/// Traffic counters of a service or backend (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// What the baseline program ([`BASELINE_PROGRAM`]) forwards: packets to
/// `vip:vport` go to `backend:bport` out of `int_ifindex`, packets from
/// `backend:bport` come back from `vip:vport` out of `ext_ifindex`, with
/// these MACs. Addresses and ports in network order, like the maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineConfig {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub backend: [u8; 16],
    pub bport: [u8; 2],
    /// [`AF_INET`] or [`AF_INET6`] (both addresses); 0 forwards nothing.
    pub family: u8,
    pub pad: [u8; 3],
    pub ext_ifindex: u32,
    pub int_ifindex: u32,
    pub lb_ext_mac: [u8; 6],
    pub lb_int_mac: [u8; 6],
    pub client_mac: [u8; 6],
    pub backend_mac: [u8; 6],
}

impl BaselineConfig {
    /// All zero: forwards nothing (the value in the object until user space
    /// sets it).
    pub const UNSET: Self = Self {
        vip: [0; 16],
        vport: [0; 2],
        backend: [0; 16],
        bport: [0; 2],
        family: 0,
        pad: [0; 3],
        ext_ifindex: 0,
        int_ifindex: 0,
        lb_ext_mac: [0; 6],
        lb_int_mac: [0; 6],
        client_mac: [0; 6],
        backend_mac: [0; 6],
    };
}

/// What the generator ([`BENCH_GEN_PROGRAM`]) sends: an IPv4 UDP or TCP
/// frame of [`BENCH_FRAME_BYTES`] with valid checksums (a TCP segment
/// shorter than that followed by Ethernet padding). Frame number `n` made on
/// a CPU leaves with source port `sport + n % flows` (its L4 checksum
/// updated); `flows` 1 or 0: the frame as it is. With `sources` above 1,
/// its source address gets `n % sources` added to its low 16 bits (both
/// checksums updated) and its port `(n / sources) % flows`: a new flow
/// for each of `sources * flows` frames in a row.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchGenConfig {
    pub frame: [u8; BENCH_FRAME_BYTES],
    pub flows: u32,
    pub sources: u32,
}

impl BenchGenConfig {
    /// All zero: a frame of zeros (the value in the object until user space
    /// sets it).
    pub const UNSET: Self = Self {
        frame: [0; BENCH_FRAME_BYTES],
        flows: 0,
        sources: 0,
    };
}

/// What the sink ([`BENCH_SINK_PROGRAM`]) counts and drops: TCP or UDP to
/// `addr:port` (network order), IPv4 without options.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchSinkConfig {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    /// [`AF_INET`] (the first 4 bytes of `addr`); anything else counts
    /// nothing.
    pub family: u8,
    pub pad: u8,
}

impl BenchSinkConfig {
    /// All zero: counts nothing.
    pub const UNSET: Self = Self {
        addr: [0; 16],
        port: [0; 2],
        family: 0,
        pad: 0,
    };
}

/// Global packet counters, one slot each in [`maps::STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames that are neither IPv4 nor IPv6 (ARP, LLDP, VLAN-tagged...).
    PassNotIp = 0,
    /// IP packets not addressed to a service nor a NAT reply.
    PassNotService = 1,
    /// Frames too short for the header they announce, or with a bad IPv4
    /// header length: the kernel's stack counts and drops them.
    PassMalformed = 2,
    /// Later fragments (not the first) of a datagram whose first fragment
    /// was not seen here, or arrived after them, or went to a backend that
    /// has gone since: the kernel's (see ARCHITECTURE.md, "Fragments").
    PassFragment = 3,
    /// IPv6 packets whose next header, after at most
    /// [`IPV6_MAX_EXT_HEADERS`] hop-by-hop, destination-options and
    /// fragment headers, is not TCP, UDP or ICMPv6 (routing headers, AH,
    /// ESP, longer chains...).
    PassIpv6NextHeader = 4,
    /// Service packets on a standby node.
    PassStandby = 5,
    /// NAT replies and ICMP errors for a backend whose TTL or hop limit
    /// would expire here: the kernel answers with ICMP time exceeded from
    /// its own address (packets to a service: [`Counter::DropTtl`]).
    PassTtl = 6,
    /// Translated packets whose next hop has no neighbour entry yet: the
    /// kernel forwards them and resolves it.
    PassNoNeighbour = 7,
    /// Service packets the FIB cannot forward (no route, forwarding off,
    /// MTU exceeded...): passed unchanged.
    PassFibMiss = 8,
    /// Packets sent on by XDP_TX or a redirect (service traffic and NAT
    /// replies).
    Forwarded = 9,
    /// New flows of a service with no usable backend and no sorry server.
    DropNoBackend = 10,
    /// The FIB chose an interface the program may not redirect to (not in
    /// [`maps::TX_PORTS`]).
    DropNoTxPort = 11,
    /// DSR packets whose backend has no neighbour entry: handing them to the
    /// kernel would make it answer for the VIP with a reset, so they are
    /// dropped (the client retransmits). The daemon keeps a managed
    /// neighbour entry for the next hop of every backend, whatever the
    /// health checks (`lb-ctl/src/neighbours`), so this counts only packets
    /// to a backend whose next hop does not answer (shown as `unresolved`
    /// by `lb-ctl backend list`, with an alert).
    DropNoNeighbour = 12,
    /// ICMP and ICMPv6 other than an error about a flow (see
    /// [`Counter::ForwardedIcmp`]): the kernel's.
    PassIcmp = 13,
    /// ICMP and ICMPv6 errors about a flow sent on by XDP_TX or a redirect:
    /// from the client's side to the flow's backend, or (NAT) from the
    /// backend's side to the client, translated. Not in [`Counter::Forwarded`].
    ForwardedIcmp = 14,
    /// IPv4 packets whose header checksum is wrong: dropped (RFC 1812,
    /// 5.2.2; the kernel's stack would drop them too).
    DropIpv4Checksum = 15,
    /// IPv4 total length beyond the frame or shorter than the header, or an
    /// IPv6 payload length beyond the frame or shorter than the extension
    /// headers: passed unchanged (the kernel's stack counts and drops them).
    PassBadIpLength = 16,
    /// TCP data offset below 5 words or beyond the IP packet: passed
    /// unchanged (the kernel's stack counts and drops them).
    PassBadTcpHeader = 17,
    /// UDP length below 8 or beyond the IP payload: passed unchanged (the
    /// kernel's stack counts and drops them).
    PassBadUdpLength = 18,
    /// Packets to a NAT service whose TTL or hop limit would expire here,
    /// not answered with a time exceeded ([`Counter::SentTimeExceeded`]):
    /// later fragments (RFC 1122 3.2.2), IPv4 with options, no way back, or
    /// over the ICMP budget ([`ICMP_BURST`]). Dropped: handed to the kernel
    /// they would be answered from the VIP (a reset, a port unreachable).
    DropTtl = 19,
    /// Packets to a NAT service whose TTL or hop limit would expire here,
    /// answered as a router does: an ICMP time exceeded from the node's own
    /// address (the one the FIB picks for the way back), never from the VIP.
    SentTimeExceeded = 20,
    /// On a fenced node (its lease passed: see [`maps::LEASE`]), packets to
    /// its floating IPs and ARP / neighbour solicitations for them: dropped,
    /// so the node answers nothing the peer now serves.
    DropFenced = 21,
    /// New flows not reported for replication because the flow record ring
    /// ([`maps::FLOW_RECORDS`]) was full (the daemon reads it too slowly):
    /// the packet is forwarded all the same, but the standby does not
    /// learn the flow from the stream.
    FlowRecordsLost = 22,
    /// New flows: a first packet to a service, pinned as unconfirmed
    /// ([`maps::NEW_FLOWS`]). A flood of spoofed sources shows here.
    FlowsUnconfirmed = 23,
    /// Flows confirmed by the client's second packet into the connection
    /// table ([`maps::FLOWS`]), and reported for replication.
    FlowsConfirmed = 24,
    /// TCP packets without SYN to a service whose flow is in neither
    /// table: a connection this node held no entry for (pushed out of the
    /// tables, or begun before the node served it), picked again.
    FlowsMidstream = 25,
    /// Multi-buffer frames (jumbo frames, `xdp.frags`) whose headers do not
    /// all lie in the first buffer, the only one the program reads: passed
    /// unchanged, the kernel's stack handles them. NICs and veth put at
    /// least the first few hundred bytes there, so this counts only
    /// unusual frames (very long IPv6 extension header chains, header
    /// split configured on a NIC).
    PassSplitHeaders = 26,
    /// NAT replies whose reply entry had been pushed out of
    /// [`maps::REPLIES`] while their flow's entry stayed in
    /// [`maps::FLOWS`]: the reply entry was rebuilt from it (see
    /// [`maps::BACKEND_VIPS`]) and the reply translated.
    RepliesRebuilt = 27,
}

impl Counter {
    /// Number of slots in [`maps::STATS`].
    pub const COUNT: u32 = 28;
    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::PassNotIp,
        Counter::PassNotService,
        Counter::PassMalformed,
        Counter::PassFragment,
        Counter::PassIpv6NextHeader,
        Counter::PassStandby,
        Counter::PassTtl,
        Counter::PassNoNeighbour,
        Counter::PassFibMiss,
        Counter::Forwarded,
        Counter::DropNoBackend,
        Counter::DropNoTxPort,
        Counter::DropNoNeighbour,
        Counter::PassIcmp,
        Counter::ForwardedIcmp,
        Counter::DropIpv4Checksum,
        Counter::PassBadIpLength,
        Counter::PassBadTcpHeader,
        Counter::PassBadUdpLength,
        Counter::DropTtl,
        Counter::SentTimeExceeded,
        Counter::DropFenced,
        Counter::FlowRecordsLost,
        Counter::FlowsUnconfirmed,
        Counter::FlowsConfirmed,
        Counter::FlowsMidstream,
        Counter::PassSplitHeaders,
        Counter::RepliesRebuilt,
    ];

    /// A stable name for logs, metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotService => "pass_not_service",
            Counter::PassMalformed => "pass_malformed",
            Counter::PassFragment => "pass_fragment",
            Counter::PassIpv6NextHeader => "pass_ipv6_next_header",
            Counter::PassStandby => "pass_standby",
            Counter::PassTtl => "pass_ttl",
            Counter::PassNoNeighbour => "pass_no_neighbour",
            Counter::PassFibMiss => "pass_fib_miss",
            Counter::Forwarded => "forwarded",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::DropNoTxPort => "drop_no_tx_port",
            Counter::DropNoNeighbour => "drop_no_neighbour",
            Counter::PassIcmp => "pass_icmp",
            Counter::ForwardedIcmp => "forwarded_icmp",
            Counter::DropIpv4Checksum => "drop_ipv4_checksum",
            Counter::PassBadIpLength => "pass_bad_ip_length",
            Counter::PassBadTcpHeader => "pass_bad_tcp_header",
            Counter::PassBadUdpLength => "pass_bad_udp_length",
            Counter::DropTtl => "drop_ttl",
            Counter::SentTimeExceeded => "sent_time_exceeded",
            Counter::DropFenced => "drop_fenced",
            Counter::FlowRecordsLost => "flow_records_lost",
            Counter::FlowsUnconfirmed => "flows_unconfirmed",
            Counter::FlowsConfirmed => "flows_confirmed",
            Counter::FlowsMidstream => "flows_midstream",
            Counter::PassSplitHeaders => "pass_split_headers",
            Counter::RepliesRebuilt => "replies_rebuilt",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] data without implicit padding; every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for Reply {}
    unsafe impl aya::Pod for NewFlowTags {}
    unsafe impl aya::Pod for FlowHashMemo {}
    unsafe impl aya::Pod for NewFlowWays {}
    unsafe impl aya::Pod for BackendVips {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for FloatingKey {}
    unsafe impl aya::Pod for MaglevTable {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for ClientHop {}
    unsafe impl aya::Pod for FenceCheck {}
    unsafe impl aya::Pod for BaselineConfig {}
    unsafe impl aya::Pod for BenchGenConfig {}
    unsafe impl aya::Pod for BenchSinkConfig {}
    unsafe impl aya::Pod for FragmentKey {}
    unsafe impl aya::Pod for Fragment {}
    unsafe impl aya::Pod for IcmpBudget {}
    unsafe impl aya::Pod for FlowRecord {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn the_flow_filters_halves_follow_the_entry_that_says_which_is_read() {
        assert!(FLOW_FILTER_WORDS.is_power_of_two());
        assert_eq!(flow_filter_entry(0, 0), FLOW_FILTER_READ + 1);
        assert_eq!(
            flow_filter_entry(0, FLOW_FILTER_WORDS - 1),
            FLOW_FILTER_WORDS
        );
        assert_eq!(flow_filter_entry(1, 0), FLOW_FILTER_WORDS + 1);
        assert_eq!(
            flow_filter_entry(1, FLOW_FILTER_WORDS - 1),
            FLOW_FILTER_ENTRIES - 1
        );
        // Out of range words and halves wrap instead of leaving the map.
        assert_eq!(
            flow_filter_entry(3, FLOW_FILTER_WORDS),
            flow_filter_entry(1, 0)
        );
    }

    #[test]
    fn addresses_compared_as_words_differ_in_any_byte() {
        let key = FlowKey {
            src: core::array::from_fn(|i| i as u8 + 1),
            dst: core::array::from_fn(|i| i as u8 + 101),
            sport: [0x9c, 0x40],
            dport: [0, 80],
            proto: IPPROTO_TCP,
            family: AF_INET6,
            pad: [0; 2],
        };
        let mut way = NewFlow::default();
        way.set_addrs(&key);
        way.reply.vport = key.dport;
        way.cport = key.sport;
        way.proto = key.proto;
        way.family = key.family;
        assert_eq!((way.client, way.reply.vip), (key.src, key.dst));
        assert!(key.is(&key) && way.is_flow(&key));
        for i in 0..16 {
            let mut other = key;
            other.src[i] ^= 0x80;
            assert!(!key.is(&other) && !way.is_flow(&other), "src byte {i}");
            let mut other = key;
            other.dst[i] ^= 0x01;
            assert!(!key.is(&other) && !way.is_flow(&other), "dst byte {i}");
        }
    }

    #[test]
    fn counters_fill_their_slots_in_order() {
        for (slot, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, slot);
        }
    }

    #[test]
    fn an_unconfirmed_way_matches_its_clients_packets_and_its_backends_answers() {
        let mut client = [0; 16];
        client[..4].copy_from_slice(&[198, 18, 0, 10]);
        let mut vip = [0; 16];
        vip[..4].copy_from_slice(&[198, 18, 0, 100]);
        let mut backend_addr = [0; 16];
        backend_addr[..4].copy_from_slice(&[198, 18, 1, 11]);
        let to_vip = FlowKey {
            src: client,
            dst: vip,
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: IPPROTO_TCP,
            family: AF_INET,
            pad: [0; 2],
        };
        let way = NewFlow {
            client,
            reply: Reply {
                vip,
                vport: to_vip.dport,
                pad: [0; 2],
                service: 1,
                backend: 2,
            },
            cport: to_vip.sport,
            proto: IPPROTO_TCP,
            family: AF_INET,
            generation: 3,
            mode: mode::NAT,
        };
        assert!(way.is_flow(&to_vip));
        for other in [
            FlowKey {
                sport: 40001u16.to_be_bytes(),
                ..to_vip
            },
            FlowKey {
                dport: 81u16.to_be_bytes(),
                ..to_vip
            },
            FlowKey {
                dst: backend_addr,
                ..to_vip
            },
            FlowKey {
                proto: IPPROTO_UDP,
                ..to_vip
            },
            FlowKey {
                family: AF_INET6,
                ..to_vip
            },
        ] {
            assert!(!way.is_flow(&other), "{other:?}");
        }
        let answer = FlowKey {
            src: backend_addr,
            dst: client,
            sport: 8080u16.to_be_bytes(),
            dport: to_vip.sport,
            ..to_vip
        };
        assert!(way.answered_by(&answer));
        assert!(!way.answered_by(&FlowKey {
            dport: 40001u16.to_be_bytes(),
            ..answer
        }));
        assert!(
            !NewFlow {
                mode: mode::DSR,
                ..way
            }
            .answered_by(&answer)
        );
        let backend = Backend {
            addr: backend_addr,
            port: answer.sport,
            family: AF_INET,
            flags: backend_flags::LIVE,
            generation: 3,
        };
        assert!(backend.is_source_of(&answer));
        assert!(
            !Backend {
                port: 80u16.to_be_bytes(),
                ..backend
            }
            .is_source_of(&answer)
        );
        assert!(!backend.is_source_of(&to_vip));
    }

    #[test]
    fn a_maglev_slot_holds_every_backend_id_and_none() {
        for id in [0, 1, MAX_BACKENDS - 1, NO_BACKEND] {
            let slot = MaglevTable::slot_of(id).unwrap();
            assert_eq!(MaglevTable::id_of(slot), id);
        }
        assert_eq!(MaglevTable::slot_of(MAX_BACKENDS), None);
        assert_eq!(MaglevTable::slot_of(NO_BACKEND - 1), None);
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<Service>(), 12);
        assert_eq!(size_of::<Backend>(), 16 + 2 + 1 + 1 + 4);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowHashMemo>(), 40 + 4 + 4);
        assert_eq!(size_of::<Flow>(), 16);
        assert_eq!(size_of::<Reply>(), 28);
        assert_eq!(size_of::<ClientHop>(), 16 + size_of::<NextHop>());
        assert_eq!(size_of::<FenceCheck>(), 24);
        assert_eq!(size_of::<BackendVip>(), 24);
        assert_eq!(size_of::<BackendVips>(), 4 + 24 * MAX_BACKEND_VIPS);
        assert_eq!(size_of::<NewFlow>(), 16 + 28 + 2 + 1 + 1 + 4 + 4);
        assert_eq!(size_of::<NewFlowTags>(), NEW_FLOW_WAYS as usize + 4);
        assert_eq!(size_of::<NewFlowWays>(), 56 * NEW_FLOW_WAYS as usize);
        assert!(NEW_FLOW_SETS.is_power_of_two());
        assert_eq!(size_of::<Traffic>(), 24);
        assert_eq!(size_of::<NextHop>(), 32);
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<Fragment>(), 32);
        assert_eq!(size_of::<IcmpBudget>(), 16);
        assert_eq!(size_of::<FlowRecord>(), 40 + 16 + 2 + 1 + 1 + 16 + 4);
        assert_eq!(
            size_of::<BaselineConfig>(),
            16 + 2 + 16 + 2 + 1 + 3 + 4 + 4 + 4 * 6
        );
        assert_eq!(size_of::<BenchGenConfig>(), BENCH_FRAME_BYTES + 4 + 4);
        assert_eq!(size_of::<BenchSinkConfig>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<MaglevTable>(), 2 * MAGLEV_TABLE_SIZE as usize);
    }
}
