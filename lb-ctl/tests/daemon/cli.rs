//! The CLI against a real daemon: status, service and backend commands,
//! config check, export and import, the counters of traffic through the
//! VIP, and a refused import that leaves the running state and the file as
//! they were.
use super::*;

#[test]
fn the_cli_drives_a_real_daemon() {
    let _serial = serial();
    let rig = rig(3);
    let config = write_config(&rig, None);
    let d = Daemon::start(&rig, &config);

    let status = d.json(&["status"]);
    assert_eq!(status["node"], "lb-test");
    assert_eq!(status["services"], 2);
    assert_eq!(status["backends"], 6);
    assert_eq!(status["adopted"], false);
    let human = d.ok(&["status"]);
    assert!(human.contains("lb-test (active)"), "{human}");

    // Traffic through the VIP, and the counters see it.
    let url = format!("http://{VIP_V4}/");
    for _ in 0..10 {
        rig.curl(&url).unwrap();
    }
    let services = d.json(&["service", "list"]);
    assert!(
        services[0]["traffic"]["new_flows"].as_u64().unwrap() >= 10,
        "{services}"
    );
    let table = d.ok(&["service", "list"]);
    assert!(table.starts_with("SERVICE "), "{table}");
    // A watch whose reader goes away ends quietly, without a panic.
    let watch = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} stats --watch --interval 1 | head -n 2 >/dev/null",
            d.process.ctl_line()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(table.contains(SVC4), "{table}");

    // Prometheus metrics, from the client's side.
    let metrics = rig
        .curl(&format!("http://{}:9650/metrics", rig.lb().ext_v4))
        .unwrap();
    for want in [
        "lb_info{version=\"0.1.0\",node=\"lb-test\"} 1",
        "lb_config_generation 0",
        "# TYPE lb_service_new_flows_total counter",
        "lb_backend_up{service=\"tcp/198.18.0.100:80\",backend=\"198.18.1.11:80\"} 1",
        "lb_backend_neighbour_resolved{service=\"tcp/198.18.0.100:80\",backend=\"198.18.1.11:80\"} 1",
        "lb_packets_total{outcome=\"forwarded\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing from:\n{metrics}");
    }
    // Every counter of the data plane, by its name.
    for counter in lb_common::Counter::ALL {
        let want = match counter.name().strip_prefix("flows_") {
            Some(stage) => format!("lb_flows_total{{stage=\"{stage}\"}}"),
            None => format!("lb_packets_total{{outcome=\"{}\"}}", counter.name()),
        };
        assert!(metrics.contains(&want), "{want} missing from:\n{metrics}");
    }
    // The test's connections were confirmed (the client's second packet).
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lb_flows_total{stage=\"confirmed\"} ") && !l.ends_with(" 0")),
        "no confirmed flow in:\n{metrics}"
    );
    let flows = metrics
        .lines()
        .find(|l| l.starts_with("lb_service_new_flows_total{service=\"tcp/198.18.0.100:80\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(flows >= 10, "{flows}");

    // Drain one backend: persisted with a new generation, shown drained.
    let b1 = format!("{}:80", rig.backends[0].v4);
    let out = d.ok(&["backend", "drain", SVC4, &b1]);
    assert_eq!(out, "applied (generation 1)\n");
    let list = d.json(&["backend", "list", SVC4]);
    assert_eq!(list[0]["backends"][0]["state"], "drained");
    let saved = fs::read_to_string(&config).unwrap();
    assert!(saved.contains("generation = 1"), "{saved}");
    assert!(saved.contains("state = \"drained\""), "{saved}");
    assert!(config.with_extension("toml.bak").exists());
    // New connections avoid it.
    for _ in 0..20 {
        assert_ne!(rig.curl(&url).unwrap().trim(), "b1");
    }
    d.ok(&["backend", "enable", SVC4, &b1]);

    // Add a service and a backend; export shows them.
    d.ok(&["service", "add", "udp/198.18.0.100:53", "--mode", "nat"]);
    d.ok(&[
        "backend",
        "add",
        "udp/198.18.0.100:53",
        "198.18.1.11:53",
        "--weight",
        "3",
    ]);
    let exported = d.ok(&["config", "export"]);
    assert!(exported.contains("protocol = \"udp\""), "{exported}");
    assert!(exported.contains("weight = 3"), "{exported}");

    // Refused requests: exact message, exit code 1, nothing changed.
    let before = fs::read_to_string(&config).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["backend", "add", "tcp/198.18.0.200:80", "198.18.1.11:80"],
            "error: no service tcp/198.18.0.200:80\n",
        ),
        (
            &["backend", "add", SVC4, &b1],
            "error: service tcp/198.18.0.100:80 already has backend 198.18.1.11:80\n",
        ),
        (
            &["backend", "add", SVC4, "[2001:db8:1::11]:80"],
            "error: service tcp/198.18.0.100:80: backend [2001:db8:1::11]:80 is not of the VIP's address family\n",
        ),
        (
            &["service", "add", SVC4],
            "error: service tcp/198.18.0.100:80 already exists\n",
        ),
        (
            &["backend", "weight", SVC4, &b1, "20000"],
            "error: service tcp/198.18.0.100:80: backend 198.18.1.11:80 has weight 20000; the most is 10000\n",
        ),
    ];
    for (args, message) in cases {
        let out = d.ctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), *message, "{args:?}");
    }
    assert_eq!(fs::read_to_string(&config).unwrap(), before);

    // Bad API requests (raw, as another client would send them): exact
    // status and error, nothing changed.
    let api_cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "/v1/changes",
            "not json",
            400,
            "invalid request body: expected ident at line 1 column 2",
        ),
        (
            "POST",
            "/v1/changes",
            r#"{"op":"explode"}"#,
            400,
            "invalid request body: unknown variant `explode`, expected one of `add_service`, `set_service`, `del_service`, `add_backend`, `del_backend`, `set_backend` at line 1 column 15",
        ),
        (
            "POST",
            "/v1/changes",
            r#"{"op":"del_service","service":{"protocol":"tcp","vip":"198.18.0.200:80"}}"#,
            404,
            "no service tcp/198.18.0.200:80",
        ),
        (
            "POST",
            "/v1/changes",
            r#"{"op":"set_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.11:80"}"#,
            400,
            "set_backend changes nothing: give a weight or a state",
        ),
        (
            "PUT",
            "/v1/config",
            r#"{"node":{"name":"other","interfaces":["ext0"]}}"#,
            400,
            "the [node] section cannot change while the daemon runs: edit the file and restart lb-ctl run",
        ),
        (
            "GET",
            "/v1/nothing",
            "",
            404,
            "no such API route (see lb-ctl --help)",
        ),
    ];
    for (method, path, body, status, message) in api_cases {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-X", method, "--unix-socket"])
            .arg(&d.socket)
            .args([
                "-w",
                "\n%{http_code}",
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ])
            .arg(format!("http://lb{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (answer, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, status.to_string(), "{method} {path} {body}: {answer}");
        let answer: Value = serde_json::from_str(answer).unwrap();
        assert_eq!(answer["error"], *message, "{method} {path} {body}");
    }
    assert_eq!(fs::read_to_string(&config).unwrap(), before);

    // Usage errors are clap's (exit 2); an unreachable daemon is exit 3.
    assert_eq!(
        d.ctl(&["service", "add", "198.18.0.1:80"]).status.code(),
        Some(2)
    );
    let out = Command::new(LB_CTL)
        .args(["--socket", "/nonexistent/lb.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the lb-ctl daemon"));

    // The alert log recorded the changes and the refusals.
    let alerts = d.json(&["alerts"]);
    let events: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(events[0], "daemon_started");
    assert!(events.contains(&"config_applied"));
    assert!(events.contains(&"config_rejected"));

    // Import of an invalid file: refused with its position, nothing changed.
    let bad = rig.dir().join("bad.toml");
    fs::write(
        &bad,
        exported.replace("protocol = \"udp\"", "protocol = \"sctp\""),
    )
    .unwrap();
    let out = d.ctl(&["config", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant `sctp`"));
    // And of a good one (the backup): restores it.
    let good = rig.dir().join("good.toml");
    fs::write(&good, &before).unwrap();
    // Asked first what the running daemon would do (nothing changes).
    let generation = d.json(&["status"])["generation"].clone();
    let said = d.ok(&["config", "check", "--daemon", good.to_str().unwrap()]);
    assert_eq!(
        said,
        format!("{}: the running daemon would apply it\n", good.display())
    );
    // A [cluster] section cannot be added to a running standalone node:
    // the check and the import say so, and which key.
    let mut clustered: toml::Table = toml::from_str(&before).unwrap();
    let name = clustered["node"]["name"].as_str().unwrap().to_owned();
    clustered.insert(
        "cluster".into(),
        toml::from_str::<toml::Table>(&format!(
            "id = \"00112233445566778899aabbccddeeff\"\n[[servers]]\nname = \"{name}\"\n\
             [[servers]]\nname = \"peer\"\n[[interconnects]]\nname = \"hb0\"\n\
             addresses = [\"198.18.8.1\", \"198.18.8.2\"]\n"
        ))
        .unwrap()
        .into(),
    );
    let cluster_file = rig.dir().join("clustered.toml");
    fs::write(&cluster_file, toml::to_string(&clustered).unwrap()).unwrap();
    let out = d.ctl(&[
        "config",
        "check",
        "--daemon",
        cluster_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with("error: the running daemon would refuse it: cluster: cluster: the [cluster] section cannot be added while the daemon runs"),
        "{said}"
    );
    let out = d.ctl(&["config", "import", cluster_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be added while the daemon runs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.json(&["status"])["generation"], generation);
    assert_eq!(fs::read_to_string(&config).unwrap(), before);
    d.ok(&["config", "import", good.to_str().unwrap()]);
}
