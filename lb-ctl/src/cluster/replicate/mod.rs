//! Flow replication in the daemon (see docs/ARCHITECTURE.md, "Flow
//! replication"): one task that owns the stream's state machines
//! (`replication::stream`) and carries out what they decide, over the
//! connections of [`wire`].
//!
//! - Active (sending): reads the flow record ring (through `AsyncFd`),
//!   names each record by identity (`translate::from_record`, no tables
//!   needed), batches and sends them; when the stream needs a resync (a new
//!   peer, a standby too far behind or restarted) it starts a new epoch and
//!   a bulk copy: the flow table dumped through a descriptor of its own
//!   (never in the daemon's loop), named through a snapshot of the tables
//!   the loop gives (`Event::FlowTables`), then the bulk end. Every
//!   [`REFRESH_EVERY`] the live flows are sent again (rate-bounded), so the
//!   standby's LRU never drops a flow the active still serves. Connects to
//!   the peer over the first interconnect that answers, again after a
//!   break.
//! - Standby (receiving): listens on every interconnect; each message goes
//!   to the receiver; the batches it releases are applied by the daemon's
//!   loop (`Event::ReplicatedFlows`: translated to this node's ids, written
//!   into its flow and reply tables) before they are acknowledged.
//!
//! The stream runs on one connection: the active takes feedback only on
//! the connection it sends on (`is_stream`), the standby an epoch's data
//! only on the connection the epoch began on (`takes_data`); what comes
//! on another (a replay, a message slipped in ahead of the stream) changes
//! nothing.
//!
//! The cluster's role requests pass through this task on their way to the
//! daemon's loop: a request is taken only once every message read before it
//! is applied (the select is biased to the peer's messages, and each batch
//! is applied, answered by the loop, before the next event), and it is
//! forwarded on the loop's one queue. So on takeover everything received is
//! in the tables before the role map changes, and the cluster adds the
//! floating IPs only once the loop acked the role.
pub mod wire;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use tokio::sync::{mpsc, watch};

use self::wire::{Counters, FromPeer, Peer};
use super::{node::RoleRequest, sync::Tls};
use crate::{
    daemon::{Event, Handle},
    dataplane::{AsyncFlowRecords, FlowsReader},
    replication::{
        message::FlowMessage,
        record::WireFlow,
        status::{ReplicationStatus, StreamRole},
        stream::{Message, Receiver, ReceiverConfig, Sender, SenderConfig},
        translate,
    },
    role::Role,
};

/// Flows in one message.
pub const BATCH: usize = 1000;
/// The active sends its live flows again this often (the standby's LRU
/// keeps them).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// A refresh sends at most one batch per this pause (100,000 flows a
/// second): it must not crowd out new flows.
const REFRESH_PAUSE: Duration = Duration::from_millis(10);
/// The stream's bounds: unacknowledged messages held (past them, a
/// resync) and when one is sent again.
const SENDER: SenderConfig = SenderConfig {
    window: 2048,
    resend_after: Duration::from_millis(500),
};
const RECEIVER: ReceiverConfig = ReceiverConfig { max_pending: 2048 };
/// How often the task looks at its timers (resends, connection, refresh).
const TICK: Duration = Duration::from_millis(50);
/// Between two connection attempts.
const RECONNECT: Duration = Duration::from_millis(200);
/// One connection attempt per interconnect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the replication listens and connects.
pub struct Setup {
    pub tls: Tls,
    /// This node's replication address on each interconnect.
    pub listen: Vec<SocketAddr>,
    /// The peer's, in priority order.
    pub peers: Vec<SocketAddr>,
}

/// What the replication publishes: its status, and whether a standby is
/// caught up (for membership's eligibility).
pub struct Published {
    pub status: watch::Receiver<ReplicationStatus>,
    pub caught_up: watch::Receiver<bool>,
}

