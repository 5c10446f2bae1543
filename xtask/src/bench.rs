//! `cargo xtask bench dataplane`: the data-plane benchmark (tests/benches/
//! dataplane.rs, run by `cargo bench`). It prints a table and writes
//! `target/bench/dataplane.json`; docs/benchmarks.md says what each figure
//! means. Targets are reported, never enforced: the run fails only when a
//! figure could not be measured.
use anyhow::{Result, bail};

use crate::{cargo, exec, require_root, root, setup};

/// The benchmarks `cargo xtask bench` knows.
const BENCHES: &[&str] = &["dataplane"];

pub fn run(which: &str, args: &[String]) -> Result<()> {
    if !BENCHES.contains(&which) {
        bail!(
            "no benchmark {which:?}; known: {} (e.g. `cargo xtask bench dataplane`)",
            BENCHES.join(", ")
        );
    }
    require_root("bench")?;
    setup::run()?;
    let out = root().join("target/bench").join(format!("{which}.json"));
    println!("[bench] cargo bench -p lb-tests --bench {which}");
    exec(
        cargo()
            .args(["bench", "-p", "lb-tests", "--bench", which, "--"])
            .arg("--out")
            .arg(&out)
            .args(args),
        &format!("the {which} benchmark"),
    )
}
