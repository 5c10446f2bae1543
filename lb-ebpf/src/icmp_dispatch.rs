//! Where an ICMP error goes (`lb_icmp`): the flow it is about, looked up
//! in the flow tables or the reply tables, gives the other end, and the FIB
//! the route. icmp.rs parses the error and translates it.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    programs::XdpContext,
};
use lb_common::{Counter, mode};

use crate::{
    flow_tables::{pinned_flow, unconfirmed_flow, unconfirmed_reply},
    forward::{Route, fib, transmit},
    icmp,
    maps::{LB_FLOWS, LB_REPLIES, LB_TX_PORTS},
    role::is_standby,
};

/// An ICMP error about a flow goes to the flow's other end: from the
/// client's side to the flow's backend, from the backend's side (NAT) to the
/// client (see icmp.rs). Anything else ICMP goes to the kernel.
#[inline(always)]
pub(crate) fn icmp_error(ctx: &XdpContext) -> (Counter, u32) {
    let mut err = icmp::IcmpError::new();
    if !icmp::parse(ctx, &mut err) {
        return (Counter::PassIcmp, XDP_PASS);
    }
    if is_standby() {
        return (Counter::PassStandby, XDP_PASS);
    }
    // From the client's side the quoted packet reversed is the flow's key,
    // from the backend's side its NAT reply key.
    // The reply tables are looked up only when the flow tables miss.
    let flow = pinned_flow(&LB_FLOWS, &err.flow).or_else(|| unconfirmed_flow(&err.flow));
    let towards = if let Some((flow, backend)) = flow {
        if flow.mode == mode::DSR {
            icmp::Towards::DsrBackend(backend)
        } else {
            icmp::Towards::NatBackend(backend)
        }
    } else if let Some(reply) = LB_REPLIES
        .get_ptr(&err.flow)
        .or_else(|| unconfirmed_reply(&err.flow))
    {
        // SAFETY: a map value pointer from a successful lookup (read in
        // place: the stack has no room for a copy).
        icmp::Towards::Client(unsafe { &*reply })
    } else {
        return (Counter::PassIcmp, XDP_PASS);
    };
    let (counter, action) = icmp_send(ctx, &err, &towards);
    match counter {
        // Counted apart from the flows' own packets.
        Counter::Forwarded => (Counter::ForwardedIcmp, action),
        other => (other, action),
    }
}

/// The error translated (NAT) and sent where the FIB says: to the backend
/// from where the error came from, to the client as the flow's replies go
/// (from the VIP). One FIB lookup (no next-hop cache: errors are rare) for
/// every case, as each inlined lookup takes its own room on the stack.
#[inline(always)]
fn icmp_send(ctx: &XdpContext, err: &icmp::IcmpError, towards: &icmp::Towards) -> (Counter, u32) {
    let dsr = matches!(towards, icmp::Towards::DsrBackend(_));
    if !dsr && err.outer.ttl <= 1 {
        return (Counter::PassTtl, XDP_PASS);
    }
    let (src, dst) = match towards {
        icmp::Towards::DsrBackend(backend) | icmp::Towards::NatBackend(backend) => {
            (&err.outer.key.src, &backend.addr)
        }
        icmp::Towards::Client(reply) => (&reply.vip, &err.outer.key.dst),
    };
    match fib(ctx, &err.outer, src, dst) {
        Route::Forward {
            ifindex,
            smac,
            dmac,
        } => {
            if !icmp::translate(ctx, err, towards, true) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            transmit(ctx, &LB_TX_PORTS, ifindex, smac, dmac)
        }
        // As for the flow's packets: the kernel holds the VIP and would
        // answer for it (see dsr_forward in send.rs).
        Route::NoNeighbour if dsr => (Counter::DropNoNeighbour, XDP_DROP),
        Route::NoNeighbour => {
            if !icmp::translate(ctx, err, towards, false) {
                return (Counter::PassMalformed, XDP_PASS);
            }
            (Counter::PassNoNeighbour, XDP_PASS)
        }
        Route::Miss => (Counter::PassFibMiss, XDP_PASS),
    }
}
