//! The daemon's start, stop and restart: a bad configuration refused
//! before anything is touched, `kill -9` under load, incompatible pins,
//! `ip netns exec` against `nsenter --net`, SIGTERM the documented way.
use super::*;

#[test]
fn a_bad_configuration_stops_run_before_it_touches_anything() {
    let _serial = serial();
    let rig = rig(1);
    let config = rig.dir().join("lb.toml");
    let pin_dir = format!("/sys/fs/bpf/{}", rig.prefix);
    fs::write(
        &config,
        format!("[node]\nname = \"x\"\ninterfaces = [\"ext0\"]\nbpffs_dir = \"{pin_dir}\"\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\nmode = \"dsr\"\n\n[[services.backends]]\naddress = \"198.18.1.11:8080\"\n"),
    )
    .unwrap();
    let want = format!(
        "error: {}:12:1: service tcp/198.18.0.100:80: backend 198.18.1.11:8080 must use the VIP's port 80 in DSR mode (the packet is not rewritten)\n",
        config.display()
    );
    let out = Command::new(LB_CTL)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), want);
    let out = rig
        .lb()
        .ns
        .net_command(LB_CTL)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), want);
    assert!(!Path::new(&pin_dir).exists(), "run touched {pin_dir}");
    let link = rig.lb().ns.ip(["link", "show", "ext0"]).unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"));
}

#[test]
fn kill_9_of_the_daemon_under_load_loses_no_request() {
    let _serial = serial();
    let rig = rig(3);
    let config = write_config(&rig, None);
    let mut d = Daemon::start(&rig, &config);
    let forwarded = |d: &Daemon| -> u64 {
        d.json(&["stats"])["counters"]["forwarded"]
            .as_u64()
            .unwrap()
    };
    let url = format!("http://{VIP_V4}/");
    let load = {
        let client = rig.client.name().to_owned();
        thread::spawn(move || {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &client,
                    "timeout",
                    "30",
                    "wrk",
                    "-t1",
                    "-c16",
                    "-d6s",
                    "--timeout",
                    "5s",
                    &url,
                ])
                .output()
                .unwrap()
        })
    };
    thread::sleep(Duration::from_secs(2));
    let before = forwarded(&d);
    d.kill9();
    thread::sleep(Duration::from_millis(500));
    d.spawn(&rig);
    let out = load.join().unwrap();
    let report = lb_tests::rig::WrkReport::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    println!("wrk across a kill -9 and restart: {report:?}");
    assert!(report.requests > 1000, "{report:?}");
    assert_eq!(report.errors(), 0, "{report:?}");
    let status = d.json(&["status"]);
    assert_eq!(status["adopted"], true);
    let after = forwarded(&d);
    assert!(after > before, "counters restarted: {before} then {after}");
    let events: Vec<String> = d
        .json(&["alerts"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m.contains("adopted the running program")),
        "{events:?}"
    );
}

