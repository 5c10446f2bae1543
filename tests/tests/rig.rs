//! Rig tests: real namespaces, real nginx, curl and wrk, the XDP program
//! attached in native mode to the LB's interfaces. Needs root.
use std::{net::SocketAddr, time::Duration};

use lb_common::Counter;
use lb_ctl::dataplane::{AttachMode, Dataplane};
use lb_tests::{
    netns,
    rig::{
        LB_EXT_IFACE, LB_INT_IFACE, Rig, RigOptions,
        udp::{self, Reply},
    },
};

fn attach(rig: &Rig) -> Dataplane {
    rig.lb
        .run_in(|| {
            let mut dp = Dataplane::load()?;
            dp.attach(LB_EXT_IFACE, AttachMode::Native)?;
            dp.attach(LB_INT_IFACE, AttachMode::Native)?;
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
