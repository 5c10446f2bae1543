//! Heartbeats on the wire: what a node says of itself on every interconnect,
//! authenticated with HMAC-SHA256 under one of the cluster's keys, and the
//! replay window that refuses a heartbeat seen before.
//!
//! Pure: bytes in, a verified [`Heartbeat`] or the reason it was refused out.
//! The sockets live in the daemon's edge.
//!
//! Layout (big-endian, 108 bytes):
//!
//! | off | len | field |
//! |---|---|---|
//! | 0 | 4 | magic `LBHB` |
//! | 4 | 1 | version (3; 2 without the monitors, 1 without the stopped flag, still accepted) |
//! | 5 | 1 | key id (which cluster key made the MAC) |
//! | 6 | 1 | role (0 standby, 1 active) |
//! | 7 | 1 | flags: 1 healthy, 2 eligible, 4 yielding, 8 stopped |
//! | 8 | 16 | cluster id |
//! | 24 | 1 | sender's server index |
//! | 25 | 1 | interconnect index it was sent on |
//! | 26 | 2 | the sender's monitors, 2 bits each, the first in the low bits, in the order of `[[cluster.monitors]]` (0 not carried, 1 normal, 2 error, 3 offline); zero before version 3 |
//! | 28 | 8 | sequence number (grows with every heartbeat sent, on any link) |
//! | 36 | 8 | settings generation |
//! | 44 | 32 | settings hash |
//! | 76 | 32 | HMAC-SHA256 over bytes 0..76 |
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use thiserror::Error;

use super::{Role, monitors::MonitorState};

pub const MAGIC: [u8; 4] = *b"LBHB";
/// Version 3 added the monitors' states, version 2 the stopped flag.
/// Heartbeats of versions 1 and 2 (the same layout without them) are still
/// accepted, so that a pair can be upgraded one node at a time: the
/// upgraded node hears the old one, the old one (which refuses the newer
/// version) finds its peer lost, and an active with a lost peer keeps
/// serving.
pub const VERSION: u8 = 3;
const VERSION_2: u8 = 2;
const VERSION_1: u8 = 1;
/// How many monitors' states a heartbeat carries (the cluster allows no
/// more monitors).
pub const MAX_MONITORS: usize = 8;
const BODY_LEN: usize = 76;
const MAC_LEN: usize = 32;
/// Bytes of a heartbeat on the wire.
pub const WIRE_LEN: usize = BODY_LEN + MAC_LEN;

const FLAG_HEALTHY: u8 = 1;
const FLAG_ELIGIBLE: u8 = 2;
const FLAG_YIELDING: u8 = 4;
const FLAG_STOPPED: u8 = 8;

type HmacSha256 = Hmac<Sha256>;

/// What a node says of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub cluster: [u8; 16],
    /// The sender's index in `[[cluster.servers]]`.
    pub node: u8,
    /// The interconnect it was sent on (index in `[[cluster.interconnects]]`).
    pub link: u8,
    pub seq: u64,
    pub role: Role,
    /// Its monitors are all Normal.
    pub healthy: bool,
    /// It holds the active's current settings (may take over).
    pub eligible: bool,
    /// It asks the peer to take the group (manual failover, failback, a
    /// failed monitor): it will not take the group back by priority.
    pub yielding: bool,
    /// Its cluster service is stopped (`lb-ctl cluster stop`, the final
    /// action `stop`): alive but Offline, it takes nothing.
    pub stopped: bool,
    /// Its monitors' states ([`pack_monitors`]; 0 from a version before 3).
    pub monitors: u16,
    pub generation: u64,
    pub settings_hash: [u8; 32],
}

/// A key of the cluster: its id travels in the heartbeat.
#[derive(Clone)]
pub struct Key {
    pub id: u8,
    pub secret: Vec<u8>,
}

/// The keys a node accepts, and the one it signs with: several are accepted
/// at once so a key can be rotated without downtime (add the new key on both
/// nodes, switch signing, then remove the old one).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
    signing: u8,
}

