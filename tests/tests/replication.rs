//! Flow reports for replication: while replication is on, the program
//! reports every flow it pins (once, with its table entry and its backend's
//! address) in the flow record ring; an existing flow reports nothing; a
//! full ring is counted and the packet still forwarded; replication off
//! reports nothing. The real object, run by BPF_PROG_TEST_RUN in a fixture
//! namespace. Needs root.
mod support;

use std::net::SocketAddr;

use anyhow::{Context as _, Result, ensure};
use lb_common::{Counter, Flow, FlowRecord, mode, record_flags};
use lb_ctl::{
    balancer::{Mode, Protocol, addr_bytes},
    dataplane::{FlowRecords, RING_CAPACITY},
};
use lb_tests::{
    fixnet::{self, LB_INT_MAC},
    fixture::{Action, Expect},
    packets::{ACK, Frame, L4, SYN},
};
use support::*;

/// The record the program must report for `frame`'s flow, pinned as `flow`
/// to `target`.
fn expected_record(frame: &Frame, target: SocketAddr, flow: Flow, sorry: bool) -> FlowRecord {
    FlowRecord {
        key: frame.flow_key(),
        backend_addr: addr_bytes(target.ip()),
        backend_port: target.port().to_be_bytes(),
        flags: if sorry { record_flags::SORRY } else { 0 },
        pad: 0,
        pad2: 0,
        flow,
    }
}

fn drain_all(records: &mut FlowRecords) -> Result<Vec<FlowRecord>> {
    let (records, bad) = records.drain(usize::MAX);
    ensure!(bad.is_empty(), "items of the wrong size: {bad:?}");
    Ok(records)
}

/// Sends a flow's first packet and the client's next one, which confirms
/// the flow (an ACK after a SYN, a second datagram).
fn open(lb: &mut Lb, frame: &Frame) -> Result<()> {
    let next = Frame {
        l4: match frame.l4 {
            L4::Tcp { .. } => ACK,
            other => other,
        },
        ..frame.clone()
    };
    for packet in [frame, &next] {
        let out = lb.send(&packet.build(), lb.ext)?;
        ensure!(
            out.action == Action::Redirect,
            "{packet:?}: {:?}",
            out.action
        );
    }
    Ok(())
}

