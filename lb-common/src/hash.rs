//! The flow hash that picks a Maglev slot for a new flow. The kernel and user
//! space run this same code, so user space can predict (and tests can check)
//! which backend a first packet goes to, and two nodes agree on it.
//!
//! MurmurHash3 (x86, 32-bit) over the 5-tuple as ten little-endian words.
//! Hand-written rather than taken from a crate because it must build for the
//! BPF target, stay loop-bounded for the verifier, and never change.
use crate::FlowKey;

const SEED: u32 = 0x6c62_5f31; // "lb_1"
const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// The hash of a flow's 5-tuple (client side, as the first packet arrives).
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = SEED;
    let mut i = 0;
    while i < 16 {
        h = round(h, word(&key.src, i));
        i += 4;
    }
    let mut i = 0;
    while i < 16 {
        h = round(h, word(&key.dst, i));
        i += 4;
    }
    h = round(
        h,
        u32::from_le_bytes([key.sport[0], key.sport[1], key.dport[0], key.dport[1]]),
    );
    h = round(h, u32::from_le_bytes([key.proto, key.family, 0, 0]));
    fmix(h ^ 40)
}

/// The bit of a flow (client side) in each half of
/// [`crate::maps::FLOW_FILTER`] (below `64 * FLOW_FILTER_WORDS`). The top
/// bits of the flow hash, whose low bits pick the Maglev slot.
#[inline(always)]
pub fn flow_filter_bit(key: &FlowKey) -> u32 {
    flow_filter_bit_of(flow_hash(key))
}

/// [`flow_filter_bit`] of a flow hash already taken.
#[inline(always)]
pub fn flow_filter_bit_of(flow_hash: u32) -> u32 {
    (flow_hash >> 12) & (64 * crate::FLOW_FILTER_WORDS - 1)
}

/// The Maglev slot of a flow.
#[inline(always)]
pub fn maglev_slot(key: &FlowKey) -> u32 {
    maglev_slot_of(flow_hash(key))
}

/// [`maglev_slot`] of a flow hash already taken.
#[inline(always)]
pub fn maglev_slot_of(flow_hash: u32) -> u32 {
    flow_hash % crate::MAGLEV_TABLE_SIZE
}

/// Where a flow with this client address and port lives in
/// [`crate::maps::NEW_FLOWS`]: the same from the client's packets (source)
/// and the backend's answers (destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewFlowSlot {
    /// The set (the hash's low bits).
    pub set: u32,
    /// The tag its way carries in [`crate::NewFlowTags::tags`]: the hash's
    /// top 8 bits, 0 (which marks a free way) taken as 1. A flow of the
    /// set whose tag matches by chance costs a read of its way (cold): with
    /// 255 tags, about 1.6 % of new flows into a full set of 4 ways.
    pub tag: u8,
}

/// The set and tag of a flow with this client address and port.
#[inline(always)]
pub fn new_flow_slot(client: &[u8; 16], cport: [u8; 2], proto: u8, family: u8) -> NewFlowSlot {
    let mut h = SEED;
    let mut i = 0;
    while i < 16 {
        h = round(h, word(client, i));
        i += 4;
    }
    h = round(h, u32::from_le_bytes([cport[0], cport[1], proto, family]));
    let h = fmix(h ^ 20);
    NewFlowSlot {
        set: h & (crate::NEW_FLOW_SETS - 1),
        tag: ((h >> 24) as u8).max(1),
    }
}

/// The set of [`new_flow_slot`].
#[inline(always)]
pub fn new_flow_set(client: &[u8; 16], cport: [u8; 2], proto: u8, family: u8) -> u32 {
    new_flow_slot(client, cport, proto, family).set
}

/// The bit of an address in [`crate::maps::SERVICE_ADDRS`] (below
/// `64 * SERVICE_ADDR_WORDS`).
#[inline(always)]
pub fn service_addr_bit(addr: &[u8; 16], family: u8) -> u32 {
    addr_mix(addr, family) as u32 & (64 * crate::SERVICE_ADDR_WORDS - 1)
}

/// The slot of a client address in [`crate::maps::CLIENT_HOPS`] (below
/// `CLIENT_HOP_SLOTS`).
#[inline(always)]
pub fn client_hop_slot(addr: &[u8; 16], family: u8) -> u32 {
    (addr_mix(addr, family) >> 32) as u32 & (crate::CLIENT_HOP_SLOTS - 1)
}

