//! A new flow's pick: the backend the service's Maglev table (`LB_MAGLEV`)
//! gives the flow's hash, else the service's sorry server.
use lb_common::{Backend, Flow, FlowKey, MaglevTable, NO_BACKEND, Service, hash};

use crate::{
    flow_tables::live_backend,
    maps::{LB_FLOW_HASH, LB_MAGLEV},
    packet::Packet,
};

/// The service's Maglev pick for this flow (or its sorry server).
#[inline(always)]
pub(crate) fn new_pick(pkt: &Packet, service: &Service) -> Option<(Flow, Backend)> {
    let id = maglev_pick(service.id, &pkt.key)
        .filter(|&id| live_backend(id).is_some())
        .or_else(|| (service.sorry != NO_BACKEND).then_some(service.sorry))?;
    let backend = live_backend(id)?;
    let flow = Flow {
        backend: id,
        generation: backend.generation,
        service: service.id,
        mode: service.mode,
    };
    Some((flow, backend))
}

/// The backend the service's Maglev table gives this flow.
#[inline(always)]
fn maglev_pick(service: u32, key: &FlowKey) -> Option<u32> {
    let table = LB_MAGLEV.get_ptr(&service)?;
    // The modulo keeps the slot in range, but the verifier cannot see that
    // through it: hide the value from LLVM so that `get` keeps its check.
    let slot = core::hint::black_box(hash::maglev_slot_of(flow_hash(key)) as usize);
    // SAFETY: a map value pointer from a successful lookup; `get` checks the
    // slot against the table's length.
    let id = MaglevTable::id_of(*unsafe { &(*table).backends }.get(slot)?);
    (id != NO_BACKEND).then_some(id)
}

/// The flow hash of client-side `key`: `lb_xdp`'s, left in
/// `LB_FLOW_HASH` for this very key (see
/// [`crate::flow_tables::is_new_flow`]), else taken.
#[inline(always)]
fn flow_hash(key: &FlowKey) -> u32 {
    match LB_FLOW_HASH.get(0) {
        Some(memo) if memo.key.is(key) => memo.hash,
        _ => hash::flow_hash(key),
    }
}
