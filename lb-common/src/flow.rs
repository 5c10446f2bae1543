//! Flows: the connection table's key and entries, the reply table's
//! translation, the unconfirmed flows' ways and tags, and the NAT services
//! of a backend that rebuild a reply entry. Their addresses are compared
//! and written as words.
use crate::{NEW_FLOW_WAYS, mode};

// Named only in the documentation.
#[cfg(doc)]
use crate::{AF_INET, AF_INET6, Backend, hash, maps};

/// A flow's 5-tuple as it arrives (for [`maps::FLOWS`]: client to VIP; for
/// [`maps::REPLIES`]: backend to client). Aligned to 8 bytes (its layout
/// is the same as without), so that its addresses are read and compared
/// as words ([`FlowKey::src_words`]): the BPF target makes eight byte
/// loads of each unaligned word.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

impl FlowKey {
    /// The same 5-tuple (field by field, without a memory comparison,
    /// which the BPF target would make a call of).
    #[inline(always)]
    pub fn is(&self, other: &FlowKey) -> bool {
        (self.family == other.family)
            & (self.proto == other.proto)
            & (self.sport == other.sport)
            & (self.dport == other.dport)
            && self.src_words() == other.src_words()
            && self.dst_words() == other.dst_words()
    }

    /// The source address as two words (in memory order).
    #[inline(always)]
    pub fn src_words(&self) -> [u64; 2] {
        // SAFETY: `src` is at offset 0 of an 8-aligned struct (asserted
        // below).
        unsafe { aligned_addr_words(&self.src) }
    }

    /// The destination address as two words (in memory order).
    #[inline(always)]
    pub fn dst_words(&self) -> [u64; 2] {
        // SAFETY: `dst` is at offset 16 of an 8-aligned struct.
        unsafe { aligned_addr_words(&self.dst) }
    }
}

const _: () = assert!(
    core::mem::offset_of!(FlowKey, src) % 8 == 0
        && core::mem::offset_of!(FlowKey, dst) % 8 == 0
        && core::mem::align_of::<FlowKey>() == 8
);

/// An address as the two native words it is made of, read as words.
///
/// # Safety
/// `addr` is 8-aligned: a field at an offset that is a multiple of 8 of
/// an 8-aligned struct.
#[inline(always)]
unsafe fn aligned_addr_words(addr: &[u8; 16]) -> [u64; 2] {
    // SAFETY: 16 readable bytes, 8-aligned per the contract; any bits are
    // a valid u64.
    unsafe { *(addr as *const [u8; 16]).cast::<[u64; 2]>() }
}

/// Writes the two native words of an address.
///
/// # Safety
/// As for [`aligned_addr_words`].
#[inline(always)]
unsafe fn set_aligned_addr_words(addr: &mut [u8; 16], words: [u64; 2]) {
    // SAFETY: 16 writable bytes, 8-aligned per the contract.
    unsafe { *(addr as *mut [u8; 16]).cast::<[u64; 2]>() = words }
}

/// The value of [`maps::FLOW_HASH`]: a flow key and its
/// [`hash::flow_hash`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHashMemo {
    pub key: FlowKey,
    pub hash: u32,
    pub pad: u32,
}

/// A flow's pinned backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub backend: u32,
    /// The backend's [`Backend::generation`] when the flow was pinned.
    pub generation: u32,
    pub service: u32,
    /// The service's [`mode`] when the flow was pinned: the flow keeps it
    /// (and the fast path needs no service lookup for it).
    pub mode: u32,
}

/// How to translate a NAT reply back: its source becomes the VIP and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub pad: [u8; 2],
    pub service: u32,
    /// The backend that sends the replies (for its counters).
    pub backend: u32,
}

/// An unconfirmed flow in [`maps::NEW_FLOWS`]: the first packet's pick,
/// and for NAT how to translate the backend's answers. Matched from the
/// client's side by `client`, `cport`, `reply.vip`, `reply.vport`,
/// `proto`, `family`; from the backend's side by `client`, `cport`,
/// `proto`, `family` and the backend's address and port.
/// Aligned to 8 bytes (its layout is the same as without): its addresses
/// are read and written as words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    pub client: [u8; 16],
    /// The VIP and port (the translation of a NAT reply), service, backend.
    pub reply: Reply,
    pub cport: [u8; 2],
    pub proto: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// The backend's [`Backend::generation`] when the flow was picked.
    pub generation: u32,
    /// The service's [`mode`] when the flow was picked.
    pub mode: u32,
}