impl Keyring {
    /// `signing` must be the id of one of `keys`; ids must be distinct.
    pub fn new(keys: Vec<Key>, signing: u8) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(KeyringError::DuplicateId(key.id));
            }
            if key.secret.len() < 16 {
                return Err(KeyringError::ShortKey(key.id));
            }
        }
        if !keys.iter().any(|k| k.id == signing) {
            return Err(KeyringError::NoSigningKey(signing));
        }
        Ok(Keyring { keys, signing })
    }

    fn get(&self, id: u8) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("no heartbeat key is configured")]
    Empty,
    #[error("heartbeat key id {0} is given twice")]
    DuplicateId(u8),
    #[error("heartbeat key {0} is shorter than 16 bytes")]
    ShortKey(u8),
    #[error("the signing key id {0} is not among the keys")]
    NoSigningKey(u8),
}

/// Why a datagram was not taken as a heartbeat; each is counted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refused {
    #[error("not {WIRE_LEN} bytes long")]
    Length,
    #[error("not a heartbeat (magic)")]
    Magic,
    #[error("unknown heartbeat version")]
    Version,
    #[error("signed with a key this node does not have")]
    UnknownKey,
    #[error("the HMAC does not match (forged, corrupted or wrongly keyed)")]
    BadMac,
    #[error("from another cluster")]
    OtherCluster,
    #[error("from a node that is not this node's peer")]
    NotPeer,
    #[error("a field out of range")]
    Malformed,
    #[error("seen before or too old (replay)")]
    Replayed,
}

impl Refused {
    /// A stable name for counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refused::Length => "length",
            Refused::Magic => "magic",
            Refused::Version => "version",
            Refused::UnknownKey => "unknown_key",
            Refused::BadMac => "bad_mac",
            Refused::OtherCluster => "other_cluster",
            Refused::NotPeer => "not_peer",
            Refused::Malformed => "malformed",
            Refused::Replayed => "replayed",
        }
    }
}

