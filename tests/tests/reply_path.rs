//! Packet fixtures for the NAT reply's short way through `lb_xdp`: the
//! service address filter (`LB_SERVICE_ADDRS`) sends a backend's packet
//! straight to the reply table, and the per-CPU client next-hop cache
//! (`LB_CLIENT_HOPS`, direct-mapped) routes it. What must hold: a client
//! whose address shares a bit with a service address still gets its replies
//! (the long way), and two clients that share a cache slot each get their
//! own route, however their replies alternate. The real object, run by the
//! kernel (BPF_PROG_TEST_RUN), on frames built with etherparse. Needs root.
mod support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};
use lb_common::{AF_INET, SERVICE_ADDR_WORDS, hash};
use lb_ctl::balancer::{Mode, Protocol, ServiceSpec, service_addr_words};
use lb_tests::{
    fixnet::{self, LB_EXT_MAC, LB_INT_MAC},
    fixture::{Action, Expect},
    packets::{self, ACK, Frame, SYN},
    rig,
};
use support::*;

/// Opens and confirms a NAT flow from `client` (whose frames come in on
/// `ingress` from `mac`, and leave towards the backend with `action`);
/// returns its first packet and its backend.
fn open(
    lb: &mut Lb,
    spec: &ServiceSpec,
    client: SocketAddr,
    (ingress, mac, action): (u32, [u8; 6], Action),
) -> Result<(Frame, SocketAddr)> {
    let to = SocketAddr::new(spec.vip, spec.port);
    let syn = Frame::new(client, to, SYN).macs(
        mac,
        if ingress == lb.ext {
            LB_EXT_MAC
        } else {
            LB_INT_MAC
        },
    );
    let target = lb.predicted(spec, &syn)?;
    for l4 in [SYN, ACK] {
        let frame = Frame { l4, ..syn.clone() };
        let expected = frame
            .clone()
            .dst(target)
            .ttl(63)
            .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
        lb.expect(&frame, ingress, Expect::Rewritten(action, expected.build()))
            .with_context(|| format!("{frame:?}"))?;
    }
    ensure!(lb.confirmed(&syn)? == Some(target), "{syn:?} not confirmed");
    Ok((syn, target))
}

/// The backend's next packet of the flow of `syn`.
fn reply_of(syn: &Frame, target: SocketAddr) -> Frame {
    Frame::new(target, syn.src, ACK)
        .macs(fixnet::backend_mac(backend_index(target)), LB_INT_MAC)
        .payload(b"hello, client")
}

/// `reply` as it must leave: from the VIP, one hop less, with `macs`.
fn translated(reply: &Frame, vip: SocketAddr, macs: ([u8; 6], [u8; 6]), action: Action) -> Expect {
    let out = reply.clone().src(vip).ttl(63).macs(macs.0, macs.1);
    Expect::Rewritten(action, out.build())
}

/// Writes every word of the service address filter behind the balancer's
/// back.
fn write_filter(lb: &mut Lb, word: impl Fn(u32) -> u64) -> Result<()> {
    let mut words: aya::maps::Array<_, u64> = aya::maps::Array::try_from(
        lb.dp
            .ebpf_mut()
            .map_mut(lb_common::maps::SERVICE_ADDRS)
            .context("no service address filter")?,
    )?;
    for index in 0..SERVICE_ADDR_WORDS {
        words.set(index, word(index), 0)?;
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip").args(args).status()?;
    ensure!(status.success(), "ip {args:?}: {status}");
    Ok(())
}

#[test]
fn clients_that_share_a_next_hop_slot_each_get_their_own_route() {
    with_lb(|lb| {
        // Clients of 198.19.0.0/16 sit behind a router on the internal side
        // (backend 3's address and MAC, not a backend of this service).
        let router = rig::backend_v4(3);
        ip(&[
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            &router.to_string(),
            "dev",
            "int0",
        ])?;
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        let a = client(false, 41000);
        let slot = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => {
                let mut addr = [0; 16];
                addr[..4].copy_from_slice(&v4.octets());
                hash::client_hop_slot(&addr, AF_INET)
            }
            IpAddr::V6(_) => unreachable!(),
        };
        let b_ip = (0..=u16::MAX)
            .map(|n| {
                let [c, d] = n.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(198, 19, c, d))
            })
            .find(|&ip| slot(ip) == slot(a.ip()))
            .context("no address of 198.19.0.0/16 shares the client's slot")?;
        let b = SocketAddr::new(b_ip, 41000);

        let ext = (lb.ext, packets::CLIENT_MAC, Action::Redirect);
        let int = (lb.int, fixnet::backend_mac(3), Action::Tx);
        let (syn_a, target_a) = open(lb, &spec, a, ext)?;
        let (syn_b, target_b) = open(lb, &spec, b, int)?;
        let vip = SocketAddr::new(spec.vip, spec.port);
        let (reply_a, reply_b) = (reply_of(&syn_a, target_a), reply_of(&syn_b, target_b));
        for round in 0..3 {
            lb.expect(
                &reply_a,
                lb.int,
                translated(
                    &reply_a,
                    vip,
                    (LB_EXT_MAC, packets::CLIENT_MAC),
                    Action::Redirect,
                ),
            )
            .with_context(|| format!("round {round}: the reply to {a}"))?;
            lb.expect(
                &reply_b,
                lb.int,
                translated(
                    &reply_b,
                    vip,
                    (LB_INT_MAC, fixnet::backend_mac(3)),
                    Action::Tx,
                ),
            )
            .with_context(|| format!("round {round}: the reply to {b}"))?;
        }
        Ok(())
    });
}

#[test]
fn replies_are_translated_whether_or_not_the_client_shares_a_service_addresss_bit() {
    with_lb(|lb| {
        for v6 in [false, true] {
            let spec = service(v6, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
            lb.configure(std::slice::from_ref(&spec))?;
            let ext = (lb.ext, packets::CLIENT_MAC, Action::Redirect);
            let (syn, target) = open(lb, &spec, client(v6, 41000 + u16::from(v6)), ext)?;
            let reply = reply_of(&syn, target);
            let vip = SocketAddr::new(spec.vip, spec.port);
            let out = translated(
                &reply,
                vip,
                (LB_EXT_MAC, packets::CLIENT_MAC),
                Action::Redirect,
            );
            // The client's bit is clear: the short way.
            lb.expect(&reply, lb.int, out.clone())?;
            // Every bit set, as if every client address shared one with a
            // service: the long way (flow table, service table, reply
            // table) gives the same frame; and the client's next packet
            // still finds its flow.
            write_filter(lb, |_| u64::MAX)?;
            lb.expect(&reply, lb.int, out)?;
            let ack = Frame {
                l4: ACK,
                ..syn.clone()
            };
            let forwarded = ack
                .clone()
                .dst(target)
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(backend_index(target)));
            lb.expect(
                &ack,
                lb.ext,
                Expect::Rewritten(Action::Redirect, forwarded.build()),
            )?;
            // Back to the words the balancer planned.
            let planned = service_addr_words(lb.balancer.tables().services.keys());
            write_filter(lb, |index| planned.get(&index).copied().unwrap_or(0))?;
        }
        Ok(())
    });
}
