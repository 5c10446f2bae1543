//! `[cluster]` settings changed while the pair runs, with real daemons: a
//! key that cannot change live (the heartbeat interval) is refused by
//! `lb-ctl config check --daemon` and by an import, the file and the
//! running cluster untouched; a monitor added through an import runs at
//! once (shown in `lb-ctl status`, the group where it was) and reaches the
//! standby with the settings push (its loop and its file); changed to one
//! that fails, it moves the group to the peer: the loop runs what the file
//! says.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use anyhow::Result;
use lb_tests::{
    daemon::DaemonProcess,
    pair::{PairNet, PlanExtras},
    wait::wait_for,
};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

const PLAIN: PlanExtras = PlanExtras {
    cluster_keys: "",
    cluster_tables: "",
    node_keys: ["", ""],
};

/// The node's running configuration as TOML.
fn exported(daemon: &DaemonProcess) -> Result<toml::Table> {
    let out = daemon.ctl().args(["config", "export"]).output()?;
    Ok(toml::from_str(&String::from_utf8(out.stdout)?)?)
}

/// `lb-ctl ARGS FILE` with `config` written to `FILE`.
fn with_file(daemon: &DaemonProcess, dir: &Path, args: &[&str], config: &toml::Table) -> Output {
    let file = dir.join("edited.toml");
    fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    daemon.ctl().args(args).arg(&file).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The node's monitors from `lb-ctl --json status`: `[name, state]`.
fn monitors(daemon: &DaemonProcess) -> Value {
    daemon
        .ctl()
        .args(["--json", "status"])
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice::<Value>(&out.stdout).ok())
        .map_or(Value::Null, |status| status["cluster"]["monitors"].clone())
}

#[test]
fn cluster_settings_change_live_or_are_refused_with_nothing_changed() -> Result<()> {
    let net = PairNet::build()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let [lb1, lb2] = net.start_daemons(&bin(), dir, &PLAIN)?;
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    let file = dir.join("lb1").join("lb.toml");
    let before = fs::read_to_string(&file)?;
    let running = exported(&lb1)?;

    // The heartbeat interval cannot change live: refused by the check and
    // by the import, saying what to do; the file as it was.
    let mut slower = running.clone();
    slower["cluster"].as_table_mut().unwrap()["heartbeat_interval_ms"] = 100.into();
    let why = "cannot change while the daemon runs: cluster.heartbeat_interval_ms";
    let checked = with_file(&lb1, dir, &["config", "check", "--daemon"], &slower);
    assert!(!checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains(&format!(
            "the running daemon would refuse it: cluster.heartbeat_interval_ms: {why}"
        )),
        "{}",
        text(&checked)
    );
    let imported = with_file(&lb1, dir, &["config", "import"], &slower);
    assert!(!imported.status.success(), "{}", text(&imported));
    assert!(text(&imported).contains(why), "{}", text(&imported));
    assert!(
        text(&imported).contains("restart `lb-ctl run` on each"),
        "{}",
        text(&imported)
    );
    assert_eq!(fs::read_to_string(&file)?, before, "the file changed");
    assert_eq!(exported(&lb1)?, running);

    // A monitor added: the check says the cluster takes it live, the
    // import applies it, and it runs at once; the group stays.
    let mut watched = running.clone();
    let monitor = |command: &str| -> toml::Value {
        toml::from_str::<toml::Table>(&format!(
            "name = \"probe\"\nkind = \"exec\"\ncommand = [\"{command}\"]\ninterval_ms = 100\n\
             timeout_ms = 1000\nretries = 1\nstart_wait_ms = 0\nwhen = \"always\"\nservers = [\"lb1\"]\n"
        ))
        .unwrap()
        .into()
    };
    watched["cluster"].as_table_mut().unwrap()["monitors"] =
        toml::Value::Array(vec![monitor("true")]);
    let checked = with_file(&lb1, dir, &["config", "check", "--daemon"], &watched);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains(
            "the running daemon would apply it; the cluster would take cluster.monitors live"
        ),
        "{}",
        text(&checked)
    );
    let imported = with_file(&lb1, dir, &["config", "import"], &watched);
    assert!(imported.status.success(), "{}", text(&imported));
    wait_for(
        "the new monitor runs on lb1",
        Duration::from_secs(3),
        || monitors(&lb1) == serde_json::json!([["probe", "normal"]]),
    )?;
    let saved: toml::Table = toml::from_str(&fs::read_to_string(&file)?)?;
    assert_eq!(
        saved["cluster"]["monitors"], watched["cluster"]["monitors"],
        "the file holds what runs"
    );
    assert_eq!(lb1.cluster_role().as_deref(), Some("active"));
    assert!(net.holds_fip(0) && !net.holds_fip(1));
    assert!(
        lb1.alerts()
            .contains("the cluster took cluster.monitors live"),
        "{}",
        lb1.alerts()
    );
    // The push carried it to the standby, whose loop runs it too (Offline
    // there: it is lb1's), and whose file holds it.
    wait_for("the new monitor on lb2", Duration::from_secs(3), || {
        monitors(&lb2) == serde_json::json!([["probe", "offline"]])
    })?;
    let standby: toml::Table =
        toml::from_str(&fs::read_to_string(dir.join("lb2").join("lb.toml"))?)?;
    assert_eq!(
        standby["cluster"]["monitors"],
        watched["cluster"]["monitors"]
    );
    assert_eq!(lb2.cluster_role().as_deref(), Some("standby"));

    // The monitor changed to one that fails: lb1 is unhealthy and hands
    // the group to lb2, as a monitor in the file at start would.
    let mut failing = watched.clone();
    failing["cluster"].as_table_mut().unwrap()["monitors"] =
        toml::Value::Array(vec![monitor("false")]);
    let imported = with_file(&lb1, dir, &["config", "import"], &failing);
    assert!(imported.status.success(), "{}", text(&imported));
    wait_for(
        "lb2 active after lb1's monitor failed",
        Duration::from_secs(5),
        || {
            lb2.cluster_role().as_deref() == Some("active")
                && lb1.cluster_role().as_deref() == Some("standby")
        },
    )?;
    assert_eq!(monitors(&lb1), serde_json::json!([["probe", "error"]]));
    assert!(net.holds_fip(1) && !net.holds_fip(0));
    Ok(())
}