/// The heartbeat's bytes, signed with the keyring's signing key.
pub fn seal(hb: &Heartbeat, keys: &Keyring) -> [u8; WIRE_LEN] {
    let mut out = [0u8; WIRE_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = keys.signing;
    out[6] = match hb.role {
        Role::Standby => 0,
        Role::Active => 1,
    };
    out[7] = (u8::from(hb.healthy) * FLAG_HEALTHY)
        | (u8::from(hb.eligible) * FLAG_ELIGIBLE)
        | (u8::from(hb.yielding) * FLAG_YIELDING)
        | (u8::from(hb.stopped) * FLAG_STOPPED);
    out[8..24].copy_from_slice(&hb.cluster);
    out[24] = hb.node;
    out[25] = hb.link;
    out[26..28].copy_from_slice(&hb.monitors.to_be_bytes());
    out[28..36].copy_from_slice(&hb.seq.to_be_bytes());
    out[36..44].copy_from_slice(&hb.generation.to_be_bytes());
    out[44..76].copy_from_slice(&hb.settings_hash);
    let key = keys
        .get(keys.signing)
        .expect("Keyring::new checked the signing key");
    let mac = mac(&key.secret, &out[..BODY_LEN]).finalize().into_bytes();
    out[BODY_LEN..].copy_from_slice(&mac);
    out
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// What the receiver expects of a heartbeat besides its MAC.
pub struct Expect {
    pub cluster: [u8; 16],
    /// The peer's server index.
    pub peer: u8,
    /// How many interconnects there are.
    pub links: u8,
}

/// Checks a datagram: length, magic, version, key, MAC (in constant time),
/// then the fields. The replay check is the caller's ([`ReplayWindow`]),
/// after this, so that only authentic sequence numbers move the window.
pub fn open(bytes: &[u8], keys: &Keyring, expect: &Expect) -> Result<Heartbeat, Refused> {
    if bytes.len() != WIRE_LEN {
        return Err(Refused::Length);
    }
    if bytes[0..4] != MAGIC {
        return Err(Refused::Magic);
    }
    let (known_flags, carries_monitors) = match bytes[4] {
        VERSION => (
            FLAG_HEALTHY | FLAG_ELIGIBLE | FLAG_YIELDING | FLAG_STOPPED,
            true,
        ),
        VERSION_2 => (
            FLAG_HEALTHY | FLAG_ELIGIBLE | FLAG_YIELDING | FLAG_STOPPED,
            false,
        ),
        VERSION_1 => (FLAG_HEALTHY | FLAG_ELIGIBLE | FLAG_YIELDING, false),
        _ => return Err(Refused::Version),
    };
    let key = keys.get(bytes[5]).ok_or(Refused::UnknownKey)?;
    mac(&key.secret, &bytes[..BODY_LEN])
        .verify_slice(&bytes[BODY_LEN..])
        .map_err(|_| Refused::BadMac)?;
    let cluster: [u8; 16] = bytes[8..24].try_into().expect("16 bytes");
    if cluster != expect.cluster {
        return Err(Refused::OtherCluster);
    }
    if bytes[24] != expect.peer {
        return Err(Refused::NotPeer);
    }
    let role = match bytes[6] {
        0 => Role::Standby,
        1 => Role::Active,
        _ => return Err(Refused::Malformed),
    };
    let flags = bytes[7];
    let monitors = u16::from_be_bytes([bytes[26], bytes[27]]);
    if flags & !known_flags != 0
        || bytes[25] >= expect.links
        || (!carries_monitors && monitors != 0)
    {
        return Err(Refused::Malformed);
    }
    Ok(Heartbeat {
        cluster,
        node: bytes[24],
        link: bytes[25],
        seq: u64::from_be_bytes(bytes[28..36].try_into().expect("8 bytes")),
        role,
        healthy: flags & FLAG_HEALTHY != 0,
        eligible: flags & FLAG_ELIGIBLE != 0,
        yielding: flags & FLAG_YIELDING != 0,
        stopped: flags & FLAG_STOPPED != 0,
        monitors,
        generation: u64::from_be_bytes(bytes[36..44].try_into().expect("8 bytes")),
        settings_hash: bytes[44..76].try_into().expect("32 bytes"),
    })
}

/// The states of up to [`MAX_MONITORS`] monitors, 2 bits each, the first
/// in the low bits (those past the eighth are not carried).
pub fn pack_monitors(states: &[MonitorState]) -> u16 {
    states
        .iter()
        .take(MAX_MONITORS)
        .enumerate()
        .fold(0, |packed, (i, state)| {
            let code: u16 = match state {
                MonitorState::Normal => 1,
                MonitorState::Error => 2,
                MonitorState::Offline => 3,
            };
            packed | code << (2 * i)
        })
}

/// The states of `count` monitors from [`pack_monitors`]'s bits (None: not
/// carried, as from a sender of an older version).
pub fn unpack_monitors(packed: u16, count: usize) -> Vec<Option<MonitorState>> {
    (0..count)
        .map(
            |i| match (i < MAX_MONITORS).then(|| packed >> (2 * i) & 3) {
                Some(1) => Some(MonitorState::Normal),
                Some(2) => Some(MonitorState::Error),
                Some(3) => Some(MonitorState::Offline),
                _ => None,
            },
        )
        .collect()
}

/// Sequence numbers already accepted from the peer: the highest, and which
/// of the 64 below it were seen (as IPsec's anti-replay window). Heartbeats
/// may arrive out of order across interconnects; one seen before, or older
/// than the window, is refused.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i: `highest - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    const SIZE: u64 = 64;

    /// Accepts `seq` (and records it) or refuses it as a replay.
    pub fn accept(&mut self, seq: u64) -> Result<(), Refused> {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.seen = 1;
            return Ok(());
        };
        if seq > highest {
            let shift = seq - highest;
            self.seen = if shift >= Self::SIZE {
                0
            } else {
                self.seen << shift
            } | 1;
            self.highest = Some(seq);
            return Ok(());
        }
        let age = highest - seq;
        if age >= Self::SIZE || self.seen & (1 << age) != 0 {
            return Err(Refused::Replayed);
        }
        self.seen |= 1 << age;
        Ok(())
    }
}

