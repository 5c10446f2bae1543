//! The replication's connections: mutual TLS on the cluster's CA (as the
//! settings sync), one long-lived connection from the active to the
//! standby, carrying `replication::message` messages, each behind its
//! length (4 bytes, network order). Thin: a reader task that decodes frames
//! and passes them on, a writer task that writes what it is given. A frame
//! that does not decode closes the connection, is counted and changes
//! nothing; so does a connection that fails the TLS handshake.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    cluster::sync::Tls,
    replication::message::{self, FlowMessage},
};

/// The largest frame: a full batch of records (65,535 of 58 bytes) and its
/// header fit.
pub const MAX_FRAME: usize = 4 << 20;

/// Frames waiting to be written on one connection; past this the message is
/// not queued (the stream sends it again).
const QUEUE: usize = 4096;

/// How long a write or a handshake may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a frame's length is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an empty frame")]
    Empty,
    #[error("a frame of {0} bytes, longer than {MAX_FRAME}")]
    TooLong(usize),
}

/// `payload` behind its length.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload's length a frame header announces.
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    match u32::from_be_bytes(header) as usize {
        0 => Err(FrameError::Empty),
        len if len > MAX_FRAME => Err(FrameError::TooLong(len)),
        len => Ok(len),
    }
}

/// Connections refused and frames that did not decode (status, metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub garbage: AtomicU64,
    pub refused: AtomicU64,
}

/// What connections pass to the replication's task.
pub enum FromPeer {
    /// A connection from the peer was accepted (the standby's side).
    Opened(Peer),
    /// A connection to the peer was made (the active's side).
    Connected(Peer),
    /// No interconnect answered.
    ConnectFailed(String),
    Message {
        conn: u64,
        message: FlowMessage,
    },
    Closed {
        conn: u64,
        why: String,
    },
}

/// One connection: where to write, and its reader.
pub struct Peer {
    pub id: u64,
    pub addr: SocketAddr,
    out: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
}

impl Peer {
    /// Queues `message`; false when the connection cannot take it now
    /// (full or closed: the stream sends it again).
    pub fn send(&self, message: &FlowMessage) -> bool {
        match message::encode(message) {
            Ok(bytes) => self.out.try_send(frame(&bytes)).is_ok(),
            Err(err) => {
                tracing::error!(error = %err, "replication: a message that does not encode");
                false
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.out.is_closed() || self.reader.is_finished()
    }
}

impl Drop for Peer {
    /// The reader stops at once; the writer ends once it wrote what is
    /// queued (the last records of a node stepping down still go out).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Runs a connection: a reader task passing decoded messages to `to_core`,
/// a writer task writing what [`Peer::send`] queues.
pub fn spawn<S>(
    stream: S,
    id: u64,
    addr: SocketAddr,
    to_core: mpsc::Sender<FromPeer>,
    counters: Arc<Counters>,
) -> Peer
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let (out, mut queued) = mpsc::channel::<Vec<u8>>(QUEUE);
    tokio::spawn(async move {
        while let Some(bytes) = queued.recv().await {
            let written = tokio::time::timeout(IO_TIMEOUT, write.write_all(&bytes)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(%addr, "replication: writing to the peer failed");
                return;
            }
        }
        let _ = tokio::time::timeout(IO_TIMEOUT, write.shutdown()).await;
    });
    let reader = tokio::spawn(async move {
        let why = loop {
            match read_frame(&mut read).await {
                Ok(Some(bytes)) => match message::decode(&bytes) {
                    Ok(message) => {
                        if to_core
                            .send(FromPeer::Message { conn: id, message })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(err) => {
                        counters.garbage.fetch_add(1, Ordering::Relaxed);
                        break format!("a message from {addr} that does not decode: {err}");
                    }
                },
                Ok(None) => break format!("{addr} closed the connection"),
                Err(err) => {
                    if err.downcast_ref::<FrameError>().is_some() {
                        counters.garbage.fetch_add(1, Ordering::Relaxed);
                    }
                    break format!("reading from {addr}: {err:#}");
                }
            }
        };
        let _ = to_core.send(FromPeer::Closed { conn: id, why }).await;
    });
    Peer {
        id,
        addr,
        out,
        reader,
    }
}

/// The next frame's payload; None at a clean end between frames.
async fn read_frame<R: AsyncRead + Unpin>(read: &mut R) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match read.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = frame_len(header)?;
    let mut payload = vec![0u8; len];
    read.read_exact(&mut payload)
        .await
        .context("the connection ended inside a frame")?;
    Ok(Some(payload))
}

/// Accepts the peer's connections on `listener` (the standby's side): each
/// must complete the mutual TLS handshake, then runs as a [`Peer`] handed
/// to the task.
pub async fn listen(
    listener: TcpListener,
    tls: Tls,
    to_core: mpsc::Sender<FromPeer>,
    counters: Arc<Counters>,
    ids: Arc<AtomicU64>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "replication: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor.clone();
        let to_core = to_core.clone();
        let counters = counters.clone();
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let peer = spawn(stream, id, from, to_core.clone(), counters);
                    let _ = to_core.send(FromPeer::Opened(peer)).await;
                }
                Ok(Err(err)) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%from, error = %err, "replication: TLS handshake refused");
                }
                Err(_) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%from, "replication: TLS handshake timed out");
                }
            }
        });
    }
}

