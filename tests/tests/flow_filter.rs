//! Packet fixtures for the flow filter (`LB_FLOW_FILTER`): a SYN skips the
//! connection table only when the table cannot hold its flow. A SYN of a
//! flow the table holds (a client reusing its port, a flow replicated from
//! the active) keeps the flow's backend even where Maglev now picks
//! another; a rebuild keeps the table's flows and drops the others. The
//! real object, run by the kernel (BPF_PROG_TEST_RUN). Needs root.
mod support;

use std::net::SocketAddr;

use anyhow::{Context as _, Result, ensure};
use lb_common::{Counter, Flow, FlowKey, maps};
use lb_ctl::balancer::{Mode, Protocol, ServiceSpec};
use lb_tests::{
    fixture::Action,
    packets::{ACK, Frame, SYN},
};
use support::*;

/// Opens (SYN, then ACK: confirmed) a flow from each client port of `ports`.
fn confirmed_flows(
    lb: &mut Lb,
    spec: &ServiceSpec,
    ports: std::ops::Range<u16>,
) -> Result<Vec<(Frame, SocketAddr)>> {
    let mut flows = Vec::new();
    for sport in ports {
        let syn = first(spec, sport, SYN);
        ensure!(lb.send(&syn.build(), lb.ext)?.action == Action::Redirect);
        let ack = Frame {
            l4: ACK,
            ..syn.clone()
        };
        ensure!(lb.send(&ack.build(), lb.ext)?.action == Action::Redirect);
        let target = lb.confirmed(&syn)?.context("not confirmed")?;
        flows.push((syn, target));
    }
    Ok(flows)
}

/// Where the program sends `frame` (NAT: its new destination).
fn sent_to(lb: &mut Lb, frame: &Frame) -> Result<SocketAddr> {
    let outcome = lb.send(&frame.build(), lb.ext)?;
    ensure!(outcome.action == Action::Redirect, "{frame:?}: {outcome:?}");
    parse_dst(&outcome.frame)
}

#[test]
fn a_syn_of_a_confirmed_flow_keeps_its_backend_where_maglev_now_picks_another() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows = confirmed_flows(lb, &spec, 41000..41100)?;
        spec.backends.push(backend(backend_ip(false, 3), 8080));
        lb.configure(std::slice::from_ref(&spec))?;
        let mut moved_by_maglev = 0;
        for (syn, before) in &flows {
            ensure!(lb.dp.flow_filter().may_hold(&syn.flow_key()), "{syn:?}");
            if lb.predicted(&spec, syn)? != *before {
                moved_by_maglev += 1;
            }
            // The client reuses its port: a SYN again.
            ensure!(sent_to(lb, syn)? == *before, "{syn:?} moved");
        }
        // The test means something only if Maglev moved some of them.
        ensure!(moved_by_maglev > 5, "Maglev moved {moved_by_maglev} flows");
        // They went by the connection table: no flow picked again.
        assert_eq!(lb.dp.counter(Counter::FlowsUnconfirmed)?, 100);
        Ok(())
    });
}

#[test]
fn a_flow_written_by_user_space_keeps_its_backend_for_a_syn() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let id = lb
            .balancer
            .service_id(&spec.key())
            .context("no service id")?;
        let backends = lb.balancer.tables().backends.clone();
        let mut written = Vec::new();
        // As a standby writes the active's flows: pinned to a backend that
        // is not the Maglev pick.
        for sport in 41000..41050 {
            let syn = first(&spec, sport, SYN);
            let predicted = lb.predicted(&spec, &syn)?;
            let (&backend, entry) = backends
                .iter()
                .find(|(b, _)| lb.backend_addr(**b) != predicted)
                .context("one backend only")?;
            let flow = Flow {
                backend,
                generation: entry.generation,
                service: id,
                mode: lb_common::mode::NAT,
            };
            written.push((syn.flow_key(), flow));
        }
        lb.dp.write_flows(&written)?;
        for (key, flow) in &written {
            let syn = first(&spec, u16::from_be_bytes(key.sport), SYN);
            ensure!(sent_to(lb, &syn)? == lb.backend_addr(flow.backend));
        }
        assert_eq!(lb.dp.counter(Counter::FlowsUnconfirmed)?, 0);
        Ok(())
    });
}

#[test]
fn a_rebuild_keeps_the_tables_flows_and_clears_the_others() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows = confirmed_flows(lb, &spec, 41000..41100)?;
        let keys: Vec<FlowKey> = flows.iter().map(|(syn, _)| syn.flow_key()).collect();
        // Half of them leave the table (as its LRU evicts them).
        let mut table: aya::maps::HashMap<_, FlowKey, Flow> = aya::maps::HashMap::try_from(
            lb.dp
                .ebpf_mut()
                .map_mut(maps::FLOWS)
                .context("no flow table")?,
        )?;
        for key in &keys[50..] {
            table.remove(key)?;
        }
        let filter = lb.dp.flow_filter().clone();
        ensure!(keys.iter().all(|key| filter.may_hold(key)));
        let read = filter.half_read();
        let rebuilt = lb.dp.rebuild_flow_filter()?;
        ensure!(
            filter.half_read() == 1 - read,
            "the half read did not change"
        );
        assert_eq!(rebuilt.flows, 50);
        assert_eq!(rebuilt.bits, 50, "{rebuilt:?}");
        assert_eq!(filter.bits(), 50);
        for key in &keys[..50] {
            ensure!(filter.may_hold(key), "{key:?} lost its bit");
        }
        for key in &keys[50..] {
            ensure!(!filter.may_hold(key), "{key:?} kept its bit");
        }
        // A SYN of a flow gone from the table is a new flow again (picked
        // by Maglev, unconfirmed); one still there goes by the table.
        let before = lb.dp.counter(Counter::FlowsUnconfirmed)?;
        ensure!(sent_to(lb, &flows[0].0)? == flows[0].1);
        ensure!(sent_to(lb, &flows[99].0)? == lb.predicted(&spec, &flows[99].0)?);
        assert_eq!(lb.dp.counter(Counter::FlowsUnconfirmed)?, before + 1);
        // The program sets bits in both halves: a second rebuild, which
        // clears the other half, keeps the flows confirmed since.
        let (syn, target) = confirmed_flows(lb, &spec, 42000..42001)?.remove(0);
        lb.dp.rebuild_flow_filter()?;
        ensure!(filter.half_read() == read);
        ensure!(filter.may_hold(&syn.flow_key()));
        ensure!(sent_to(lb, &syn)? == target);
        Ok(())
    });
}
