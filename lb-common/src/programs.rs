//! The object's programs: their names, the slots of the ones `lb_xdp`
//! tail-calls, and the benchmark programs' read-only globals and counters.

// Named only in the documentation.
#[cfg(doc)]
use crate::{AF_INET, AF_INET6, maps};

/// Name of the XDP program in the object (the one attached).
pub const XDP_PROGRAM: &str = "lb_xdp";
/// Name of the XDP program that handles ICMP, tail-called by `lb_xdp`.
pub const ICMP_PROGRAM: &str = "lb_icmp";
/// Slot of [`ICMP_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_ICMP: u32 = 0;
/// Name of the XDP program that answers a packet to a service whose TTL or
/// hop limit expires here with an ICMP time exceeded, tail-called by
/// `lb_xdp`.
pub const TTL_PROGRAM: &str = "lb_ttl_expired";
/// Slot of [`TTL_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_TTL: u32 = 1;
/// Name of the XDP program for packets without a confirmed flow: new and
/// unconfirmed flows to a service, the answers of unconfirmed NAT flows (a
/// SYN-ACK: see [`maps::NEW_FLOWS`]); tail-called by `lb_xdp`.
pub const UNCONFIRMED_PROGRAM: &str = "lb_unconfirmed";
/// Slot of [`UNCONFIRMED_PROGRAM`] in [`maps::JUMP`].
pub const JUMP_UNCONFIRMED: u32 = 2;
/// Slots in [`maps::JUMP`].
pub const JUMP_SLOTS: u32 = 3;

/// Name of the benchmark's baseline XDP program in the object: the same
/// parse and NAT rewrite as [`XDP_PROGRAM`] for one fixed service and
/// backend, without any map or FIB lookup.
pub const BASELINE_PROGRAM: &str = "lb_baseline";
/// Name of the benchmark's second yardstick: [`BASELINE_PROGRAM`] plus one
/// lookup per packet in [`maps::FLOWS`] (an insert when it misses), the
/// one lookup an established packet of [`XDP_PROGRAM`] cannot do without.
/// What [`XDP_PROGRAM`] costs beyond it is the price of everything else.
pub const BASELINE_LOOKUP_PROGRAM: &str = "lb_baseline_lookup";
/// Name of the read-only global ([`BaselineConfig`]) that configures
/// [`BASELINE_PROGRAM`] and [`BASELINE_LOOKUP_PROGRAM`]; user space sets
/// it when loading the object.
pub const BASELINE_GLOBAL: &str = "LB_BASELINE";

/// Name of the benchmark's packet generator: run by `BPF_PROG_TEST_RUN`
/// with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`), it writes
/// [`BenchGenConfig::frame`] over each frame, gives it the next source port
/// of [`BenchGenConfig::flows`] and sends it (`XDP_TX`). Never attached.
pub const BENCH_GEN_PROGRAM: &str = "lb_bench_gen";
/// Name of the read-only global ([`BenchGenConfig`]) of [`BENCH_GEN_PROGRAM`].
pub const BENCH_GEN_GLOBAL: &str = "LB_BENCH_GEN";
/// Name of the benchmark's counting sink, a tc ingress classifier on the
/// far end of the LB's outgoing link: it counts ([`BENCH_DELIVERED`]) and
/// drops the IPv4 TCP and UDP packets to [`BenchSinkConfig`]'s address and
/// port, and lets everything else through.
pub const BENCH_SINK_PROGRAM: &str = "lb_bench_sink";
/// The same sink as an XDP program, for the paths that redirect XDP
/// frames into the link (a veth hands those to XDP without building a
/// socket buffer: the cheaper sink for them).
pub const BENCH_SINK_XDP_PROGRAM: &str = "lb_bench_sink_xdp";
/// Name of the read-only global ([`BenchSinkConfig`]) of [`BENCH_SINK_PROGRAM`]
/// and [`BENCH_SINK_XDP_PROGRAM`].
pub const BENCH_SINK_GLOBAL: &str = "LB_BENCH_SINK";
/// Bytes of the generator's frames: the smallest Ethernet frame, 64 bytes on
/// the wire with its 4-byte FCS.
pub const BENCH_FRAME_BYTES: usize = 60;
/// Slot of [`maps::BENCH`]: frames the generator made on this CPU (it
/// picks the source port from it).
pub const BENCH_SEQUENCE: u32 = 0;
/// Slot of [`maps::BENCH`]: frames the sink counted and dropped on this CPU.
pub const BENCH_DELIVERED: u32 = 1;
/// Entries of [`maps::BENCH`].
pub const BENCH_SLOTS: u32 = 2;