impl NewFlow {
    /// Whether this way holds the flow of client-side `key` (the client's
    /// next packet). The kernel and user space match with this one rule.
    #[inline(always)]
    pub fn is_flow(&self, key: &FlowKey) -> bool {
        // `&` where it is cheap: fewer branches for the verifier to follow.
        (self.family == key.family)
            & (self.proto == key.proto)
            & (self.cport == key.sport)
            & (self.reply.vport == key.dport)
            && self.client_words() == key.src_words()
            && self.vip_words() == key.dst_words()
    }

    /// The client's address as two words (in memory order).
    #[inline(always)]
    pub fn client_words(&self) -> [u64; 2] {
        // SAFETY: `client` is at offset 0 of an 8-aligned struct (asserted
        // below).
        unsafe { aligned_addr_words(&self.client) }
    }

    /// The VIP (`reply.vip`) as two words (in memory order).
    #[inline(always)]
    pub fn vip_words(&self) -> [u64; 2] {
        // SAFETY: `reply.vip` is at offset 16 of an 8-aligned struct.
        unsafe { aligned_addr_words(&self.reply.vip) }
    }

    /// Sets the client's address and the VIP from a client-side key's
    /// source and destination, as words.
    #[inline(always)]
    pub fn set_addrs(&mut self, key: &FlowKey) {
        // SAFETY: as in `client_words` and `vip_words`.
        unsafe {
            set_aligned_addr_words(&mut self.client, key.src_words());
            set_aligned_addr_words(&mut self.reply.vip, key.dst_words());
        }
    }

    /// Whether backend-side `key` (a backend's answer) is to this way's
    /// NAT flow, as far as the way can tell: the caller checks that its
    /// backend ([`NewFlow::reply`]'s) is the key's source
    /// ([`Backend::is_source_of`]).
    #[inline(always)]
    pub fn answered_by(&self, key: &FlowKey) -> bool {
        (self.family == key.family)
            & (self.proto == key.proto)
            & (self.mode == mode::NAT)
            & (self.cport == key.dport)
            && self.client_words() == key.dst_words()
    }

    /// The flow table's entry this unconfirmed flow becomes.
    pub fn flow(&self) -> Flow {
        Flow {
            backend: self.reply.backend,
            generation: self.generation,
            service: self.reply.service,
            mode: self.mode,
        }
    }
}

const _: () = assert!(
    core::mem::offset_of!(NewFlow, client) % 8 == 0
        && (core::mem::offset_of!(NewFlow, reply) + core::mem::offset_of!(Reply, vip)) % 8 == 0
        && core::mem::align_of::<NewFlow>() == 8
);

/// Two addresses, compared as two 64-bit words in registers (in BPF: no
/// memcmp call, and no 128-bit copies on the stack, which has no room).
#[inline(always)]
pub fn same_addr(a: &[u8; 16], b: &[u8; 16]) -> bool {
    addr_half(a, 0) == addr_half(b, 0) && addr_half(a, 8) == addr_half(b, 8)
}

#[inline(always)]
fn addr_half(a: &[u8; 16], at: usize) -> u64 {
    u64::from_ne_bytes([
        a[at],
        a[at + 1],
        a[at + 2],
        a[at + 3],
        a[at + 4],
        a[at + 5],
        a[at + 6],
        a[at + 7],
    ])
}

/// One set of [`maps::NEW_FLOW_TAGS`]: which ways of the set in
/// [`maps::NEW_FLOWS`] are free and which flow each holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowTags {
    /// Per way: 0 if it is free, else its flow's tag
    /// ([`hash::NewFlowSlot::tag`]). A lookup or a new flow reads these and
    /// only the ways whose tag matches.
    pub tags: [u8; NEW_FLOW_WAYS as usize],
    /// The way a new flow takes when none is free (modulo the ways): a round
    /// robin, which replaces about the way written longest ago.
    pub next: u32,
}

/// One set of [`maps::NEW_FLOWS`]: its ways (their tags are in
/// [`NewFlowTags`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowWays {
    pub ways: [NewFlow; NEW_FLOW_WAYS as usize],
}

/// NAT services a backend address serves, at most this many (a backend in
/// more keeps the first ones, by VIP: the others' replies are not rebuilt).
pub const MAX_BACKEND_VIPS: usize = 4;

/// One NAT service of a backend in [`maps::BACKEND_VIPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendVip {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub pad: [u8; 2],
    /// The backend's id in that service.
    pub backend: u32,
}

