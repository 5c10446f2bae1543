//! Map sizes (and what they cost in memory), the flow filter's layout, and
//! the other fixed limits of the data plane.
use crate::FlowRecord;

// Named only in the documentation.
#[cfg(doc)]
use crate::{hash, maps};

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

#[cfg(test)]
mod tests {
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
}
