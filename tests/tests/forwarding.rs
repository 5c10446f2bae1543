//! Packet fixtures for load balancing: the real object, run by the kernel
//! (BPF_PROG_TEST_RUN) inside a fixture namespace whose FIB and neighbours
//! are known, on frames built with etherparse. Expected frames are built
//! independently with etherparse too (its own checksums), and compared byte
//! for byte. Needs root.
mod support;

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, ensure};
use lb_common::Counter;
use lb_ctl::{
    balancer::{BackendState, Mode, Protocol, ServiceSpec},
    dataplane,
    role::Role,
};
use lb_tests::{
    fixnet::{self, EXT_BACKEND_MAC, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Case, Expect},
    packets::{self, ACK, Frame, L4, SYN},
};
use support::*;

#[test]
fn nat_sends_first_packets_to_the_predicted_backend_and_translates_replies_back() {
    with_lb(|lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let mut seen = std::collections::BTreeSet::new();
            for sport in 40000..40012 {
                let frame = first(&spec, sport, l4_of(protocol));
                let target = lb.predicted(&spec, &frame)?;
                seen.insert(target);
                let i = backend_index(target);
                let expected = frame
                    .clone()
                    .dst(target)
                    .ttl(63)
                    .macs(LB_INT_MAC, fixnet::backend_mac(i));
                lb.expect(
                    &frame,
                    lb.ext,
                    Expect::Rewritten(Action::Redirect, expected.build()),
                )
                .with_context(|| format!("forward {frame:?}"))?;

                let reply = Frame::new(
                    target,
                    frame.src,
                    if protocol == Protocol::Tcp {
                        ACK
                    } else {
                        L4::Udp
                    },
                )
                .macs(fixnet::backend_mac(i), LB_INT_MAC)
                .payload(b"hello, client");
                lb.expect(&reply, lb.int, translated_back(&reply, frame.dst))
                    .with_context(|| format!("reply {reply:?}"))?;
            }
            assert!(seen.len() > 1, "12 flows all went to {seen:?}");
        }
        Ok(())
    });
}

#[test]
fn dsr_rewrites_only_the_macs() {
    with_lb(|lb| {
        for (v6, protocol) in COMBOS {
            let spec = service(v6, protocol, Mode::Dsr, 80, 80, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            for sport in 40000..40008 {
                let frame = first(&spec, sport, l4_of(protocol));
                let target = lb.predicted(&spec, &frame)?;
                let expected = frame
                    .clone()
                    .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
                lb.expect(
                    &frame,
                    lb.ext,
                    Expect::Rewritten(Action::Redirect, expected.build()),
                )?;
            }
        }
        Ok(())
    });
}

#[test]
fn a_backend_behind_the_ingress_interface_gets_xdp_tx() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let ip: IpAddr = if v6 {
                fixnet::EXT_BACKEND_V6.into()
            } else {
                fixnet::EXT_BACKEND_V4.into()
            };
            let mut spec = service(v6, Protocol::Tcp, Mode::Dsr, 80, 80, 0);
            spec.backends.push(backend(ip, 80));
            lb.configure(std::slice::from_ref(&spec))?;
            let frame = first(&spec, 40000, SYN);
            let expected = frame.clone().macs(LB_EXT_MAC, EXT_BACKEND_MAC);
            lb.expect(
                &frame,
                lb.ext,
                Expect::Rewritten(Action::Tx, expected.build()),
            )?;
        }
        Ok(())
    });
}

/// A backend's NAT reply as it leaves towards the client: from `vip`, one
/// hop less, the client's MACs.
fn translated_back(reply: &Frame, vip: SocketAddr) -> Expect {
    let out = reply
        .clone()
        .src(vip)
        .ttl(63)
        .macs(LB_EXT_MAC, packets::CLIENT_MAC);
    Expect::Rewritten(Action::Redirect, out.build())
}

