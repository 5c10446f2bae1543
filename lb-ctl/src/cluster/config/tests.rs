use super::*;

const GOOD: &str = r#"
id = "00112233445566778899aabbccddeeff"
np_targets = ["198.18.0.254"]

[[servers]]
name = "lb1"
[[servers]]
name = "lb2"

[[interconnects]]
name = "lankhb1"
addresses = ["198.18.8.1", "198.18.8.2"]
[[interconnects]]
name = "lankhb2"
addresses = ["198.18.9.1", "198.18.9.2"]

[[floating_ips]]
address = "198.18.0.100/24"
interface = "ext0"
[[floating_ips]]
address = "198.18.1.1/24"
interface = "int0"

[[monitors]]
name = "client-link"
kind = "link"
interface = "ext0"

[[monitors]]
name = "gateway"
kind = "ip"
targets = ["198.18.0.254"]
when = "active"
"#;

fn ifaces() -> Vec<String> {
    vec!["ext0".into(), "int0".into()]
}

fn good() -> ClusterConfig {
    toml::from_str(GOOD).unwrap()
}

#[test]
fn a_good_section_validates_with_the_documented_defaults() {
    let c = good();
    c.validate("lb2", &ifaces()).unwrap();
    assert_eq!(c.heartbeat_interval_ms, 40);
    assert_eq!(c.heartbeat_lost_after, 5);
    assert_eq!(c.interconnects[0].port, DEFAULT_HEARTBEAT_PORT);
    assert_eq!(c.sync_port, DEFAULT_SYNC_PORT);
    assert_eq!(c.replication_port, DEFAULT_REPLICATION_PORT);
    assert!(!c.auto_failback);
    let p = c.params("lb2").unwrap();
    assert_eq!((p.me, p.peer, p.survivor, p.links), (1, 0, 0, 2));
    assert_eq!(p.dead_time(), Duration::from_millis(200));
    assert!(p.np_targets);
}

#[test]
fn each_mistake_is_named_with_its_key() {
    type Edit = fn(&mut ClusterConfig);
    let cases: &[(Edit, &[Seg], &str)] = &[
        (
            |c| c.id = "xyz".into(),
            &[Key("id")],
            "id must be 32 hex digits",
        ),
        (
            |c| {
                c.servers.pop();
            },
            &[Key("servers")],
            "exactly two servers, 1 are configured",
        ),
        (
            |c| c.servers[1].name = "lb1".into(),
            &[Key("servers"), Index(1)],
            "listed twice",
        ),
        (
            |c| c.servers[1].name = "other".into(),
            &[Key("servers")],
            "this node (\"lb2\", node.name) is not among the servers",
        ),
        (
            |c| c.survivor = Some("lb3".into()),
            &[Key("survivor")],
            "survivor \"lb3\" is not one of the servers (lb1, lb2)",
        ),
        (
            |c| c.interconnects.clear(),
            &[Key("interconnects")],
            "at least one interconnect",
        ),
        (
            |c| c.replication_port = 0,
            &[Key("replication_port")],
            "replication_port must be above 0",
        ),
        (
            |c| c.replication_port = c.sync_port,
            &[Key("replication_port")],
            "is the sync_port too",
        ),
        (
            |c| {
                c.interconnects[1].addresses.pop();
            },
            &[Key("interconnects"), Index(1), Key("addresses")],
            "needs one address per server (2), it has 1",
        ),
        (
            |c| c.interconnects[1].addresses[1] = "2001:db8::2".parse().unwrap(),
            &[Key("interconnects"), Index(1), Key("addresses")],
            "mixes IPv4 and IPv6",
        ),
        (
            |c| c.interconnects[1].addresses[0] = "198.18.8.1".parse().unwrap(),
            &[Key("interconnects"), Index(1), Key("addresses")],
            "198.18.8.1 is used twice",
        ),
        (
            |c| c.heartbeat_lost_after = 1,
            &[Key("heartbeat_lost_after")],
            "one lost heartbeat must never fail over",
        ),
        (
            |c| c.heartbeat_interval_ms = 5,
            &[Key("heartbeat_interval_ms")],
            "is not 10..=10000",
        ),
        (
            |c| c.np_targets.push("127.0.0.1".parse().unwrap()),
            &[Key("np_targets"), Index(1)],
            "cannot be an NP target",
        ),
        (
            |c| c.floating_ips[0].address = "198.18.0.100".into(),
            &[Key("floating_ips"), Index(0), Key("address")],
            "needs a prefix length",
        ),
        (
            |c| c.floating_ips[0].address = "198.18.0.100/33".into(),
            &[Key("floating_ips"), Index(0), Key("address")],
            "prefix length \"33\" is not 0..=32",
        ),
        (
            |c| c.floating_ips[1].address = "198.18.0.100/24".into(),
            &[Key("floating_ips"), Index(1), Key("address")],
            "listed twice",
        ),
        (
            |c| c.floating_ips[1].address = "198.18.9.2/24".into(),
            &[Key("floating_ips"), Index(1), Key("address")],
            "also an interconnect address",
        ),
        (
            |c| c.floating_ips[1].interface = "eth9".into(),
            &[Key("floating_ips"), Index(1), Key("interface")],
            "interface \"eth9\" is not one of node.interfaces",
        ),
        (
            |c| c.monitors[1].interface = Some("ext0".into()),
            &[Key("monitors"), Index(1), Key("interface")],
            "`interface` belongs to kind link, not ip",
        ),
        (
            |c| c.monitors[0].interface = None,
            &[Key("monitors"), Index(0), Key("kind")],
            "kind link needs `interface`",
        ),
        (
            |c| c.monitors[1].retries = 0,
            &[Key("monitors"), Index(1), Key("retries")],
            "retries must be at least 1",
        ),
        (
            |c| c.monitors[1].servers = vec!["lb9".into()],
            &[Key("monitors"), Index(1), Key("servers")],
            "\"lb9\" is not one of the servers",
        ),
        (
            |c| c.monitors[1].name = "client-link".into(),
            &[Key("monitors"), Index(1), Key("name")],
            "listed twice",
        ),
        (
            |c| {
                for i in 0..8 {
                    let mut m = c.monitors[1].clone();
                    m.name = format!("extra-{i}");
                    c.monitors.push(m);
                }
            },
            &[Key("monitors"), Index(8)],
            "at most 8 monitors",
        ),
    ];
    for (edit, path, want) in cases {
        let mut c = good();
        edit(&mut c);
        let err = c.validate("lb2", &ifaces()).unwrap_err();
        let mut full = vec![Key("cluster")];
        full.extend_from_slice(path);
        assert_eq!(err.path, full, "{}", err.message);
        assert!(err.message.starts_with("cluster: "), "{}", err.message);
        assert!(
            err.message.contains(want),
            "{:?} lacks {want:?}",
            err.message
        );
    }
}

#[test]
fn unknown_keys_are_refused() {
    let err = toml::from_str::<ClusterConfig>(&format!("{GOOD}\nheartbeat_ms = 3\n")).unwrap_err();
    assert!(
        err.message().contains("unknown field `heartbeat_ms`"),
        "{err}"
    );
}
