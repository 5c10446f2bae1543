use super::*;

/// Tests send numbers: one entry each.
impl Entries for u32 {
    fn entries(&self) -> usize {
        1
    }
}

const CONFIG: SenderConfig = SenderConfig {
    window: 8,
    resend_after: Duration::from_millis(100),
};
const RECEIVER: ReceiverConfig = ReceiverConfig { max_pending: 4 };

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A sender past its first resync and bulk end (acknowledged), and a
/// receiver that has applied them.
fn streaming(t0: Instant) -> (Sender<u32>, Receiver<u32>) {
    let mut tx = Sender::new(7, CONFIG);
    let mut rx = Receiver::new(RECEIVER);
    assert_eq!(rx.epoch(), None);
    assert_eq!(tx.resync(), 7);
    let end = tx.end_bulk(t0).unwrap();
    let got = deliver(&mut rx, end);
    assert!(got.bulk_ended && rx.caught_up());
    assert_eq!(rx.epoch(), Some(7));
    feed_back(&mut tx, &got.replies, t0);
    assert!(tx.caught_up());
    (tx, rx)
}

fn deliver(rx: &mut Receiver<u32>, message: Message<u32>) -> Received<u32> {
    let Message::Data { epoch, seq, item } = message else {
        panic!("not data: {message:?}");
    };
    rx.on_data(epoch, seq, item)
}

/// Hands the receiver's replies to the sender; returns what it resends.
fn feed_back(tx: &mut Sender<u32>, replies: &[Message<u32>], now: Instant) -> Vec<Message<u32>> {
    let mut resent = Vec::new();
    for reply in replies {
        match *reply {
            Message::Ack { epoch, next } => {
                tx.on_ack(epoch, next);
            }
            Message::Nack { epoch, from, to } => resent.extend(tx.on_nack(epoch, from, to, now).1),
            Message::ResyncRequest { epoch } => {
                tx.on_resync_request(epoch);
            }
            Message::Data { .. } => panic!("data from the receiver"),
        }
    }
    resent
}

fn seq_of(message: &Message<u32>) -> u64 {
    match message {
        Message::Data { seq, .. } => *seq,
        other => panic!("not data: {other:?}"),
    }
}

#[test]
fn in_order_messages_are_applied_and_acknowledged_cumulatively() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let mut applied = Vec::new();
    for n in 10..15 {
        let got = deliver(&mut rx, tx.send(n, t0).unwrap());
        assert_eq!(got.verdict, Verdict::InOrder);
        applied.extend(got.apply);
        assert_eq!(
            got.replies.last(),
            Some(&Message::Ack {
                epoch: 7,
                next: 1 + (n - 9) as u64
            })
        );
    }
    assert_eq!(applied, [10, 11, 12, 13, 14]);
    assert_eq!(tx.lag(t0).messages, 5);
    assert_eq!(tx.lag(t0).entries, 5);
    assert_eq!(tx.on_ack(7, 6), Feedback::Applied);
    assert_eq!(
        tx.lag(t0 + ms(1)),
        Lag {
            messages: 0,
            entries: 0,
            oldest: None
        }
    );
    assert!(tx.poll(t0 + ms(1000)).is_empty(), "nothing left to resend");
}

#[test]
fn a_lost_message_is_reported_as_a_gap_and_sent_again() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let first = tx.send(1, t0).unwrap();
    let _lost = tx.send(2, t0).unwrap();
    let third = tx.send(3, t0).unwrap();
    assert_eq!(deliver(&mut rx, first).apply, [1]);
    let got = deliver(&mut rx, third);
    assert_eq!(got.verdict, Verdict::Held);
    assert!(got.apply.is_empty());
    assert_eq!(
        got.replies[0],
        Message::Nack {
            epoch: 7,
            from: 2,
            to: 3
        }
    );
    let resent = feed_back(&mut tx, &got.replies, t0);
    assert_eq!(resent.iter().map(seq_of).collect::<Vec<_>>(), [2]);
    assert_eq!(tx.stats().resent, 1);
    let got = deliver(&mut rx, resent[0].clone());
    assert_eq!(got.apply, [2, 3], "the gap filled releases what was held");
    feed_back(&mut tx, &got.replies, t0);
    assert_eq!(tx.lag(t0).messages, 0);
}

#[test]
fn a_gap_is_reported_once_and_later_arrivals_do_not_repeat_it() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let messages: Vec<_> = (1..=4).map(|n| tx.send(n, t0).unwrap()).collect();
    let got = deliver(&mut rx, messages[2].clone());
    assert_eq!(
        got.replies[0],
        Message::Nack {
            epoch: 7,
            from: 1,
            to: 3
        }
    );
    let got = deliver(&mut rx, messages[3].clone());
    assert!(
        !got.replies
            .iter()
            .any(|m| matches!(m, Message::Nack { .. })),
        "{:?}",
        got.replies
    );
    assert_eq!(rx.stats().gaps_reported, 1);
}

