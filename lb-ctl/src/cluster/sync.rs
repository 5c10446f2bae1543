//! Settings sync: the active pushes the LB settings (services, backends,
//! sorry servers) to the standby with their generation and hash; the
//! standby applies them or refuses a stale generation (like HAProxy's Data
//! Plane API's 409). `[node]` is never sent; `[cluster]` is, and the
//! standby takes what `config::live` allows of it (see
//! `Daemon::apply_replicated`).
//!
//! The pure part: the message, its check ([`judge`]), the texts, and the
//! active's side: its pushes one at a time ([`PushQueue`]) and what a
//! finished push means for the status and the alerts ([`push_outcome`]). The
//! edge: a TLS channel (rustls) where both ends show a certificate of the
//! cluster's CA (`cluster init`); a peer without one gets nothing and
//! changes nothing. One request per connection: one JSON line each way.
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{config::ClusterConfig, node::SyncState};
use crate::{
    api::{AlertEvent, AlertLevel},
    config::ServiceConfig,
    role::Role,
};

/// The largest request or answer accepted (a line of JSON).
pub const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// The active's settings, as pushed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncMessage {
    pub generation: u64,
    /// Hex SHA-256 of the services' JSON (`serve::settings_hash`).
    pub hash: String,
    pub services: Vec<ServiceConfig>,
    /// The active's `[cluster]` section (absent from an older active): the
    /// standby takes its live keys, keeps its own section when another
    /// key differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// The standby's answer: `status` as in HTTP (200 applied or already held,
/// 400 invalid, 409 stale or refused, 500 failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    pub status: u16,
    pub message: String,
    /// The generation the standby holds after the request.
    pub generation: u64,
}

/// What to do with a pushed message, given what this node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Newer settings: apply them with the active's generation.
    Apply,
    /// The same generation and hash: nothing to do.
    AlreadyHeld,
    /// An older generation, or the same one with other settings: refused.
    Stale(String),
    /// The hash does not match the services sent.
    Invalid(String),
}

pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decides on `message` for a node holding `held` (generation, hash).
/// `computed` is the hash of the services the message carries.
pub fn judge(held: (u64, [u8; 32]), message: &SyncMessage, computed: &[u8; 32]) -> Verdict {
    if message.hash != hex(computed) {
        return Verdict::Invalid(format!(
            "the hash {} does not match the services sent (their hash is {})",
            message.hash,
            hex(computed)
        ));
    }
    let (generation, hash) = held;
    if message.generation > generation {
        Verdict::Apply
    } else if message.generation == generation && *computed == hash {
        Verdict::AlreadyHeld
    } else if message.generation == generation {
        Verdict::Stale(format!(
            "generation {generation} is already held here with other settings (hash {})",
            hex(&hash)
        ))
    } else {
        Verdict::Stale(format!(
            "generation {} is older than the generation {generation} held here",
            message.generation
        ))
    }
}

/// Why a standby refuses a change made on it.
pub fn standby_refusal(active: &str) -> String {
    format!("this node is standby: change the settings on the active node ({active})")
}

/// Why a standby does not push its settings (`lb-ctl sync` on it).
pub fn push_refusal(active: &str) -> String {
    format!("this node is standby: run lb-ctl sync on the active node ({active})")
}

/// What comes of a finished push of `generation` given the state of the
/// push before it: the alert to record (`sync_failed` on every failure,
/// `sync_recovered` on the first success after one) and the new state.
pub fn push_outcome(
    previous: Option<&SyncState>,
    generation: u64,
    result: &Result<String, String>,
) -> (Option<(AlertLevel, AlertEvent, String)>, SyncState) {
    match result {
        Ok(_) => {
            let was_failing = matches!(previous, Some(SyncState::NotSynchronized { .. }));
            let alert = was_failing.then(|| {
                (
                    AlertLevel::Info,
                    AlertEvent::SyncRecovered,
                    format!("settings synchronized with the peer (generation {generation})"),
                )
            });
            (alert, SyncState::Synchronized { generation })
        }
        Err(reason) => (
            Some((
                AlertLevel::Error,
                AlertEvent::SyncFailed,
                format!(
                    "settings generation {generation} not synchronized with the peer: {reason}; it applies here; run lb-ctl sync once the peer is back"
                ),
            )),
            SyncState::NotSynchronized {
                reason: reason.clone(),
            },
        ),
    }
}

