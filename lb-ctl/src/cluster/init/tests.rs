use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::cluster::keys::KeyFile;

pub const PLAN: &str = r#"# The setup parameter sheet.
[cluster]
np_targets = ["198.18.0.10"]
key_file = "/etc/lb/cluster.keys"

[[cluster.servers]]
name = "lb1"
[[cluster.servers]]
name = "lb2"

[[cluster.interconnects]]
name = "lankhb1"
addresses = ["198.18.8.1", "198.18.8.2"]
[[cluster.interconnects]]
name = "lankhb2"
addresses = ["198.18.9.1", "198.18.9.2"]

[[cluster.floating_ips]]
address = "198.18.0.100/24"
interface = "ext0"

[nodes.lb1]
interfaces = ["ext0", "int0"]
[nodes.lb2]
interfaces = ["ext0", "int0"]
api_socket = "/run/lb/lb2.sock"

[[services]]
vip = "198.18.0.100"
port = 80
protocol = "tcp"
[[services.backends]]
address = "198.18.1.11:80"
"#;

fn counter() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |buf| {
        for b in buf {
            n = n.wrapping_add(1);
            *b = n;
        }
    }
}

#[test]
fn a_plan_gives_each_server_its_files_that_load() {
    let files = generate(PLAN, &mut counter()).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "lb1/lb.toml",
            "lb1/cluster.keys",
            "lb1/tls/ca.pem",
            "lb1/tls/lb1.pem",
            "lb1/tls/lb1.key",
            "lb2/lb.toml",
            "lb2/cluster.keys",
            "lb2/tls/ca.pem",
            "lb2/tls/lb2.pem",
            "lb2/tls/lb2.key",
        ]
    );
    let text = |i: usize| String::from_utf8(files[i].contents.clone()).unwrap();
    let lb1 = Config::parse(&text(0)).unwrap();
    let lb2 = Config::parse(&text(5)).unwrap();
    assert_eq!(lb1.node.name, "lb1");
    assert_eq!(lb2.node.name, "lb2");
    assert_eq!(lb2.node.api_socket, PathBuf::from("/run/lb/lb2.sock"));
    // One cluster: the same id, keys, CA and LB settings on both.
    assert_eq!(lb1.cluster, lb2.cluster);
    assert_eq!(
        lb1.cluster.as_ref().unwrap().id,
        "0102030405060708090a0b0c0d0e0f10"
    );
    assert_eq!(lb1.services, lb2.services);
    assert_eq!(text(1), text(6));
    assert_eq!(text(2), text(7));
    KeyFile::parse(&text(1)).unwrap();
    assert!(text(3).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(text(4).contains("PRIVATE KEY"));
    assert_ne!(text(3), text(8));
    for f in &files {
        let secret = f
            .path
            .extension()
            .is_some_and(|e| e == "key" || e == "keys");
        assert_eq!(
            f.mode,
            if secret { 0o600 } else { 0o644 },
            "{}",
            f.path.display()
        );
    }
}

#[test]
fn a_bad_plan_says_where_and_writes_nothing() {
    let cases = [
        (
            PLAN.replace("[nodes.lb2]\ninterfaces = [\"ext0\", \"int0\"]\napi_socket = \"/run/lb/lb2.sock\"\n", ""),
            "line 22, column 2: server \"lb2\" has no [nodes.lb2] settings",
        ),
        (
            PLAN.replace("[nodes.lb2]", "[nodes.lb3]"),
            "line 24, column 8: nodes.lb3 is not one of cluster.servers",
        ),
        (
            PLAN.replace("interface = \"ext0\"\n\n[nodes", "interface = \"eth7\"\n\n[nodes"),
            "line 20, column 1: server lb1: cluster: floating IP 198.18.0.100: interface \"eth7\" is not one of node.interfaces",
        ),
        (
            PLAN.replace("api_socket = \"/run/lb/lb2.sock\"", "colour = 1"),
            "line 24, column 8: nodes.lb2: unknown field `colour`, expected one of `name`, `interfaces`, `xdp_mode`, `api_socket`, `bpffs_dir`, `alert_log`, `metrics`, `log_format`, `detach_on_stop`, `allow_private_bpffs`",
        ),
        (
            PLAN.replace("address = \"198.18.1.11:80\"", "address = \"[2001:db8::1]:80\""),
            "line 32, column 1: server lb1: service tcp/198.18.0.100:80: backend [2001:db8::1]:80 is not of the VIP's address family",
        ),
        (
            PLAN.replace("[[cluster.interconnects]]\nname = \"lankhb2\"", "[[cluster.interconnects]]\nname = \"lankhb1\""),
            "line 14, column 1: server lb1: cluster: interconnect \"lankhb1\" is listed twice",
        ),
    ];
    for (text, want) in cases {
        let err = generate(&text, &mut counter()).unwrap_err();
        assert_eq!(err.to_string(), want, "case {want}");
    }
}

#[test]
fn files_are_written_once_with_their_modes_and_never_over_existing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate(PLAN, &mut counter()).unwrap();
    write(dir.path(), &files, false).unwrap();
    let mode = |p: &str| {
        fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("lb1/cluster.keys"), 0o600);
    assert_eq!(mode("lb2/tls/lb2.key"), 0o600);
    assert_eq!(mode("lb2/lb.toml"), 0o644);
    KeyFile::load(&dir.path().join("lb2/cluster.keys")).unwrap();
    Config::load(&dir.path().join("lb1/lb.toml")).unwrap();
    // A second init refuses and leaves the first one's files.
    let before = fs::read(dir.path().join("lb1/cluster.keys")).unwrap();
    let again = generate(PLAN, &mut |b: &mut [u8]| b.fill(0xee)).unwrap();
    let err = write(dir.path(), &again, false).unwrap_err();
    assert!(
        err.contains("lb1/lb.toml exists already; nothing was written"),
        "{err}"
    );
    assert_eq!(
        fs::read(dir.path().join("lb1/cluster.keys")).unwrap(),
        before
    );
    write(dir.path(), &again, true).unwrap();
    assert_ne!(
        fs::read(dir.path().join("lb1/cluster.keys")).unwrap(),
        before
    );
}

#[test]
fn the_documented_plan_generates() {
    let files = generate(
        include_str!("../../../../docs/cluster-plan.example.toml"),
        &mut counter(),
    )
    .unwrap();
    assert_eq!(files.len(), 10);
}
