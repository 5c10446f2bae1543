//! The replication stream as a pure state machine, in the manner of
//! conntrackd's FTFW: the active's [`Sender`] numbers every message, keeps
//! it until the standby's [`Receiver`] acknowledges it (cumulative acks),
//! and sends it again when the standby reports a gap or when it stays
//! unacknowledged too long. Time is an input (`now`), the messages are
//! outputs: the edges carry them over the cluster channel.
//!
//! Epochs: a stream starts (and restarts, on a resync) with a new epoch and
//! sequence number 0; every message names its epoch. The receiver follows
//! the newest epoch it hears, drops messages of older ones (a replay, or a
//! straggler from before a resync) and starts over (nothing pending,
//! nothing applied in this epoch) on a newer one. A sender must start from
//! an epoch above any it used before (the caller picks it, for example from
//! the wall clock at start), so that a restarted active is never taken for
//! a replay.
//!
//! Memory is bounded on both sides: the sender holds at most
//! [`SenderConfig::window`] unacknowledged messages. When the standby is
//! slow or away past that, the sender drops them all and *needs a resync*:
//! it sends nothing more until the caller starts a new epoch
//! ([`Sender::resync`]) and copies the tables in bulk, closed by
//! [`Sender::end_bulk`]. The receiver keeps at most
//! [`ReceiverConfig::max_pending`] messages that arrived ahead of a gap;
//! beyond that it drops them unacknowledged (the sender sends them again).
//!
//! Caught up: the sender once every message up to its bulk end is
//! acknowledged, the receiver once it has applied the bulk end in order.
//! Only a caught-up standby may take over (wired in the next slice).
use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

/// What a data message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<T> {
    /// Records to apply (a batch).
    Records(T),
    /// The end of a bulk copy: everything the sender held when it started
    /// the epoch came before it.
    BulkEnd,
}

/// A message of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<T> {
    /// Sender to receiver.
    Data { epoch: u64, seq: u64, item: Item<T> },
    /// Receiver to sender: every message of `epoch` before `next` is
    /// applied (cumulative).
    Ack { epoch: u64, next: u64 },
    /// Receiver to sender: messages `from..to` of `epoch` are missing (a
    /// later one arrived).
    Nack { epoch: u64, from: u64, to: u64 },
    /// Receiver to sender: it holds nothing of `epoch` (it started, or
    /// restarted, in the middle of it): only a resync can fill it.
    ResyncRequest { epoch: u64 },
}

/// A batch of records, which counts its entries (for the lag in entries).
pub trait Entries {
    fn entries(&self) -> usize;
}

impl<E> Entries for Vec<E> {
    fn entries(&self) -> usize {
        self.len()
    }
}

/// The sender's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Unacknowledged messages held at most; one more means the standby is
    /// too far behind: resync.
    pub window: usize,
    /// A message unacknowledged this long is sent again.
    pub resend_after: Duration,
}

/// The sender cannot send: its window overflowed (or the standby lost what
/// it no longer holds) and it waits for [`Sender::resync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the standby is too far behind the replication stream: a full resync is needed")]
pub struct NeedsResync;

/// What became of an acknowledgement or gap report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// Taken into account.
    Applied,
    /// Of another epoch (late, or a replay): ignored.
    OtherEpoch,
    /// About messages already acknowledged (it was overtaken): ignored.
    Late,
    /// Names messages never sent: ignored.
    Bogus,
}

/// How far the standby is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Messages sent and not yet acknowledged.
    pub messages: usize,
    /// The entries (flows) they carry.
    pub entries: usize,
    /// How long the oldest of them has waited.
    pub oldest: Option<Duration>,
}

/// Counters of a sender (for status and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub sent: u64,
    /// Sent again, after a gap report or a timeout.
    pub resent: u64,
    /// Times the window overflowed or the standby asked for a resync.
    pub resyncs_needed: u64,
    /// Acks and gap reports ignored ([`Feedback::OtherEpoch`],
    /// [`Feedback::Late`], [`Feedback::Bogus`]).
    pub ignored_feedback: u64,
}

