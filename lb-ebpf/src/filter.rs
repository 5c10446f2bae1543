//! The flow filter (`LB_FLOW_FILTER`): a bit per flow hash that says whether
//! a flow may be in the connection table (`LB_FLOWS`). A SYN whose bit is
//! clear is a new flow: it skips the table's lookup, which for a flow the
//! table does not hold is a cold miss in its buckets (about 250 ns here),
//! the largest cost of a flood of new flows. User space rebuilds the
//! filter (see `lb_common::maps::FLOW_FILTER`); the program only sets bits.

use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::maps::Array;
use lb_common::{FLOW_FILTER_READ, FlowKey, flow_filter_entry, hash};

/// False when the connection table cannot hold a flow of filter bit `bit`
/// (`hash::flow_filter_bit` of its client-side key: clear in the half
/// read); true when it may.
#[inline(always)]
pub fn may_hold(filter: &Array<u64>, bit: u32) -> bool {
    let half = filter.get(FLOW_FILTER_READ).map_or(0, |half| *half as u32);
    filter
        .get(flow_filter_entry(half, bit / 64))
        .is_none_or(|word| word & (1 << (bit % 64)) != 0)
}

/// Sets the bit of client-side `key` in both halves, after its flow went
/// into the connection table (so that a rebuild that cleared the bit
/// meanwhile finds the flow in the table).
#[inline(always)]
pub fn add(filter: &Array<u64>, key: &FlowKey) {
    let bit = hash::flow_filter_bit(key);
    let mask = 1u64 << (bit % 64);
    let mut half = 0;
    while half < 2 {
        if let Some(word) = filter.get_ptr_mut(flow_filter_entry(half, bit / 64)) {
            // SAFETY: a map value pointer from a successful lookup, 8-byte
            // aligned (array values are). Other CPUs and user space set bits
            // of the same word, hence the atomic or (BPF_ATOMIC | BPF_OR;
            // core's `AtomicU64::fetch_or` is not offered for BPF).
            unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, mask) };
        }
        half += 1;
    }
}