#[test]
fn a_lost_last_message_is_sent_again_after_the_timeout_only() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let _lost = tx.send(1, t0).unwrap();
    assert!(tx.poll(t0 + ms(99)).is_empty());
    let resent = tx.poll(t0 + ms(100));
    assert_eq!(resent.iter().map(seq_of).collect::<Vec<_>>(), [1]);
    assert!(tx.poll(t0 + ms(150)).is_empty(), "its timer restarted");
    assert_eq!(tx.lag(t0 + ms(150)).oldest, Some(ms(50)));
    let mut batches = Sender::new(1, CONFIG);
    batches.resync();
    batches.send(vec![1, 2, 3], t0).unwrap();
    batches.end_bulk(t0).unwrap();
    batches.send(vec![4], t0 + ms(5)).unwrap();
    assert_eq!(
        batches.lag(t0 + ms(20)),
        Lag {
            messages: 3,
            entries: 4,
            oldest: Some(ms(20))
        }
    );
    let got = deliver(&mut rx, resent[0].clone());
    assert_eq!(got.apply, [1]);
}

#[test]
fn reordered_messages_are_applied_in_order() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let messages: Vec<_> = (1..=4).map(|n| tx.send(n, t0).unwrap()).collect();
    let mut applied = Vec::new();
    for i in [3, 1, 2, 0] {
        applied.extend(deliver(&mut rx, messages[i].clone()).apply);
    }
    assert_eq!(applied, [1, 2, 3, 4]);
}

#[test]
fn duplicates_and_replays_change_nothing() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let one = tx.send(1, t0).unwrap();
    let three = tx.send(3, t0 + ms(1));
    let _ = three;
    assert_eq!(deliver(&mut rx, one.clone()).apply, [1]);
    let again = deliver(&mut rx, one.clone());
    assert_eq!(again.verdict, Verdict::Duplicate);
    assert!(again.apply.is_empty());
    assert_eq!(again.replies, [Message::Ack { epoch: 7, next: 2 }]);

    // After a resync, the old epoch's messages are stale.
    tx.resync();
    let bulk = tx.send(100, t0).unwrap();
    let got = deliver(&mut rx, bulk);
    assert!(got.new_epoch && !rx.caught_up());
    assert_eq!(got.apply, [100]);
    assert_eq!(rx.epoch(), Some(8));
    let replay = deliver(&mut rx, one);
    assert_eq!(replay.verdict, Verdict::Stale);
    assert!(replay.apply.is_empty() && replay.replies.is_empty());
    assert_eq!(rx.stats().stale, 1);
    assert_eq!(rx.stats().duplicates, 1);
    // The receiver still follows the newer epoch.
    assert_eq!(rx.epoch(), Some(8));
}

#[test]
fn feedback_of_another_epoch_or_beyond_what_was_sent_is_ignored() {
    let t0 = Instant::now();
    let (mut tx, _rx) = streaming(t0);
    tx.send(1, t0).unwrap();
    assert_eq!(tx.on_ack(6, 2), Feedback::OtherEpoch);
    assert_eq!(tx.on_ack(7, 3), Feedback::Bogus);
    assert_eq!(tx.on_nack(7, 1, 5, t0).0, Feedback::Bogus);
    assert_eq!(tx.on_nack(7, 2, 1, t0).0, Feedback::Bogus);
    assert_eq!(tx.lag(t0).messages, 1);
    assert_eq!(tx.stats().ignored_feedback, 4);
    assert!(!tx.needs_resync());
}

#[test]
fn a_standby_too_far_behind_overflows_the_window_into_a_resync() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    for n in 0..CONFIG.window as u32 {
        tx.send(n, t0).unwrap();
    }
    assert_eq!(tx.room(), 0);
    assert_eq!(tx.send(99, t0), Err(NeedsResync));
    assert!(tx.needs_resync() && !tx.caught_up());
    assert_eq!(tx.lag(t0).messages, 0, "memory given back");
    assert_eq!(tx.send(100, t0), Err(NeedsResync));
    assert!(tx.poll(t0 + ms(1000)).is_empty());
    assert_eq!(tx.stats().resyncs_needed, 1);

    // A new epoch: bulk, then stream.
    assert_eq!(tx.resync(), 8);
    let bulk: Vec<_> = [500, 501].map(|n| tx.send(n, t0).unwrap()).to_vec();
    let end = tx.end_bulk(t0).unwrap();
    let live = tx.send(600, t0).unwrap();
    let mut applied = Vec::new();
    let mut replies = Vec::new();
    for message in bulk.into_iter().chain([end, live]) {
        let got = deliver(&mut rx, message);
        applied.extend(got.apply);
        replies.extend(got.replies);
    }
    assert_eq!(applied, [500, 501, 600]);
    assert!(rx.caught_up());
    assert!(!tx.caught_up());
    feed_back(&mut tx, &replies, t0);
    assert!(tx.caught_up());
}