#[derive(Clone, Debug)]
struct Unacked<T> {
    seq: u64,
    item: Item<T>,
    sent_at: Instant,
}

/// The active's side.
#[derive(Clone, Debug)]
pub struct Sender<T> {
    config: SenderConfig,
    epoch: u64,
    next_seq: u64,
    /// Every message before this one is acknowledged.
    acked: u64,
    unacked: VecDeque<Unacked<T>>,
    needs_resync: bool,
    /// The sequence number after this epoch's bulk end, once sent.
    bulk_end: Option<u64>,
    stats: SenderStats,
}

impl<T: Clone + Entries> Sender<T> {
    /// A sender that starts by needing a resync (the standby has nothing
    /// yet): the first [`Sender::resync`] begins epoch `first_epoch`.
    pub fn new(first_epoch: u64, config: SenderConfig) -> Self {
        Sender {
            config,
            epoch: first_epoch.wrapping_sub(1),
            next_seq: 0,
            acked: 0,
            unacked: VecDeque::new(),
            needs_resync: true,
            bulk_end: None,
            stats: SenderStats::default(),
        }
    }

    /// Starts a new epoch: nothing held, sequence numbers from 0. The
    /// caller then sends the bulk copy and [`Sender::end_bulk`]. Returns the
    /// epoch.
    pub fn resync(&mut self) -> u64 {
        self.epoch = self.epoch.wrapping_add(1);
        self.next_seq = 0;
        self.acked = 0;
        self.unacked.clear();
        self.needs_resync = false;
        self.bulk_end = None;
        self.epoch
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn needs_resync(&self) -> bool {
        self.needs_resync
    }

    /// Messages that may be sent before the window is full (a bulk copy
    /// waits for room rather than overflow it).
    pub fn room(&self) -> usize {
        if self.needs_resync {
            return 0;
        }
        self.config.window - self.unacked.len()
    }

    /// Every message up to the bulk end of this epoch is acknowledged.
    pub fn caught_up(&self) -> bool {
        !self.needs_resync && self.bulk_end.is_some_and(|end| self.acked >= end)
    }

    pub fn lag(&self, now: Instant) -> Lag {
        Lag {
            messages: self.unacked.len(),
            entries: self
                .unacked
                .iter()
                .map(|u| match &u.item {
                    Item::Records(records) => records.entries(),
                    Item::BulkEnd => 0,
                })
                .sum(),
            oldest: self
                .unacked
                .front()
                .map(|u| now.saturating_duration_since(u.sent_at)),
        }
    }

    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Numbers and holds a batch of records; returns the message to send.
    pub fn send(&mut self, records: T, now: Instant) -> Result<Message<T>, NeedsResync> {
        self.push(Item::Records(records), now)
    }

    /// Closes the bulk copy of this epoch.
    pub fn end_bulk(&mut self, now: Instant) -> Result<Message<T>, NeedsResync> {
        let message = self.push(Item::BulkEnd, now)?;
        self.bulk_end = Some(self.next_seq);
        Ok(message)
    }

    fn push(&mut self, item: Item<T>, now: Instant) -> Result<Message<T>, NeedsResync> {
        if self.needs_resync {
            return Err(NeedsResync);
        }
        if self.unacked.len() >= self.config.window {
            self.give_up();
            return Err(NeedsResync);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back(Unacked {
            seq,
            item: item.clone(),
            sent_at: now,
        });
        self.stats.sent += 1;
        Ok(Message::Data {
            epoch: self.epoch,
            seq,
            item,
        })
    }

    /// Records of new flows were lost before they reached the stream (the
    /// program's ring was full while the window was): only a bulk copy
    /// brings the standby those flows. Drops what is held, waits for a
    /// resync.
    pub fn on_records_lost(&mut self) {
        if !self.needs_resync {
            self.give_up();
        }
    }

    /// The standby is too far behind: drop what is held, wait for a resync.
    fn give_up(&mut self) {
        self.unacked.clear();
        self.needs_resync = true;
        self.stats.resyncs_needed += 1;
    }

    /// The receiver has applied every message of `epoch` before `next`.
    pub fn on_ack(&mut self, epoch: u64, next: u64) -> Feedback {
        if epoch != self.epoch || self.needs_resync {
            self.stats.ignored_feedback += 1;
            return Feedback::OtherEpoch;
        }
        if next > self.next_seq {
            self.stats.ignored_feedback += 1;
            return Feedback::Bogus;
        }
        self.acked = self.acked.max(next);
        while self.unacked.front().is_some_and(|u| u.seq < self.acked) {
            self.unacked.pop_front();
        }
        Feedback::Applied
    }

    /// The receiver misses messages `from..to` of `epoch`: those still
    /// held are sent again (returned). Those acknowledged since are not: the
    /// report was overtaken by the ack (a receiver that lost what it had
    /// applied asks for a resync instead: [`Sender::on_resync_request`]).
    pub fn on_nack(
        &mut self,
        epoch: u64,
        from: u64,
        to: u64,
        now: Instant,
    ) -> (Feedback, Vec<Message<T>>) {
        if epoch != self.epoch || self.needs_resync {
            self.stats.ignored_feedback += 1;
            return (Feedback::OtherEpoch, Vec::new());
        }
        if from >= to || to > self.next_seq {
            self.stats.ignored_feedback += 1;
            return (Feedback::Bogus, Vec::new());
        }
        if to <= self.acked {
            self.stats.ignored_feedback += 1;
            return (Feedback::Late, Vec::new());
        }
        let resent = self.resend(now, |u| (from..to).contains(&u.seq));
        (Feedback::Applied, resent)
    }

    /// A new connection to the receiver: what it may have missed while none
    /// was up (records the active could not send, a standby that restarted
    /// and holds nothing) comes only with a bulk copy, so the stream starts
    /// over with a resync.
    pub fn on_new_connection(&mut self) {
        self.give_up();
    }

    /// The receiver holds nothing of `epoch`: drop what is held and wait for
    /// a resync (a bulk copy).
    pub fn on_resync_request(&mut self, epoch: u64) -> Feedback {
        if epoch != self.epoch || self.needs_resync {
            self.stats.ignored_feedback += 1;
            return Feedback::OtherEpoch;
        }
        self.give_up();
        Feedback::Applied
    }

    /// Messages unacknowledged for [`SenderConfig::resend_after`], sent
    /// again (their timer restarts).
    pub fn poll(&mut self, now: Instant) -> Vec<Message<T>> {
        let after = self.config.resend_after;
        self.resend(now, |u| now.saturating_duration_since(u.sent_at) >= after)
    }

    fn resend(&mut self, now: Instant, which: impl Fn(&Unacked<T>) -> bool) -> Vec<Message<T>> {
        let epoch = self.epoch;
        let mut out = Vec::new();
        for u in self.unacked.iter_mut().filter(|u| which(u)) {
            u.sent_at = now;
            out.push(Message::Data {
                epoch,
                seq: u.seq,
                item: u.item.clone(),
            });
        }
        self.stats.resent += out.len() as u64;
        out
    }
}

/// The receiver's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Messages held that arrived ahead of a gap.
    pub max_pending: usize,
}

/// What the receiver made of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next one: applied (with any held ones it released).
    InOrder,
    /// Ahead of a gap: held until the gap is filled.
    Held,
    /// Already applied or already held: nothing to do.
    Duplicate,
    /// Of an older epoch (a replay, or from before a resync): ignored.
    Stale,
    /// Ahead of a gap with no room to hold it: dropped unacknowledged.
    Dropped,
}

