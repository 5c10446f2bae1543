//! `bulk_copy_1m_s`: a standby that joins an active holding 1,000,000
//! flows.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, Map, MapData};
use lb_common::{Flow, FlowKey, maps};
use lb_tests::{daemon::DaemonProcess, flow_pair, rig::Rig};

use crate::{
    BULK_FLOWS, BULK_LIMIT,
    pair::{Active, FlowSource, status, test_run},
};

/// lb2 killed, lb1's flow table filled with [`BULK_FLOWS`] new flows, lb2
/// started again: seconds from its start until it is caught up (the
/// active may connect before the standby's API answers), and a line of
/// details.
pub(super) fn bulk_copy(
    rig: &Rig,
    active: &Active,
    lb1: &DaemonProcess,
    lb2: &mut DaemonProcess,
    flows: &mut FlowSource,
) -> Result<(f64, String)> {
    lb2.kill9();
    let filling = Instant::now();
    let mut wrong = 0u64;
    for _ in 0..BULK_FLOWS {
        let (syn, ack) = flows.next_flow();
        for frame in [syn.build(), ack.build()] {
            if test_run(&active.program, active.ingress, &frame)? != active.action {
                wrong += 1;
            }
        }
    }
    let filled = filling.elapsed();
    if wrong > 0 {
        bail!("{wrong} of the {BULK_FLOWS} new flows got another action");
    }
    let path = lb1.files().pin_dir.join(maps::FLOWS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let table: HashMap<MapData, FlowKey, Flow> = HashMap::try_from(Map::LruHashMap(data))?;
    let held = table.keys().filter(Result::is_ok).count();
    let before = status(lb1)?;

    let started = Instant::now();
    lb2.restart(&rig.nodes[1].ns)?;
    let answering = started.elapsed();
    let deadline = Instant::now() + BULK_LIMIT;
    while !lb2.replication_caught_up() {
        if Instant::now() > deadline {
            bail!(
                "lb2 not caught up {BULK_LIMIT:?} after it answered: {}",
                flow_pair::replication(lb2)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let copy = started.elapsed();
    let received = flow_pair::replication(lb2);
    let sending = status(lb1)?;
    let line = format!(
        "bulk copy: lb1's flow table filled with {BULK_FLOWS} new flows in {:.1} s, holds {held} (an LRU of 1,000,000); lb2 restarted, its API answered after {:.2} s, caught up {:.2} s after its start with {} flows written; lb1 sent {} flows in {} messages ({} resent, {} resyncs); lb2's receiving side: {received}",
        filled.as_secs_f64(),
        answering.as_secs_f64(),
        copy.as_secs_f64(),
        received["flows"],
        sending.flows - before.flows,
        sending.messages - before.messages,
        sending.resends - before.resends,
        sending.resyncs - before.resyncs,
    );
    Ok((copy.as_secs_f64(), line))
}
