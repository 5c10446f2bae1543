//! Packet fixtures for the unconfirmed flow table (`LB_NEW_FLOWS`, a
//! set-associative array): what a full set gives up, what a confirmation
//! frees, and that an unconfirmed NAT flow's SYN-ACK is translated while
//! its way holds it and never after. The real object, run by the kernel
//! (BPF_PROG_TEST_RUN), on frames built with etherparse. Needs root.
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, ensure};
use lb_common::{Counter, NEW_FLOW_WAYS, hash};
use lb_ctl::balancer::{Mode, Protocol, ServiceSpec};
use lb_tests::{
    fixnet::{self, LB_INT_MAC},
    fixture::{Action, Expect},
    packets::{self, ACK, Frame, L4},
};
use support::*;

const SYN_ACK: L4 = L4::Tcp {
    syn: true,
    ack: true,
};

/// `n` first packets (SYNs) from distinct clients whose flows share one set
/// of the unconfirmed table, and that set's index.
fn same_set(spec: &ServiceSpec, n: usize) -> (Vec<Frame>, u32) {
    let mut frames: Vec<Frame> = Vec::new();
    let mut set = None;
    // Client addresses of the fixture's client subnet that no host takes.
    for last in (2u8..50).filter(|h| ![10, 50, 100].contains(h)) {
        for port in 10_000..60_000 {
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)), port);
            let frame = first(spec, port, packets::SYN).src(src);
            let key = frame.flow_key();
            let this = hash::new_flow_set(&key.src, key.sport, key.proto, key.family);
            if *set.get_or_insert(this) == this {
                frames.push(frame);
                if frames.len() == n {
                    return (frames, this);
                }
            }
        }
    }
    panic!("fewer than {n} flows of one set among 2.4 million clients");
}

/// The SYN-ACK of `syn`'s flow from `backend`, as it arrives, and as it
/// leaves translated back (from the VIP). These clients have no neighbour
/// entry in the fixture: the translated answer goes to the kernel, which
/// forwards it (and resolves the neighbour), MACs and TTL untouched.
fn syn_ack(syn: &Frame, backend: SocketAddr) -> (Frame, Expect) {
    let i = backend_index(backend);
    let answer = Frame::new(backend, syn.src, SYN_ACK)
        .macs(fixnet::backend_mac(i), LB_INT_MAC)
        .payload(b"hello, client");
    let translated = answer.clone().src(syn.dst);
    (answer, Expect::Rewritten(Action::Pass, translated.build()))
}

fn ack(syn: &Frame) -> Frame {
    Frame {
        l4: ACK,
        ..syn.clone()
    }
}

#[test]
fn a_full_set_gives_up_the_way_written_longest_ago_and_a_confirmed_flow_frees_its_way() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let ways = NEW_FLOW_WAYS as usize;
        let (flows, set) = same_set(&spec, ways + 2);

        // One SYN per way: every flow keeps its pick, and its SYN-ACK is
        // translated back.
        let mut targets = Vec::new();
        for syn in &flows[..ways] {
            assert_eq!(lb.send(&syn.build(), lb.ext)?.action, Action::Redirect);
            let target = lb.pinned(syn)?.context("SYN not pinned")?;
            ensure!(target == lb.predicted(&spec, syn)?, "{syn:?}");
            targets.push(target);
        }
        let (full, _) = lb.dp.new_flow_set(set)?;
        ensure!(full.tags.iter().all(|&tag| tag != 0), "{full:?} not full");
        for (syn, &target) in flows[..ways].iter().zip(&targets) {
            let (answer, translated) = syn_ack(syn, target);
            lb.expect(&answer, lb.int, translated)
                .with_context(|| format!("SYN-ACK of {syn:?}"))?;
        }

        // The fifth flow of the set takes the round robin's first way (the
        // first flow's); the others keep theirs.
        let fifth = &flows[ways];
        lb.send(&fifth.build(), lb.ext)?;
        ensure!(lb.pinned(&flows[0])?.is_none(), "the oldest way survived");
        for syn in &flows[1..=ways] {
            ensure!(lb.pinned(syn)?.is_some(), "{syn:?} lost its way");
        }
        // Its SYN-ACK is no longer ours: to the kernel, untouched.
        let (answer, _) = syn_ack(&flows[0], targets[0]);
        lb.expect(&answer, lb.int, Expect::Unchanged(Action::Pass))?;

        // The third flow's ACK confirms it and frees its way, which the
        // sixth flow takes: the second flow (next in the round robin) stays.
        assert_eq!(
            lb.send(&ack(&flows[2]).build(), lb.ext)?.action,
            Action::Redirect
        );
        ensure!(lb.confirmed(&flows[2])? == Some(targets[2]));
        ensure!(lb.dp.new_flow(&flows[2].flow_key())?.is_none());
        lb.send(&flows[ways + 1].build(), lb.ext)?;
        for syn in [&flows[1], &flows[3], &flows[4], &flows[5]] {
            ensure!(lb.pinned(syn)?.is_some(), "{syn:?} lost its way");
        }
        // The confirmed flow's answers now come from the reply table.
        let (answer, translated) = syn_ack(&flows[2], targets[2]);
        lb.expect(&answer, lb.int, translated)?;
        assert_eq!(lb.dp.counter(Counter::FlowsUnconfirmed)?, 6);
        assert_eq!(lb.dp.counter(Counter::FlowsConfirmed)?, 1);
        Ok(())
    });
}