#[test]
fn caught_up_only_once_the_bulk_end_is_acknowledged() {
    let t0 = Instant::now();
    let mut tx = Sender::new(1, CONFIG);
    let mut rx = Receiver::new(RECEIVER);
    assert!(tx.needs_resync(), "a new sender starts with a bulk copy");
    assert_eq!(tx.send(1, t0), Err(NeedsResync));
    tx.resync();
    let bulk = tx.send(1, t0).unwrap();
    let end = tx.end_bulk(t0).unwrap();
    let got = deliver(&mut rx, bulk);
    feed_back(&mut tx, &got.replies, t0);
    assert!(!tx.caught_up() && !rx.caught_up());
    let got = deliver(&mut rx, end);
    assert!(got.bulk_ended && rx.caught_up());
    assert!(!tx.caught_up(), "not before the ack");
    feed_back(&mut tx, &got.replies, t0);
    assert!(tx.caught_up());
}

#[test]
fn a_restarted_standby_missing_acknowledged_messages_needs_a_resync() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let got = deliver(&mut rx, tx.send(1, t0).unwrap());
    feed_back(&mut tx, &got.replies, t0);
    // The standby restarts: a fresh receiver hears the middle of the epoch.
    let mut fresh = Receiver::new(RECEIVER);
    let got = deliver(&mut fresh, tx.send(2, t0).unwrap());
    assert_eq!(got.verdict, Verdict::Held);
    assert!(got.apply.is_empty() && !fresh.caught_up());
    assert_eq!(got.replies[0], Message::ResyncRequest { epoch: 7 });
    feed_back(&mut tx, &got.replies, t0);
    assert!(tx.needs_resync(), "what it lost is no longer held");
    assert_eq!(tx.stats().resyncs_needed, 1);
    // Only once: the next message of the epoch is a plain gap.
    tx.resync();
    let mut fresh = Receiver::new(RECEIVER);
    let first = tx.send(1, t0).unwrap();
    let second = tx.send(2, t0).unwrap();
    let got = deliver(&mut fresh, second);
    assert!(got.replies.contains(&Message::ResyncRequest { epoch: 8 }));
    let got = deliver(&mut fresh, first);
    assert!(
        !got.replies
            .iter()
            .any(|m| matches!(m, Message::ResyncRequest { .. })),
        "{:?}",
        got.replies
    );
    assert_eq!(got.apply, [1, 2]);
}

#[test]
fn a_receiver_holds_a_bounded_number_of_messages_ahead_of_a_gap() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let messages: Vec<_> = (1..=6).map(|n| tx.send(n, t0).unwrap()).collect();
    for m in &messages[1..5] {
        assert_eq!(deliver(&mut rx, m.clone()).verdict, Verdict::Held);
    }
    let got = deliver(&mut rx, messages[5].clone());
    assert_eq!(got.verdict, Verdict::Dropped);
    assert_eq!(got.replies, [Message::Ack { epoch: 7, next: 1 }]);
    let got = deliver(&mut rx, messages[0].clone());
    assert_eq!(got.apply, [1, 2, 3, 4, 5]);
    // The dropped one comes again with the timeout.
    feed_back(&mut tx, &got.replies, t0);
    let resent = tx.poll(t0 + CONFIG.resend_after);
    assert_eq!(resent.iter().map(seq_of).collect::<Vec<_>>(), [6]);
    assert_eq!(deliver(&mut rx, resent[0].clone()).apply, [6]);
}