/// What the baseline program ([`BASELINE_PROGRAM`]) forwards: packets to
/// `vip:vport` go to `backend:bport` out of `int_ifindex`, packets from
/// `backend:bport` come back from `vip:vport` out of `ext_ifindex`, with
/// these MACs. Addresses and ports in network order, like the maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineConfig {
    pub vip: [u8; 16],
    pub vport: [u8; 2],
    pub backend: [u8; 16],
    pub bport: [u8; 2],
    /// [`AF_INET`] or [`AF_INET6`] (both addresses); 0 forwards nothing.
    pub family: u8,
    pub pad: [u8; 3],
    pub ext_ifindex: u32,
    pub int_ifindex: u32,
    pub lb_ext_mac: [u8; 6],
    pub lb_int_mac: [u8; 6],
    pub client_mac: [u8; 6],
    pub backend_mac: [u8; 6],
}

impl BaselineConfig {
    /// All zero: forwards nothing (the value in the object until user space
    /// sets it).
    pub const UNSET: Self = Self {
        vip: [0; 16],
        vport: [0; 2],
        backend: [0; 16],
        bport: [0; 2],
        family: 0,
        pad: [0; 3],
        ext_ifindex: 0,
        int_ifindex: 0,
        lb_ext_mac: [0; 6],
        lb_int_mac: [0; 6],
        client_mac: [0; 6],
        backend_mac: [0; 6],
    };
}

/// What the generator ([`BENCH_GEN_PROGRAM`]) sends: an IPv4 UDP or TCP
/// frame of [`BENCH_FRAME_BYTES`] with valid checksums (a TCP segment
/// shorter than that followed by Ethernet padding). Frame number `n` made on
/// a CPU leaves with source port `sport + n % flows` (its L4 checksum
/// updated); `flows` 1 or 0: the frame as it is. With `sources` above 1,
/// its source address gets `n % sources` added to its low 16 bits (both
/// checksums updated) and its port `(n / sources) % flows`: a new flow
/// for each of `sources * flows` frames in a row.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchGenConfig {
    pub frame: [u8; BENCH_FRAME_BYTES],
    pub flows: u32,
    pub sources: u32,
}

impl BenchGenConfig {
    /// All zero: a frame of zeros (the value in the object until user space
    /// sets it).
    pub const UNSET: Self = Self {
        frame: [0; BENCH_FRAME_BYTES],
        flows: 0,
        sources: 0,
    };
}

/// What the sink ([`BENCH_SINK_PROGRAM`]) counts and drops: TCP or UDP to
/// `addr:port` (network order), IPv4 without options.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchSinkConfig {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    /// [`AF_INET`] (the first 4 bytes of `addr`); anything else counts
    /// nothing.
    pub family: u8,
    pub pad: u8,
}

impl BenchSinkConfig {
    /// All zero: counts nothing.
    pub const UNSET: Self = Self {
        addr: [0; 16],
        port: [0; 2],
        family: 0,
        pad: 0,
    };
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(
            size_of::<BaselineConfig>(),
            16 + 2 + 16 + 2 + 1 + 3 + 4 + 4 + 4 * 6
        );
        assert_eq!(size_of::<BenchGenConfig>(), BENCH_FRAME_BYTES + 4 + 4);
        assert_eq!(size_of::<BenchSinkConfig>(), 16 + 2 + 1 + 1);
    }
}