/// The active's pushes, one at a time: a push wanted while one runs (a
/// newer generation, `lb-ctl sync`) starts when it ends, with the settings
/// held then, so the peer never sees an older generation after a newer one.
/// `A` is where a request is answered (`lb-ctl sync`); each is answered by
/// the first push that starts after it.
#[derive(Debug)]
pub struct PushQueue<A> {
    running: bool,
    again: bool,
    /// Answers owed by the push that runs.
    in_flight: Vec<A>,
    /// Answers owed by the next push.
    waiting: Vec<A>,
}

/// What to do after [`PushQueue::want`] or [`PushQueue::done`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next<A> {
    /// Start a push of the settings held now.
    Start,
    /// Nothing now (a push runs, or none is wanted).
    Nothing,
    /// This node is not active: refuse these requests.
    Refuse(Vec<A>),
}

impl<A> Default for PushQueue<A> {
    fn default() -> Self {
        PushQueue {
            running: false,
            again: false,
            in_flight: Vec::new(),
            waiting: Vec::new(),
        }
    }
}

impl<A> PushQueue<A> {
    /// A push is wanted on a node in `role` (`answer`: a request's, `None`:
    /// new settings). Only the active pushes.
    pub fn want(&mut self, role: Role, answer: Option<A>) -> Next<A> {
        if role != Role::Active {
            return Next::Refuse(answer.into_iter().collect());
        }
        self.waiting.extend(answer);
        if self.running {
            self.again = true;
            Next::Nothing
        } else {
            self.start()
        }
    }

    /// The running push ended (the node is now in `role`): the answers it
    /// owes, and what comes next.
    pub fn done(&mut self, role: Role) -> (Vec<A>, Next<A>) {
        let owed = std::mem::take(&mut self.in_flight);
        self.running = false;
        if !std::mem::take(&mut self.again) {
            return (owed, Next::Nothing);
        }
        if role != Role::Active {
            return (owed, Next::Refuse(std::mem::take(&mut self.waiting)));
        }
        (owed, self.start())
    }

    fn start(&mut self) -> Next<A> {
        self.running = true;
        self.in_flight = std::mem::take(&mut self.waiting);
        Next::Start
    }
}

/// The TLS material of one node: its configuration as server and client.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl Tls {
    /// Loads `DIR/ca.pem`, `DIR/NAME.pem` and `DIR/NAME.key`.
    pub fn load(dir: &Path, name: &str) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let read_certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>> {
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&dir.join("ca.pem"))? {
            roots
                .add(ca)
                .with_context(|| format!("{}: not a CA certificate", dir.display()))?;
        }
        let roots = Arc::new(roots);
        let chain = read_certs(&dir.join(format!("{name}.pem")))?;
        let key_path = dir.join(format!("{name}.key"));
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("the client certificate verifier")?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .with_context(|| format!("{}: certificate and key", dir.display()))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .with_context(|| format!("{}: certificate and key", dir.display()))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// A message received, and where to answer.
pub type Incoming = (SyncMessage, oneshot::Sender<SyncReply>);

/// Accepts connections on `listener` until it fails: each one must
/// complete the mutual TLS handshake, then its request is passed on to
/// `requests` and the answer written back. A connection that fails any
/// step is dropped and changes nothing.
pub async fn serve(listener: TcpListener, tls: Tls, requests: mpsc::Sender<Incoming>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "settings sync: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let answered =
                tokio::time::timeout(Duration::from_secs(30), answer(acceptor, stream, requests))
                    .await;
            match answered {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(%from, error = %format!("{err:#}"), "settings sync refused")
                }
                Err(_) => tracing::warn!(%from, "settings sync: the peer was too slow"),
            }
        });
    }
}

