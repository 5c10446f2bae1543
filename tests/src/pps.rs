//! The small-packet generator of the data-plane benchmark: the frames it
//! sends and the loop that drives `lb_bench_gen` (lb-ebpf/src/bench.rs)
//! through `BPF_PROG_TEST_RUN` with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`,
//! what xdp-trafficgen does): the kernel runs the program on each frame and
//! sends the frames it returns `XDP_TX` for out of the interface the run's
//! context names, as if that interface's driver had sent them. See
//! docs/benchmarks.md ("Small packets").
use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lb_common::BENCH_FRAME_BYTES;

use crate::{
    fixture,
    packets::{ACK, Frame, L4, SYN},
};

/// Source port of the first flow; flow `i` of `flows` uses `FIRST_SPORT + i`.
pub const FIRST_SPORT: u16 = 10_000;
/// Flows of the "many flows" figures: source ports 10,000 to 59,999.
pub const MANY_FLOWS: u32 = 50_000;
/// Frames the kernel makes per batch before it flushes them to the
/// interface (the kernel's default is 64; at most 256).
pub const BATCH: u32 = 16;
/// Frames per `BPF_PROG_TEST_RUN` call: about a quarter of a second at
/// the rates here (the loop checks its time limit between calls; the rate
/// is taken over the calls' measured time). Not fewer: the kernel sets up
/// and tears down the live frames' page pool on every call, and on these
/// VMs the generator's thread then waited, asleep, for about 25 ms. With
/// 65,536 frames a call (until 2026-12-07) that kept it idle about 60 % of
/// every window, and it sent its frames in bursts that overflowed the LB's
/// queue while the LB's CPU was mostly idle.
const FRAMES_PER_CALL: u32 = 1 << 20;
const XDP_TX: u32 = 3;

/// What the frames carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UDP with 18 bytes of payload: 60 bytes, 64 on the wire.
    Udp,
    /// A TCP ACK without payload (54 bytes) and 6 bytes of Ethernet
    /// padding, as a wire pads it.
    TcpAck,
    /// A TCP SYN, the same size: the first packet of a connection.
    TcpSyn,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::TcpAck => "tcp_ack",
            Kind::TcpSyn => "tcp_syn",
        }
    }
}

