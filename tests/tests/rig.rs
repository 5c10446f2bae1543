//! Rig tests: real namespaces, real nginx, curl and wrk, the XDP program
//! attached in native mode to the LB's interfaces. Needs root.
use std::{net::SocketAddr, time::Duration};

use lb_common::Counter;
use lb_ctl::dataplane::{AttachMode, Dataplane};
use lb_tests::{
    netns,
    rig::{
        Rig, RigOptions,
        udp::{self, Reply},
    },
};

fn attach(rig: &Rig) -> Dataplane {
    let lb = rig.lb();
    lb.ns
        .run_in(|| {
            let mut dp = Dataplane::load()?;
            dp.attach(lb.ext_iface, AttachMode::Native)?;
            dp.attach(lb.int_iface, AttachMode::Native)?;
            Ok(dp)
        })
        .expect("attach XDP in the LB namespace")
}

#[test]
fn client_reaches_every_backend_through_the_lb_with_xdp_attached() {
    let mut rig = Rig::build(&RigOptions::default()).unwrap();
    rig.start_nginx().unwrap();
    let dp = attach(&rig);

    for backend in &rig.backends {
        for url in [
            format!("http://{}/", backend.v4),
            format!("http://[{}]/", backend.v6),
        ] {
            let body = rig.curl(&url).unwrap();
            assert_eq!(body, format!("{}\n", backend.name), "{url}");
        }
    }

    let url = format!("http://{}/", rig.backends[0].v4);
    let report = rig.wrk(&url, Duration::from_secs(2), 8).unwrap();
    assert!(report.requests > 100, "{report:?}");
    assert_eq!(report.errors(), 0, "{report:?}");

    // The program saw the traffic (and passed it to the kernel).
    let passed = dp
        .counters()
        .unwrap()
        .into_iter()
        .find(|(c, _)| *c == Counter::PassNotService)
        .unwrap()
        .1;
    assert!(passed >= report.requests, "{passed} packets counted");
}

#[test]
fn dropping_a_rig_leaves_nothing_behind() {
    let prefix;
    {
        // Every part: a router too, and the UDP servers' threads.
        let mut rig = Rig::build(&RigOptions {
            backends: 1,
            router_mtu: Some(1400),
            ..Default::default()
        })
        .unwrap();
        rig.start_nginx().unwrap();
        rig.serve_udp(5300).unwrap();
        prefix = rig.prefix.clone();
        assert!(netns::list().contains(&format!("{prefix}-rt")));
        let _dp = attach(&rig);
        assert_eq!(
            rig.curl(&format!("http://{}/", rig.backends[0].v4))
                .unwrap(),
            "b1\n"
        );
        let to = SocketAddr::new(rig.backends[0].v6.into(), 5300);
        let reply = udp::exchange(&rig.client, to, b"SEND 5", Duration::from_secs(3)).unwrap();
        assert!(
            matches!(reply, Reply::Datagram(ref d) if d == b"b1 \x03\x04"),
            "{reply:?}"
        );
    }
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let nginx = std::process::Command::new("pgrep")
        .args(["-f", &prefix])
        .output()
        .unwrap();
    assert!(
        nginx.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&nginx.stdout)
    );
}

#[test]
fn a_panicking_test_still_tears_its_rig_down() {
    let prefix = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let rig = Rig::build(&RigOptions {
            backends: 1,
            ..Default::default()
        })
        .unwrap();
        *prefix.lock().unwrap() = rig.prefix.clone();
        panic!("test failure inside a rig");
    });
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert!(
        !netns::list()
            .iter()
            .any(|n| n.starts_with(&format!("{prefix}-"))),
        "namespaces of {prefix} left behind"
    );
}

/// The addresses of `dev` in `ns` (`ip -o addr show`), global scope only.
fn addresses(ns: &netns::Netns, dev: &str) -> Vec<String> {
    let out = ns
        .ip(["-o", "addr", "show", "dev", dev, "scope", "global"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect()
}

/// Each node of a pair has on its interfaces what its `LbNode` says, and
/// the rig describes them as the demo prints them (the README's diagram);
/// without backends (the cluster tests' network) the nodes are the same.
#[test]
fn a_pair_rigs_nodes_hold_their_own_addresses_and_are_described_so() {
    for backends in [1, 0] {
        let rig = Rig::build(&RigOptions {
            backends,
            pair: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rig.nodes.len(), 2);
        for node in &rig.nodes {
            assert_eq!(
                node.ns.name(),
                format!("{}-{}", rig.prefix, node.name),
                "namespace of {}",
                node.name
            );
            assert_eq!(
                addresses(&node.ns, node.ext_iface),
                [format!("{}/24", node.ext_v4), format!("{}/64", node.ext_v6)]
            );
            assert_eq!(
                addresses(&node.ns, node.int_iface),
                [format!("{}/24", node.int_v4), format!("{}/64", node.int_v6)]
            );
            for hb in &node.interconnects {
                assert_eq!(addresses(&node.ns, hb.iface), [format!("{}/24", hb.v4)]);
            }
        }
        let text = rig.describe();
        for (node, want) in rig.nodes.iter().zip([
            "lb1        ext0 198.18.0.1/24, int0 198.18.1.2/24, hb0 198.18.8.1, hb1 198.18.9.1",
            "lb2        ext0 198.18.0.2/24, int0 198.18.1.3/24, hb0 198.18.8.2, hb1 198.18.9.2",
        ]) {
            let line = format!("  {:<18} {want}", node.ns.name());
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(
            text.contains(
                "floating on the active node: 198.18.0.100 2001:db8::100 on ext0, gateway 198.18.1.1 2001:db8:1::1 on int0"
            ),
            "{text}"
        );
    }
}
