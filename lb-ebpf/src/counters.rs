//! The counters, in this CPU's slots: every packet's outcome (`LB_STATS`,
//! one slot per [`Counter`]) and the traffic of each service and backend
//! (`LB_SVC_STATS`, `LB_BE_STATS`).
use aya_ebpf::maps::PerCpuArray;
use lb_common::{Counter, Traffic};

use crate::maps::LB_STATS;

/// Counts the outcome; returns the action.
#[inline(always)]
pub(crate) fn counted((counter, action): (Counter, u32)) -> u32 {
    count(counter);
    action
}

#[inline(always)]
pub(crate) fn count(counter: Counter) {
    if let Some(slot) = LB_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub(crate) fn count_traffic(map: &PerCpuArray<Traffic>, id: u32, bytes: u64, new_flow: bool) {
    if let Some(slot) = map.get_ptr_mut(id) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
            (*slot).new_flows += u64::from(new_flow);
        }
    }
}