/// The NAT services of a backend address ([`maps::BACKEND_VIPS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendVips {
    /// Entries of `vips` in use.
    pub count: u32,
    pub vips: [BackendVip; MAX_BACKEND_VIPS],
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;
    use crate::{
        AF_INET, AF_INET6, Backend, IPPROTO_TCP, IPPROTO_UDP, NEW_FLOW_SETS, backend_flags,
    };

    #[test]
    fn addresses_compared_as_words_differ_in_any_byte() {
        let key = FlowKey {
            src: core::array::from_fn(|i| i as u8 + 1),
            dst: core::array::from_fn(|i| i as u8 + 101),
            sport: [0x9c, 0x40],
            dport: [0, 80],
            proto: IPPROTO_TCP,
            family: AF_INET6,
            pad: [0; 2],
        };
        let mut way = NewFlow::default();
        way.set_addrs(&key);
        way.reply.vport = key.dport;
        way.cport = key.sport;
        way.proto = key.proto;
        way.family = key.family;
        assert_eq!((way.client, way.reply.vip), (key.src, key.dst));
        assert!(key.is(&key) && way.is_flow(&key));
        for i in 0..16 {
            let mut other = key;
            other.src[i] ^= 0x80;
            assert!(!key.is(&other) && !way.is_flow(&other), "src byte {i}");
            let mut other = key;
            other.dst[i] ^= 0x01;
            assert!(!key.is(&other) && !way.is_flow(&other), "dst byte {i}");
        }
    }

    #[test]
    fn an_unconfirmed_way_matches_its_clients_packets_and_its_backends_answers() {
        let mut client = [0; 16];
        client[..4].copy_from_slice(&[198, 18, 0, 10]);
        let mut vip = [0; 16];
        vip[..4].copy_from_slice(&[198, 18, 0, 100]);
        let mut backend_addr = [0; 16];
        backend_addr[..4].copy_from_slice(&[198, 18, 1, 11]);
        let to_vip = FlowKey {
            src: client,
            dst: vip,
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: IPPROTO_TCP,
            family: AF_INET,
            pad: [0; 2],
        };
        let way = NewFlow {
            client,
            reply: Reply {
                vip,
                vport: to_vip.dport,
                pad: [0; 2],
                service: 1,
                backend: 2,
            },
            cport: to_vip.sport,
            proto: IPPROTO_TCP,
            family: AF_INET,
            generation: 3,
            mode: mode::NAT,
        };
        assert!(way.is_flow(&to_vip));
        for other in [
            FlowKey {
                sport: 40001u16.to_be_bytes(),
                ..to_vip
            },
            FlowKey {
                dport: 81u16.to_be_bytes(),
                ..to_vip
            },
            FlowKey {
                dst: backend_addr,
                ..to_vip
            },
            FlowKey {
                proto: IPPROTO_UDP,
                ..to_vip
            },
            FlowKey {
                family: AF_INET6,
                ..to_vip
            },
        ] {
            assert!(!way.is_flow(&other), "{other:?}");
        }
        let answer = FlowKey {
            src: backend_addr,
            dst: client,
            sport: 8080u16.to_be_bytes(),
            dport: to_vip.sport,
            ..to_vip
        };
        assert!(way.answered_by(&answer));
        assert!(!way.answered_by(&FlowKey {
            dport: 40001u16.to_be_bytes(),
            ..answer
        }));
        assert!(
            !NewFlow {
                mode: mode::DSR,
                ..way
            }
            .answered_by(&answer)
        );
        let backend = Backend {
            addr: backend_addr,
            port: answer.sport,
            family: AF_INET,
            flags: backend_flags::LIVE,
            generation: 3,
        };
        assert!(backend.is_source_of(&answer));
        assert!(
            !Backend {
                port: 80u16.to_be_bytes(),
                ..backend
            }
            .is_source_of(&answer)
        );
        assert!(!backend.is_source_of(&to_vip));
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowHashMemo>(), 40 + 4 + 4);
        assert_eq!(size_of::<Flow>(), 16);
        assert_eq!(size_of::<Reply>(), 28);
        assert_eq!(size_of::<BackendVip>(), 24);
        assert_eq!(size_of::<BackendVips>(), 4 + 24 * MAX_BACKEND_VIPS);
        assert_eq!(size_of::<NewFlow>(), 16 + 28 + 2 + 1 + 1 + 4 + 4);
        assert_eq!(size_of::<NewFlowTags>(), NEW_FLOW_WAYS as usize + 4);
        assert_eq!(size_of::<NewFlowWays>(), 56 * NEW_FLOW_WAYS as usize);
        assert!(NEW_FLOW_SETS.is_power_of_two());
    }
}
