//! IP datagrams in fragments: where the first fragment went, for the later
//! ones.

// Named only in the documentation.
#[cfg(doc)]
use crate::{Backend, maps};

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

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<Fragment>(), 32);
    }
}