/// The generator's frame from `src` to `dst` (IPv4) between the MACs,
/// with every checksum computed by etherparse.
pub fn frame(
    kind: Kind,
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> [u8; BENCH_FRAME_BYTES] {
    let l4 = match kind {
        Kind::Udp => L4::Udp,
        Kind::TcpAck => ACK,
        Kind::TcpSyn => SYN,
    };
    let mut built = Frame::new(src.into(), dst.into(), l4).macs(macs.0, macs.1);
    if kind == Kind::Udp {
        built = built.payload(&[0x5a; BENCH_FRAME_BYTES - 14 - 20 - 8]);
    }
    let bytes = built.build();
    let mut frame = [0u8; BENCH_FRAME_BYTES];
    frame[..bytes.len()].copy_from_slice(&bytes);
    frame
}

/// What one generator run did.
#[derive(Clone, Copy, Debug)]
pub struct Generated {
    /// Frames the program made (each either sent or dropped by a full
    /// queue of the peer).
    pub frames: u64,
    pub elapsed: Duration,
}

impl Generated {
    pub fn per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `program` (the generator) with live frames as if `frame` arrived on
/// `ifindex` of the calling thread's namespace, for `duration` and at most
/// `max_frames` frames.
pub fn generate(
    program: &Xdp,
    ifindex: u32,
    frame: &[u8],
    duration: Duration,
    max_frames: u64,
) -> Result<Generated> {
    let ctx = fixture::xdp_md(frame.len(), ifindex);
    let start = Instant::now();
    let mut frames = 0u64;
    while frames < max_frames && start.elapsed() < duration {
        let count = FRAMES_PER_CALL.min((max_frames - frames) as u32);
        program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: count,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN with live frames")?;
        frames += u64::from(count);
    }
    Ok(Generated {
        frames,
        elapsed: start.elapsed(),
    })
}

/// Runs the generator `samples` times on `template` without live frames
/// and checks each frame it would send: `XDP_TX`, the template's bytes
/// except the source port (and with `sources` above 1 the source
/// address's low 16 bits) and the checksums, a source port of the
/// template's `flows` (and an address of its `sources`), and valid IPv4
/// and TCP/UDP checksums (computed by etherparse). Returns the distinct
/// source ports and the distinct source addresses seen.
pub fn check_frames(
    program: &Xdp,
    ifindex: u32,
    template: &[u8; BENCH_FRAME_BYTES],
    (flows, sources): (u32, u32),
    samples: u32,
) -> Result<(usize, usize)> {
    let ctx = fixture::xdp_md(template.len(), ifindex);
    let mut ports = std::collections::BTreeSet::new();
    let mut addrs = std::collections::BTreeSet::new();
    for sample in 0..samples {
        let mut out = [0u8; 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(template),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat: 1,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN of the generator")?;
        ensure!(
            result.return_value == XDP_TX,
            "generator sample {sample}: action {}, not XDP_TX",
            result.return_value
        );
        let out = &out[..result.data_size_out as usize];
        ensure!(
            out.len() == template.len(),
            "generator sample {sample}: {} bytes, not {}",
            out.len(),
            template.len()
        );
        let sport = check_checksums(out).with_context(|| format!("generator sample {sample}"))?;
        let low = u16::from_be_bytes([out[28], out[29]]);
        let source = u32::from(low.wrapping_sub(u16::from_be_bytes([template[28], template[29]])));
        ensure!(
            source < sources.max(1),
            "generator sample {sample}: source address {:?} is not one of the {sources} from the template's",
            &out[26..30]
        );
        let first = u16::from_be_bytes([template[34], template[35]]);
        let offset = u32::from(sport.wrapping_sub(first));
        ensure!(
            offset < flows.max(1),
            "generator sample {sample}: source port {sport} is not one of the {flows} from {first}"
        );
        let csum_at = if template[23] == 17 { 40 } else { 50 };
        for (i, (a, b)) in out.iter().zip(template).enumerate() {
            let rewritten = (34..36).contains(&i)
                || (csum_at..csum_at + 2).contains(&i)
                || (sources > 1 && (24..26).contains(&i))
                || (sources > 1 && (28..30).contains(&i));
            ensure!(
                a == b || rewritten,
                "generator sample {sample}: byte {i} is {a:#04x}, not the template's {b:#04x}"
            );
        }
        ports.insert(sport);
        addrs.insert(low);
    }
    Ok((ports.len(), addrs.len()))
}

/// Checks the IPv4 header checksum and the TCP or UDP checksum of `frame`;
/// returns its source port.
fn check_checksums(frame: &[u8]) -> Result<u16> {
    let packet = SlicedPacket::from_ethernet(frame)?;
    let Some(NetSlice::Ipv4(ip)) = &packet.net else {
        bail!("not IPv4");
    };
    let header = ip.header();
    ensure!(
        header.to_header().calc_header_checksum() == header.header_checksum(),
        "IPv4 header checksum"
    );
    let (src, dst) = (header.source(), header.destination());
    let (sport, stored, computed) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => (
            tcp.source_port(),
            tcp.checksum(),
            tcp.calc_checksum_ipv4(src, dst)?,
        ),
        Some(TransportSlice::Udp(udp)) => (
            udp.source_port(),
            udp.checksum(),
            udp.to_header()
                .calc_checksum_ipv4_raw(src, dst, udp.payload())?,
        ),
        _ => bail!("neither TCP nor UDP"),
    };
    ensure!(
        stored == computed,
        "L4 checksum {stored:#06x}, expected {computed:#06x}"
    );
    Ok(sport)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 1]);

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), FIRST_SPORT),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 100), 9000),
        )
    }

    #[test]
    fn udp_frame_fills_the_smallest_ethernet_frame() {
        let (src, dst) = addrs();
        let f = frame(Kind::Udp, MACS, src, dst);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // IPv4 total length 46: 20 + 8 + 18, the frame's 60 bytes.
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46);
        assert_eq!(f[23], 17);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), FIRST_SPORT);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 9000);
        assert_eq!(check_checksums(&f).unwrap(), FIRST_SPORT);
    }

    #[test]
    fn tcp_ack_frame_is_padded() {
        let (src, dst) = addrs();
        let f = frame(Kind::TcpAck, MACS, src, dst);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40);
        assert_eq!(f[23], 6);
        // ACK only.
        assert_eq!(f[47], 0x10);
        assert_eq!(&f[54..], &[0; 6]);
        assert_eq!(check_checksums(&f).unwrap(), FIRST_SPORT);
    }

    #[test]
    fn tcp_syn_frame_is_padded() {
        let (src, dst) = addrs();
        let f = frame(Kind::TcpSyn, MACS, src, dst);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40);
        // SYN only.
        assert_eq!(f[47], 0x02);
        assert_eq!(&f[54..], &[0; 6]);
        assert_eq!(check_checksums(&f).unwrap(), FIRST_SPORT);
    }

    #[test]
    fn a_wrong_checksum_is_caught() {
        let (src, dst) = addrs();
        let mut f = frame(Kind::Udp, MACS, src, dst);
        f[35] ^= 1;
        assert!(check_checksums(&f).is_err());
    }
}
