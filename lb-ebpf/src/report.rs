//! Flow reports for replication. While the node is clustered
//! (`LB_REPLICATE` holds `REPLICATE_ON`), every flow the program pins is
//! reported to the daemon through a ring buffer (`LB_FLOW_RECORDS`), which
//! sends it on to the standby. Only the new-flow path pays for it: one array
//! read when off; when on, a ring reservation, the record's stores and a
//! submit without a wakeup (the daemon reads the ring on a timer). A full ring is never waited on: the caller
//! counts the loss and the packet goes on.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    maps::{Array, RingBuf},
};
use lb_common::{Backend, Flow, FlowKey, FlowRecord, REPLICATE_ON, record_flags};

/// What became of a flow's report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Replication is off (a standalone node): nothing to report.
    Off,
    /// In the ring.
    Sent,
    /// The ring was full: not reported.
    RingFull,
}

/// Reports the flow pinned under `key` (its table entry `flow`, its
/// `backend`, whether that is the service's sorry server).
#[inline(always)]
pub fn new_flow(
    switch: &Array<u32>,
    ring: &RingBuf,
    key: &FlowKey,
    flow: &Flow,
    backend: &Backend,
    sorry: bool,
) -> Report {
    if switch.get(0).copied() != Some(REPLICATE_ON) {
        return Report::Off;
    }
    let Some(mut entry) = ring.reserve::<FlowRecord>(0) else {
        return Report::RingFull;
    };
    // Written in place: a record on the stack would take 80 of its 512
    // bytes.
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points to a reserved, writable FlowRecord in the
    // ring; every field is written before the submit.
    unsafe {
        (*record).key = *key;
        (*record).backend_addr = backend.addr;
        (*record).backend_port = backend.port;
        (*record).flags = if sorry { record_flags::SORRY } else { 0 };
        (*record).pad = 0;
        (*record).flow = *flow;
        (*record).pad2 = 0;
    }
    // No wakeup: the daemon reads the ring on a timer. The kernel's
    // default wakes the reader whenever it has caught up, nearly every
    // record at a moderate rate, and a wakeup cost the new flow's packet
    // more than the record itself.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    Report::Sent
}