/// Sends the first packet of `flows` flows, returns where each went.
fn open_flows(
    lb: &mut Lb,
    spec: &ServiceSpec,
    ports: std::ops::Range<u16>,
) -> Result<Vec<(Frame, SocketAddr)>> {
    let mut pinned = Vec::new();
    for sport in ports {
        let frame = first(spec, sport, SYN);
        let outcome = lb.send(&frame.build(), lb.ext)?;
        assert_eq!(outcome.action, Action::Redirect, "{frame:?}");
        ensure!(
            lb.confirmed(&frame)?.is_none(),
            "a SYN alone confirmed {frame:?}"
        );
        let target = lb.pinned(&frame)?.context("flow not pinned")?;
        // The handshake's ACK confirms the flow.
        let ack = Frame {
            l4: ACK,
            ..frame.clone()
        };
        assert_eq!(lb.send(&ack.build(), lb.ext)?.action, Action::Redirect);
        ensure!(
            lb.confirmed(&frame)? == Some(target),
            "{frame:?} not confirmed to {target}"
        );
        pinned.push((frame, target));
    }
    Ok(pinned)
}

/// Where the next packet of each flow goes now.
fn follow(lb: &mut Lb, flows: &[(Frame, SocketAddr)]) -> Result<Vec<SocketAddr>> {
    flows
        .iter()
        .map(|(frame, _)| {
            let next = Frame {
                l4: ACK,
                ..frame.clone()
            };
            let outcome = lb.send(&next.build(), lb.ext)?;
            assert_eq!(outcome.action, Action::Redirect, "{next:?}");
            let dst = parse_dst(&outcome.frame)?;
            Ok(dst)
        })
        .collect()
}

#[test]
fn established_flows_keep_their_backend_when_a_backend_is_added() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows = open_flows(lb, &spec, 41000..41100)?;
        spec.backends.push(backend(backend_ip(false, 3), 8080));
        lb.configure(std::slice::from_ref(&spec))?;
        let now = follow(lb, &flows)?;
        for ((frame, before), after) in flows.iter().zip(now) {
            assert_eq!(*before, after, "{frame:?} moved");
        }
        // New flows do reach the new backend.
        let new = open_flows(lb, &spec, 42000..42100)?;
        assert!(new.iter().any(|(_, b)| backend_index(*b) == 3));
        Ok(())
    });
}

#[test]
fn a_drained_backend_keeps_its_flows_and_gets_no_new_ones() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows = open_flows(lb, &spec, 41000..41060)?;
        let drained = flows[0].1;
        spec.backends[backend_index(drained)].state = BackendState::Drained;
        lb.configure(std::slice::from_ref(&spec))?;
        let now = follow(lb, &flows)?;
        for ((_, before), after) in flows.iter().zip(&now) {
            assert_eq!(before, after);
        }
        let new = open_flows(lb, &spec, 43000..43300)?;
        assert!(
            new.iter().all(|(_, b)| *b != drained),
            "a new flow went to drained {drained}"
        );
        Ok(())
    });
}

