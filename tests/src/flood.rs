//! A flood of new flows from spoofed sources, for the rig tests: one frame
//! per flow (a TCP SYN or a UDP datagram, built with etherparse, every
//! checksum right), each from a source address and port no other frame of
//! the flood uses, sent from the calling thread's network namespace through
//! an AF_PACKET socket in batches (`sendmmsg`), bounded in count and time.
use std::{
    ffi::CString,
    fs,
    io::{BufRead as _, BufReader},
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use etherparse::PacketBuilder;

use crate::rig::{Rig, VIP_V4};

/// What each frame of the flood is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP SYN.
    Syn,
    /// A UDP datagram of 18 bytes.
    Udp,
}

/// The flood: `flows` frames to `dst`:`dport` through the Ethernet
/// address `dst_mac`, frame `i` from the address `src_base` + (i mod 65,536)
/// and the port 1,024 + i / 65,536 (so 5,000,000 frames are 5,000,000
/// flows), sent within `limit`.
#[derive(Clone, Debug)]
pub struct Flood {
    pub kind: Kind,
    pub dst_mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// The spoofed sources' first address (the sources fill its /16).
    pub src_base: Ipv4Addr,
    pub flows: u64,
    pub limit: Duration,
}

/// What [`Flood::send`] sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    pub elapsed: Duration,
}

impl Sent {
    pub fn per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Frames a `sendmmsg` call takes.
const BATCH: usize = 256;
/// The source MAC of every frame (locally administered; the LB does not
/// look at it).
const SRC_MAC: [u8; 6] = [0x02, 0xf1, 0x00, 0x00, 0x00, 0x01];

impl Flood {
    /// The source address and port of frame `i`.
    pub fn source(&self, i: u64) -> (Ipv4Addr, u16) {
        let base = u32::from(self.src_base) & 0xffff_0000;
        let addr = Ipv4Addr::from(base | (i % 65_536) as u32);
        let port = 1024 + (i / 65_536) as u16;
        (addr, port)
    }

    /// Frame `i` of the flood.
    pub fn frame(&self, i: u64) -> Result<Vec<u8>> {
        let (src, sport) = self.source(i);
        let ip = PacketBuilder::ethernet2(SRC_MAC, self.dst_mac).ipv4(
            src.octets(),
            self.dst.octets(),
            64,
        );
        let mut out = Vec::with_capacity(64);
        match self.kind {
            Kind::Syn => ip
                .tcp(sport, self.dport, 0x1234_5678, 64240)
                .syn()
                .write(&mut out, &[])?,
            Kind::Udp => ip
                .udp(sport, self.dport)
                .write(&mut out, b"flood, not an answer")?,
        }
        Ok(out)
    }

    /// Sends the flood out of `iface`, in the calling thread's network
    /// namespace; stops at `limit` (what was sent by then is returned: the
    /// caller checks that it was enough). A full transmit queue is waited
    /// out.
    pub fn send(&self, iface: &str) -> Result<Sent> {
        if self.flows > 65_536 * (65_535 - 1024) {
            bail!("{} flows: more than the sources can tell apart", self.flows);
        }
        let socket = PacketSocket::open(iface)?;
        let template = Template::new(self.frame(0)?);
        let started = Instant::now();
        let mut frames: Vec<Vec<u8>> = vec![template.frame.clone(); BATCH];
        let mut next = 0u64;
        while next < self.flows && started.elapsed() <= self.limit {
            let count = (self.flows - next).min(BATCH as u64) as usize;
            for (k, frame) in frames[..count].iter_mut().enumerate() {
                template.write(frame, self.source(next + k as u64));
            }
            let mut done = 0;
            while done < count {
                match socket.send_batch(&frames[done..count]) {
                    Ok(n) => done += n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        if started.elapsed() > self.limit {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(e).context("sending the flood"),
                }
            }
            next += done as u64;
        }
        Ok(Sent {
            frames: next,
            elapsed: started.elapsed(),
        })
    }
}

/// Frame 0 of a flood, from which every other frame is made by writing its
/// source address and port and updating the IPv4 header's and the L4
/// checksums for them (RFC 1624): no frame is built from scratch while
/// the flood runs.
struct Template {
    frame: Vec<u8>,
    /// The offset of the L4 checksum.
    l4_csum: usize,
}

/// Offsets in an Ethernet + IPv4 (20 bytes) frame.
const IP_CSUM: usize = 14 + 10;
const IP_SRC: usize = 14 + 12;
const L4: usize = 14 + 20;

impl Template {
    fn new(frame: Vec<u8>) -> Self {
        let l4_csum = match frame[14 + 9] {
            6 => L4 + 16,
            _ => L4 + 6,
        };
        Self { frame, l4_csum }
    }

