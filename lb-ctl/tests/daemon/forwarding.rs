//! Traffic through the real daemon: health checks and the sorry server,
//! the first request on a fresh node (neighbours resolved by the daemon),
//! an unresolvable backend, fragments and time exceeded across a restart.
use super::*;

#[test]
fn health_checks_take_a_stopped_backend_out_and_the_sorry_server_answers_when_all_are_down() {
    let _serial = serial();
    let mut rig = rig(4);
    // b4 is the sorry server (not a backend).
    let sorry = format!("{}:80", rig.backends[3].v4);
    let config = write_config(&rig, Some(&sorry));
    let d = Daemon::start(&rig, &config);
    let url = format!("http://{VIP_V4}/");
    let b1 = format!("{}:80", rig.backends[0].v4);

    rig.stop_backend(0).unwrap();
    // fall (2) x interval (300 ms) plus a probe's timeout and slack.
    let took = d.wait_health(SVC4, &b1, "down", Duration::from_secs(5));
    println!("b1 marked down {took:?} after nginx stopped");
    let report = rig.wrk(&url, Duration::from_secs(2), 8).unwrap();
    assert!(report.requests > 100, "{report:?}");
    assert_eq!(report.errors(), 0, "{report:?}");

    rig.start_backend(0).unwrap();
    d.wait_health(SVC4, &b1, "up", Duration::from_secs(5));
    let served: Vec<String> = (0..40)
        .map(|_| rig.curl(&url).unwrap().trim().to_owned())
        .collect();
    assert!(served.iter().any(|b| b == "b1"), "{served:?}");

    for i in 0..3 {
        rig.stop_backend(i).unwrap();
    }
    for b in rig.backends.iter().take(3) {
        d.wait_health(
            SVC4,
            &format!("{}:80", b.v4),
            "down",
            Duration::from_secs(5),
        );
    }
    for _ in 0..5 {
        assert_eq!(rig.curl(&url).unwrap(), "b4\n");
    }
    let list = d.json(&["service", "list"]);
    assert_eq!(list[0]["no_usable_backend"], true);
    rig.start_backend(1).unwrap();
    d.wait_health(
        SVC4,
        &format!("{}:80", rig.backends[1].v4),
        "up",
        Duration::from_secs(5),
    );
    assert_eq!(rig.curl(&url).unwrap(), "b2\n");

    let events: Vec<String> = d
        .json(&["alerts"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event"].as_str().unwrap().to_owned())
        .collect();
    for want in [
        "backend_down",
        "backend_up",
        "no_usable_backend",
        "service_recovered",
    ] {
        assert!(
            events.iter().any(|e| e == want),
            "{want} missing from {events:?}"
        );
    }
}

/// Issue 9: nothing but the daemon resolves the backends' neighbours. A DSR
/// and a NAT service without health checks, v4 and v6, each on a backend the
/// LB namespace never talked to, answer their first request, and no packet
/// is dropped for want of a neighbour.
#[test]
fn dsr_and_nat_without_health_checks_answer_the_first_request_on_a_fresh_node() {
    let _serial = serial();
    let rig = rig(2);
    rig.backends_hold_vips().unwrap();
    let (b1, b2) = (&rig.backends[0], &rig.backends[1]);
    let mut services = String::new();
    services.push_str(&service(
        &VIP_V4.to_string(),
        80,
        "dsr",
        &[format!("{}:80", b1.v4)],
    ));
    services.push_str(&service(
        &VIP_V6.to_string(),
        80,
        "dsr",
        &[format!("[{}]:80", b1.v6)],
    ));
    services.push_str(&service(
        &VIP_V4.to_string(),
        8080,
        "nat",
        &[format!("{}:80", b2.v4)],
    ));
    services.push_str(&service(
        &VIP_V6.to_string(),
        8080,
        "nat",
        &[format!("[{}]:80", b2.v6)],
    ));
    let config = write_node_config(&rig, "", &services);
    // A fresh node: no neighbour of the backends is known.
    assert_eq!(resolved_neighbours(&rig), Vec::<String>::new());
    // The node's interfaces are up and their IPv6 link-local addresses
    // usable (the kernel sends no neighbour solicitation before that).
    wait_for_ipv6_addresses(&rig);
    let d = Daemon::start(&rig, &config);

    for (url, want) in [
        (format!("http://{VIP_V4}/"), "b1\n"),
        (format!("http://[{VIP_V6}]/"), "b1\n"),
        (format!("http://{VIP_V4}:8080/"), "b2\n"),
        (format!("http://[{VIP_V6}]:8080/"), "b2\n"),
    ] {
        assert_eq!(rig.curl(&url).unwrap(), want, "{url}");
    }
    let counters = d.json(&["stats"])["counters"].clone();
    assert_eq!(counters["drop_no_neighbour"], 0, "{counters}");
    assert!(counters["forwarded"].as_u64().unwrap() >= 4, "{counters}");

    // Every backend shows its neighbour resolved (at the daemon's next
    // reading); the entries are managed ones the daemon made.
    let all_resolved = || {
        let list = d.json(&["backend", "list"]);
        list.as_array().unwrap().iter().all(|s| {
            s["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["neighbour"] == "resolved" && b["next_hop"]["interface"] == "int0")
        })
    };
    wait_for(
        "every backend's neighbour is resolved",
        Duration::from_secs(5),
        all_resolved,
    );
    let entries = resolved_neighbours(&rig);
    for addr in [
        b1.v4.to_string(),
        b1.v6.to_string(),
        b2.v4.to_string(),
        b2.v6.to_string(),
    ] {
        let line = entries
            .iter()
            .find(|l| l.starts_with(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("no entry for {addr}: {entries:?}"));
        assert!(
            line.contains("managed") && line.contains("proto 177"),
            "{line}"
        );
    }

    // A backend that goes takes the daemon's entry with it.
    d.ok(&[
        "backend",
        "del",
        "tcp/198.18.0.100:8080",
        &format!("{}:80", b2.v4),
    ]);
    let gone = format!("{} ", b2.v4);
    wait_for(
        "the entry of a removed backend is removed",
        Duration::from_secs(5),
        || {
            !resolved_neighbours(&rig)
                .iter()
                .any(|l| l.starts_with(&gone))
        },
    );
}

/// A backend whose neighbour cannot be resolved (an address on the backend
/// segment that nobody holds) shows as unresolved, with an alert; and when
/// the address appears, as resolved, with an alert.
#[test]
fn an_unresolvable_backend_shows_as_unresolved_with_an_alert() {
    let _serial = serial();
    let rig = rig(2);
    rig.backends_hold_vips().unwrap();
    let ghost = "198.18.1.99";
    let services = service(
        &VIP_V4.to_string(),
        80,
        "dsr",
        &[format!("{}:80", rig.backends[0].v4), format!("{ghost}:80")],
    );
    let config = write_node_config(&rig, "", &services);
    wait_for_ipv6_addresses(&rig);
    let d = Daemon::start(&rig, &config);
    let neighbour = |addr: &str| -> String {
        let list = d.json(&["backend", "list", SVC4]);
        list[0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == format!("{addr}:80"))
            .map(|b| b["neighbour"].as_str().unwrap().to_owned())
            .unwrap()
    };
    wait_for(
        "the ghost backend shows as unresolved",
        Duration::from_secs(15),
        || neighbour(ghost) == "unresolved",
    );
    assert_eq!(neighbour(&rig.backends[0].v4.to_string()), "resolved");
    let table = d.ok(&["backend", "list"]);
    assert!(
        table.contains("NEIGHBOUR") && table.contains("unresolved (198.18.1.99 on int0)"),
        "{table}"
    );
    assert_eq!(d.json(&["status"])["neighbours_unresolved"], 1);
    let status = d.ok(&["status"]);
    assert!(
        status.contains("(2 backends, 0 down, 1 unresolved)"),
        "{status}"
    );
    let unresolved: Vec<String> = events(&d)
        .into_iter()
        .filter(|(e, _)| e == "neighbour_unresolved")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        unresolved,
        vec!["backend 198.18.1.99 (backend of tcp/198.18.0.100:80) is unreachable: its next hop 198.18.1.99 on int0 does not answer (ARP / neighbour solicitation); DSR packets to it are dropped (drop_no_neighbour)".to_owned()]
    );

    // The address appears on the segment: resolved again, with an alert.
    rig.backends[1]
        .ns
        .ip(["addr", "add", &format!("{ghost}/24"), "dev", "eth0"])
        .unwrap();
    wait_for(
        "the ghost backend resolves",
        Duration::from_secs(15),
        || neighbour(ghost) == "resolved",
    );
    assert!(
        events(&d).iter().any(|(e, m)| e == "neighbour_resolved"
            && m == "backend 198.18.1.99 (backend of tcp/198.18.0.100:80) is reachable again: next hop 198.18.1.99 on int0 resolved"),
        "{:?}",
        events(&d)
    );
    assert_eq!(d.json(&["status"])["neighbours_unresolved"], 0);
}

/// The path's edges through the real daemon, and again after a kill -9 and
/// a restart (adopted maps, fragment table and jump table): 8,000-byte UDP
/// answers through the VIP (fragments translated), and a TTL or hop limit
/// expiring at the LB answered with a time exceeded from the LB's address.
#[test]
fn fragments_and_time_exceeded_through_the_daemon_and_across_a_restart() {
    let _serial = serial();
    let mut rig = rig(3);
    rig.serve_udp(5300).unwrap();
    let config = write_config(&rig, None);
    let mut text = fs::read_to_string(&config).unwrap();
    for v6 in [false, true] {
        let vip = if v6 {
            VIP_V6.to_string()
        } else {
            VIP_V4.to_string()
        };
        text.push_str(&format!(
            "\n[[services]]\nvip = \"{vip}\"\nport = 5300\nprotocol = \"udp\"\nmode = \"nat\"\n"
        ));
        for b in &rig.backends {
            let addr = if v6 {
                format!("[{}]:5300", b.v6)
            } else {
                format!("{}:5300", b.v4)
            };
            text.push_str(&format!("\n[[services.backends]]\naddress = \"{addr}\"\n"));
        }
    }
    fs::write(&config, text).unwrap();
    let mut d = Daemon::start(&rig, &config);
    check_edges(&rig, &d);
    d.kill9();
    d.spawn(&rig);
    assert_eq!(d.json(&["status"])["adopted"], true);
    check_edges(&rig, &d);
}

fn check_edges(rig: &Rig, d: &Daemon) {
    let wait = Duration::from_secs(3);
    for v6 in [false, true] {
        let (vip, lb, time_exceeded) = if v6 {
            (IpAddr::from(VIP_V6), IpAddr::from(rig.lb().ext_v6), 3)
        } else {
            (IpAddr::from(VIP_V4), IpAddr::from(rig.lb().ext_v4), 11)
        };
        let to = SocketAddr::new(vip, 5300);
        let counters = || d.json(&["stats"])["counters"].clone();
        match udp::exchange(&rig.client, to, b"SEND 8000", wait).unwrap() {
            Reply::Datagram(answer) => {
                let name = udp::answered_by(&answer).unwrap().to_owned();
                assert!(
                    answer == udp::pattern(&name, 8000),
                    "{name}'s answer: {} bytes",
                    answer.len()
                );
            }
            other => panic!(
                "8,000-byte answer from {to}: {other:?}; LB counters {}",
                counters()
            ),
        }
        let reply = udp::exchange_with(&rig.client, to, b"hello", wait, |socket| {
            udp::receive_errors(socket, v6)?;
            udp::set_ttl(socket, v6, 1)
        })
        .unwrap();
        match reply {
            Reply::Icmp(report) => {
                assert_eq!(
                    (report.icmp_type, report.code, report.from),
                    (time_exceeded, 0, lb)
                );
            }
            other => panic!("TTL 1 to {to}: {other:?}; LB counters {}", counters()),
        }
    }
}
