//! The budget of ICMP errors a CPU builds itself.

// Named only in the documentation.
#[cfg(doc)]
use crate::maps;

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

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<IcmpBudget>(), 16);
    }
}
