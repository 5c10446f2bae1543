//! UDP datagrams captured on the wire inside a namespace: `tcpdump -w` into
//! a file (a capture of its own, not our code's view), read back with a
//! small pcap reader and etherparse.
use std::{
    fs,
    net::IpAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::netns::Netns;

/// One UDP datagram as it crossed the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The capture's timestamp (since the Unix epoch).
    pub at: Duration,
    pub source: IpAddr,
    pub source_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
    pub payload: Vec<u8>,
}

/// Captures `count` UDP datagrams matching the tcpdump `filter` (for
/// example `udp dst port 29101`) on `iface` inside `ns`, into `file`, and
/// returns them; fails when fewer arrive within `limit`.
pub fn udp(
    ns: &Netns,
    iface: &str,
    filter: &str,
    count: usize,
    limit: Duration,
    file: &Path,
) -> Result<Vec<Datagram>> {
    let mut tcpdump = ns
        .command("tcpdump")
        .args(["-i", iface, "-U", "-n", "-c", &count.to_string(), "-w"])
        .arg(file)
        .arg(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tcpdump (is it installed?)")?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = tcpdump.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = tcpdump.kill();
            let _ = tcpdump.wait();
            bail!("tcpdump -i {iface} {filter}: fewer than {count} datagrams within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ensure!(status.success(), "tcpdump -i {iface} {filter}: {status}");
    let datagrams = read_pcap(&fs::read(file)?)?;
    ensure!(
        datagrams.len() == count,
        "tcpdump wrote {} UDP datagrams, not {count}",
        datagrams.len()
    );
    Ok(datagrams)
}

/// The UDP datagrams of a pcap file (microsecond timestamps, Ethernet, in
/// this host's byte order as tcpdump writes it); other frames are skipped.
pub fn read_pcap(bytes: &[u8]) -> Result<Vec<Datagram>> {
    const GLOBAL: usize = 24;
    const RECORD: usize = 16;
    ensure!(bytes.len() >= GLOBAL, "a pcap file shorter than its header");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    ensure!(
        u32_at(0) == 0xa1b2_c3d4,
        "not a little-endian microsecond pcap file"
    );
    ensure!(
        u32_at(20) == 1,
        "not an Ethernet capture (link type {})",
        u32_at(20)
    );
    let mut datagrams = Vec::new();
    let mut at = GLOBAL;
    while at + RECORD <= bytes.len() {
        let (secs, micros, len) = (u32_at(at), u32_at(at + 4), u32_at(at + 8) as usize);
        let frame = bytes
            .get(at + RECORD..at + RECORD + len)
            .context("a pcap record past the end of the file")?;
        at += RECORD + len;
        let packet = SlicedPacket::from_ethernet(frame)?;
        let (source, destination) = match &packet.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::from(ip.header().source_addr()),
                IpAddr::from(ip.header().destination_addr()),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::from(ip.header().source_addr()),
                IpAddr::from(ip.header().destination_addr()),
            ),
            _ => continue,
        };
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            continue;
        };
        datagrams.push(Datagram {
            at: Duration::from_secs(secs.into()) + Duration::from_micros(micros.into()),
            source,
            source_port: udp.source_port(),
            destination,
            destination_port: udp.destination_port(),
            payload: udp.payload().to_vec(),
        });
    }
    Ok(datagrams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcap_file_gives_its_udp_datagrams() {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 8, 1], [198, 18, 8, 2], 64)
            .udp(29101, 29101)
            .write(&mut frame, b"LBHB")
            .unwrap();
        let mut file = Vec::new();
        // Magic, version 2.4, zone, accuracy, snap length, Ethernet.
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        // 7.000250 s, the frame's length captured and on the wire.
        for word in [7u32, 250, frame.len() as u32, frame.len() as u32] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        file.extend_from_slice(&frame);
        assert_eq!(
            read_pcap(&file).unwrap(),
            [Datagram {
                at: Duration::from_micros(7_000_250),
                source: "198.18.8.1".parse().unwrap(),
                source_port: 29101,
                destination: "198.18.8.2".parse().unwrap(),
                destination_port: 29101,
                payload: b"LBHB".to_vec(),
            }]
        );
        assert!(read_pcap(&file[..20]).is_err());
        assert!(read_pcap(&file[..file.len() - 1]).is_err());
    }
}
