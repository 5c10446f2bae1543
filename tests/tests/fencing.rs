//! Self-fencing fixtures: an active node whose lease has passed (its daemon
//! died or stalled) answers nothing for its floating IPs, which its kernel
//! still holds: ARP requests and neighbour solicitations for them, and
//! packets to them, are dropped and counted; nothing else changes. A node
//! with a live lease, without a lease (standalone) or standby is not fenced.
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use etherparse::{Icmpv6Type, PacketBuilder};
use lb_common::Counter;
use lb_ctl::{
    balancer::{Mode, Protocol},
    role::Role,
};
use lb_tests::{
    fixture::Action,
    packets::{self, CLIENT_MAC, SYN},
};
use support::*;

/// Lease values: long passed (but not 0, which means none), and never.
const PASSED: u64 = 1;
const NEVER: u64 = u64::MAX;

/// A neighbour solicitation for `target`, to its solicited-node address.
fn neighbour_solicitation(target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let solicited = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let client: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(client.octets(), solicited.octets(), 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        });
    let mut frame = Vec::new();
    builder.write(&mut frame, &t).unwrap();
    frame
}

fn floating() -> [IpAddr; 2] {
    [VIP4.parse().unwrap(), VIP6.parse().unwrap()]
}

#[test]
fn a_fenced_node_drops_what_is_for_its_floating_ips_and_nothing_else() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        lb.dp.set_floating(&floating())?;
        lb.dp.set_role(Role::Active)?;
        lb.dp.set_lease(PASSED)?;
        let vip4: Ipv4Addr = VIP4.parse()?;
        let client: Ipv4Addr = "198.18.0.10".parse()?;
        let node: Ipv4Addr = "198.18.0.1".parse()?;
        let ext = lb.ext;
        let mut expect = |frame: &[u8], action: Action| -> Result<()> {
            let out = lb.send(frame, ext)?;
            anyhow::ensure!(
                out.action == action,
                "{action:?} expected, got {:?}",
                out.action
            );
            anyhow::ensure!(out.frame == frame, "the frame changed");
            Ok(())
        };
        expect(&packets::arp_request(client, vip4), Action::Drop)?;
        expect(&neighbour_solicitation(VIP6.parse()?), Action::Drop)?;
        expect(&first(&spec, 40000, SYN).build(), Action::Drop)?;
        // Not a floating IP: the node's own address, another target.
        expect(&packets::arp_request(client, node), Action::Pass)?;
        expect(
            &neighbour_solicitation("2001:db8::1".parse()?),
            Action::Pass,
        )?;
        assert_eq!(lb.dp.counter(Counter::DropFenced)?, 3);
        Ok(())
    });
}

#[test]
fn a_live_lease_no_lease_or_a_standby_role_is_not_fenced() {
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        lb.dp.set_floating(&floating())?;
        let arp = packets::arp_request("198.18.0.10".parse()?, VIP4.parse()?);
        let syn = first(&spec, 40001, SYN);
        for (role, lease, service_action) in [
            (Role::Active, NEVER, Action::Redirect),
            (Role::Active, 0, Action::Redirect),
            (Role::Standby, PASSED, Action::Pass),
        ] {
            lb.dp.set_role(role)?;
            lb.dp.set_lease(lease)?;
            arp_passes(lb, &arp)?;
            let out = lb.send(&syn.build(), lb.ext)?;
            assert_eq!(out.action, service_action, "{role:?} lease {lease}");
        }
        assert_eq!(lb.dp.counter(Counter::DropFenced)?, 0);
        assert_eq!(lb.dp.counter(Counter::PassStandby)?, 1);
        // The floating set can be replaced: a fenced node then answers for
        // what left it.
        lb.dp.set_role(Role::Active)?;
        lb.dp.set_lease(PASSED)?;
        lb.dp.set_floating(&[VIP6.parse()?])?;
        arp_passes(lb, &arp)?;
        Ok(())
    });
}

/// The ARP request goes to the kernel unchanged.
fn arp_passes(lb: &mut Lb, arp: &[u8]) -> Result<()> {
    let out = lb.send(arp, lb.ext)?;
    anyhow::ensure!(
        out.action == Action::Pass && out.frame == arp,
        "ARP: {:?}",
        out.action
    );
    Ok(())
}

#[test]
fn a_lease_that_passes_fences_within_a_jiffy_and_a_new_lease_counts_at_once() {
    // The program reads the clock once per jiffy per CPU (LB_FENCE_CHECK):
    // a lease that passes must still fence the node, and a lease written
    // meanwhile must be compared at once, not a jiffy later.
    with_lb(|lb| {
        let spec = service(false, Protocol::Tcp, Mode::Nat, 80, 8080, 3);
        lb.configure(std::slice::from_ref(&spec))?;
        lb.dp.set_floating(&floating())?;
        lb.dp.set_role(Role::Active)?;
        let syn = first(&spec, 40002, SYN).build();
        let expect = |lb: &mut Lb, action: Action, when: &str| -> Result<()> {
            let out = lb.send(&syn, lb.ext)?;
            anyhow::ensure!(
                out.action == action,
                "{when}: {action:?} expected, got {:?}",
                out.action
            );
            Ok(())
        };
        lb.dp
            .set_lease(lb_ctl::dataplane::monotonic_ns() + 300_000_000)?;
        expect(lb, Action::Redirect, "a lease 300 ms ahead")?;
        std::thread::sleep(std::time::Duration::from_millis(400));
        expect(lb, Action::Drop, "400 ms later")?;
        lb.dp.set_lease(NEVER)?;
        expect(lb, Action::Redirect, "renewed")?;
        lb.dp.set_lease(PASSED)?;
        expect(lb, Action::Drop, "passed")?;
        assert_eq!(lb.dp.counter(Counter::DropFenced)?, 2);
        Ok(())
    });
}