/// The outcome of [`Receiver::on_data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<T> {
    pub verdict: Verdict,
    /// A newer epoch began with this message: the sender resyncs, a bulk
    /// copy follows.
    pub new_epoch: bool,
    /// Record batches to apply now, in order.
    pub apply: Vec<T>,
    /// The bulk end was applied: the receiver is caught up.
    pub bulk_ended: bool,
    /// To send back: an ack, and a gap report when a gap opened.
    pub replies: Vec<Message<T>>,
}

/// Counters of a receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub applied: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub dropped: u64,
    pub gaps_reported: u64,
}

/// The standby's side.
#[derive(Clone, Debug)]
pub struct Receiver<T> {
    config: ReceiverConfig,
    epoch: Option<u64>,
    /// The next sequence number to apply.
    next: u64,
    held: BTreeMap<u64, Item<T>>,
    /// Gaps below this are already reported.
    reported_until: u64,
    bulk_done: bool,
    stats: ReceiverStats,
}

impl<T> Receiver<T> {
    pub fn new(config: ReceiverConfig) -> Self {
        Receiver {
            config,
            epoch: None,
            next: 0,
            held: BTreeMap::new(),
            reported_until: 0,
            bulk_done: false,
            stats: ReceiverStats::default(),
        }
    }

