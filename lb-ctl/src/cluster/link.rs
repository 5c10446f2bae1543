//! The interconnects' edge: one UDP socket per interconnect, bound to this
//! node's address on it, sending heartbeats to the peer's address and
//! receiving the peer's. What arrives is checked ([`heartbeat::open`], then
//! the replay window shared by all interconnects) before it is handed on;
//! what is refused is counted by reason, never acted on.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    config::ClusterConfig,
    heartbeat::{self, Expect, Heartbeat, Keyring, Refused, ReplayWindow, WIRE_LEN},
};

/// A heartbeat that passed every check, and the interconnect it came on.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub link: usize,
    pub heartbeat: Heartbeat,
}

/// Refused datagrams by reason (shared with status and metrics).
pub type RefusedCounts = Arc<Mutex<BTreeMap<Refused, u64>>>;

/// The interconnects of this node.
pub struct Links {
    cluster: [u8; 16],
    sockets: Vec<Arc<UdpSocket>>,
    peers: Vec<SocketAddr>,
    keys: Keyring,
}

impl Links {
    /// Binds one socket per interconnect (this node's address and port) and
    /// starts their receivers, which send what passes to `received`.
    pub async fn open(
        cluster: &ClusterConfig,
        me: u8,
        keys: Keyring,
        received: mpsc::Sender<Received>,
        refused: RefusedCounts,
    ) -> Result<Self> {
        let peer = 1 - me;
        let cluster_id: [u8; 16] = super::keys::unhex(&cluster.id)
            .and_then(|id| id.try_into().ok())
            .context("cluster.id is not 32 hex digits")?;
        let window = Arc::new(Mutex::new(ReplayWindow::default()));
        let mut sockets = Vec::new();
        let mut peers = Vec::new();
        for (link, ic) in cluster.interconnects.iter().enumerate() {
            let local = SocketAddr::new(ic.addresses[usize::from(me)], ic.port);
            let socket = Arc::new(
                UdpSocket::bind(local)
                    .await
                    .with_context(|| format!("interconnect {}: binding {local}", ic.name))?,
            );
            peers.push(SocketAddr::new(ic.addresses[usize::from(peer)], ic.port));
            let expect = Expect {
                cluster: cluster_id,
                peer,
                links: cluster.interconnects.len() as u8,
            };
            tokio::spawn(receive(
                socket.clone(),
                link,
                peers[link],
                expect,
                keys.clone(),
                window.clone(),
                received.clone(),
                refused.clone(),
            ));
            sockets.push(socket);
        }
        Ok(Links {
            cluster: cluster_id,
            sockets,
            peers,
            keys,
        })
    }

    /// The cluster id heartbeats carry.
    pub fn cluster(&self) -> [u8; 16] {
        self.cluster
    }

