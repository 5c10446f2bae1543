//! `new_flow_ns`: the new flow's cost with the replication switch off
//! and on, on lb1's program; and the diagnostic in a fixture that tells
//! the report's own cost from the ring reader's wakeups.
use std::{net::SocketAddr, thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, Map, MapData};
use lb_common::{REPLICATE_ON, maps};
use lb_tests::{
    daemon::DaemonProcess,
    rig::VIP_V4,
    testrun::{Durations, measure},
};

use crate::{
    NEW_FLOW_BLOCK_RUNS, NEW_FLOW_BLOCKS,
    pair::{Active, FlowSource, status, test_run},
};

/// Medians of the new-flow runs with the switch off and on, and a line of
/// details.
pub(super) fn new_flow_cost(
    active: &Active,
    lb1: &DaemonProcess,
    flows: &mut FlowSource,
) -> Result<(f64, f64, String)> {
    let path = lb1.files().pin_dir.join(maps::REPLICATE);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut switch: Array<MapData, u32> = Array::try_from(Map::Array(data))?;
    let lost_before = status(lb1)?.records_lost;
    let result = interleaved(|on| {
        switch.set(0, if on { REPLICATE_ON } else { 0 }, 0)?;
        // Each run: a flow's SYN, not measured, then the ACK that
        // confirms the flow (and reports it when the switch is on),
        // measured.
        let mut syn_failed = None;
        let durations = measure(
            &active.program,
            active.ingress,
            NEW_FLOW_BLOCK_RUNS,
            active.action,
            Duration::from_secs(60),
            |_, buf| {
                let (syn, ack) = flows.next_flow();
                if let Err(err) = test_run(&active.program, active.ingress, &syn.build()) {
                    syn_failed.get_or_insert(err);
                }
                *buf = ack.build();
            },
        )?;
        match syn_failed {
            Some(err) => Err(err.context("a flow's SYN")),
            None => Ok(durations),
        }
    });
    // Back as lb1's daemon set it, whatever happened.
    switch.set(0, REPLICATE_ON, 0)?;
    let (without, with) = result?;
    let lost = status(lb1)?.records_lost - lost_before;
    if lost > 0 {
        bail!(
            "{lost} flow records lost while measuring: the ring was full, the figure is not a new flow's"
        );
    }
    let line = compare("new_flow_ns, lb1's program", &without, &with);
    Ok((without.median_ns() as f64, with.median_ns() as f64, line))
}

/// [`NEW_FLOW_BLOCKS`] blocks of `block(false)` (the switch off) and
/// `block(true)` (on) each, the order alternated block by block, so that
/// both see the same machine: (off, on).
pub(super) fn interleaved(
    mut block: impl FnMut(bool) -> Result<Durations>,
) -> Result<(Durations, Durations)> {
    let (mut off, mut on) = (Durations::default(), Durations::default());
    for i in 0..NEW_FLOW_BLOCKS {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for switch in order {
            let durations = block(switch)?;
            if switch { &mut on } else { &mut off }.merge(&durations);
        }
    }
    Ok((off, on))
}

/// The new-flow figures with the switch off and on, side by side.
pub(super) fn compare(what: &str, off: &Durations, on: &Durations) -> String {
    format!(
        "{what}: new flow without {} ns, with {} ns (medians of {} runs each, {NEW_FLOW_BLOCKS} interleaved blocks), ratio {:.3}; means {:.1} / {:.1} ns, ratio {:.3}",
        off.median_ns(),
        on.median_ns(),
        on.runs(),
        on.median_ns() as f64 / off.median_ns() as f64,
        off.mean_ns(),
        on.mean_ns(),
        on.mean_ns() / off.mean_ns()
    )
}

