//! `cargo xtask bench dataplane`: the data-plane benchmark (tests/benches/
//! dataplane.rs, run by `cargo bench`). It prints a table and writes
//! `target/bench/dataplane.json`; docs/benchmarks.md says what each figure
//! means. Targets are reported, never enforced: the run fails only when a
//! figure could not be measured. With `--profile` it runs under
//! `perf record` and reports where lb's XDP programs spent their time, by
//! source line (`target/bench/WHICH-profile.txt`, see profile.rs).
use anyhow::{Result, bail};

use crate::{cargo, exec, profile, require_root, root, setup};

/// The benchmarks `cargo xtask bench` knows, with the package holding each
/// (`control`, `failover` and `replication` run the real lb-ctl binary, so
/// they live in lb-ctl).
const BENCHES: &[(&str, &str)] = &[
    ("dataplane", "lb-tests"),
    ("control", "lb-ctl"),
    ("failover", "lb-ctl"),
    ("replication", "lb-ctl"),
];

pub fn run(which: &str, args: &[String]) -> Result<()> {
    let Some(&(_, package)) = BENCHES.iter().find(|(name, _)| *name == which) else {
        let names: Vec<&str> = BENCHES.iter().map(|(name, _)| *name).collect();
        bail!(
            "no benchmark {which:?}; known: {} (e.g. `cargo xtask bench dataplane`)",
            names.join(", ")
        );
    };
    require_root("bench")?;
    setup::run()?;
    let dir = root().join("target/bench");
    let out = dir.join(format!("{which}.json"));
    let profile = args.iter().any(|arg| arg == PROFILE);
    let args: Vec<&String> = args.iter().filter(|arg| *arg != PROFILE).collect();
    let mut bench = cargo();
    bench
        .args(["bench", "-p", package, "--bench", which, "--"])
        .arg("--out")
        .arg(&out)
        .args(args);
    if !profile {
        println!("[bench] cargo bench -p {package} --bench {which}");
        return exec(&mut bench, &format!("the {which} benchmark"));
    }
    // Built first, so that the samples are the benchmark's, not rustc's.
    exec(
        cargo().args(["bench", "-p", package, "--bench", which, "--no-run"]),
        &format!("building the {which} benchmark"),
    )?;
    std::fs::create_dir_all(&dir)?;
    println!("[bench] perf record -a -- cargo bench -p {package} --bench {which}");
    profile::run(
        &mut bench,
        &dir.join(format!("{which}.perf.data")),
        &dir.join(format!("{which}-profile.txt")),
    )
}

/// Runs the benchmark under `perf record` and reports where lb's XDP
/// programs spent their samples, by source line (see profile.rs).
const PROFILE: &str = "--profile";