async fn answer(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    requests: mpsc::Sender<Incoming>,
) -> Result<()> {
    let stream = acceptor.accept(stream).await.context("TLS handshake")?;
    let mut stream = BufReader::new(stream);
    let line = read_line(&mut stream).await?;
    let reply = match serde_json::from_slice::<SyncMessage>(&line) {
        Ok(message) => {
            let (tx, rx) = oneshot::channel();
            requests
                .send((message, tx))
                .await
                .context("the daemon is gone")?;
            rx.await.context("the daemon did not answer")?
        }
        Err(err) => SyncReply {
            status: 400,
            message: format!("invalid request: {err}"),
            generation: 0,
        },
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    let stream = stream.get_mut();
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    Ok(())
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut line = Vec::new();
    let mut limited = reader.take(MAX_MESSAGE);
    limited.read_until(b'\n', &mut line).await?;
    anyhow::ensure!(
        line.ends_with(b"\n"),
        "the message ended early or is longer than {MAX_MESSAGE} bytes"
    );
    Ok(line)
}

/// Sends `message` to the peer at `to` (its certificate must name `to`'s
/// address) and returns its answer, within `timeout`.
pub async fn push(
    tls: &Tls,
    to: SocketAddr,
    message: &SyncMessage,
    timeout: Duration,
) -> Result<SyncReply> {
    let exchange = async {
        let stream = TcpStream::connect(to)
            .await
            .with_context(|| format!("connecting to {to}"))?;
        let name = ServerName::IpAddress(to.ip().into());
        let stream = tls
            .connector
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS handshake with {to}"))?;
        let mut stream = BufReader::new(stream);
        let mut out = serde_json::to_vec(message)?;
        out.push(b'\n');
        stream.get_mut().write_all(&out).await?;
        stream.get_mut().flush().await?;
        let line = read_line(&mut stream)
            .await
            .with_context(|| format!("reading the answer of {to}"))?;
        serde_json::from_slice::<SyncReply>(&line)
            .with_context(|| format!("the answer of {to} is not a sync reply"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{to} did not answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_the_cluster_section_and_reads_without_it() {
        let (mut message, _) = message(3, Vec::new());
        let old = serde_json::to_string(&message).unwrap();
        assert!(!old.contains("cluster"), "{old}");
        // An older active's message: no section, this node keeps its own.
        assert_eq!(serde_json::from_str::<SyncMessage>(&old).unwrap(), message);
        message.cluster = Some(
            toml::from_str(
                "id = \"00112233445566778899aabbccddeeff\"\nauto_failback = true\n\
                 [[servers]]\nname = \"lb1\"\n[[servers]]\nname = \"lb2\"\n\
                 [[interconnects]]\nname = \"hb0\"\naddresses = [\"198.18.8.1\", \"198.18.8.2\"]\n",
            )
            .unwrap(),
        );
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(serde_json::from_str::<SyncMessage>(&json).unwrap(), message);
    }

    fn message(generation: u64, services: Vec<ServiceConfig>) -> (SyncMessage, [u8; 32]) {
        let config = crate::config::Config {
            services,
            ..test_config()
        };
        let hash = crate::cluster::serve::settings_hash(&config);
        (
            SyncMessage {
                generation,
                hash: hex(&hash),
                services: config.services,
                cluster: None,
            },
            hash,
        )
    }

    fn test_config() -> crate::config::Config {
        toml::from_str("[node]\nname = \"lb1\"\ninterfaces = [\"eth0\"]\n").unwrap()
    }

    fn service() -> ServiceConfig {
        let config: crate::config::Config = toml::from_str(
            "[node]\nname = \"lb1\"\ninterfaces = [\"eth0\"]\n[[services]]\nvip = \"198.18.0.10\"\nport = 80\nprotocol = \"tcp\"\n",
        )
        .unwrap();
        config.services[0].clone()
    }

    #[test]
    fn a_newer_generation_applies_an_older_or_conflicting_one_is_stale() {
        let (old, old_hash) = message(3, vec![]);
        let (new, new_hash) = message(4, vec![service()]);
        assert_eq!(judge((3, old_hash), &new, &new_hash), Verdict::Apply);
        assert_eq!(judge((4, new_hash), &new, &new_hash), Verdict::AlreadyHeld);
        assert_eq!(
            judge((4, new_hash), &old, &old_hash),
            Verdict::Stale("generation 3 is older than the generation 4 held here".into())
        );
        let (same_gen, same_gen_hash) = message(4, vec![]);
        assert!(matches!(
            judge((4, new_hash), &same_gen, &same_gen_hash),
            Verdict::Stale(m) if m.starts_with("generation 4 is already held here with other settings")
        ));
    }

    #[test]
    fn a_hash_that_does_not_match_the_services_is_invalid() {
        let (mut m, _) = message(5, vec![service()]);
        let (_, other) = message(5, vec![]);
        m.hash = hex(&other);
        let (_, computed) = message(5, vec![service()]);
        assert!(matches!(
            judge((1, other), &m, &computed),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn the_refusal_names_the_active_node() {
        assert_eq!(
            standby_refusal("lb1"),
            "this node is standby: change the settings on the active node (lb1)"
        );
    }

    /// Two clusters' material from `cluster init`, servers on loopback.
    fn material(dir: &Path, port: u16) -> std::path::PathBuf {
        let plan = format!(
            "[cluster]\n[[cluster.servers]]\nname = \"lb1\"\n[[cluster.servers]]\nname = \"lb2\"\n[[cluster.interconnects]]\nname = \"hb0\"\naddresses = [\"127.0.0.1\", \"127.0.0.2\"]\nport = {port}\n[nodes.lb1]\ninterfaces = [\"eth0\"]\n[nodes.lb2]\ninterfaces = [\"eth0\"]\n"
        );
        let provider = rustls::crypto::ring::default_provider();
        let mut random = |buf: &mut [u8]| provider.secure_random.fill(buf).unwrap();
        let files = crate::cluster::init::generate(&plan, &mut random).unwrap();
        crate::cluster::init::write(dir, &files, false).unwrap();
        dir.to_owned()
    }

    async fn server(tls: Tls) -> (SocketAddr, mpsc::Receiver<Incoming>) {
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(serve(listener, tls, tx));
        (addr, rx)
    }

    #[tokio::test]
    async fn a_peer_of_the_cluster_is_heard_a_peer_of_another_ca_gets_nothing() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let ours = material(ours.path(), 29101);
        let theirs = material(theirs.path(), 29101);
        let lb2 = Tls::load(&ours.join("lb2/tls"), "lb2").unwrap();
        let (addr, mut requests) = server(lb2).await;
        let (m, _) = message(7, vec![service()]);

        // A stranger (a certificate of another CA, though it trusts ours
        // and so would accept our server): the server refuses it in the
        // handshake, nothing reaches the daemon.
        let mixed = tempfile::tempdir().unwrap();
        std::fs::copy(ours.join("lb1/tls/ca.pem"), mixed.path().join("ca.pem")).unwrap();
        for file in ["lb1.pem", "lb1.key"] {
            std::fs::copy(theirs.join("lb1/tls").join(file), mixed.path().join(file)).unwrap();
        }
        let stranger = Tls::load(mixed.path(), "lb1").unwrap();
        let refused = push(&stranger, addr, &m, Duration::from_secs(5)).await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(requests.try_recv().is_err());

        // The cluster's own peer is heard and answered.
        let lb1 = Tls::load(&ours.join("lb1/tls"), "lb1").unwrap();
        let answering = tokio::spawn(async move {
            let (got, answer) = requests.recv().await.unwrap();
            let _ = answer.send(SyncReply {
                status: 200,
                message: "applied".into(),
                generation: got.generation,
            });
            got
        });
        let reply = push(&lb1, addr, &m, Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.generation, 7);
        assert_eq!(answering.await.unwrap(), m);
    }

    #[test]
    fn pushes_run_one_at_a_time_and_answer_the_requests_made_before_them() {
        let mut queue = PushQueue::default();
        // New settings on the active: a push starts.
        assert_eq!(queue.want(Role::Active, None), Next::Start);
        // lb-ctl sync while it runs: answered by the next push, not this
        // one (which may carry older settings).
        assert_eq!(queue.want(Role::Active, Some(1)), Next::Nothing);
        assert_eq!(queue.want(Role::Active, Some(2)), Next::Nothing);
        assert_eq!(queue.done(Role::Active), (vec![], Next::Start));
        assert_eq!(queue.want(Role::Active, Some(3)), Next::Nothing);
        assert_eq!(queue.done(Role::Active), (vec![1, 2], Next::Start));
        assert_eq!(queue.done(Role::Active), (vec![3], Next::Nothing));
        // Idle again: a request starts a push at once.
        assert_eq!(queue.want(Role::Active, Some(4)), Next::Start);
        assert_eq!(queue.done(Role::Active), (vec![4], Next::Nothing));
    }

    #[test]
    fn a_standby_does_not_push() {
        let mut queue = PushQueue::default();
        assert_eq!(queue.want(Role::Standby, None), Next::Refuse(vec![]));
        assert_eq!(queue.want(Role::Standby, Some(1)), Next::Refuse(vec![1]));
        // Requests queued behind a push are refused if the node stepped
        // down meanwhile; the running push still answers its own.
        assert_eq!(queue.want(Role::Active, Some(2)), Next::Start);
        assert_eq!(queue.want(Role::Active, Some(3)), Next::Nothing);
        assert_eq!(queue.done(Role::Standby), (vec![2], Next::Refuse(vec![3])));
        assert_eq!(queue.want(Role::Active, None), Next::Start);
        assert_eq!(
            push_refusal("lb1"),
            "this node is standby: run lb-ctl sync on the active node (lb1)"
        );
    }

    #[test]
    fn a_push_outcome_alerts_every_failure_and_the_first_success_after_one() {
        let ok = Ok("the peer holds generation 4 (applied)".to_owned());
        let failed = Err("connection refused".to_owned());
        let (alert, state) = push_outcome(None, 4, &ok);
        assert_eq!(alert, None);
        assert_eq!(state, SyncState::Synchronized { generation: 4 });
        let (alert, state) = push_outcome(Some(&state), 5, &failed);
        assert_eq!(
            alert,
            Some((
                AlertLevel::Error,
                AlertEvent::SyncFailed,
                "settings generation 5 not synchronized with the peer: connection refused; it applies here; run lb-ctl sync once the peer is back".to_owned()
            ))
        );
        assert_eq!(
            state,
            SyncState::NotSynchronized {
                reason: "connection refused".into()
            }
        );
        let (again, _) = push_outcome(Some(&state), 5, &failed);
        assert_eq!(again.map(|a| a.1), Some(AlertEvent::SyncFailed));
        let (alert, state) = push_outcome(Some(&state), 5, &ok);
        assert_eq!(
            alert,
            Some((
                AlertLevel::Info,
                AlertEvent::SyncRecovered,
                "settings synchronized with the peer (generation 5)".to_owned()
            ))
        );
        assert_eq!(state, SyncState::Synchronized { generation: 5 });
        assert_eq!(push_outcome(Some(&state), 6, &ok).0, None);
    }
}