#[test]
fn a_removed_backends_flows_move_to_live_backends() {
    with_lb(|lb| {
        let mut spec = service(true, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let flows = open_flows(lb, &spec, 41000..41060)?;
        let removed = flows[0].1;
        spec.backends.retain(|b| b.addr != removed);
        lb.configure(std::slice::from_ref(&spec))?;
        let now = follow(lb, &flows)?;
        for ((frame, before), after) in flows.iter().zip(now) {
            if *before == removed {
                assert_eq!(after, lb.predicted(&spec, frame)?, "{frame:?}");
            } else {
                assert_eq!(*before, after, "{frame:?} moved without cause");
            }
        }
        Ok(())
    });
}

#[test]
fn without_usable_backends_new_flows_go_to_the_sorry_server_or_are_dropped_and_counted() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 2);
        for b in &mut spec.backends {
            b.state = BackendState::Disabled;
        }
        lb.configure(std::slice::from_ref(&spec))?;
        let frame = first(&spec, 40000, SYN);
        let dropped = lb.dp.counter(Counter::DropNoBackend)?;
        lb.expect(&frame, lb.ext, Expect::PassUnchangedOrDrop)?;
        assert_eq!(lb.send(&frame.build(), lb.ext)?.action, Action::Drop);
        assert_eq!(lb.dp.counter(Counter::DropNoBackend)?, dropped + 2);

        let sorry = SocketAddr::new(backend_ip(false, 3), 8080);
        spec.sorry = Some(sorry);
        lb.configure(std::slice::from_ref(&spec))?;
        let expected = frame
            .clone()
            .dst(sorry)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(3));
        lb.expect(
            &frame,
            lb.ext,
            Expect::Rewritten(Action::Redirect, expected.build()),
        )?;

        // One backend back: new flows go to it again.
        spec.backends[0].state = BackendState::Enabled;
        lb.configure(std::slice::from_ref(&spec))?;
        let other = first(&spec, 40001, SYN);
        let expected = other
            .clone()
            .dst(spec.backends[0].addr)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(0));
        lb.expect(
            &other,
            lb.ext,
            Expect::Rewritten(Action::Redirect, expected.build()),
        )?;
        Ok(())
    });
}

#[test]
fn a_standby_node_forwards_nothing_for_services() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        lb.dp.set_role(Role::Standby)?;
        let frame = first(&spec, 40000, SYN);
        lb.expect(&frame, lb.ext, Expect::Unchanged(Action::Pass))?;
        assert_eq!(lb.dp.counter(Counter::PassStandby)?, 1);
        lb.dp.set_role(Role::Active)?;
        assert_eq!(lb.send(&frame.build(), lb.ext)?.action, Action::Redirect);
        Ok(())
    });
}

#[test]
fn without_a_neighbour_the_translated_packet_goes_to_the_kernel() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let ip: IpAddr = if v6 {
                fixnet::UNRESOLVED_V6.into()
            } else {
                fixnet::UNRESOLVED_V4.into()
            };
            let mut spec = service(v6, Protocol::Tcp, Mode::Nat, 80, 8080, 0);
            spec.backends.push(backend(ip, 8080));
            lb.configure(std::slice::from_ref(&spec))?;
            let frame = first(&spec, 40000, SYN);
            // Rewritten, but TTL and MACs left for the kernel's forwarding.
            let expected = frame.clone().dst(SocketAddr::new(ip, 8080));
            lb.expect(
                &frame,
                lb.ext,
                Expect::Rewritten(Action::Pass, expected.build()),
            )?;

            let mut dsr = service(v6, Protocol::Tcp, Mode::Dsr, 80, 80, 0);
            dsr.backends.push(backend(ip, 80));
            lb.configure(std::slice::from_ref(&dsr))?;
            // The kernel holds the VIP and would reset the connection.
            let outcome = lb.send(&first(&dsr, 40001, SYN).build(), lb.ext)?;
            assert_eq!(outcome.action, Action::Drop);
        }
        assert_eq!(lb.dp.counter(Counter::PassNoNeighbour)?, 2);
        assert_eq!(lb.dp.counter(Counter::DropNoNeighbour)?, 2);
        Ok(())
    });
}

#[test]
fn an_ipv4_udp_packet_without_checksum_keeps_none() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Udp, Mode::Nat, 53, 5353, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let frame = first(&spec, 40000, L4::Udp);
        let udp_csum = 14 + 20 + 6;
        let mut input = frame.build();
        input[udp_csum..udp_csum + 2].copy_from_slice(&[0, 0]);
        let target = lb.predicted(&spec, &frame)?;
        let mut expected = frame
            .clone()
            .dst(target)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)))
            .build();
        expected[udp_csum..udp_csum + 2].copy_from_slice(&[0, 0]);
        let outcome = lb.send(&input, lb.ext)?;
        assert_eq!(
            fixture::mismatch(
                &input,
                &Expect::Rewritten(Action::Redirect, expected),
                &outcome
            ),
            None
        );
        Ok(())
    });
}