    /// Sends `hb` on every interconnect, each with its own sequence number
    /// from `seq` (which it advances). Returns the interconnects whose send
    /// failed (a down link), with the error.
    pub async fn send(&self, hb: &Heartbeat, seq: &mut u64) -> Vec<(usize, std::io::Error)> {
        let mut failed = Vec::new();
        for (link, (socket, peer)) in self.sockets.iter().zip(&self.peers).enumerate() {
            let mut this = *hb;
            this.link = link as u8;
            this.seq = *seq;
            *seq += 1;
            let wire = heartbeat::seal(&this, &self.keys);
            if let Err(err) = socket.send_to(&wire, peer).await {
                failed.push((link, err));
            }
        }
        failed
    }
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    socket: Arc<UdpSocket>,
    link: usize,
    peer: SocketAddr,
    expect: Expect,
    keys: Keyring,
    window: Arc<Mutex<ReplayWindow>>,
    received: mpsc::Sender<Received>,
    refused: RefusedCounts,
) {
    // One byte more than a heartbeat: a longer datagram is refused, not cut.
    let mut buf = [0u8; WIRE_LEN + 1];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let checked = if from.ip() != peer.ip() {
            Err(Refused::NotPeer)
        } else {
            heartbeat::open(&buf[..len], &keys, &expect).and_then(|hb| {
                if usize::from(hb.link) != link {
                    return Err(Refused::Malformed);
                }
                window
                    .lock()
                    .expect("the replay window is never poisoned")
                    .accept(hb.seq)
                    .map(|()| hb)
            })
        };
        match checked {
            Ok(heartbeat) => {
                if received.send(Received { link, heartbeat }).await.is_err() {
                    return;
                }
            }
            Err(reason) => {
                tracing::debug!(link, %from, reason = reason.name(), "heartbeat refused");
                *refused
                    .lock()
                    .expect("the counters are never poisoned")
                    .entry(reason)
                    .or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::{
        Role,
        config::{Interconnect, Server},
        heartbeat::Key,
    };

    fn cluster(port: u16) -> ClusterConfig {
        let mut c: ClusterConfig = toml::from_str(
            "id = \"00112233445566778899aabbccddeeff\"\nservers = []\ninterconnects = []\n",
        )
        .unwrap();
        c.servers = vec![Server { name: "a".into() }, Server { name: "b".into() }];
        c.interconnects = (0..2u8)
            .map(|i| Interconnect {
                name: format!("hb{i}"),
                addresses: vec![
                    format!("127.0.{i}.1").parse().unwrap(),
                    format!("127.0.{i}.2").parse().unwrap(),
                ],
                port,
            })
            .collect();
        c
    }

    fn keys(secret: u8) -> Keyring {
        Keyring::new(
            vec![Key {
                id: 1,
                secret: vec![secret; 32],
            }],
            1,
        )
        .unwrap()
    }

    fn hb() -> Heartbeat {
        Heartbeat {
            cluster: [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff,
            ],
            node: 0,
            link: 0,
            seq: 0,
            role: Role::Active,
            healthy: true,
            eligible: true,
            yielding: false,
            stopped: false,
            monitors: 0,
            generation: 3,
            settings_hash: [7; 32],
        }
    }

    async fn recv(rx: &mut mpsc::Receiver<Received>) -> Option<Received> {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn heartbeats_cross_every_interconnect_and_forgeries_are_counted() {
        // A port of our own on loopback addresses (127.0.0.0/8).
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let c = cluster(port);
        let (tx_a, _rx_a) = mpsc::channel(16);
        let (tx_b, mut rx_b) = mpsc::channel(16);
        let refused_b = RefusedCounts::default();
        let a = Links::open(&c, 0, keys(1), tx_a, RefusedCounts::default())
            .await
            .unwrap();
        let _b = Links::open(&c, 1, keys(1), tx_b, refused_b.clone())
            .await
            .unwrap();
        let mut seq = 1_000;
        assert!(a.send(&hb(), &mut seq).await.is_empty());
        assert_eq!(seq, 1_002);
        let mut links = [
            recv(&mut rx_b).await.unwrap(),
            recv(&mut rx_b).await.unwrap(),
        ];
        links.sort_by_key(|r| r.link);
        assert_eq!((links[0].link, links[0].heartbeat.seq), (0, 1_000));
        assert_eq!((links[1].link, links[1].heartbeat.seq), (1, 1_001));
        assert_eq!(links[1].heartbeat.generation, 3);

        // Wrongly keyed, replayed, wrong link, garbage: nothing comes through.
        let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to_b = SocketAddr::new("127.0.0.2".parse().unwrap(), port);
        let mut wrong_key = hb();
        wrong_key.seq = 5_000;
        forger
            .send_to(&heartbeat::seal(&wrong_key, &keys(9)), to_b)
            .await
            .unwrap();
        let mut old = hb();
        old.seq = 1_000;
        forger
            .send_to(&heartbeat::seal(&old, &keys(1)), to_b)
            .await
            .unwrap();
        let mut other_link = hb();
        other_link.seq = 6_000;
        other_link.link = 1;
        forger
            .send_to(&heartbeat::seal(&other_link, &keys(1)), to_b)
            .await
            .unwrap();
        forger.send_to(b"hello", to_b).await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.9:0").await.unwrap();
        let mut fine = hb();
        fine.seq = 7_000;
        stranger
            .send_to(&heartbeat::seal(&fine, &keys(1)), to_b)
            .await
            .unwrap();
        assert!(
            recv(&mut rx_b).await.is_none(),
            "a refused datagram came through"
        );
        let counts = refused_b.lock().unwrap().clone();
        assert_eq!(counts.get(&Refused::BadMac), Some(&1));
        assert_eq!(counts.get(&Refused::Replayed), Some(&1));
        assert_eq!(counts.get(&Refused::Malformed), Some(&1));
        assert_eq!(counts.get(&Refused::Length), Some(&1));
        assert_eq!(counts.get(&Refused::NotPeer), Some(&1));
        // And the real peer still gets through after all that.
        assert!(a.send(&hb(), &mut seq).await.is_empty());
        assert_eq!(recv(&mut rx_b).await.unwrap().heartbeat.seq, 1_002);
    }
}
