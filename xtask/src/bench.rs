//! `cargo xtask bench dataplane`: the data-plane benchmark (tests/benches/
//! dataplane.rs, run by `cargo bench`). It prints a table and writes
//! `target/bench/dataplane.json`; docs/benchmarks.md says what each figure
//! means. Targets are reported, never enforced: the run fails only when a
//! figure could not be measured.
use anyhow::{Result, bail};

use crate::{cargo, exec, require_root, root, setup};

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
    let out = root().join("target/bench").join(format!("{which}.json"));
    println!("[bench] cargo bench -p {package} --bench {which}");
    exec(
        cargo()
            .args(["bench", "-p", package, "--bench", which, "--"])
            .arg("--out")
            .arg(&out)
            .args(args),
        &format!("the {which} benchmark"),
    )
}