/// A hash of an address for the tables every packet reads: cheap (two
/// multiplications, two shifts); the family is part of it so that an IPv4
/// address and the IPv6 address of the same first bytes differ.
#[inline(always)]
fn addr_mix(addr: &[u8; 16], family: u8) -> u64 {
    let lo = u64::from_le_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let hi = u64::from_le_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let mut x = (lo ^ u64::from(family)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi;
    x ^= x >> 32;
    x = x.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^ (x >> 29)
}

#[inline(always)]
fn word(bytes: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
}

#[inline(always)]
fn round(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8, sport: u16) -> FlowKey {
        let mut src = [0; 16];
        src[..4].copy_from_slice(&[198, 18, 0, last]);
        let mut dst = [0; 16];
        dst[..4].copy_from_slice(&[198, 18, 0, 100]);
        FlowKey {
            src,
            dst,
            sport: sport.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: crate::IPPROTO_TCP,
            family: crate::AF_INET,
            pad: [0; 2],
        }
    }

    #[test]
    fn flow_filter_bits_stay_in_the_filter_and_spread() {
        let bits = 64 * crate::FLOW_FILTER_WORDS;
        // 1,000 flows in 1,048,576 bits: about one pair shares one.
        let mut seen = [0u32; 1000];
        for (port, bit) in seen.iter_mut().enumerate() {
            *bit = flow_filter_bit(&key(10, port as u16));
            assert!(*bit < bits);
        }
        seen.sort_unstable();
        let shared = seen.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(shared < 5, "{shared} shared bits");
    }

    #[test]
    fn known_values_never_change() {
        // Two nodes and two versions must agree: a change here moves flows.
        // The values are the reference MurmurHash3_x86_32 (Python mmh3) of the
        // 40 key bytes with the same seed.
        assert_eq!(flow_hash(&key(10, 40000)), 0x0c7a_5460);
        assert_eq!(flow_hash(&key(11, 40000)), 0x983a_9f5b);
    }

    #[test]
    fn every_field_moves_the_hash() {
        let base = key(10, 40000);
        let mut variants = [base; 6];
        variants[0].src[3] ^= 1;
        variants[1].dst[15] ^= 1;
        variants[2].sport[1] ^= 1;
        variants[3].dport[0] ^= 1;
        variants[4].proto = crate::IPPROTO_UDP;
        variants[5].family = crate::AF_INET6;
        for v in variants {
            assert_ne!(flow_hash(&v), flow_hash(&base), "{v:?}");
        }
    }

    #[test]
    fn new_flow_tags_take_every_value_but_free() {
        let mut seen = [false; 256];
        for i in 0..100_000u32 {
            let mut client = [0u8; 16];
            client[..4].copy_from_slice(&i.to_be_bytes());
            let slot = new_flow_slot(&client, [0x9c, 0x40], 6, crate::AF_INET);
            seen[usize::from(slot.tag)] = true;
        }
        assert!(!seen[0], "a tag of 0 would read as a free way");
        assert!(seen[1..].iter().all(|&s| s), "some tags never occur");
    }

    #[test]
    fn a_flows_new_flow_set_is_the_same_from_both_sides() {
        let k = key(10, 40000);
        let from_client = new_flow_set(&k.src, k.sport, k.proto, k.family);
        // The backend's answer: the client is its destination.
        assert_eq!(
            from_client,
            new_flow_set(
                &k.src,
                40000u16.to_be_bytes(),
                crate::IPPROTO_TCP,
                crate::AF_INET
            )
        );
        assert!(from_client < crate::NEW_FLOW_SETS);
        let other_port = new_flow_set(&k.src, 40001u16.to_be_bytes(), k.proto, k.family);
        assert_ne!(from_client, other_port);
    }

    #[test]
    fn new_flow_sets_spread_evenly() {
        let mut buckets = [0u32; 16];
        for port in 0..=u16::MAX {
            let k = key(10, port);
            let set = new_flow_set(&k.src, k.sport, k.proto, k.family);
            buckets[(set as usize * 16) / crate::NEW_FLOW_SETS as usize] += 1;
        }
        for b in buckets {
            assert!((3800..4400).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn slots_spread_evenly() {
        // 64k source ports over 16 buckets of the slot space: each near 1/16.
        let mut buckets = [0u32; 16];
        for port in 0..=u16::MAX {
            let slot = maglev_slot(&key(10, port));
            buckets[(slot as usize * 16) / crate::MAGLEV_TABLE_SIZE as usize] += 1;
        }
        for b in buckets {
            assert!((3800..4400).contains(&b), "{buckets:?}");
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[a, b, c, d]);
        addr
    }

    #[test]
    fn service_addr_bits_depend_on_address_and_family_only() {
        let bits = 64 * crate::SERVICE_ADDR_WORDS;
        let vip = v4(198, 18, 0, 100);
        let bit = service_addr_bit(&vip, crate::AF_INET);
        assert!(bit < bits);
        assert_eq!(bit, service_addr_bit(&vip, crate::AF_INET));
        assert_ne!(bit, service_addr_bit(&vip, crate::AF_INET6));
        let mut v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let one = service_addr_bit(&v6, crate::AF_INET6);
        v6[15] = 2;
        assert_ne!(one, service_addr_bit(&v6, crate::AF_INET6));
    }

    #[test]
    fn service_addr_bits_spread_evenly() {
        // 65,536 neighbouring client addresses (a /16, the common case of
        // addresses that differ in their last bytes) over 16 buckets.
        let per = 64 * crate::SERVICE_ADDR_WORDS as usize / 16;
        let mut buckets = [0u32; 16];
        let mut seen = [0u64; crate::SERVICE_ADDR_WORDS as usize];
        for n in 0..=u16::MAX {
            let [c, d] = n.to_be_bytes();
            let bit = service_addr_bit(&v4(198, 19, c, d), crate::AF_INET) as usize;
            buckets[bit / per] += 1;
            seen[bit / 64] |= 1 << (bit % 64);
        }
        for b in buckets {
            assert!((3800..4400).contains(&b), "{buckets:?}");
        }
        // As many distinct bits as a random function would give (1 - 1/e).
        let distinct: u32 = seen.iter().map(|w| w.count_ones()).sum();
        assert!(distinct > 40_000, "{distinct}");
    }

    #[test]
    fn client_hop_slots_spread_evenly() {
        let per = crate::CLIENT_HOP_SLOTS as usize / 16;
        let mut buckets = [0u32; 16];
        for n in 0..=u16::MAX {
            let [c, d] = n.to_be_bytes();
            let slot = client_hop_slot(&v4(198, 19, c, d), crate::AF_INET);
            assert!(slot < crate::CLIENT_HOP_SLOTS);
            buckets[slot as usize / per] += 1;
        }
        for b in buckets {
            assert!((3800..4400).contains(&b), "{buckets:?}");
        }
    }
}