    /// The bulk copy of the current epoch is applied, and everything before
    /// it.
    pub fn caught_up(&self) -> bool {
        self.bulk_done
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The epoch it follows (None before the first data message).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The cumulative ack of what is applied (none before any epoch).
    pub fn ack(&self) -> Option<Message<T>> {
        self.epoch.map(|epoch| Message::Ack {
            epoch,
            next: self.next,
        })
    }

    pub fn on_data(&mut self, epoch: u64, seq: u64, item: Item<T>) -> Received<T> {
        let mut out = Received {
            verdict: Verdict::InOrder,
            new_epoch: false,
            apply: Vec::new(),
            bulk_ended: false,
            replies: Vec::new(),
        };
        match self.epoch {
            Some(current) if epoch < current => {
                self.stats.stale += 1;
                out.verdict = Verdict::Stale;
                return out;
            }
            Some(current) if epoch == current => {}
            None if seq != 0 => {
                // Started (or restarted) in the middle of an epoch: what
                // came before may be acknowledged and gone. At most once
                // per receiver: a message of the epoch's start that was
                // merely overtaken costs one needless resync.
                self.start_epoch(epoch);
                out.new_epoch = true;
                out.replies.push(Message::ResyncRequest { epoch });
            }
            _ => {
                self.start_epoch(epoch);
                out.new_epoch = true;
            }
        }
        if seq < self.next || self.held.contains_key(&seq) {
            self.stats.duplicates += 1;
            out.verdict = Verdict::Duplicate;
        } else if seq == self.next {
            self.release(item, &mut out);
        } else if self.held.len() >= self.config.max_pending {
            self.stats.dropped += 1;
            out.verdict = Verdict::Dropped;
        } else {
            self.held.insert(seq, item);
            out.verdict = Verdict::Held;
            let from = self.next.max(self.reported_until);
            if from < seq {
                self.stats.gaps_reported += 1;
                out.replies.push(Message::Nack {
                    epoch,
                    from,
                    to: seq,
                });
            }
            self.reported_until = self.reported_until.max(seq + 1);
        }
        out.replies.extend(self.ack());
        out
    }

    fn start_epoch(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
        self.next = 0;
        self.held.clear();
        self.reported_until = 0;
        self.bulk_done = false;
    }

    /// Applies `item` (the next one) and every held one that follows.
    fn release(&mut self, item: Item<T>, out: &mut Received<T>) {
        let mut item = item;
        loop {
            self.next += 1;
            self.stats.applied += 1;
            match item {
                Item::Records(records) => out.apply.push(records),
                Item::BulkEnd => {
                    self.bulk_done = true;
                    out.bulk_ended = true;
                }
            }
            match self.held.remove(&self.next) {
                Some(held) => item = held,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
