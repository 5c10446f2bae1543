//! The replicated flow on the wire. It names the service and the backend by
//! their identity (the service's VIP, port and protocol; the backend's
//! address and port, and whether it is the service's sorry server), never
//! by the active's node-local ids and generations, which depend on each
//! node's history: the standby maps the identity to its own ids
//! (`translate`).
//!
//! Encoding, 58 bytes, network byte order:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | kind: 1 (a flow) |
//! | 1 | 1 | family: 4 or 6 |
//! | 2 | 1 | protocol: 6 (TCP) or 17 (UDP) |
//! | 3 | 1 | flags: 1 sorry server, 2 DSR (else NAT); others zero |
//! | 4 | 16 | client address (IPv4: 4 bytes, then zeros) |
//! | 20 | 16 | VIP |
//! | 36 | 2 | client port |
//! | 38 | 2 | VIP port |
//! | 40 | 16 | backend address |
//! | 56 | 2 | backend port |
//!
//! A batch is a 2-byte count and that many records, nothing after them.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_common::{AF_INET, AF_INET6};

use crate::balancer::{Mode, Protocol};

/// Bytes of one encoded record.
pub const RECORD_LEN: usize = 58;
/// Records in one batch at most.
pub const MAX_BATCH: usize = u16::MAX as usize;

const KIND_FLOW: u8 = 1;
const FLAG_SORRY: u8 = 1;
const FLAG_DSR: u8 = 2;

/// A replicated flow: which client's connection to which service goes to
/// which backend, in which mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireFlow {
    pub protocol: Protocol,
    pub client: SocketAddr,
    /// The service's VIP and port.
    pub vip: SocketAddr,
    pub backend: SocketAddr,
    /// The backend is the service's sorry server.
    pub sorry: bool,
    /// The mode the flow was pinned with.
    pub mode: Mode,
}

/// Why bytes are not a record. Nothing is applied from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("truncated record: {got} bytes of {RECORD_LEN}")]
    Truncated { got: usize },
    #[error("unknown record kind {0} (byte 0)")]
    UnknownKind(u8),
    #[error("unknown address family {0} (byte 1; 4 or 6)")]
    BadFamily(u8),
    #[error("unknown protocol {0} (byte 2; 6 or 17)")]
    BadProtocol(u8),
    #[error("unknown flags {0:#04x} (byte 3; only 0x01 and 0x02 are defined)")]
    UnknownFlags(u8),
    #[error("the {field} is IPv4 but its bytes 4 to 15 are not zero")]
    Ipv4Padding { field: &'static str },
    #[error("mixed address families: the {field} is not of the flow's family")]
    MixedFamilies { field: &'static str },
}

/// Why bytes are not a batch of records. Nothing is applied from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("truncated batch: {got} bytes, the count alone takes 2")]
    NoCount { got: usize },
    #[error("batch of {count} records needs {need} bytes, got {got}")]
    Truncated {
        count: usize,
        need: usize,
        got: usize,
    },
    #[error("{extra} bytes after the {count} records of the batch")]
    Trailing { count: usize, extra: usize },
    #[error("record {index} of the batch: {source}")]
    Record { index: usize, source: RecordError },
}

/// Why a flow cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("mixed address families in the flow {flow:?}")]
    MixedFamilies { flow: WireFlow },
    #[error("a batch of {count} records; at most {MAX_BATCH}")]
    BatchTooLarge { count: usize },
}

impl WireFlow {
    /// The record's 58 bytes.
    pub fn encode(&self) -> Result<[u8; RECORD_LEN], EncodeError> {
        let v4 = self.client.is_ipv4();
        if self.vip.is_ipv4() != v4 || self.backend.is_ipv4() != v4 {
            return Err(EncodeError::MixedFamilies { flow: *self });
        }
        let mut out = [0u8; RECORD_LEN];
        out[0] = KIND_FLOW;
        out[1] = if v4 { AF_INET } else { AF_INET6 };
        out[2] = protocol_number(self.protocol);
        out[3] = if self.sorry { FLAG_SORRY } else { 0 }
            | if self.mode == Mode::Dsr { FLAG_DSR } else { 0 };
        out[4..20].copy_from_slice(&addr16(self.client.ip()));
        out[20..36].copy_from_slice(&addr16(self.vip.ip()));
        out[36..38].copy_from_slice(&self.client.port().to_be_bytes());
        out[38..40].copy_from_slice(&self.vip.port().to_be_bytes());
        out[40..56].copy_from_slice(&addr16(self.backend.ip()));
        out[56..58].copy_from_slice(&self.backend.port().to_be_bytes());
        Ok(out)
    }