/// Connects to the peer over the first of `peers` (one per interconnect,
/// in priority order) that answers, within `timeout` each.
pub async fn connect(
    tls: &Tls,
    peers: &[SocketAddr],
    timeout: Duration,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, SocketAddr)> {
    let mut failures = Vec::new();
    for &to in peers {
        let attempt = async {
            let stream = TcpStream::connect(to)
                .await
                .with_context(|| format!("connecting to {to}"))?;
            let _ = stream.set_nodelay(true);
            let name = ServerName::IpAddress(to.ip().into());
            tls.connector
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS handshake with {to}"))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => return Ok((stream, to)),
            Ok(Err(err)) => failures.push(format!("{err:#}")),
            Err(_) => failures.push(format!("{to} did not answer within {timeout:?}")),
        }
    }
    anyhow::bail!("{}", failures.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::stream::Message;

    /// The pair's TLS material from `cluster init`, servers on loopback.
    fn material(dir: &std::path::Path) {
        let plan = "[cluster]\n[[cluster.servers]]\nname = \"lb1\"\n[[cluster.servers]]\nname = \"lb2\"\n[[cluster.interconnects]]\nname = \"hb0\"\naddresses = [\"127.0.0.1\", \"127.0.0.2\"]\n[nodes.lb1]\ninterfaces = [\"eth0\"]\n[nodes.lb2]\ninterfaces = [\"eth0\"]\n";
        let provider = rustls::crypto::ring::default_provider();
        let mut random = |buf: &mut [u8]| provider.secure_random.fill(buf).unwrap();
        let files = crate::cluster::init::generate(plan, &mut random).unwrap();
        crate::cluster::init::write(dir, &files, false).unwrap();
    }

    async fn next(rx: &mut mpsc::Receiver<FromPeer>) -> FromPeer {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the channel is open")
    }

    #[tokio::test]
    async fn garbage_and_strangers_are_counted_and_pass_nothing_on_a_peer_is_heard() {
        let dir = tempfile::tempdir().unwrap();
        material(dir.path());
        let lb1 = Tls::load(&dir.path().join("lb1/tls"), "lb1").unwrap();
        let lb2 = Tls::load(&dir.path().join("lb2/tls"), "lb2").unwrap();
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(listen(
            listener,
            lb2,
            tx.clone(),
            counters.clone(),
            Arc::new(AtomicU64::new(1)),
        ));

        // Not TLS at all: refused at the handshake, nothing passed on.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(&frame(&[3; 17])).await.unwrap();
        plain.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while counters.refused.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the plain connection is refused");
        assert!(rx.try_recv().is_err());

        // The peer, with a frame that is no message: the connection closes,
        // it is counted, no message is passed on.
        let (mut stream, _) = connect(&lb1, &[addr], Duration::from_secs(5))
            .await
            .unwrap();
        stream.write_all(&frame(&[9, 9])).await.unwrap();
        stream.flush().await.unwrap();
        assert!(matches!(next(&mut rx).await, FromPeer::Opened(_)));
        match next(&mut rx).await {
            FromPeer::Closed { why, .. } => assert!(why.contains("does not decode"), "{why}"),
            _ => panic!("the connection closes, nothing else"),
        }
        assert_eq!(counters.garbage.load(Ordering::Relaxed), 1);

        // The peer with a message: heard.
        let (stream, to) = connect(&lb1, &[addr], Duration::from_secs(5))
            .await
            .unwrap();
        let (back, _ignored) = mpsc::channel(4);
        let peer = spawn(stream, 99, to, back, counters.clone());
        assert!(peer.send(&Message::Ack { epoch: 5, next: 3 }));
        assert!(matches!(next(&mut rx).await, FromPeer::Opened(_)));
        match next(&mut rx).await {
            FromPeer::Message { message, .. } => {
                assert_eq!(message, Message::Ack { epoch: 5, next: 3 })
            }
            _ => panic!("the message is passed on"),
        }
        assert_eq!(counters.garbage.load(Ordering::Relaxed), 1);
        assert_eq!(counters.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_frame_is_its_length_then_its_bytes() {
        assert_eq!(frame(&[7, 8, 9]), vec![0, 0, 0, 3, 7, 8, 9]);
        assert_eq!(frame_len([0, 0, 0, 3]), Ok(3));
    }

    #[test]
    fn empty_and_oversized_frames_are_refused() {
        assert_eq!(frame_len([0; 4]), Err(FrameError::Empty));
        assert_eq!(
            frame_len([0xff; 4]),
            Err(FrameError::TooLong(u32::MAX as usize))
        );
        let just = (MAX_FRAME as u32).to_be_bytes();
        assert_eq!(frame_len(just), Ok(MAX_FRAME));
    }

    #[tokio::test]
    async fn frames_are_read_back_and_a_cut_frame_is_an_error() {
        let mut bytes = frame(&[1, 2]);
        bytes.extend(frame(&[3]));
        let mut reader = &bytes[..];
        assert_eq!(read_frame(&mut reader).await.unwrap(), Some(vec![1, 2]));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Some(vec![3]));
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
        let cut = &frame(&[1, 2, 3])[..5];
        let mut reader = cut;
        assert!(read_frame(&mut reader).await.is_err());
        let mut huge = &[0xffu8, 0xff, 0xff, 0xff][..];
        let err = read_frame(&mut huge).await.unwrap_err();
        assert!(err.downcast_ref::<FrameError>().is_some(), "{err:#}");
    }
}
