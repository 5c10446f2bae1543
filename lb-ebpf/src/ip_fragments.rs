//! IP fragments: a first fragment records where its datagram went
//! (`LB_FRAGMENTS`); the later ones, which carry no ports, follow it.
use aya_ebpf::{bindings::xdp_action::XDP_PASS, programs::XdpContext};
use lb_common::{Counter, Fragment, FragmentKey, Reply, fragment_kind, mode};

use crate::{
    flow_tables::live_backend,
    maps::LB_FRAGMENTS,
    packet::Packet,
    role::is_standby,
    send::{forward, nat_reply},
};

/// A fragment without ports: it follows its datagram's first fragment, if
/// that went through here (see [`remember_fragment`]); else the kernel's.
#[inline(always)]
pub(crate) fn later_fragment(ctx: &XdpContext, pkt: &Packet) -> (Counter, u32) {
    let Some(entry) = LB_FRAGMENTS.get_ptr(&fragment_key(pkt)) else {
        return (Counter::PassFragment, XDP_PASS);
    };
    // SAFETY: a map value pointer from a successful lookup.
    let entry = unsafe { *entry };
    if entry.kind == fragment_kind::REPLY {
        let reply = Reply {
            vip: entry.vip,
            vport: [0; 2],
            pad: [0; 2],
            service: entry.service,
            backend: entry.backend,
        };
        return nat_reply(ctx, pkt, reply);
    }
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    // Only to the very backend the first fragment went to.
    let Some(backend) =
        live_backend(entry.backend).filter(|backend| backend.generation == entry.generation)
    else {
        return (Counter::PassFragment, XDP_PASS);
    };
    let service_mode = if entry.kind == fragment_kind::DSR {
        mode::DSR
    } else {
        mode::NAT
    };
    forward(
        ctx,
        pkt,
        entry.service,
        service_mode,
        entry.backend,
        &backend,
        false,
    )
}

/// A first fragment records where its datagram goes, for the later
/// fragments. A full table evicts its least recently used datagram.
#[inline(always)]
pub(crate) fn remember_fragment(
    pkt: &Packet,
    kind: u32,
    backend: u32,
    generation: u32,
    service: u32,
    vip: &[u8; 16],
) {
    let entry = Fragment {
        kind,
        backend,
        generation,
        service,
        vip: *vip,
    };
    let _ = LB_FRAGMENTS.insert(&fragment_key(pkt), &entry, 0);
}

/// The key of the datagram a fragment belongs to.
#[inline(always)]
fn fragment_key(pkt: &Packet) -> FragmentKey {
    FragmentKey {
        src: pkt.key.src,
        dst: pkt.key.dst,
        id: pkt.frag_id,
        proto: pkt.key.proto,
        family: pkt.key.family,
        pad: [0; 2],
    }
}
