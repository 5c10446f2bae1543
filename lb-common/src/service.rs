//! Services, their backends and their Maglev lookup tables.
use crate::{FlowKey, MAGLEV_TABLE_SIZE, MAX_BACKENDS, same_addr};

// Named only in the documentation.
#[cfg(doc)]
use crate::{AF_INET, AF_INET6, maps};

/// "No backend" in backend-id fields.
pub const NO_BACKEND: u32 = u32::MAX;

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

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

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
        assert_eq!(size_of::<MaglevTable>(), 2 * MAGLEV_TABLE_SIZE as usize);
    }
}