#[test]
fn pinned_maps_of_an_incompatible_version_are_replaced_with_an_alert() {
    let _serial = serial();
    let rig = rig(1);
    let config = write_config(&rig, None);
    let pin_dir = format!("/sys/fs/bpf/{}", rig.prefix);
    fs::create_dir_all(&pin_dir).unwrap();
    // A services map as another version might have left it: another value size.
    let out = Command::new("bpftool")
        .args(["map", "create", &format!("{pin_dir}/LB_SERVICES")])
        .args([
            "type",
            "hash",
            "key",
            "20",
            "value",
            "16",
            "entries",
            "1024",
            "name",
            "LB_SERVICES",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start(&rig, &config);
    let alerts = d.json(&["alerts"]);
    let replaced = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "dataplane_replaced")
        .expect("an alert says the pinned maps were replaced");
    assert_eq!(
        replaced["message"],
        "pinned maps of an incompatible version were replaced: map LB_SERVICES has key/value/entries (20, 16, 1024), this version needs (20, 12, 1024)"
    );
    assert_eq!(rig.curl(&format!("http://{VIP_V4}/")).unwrap(), "b1\n");
}

/// Issue 9: under `ip netns exec` the daemon's bpffs is its own and goes
/// with it. Refused with a clear error at the setting; with
/// `allow_private_bpffs` it runs, says so, and says at the stop that the
/// program goes (and it does).
#[test]
fn a_daemon_under_ip_netns_exec_is_refused_unless_allowed() {
    let _serial = serial();
    let rig = rig(1);
    let services = service(
        &VIP_V4.to_string(),
        80,
        "nat",
        &[format!("{}:80", rig.backends[0].v4)],
    );
    let config = write_node_config(&rig, "", &services);
    // Bounded: a daemon that is not refused would run on.
    let out = rig
        .lb()
        .ns
        .command("timeout")
        .args(["20", LB_CTL, "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let want = format!(
        "error: {}:5:1: node.bpffs_dir /sys/fs/bpf/{} is on a bpffs (mounted on /sys/fs/bpf) that only this process's mount namespace has, not PID 1's (`ip netns exec` gives a process a /sys of its own). What lb-ctl pins there vanishes when it exits, and the XDP program is detached with it. Run lb-ctl in the host's mount namespace, with the host's /sys/fs/bpf (`nsenter --net=/run/netns/NAME lb-ctl run ...`, not `ip netns exec`), or set node.allow_private_bpffs = true to run anyway",
        config.display(),
        rig.prefix
    );
    assert_eq!(stderr.lines().last(), Some(want.as_str()), "{stderr}");
    assert!(!xdp_on_ext0(&rig), "a refused daemon attached XDP");

    // Allowed: it runs and forwards, with a warning.
    let config = write_node_config(&rig, "allow_private_bpffs = true", &services);
    let mut d = Daemon::start_with(&rig, &config, rig.lb().ns.command(LB_CTL));
    assert_eq!(rig.curl(&format!("http://{VIP_V4}/")).unwrap(), "b1\n");
    let warning = events(&d)
        .into_iter()
        .find(|(e, _)| e == "bpffs_private")
        .expect("a bpffs_private alert");
    assert_eq!(
        warning.1,
        format!(
            "/sys/fs/bpf/{} is on a bpffs (/sys/fs/bpf) that only this process's mount namespace has: the XDP program is detached when lb-ctl exits (node.allow_private_bpffs = true)",
            rig.prefix
        )
    );
    // The stop says the program goes, and it goes.
    assert!(d.terminate().success());
    let stopped = last_alert(&rig);
    assert_eq!(stopped["event"], "daemon_stopped");
    assert_eq!(
        stopped["message"],
        format!(
            "stopped; the XDP program is detached from ext0, int0 when this process exits: its pins in /sys/fs/bpf/{} are on a bpffs private to this process's mount namespace",
            rig.prefix
        )
    );
    wait_for(
        "XDP leaves ext0 with the daemon",
        Duration::from_secs(10),
        || !xdp_on_ext0(&rig),
    );
}

/// Issue 9: run the documented way (`nsenter --net`, the host's bpffs), the
/// program goes on forwarding after SIGTERM: requests through the VIP are
/// answered after the daemon exited.
#[test]
fn a_daemon_run_the_documented_way_keeps_forwarding_after_sigterm() {
    let _serial = serial();
    let rig = rig(2);
    let services = service(
        &VIP_V4.to_string(),
        80,
        "nat",
        &[
            format!("{}:80", rig.backends[0].v4),
            format!("{}:80", rig.backends[1].v4),
        ],
    );
    let config = write_node_config(&rig, "", &services);
    let mut d = Daemon::start(&rig, &config);
    let url = format!("http://{VIP_V4}/");
    assert!(["b1\n", "b2\n"].contains(&rig.curl(&url).unwrap().as_str()));
    assert!(d.terminate().success());
    let stopped = last_alert(&rig);
    assert_eq!(stopped["event"], "daemon_stopped");
    assert!(
        stopped["message"]
            .as_str()
            .unwrap()
            .starts_with("stopped; the XDP program stays attached to ext0, int0"),
        "{stopped}"
    );
    // The issue saw the program vanish three seconds after the stop.
    thread::sleep(Duration::from_secs(4));
    let before = forwarded_after_exit(&rig);
    for _ in 0..10 {
        let body = rig.curl(&url).unwrap();
        assert!(["b1\n", "b2\n"].contains(&body.as_str()), "{body}");
    }
    // Through the program (its pinned counters moved), not the kernel.
    assert!(forwarded_after_exit(&rig) > before);
}

/// The `forwarded` counter read from the pinned map while no daemon runs
/// (bpftool; per-CPU values added up).
fn forwarded_after_exit(rig: &Rig) -> u64 {
    let out = Command::new("bpftool")
        .args(["--json", "map", "lookup", "pinned"])
        .arg(format!("/sys/fs/bpf/{}/LB_STATS", rig.prefix))
        .args(["key", "9", "0", "0", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    value["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let bytes: Vec<u8> = v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
                })
                .collect();
            u64::from_le_bytes(bytes.try_into().unwrap())
        })
        .sum()
}
