//! Each CPU's cached FIB answers, for backends and for NAT replies' clients.

// Named only in the documentation.
#[cfg(doc)]
use crate::{Backend, maps};

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

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ClientHop>(), 16 + size_of::<NextHop>());
        assert_eq!(size_of::<NextHop>(), 32);
    }
}