/// The first sequence number of a daemon: microseconds since the Unix epoch
/// at its start, so that a restarted node's heartbeats stay above the ones
/// its peer accepted before (as long as its clock does not go back).
pub fn first_seq(unix_micros: u64) -> u64 {
    unix_micros
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[u8], signing: u8) -> Keyring {
        Keyring::new(
            ids.iter()
                .map(|&id| Key {
                    id,
                    secret: vec![id.wrapping_mul(31).wrapping_add(7); 32],
                })
                .collect(),
            signing,
        )
        .unwrap()
    }

    fn hb() -> Heartbeat {
        Heartbeat {
            cluster: [0xc1; 16],
            node: 1,
            link: 1,
            seq: 1_700_000_000_000_123,
            role: Role::Active,
            healthy: true,
            eligible: true,
            yielding: false,
            stopped: false,
            monitors: pack_monitors(&[MonitorState::Normal, MonitorState::Error]),
            generation: 42,
            settings_hash: [0xab; 32],
        }
    }

    fn expect() -> Expect {
        Expect {
            cluster: [0xc1; 16],
            peer: 1,
            links: 2,
        }
    }

    #[test]
    fn a_sealed_heartbeat_opens_to_the_same_values() {
        let k = keys(&[1], 1);
        let wire = seal(&hb(), &k);
        assert_eq!(wire.len(), WIRE_LEN);
        assert_eq!(&wire[0..4], b"LBHB");
        assert_eq!(open(&wire, &k, &expect()), Ok(hb()));
        let mut other = hb();
        other.role = Role::Standby;
        other.healthy = false;
        other.yielding = true;
        assert_eq!(open(&seal(&other, &k), &k, &expect()), Ok(other));
        let mut stopped = other;
        stopped.stopped = true;
        let wire = seal(&stopped, &k);
        assert_eq!(wire[7], FLAG_ELIGIBLE | FLAG_YIELDING | FLAG_STOPPED);
        assert_eq!(open(&wire, &k, &expect()), Ok(stopped));
    }

    /// The bytes re-signed after a change (what a peer with the key but
    /// another version or flag set would send).
    fn resigned(mut wire: [u8; WIRE_LEN], k: &Keyring) -> [u8; WIRE_LEN] {
        let key = k.get(k.signing).unwrap();
        let mac = mac(&key.secret, &wire[..BODY_LEN]).finalize().into_bytes();
        wire[BODY_LEN..].copy_from_slice(&mac);
        wire
    }

    #[test]
    fn older_versions_are_accepted_without_what_they_lack_and_unknown_versions_and_flags_are_refused()
     {
        let k = keys(&[1], 1);
        let without_monitors = Heartbeat {
            monitors: 0,
            ..hb()
        };
        for version in [1, 2] {
            let mut old = seal(&without_monitors, &k);
            old[4] = version;
            assert_eq!(
                open(&resigned(old, &k), &k, &expect()),
                Ok(without_monitors),
                "version {version}"
            );
            // Monitors' bits from a version that has none.
            let mut odd = seal(&hb(), &k);
            odd[4] = version;
            assert_eq!(
                open(&resigned(odd, &k), &k, &expect()),
                Err(Refused::Malformed),
                "version {version}"
            );
        }
        let mut old = seal(&without_monitors, &k);
        old[4] = 1;
        old[7] |= FLAG_STOPPED;
        assert_eq!(
            open(&resigned(old, &k), &k, &expect()),
            Err(Refused::Malformed)
        );
        let mut future = seal(&hb(), &k);
        future[4] = 4;
        assert_eq!(
            open(&resigned(future, &k), &k, &expect()),
            Err(Refused::Version)
        );
        let mut flag = seal(&hb(), &k);
        flag[7] |= 16;
        assert_eq!(
            open(&resigned(flag, &k), &k, &expect()),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn monitor_states_travel_two_bits_each_and_the_ninth_is_not_carried() {
        use MonitorState::*;
        let states = [
            Normal, Error, Offline, Normal, Error, Offline, Normal, Error, Error,
        ];
        let packed = pack_monitors(&states);
        assert_eq!(packed, 0b10_01_11_10_01_11_10_01);
        let back = unpack_monitors(packed, 10);
        assert_eq!(
            &back[..8],
            states[..8].iter().map(|s| Some(*s)).collect::<Vec<_>>()
        );
        assert_eq!(back[8..], [None, None]);
        assert_eq!(unpack_monitors(0, 2), [None, None]);
        let k = keys(&[1], 1);
        let sent = Heartbeat {
            monitors: packed,
            ..hb()
        };
        let wire = seal(&sent, &k);
        assert_eq!(wire[26..28], packed.to_be_bytes());
        assert_eq!(open(&wire, &k, &expect()), Ok(sent));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let k = keys(&[1], 1);
        let wire = seal(&hb(), &k);
        for i in 0..WIRE_LEN {
            let mut forged = wire;
            forged[i] ^= 0x01;
            assert!(open(&forged, &k, &expect()).is_err(), "byte {i} changed");
        }
        assert_eq!(
            open(&wire[..WIRE_LEN - 1], &k, &expect()),
            Err(Refused::Length)
        );
        assert_eq!(open(&[], &k, &expect()), Err(Refused::Length));
    }

    #[test]
    fn a_wrong_key_is_refused_and_an_unknown_key_id_too() {
        let ours = keys(&[1], 1);
        let theirs = Keyring::new(
            vec![Key {
                id: 1,
                secret: vec![9; 32],
            }],
            1,
        )
        .unwrap();
        assert_eq!(
            open(&seal(&hb(), &theirs), &ours, &expect()),
            Err(Refused::BadMac)
        );
        assert_eq!(
            open(&seal(&hb(), &keys(&[2], 2)), &ours, &expect()),
            Err(Refused::UnknownKey)
        );
    }

    #[test]
    fn keys_rotate_without_a_gap() {
        // Old node signs with key 1; new node accepts 1 and 2 and signs with 2.
        let old = keys(&[1], 1);
        let both_old_signing = keys(&[1, 2], 1);
        let both_new_signing = keys(&[1, 2], 2);
        assert!(open(&seal(&hb(), &old), &both_new_signing, &expect()).is_ok());
        assert!(
            open(
                &seal(&hb(), &both_new_signing),
                &both_old_signing,
                &expect()
            )
            .is_ok()
        );
        assert_eq!(
            open(&seal(&hb(), &both_new_signing), &old, &expect()),
            Err(Refused::UnknownKey)
        );
    }

    #[test]
    fn authentic_heartbeats_of_another_cluster_or_node_are_refused() {
        let k = keys(&[1], 1);
        let mut other = hb();
        other.cluster = [0xc2; 16];
        assert_eq!(
            open(&seal(&other, &k), &k, &expect()),
            Err(Refused::OtherCluster)
        );
        let mut me = hb();
        me.node = 0;
        assert_eq!(open(&seal(&me, &k), &k, &expect()), Err(Refused::NotPeer));
        let mut link = hb();
        link.link = 2;
        assert_eq!(
            open(&seal(&link, &k), &k, &expect()),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn the_keyring_refuses_bad_key_sets() {
        let key = |id| Key {
            id,
            secret: vec![1; 32],
        };
        assert_eq!(Keyring::new(vec![], 1).err(), Some(KeyringError::Empty));
        assert_eq!(
            Keyring::new(vec![key(1), key(1)], 1).err(),
            Some(KeyringError::DuplicateId(1))
        );
        assert_eq!(
            Keyring::new(vec![key(1)], 2).err(),
            Some(KeyringError::NoSigningKey(2))
        );
        assert_eq!(
            Keyring::new(
                vec![Key {
                    id: 3,
                    secret: vec![1; 8]
                }],
                3
            )
            .err(),
            Some(KeyringError::ShortKey(3))
        );
    }

    #[test]
    fn the_replay_window_takes_each_sequence_number_once() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(100), Ok(()));
        assert_eq!(w.accept(100), Err(Refused::Replayed));
        assert_eq!(w.accept(102), Ok(()));
        // Out of order across interconnects: 101 arrives after 102.
        assert_eq!(w.accept(101), Ok(()));
        assert_eq!(w.accept(101), Err(Refused::Replayed));
        assert_eq!(w.accept(102), Err(Refused::Replayed));
        // Far ahead: the window moves; what fell out of it is refused.
        assert_eq!(w.accept(1_000), Ok(()));
        assert_eq!(w.accept(1_000 - 64), Err(Refused::Replayed));
        assert_eq!(w.accept(1_000 - 63), Ok(()));
        assert_eq!(w.accept(1_000 - 63), Err(Refused::Replayed));
        assert_eq!(w.accept(150), Err(Refused::Replayed));
    }
}