    /// One record, exactly [`RECORD_LEN`] bytes (a longer slice is read up
    /// to its first [`RECORD_LEN`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let Some(b) = bytes.get(..RECORD_LEN) else {
            return Err(RecordError::Truncated { got: bytes.len() });
        };
        if b[0] != KIND_FLOW {
            return Err(RecordError::UnknownKind(b[0]));
        }
        let v4 = match b[1] {
            AF_INET => true,
            AF_INET6 => false,
            other => return Err(RecordError::BadFamily(other)),
        };
        let protocol = match b[2] {
            lb_common::IPPROTO_TCP => Protocol::Tcp,
            lb_common::IPPROTO_UDP => Protocol::Udp,
            other => return Err(RecordError::BadProtocol(other)),
        };
        if b[3] & !(FLAG_SORRY | FLAG_DSR) != 0 {
            return Err(RecordError::UnknownFlags(b[3]));
        }
        let addr = |at: usize, field: &'static str| -> Result<IpAddr, RecordError> {
            let bytes: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
            if !v4 {
                return Ok(IpAddr::V6(Ipv6Addr::from(bytes)));
            }
            if bytes[4..].iter().any(|&x| x != 0) {
                return Err(RecordError::Ipv4Padding { field });
            }
            Ok(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            )))
        };
        let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Ok(WireFlow {
            protocol,
            client: SocketAddr::new(addr(4, "client address")?, port(36)),
            vip: SocketAddr::new(addr(20, "VIP")?, port(38)),
            backend: SocketAddr::new(addr(40, "backend address")?, port(56)),
            sorry: b[3] & FLAG_SORRY != 0,
            mode: if b[3] & FLAG_DSR != 0 {
                Mode::Dsr
            } else {
                Mode::Nat
            },
        })
    }
}

/// A batch: the count, then the records.
pub fn encode_batch(flows: &[WireFlow]) -> Result<Vec<u8>, EncodeError> {
    if flows.len() > MAX_BATCH {
        return Err(EncodeError::BatchTooLarge { count: flows.len() });
    }
    let mut out = Vec::with_capacity(2 + flows.len() * RECORD_LEN);
    out.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    for flow in flows {
        out.extend_from_slice(&flow.encode()?);
    }
    Ok(out)
}

/// A batch, exactly: a bad record, a wrong length or trailing bytes
/// refuse all of it.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<WireFlow>, BatchError> {
    let Some(count) = bytes.get(..2) else {
        return Err(BatchError::NoCount { got: bytes.len() });
    };
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    let need = 2 + count * RECORD_LEN;
    if bytes.len() < need {
        return Err(BatchError::Truncated {
            count,
            need,
            got: bytes.len(),
        });
    }
    if bytes.len() > need {
        return Err(BatchError::Trailing {
            count,
            extra: bytes.len() - need,
        });
    }
    bytes[2..]
        .chunks_exact(RECORD_LEN)
        .enumerate()
        .map(|(index, chunk)| {
            WireFlow::decode(chunk).map_err(|source| BatchError::Record { index, source })
        })
        .collect()
}

fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => lb_common::IPPROTO_TCP,
        Protocol::Udp => lb_common::IPPROTO_UDP,
    }
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    crate::balancer::addr_bytes(ip)
}

