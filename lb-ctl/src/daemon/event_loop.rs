//! The daemon's event loop: the one task that owns the [`Daemon`].
//!
//! Every other task reaches the daemon by sending an [`Event`] through a
//! [`Handle`]: the API's requests (each with its answer), health results,
//! neighbour readings, the cluster's role requests, events and incoming
//! settings pushes, the end of a push to the peer, the flow replication's
//! requests (a snapshot of the tables, replicated flows to write), and the
//! stop. The loop
//! takes them one at a time, so a change is never interleaved with
//! another.
//!
//! Nothing slow runs in the loop: the network (a push of the settings to
//! the peer, with its 2 s timeout) and netlink waits (the neighbour task)
//! run in tasks of their own, which get a snapshot from the loop and send
//! their result back as an event ([`Event::PushDone`],
//! [`Event::Neighbours`]). The loop only carries out what the daemon's
//! pure decisions say (the change's plan, `sync::judge`,
//! `sync::PushQueue`, `sync::push_outcome`).
//!
//! The cluster's own membership loop (`cluster::node::run`) is not in here:
//! it keeps its thread and runtime so that nothing the daemon does delays
//! its heartbeats or its lease, and talks to this loop through channels.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{ChangeError, Daemon, HealthKey};
use crate::{
    api::{Alert, Applied, Change, ConfigCheck, ServiceView, Stats, Status},
    balancer::Tables,
    cluster::{
        node::{ClusterEvent, OperationRequest},
        replicate::Applied as FlowsApplied,
        serve::{Pusher, SyncRequest},
        sync::{self, Next, SyncMessage, SyncReply},
    },
    config::Config,
    health, neighbours,
    replication::record::WireFlow,
    role::Role,
};

/// How long a caller waits for the loop to take a request and answer it
/// (past it, the loop is taken as stalled). Long enough for the longest
/// change and for a `lb-ctl sync` queued behind a push (2 s each).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many events may wait for the loop.
const QUEUE: usize = 256;

/// What the daemon's state is asked or told.
pub enum Event {
    // The API's requests (the Unix socket and the metrics).
    Status(oneshot::Sender<Status>),
    Services(oneshot::Sender<Vec<ServiceView>>),
    /// Counters and services (the error: the counters could not be read).
    Stats(oneshot::Sender<Result<Stats, String>>),
    Alerts {
        limit: usize,
        answer: oneshot::Sender<Vec<Alert>>,
    },
    ExportConfig(oneshot::Sender<Config>),
    ImportConfig {
        /// Boxed: a whole configuration is much larger than any other
        /// event.
        config: Box<Config>,
        answer: oneshot::Sender<Result<Applied, ChangeError>>,
    },
    /// What an import would do, nothing changed.
    CheckConfig {
        config: Box<Config>,
        answer: oneshot::Sender<ConfigCheck>,
    },
    Change {
        change: Change,
        answer: oneshot::Sender<Result<Applied, ChangeError>>,
    },
    /// Where the operator's cluster operations go (None: standalone); the
    /// caller sends and waits there, not in the loop.
    ClusterRoute(oneshot::Sender<Option<mpsc::Sender<OperationRequest>>>),
    /// `lb-ctl sync`: push the settings to the peer now; answered with
    /// what the peer said, or why not (standalone, standby).
    SyncNow(SyncRequest),
    Metrics(oneshot::Sender<Metrics>),
    // The daemon's own tasks.
    /// A health check changed state.
    Health(health::Event<HealthKey>),
    /// The addresses the neighbour task keeps entries for.
    ForwardTargets(oneshot::Sender<BTreeSet<IpAddr>>),
    /// A reading of the routes and neighbours.
    Neighbours(neighbours::Reading),
    // The cluster.
    /// The cluster's event loop changes the role: answered once the role
    /// map holds it.
    Role {
        role: Role,
        ack: oneshot::Sender<anyhow::Result<()>>,
    },
    /// A notable event of the cluster (the alert log).
    Cluster(ClusterEvent),
    /// Settings the active pushed to this node.
    SettingsPush {
        message: SyncMessage,
        answer: oneshot::Sender<SyncReply>,
    },
    /// A push of the settings `generation` to the peer ended.
    PushDone {
        generation: u64,
        result: Result<String, String>,
    },
    /// A `stall` monitor asks the loop to answer (it is not stalled).
    Ping(oneshot::Sender<()>),
    // The flow replication.
    /// A snapshot of the tables a bulk copy is named through.
    FlowTables(oneshot::Sender<Tables>),
    /// Flows the active replicated to this standby: written into the
    /// tables, answered once written (then acknowledged to the active).
    ReplicatedFlows {
        flows: Vec<WireFlow>,
        answer: oneshot::Sender<Result<FlowsApplied, String>>,
    },
    /// The daemon stops (the stop alert), answered before the loop ends.
    Stop(oneshot::Sender<()>),
}