#[test]
fn a_new_flow_is_reported_once_with_its_entry_and_backend() {
    with_lb(|lb| {
        let mut records = lb.dp.flow_records()?;
        lb.dp.set_replicate(true)?;
        let mut sport = 41000;
        for (v6, protocol) in COMBOS {
            for service_mode in [Mode::Nat, Mode::Dsr] {
                // A flow of its own each time: an entry left by another
                // service's flow stays in the connection table (stale).
                sport += 1;
                let backend_port = if service_mode == Mode::Nat { 8080 } else { 80 };
                let spec = service(v6, protocol, service_mode, 80, backend_port, 3);
                lb.configure(std::slice::from_ref(&spec))?;
                let service_id = lb.balancer.service_id(&spec.key()).context("service id")?;
                let frame = first(&spec, sport, l4_of(protocol));
                let target = lb.predicted(&spec, &frame)?;
                let id = lb
                    .balancer
                    .backend_id(&spec.key(), target)
                    .context("backend id")?;
                let generation = lb.balancer.tables().backends[&id].generation;
                // The first packet (a SYN twice: a retransmission) pins the
                // flow unconfirmed, and nothing is reported.
                let sends = if protocol == Protocol::Tcp { 2 } else { 1 };
                for _ in 0..sends {
                    let out = lb.send(&frame.build(), lb.ext)?;
                    ensure!(
                        out.action == Action::Redirect,
                        "{frame:?}: {:?}",
                        out.action
                    );
                }
                let flow = Flow {
                    backend: id,
                    generation,
                    service: service_id,
                    mode: if service_mode == Mode::Nat {
                        mode::NAT
                    } else {
                        mode::DSR
                    },
                };
                ensure!(
                    lb.dp.new_flow(&frame.flow_key())? == Some(flow),
                    "{frame:?} pinned unconfirmed"
                );
                ensure!(
                    lb.dp.flow(&frame.flow_key())?.is_none(),
                    "{frame:?} confirmed by its first packet"
                );
                let got = drain_all(&mut records)?;
                ensure!(
                    got.is_empty(),
                    "{frame:?}: unconfirmed flow reported {got:#?}"
                );

                // The client's next packet confirms it: reported once.
                let mut next = frame.clone();
                next.l4 = if protocol == Protocol::Tcp {
                    ACK
                } else {
                    L4::Udp
                };
                let out = lb.send(&next.build(), lb.ext)?;
                ensure!(out.action == Action::Redirect, "{next:?}: {:?}", out.action);
                ensure!(
                    lb.dp.flow(&frame.flow_key())? == Some(flow),
                    "{frame:?} confirmed"
                );
                let got = drain_all(&mut records)?;
                let want = expected_record(&frame, target, flow, false);
                ensure!(
                    got == [want],
                    "{frame:?} ({service_mode:?}): reported {got:#?}, expected exactly {want:#?}"
                );

                // Later packets of the flow, both ways: nothing reported.
                let out = lb.send(&next.build(), lb.ext)?;
                ensure!(out.action == Action::Redirect, "{next:?}: {:?}", out.action);
                if service_mode == Mode::Nat {
                    let reply = Frame::new(target, frame.src, next.l4)
                        .macs(fixnet::backend_mac(backend_index(target)), LB_INT_MAC);
                    let out = lb.send(&reply.build(), lb.int)?;
                    ensure!(
                        out.action == Action::Redirect,
                        "{reply:?}: {:?}",
                        out.action
                    );
                }
                let got = drain_all(&mut records)?;
                ensure!(
                    got.is_empty(),
                    "{frame:?}: an existing flow reported {got:#?}"
                );
            }
        }
        ensure!(lb.dp.counter(Counter::FlowRecordsLost)? == 0);
        Ok(())
    });
}

#[test]
fn a_flow_to_the_sorry_server_is_reported_as_such() {
    with_lb(|lb| {
        let mut records = lb.dp.flow_records()?;
        lb.dp.set_replicate(true)?;
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 1);
        spec.backends[0].state = lb_ctl::balancer::BackendState::Disabled;
        let sorry = SocketAddr::new(backend_ip(false, 2), 8081);
        spec.sorry = Some(sorry);
        lb.configure(std::slice::from_ref(&spec))?;
        let frame = first(&spec, 41001, l4_of(Protocol::Tcp));
        let ack = Frame {
            l4: ACK,
            ..frame.clone()
        };
        for packet in [&frame, &ack] {
            let out = lb.send(&packet.build(), lb.ext)?;
            ensure!(out.action == Action::Redirect, "{:?}", out.action);
        }
        let flow = lb.dp.flow(&frame.flow_key())?.context("confirmed")?;
        let got = drain_all(&mut records)?;
        let want = expected_record(&frame, sorry, flow, true);
        ensure!(got == [want], "reported {got:#?}, expected {want:#?}");
        Ok(())
    });
}

