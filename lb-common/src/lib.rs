//! Types and constants shared by the XDP programs (`lb-ebpf`) and user space.
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of padding surprises: the
//! kernel and user space read the same bytes. Map names, sizes and layouts live
//! only here. With the `user` feature the map types implement `aya::Pod`.
#![no_std]

/// Names of the maps in the object, as user space finds them.
pub mod maps {
    /// `PerCpuArray<u64>` indexed by [`super::Counter`].
    pub const STATS: &str = "LB_STATS";
}

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "lb_xdp";

/// Global packet counters, one slot each in [`maps::STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames that are neither IPv4 nor IPv6, passed to the kernel.
    PassNotIp = 0,
    /// IP packets not addressed to a service, passed to the kernel.
    PassNotService = 1,
    /// Frames too short for the header they announce, passed to the kernel
    /// (the kernel's own stack counts and drops them).
    PassMalformed = 2,
}

impl Counter {
    /// Number of slots in [`maps::STATS`].
    pub const COUNT: u32 = 3;
    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::PassNotIp,
        Counter::PassNotService,
        Counter::PassMalformed,
    ];

    /// A stable name for logs, metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotService => "pass_not_service",
            Counter::PassMalformed => "pass_malformed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fill_their_slots_in_order() {
        for (slot, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, slot);
        }
    }
}
