//! The node's role as the packet path sees it: a standby, or an active
//! whose lease passed (fenced, see fence.rs), forwards no service traffic.
use lb_common::role;

use crate::{
    fence,
    maps::{LB_FENCE_CHECK, LB_LEASE, LB_SETTINGS},
};

/// Standby, or fenced (an active whose lease passed, as [`fenced`] found
/// for this packet): no service traffic.
#[inline(always)]
pub(crate) fn is_standby() -> bool {
    LB_SETTINGS
        .get(0)
        .is_some_and(|settings| settings.role == role::STANDBY)
        || fence::recorded(&LB_FENCE_CHECK)
}

/// An active node whose daemon stopped renewing its lease. Asked once per
/// packet, first thing in `lb_xdp`; the answer is kept for the packet's way.
#[inline(always)]
pub(crate) fn fenced() -> bool {
    LB_SETTINGS
        .get(0)
        .is_some_and(|settings| fence::check(settings, lease(), &LB_FENCE_CHECK))
}

/// The active's lease (0: none).
#[inline(always)]
fn lease() -> u64 {
    LB_LEASE.get(0).copied().unwrap_or(0)
}