#[test]
fn malformed_and_unhandled_service_packets_are_never_forwarded() {
    with_lb(|lb| {
        let v4 = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        let v6 = service(true, Protocol::Udp, Mode::Nat, 80, 8080, 3);
        lb.configure(&[v4.clone(), v6.clone()])?;
        let mut cases = Vec::new();
        for frame in [
            first(&v4, 40000, SYN).build(),
            first(&v6, 40000, L4::Udp).build(),
        ] {
            for len in 14..frame.len() - b"hello, backend".len() {
                cases.push(Case::new(
                    format!("cut to {len} of {}", frame.len()),
                    frame[..len].to_vec(),
                    Expect::PassUnchangedOrDrop,
                ));
            }
        }
        let base = first(&v4, 40000, SYN).build();
        for ihl in [0u8, 1, 4, 15] {
            cases.push(Case::new(
                format!("ihl {ihl}"),
                packets::with_ipv4_ihl(base.clone(), ihl),
                Expect::PassUnchangedOrDrop,
            ));
        }
        // Fragments, extension headers and each malformed length have tests
        // of their own (parsing.rs).
        fixture::check_on(dataplane::program(lb.dp.ebpf_mut())?, Some(lb.ext), &cases)?;
        assert_eq!(lb.dp.counter(Counter::Forwarded)?, 0);
        Ok(())
    });
}

#[test]
fn service_and_backend_counters_count_packets_bytes_and_new_flows() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        // Each flow: its SYN, the ACK that confirms it, one more ACK.
        let flows = open_flows(lb, &spec, 41000..41010)?;
        follow(lb, &flows)?;
        let id = lb.balancer.service_id(&spec.key()).unwrap();
        let traffic = lb.dp.service_traffic(id)?;
        let frame_len = first(&spec, 1, SYN).build().len() as u64;
        assert_eq!(traffic.packets, 30);
        assert_eq!(traffic.new_flows, 10);
        assert_eq!(traffic.bytes, 30 * frame_len);
        assert_eq!(lb.dp.counter(Counter::FlowsUnconfirmed)?, 10);
        assert_eq!(lb.dp.counter(Counter::FlowsConfirmed)?, 10);
        assert_eq!(lb.dp.counter(Counter::FlowsMidstream)?, 0);
        let per_backend: u64 = spec
            .backends
            .iter()
            .map(|b| {
                lb.dp
                    .backend_traffic(lb.balancer.backend_id(&spec.key(), b.addr).unwrap())
                    .unwrap()
                    .packets
            })
            .sum();
        assert_eq!(per_backend, 30);
        assert_eq!(lb.dp.counter(Counter::Forwarded)?, 30);
        Ok(())
    });
}

#[test]
fn a_cached_next_hop_is_never_used_for_another_backend() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        // Warm this CPU's next-hop cache for every backend.
        open_flows(lb, &spec, 41000..41030)?;
        // Backend 0 leaves; backend 3 (another MAC) takes its id.
        spec.backends.remove(0);
        spec.backends.push(backend(backend_ip(false, 3), 8080));
        lb.configure(std::slice::from_ref(&spec))?;
        let key = spec.key();
        assert_eq!(
            lb.balancer
                .backend_id(&key, SocketAddr::new(backend_ip(false, 3), 8080)),
            Some(0)
        );
        let mut reached = false;
        for sport in 42000..42060 {
            let frame = first(&spec, sport, SYN);
            let target = lb.predicted(&spec, &frame)?;
            let i = backend_index(target);
            reached |= i == 3;
            let expected = frame
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(i));
            lb.expect(
                &frame,
                lb.ext,
                Expect::Rewritten(Action::Redirect, expected.build()),
            )?;
        }
        assert!(reached, "no flow reached the new backend");
        Ok(())
    });
}

