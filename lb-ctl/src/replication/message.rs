//! The stream's messages on the wire (inside the cluster channel, which
//! authenticates and encrypts them). Network byte order:
//!
//! | type | name | then |
//! |---|---|---|
//! | 1 | records | epoch (8), seq (8), a batch of records (`record`) |
//! | 2 | bulk end | epoch (8), seq (8) |
//! | 3 | ack | epoch (8), next (8) |
//! | 4 | gap report | epoch (8), from (8), to (8) |
//! | 5 | resync request | epoch (8) |
//!
//! Exactly that long: a short message, trailing bytes or a bad record
//! refuses the whole message.
use super::{
    record::{self, BatchError, EncodeError, WireFlow},
    stream::{Item, Message},
};

const RECORDS: u8 = 1;
const BULK_END: u8 = 2;
const ACK: u8 = 3;
const NACK: u8 = 4;
const RESYNC: u8 = 5;

/// A message of the replication stream carrying flows.
pub type FlowMessage = Message<Vec<WireFlow>>;

/// Why bytes are not a stream message. Nothing is applied from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0} (byte 0; 1 to 5)")]
    UnknownType(u8),
    #[error("truncated {what} message: {got} bytes, it takes {need}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{extra} bytes after the {what} message")]
    Trailing { what: &'static str, extra: usize },
    #[error("records message: {0}")]
    Batch(#[from] BatchError),
}

/// The bytes of `message`.
pub fn encode(message: &FlowMessage) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match message {
        Message::Data { epoch, seq, item } => {
            let kind = match item {
                Item::Records(_) => RECORDS,
                Item::BulkEnd => BULK_END,
            };
            out.push(kind);
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            if let Item::Records(flows) = item {
                out.extend_from_slice(&record::encode_batch(flows)?);
            }
        }
        Message::Ack { epoch, next } => {
            out.push(ACK);
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&next.to_be_bytes());
        }
        Message::Nack { epoch, from, to } => {
            out.push(NACK);
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&from.to_be_bytes());
            out.extend_from_slice(&to.to_be_bytes());
        }
        Message::ResyncRequest { epoch } => {
            out.push(RESYNC);
            out.extend_from_slice(&epoch.to_be_bytes());
        }
    }
    Ok(out)
}

/// The message in `bytes`, exactly.
pub fn decode(bytes: &[u8]) -> Result<FlowMessage, MessageError> {
    let Some(&kind) = bytes.first() else {
        return Err(MessageError::Empty);
    };
    let (what, fields) = match kind {
        RECORDS => ("records", 2),
        BULK_END => ("bulk end", 2),
        ACK => ("ack", 2),
        NACK => ("gap report", 3),
        RESYNC => ("resync request", 1),
        other => return Err(MessageError::UnknownType(other)),
    };
    let header = 1 + 8 * fields;
    let need = if kind == RECORDS { header + 2 } else { header };
    if bytes.len() < need {
        return Err(MessageError::Truncated {
            what,
            need,
            got: bytes.len(),
        });
    }
    if kind != RECORDS && bytes.len() > need {
        return Err(MessageError::Trailing {
            what,
            extra: bytes.len() - need,
        });
    }
    let field = |i: usize| {
        let at = 1 + 8 * i;
        u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let epoch = field(0);
    Ok(match kind {
        RECORDS => Message::Data {
            epoch,
            seq: field(1),
            item: Item::Records(record::decode_batch(&bytes[header..])?),
        },
        BULK_END => Message::Data {
            epoch,
            seq: field(1),
            item: Item::BulkEnd,
        },
        ACK => Message::Ack {
            epoch,
            next: field(1),
        },
        NACK => Message::Nack {
            epoch,
            from: field(1),
            to: field(2),
        },
        _ => Message::ResyncRequest { epoch },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::record::{RECORD_LEN, RecordError, sample_v4_flow};

    fn flow() -> WireFlow {
        sample_v4_flow()
    }

    fn all() -> Vec<FlowMessage> {
        vec![
            Message::Data {
                epoch: 9,
                seq: 3,
                item: Item::Records(vec![flow(), flow()]),
            },
            Message::Data {
                epoch: 9,
                seq: 4,
                item: Item::Records(vec![]),
            },
            Message::Data {
                epoch: u64::MAX,
                seq: 5,
                item: Item::BulkEnd,
            },
            Message::Ack { epoch: 9, next: 6 },
            Message::Nack {
                epoch: 9,
                from: 1,
                to: 3,
            },
            Message::ResyncRequest { epoch: 9 },
        ]
    }

    #[test]
    fn every_message_decodes_to_what_was_encoded() {
        for message in all() {
            let bytes = encode(&message).unwrap();
            assert_eq!(decode(&bytes), Ok(message.clone()), "{message:?}");
        }
    }

    #[test]
    fn messages_have_their_documented_bytes() {
        let ack = encode(&Message::Ack {
            epoch: 0x0102,
            next: 7,
        })
        .unwrap();
        assert_eq!(
            ack,
            [3, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7].to_vec()
        );
        let records = encode(&all()[0]).unwrap();
        assert_eq!(records.len(), 17 + 2 + 2 * RECORD_LEN);
        assert_eq!(records[..1], [1]);
        assert_eq!(records[17..19], [0, 2]);
        assert_eq!(records[19..19 + RECORD_LEN], flow().encode().unwrap());
    }

    #[test]
    fn truncated_long_or_unknown_messages_are_refused() {
        assert_eq!(decode(&[]), Err(MessageError::Empty));
        assert_eq!(decode(&[6, 0]), Err(MessageError::UnknownType(6)));
        assert_eq!(decode(&[0]), Err(MessageError::UnknownType(0)));
        for message in all() {
            let bytes = encode(&message).unwrap();
            // Every prefix is refused, and never decodes to something else.
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "{message:?} cut at {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err(), "{message:?} with a trailing byte");
        }
        assert_eq!(
            decode(&[3, 0, 0]),
            Err(MessageError::Truncated {
                what: "ack",
                need: 17,
                got: 3
            })
        );
        let mut ack = encode(&Message::Ack { epoch: 1, next: 1 }).unwrap();
        ack.extend([0, 0]);
        assert_eq!(
            decode(&ack).unwrap_err().to_string(),
            "2 bytes after the ack message"
        );
    }

    #[test]
    fn a_bad_record_refuses_the_whole_message() {
        let mut bytes = encode(&all()[0]).unwrap();
        bytes[19 + RECORD_LEN + 2] = 99;
        assert_eq!(
            decode(&bytes),
            Err(MessageError::Batch(BatchError::Record {
                index: 1,
                source: RecordError::BadProtocol(99)
            }))
        );
        assert_eq!(
            decode(&bytes).unwrap_err().to_string(),
            "records message: record 1 of the batch: unknown protocol 99 (byte 2; 6 or 17)"
        );
    }
}