/// A lossy link that drops, duplicates and reorders (deterministically):
/// the receiver applies exactly what was sent, in order, once.
#[test]
fn over_a_lossy_reordering_link_everything_arrives_once_in_order() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let config = SenderConfig {
        window: 64,
        resend_after: ms(50),
    };
    let mut tx = Sender::new(1, config);
    let mut rx = Receiver::new(ReceiverConfig { max_pending: 32 });
    let t0 = Instant::now();
    let mut now = t0;
    let mut to_rx: Vec<Message<u32>> = Vec::new();
    let mut to_tx: Vec<Message<u32>> = Vec::new();
    let mut applied = Vec::new();
    tx.resync();
    // The epoch's first message gets through (a receiver that hears the
    // middle of an epoch first asks for a resync: tested above).
    let got = deliver(&mut rx, tx.end_bulk(now).unwrap());
    to_tx.extend(got.replies);
    let mut next = 0u32;
    for _step in 0..20_000 {
        now += ms(1);
        if next < 2000 && tx.room() > 0 && random(2) == 0 {
            to_rx.push(tx.send(next, now).unwrap());
            next += 1;
        }
        to_rx.extend(tx.poll(now));
        // The link: each message in flight may be delivered, lost,
        // duplicated, or wait (reordered behind later ones).
        let mut keep = Vec::new();
        for message in to_rx.drain(..) {
            match random(10) {
                0 => {}
                1 => {
                    let got = deliver(&mut rx, message.clone());
                    applied.extend(got.apply);
                    to_tx.extend(got.replies);
                    keep.push(message);
                }
                2..=4 => keep.push(message),
                _ => {
                    let got = deliver(&mut rx, message);
                    applied.extend(got.apply);
                    to_tx.extend(got.replies);
                }
            }
        }
        to_rx = keep;
        let feedback: Vec<_> = to_tx.drain(..).filter(|_| random(10) != 0).collect();
        to_rx.extend(feed_back(&mut tx, &feedback, now));
        assert!(!tx.needs_resync(), "the window never overflows here");
        if next == 2000 && tx.lag(now).messages == 0 {
            break;
        }
    }
    assert_eq!(applied, (0..2000).collect::<Vec<_>>());
    assert!(tx.caught_up() && rx.caught_up());
    assert!(tx.stats().resent > 0 && rx.stats().duplicates > 0);
}

#[test]
fn an_older_ack_arriving_late_changes_nothing() {
    let t0 = Instant::now();
    let (mut tx, _rx) = streaming(t0);
    for n in 1..=3 {
        tx.send(n, t0).unwrap();
    }
    assert_eq!(tx.on_ack(7, 4), Feedback::Applied);
    assert!(tx.caught_up());
    assert_eq!(tx.on_ack(7, 2), Feedback::Applied);
    assert!(tx.caught_up(), "still caught up");
    // A gap report overtaken by the ack is no reason to resync.
    assert_eq!(tx.on_nack(7, 2, 3, t0), (Feedback::Late, vec![]));
    assert!(!tx.needs_resync());
    assert_eq!(tx.lag(t0).messages, 0);
    let more = tx.send(4, t0).unwrap();
    assert_eq!(seq_of(&more), 4);
    assert_eq!(tx.on_nack(7, 4, 5, t0).1, [more]);
    assert!(!tx.needs_resync());
}

/// Flows the active could not send while no connection was up, or a
/// standby that restarted and holds nothing while the sender has nothing
/// left to send: a new connection starts over with a bulk copy, so the
/// standby is caught up again only with everything.
#[test]
fn a_new_connection_starts_over_with_a_bulk_copy() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let sent = tx.send(1, t0).unwrap();
    let got = deliver(&mut rx, sent);
    feed_back(&mut tx, &got.replies, t0);
    assert!(tx.caught_up() && !tx.needs_resync());
    // The connection breaks and comes back: nothing is waiting for an
    // acknowledgement, yet the standby may lack what happened meanwhile.
    tx.on_new_connection();
    assert!(tx.needs_resync() && !tx.caught_up());
    let epoch = tx.resync();
    let bulk = tx.send(2, t0).unwrap();
    let got = deliver(&mut rx, bulk);
    assert!(got.new_epoch && got.apply == [2]);
    let got = deliver(&mut rx, tx.end_bulk(t0).unwrap());
    assert!(got.bulk_ended && rx.caught_up());
    feed_back(&mut tx, &got.replies, t0);
    assert!(tx.caught_up() && tx.epoch() == epoch);
}

#[test]
fn records_lost_in_the_ring_make_the_sender_start_over_with_a_bulk_copy() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = streaming(t0);
    let sent = tx.send(1, t0).unwrap();
    deliver(&mut rx, sent);
    assert!(!tx.needs_resync());
    // The program's ring was full: flows the standby will never get from
    // the stream.
    tx.on_records_lost();
    assert!(tx.needs_resync() && !tx.caught_up());
    assert!(tx.send(2, t0).is_err(), "nothing is sent before the resync");
    assert_eq!(tx.stats().resyncs_needed, 1);
    // Counted once while it waits for the resync.
    tx.on_records_lost();
    assert_eq!(tx.stats().resyncs_needed, 1);
    // The resync begins a new epoch: the receiver takes the bulk copy.
    let epoch = tx.resync();
    assert_ne!(epoch, 7);
    let end = tx.end_bulk(t0).unwrap();
    let got = deliver(&mut rx, end);
    assert!(got.bulk_ended && rx.caught_up());
    assert_eq!(rx.epoch(), Some(epoch));
}
