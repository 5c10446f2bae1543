//! Bench-only programs for the small-packet figure of `cargo xtask bench
//! dataplane` (docs/benchmarks.md). The daemon never loads or attaches them.
//!
//! - `lb_bench_gen`, the generator: run by `BPF_PROG_TEST_RUN` with live
//!   frames in the client's namespace, it writes the configured frame over
//!   each frame (the kernel recycles the frames' pages without copying the
//!   input in again, and the paths downstream rewrite them in place), gives
//!   it the next source port and sends it out of the interface the run says
//!   it came in on (`XDP_TX`).
//! - `lb_bench_sink`, the counter: on the link the LB sends out of (its
//!   peer end), it counts and drops the IPv4 TCP or UDP packets to one
//!   address and port, and lets the rest through (ARP, ICMP...). Two
//!   programs with one rule ([`counts`]), one per kind of arrival, each the
//!   cheaper for it, since the sink's work takes CPU from the generator:
//!   `lb_bench_sink`, a tc ingress classifier, for the kernel's forwarded
//!   packets (socket buffers, which a veth would copy into a page for an
//!   XDP program), and `lb_bench_sink_xdp` for the frames an XDP program
//!   redirects (a veth hands them to its XDP program as they are, without
//!   building a socket buffer).
use aya_ebpf::{
    bindings::{
        TC_ACT_OK, TC_ACT_SHOT,
        xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    },
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use lb_common::{
    AF_INET, BENCH_DELIVERED, BENCH_FRAME_BYTES, BENCH_SEQUENCE, BENCH_SLOTS, BenchGenConfig,
    BenchSinkConfig, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    csum::Diff,
    packet::{ETH_P_IP, ptr_at, read},
};

#[map(name = "LB_BENCH")]
static LB_BENCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(BENCH_SLOTS, 0);

/// Set by user space when it loads the object; read-only for the kernel.
#[unsafe(no_mangle)]
static LB_BENCH_GEN: BenchGenConfig = BenchGenConfig::UNSET;
/// Set by user space when it loads the object; read-only for the kernel.
#[unsafe(no_mangle)]
static LB_BENCH_SINK: BenchSinkConfig = BenchSinkConfig::UNSET;

/// Offsets in the generator's frame: Ethernet, IPv4 without options.
const IP_PROTO: usize = 23;
const IP_CSUM: usize = 24;
/// The low 16 bits of the source address.
const SRC_LOW: usize = 28;
const SPORT: usize = 34;
const UDP_CSUM: usize = 40;
const TCP_CSUM: usize = 50;

#[xdp]
pub fn lb_bench_gen(ctx: XdpContext) -> u32 {
    // Hidden from the compiler, as in baseline.rs: read at run time.
    // SAFETY: a valid pointer to a static.
    let cfg = unsafe { &*core::hint::black_box(&raw const LB_BENCH_GEN) };
    let Some(seq) = LB_BENCH.get_ptr_mut(BENCH_SEQUENCE) else {
        return XDP_ABORTED;
    };
    // SAFETY: this CPU's slot; nothing else runs this program on it now.
    let n = unsafe {
        let n = *seq;
        *seq = n + 1;
        n
    };
    let mut frame = cfg.frame;
    let udp = frame[IP_PROTO] == IPPROTO_UDP;
    // With several sources the address changes from frame to frame, the
    // port once per round of them.
    let sources = u64::from(cfg.sources.max(1));
    if cfg.flows > 1 {
        let port = ((n / sources) % u64::from(cfg.flows)) as u16;
        if udp {
            add_to_word::<SPORT, UDP_CSUM>(&mut frame, port, true, false);
        } else {
            add_to_word::<SPORT, TCP_CSUM>(&mut frame, port, false, false);
        }
    }
    if sources > 1 {
        let source = (n % sources) as u16;
        if udp {
            add_to_word::<SRC_LOW, UDP_CSUM>(&mut frame, source, true, true);
        } else {
            add_to_word::<SRC_LOW, TCP_CSUM>(&mut frame, source, false, true);
        }
    }
    let Some(out) = ptr_at::<[u8; BENCH_FRAME_BYTES]>(&ctx, 0) else {
        return XDP_ABORTED;
    };
    // SAFETY: ptr_at checked that the frame holds these bytes.
    unsafe { *out = frame };
    XDP_TX
}

/// Adds `offset` to the 16-bit word at `AT` (the source port, or the low
/// half of the source address) and updates the L4 checksum at `CSUM` and,
/// for an address (`ip_header`), the IPv4 header checksum (RFC 1624). The
/// L4 checksum covers the address too, through its pseudo-header. A UDP
/// checksum that comes out as zero is sent as 0xffff: zero means "no
/// checksum".
#[inline(always)]
fn add_to_word<const AT: usize, const CSUM: usize>(
    frame: &mut [u8; BENCH_FRAME_BYTES],
    offset: u16,
    udp: bool,
    ip_header: bool,
) {
    let old = u16::from_be_bytes([frame[AT], frame[AT + 1]]);
    let new = old.wrapping_add(offset);
    let mut diff = Diff::new();
    diff.word(old, new);
    if ip_header {
        let ip_csum = diff.apply(u16::from_be_bytes([frame[IP_CSUM], frame[IP_CSUM + 1]]));
        [frame[IP_CSUM], frame[IP_CSUM + 1]] = ip_csum.to_be_bytes();
    }
    let mut csum = diff.apply(u16::from_be_bytes([frame[CSUM], frame[CSUM + 1]]));
    if udp && csum == 0 {
        csum = 0xffff;
    }
    [frame[AT], frame[AT + 1]] = new.to_be_bytes();
    [frame[CSUM], frame[CSUM + 1]] = csum.to_be_bytes();
}

#[classifier]
pub fn lb_bench_sink(ctx: TcContext) -> i32 {
    match ctx.load::<[u8; SINK_HEAD]>(0) {
        Ok(head) if counts(&head) => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    }
}

#[xdp]
pub fn lb_bench_sink_xdp(ctx: XdpContext) -> u32 {
    match read::<SINK_HEAD>(&ctx, 0) {
        Some(head) if counts(&head) => XDP_DROP,
        _ => XDP_PASS,
    }
}

/// Bytes of a packet the sink reads: Ethernet, IPv4 without options (the
/// generator's frames), the ports.
const SINK_HEAD: usize = 38;

/// Whether the sink counts (and drops) a packet that starts with `head`:
/// IPv4 TCP or UDP to the configured address and port. Counts it if so.
#[inline(always)]
fn counts(head: &[u8; SINK_HEAD]) -> bool {
    // SAFETY: a valid pointer to a static.
    let cfg = unsafe { &*core::hint::black_box(&raw const LB_BENCH_SINK) };
    let proto = head[IP_PROTO];
    if cfg.family != AF_INET
        || u16::from_be_bytes([head[12], head[13]]) != ETH_P_IP
        || head[14] != 0x45
        || (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        || u32::from_ne_bytes([head[30], head[31], head[32], head[33]])
            != u32::from_ne_bytes([cfg.addr[0], cfg.addr[1], cfg.addr[2], cfg.addr[3]])
        || u16::from_ne_bytes([head[36], head[37]]) != u16::from_ne_bytes(cfg.port)
    {
        return false;
    }
    if let Some(count) = LB_BENCH.get_ptr_mut(BENCH_DELIVERED) {
        // SAFETY: this CPU's slot.
        unsafe { *count += 1 };
    }
    true
}
