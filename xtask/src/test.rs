//! `cargo xtask test`: the whole suite, the one command CI runs.
use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, ebpf_build, exec, require_root, setup, toolchain};

pub fn run_all(args: &[String]) -> Result<()> {
    require_root("test")?;
    if !setup::complete()? {
        println!("[test] tools are missing: running setup first");
        setup::run()?;
    }
    println!("[test] cargo fmt --check");
    exec(
        cargo().args(["fmt", "--all", "--check"]),
        "cargo fmt --check (run `cargo fmt`)",
    )?;
    println!("[test] cargo clippy -D warnings");
    exec(
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
        "cargo clippy",
    )?;
    println!("[test] cargo clippy -D warnings (eBPF crate, bpfel-unknown-none)");
    let channel = toolchain::ebpf_channel()?;
    exec(
        ebpf_build::cargo(&crate::root(), &channel, "clippy").args(["--", "-D", "warnings"]),
        "cargo clippy on lb-ebpf",
    )?;
    println!(
        "[test] cargo test (unit tests, packet fixtures, netns rigs, the console in chromium)"
    );
    let totals = cargo_test(args)?;
    println!(
        "xtask test: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if totals.failed > 0 {
        bail!("{} test(s) failed", totals.failed);
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test --workspace`, echoing its output, and adds up the
/// `test result:` lines.
fn cargo_test(args: &[String]) -> Result<Totals> {
    let mut child = cargo()
        .args(["test", "--no-fail-fast", "--"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().expect("piped");
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += field(rest, "passed");
            totals.failed += field(rest, "failed");
            totals.ignored += field(rest, "ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() && totals.failed == 0 {
        bail!("cargo test failed ({status}) before reporting a failed test: see above");
    }
    Ok(totals)
}

/// `N word` out of "ok. 5 passed; 0 failed; 0 ignored; ...".
fn field(summary: &str, word: &str) -> u64 {
    summary
        .split(';')
        .filter_map(|part| {
            let mut it = part.split_whitespace().rev();
            (it.next() == Some(word))
                .then(|| it.next())
                .flatten()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn reads_cargo_test_summary() {
        let s = "ok. 5 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.35s";
        assert_eq!(field(s, "passed"), 5);
        assert_eq!(field(s, "failed"), 1);
        assert_eq!(field(s, "ignored"), 2);
        assert_eq!(field("FAILED. 3 passed; 4 failed; 0 ignored", "failed"), 4);
    }
}