/// Opens one confirmed NAT flow from client port `sport`, then pushes its
/// reply entry out of the reply table (as its LRU does when the connection
/// is idle the backend's way only). Returns the flow's first packet, its
/// backend and the backend's next packet.
fn flow_without_reply_entry(
    lb: &mut Lb,
    spec: &ServiceSpec,
    sport: u16,
) -> Result<(Frame, SocketAddr, Frame)> {
    let (syn, target) = open_flows(lb, spec, sport..sport + 1)?.remove(0);
    let reply = Frame::new(target, syn.src, ACK)
        .macs(fixnet::backend_mac(backend_index(target)), LB_INT_MAC)
        .payload(b"hello, client");
    let key = reply.flow_key();
    let mut replies: aya::maps::HashMap<_, lb_common::FlowKey, lb_common::Reply> =
        aya::maps::HashMap::try_from(
            lb.dp
                .ebpf_mut()
                .map_mut(lb_common::maps::REPLIES)
                .context("no reply table")?,
        )?;
    replies.remove(&key)?;
    ensure!(lb.dp.reply(&key)?.is_none());
    Ok((syn, target, reply))
}

#[test]
fn a_nat_reply_entry_pushed_out_is_rebuilt_from_its_flows_entry() {
    with_lb(|lb| {
        // Two NAT services on the same backends: their NAT services give a
        // backend's packet two candidate flows.
        let a = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        let b = service(false, Protocol::Tcp, Mode::Nat, 81, 8080, 3);
        lb.configure(&[a.clone(), b.clone()])?;
        for (spec, sport) in [(&a, 41000), (&b, 41001)] {
            let (syn, _, reply) = flow_without_reply_entry(lb, spec, sport)?;
            lb.expect(&reply, lb.int, translated_back(&reply, syn.dst))
                .with_context(|| format!("reply of {syn:?}"))?;
            ensure!(
                lb.dp.reply(&reply.flow_key())?.map(|r| r.vport) == Some(spec.port.to_be_bytes()),
                "the reply entry was not rebuilt for {spec:?}"
            );
        }
        assert_eq!(lb.dp.counter(Counter::RepliesRebuilt)?, 2);

        // A backend's packet to a client port without a flow, and one from
        // a port that is not a backend's: not ours.
        let backend = SocketAddr::new(backend_ip(false, 0), 8080);
        for from in [backend, SocketAddr::new(backend.ip(), 8081)] {
            let stray = Frame::new(from, client(false, 42000), ACK)
                .macs(fixnet::backend_mac(0), LB_INT_MAC)
                .payload(b"hello, client");
            lb.expect(&stray, lb.int, Expect::Unchanged(Action::Pass))?;
        }
        assert_eq!(lb.dp.counter(Counter::RepliesRebuilt)?, 2);
        Ok(())
    });
}

#[test]
fn a_reply_entry_is_not_rebuilt_for_a_flow_whose_backend_left() {
    with_lb(|lb| {
        let mut spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let (_, target, reply) = flow_without_reply_entry(lb, &spec, 41000)?;
        // The flow's backend leaves and comes back: a new id or generation,
        // which the flow's entry does not have.
        let kept: Vec<_> = spec
            .backends
            .iter()
            .filter(|b| b.addr != target)
            .cloned()
            .collect();
        let all = std::mem::replace(&mut spec.backends, kept);
        lb.configure(std::slice::from_ref(&spec))?;
        spec.backends = all;
        lb.configure(std::slice::from_ref(&spec))?;
        lb.expect(&reply, lb.int, Expect::Unchanged(Action::Pass))?;
        assert_eq!(lb.dp.counter(Counter::RepliesRebuilt)?, 0);
        Ok(())
    });
}