/// Binds the listeners and starts the task, which takes the cluster's
/// `roles` requests and forwards them to the daemon's loop through
/// `daemon`.
pub fn start(
    setup: Setup,
    ring: AsyncFlowRecords,
    flows: FlowsReader,
    daemon: Handle,
    roles: mpsc::Receiver<RoleRequest>,
) -> Result<Published> {
    let counters = Arc::new(Counters::default());
    let ids = Arc::new(AtomicU64::new(1));
    let (to_core, from_peers) = mpsc::channel(1024);
    for here in &setup.listen {
        let listener = std::net::TcpListener::bind(here)
            .with_context(|| format!("listening for the flow replication on {here}"))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(wire::listen(
            listener,
            setup.tls.clone(),
            to_core.clone(),
            counters.clone(),
            ids.clone(),
        ));
    }
    let (status_tx, status) = watch::channel(ReplicationStatus::default());
    let (caught_up_tx, caught_up) = watch::channel(false);
    let core = Core {
        daemon,
        flows: Arc::new(flows),
        tls: setup.tls,
        peers: setup.peers,
        counters,
        ids,
        to_core,
        // The node starts standby (`serve::start`): it receives until the
        // cluster makes it active.
        mode: Mode::Receiving(Receiver::new(RECEIVER)),
        stream_conn: None,
        incoming: HashMap::new(),
        totals: Totals::default(),
        last_error: None,
        status: status_tx,
        caught_up: caught_up_tx,
    };
    tokio::spawn(core.run(ring, from_peers, roles));
    Ok(Published { status, caught_up })
}

/// A piece of a bulk copy or refresh, from the task that dumps the table.
enum Chunk {
    Records(Vec<WireFlow>),
    End,
    Failed(String),
}

enum Mode {
    Sending(Box<Sending>),
    Receiving(Receiver<Vec<WireFlow>>),
}

struct Sending {
    sender: Sender<Vec<WireFlow>>,
    out: Option<Peer>,
    next_connect: Instant,
    /// The bulk copy (ends with its bulk end) or refresh under way.
    bulk: Option<(mpsc::Receiver<Chunk>, bool)>,
    next_refresh: Instant,
    /// The program's `flow_records_lost` when last read (None: not yet).
    lost_seen: Option<u64>,
}

/// Records lost in the ring since `seen` (the counter read `now`): a
/// first reading is the baseline, not a loss (the counter counts since
/// the program was loaded, across roles).
fn records_lost_since(seen: Option<u64>, now: u64) -> bool {
    seen.is_some_and(|seen| now > seen)
}

/// Counts kept across roles (the state machines keep their own).
#[derive(Default)]
struct Totals {
    flows_sent: u64,
    flows_applied: u64,
    refreshed: u64,
    gaps_heard: u64,
    resyncs: u64,
    epochs_begun: u64,
    unknown_service: u64,
    unknown_backend: u64,
    records_bad: u64,
    /// Receiving: data of the current epoch on another connection.
    foreign: u64,
}

struct Core {
    daemon: Handle,
    flows: Arc<FlowsReader>,
    tls: Tls,
    peers: Vec<SocketAddr>,
    counters: Arc<Counters>,
    ids: Arc<AtomicU64>,
    to_core: mpsc::Sender<FromPeer>,
    mode: Mode,
    /// Receiving: the connection the receiver's epoch began on. The
    /// active sends an epoch on one connection (every new connection
    /// begins a new epoch): data of that epoch on another one is no part
    /// of the stream and is not taken.
    stream_conn: Option<u64>,
    /// The peer's connections to this node (the standby's side).
    incoming: HashMap<u64, Peer>,
    totals: Totals,
    last_error: Option<String>,
    status: watch::Sender<ReplicationStatus>,
    caught_up: watch::Sender<bool>,
}

/// What the daemon's loop made of a batch of replicated flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub written: u64,
    pub unknown_service: u64,
    pub unknown_backend: u64,
}

impl Core {
    async fn run(
        mut self,
        mut ring: AsyncFlowRecords,
        mut from_peers: mpsc::Receiver<FromPeer>,
        mut roles: mpsc::Receiver<RoleRequest>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ring_wanted = self.ring_wanted();
            let bulk_ready = self.bulk_ready();
            tokio::select! {
                biased;
                Some(from) = from_peers.recv() => self.on_peer(from).await,
                request = roles.recv() => {
                    let Some((role, ack)) = request else { return };
                    self.on_role(role, &mut ring);
                    if self.daemon.tell(Event::Role { role, ack }).await.is_err() {
                        return;
                    }
                }
                chunk = next_chunk(&mut self.mode), if bulk_ready => self.on_chunk(chunk),
                batch = ring.next_batch(BATCH), if ring_wanted => match batch {
                    Ok((records, bad)) => self.on_records(records, bad.len()),
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "replication: the flow record ring");
                        tokio::time::sleep(TICK).await;
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
            self.publish();
        }
    }

