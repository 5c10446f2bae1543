//! The node's role and its failover group: settings, the lease check that
//! fences it, its floating IPs.

// Named only in the documentation.
#[cfg(doc)]
use crate::{FlowKey, maps};

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

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FenceCheck>(), 24);
    }
}