#[test]
fn an_answer_from_another_backend_or_port_is_not_translated() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let syn = first(&spec, 41000, packets::SYN);
        lb.send(&syn.build(), lb.ext)?;
        let target = lb.pinned(&syn)?.context("SYN not pinned")?;
        let other = (0..3)
            .map(|i| SocketAddr::new(backend_ip(false, i), 8080))
            .find(|&b| b != target)
            .unwrap();
        // Same client and port, but not the flow's backend, or not its port.
        for from in [other, SocketAddr::new(target.ip(), 8081)] {
            let answer = Frame::new(from, syn.src, SYN_ACK)
                .macs(fixnet::backend_mac(backend_index(target)), LB_INT_MAC)
                .payload(b"hello, client");
            lb.expect(&answer, lb.int, Expect::Unchanged(Action::Pass))
                .with_context(|| format!("answer from {from}"))?;
        }
        Ok(())
    });
}

/// A client whose address is also a service's (another VIP of this node):
/// its SYN-ACKs pass the service address's bit, and a SYN whose flow filter
/// bit is clear goes straight to `lb_unconfirmed`, which must translate it
/// from the unconfirmed way, and after the confirmation (a SYN-ACK sent
/// again) from the reply entry, rebuilt if needed; the backend's next
/// packets from the reply table.
#[test]
fn the_answers_to_a_client_that_is_also_a_vip_are_translated() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        // An address of the client subnet that no host of the fixture
        // takes (no neighbour entry: translated answers go to the kernel).
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)), 41000);
        let syn = first(&spec, 41000, packets::SYN).src(client);
        let other = ServiceSpec {
            vip: syn.src.ip(),
            port: 9999,
            ..service(false, Protocol::Tcp, Mode::Nat, 9999, 8080, 1)
        };
        lb.configure(&[spec.clone(), other])?;
        lb.send(&syn.build(), lb.ext)?;
        let target = lb.pinned(&syn)?.context("SYN not pinned")?;
        let (answer, translated) = syn_ack(&syn, target);
        lb.expect(&answer, lb.int, translated.clone())
            .context("the SYN-ACK of the unconfirmed flow")?;

        assert_eq!(
            lb.send(&ack(&syn).build(), lb.ext)?.action,
            Action::Redirect
        );
        ensure!(lb.confirmed(&syn)? == Some(target));
        lb.expect(&answer, lb.int, translated)
            .context("the SYN-ACK sent again, after the confirmation")?;

        let data = Frame {
            l4: ACK,
            ..answer.clone()
        };
        let translated = data.clone().src(syn.dst);
        lb.expect(
            &data,
            lb.int,
            Expect::Rewritten(Action::Pass, translated.build()),
        )
        .context("the backend's next packet")?;
        // The SYN-ACK sent again skipped the reply table (a SYN to a
        // service's address whose filter bit is clear goes straight to
        // `lb_unconfirmed`) and was translated from a rebuilt entry.
        assert_eq!(lb.dp.counter(Counter::RepliesRebuilt)?, 1);
        Ok(())
    });
}

/// `lb_xdp` leaves the flow hash of a new flow's SYN for `lb_unconfirmed`
/// (`LB_FLOW_HASH`): a first packet of another flow that `lb_xdp` did not
/// hash (here a TCP packet in mid-stream, as after a failover) must still
/// be picked by its own hash, not the one left behind.
#[test]
fn a_first_packet_that_is_not_a_syn_is_picked_by_its_own_hash() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let syn = first(&spec, 41000, packets::SYN);
        let syn_pick = lb.predicted(&spec, &syn)?;
        // A flow that Maglev gives another backend than the SYN's.
        let midstream = (41001..42000)
            .map(|port| first(&spec, port, ACK))
            .find(|frame| lb.predicted(&spec, frame).is_ok_and(|b| b != syn_pick))
            .context("no flow of another backend")?;
        assert_eq!(lb.send(&syn.build(), lb.ext)?.action, Action::Redirect);
        ensure!(lb.pinned(&syn)? == Some(syn_pick));
        assert_eq!(
            lb.send(&midstream.build(), lb.ext)?.action,
            Action::Redirect
        );
        ensure!(
            lb.pinned(&midstream)? == Some(lb.predicted(&spec, &midstream)?),
            "the mid-stream flow took the SYN's pick"
        );
        assert_eq!(lb.dp.counter(Counter::FlowsMidstream)?, 1);
        Ok(())
    });
}