/// What the metrics are made of, read in one pass of the loop.
pub struct Metrics {
    pub status: Status,
    /// None: the counters could not be read.
    pub counters: Option<BTreeMap<String, u64>>,
    pub services: Vec<ServiceView>,
}

/// Why the loop gave no answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    #[error("the daemon's event loop is not running")]
    Stopped,
    #[error("the daemon's event loop is not answering (no answer within {} s)", .0.as_secs())]
    NotAnswering(Duration),
}

/// Where other tasks send the daemon's events.
#[derive(Clone)]
pub struct Handle {
    events: mpsc::Sender<Event>,
    timeout: Duration,
}

impl Handle {
    /// A handle and the receiver the loop takes (see [`spawn`]).
    pub fn new() -> (Handle, mpsc::Receiver<Event>) {
        Handle::with_timeout(ANSWER_TIMEOUT)
    }

    fn with_timeout(timeout: Duration) -> (Handle, mpsc::Receiver<Event>) {
        let (events, receiver) = mpsc::channel(QUEUE);
        (Handle { events, timeout }, receiver)
    }

    /// Sends the event `request` makes with its answer, and waits for the
    /// answer, at most the timeout in all (a full queue included).
    pub async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, LoopError> {
        let (answer, answered) = oneshot::channel();
        let exchange = async {
            self.events
                .send(request(answer))
                .await
                .map_err(|_| LoopError::Stopped)?;
            answered.await.map_err(|_| LoopError::Stopped)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| LoopError::NotAnswering(self.timeout))?
    }

    /// Sends an event that has no answer, waiting at most the timeout for
    /// room in the queue.
    pub async fn tell(&self, event: Event) -> Result<(), LoopError> {
        tokio::time::timeout(self.timeout, self.events.send(event))
            .await
            .map_err(|_| LoopError::NotAnswering(self.timeout))?
            .map_err(|_| LoopError::Stopped)
    }
}

/// Forwards what arrives on `from` to the loop as `wrap` makes it, until
/// either side is gone (a wait on a busy loop is the sender's back
/// pressure: health results and cluster requests are not dropped).
pub async fn forward<T>(mut from: mpsc::Receiver<T>, to: Handle, wrap: impl Fn(T) -> Event) {
    while let Some(item) = from.recv().await {
        if to.events.send(wrap(item)).await.is_err() {
            return;
        }
    }
}

/// Starts the loop that owns `daemon`, taking the events sent through
/// `handle` (`pusher`: the active's side of the settings sync, when
/// clustered). It ends at [`Event::Stop`], or when no handle is left.
pub fn spawn(
    daemon: Daemon,
    pusher: Option<Pusher>,
    handle: &Handle,
    events: mpsc::Receiver<Event>,
) -> JoinHandle<()> {
    let owner = EventLoop {
        daemon,
        pusher,
        // Weak: the loop's own sender must not keep it alive.
        me: handle.events.downgrade(),
    };
    tokio::spawn(owner.run(events))
}

/// Whether the loop goes on after an event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct EventLoop {
    daemon: Daemon,
    pusher: Option<Pusher>,
    me: mpsc::WeakSender<Event>,
}