/// In a fixture namespace, a program of its own (`Dataplane::load`, one
/// NAT service), new flows with the switch off and on, in interleaved
/// blocks, twice: first with nobody waiting on the ring (this thread
/// drains it between blocks), then with a reader awaiting it through
/// tokio's `AsyncFd` on another thread, as the daemon's replication task
/// does. Not in the JSON: it says whether the cost is the report itself
/// (the ring's reserve and submit) or the wakeup of a waiting reader (the
/// ring wakes its reader whenever the reader has caught up, so a reader
/// that keeps up is woken for nearly every record).
pub(super) fn where_the_new_flow_cost_goes(ext: u32, int: u32) -> Result<Vec<String>> {
    use lb_ctl::{
        balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec},
        dataplane::Dataplane,
    };
    let spec = ServiceSpec {
        vip: VIP_V4.into(),
        port: 80,
        protocol: Protocol::Tcp,
        mode: Mode::Nat,
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: SocketAddr::new(lb_tests::rig::backend_v4(i).into(), 8080),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    };
    let mut dp = Dataplane::load()?;
    dp.add_tx_port(ext)?;
    dp.add_tx_port(int)?;
    let (_, ops) = Balancer::new().plan(std::slice::from_ref(&spec))?;
    dp.apply(&ops)?;
    let mut records = dp.flow_records()?;
    let mut flows = FlowSource::default();
    // A flow's SYN and the ACK that confirms (and reports) it.
    let flow = |flows: &mut FlowSource| {
        let (syn, ack) = flows.next_flow();
        let macs = |f: lb_tests::packets::Frame| {
            f.macs(lb_tests::packets::CLIENT_MAC, lb_tests::fixnet::LB_EXT_MAC)
                .build()
        };
        (macs(syn), macs(ack))
    };
    let (syn, ack) = flow(&mut flows);
    let program = lb_ctl::dataplane::program(dp.ebpf_mut())?;
    let expect = test_run(program, ext, &syn)?;
    if test_run(program, ext, &ack)? != expect {
        bail!("a flow's SYN and its ACK got different actions");
    }
    let mut lines = Vec::new();
    let mut blocks = |dp: &mut Dataplane, after_on: &mut dyn FnMut()| {
        let result = interleaved(|on| {
            dp.set_replicate(on)?;
            let program = lb_ctl::dataplane::program(dp.ebpf_mut())?;
            let mut syn_failed = None;
            let durations = measure(
                program,
                ext,
                NEW_FLOW_BLOCK_RUNS,
                expect,
                Duration::from_secs(60),
                |_, buf| {
                    let (syn, ack) = flow(&mut flows);
                    if let Err(err) = test_run(program, ext, &syn) {
                        syn_failed.get_or_insert(err);
                    }
                    *buf = ack;
                },
            )?;
            if let Some(err) = syn_failed {
                return Err(err.context("a flow's SYN"));
            }
            if on {
                after_on();
            }
            Ok(durations)
        });
        dp.set_replicate(false)?;
        result
    };
    // Nobody waits on the ring: drained between blocks by this thread.
    let mut drained = 0usize;
    let (off, on) = blocks(&mut dp, &mut || {
        drained += records.drain(usize::MAX).0.len();
    })?;
    lines.push(compare(
        "diagnostic, fixture, no reader waiting (the ring drained between blocks)",
        &off,
        &on,
    ));
    if drained as u64 != on.runs() {
        bail!("drained {drained} records for {} reported runs", on.runs());
    }
    // A reader awaiting the ring on another thread, as the daemon's.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = thread::spawn(move || -> Result<usize> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let mut ring = records.into_async()?;
            let mut read = 0usize;
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(read),
                    batch = ring.next_batch(1000) => read += batch?.0.len(),
                }
            }
        })
    });
    let (off, on) = blocks(&mut dp, &mut || {})?;
    thread::sleep(Duration::from_millis(100));
    let _ = stop.send(());
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the ring reader panicked"))??;
    lines.push(compare(
        "diagnostic, fixture, a reader awaiting the ring (AsyncFd on another thread, as the daemon's)",
        &off,
        &on,
    ));
    if read as u64 != on.runs() {
        bail!(
            "the reader read {read} records for {} reported runs",
            on.runs()
        );
    }
    Ok(lines)
}