#[test]
fn nothing_is_reported_while_replication_is_off() {
    with_lb(|lb| {
        let mut records = lb.dp.flow_records()?;
        let spec = service(false, Protocol::Udp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let send = |lb: &mut Lb, sport| -> Result<()> {
            let frame = first(&spec, sport, L4::Udp);
            let out = lb.send(&frame.build(), lb.ext)?;
            ensure!(out.action == Action::Redirect, "{:?}", out.action);
            Ok(())
        };
        send(lb, 42000)?;
        ensure!(
            drain_all(&mut records)?.is_empty(),
            "reported while off (default)"
        );
        lb.dp.set_replicate(true)?;
        lb.dp.set_replicate(false)?;
        send(lb, 42001)?;
        ensure!(
            drain_all(&mut records)?.is_empty(),
            "reported after turned off"
        );
        Ok(())
    });
}

#[test]
fn a_full_ring_is_counted_and_the_packet_still_forwarded() {
    with_lb(|lb| {
        let mut records = lb.dp.flow_records()?;
        lb.dp.set_replicate(true)?;
        let spec = service(false, Protocol::Udp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        // Distinct flows (client ports) until the ring is full: it holds
        // RING_CAPACITY records, and nobody reads it meanwhile.
        for i in 0..RING_CAPACITY {
            open(lb, &first(&spec, 1024 + i as u16, L4::Udp))
                .with_context(|| format!("flow {i}"))?;
        }
        ensure!(
            lb.dp.counter(Counter::FlowRecordsLost)? == 0,
            "lost before full"
        );

        let frame = first(&spec, 1024 + RING_CAPACITY as u16, L4::Udp);
        let target = lb.predicted(&spec, &frame)?;
        // Its first datagram; the second confirms the flow, whose record
        // finds the ring full.
        lb.send(&frame.build(), lb.ext)?;
        let expected = frame
            .clone()
            .dst(target)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
        lb.expect(
            &frame,
            lb.ext,
            Expect::Rewritten(Action::Redirect, expected.build()),
        )
        .context("the packet whose report did not fit")?;
        ensure!(lb.dp.counter(Counter::FlowRecordsLost)? == 1);
        ensure!(
            lb.dp.flow(&frame.flow_key())?.is_some(),
            "its flow is pinned all the same"
        );
        ensure!(lb.dp.counter(Counter::Forwarded)? == 2 * (RING_CAPACITY as u64 + 1));

        let got = drain_all(&mut records)?;
        ensure!(
            got.len() == RING_CAPACITY,
            "{} records in the ring",
            got.len()
        );
        ensure!(
            got[0].key == first(&spec, 1024, L4::Udp).flow_key(),
            "first record"
        );
        // Read, the ring takes records again.
        let frame = first(&spec, 1024 + RING_CAPACITY as u16 + 1, L4::Udp);
        open(lb, &frame)?;
        let got = drain_all(&mut records)?;
        ensure!(got.len() == 1 && got[0].key == frame.flow_key(), "{got:#?}");
        ensure!(lb.dp.counter(Counter::FlowRecordsLost)? == 1);
        Ok(())
    });
}

#[test]
fn the_daemon_side_awaits_records_through_async_fd() {
    with_lb(|lb| {
        let records = lb.dp.flow_records()?;
        lb.dp.set_replicate(true)?;
        let spec = service(true, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut records = runtime.block_on(async { records.into_async() })?;
        for sport in [43000, 43001, 43002] {
            open(lb, &first(&spec, sport, l4_of(Protocol::Tcp)))?;
        }
        let (got, bad) = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), records.next_batch(2)).await
        })??;
        ensure!(bad.is_empty());
        let keys: Vec<_> = got.iter().map(|r| r.key).collect();
        let want: Vec<_> = [43000, 43001]
            .map(|sport| first(&spec, sport, l4_of(Protocol::Tcp)).flow_key())
            .to_vec();
        ensure!(keys == want, "first batch {got:#?}");
        let (got, _) = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), records.next_batch(100)).await
        })??;
        ensure!(got.len() == 1, "second batch {got:#?}");
        ensure!(got[0].key == first(&spec, 43002, l4_of(Protocol::Tcp)).flow_key());
        Ok(())
    });
}