    /// The ring is read while active (records are sent when the stream can
    /// take them, dropped while it waits for a resync or a peer: the bulk
    /// copy that follows has them) and emptied otherwise.
    fn ring_wanted(&self) -> bool {
        match &self.mode {
            Mode::Sending(s) if s.out.is_some() && !s.sender.needs_resync() => s.sender.room() > 0,
            _ => true,
        }
    }

    fn bulk_ready(&self) -> bool {
        matches!(&self.mode, Mode::Sending(s)
            if s.bulk.is_some() && s.out.is_some() && s.sender.room() > 0)
    }

    /// A role request, before it goes to the daemon's loop: the stream's
    /// side follows it. A node stepping down sends what its ring still
    /// holds first.
    fn on_role(&mut self, role: Role, ring: &mut AsyncFlowRecords) {
        match (role, &self.mode) {
            (Role::Active, Mode::Sending(_)) => {}
            (Role::Active, _) => {
                // An epoch above any this node used: the wall clock in µs.
                let epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64);
                self.mode = Mode::Sending(Box::new(Sending {
                    sender: Sender::new(epoch, SENDER),
                    out: None,
                    next_connect: Instant::now(),
                    bulk: None,
                    next_refresh: Instant::now() + REFRESH_EVERY,
                    lost_seen: None,
                }));
                self.set_caught_up(false);
            }
            (Role::Standby, Mode::Receiving(_)) => {}
            (Role::Standby, _) => {
                if matches!(self.mode, Mode::Sending(_)) {
                    let (records, bad) = ring.try_drain(usize::MAX);
                    self.on_records(records, bad.len());
                }
                // A new receiver: caught up again only with the active's
                // bulk copy. Dropping the sender lets its connection write
                // what it queued, then close.
                self.mode = Mode::Receiving(Receiver::new(RECEIVER));
                self.stream_conn = None;
                self.set_caught_up(false);
            }
        }
    }

    fn set_caught_up(&self, value: bool) {
        self.caught_up.send_if_modified(|held| {
            let changed = *held != value;
            *held = value;
            changed
        });
    }

    async fn on_peer(&mut self, from: FromPeer) {
        match from {
            FromPeer::Opened(peer) => {
                tracing::info!(peer = %peer.addr, "replication: the peer connected");
                self.incoming.insert(peer.id, peer);
            }
            FromPeer::Connected(peer) => match &mut self.mode {
                Mode::Sending(s) => {
                    tracing::info!(peer = %peer.addr, "replication: connected to the peer");
                    s.out = Some(peer);
                    // Whatever the peer missed meanwhile (a restart, flows
                    // dropped with no connection) comes with a bulk copy.
                    s.sender.on_new_connection();
                    self.set_caught_up(false);
                    self.last_error = None;
                }
                // No longer active: the connection is not wanted.
                _ => drop(peer),
            },
            FromPeer::ConnectFailed(why) => {
                if let Mode::Sending(s) = &mut self.mode {
                    s.next_connect = Instant::now() + RECONNECT;
                }
                self.last_error = Some(why);
            }
            FromPeer::Closed { conn, why } => {
                self.incoming.remove(&conn);
                if let Mode::Sending(s) = &mut self.mode
                    && s.out.as_ref().is_some_and(|p| p.id == conn)
                {
                    tracing::warn!(%why, "replication: the connection to the peer broke");
                    s.out = None;
                    s.next_connect = Instant::now();
                    self.last_error = Some(why);
                }
            }
            FromPeer::Message { conn, message } => self.on_message(conn, message).await,
        }
    }

    async fn on_message(&mut self, conn: u64, message: FlowMessage) {
        let now = Instant::now();
        match (&mut self.mode, message) {
            // Feedback is the standby's answer on the connection the
            // stream runs on: what comes on another one (a connection to
            // this node's listener) is no answer to what was sent.
            (Mode::Sending(s), message) if !is_stream(s.out.as_ref().map(|out| out.id), conn) => {
                tracing::debug!(
                    conn,
                    ?message,
                    "replication: feedback on another connection ignored"
                );
            }
            (Mode::Receiving(receiver), Message::Data { epoch, seq, item }) => {
                if !takes_data(receiver.epoch(), self.stream_conn, epoch, conn) {
                    self.totals.foreign += 1;
                    tracing::debug!(
                        conn,
                        epoch,
                        seq,
                        "replication: data of the current epoch on another connection ignored"
                    );
                    return;
                }
                let received = receiver.on_data(epoch, seq, item);
                if received.new_epoch {
                    self.totals.epochs_begun += 1;
                    self.stream_conn = Some(conn);
                }
                for flows in received.apply {
                    if let Err(err) = self.apply(flows).await {
                        // What the receiver took as applied is not: start
                        // over (the next message asks for a resync).
                        tracing::error!(error = %err, "replication: applying flows");
                        self.last_error = Some(err);
                        self.mode = Mode::Receiving(Receiver::new(RECEIVER));
                        self.stream_conn = None;
                        self.set_caught_up(false);
                        return;
                    }
                }
                if let Mode::Receiving(receiver) = &self.mode {
                    self.set_caught_up(receiver.caught_up());
                }
                if let Some(peer) = self.incoming.get(&conn) {
                    for reply in &received.replies {
                        peer.send(reply);
                    }
                }
            }
            (Mode::Sending(s), Message::Ack { epoch, next }) => {
                s.sender.on_ack(epoch, next);
                let caught_up = s.sender.caught_up();
                self.set_caught_up(caught_up);
            }
            (Mode::Sending(s), Message::Nack { epoch, from, to }) => {
                self.totals.gaps_heard += 1;
                let (_, resent) = s.sender.on_nack(epoch, from, to, now);
                if let Some(out) = &s.out {
                    for message in &resent {
                        out.send(message);
                    }
                }
            }
            (Mode::Sending(s), Message::ResyncRequest { epoch }) => {
                s.sender.on_resync_request(epoch);
            }
            // Data for a node that is not standby, feedback for one that
            // does not send: nothing to do.
            _ => {}
        }
    }

    /// The daemon's loop writes `flows` into the tables (answered once
    /// written).
    async fn apply(&mut self, flows: Vec<WireFlow>) -> Result<(), String> {
        let applied = self
            .daemon
            .ask(|answer| Event::ReplicatedFlows { flows, answer })
            .await
            .map_err(|err| err.to_string())??;
        self.totals.flows_applied += applied.written;
        self.totals.unknown_service += applied.unknown_service;
        self.totals.unknown_backend += applied.unknown_backend;
        Ok(())
    }

    fn on_records(&mut self, records: Vec<lb_common::FlowRecord>, bad: usize) {
        self.totals.records_bad += bad as u64;
        let Mode::Sending(s) = &mut self.mode else {
            return;
        };
        let Some(out) = &s.out else { return };
        let wires: Vec<WireFlow> = records
            .iter()
            .filter_map(|record| match translate::from_record(record) {
                Ok(wire) => Some(wire),
                Err(err) => {
                    self.totals.records_bad += 1;
                    tracing::warn!(error = %err, "replication: a flow record left out");
                    None
                }
            })
            .collect();
        if wires.is_empty() {
            return;
        }
        let count = wires.len() as u64;
        if let Ok(message) = s.sender.send(wires, Instant::now()) {
            out.send(&message);
            self.totals.flows_sent += count;
        }
    }

    fn on_chunk(&mut self, chunk: Option<Chunk>) {
        let Mode::Sending(s) = &mut self.mode else {
            return;
        };
        let now = Instant::now();
        let refresh = s.bulk.as_ref().is_some_and(|(_, end)| !end);
        let message = match chunk {
            Some(Chunk::Records(flows)) => {
                let count = flows.len() as u64;
                self.totals.flows_sent += count;
                if refresh {
                    self.totals.refreshed += count;
                }
                s.sender.send(flows, now)
            }
            Some(Chunk::End) => {
                s.bulk = None;
                s.sender.end_bulk(now)
            }
            Some(Chunk::Failed(why)) => {
                tracing::error!(%why, "replication: the bulk copy failed");
                self.last_error = Some(why);
                s.bulk = None;
                if !refresh {
                    // Start over at the next tick.
                    s.sender = Sender::new(s.sender.epoch().wrapping_add(1), SENDER);
                }
                return;
            }
            None => {
                s.bulk = None;
                return;
            }
        };
        if let (Ok(message), Some(out)) = (message, &s.out) {
            out.send(&message);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.incoming.retain(|_, peer| !peer.is_closed());
        let Mode::Sending(s) = &mut self.mode else {
            return;
        };
        if s.out.as_ref().is_some_and(Peer::is_closed) {
            s.out = None;
        }
        // Records the ring lost (it filled while the window was full and
        // the ring was not read): their flows come with a bulk copy, not
        // only with the next refresh. Without a connection the next one
        // starts with a bulk copy anyway.
        match self.flows.records_lost() {
            Ok(lost) => {
                if s.out.is_some() && records_lost_since(s.lost_seen, lost) {
                    tracing::warn!(
                        lost = lost - s.lost_seen.unwrap_or(0),
                        "replication: the flow record ring lost records; a resync sends every flow again"
                    );
                    s.sender.on_records_lost();
                }
                s.lost_seen = Some(lost);
            }
            Err(err) => tracing::debug!(error = %format!("{err:#}"), "reading flow_records_lost"),
        }
        if s.out.is_none() {
            if now >= s.next_connect {
                self.connect();
            }
            return;
        }
        if s.sender.needs_resync() {
            // A new epoch and a bulk copy (any refresh under way is
            // dropped: the bulk copy has its flows).
            s.sender.resync();
            self.totals.resyncs += 1;
            s.bulk = Some((dump(&self.daemon, &self.flows, false), true));
            s.next_refresh = now + REFRESH_EVERY;
            self.caught_up.send_replace(false);
            return;
        }
        let resent = s.sender.poll(now);
        if let Some(out) = &s.out {
            for message in &resent {
                out.send(message);
            }
        }
        if s.bulk.is_none() && now >= s.next_refresh {
            s.next_refresh = now + REFRESH_EVERY;
            s.bulk = Some((dump(&self.daemon, &self.flows, true), false));
        }
    }

    /// Connects to the peer in a task of its own; the connection comes back
    /// as [`FromPeer::Connected`] (the active's way out) or
    /// [`FromPeer::ConnectFailed`].
    fn connect(&mut self) {
        let (tls, peers, to_core, counters) = (
            self.tls.clone(),
            self.peers.clone(),
            self.to_core.clone(),
            self.counters.clone(),
        );
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        // The attempt's outcome is known when it ends: keep the sender's
        // side waiting (next_connect) until then.
        if let Mode::Sending(s) = &mut self.mode {
            s.next_connect = Instant::now() + CONNECT_TIMEOUT * (peers.len() as u32 + 1);
        }
        tokio::spawn(async move {
            match wire::connect(&tls, &peers, CONNECT_TIMEOUT).await {
                Ok((stream, addr)) => {
                    let peer = wire::spawn(stream, id, addr, to_core.clone(), counters);
                    let _ = to_core.send(FromPeer::Connected(peer)).await;
                }
                Err(err) => {
                    let _ = to_core
                        .send(FromPeer::ConnectFailed(format!("{err:#}")))
                        .await;
                }
            }
        });
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let t = &self.totals;
        let mut status = ReplicationStatus {
            flows: 0,
            gaps: 0,
            refreshed: t.refreshed,
            unknown_service: t.unknown_service,
            unknown_backend: t.unknown_backend,
            garbage: self.counters.garbage.load(Ordering::Relaxed),
            refused_connections: self.counters.refused.load(Ordering::Relaxed),
            last_error: self.last_error.clone(),
            ..Default::default()
        };
        match &self.mode {
            Mode::Sending(s) => {
                let lag = s.sender.lag(now);
                let stats = s.sender.stats();
                status.stream = StreamRole::Sending;
                status.connected = s.out.is_some();
                status.caught_up = s.sender.caught_up();
                status.epoch = s.sender.epoch();
                status.lag_messages = lag.messages as u64;
                status.lag_flows = lag.entries as u64;
                status.lag_ms = lag.oldest.map_or(0, |d| d.as_millis() as u64);
                status.messages = stats.sent;
                status.resends = stats.resent;
                status.flows = t.flows_sent;
                status.gaps = t.gaps_heard;
                status.resyncs = t.resyncs;
            }
            Mode::Receiving(r) => {
                let stats = r.stats();
                status.stream = StreamRole::Receiving;
                status.connected = !self.incoming.is_empty();
                status.caught_up = r.caught_up();
                status.epoch = r.epoch().unwrap_or(0);
                status.messages = stats.applied;
                status.flows = t.flows_applied;
                status.gaps = stats.gaps_reported;
                status.resyncs = t.epochs_begun;
                status.duplicates = stats.duplicates;
                status.stale = stats.stale;
                status.dropped = stats.dropped;
                status.foreign = t.foreign;
            }
        }
        self.status.send_if_modified(|held| {
            let changed = *held != status;
            *held = status;
            changed
        });
    }
}