/// A NAT flow over IPv4, for the tests of the record and of the messages
/// that carry it.
#[cfg(test)]
pub(crate) fn sample_v4_flow() -> WireFlow {
    WireFlow {
        protocol: Protocol::Tcp,
        client: "198.18.0.10:40000".parse().unwrap(),
        vip: "198.18.0.100:80".parse().unwrap(),
        backend: "198.18.1.11:8080".parse().unwrap(),
        sorry: false,
        mode: Mode::Nat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_flow() -> WireFlow {
        sample_v4_flow()
    }

    fn v6_flow() -> WireFlow {
        WireFlow {
            protocol: Protocol::Udp,
            client: "[2001:db8::10]:5353".parse().unwrap(),
            vip: "[2001:db8::100]:53".parse().unwrap(),
            backend: "[2001:db8:1::11]:53".parse().unwrap(),
            sorry: true,
            mode: Mode::Dsr,
        }
    }

    #[test]
    fn a_record_encodes_to_its_documented_bytes() {
        let bytes = v4_flow().encode().unwrap();
        let mut want = [0u8; RECORD_LEN];
        want[..4].copy_from_slice(&[1, 4, 6, 0]);
        want[4..8].copy_from_slice(&[198, 18, 0, 10]);
        want[20..24].copy_from_slice(&[198, 18, 0, 100]);
        want[36..40].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        want[40..44].copy_from_slice(&[198, 18, 1, 11]);
        want[56..58].copy_from_slice(&[0x1f, 0x90]);
        assert_eq!(bytes, want);
        let v6 = v6_flow().encode().unwrap();
        assert_eq!(v6[..4], [1, 6, 17, FLAG_SORRY | FLAG_DSR]);
        assert_eq!(
            v6[40..56],
            "2001:db8:1::11".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn records_and_batches_decode_to_what_was_encoded() {
        for flow in [v4_flow(), v6_flow()] {
            assert_eq!(WireFlow::decode(&flow.encode().unwrap()), Ok(flow));
        }
        let flows = vec![v4_flow(), v6_flow(), v4_flow()];
        let batch = encode_batch(&flows).unwrap();
        assert_eq!(batch.len(), 2 + 3 * RECORD_LEN);
        assert_eq!(decode_batch(&batch), Ok(flows));
        assert_eq!(decode_batch(&[0, 0]), Ok(vec![]));
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let good = v4_flow().encode().unwrap();
        let with = |at: usize, value: u8| {
            let mut b = good;
            b[at] = value;
            WireFlow::decode(&b)
        };
        assert_eq!(
            WireFlow::decode(&good[..57]),
            Err(RecordError::Truncated { got: 57 })
        );
        assert_eq!(
            WireFlow::decode(&[]),
            Err(RecordError::Truncated { got: 0 })
        );
        assert_eq!(with(0, 2), Err(RecordError::UnknownKind(2)));
        assert_eq!(with(1, 5), Err(RecordError::BadFamily(5)));
        assert_eq!(with(2, 1), Err(RecordError::BadProtocol(1)));
        assert_eq!(with(3, 4), Err(RecordError::UnknownFlags(4)));
        assert_eq!(
            with(8, 1),
            Err(RecordError::Ipv4Padding {
                field: "client address"
            })
        );
        assert_eq!(with(35, 1), Err(RecordError::Ipv4Padding { field: "VIP" }));
        assert_eq!(
            with(55, 1),
            Err(RecordError::Ipv4Padding {
                field: "backend address"
            })
        );
        assert_eq!(
            RecordError::UnknownFlags(4).to_string(),
            "unknown flags 0x04 (byte 3; only 0x01 and 0x02 are defined)"
        );
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        let flows = [v4_flow(), v6_flow()];
        let batch = encode_batch(&flows).unwrap();
        assert_eq!(decode_batch(&[2]), Err(BatchError::NoCount { got: 1 }));
        assert_eq!(
            decode_batch(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated {
                count: 2,
                need: 118,
                got: 117
            })
        );
        let mut longer = batch.clone();
        longer.push(0);
        assert_eq!(
            decode_batch(&longer),
            Err(BatchError::Trailing { count: 2, extra: 1 })
        );
        let mut bad = batch.clone();
        bad[2 + RECORD_LEN + 1] = 9;
        assert_eq!(
            decode_batch(&bad),
            Err(BatchError::Record {
                index: 1,
                source: RecordError::BadFamily(9)
            })
        );
        assert_eq!(
            BatchError::Record {
                index: 1,
                source: RecordError::BadFamily(9)
            }
            .to_string(),
            "record 1 of the batch: unknown address family 9 (byte 1; 4 or 6)"
        );
    }

    #[test]
    fn a_flow_of_mixed_families_is_not_encoded() {
        let mut flow = v4_flow();
        flow.backend = "[2001:db8:1::11]:8080".parse().unwrap();
        assert_eq!(flow.encode(), Err(EncodeError::MixedFamilies { flow }));
        assert_eq!(
            encode_batch(&[flow]),
            Err(EncodeError::MixedFamilies { flow })
        );
    }

    #[test]
    fn any_changed_byte_decodes_or_is_refused_without_panic() {
        // Every single-byte change of a valid record either decodes to a
        // record with that byte's meaning or is refused: never a panic.
        let good = v6_flow().encode().unwrap();
        for at in 0..RECORD_LEN {
            for value in [0u8, 1, 4, 6, 17, 0x80, 0xff] {
                let mut b = good;
                b[at] = value;
                let _ = WireFlow::decode(&b);
            }
        }
    }
}