/// The foundations end to end: the active's program reports its flows, the
/// records cross the wire format, and a standby whose configuration came
/// by another path (other ids) and whose Maglev table would send some of
/// these flows elsewhere (a backend added since) writes them into its own
/// tables; taking over, it sends each flow's next packet to the flow's
/// backend and translates that backend's replies back to the VIP.
#[test]
fn replicated_flows_keep_their_backend_on_a_standby_with_other_ids_and_table() {
    use lb_ctl::{
        balancer::Balancer,
        dataplane::{self, Dataplane},
        replication::{record, translate},
        role::Role,
    };
    with_lb(|lb| {
        let mut records = lb.dp.flow_records()?;
        lb.dp.set_replicate(true)?;
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows: Vec<Frame> = (44000..44040)
            .map(|sport| first(&spec, sport, SYN))
            .collect();
        for frame in &flows {
            open(lb, frame)?;
        }
        let (got, bad) = records.drain(usize::MAX);
        ensure!(got.len() == flows.len() && bad.is_empty());
        let wires = got
            .iter()
            .map(translate::from_record)
            .collect::<Result<Vec<_>, _>>()?;
        let received = record::decode_batch(&record::encode_batch(&wires)?)?;

        // The standby: another service first (other ids), and the fourth
        // backend that the active has not yet.
        let other = service(true, Protocol::Udp, Mode::Nat, 53, 53, 2);
        let grown = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 4);
        let mut standby_balancer = Balancer::new();
        let mut standby = Dataplane::load()?;
        standby.add_tx_port(lb.ext)?;
        standby.add_tx_port(lb.int)?;
        for wanted in [vec![other.clone()], vec![other, grown.clone()]] {
            let (next, ops) = standby_balancer.plan(&wanted)?;
            standby.apply(&ops)?;
            standby_balancer = next;
        }
        ensure!(
            standby_balancer.service_id(&grown.key()) != lb.balancer.service_id(&spec.key()),
            "the test needs service ids that differ"
        );
        let batch = translate::to_batch(&received, &standby_balancer);
        ensure!(batch.not_applied.is_empty(), "{:?}", batch.not_applied);
        standby.write_flows(&batch.flows)?;
        standby.write_replies(&batch.replies)?;
        standby.set_role(Role::Active)?;

        let table =
            &standby_balancer.tables().maglev[&standby_balancer.service_id(&grown.key()).unwrap()];
        let mut moved = 0;
        for frame in &flows {
            let pinned = lb.pinned(frame)?.context("pinned on the active")?;
            let slot = lb_common::hash::maglev_slot(&frame.flow_key()) as usize;
            let standby_pick = standby_balancer.tables().backends[&table[slot]];
            if standby_pick.addr != addr_bytes(pinned.ip()) {
                moved += 1;
            }
            let mut next = frame.clone();
            next.l4 = ACK;
            let i = backend_index(pinned);
            let expected = next
                .clone()
                .dst(pinned)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(i));
            let program = dataplane::program(standby.ebpf_mut())?;
            let out = lb_tests::fixture::run_on(program, &next.build(), Some(lb.ext))?;
            if let Some(why) = lb_tests::fixture::mismatch(
                &next.build(),
                &Expect::Rewritten(Action::Redirect, expected.build()),
                &out,
            ) {
                anyhow::bail!("{next:?} on the standby: {why}");
            }
            let reply = Frame::new(pinned, frame.src, ACK)
                .macs(fixnet::backend_mac(i), LB_INT_MAC)
                .payload(b"hello, client");
            let translated = reply
                .clone()
                .src(frame.dst)
                .ttl(63)
                .macs(lb_tests::fixnet::LB_EXT_MAC, lb_tests::packets::CLIENT_MAC);
            let out = lb_tests::fixture::run_on(program, &reply.build(), Some(lb.int))?;
            if let Some(why) = lb_tests::fixture::mismatch(
                &reply.build(),
                &Expect::Rewritten(Action::Redirect, translated.build()),
                &out,
            ) {
                anyhow::bail!("{reply:?} on the standby: {why}");
            }
        }
        ensure!(
            moved > 0,
            "no flow that Maglev alone would move: the test proves nothing"
        );
        Ok(())
    });
}