/// Whether the standby hands data of `epoch` on connection `conn` to its
/// receiver, which follows `current` (begun on `stream`): not when it is of
/// that epoch on another connection (a replay, or a message slipped in
/// ahead of the stream, which the receiver would hold and apply in place of
/// the real one). An older epoch is the receiver's to refuse (stale); a
/// newer one begins on its own connection (the active reconnected).
fn takes_data(current: Option<u64>, stream: Option<u64>, epoch: u64, conn: u64) -> bool {
    current != Some(epoch) || stream == Some(conn)
}

/// Whether a message on connection `conn` comes on the stream's own
/// connection `stream` (the active's way to the standby): the active takes
/// feedback only from there.
fn is_stream(stream: Option<u64>, conn: u64) -> bool {
    stream == Some(conn)
}

/// The next piece of the bulk copy under way (pending when there is none).
async fn next_chunk(mode: &mut Mode) -> Option<Chunk> {
    match mode {
        Mode::Sending(s) => match &mut s.bulk {
            Some((rx, _)) => rx.recv().await,
            None => std::future::pending().await,
        },
        _ => std::future::pending().await,
    }
}

/// Dumps the flow table outside the loop and names it through a
/// snapshot of the tables: its batches, then (`end`) the bulk end.
/// A refresh (`!end`) goes at a bounded rate.
fn dump(daemon: &Handle, flows: &Arc<FlowsReader>, refresh: bool) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel(4);
    let (daemon, flows) = (daemon.clone(), flows.clone());
    tokio::spawn(async move {
        let dumped = async {
            let tables = daemon
                .ask(Event::FlowTables)
                .await
                .map_err(|e| e.to_string())?;
            let dump = tokio::task::spawn_blocking(move || flows.dump())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{e:#}"))?;
            Ok::<_, String>(translate::from_dump(&dump, &tables).0)
        };
        let wires = match dumped.await {
            Ok(wires) => wires,
            Err(why) => {
                let _ = tx.send(Chunk::Failed(why)).await;
                return;
            }
        };
        for batch in wires.chunks(BATCH) {
            if tx.send(Chunk::Records(batch.to_vec())).await.is_err() {
                return;
            }
            if refresh {
                tokio::time::sleep(REFRESH_PAUSE).await;
            }
        }
        if !refresh {
            let _ = tx.send(Chunk::End).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standby_takes_an_epochs_data_only_on_the_connection_it_began_on() {
        // Epoch 7 began on connection 2.
        assert!(takes_data(Some(7), Some(2), 7, 2));
        assert!(!takes_data(Some(7), Some(2), 7, 3));
        // A newer epoch on a new connection (the active reconnected), an
        // older one (refused as stale by the receiver), the first epoch.
        assert!(takes_data(Some(7), Some(2), 8, 3));
        assert!(takes_data(Some(7), Some(2), 6, 3));
        assert!(takes_data(None, None, 7, 3));
    }

    #[test]
    fn records_lost_in_the_ring_count_from_the_first_reading() {
        // The first reading is the baseline: losses of an earlier time as
        // active are no reason for a resync now.
        assert!(!records_lost_since(None, 5));
        assert!(!records_lost_since(Some(5), 5));
        assert!(records_lost_since(Some(5), 6));
    }

    #[test]
    fn the_active_takes_feedback_only_on_the_streams_connection() {
        assert!(is_stream(Some(4), 4));
        // Another connection to this node's listener, or no stream at all.
        assert!(!is_stream(Some(4), 5));
        assert!(!is_stream(None, 4));
    }
}