    /// Writes the template with another source into `out` (of the
    /// template's length).
    fn write(&self, out: &mut [u8], (addr, port): (Ipv4Addr, u16)) {
        out.copy_from_slice(&self.frame);
        let old = [
            word(&self.frame, IP_SRC),
            word(&self.frame, IP_SRC + 2),
            word(&self.frame, L4),
        ];
        let octets = addr.octets();
        out[IP_SRC..IP_SRC + 4].copy_from_slice(&octets);
        out[L4..L4 + 2].copy_from_slice(&port.to_be_bytes());
        let new = [word(out, IP_SRC), word(out, IP_SRC + 2), word(out, L4)];
        // The IPv4 header covers the address; the L4 checksum (through
        // its pseudo-header) the address and the port.
        update(out, IP_CSUM, &old[..2], &new[..2]);
        update(out, self.l4_csum, &old, &new);
    }
}

fn word(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// The one's complement checksum at `at` with the words `old` replaced by
/// `new` (RFC 1624: HC' = ~(~HC + ~m + m')).
fn update(frame: &mut [u8], at: usize, old: &[u16], new: &[u16]) {
    let mut sum = u32::from(!word(frame, at));
    for (&o, &n) in old.iter().zip(new) {
        sum += u32::from(!o) + u32::from(n);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[at..at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// An AF_PACKET socket bound to one interface, for sending only, past the
/// queueing discipline.
struct PacketSocket {
    fd: libc::c_int,
}

impl PacketSocket {
    fn open(iface: &str) -> Result<Self> {
        let name = CString::new(iface)?;
        // SAFETY: plain calls with valid arguments; the descriptor is owned
        // by the value from here on.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("an AF_PACKET socket");
        }
        let socket = Self { fd };
        // SAFETY: `name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface} in this namespace");
        }
        let bypass: libc::c_int = 1;
        // SAFETY: an int option of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&bypass as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: a zeroed sockaddr_ll is valid; its fields are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a sockaddr_ll of the length given.
        let bound = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("binding to {iface}"));
        }
        Ok(socket)
    }

    /// Sends as many of `frames` as the kernel takes in one call.
    fn send_batch(&self, frames: &[Vec<u8>]) -> std::io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: a zeroed msghdr is valid; the iovec is set.
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_iov = iov;
                header.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: every message points at an iovec and a frame that outlive
        // the call.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd,
                messages.as_mut_ptr(),
                messages.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Idle TCP connections through the VIP on which the server speaks first
/// once told to (`tests/support/speaks_first.py`): a server on every
/// backend, COUNT connections from the client.
pub struct SpeaksFirst {
    count: usize,
    size: usize,
    trigger: PathBuf,
    servers: Vec<Child>,
    client: Option<(Child, BufReader<ChildStdout>)>,
}

impl SpeaksFirst {
    /// Starts the servers on `port` of every backend of `rig`, each
    /// sending its name and `size` bytes when told.
    pub fn serve(rig: &Rig, port: u16, size: usize) -> Result<Self> {
        let trigger = rig.dir().join("speak-now");
        let mut servers = Vec::new();
        for backend in &rig.backends {
            servers.push(
                backend.ns.spawn(
                    backend
                        .ns
                        .command("python3")
                        .arg(script())
                        .args(["server", &port.to_string(), &backend.name])
                        .arg(&trigger)
                        .args(["180", &size.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit()),
                )?,
            );
        }
        Ok(Self {
            count: 0,
            size,
            trigger,
            servers,
            client: None,
        })
    }

    /// Opens `count` connections to the VIP's `port` from the client and
    /// waits until each is established.
    pub fn open(&mut self, rig: &Rig, port: u16, count: usize) -> Result<()> {
        let mut child = rig.client.spawn(
            rig.client
                .command("python3")
                .arg(script())
                .args(["client", &VIP_V4.to_string(), &port.to_string()])
                .arg(count.to_string())
                .arg(&self.trigger)
                .args(["60", &self.size.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let mut out = BufReader::new(child.stdout.take().context("the script's stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        ensure!(
            line.trim() == "ready",
            "the speaks-first connections: {line:?}"
        );
        self.count = count;
        self.client = Some((child, out));
        Ok(())
    }

    /// Tells the servers to speak and describes the connections that did
    /// not get every byte; each connection's backend by name.
    pub fn hear(mut self) -> Result<(Vec<String>, Vec<String>)> {
        fs::write(&self.trigger, b"speak")?;
        let (mut child, mut out) = self.client.take().context("no connection opened")?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        let _ = child.wait();
        let results: Vec<serde_json::Value> = serde_json::from_str(line.trim())
            .with_context(|| format!("the speaks-first client: {line:?}"))?;
        ensure!(results.len() == self.count, "{results:?}");
        let backends = results
            .iter()
            .map(|r| r["backend"].as_str().unwrap_or_default().to_owned())
            .collect();
        let broken = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.get("error").is_some() || r["whole"] != true)
            .map(|(i, r)| format!("speaks-first connection {i}: {r}"))
            .collect();
        Ok((broken, backends))
    }
}

impl Drop for SpeaksFirst {
    fn drop(&mut self) {
        for child in self
            .servers
            .iter_mut()
            .chain(self.client.as_mut().map(|(c, _)| c))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/speaks_first.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood(kind: Kind) -> Flood {
        Flood {
            kind,
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst: Ipv4Addr::new(198, 18, 0, 100),
            dport: 80,
            src_base: Ipv4Addr::new(198, 19, 0, 0),
            flows: 5_000_000,
            limit: Duration::from_secs(1),
        }
    }

    #[test]
    fn every_frame_is_a_flow_of_its_own() {
        let f = flood(Kind::Syn);
        assert_eq!(f.source(0), (Ipv4Addr::new(198, 19, 0, 0), 1024));
        assert_eq!(f.source(65_537), (Ipv4Addr::new(198, 19, 0, 1), 1025));
        assert_eq!(
            f.source(4_999_999),
            (Ipv4Addr::new(198, 19, 0x4b, 0x3f), 1024 + 76)
        );
    }

    #[test]
    fn frames_from_the_template_are_the_frames_built_whole() {
        for kind in [Kind::Syn, Kind::Udp] {
            let f = flood(kind);
            let template = Template::new(f.frame(0).unwrap());
            let mut out = template.frame.clone();
            for i in [1u64, 255, 65_535, 65_536, 70_000, 4_999_999] {
                template.write(&mut out, f.source(i));
                let whole = f.frame(i).unwrap();
                assert_eq!(out, whole, "{kind:?} frame {i}");
            }
        }
    }

    #[test]
    fn frames_are_valid_with_right_checksums() {
        for kind in [Kind::Syn, Kind::Udp] {
            let frame = flood(kind).frame(70_000).unwrap();
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = parsed.net else {
                panic!("{kind:?}: not IPv4");
            };
            assert_eq!(
                ip.header().source_addr(),
                Ipv4Addr::new(198, 19, 0x11, 0x70)
            );
            let header = ip.header().to_header();
            assert_eq!(header.header_checksum, header.calc_header_checksum());
            match (kind, parsed.transport) {
                (Kind::Syn, Some(etherparse::TransportSlice::Tcp(tcp))) => {
                    assert!(tcp.syn() && !tcp.ack());
                    assert_eq!(tcp.source_port(), 1025);
                    let want = tcp
                        .to_header()
                        .calc_checksum_ipv4(&header, tcp.payload())
                        .unwrap();
                    assert_eq!(tcp.checksum(), want);
                }
                (Kind::Udp, Some(etherparse::TransportSlice::Udp(udp))) => {
                    assert_eq!(udp.source_port(), 1025);
                    let want = udp
                        .to_header()
                        .calc_checksum_ipv4(&header, udp.payload())
                        .unwrap();
                    assert_eq!(udp.checksum(), want);
                }
                (kind, other) => panic!("{kind:?}: {other:?}"),
            }
        }
    }
}