impl EventLoop {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            if self.handle(event) == Flow::Stop {
                return;
            }
            self.publish_settings();
        }
    }

    /// Carries out one event. Never waits: answers go through oneshot
    /// channels, slow work to tasks of its own.
    fn handle(&mut self, event: Event) -> Flow {
        let daemon = &mut self.daemon;
        match event {
            Event::Status(answer) => {
                let _ = answer.send(daemon.status());
            }
            Event::Services(answer) => {
                let _ = answer.send(daemon.services());
            }
            Event::Stats(answer) => {
                let _ = answer.send(daemon.stats().map_err(|err| format!("{err:#}")));
            }
            Event::Alerts { limit, answer } => {
                let _ = answer.send(daemon.alerts().recent(limit));
            }
            Event::ExportConfig(answer) => {
                let _ = answer.send(daemon.config().clone());
            }
            Event::ImportConfig { config, answer } => {
                let _ = answer.send(daemon.apply_config(*config, "configuration imported"));
            }
            Event::CheckConfig { config, answer } => {
                let _ = answer.send(daemon.check_config(&config));
            }
            Event::Change { change, answer } => {
                let _ = answer.send(daemon.change(change));
            }
            Event::ClusterRoute(answer) => {
                let _ = answer.send(daemon.cluster().map(|c| c.operations.clone()));
            }
            Event::SyncNow(answer) => self.sync_now(answer),
            Event::Metrics(answer) => {
                let _ = answer.send(Metrics {
                    status: daemon.status(),
                    counters: daemon.counters().ok(),
                    services: daemon.services(),
                });
            }
            Event::Health(event) => daemon.on_health(event),
            Event::ForwardTargets(answer) => {
                let _ = answer.send(daemon.forward_targets());
            }
            Event::Neighbours(reading) => daemon.on_neighbours(&reading),
            Event::Role { role, ack } => {
                let _ = ack.send(daemon.set_role(role));
            }
            Event::Cluster(event) => daemon.on_cluster_event(&event),
            Event::SettingsPush { message, answer } => {
                let _ = answer.send(daemon.apply_replicated(message));
            }
            Event::PushDone { generation, result } => self.push_done(generation, result),
            Event::Ping(answer) => {
                let _ = answer.send(());
            }
            Event::FlowTables(answer) => {
                let _ = answer.send(daemon.flow_tables());
            }
            Event::ReplicatedFlows { flows, answer } => {
                let _ = answer.send(daemon.apply_flows(&flows));
            }
            Event::Stop(answer) => {
                daemon.stop();
                let _ = answer.send(());
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// `lb-ctl sync`: refused on a standalone node or a standby, else
    /// answered by the next push.
    fn sync_now(&mut self, answer: SyncRequest) {
        let Some(pusher) = &mut self.pusher else {
            let _ = answer.send(Err(STANDALONE.into()));
            return;
        };
        let next = pusher.queue.want(self.daemon.role(), Some(answer));
        self.carry_out(next);
    }

    /// A push ended: its outcome in the status and the alert log, its
    /// answers, and the next push if one is wanted.
    fn push_done(&mut self, generation: u64, result: Result<String, String>) {
        self.daemon.on_push(generation, &result);
        let Some(pusher) = &mut self.pusher else {
            return;
        };
        let (owed, next) = pusher.queue.done(self.daemon.role());
        for answer in owed {
            let _ = answer.send(result.clone());
        }
        self.carry_out(next);
    }

    /// After every event: new settings go into the heartbeats and, on the
    /// active, to the peer.
    fn publish_settings(&mut self) {
        let Some(pusher) = &mut self.pusher else {
            return;
        };
        if pusher.published() == self.daemon.config().generation {
            return;
        }
        pusher.publish(self.daemon.config());
        let next = pusher.queue.want(self.daemon.role(), None);
        self.carry_out(next);
    }

    /// Starts a push of the settings held now in a task of its own (its
    /// end comes back as [`Event::PushDone`]), or refuses requests.
    fn carry_out(&mut self, next: Next<SyncRequest>) {
        let Some(pusher) = &self.pusher else {
            return;
        };
        match next {
            Next::Nothing => {}
            Next::Refuse(answers) => {
                for answer in answers {
                    let _ = answer.send(Err(sync::push_refusal(&pusher.peer_name)));
                }
            }
            Next::Start => {
                let generation = self.daemon.config().generation;
                let push = pusher.push(self.daemon.config());
                let me = self.me.clone();
                tokio::spawn(async move {
                    let result = push.await;
                    if let Some(events) = me.upgrade() {
                        let _ = events.send(Event::PushDone { generation, result }).await;
                    }
                });
            }
        }
    }
}

/// Why a standalone node has no cluster operation.
pub const STANDALONE: &str = "this node is standalone: it has no [cluster] section";

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(timeout: Duration) -> (Handle, mpsc::Receiver<Event>) {
        Handle::with_timeout(timeout)
    }

    #[tokio::test]
    async fn an_answer_comes_back_through_the_loop() {
        let (handle, mut events) = handle(ANSWER_TIMEOUT);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::ForwardTargets(answer) => {
                        let _ = answer.send(["198.18.1.11".parse().unwrap()].into());
                    }
                    _ => panic!("only ForwardTargets is asked"),
                }
            }
        });
        let targets = handle.ask(Event::ForwardTargets).await.unwrap();
        assert_eq!(
            targets,
            BTreeSet::from(["198.18.1.11".parse::<IpAddr>().unwrap()])
        );
    }

    #[tokio::test]
    async fn a_dead_loop_is_said_at_once() {
        let (handle, events) = handle(ANSWER_TIMEOUT);
        drop(events);
        assert_eq!(
            handle.ask(Event::ForwardTargets).await.unwrap_err(),
            LoopError::Stopped
        );
        assert_eq!(
            handle
                .tell(Event::Cluster(ClusterEvent::Error("x".into())))
                .await
                .unwrap_err(),
            LoopError::Stopped
        );
    }

    #[tokio::test]
    async fn a_loop_that_drops_the_answer_is_said_at_once() {
        let (handle, mut events) = handle(ANSWER_TIMEOUT);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                drop(event);
            }
        });
        assert_eq!(
            handle.ask(Event::Status).await.unwrap_err(),
            LoopError::Stopped
        );
    }

    #[tokio::test]
    async fn a_stalled_loop_is_said_after_the_timeout() {
        let (handle, mut events) = handle(Duration::from_millis(50));
        // The loop takes the request and never answers.
        let held = tokio::spawn(async move {
            let event = events.recv().await;
            std::future::pending::<()>().await;
            drop(event);
        });
        let err = handle.ask(Event::Status).await.unwrap_err();
        assert_eq!(err, LoopError::NotAnswering(Duration::from_millis(50)));
        assert_eq!(
            LoopError::NotAnswering(ANSWER_TIMEOUT).to_string(),
            "the daemon's event loop is not answering (no answer within 30 s)"
        );
        held.abort();
    }

    #[tokio::test]
    async fn a_full_queue_is_bounded_too() {
        let (handle, _events) = handle(Duration::from_millis(50));
        for _ in 0..QUEUE {
            handle
                .tell(Event::Cluster(ClusterEvent::Error("x".into())))
                .await
                .unwrap();
        }
        assert_eq!(
            handle.ask(Event::Status).await.unwrap_err(),
            LoopError::NotAnswering(Duration::from_millis(50))
        );
    }

    #[tokio::test]
    async fn forward_wraps_and_ends_with_its_source() {
        let (handle, mut events) = handle(ANSWER_TIMEOUT);
        let (tx, rx) = mpsc::channel(4);
        let forwarding = tokio::spawn(forward(rx, handle, Event::Cluster));
        tx.send(ClusterEvent::Error("one".into())).await.unwrap();
        drop(tx);
        forwarding.await.unwrap();
        match events.recv().await {
            Some(Event::Cluster(ClusterEvent::Error(message))) => assert_eq!(message, "one"),
            _ => panic!("the cluster event is forwarded as Event::Cluster"),
        }
        assert!(events.recv().await.is_none(), "nothing else was sent");
    }
}
