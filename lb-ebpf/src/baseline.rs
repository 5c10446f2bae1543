//! `lb_baseline`: the benchmark's yardstick. The same parse and the same NAT
//! rewrite as `lb_xdp`, for one service and one backend fixed at load time
//! in a read-only global, with no map lookup, no FIB lookup and no counter.
//! What `lb_xdp` costs beyond it is the price of its tables. It forwards real
//! traffic too (one backend), so the rig can measure it under load.
//!
//! `lb_baseline_lookup` is the same with one lookup per packet in
//! `LB_FLOWS` (an insert when it misses, so that the flow's next packets
//! find it): the one lookup an established packet of `lb_xdp` cannot do
//! without. The benchmark runs both; what `lb_xdp` costs beyond the second
//! is the price of everything but that lookup.
use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    helpers::generated::bpf_redirect,
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{BaselineConfig, Flow, same_addr};

use crate::{
    packet::{self, Packet, write},
    rewrite::{Side, rewrite},
};

/// Set by user space when it loads the object (`EbpfLoader::override_global`);
/// the kernel sees it as a frozen, read-only map.
#[unsafe(no_mangle)]
static LB_BASELINE: BaselineConfig = BaselineConfig::UNSET;

/// The yardstick: parse, rewrite, send; no lookup.
#[xdp(frags)]
pub fn lb_baseline(ctx: XdpContext) -> u32 {
    baseline(&ctx, false)
}

/// The yardstick with one connection-table lookup per packet.
#[xdp(frags)]
pub fn lb_baseline_lookup(ctx: XdpContext) -> u32 {
    baseline(&ctx, true)
}

/// The baseline's work on a frame; with `lookup`, the frame's key is also
/// looked up in `LB_FLOWS` (inserted when missing).
#[inline(always)]
fn baseline(ctx: &XdpContext, lookup: bool) -> u32 {
    let Ok(pkt) = packet::parse(ctx) else {
        return XDP_PASS;
    };
    if lookup && crate::maps::LB_FLOWS.get_ptr(&pkt.key).is_none() {
        // The value is never read: the entry is there to be found.
        let flow = Flow {
            backend: 0,
            generation: 0,
            service: 0,
            mode: 0,
        };
        let _ = crate::maps::LB_FLOWS.insert(&pkt.key, &flow, 0);
    }
    // The pointer is hidden from the compiler so that it reads the fields
    // at run time rather than folding in the all-zero value of the object.
    // SAFETY: a valid pointer to a static.
    let cfg = unsafe { &*core::hint::black_box(&raw const LB_BASELINE) };
    if pkt.key.family != cfg.family || pkt.ttl <= 1 {
        return XDP_PASS;
    }
    if same_addr(&pkt.key.dst, &cfg.vip) && pkt.key.dport == cfg.vport {
        let out = Out {
            ifindex: cfg.int_ifindex,
            smac: cfg.lb_int_mac,
            dmac: cfg.backend_mac,
        };
        return send(ctx, &pkt, Side::Destination, &cfg.backend, cfg.bport, out);
    }
    if same_addr(&pkt.key.src, &cfg.backend) && pkt.key.sport == cfg.bport {
        let out = Out {
            ifindex: cfg.ext_ifindex,
            smac: cfg.lb_ext_mac,
            dmac: cfg.client_mac,
        };
        return send(ctx, &pkt, Side::Source, &cfg.vip, cfg.vport, out);
    }
    XDP_PASS
}

/// Where a rewritten frame leaves.
struct Out {
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// Rewrites one side, sets the MACs and sends the frame out of `out`: back
/// where it came from (XDP_TX) or by the plain redirect helper.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    pkt: &Packet,
    side: Side,
    addr: &[u8; 16],
    port: [u8; 2],
    out: Out,
) -> u32 {
    if !rewrite(ctx, pkt, side, addr, port, true)
        || !write(ctx, 0, out.dmac)
        || !write(ctx, 6, out.smac)
    {
        return XDP_PASS;
    }
    if out.ifindex == ctx.ingress_ifindex() as u32 {
        return XDP_TX;
    }
    // SAFETY: a helper call with plain integer arguments.
    unsafe { bpf_redirect(out.ifindex, 0) as u32 }
}
