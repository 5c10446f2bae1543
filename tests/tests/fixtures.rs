//! Packet fixtures for the XDP program: the real object, run by the kernel
//! (BPF_PROG_TEST_RUN) on frames built with etherparse. Needs root.
use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::Counter;
use lb_ctl::dataplane::{self, Dataplane};
use lb_tests::{
    fixture::{self, Action, Case, Expect},
    packets::{self, L4},
};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SYN: L4 = L4::Tcp {
    syn: true,
    ack: false,
};
const ETH_HLEN: usize = 14;

fn load() -> Dataplane {
    Dataplane::load().expect("the XDP object loads and verifies (run as root)")
}

/// Valid frames that are not for any service, one per kind the program parses.
fn bystanders() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("arp request", packets::arp_request(CLIENT4, OTHER4)),
        (
            "lldp",
            packets::ethernet(0x88cc, &[0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1]),
        ),
        (
            "ipv4 tcp syn",
            packets::ipv4((CLIENT4, 40000), (OTHER4, 80), SYN, b""),
        ),
        (
            "ipv4 udp",
            packets::ipv4((CLIENT4, 40000), (OTHER4, 53), L4::Udp, b"query"),
        ),
        ("ipv4 icmp echo", packets::icmpv4_echo(CLIENT4, OTHER4)),
        (
            "ipv6 tcp syn",
            packets::ipv6((CLIENT6, 40000), (OTHER6, 80), SYN, b""),
        ),
        (
            "ipv6 udp",
            packets::ipv6((CLIENT6, 40000), (OTHER6, 53), L4::Udp, b"query"),
        ),
    ]
}

#[test]
fn frames_for_no_service_pass_unchanged() {
    let mut dp = load();
    let cases: Vec<Case> = bystanders()
        .into_iter()
        .map(|(name, frame)| Case::new(name, frame, Expect::Unchanged(Action::Pass)))
        .collect();
    fixture::check(dataplane::program(dp.ebpf_mut()).unwrap(), &cases).unwrap();
}

#[test]
fn frames_truncated_inside_any_header_pass_unchanged_or_drop() {
    let mut dp = load();
    let mut cases = Vec::new();
    for (name, frame) in bystanders() {
        // The kernel runs XDP only on frames of at least an Ethernet header
        // (checked below), so every cut starts there.
        for len in ETH_HLEN..frame.len() {
            cases.push(Case::new(
                format!("{name} cut to {len} bytes"),
                frame[..len].to_vec(),
                Expect::PassUnchangedOrDrop,
            ));
        }
    }
    fixture::check(dataplane::program(dp.ebpf_mut()).unwrap(), &cases).unwrap();
}

#[test]
fn bad_ipv4_header_lengths_pass_unchanged_or_drop() {
    let mut dp = load();
    let frame = packets::ipv4((CLIENT4, 40000), (OTHER4, 80), SYN, b"");
    let cases: Vec<Case> = [0u8, 1, 4, 15]
        .into_iter()
        .map(|ihl| {
            Case::new(
                format!("ipv4 ihl {ihl}"),
                packets::with_ipv4_ihl(frame.clone(), ihl),
                Expect::PassUnchangedOrDrop,
            )
        })
        .collect();
    fixture::check(dataplane::program(dp.ebpf_mut()).unwrap(), &cases).unwrap();
}

#[test]
fn kernel_refuses_frames_shorter_than_ethernet() {
    let mut dp = load();
    let program = dataplane::program(dp.ebpf_mut()).unwrap();
    for len in [0, 1, ETH_HLEN - 1] {
        let frame = packets::arp_request(CLIENT4, OTHER4);
        assert!(
            fixture::run(program, &frame[..len]).is_err(),
            "a {len}-byte frame reached the program"
        );
    }
}

#[test]
fn counters_say_why_a_frame_passed() {
    let mut dp = load();
    let v4 = packets::ipv4((CLIENT4, 40000), (OTHER4, 80), SYN, b"");
    let runs: [(&[u8], Counter); 3] = [
        (&packets::arp_request(CLIENT4, OTHER4), Counter::PassNotIp),
        (&v4, Counter::PassNotService),
        (&v4[..ETH_HLEN + 10], Counter::PassMalformed),
    ];
    for (frame, counter) in runs {
        let before = counter_value(&dp, counter);
        let outcome = fixture::run(dataplane::program(dp.ebpf_mut()).unwrap(), frame).unwrap();
        assert_eq!(outcome.action, Action::Pass);
        assert_eq!(counter_value(&dp, counter), before + 1, "{counter:?}");
    }
}

fn counter_value(dp: &Dataplane, counter: Counter) -> u64 {
    dp.counters()
        .unwrap()
        .into_iter()
        .find(|(c, _)| *c == counter)
        .map(|(_, v)| v)
        .unwrap()
}
