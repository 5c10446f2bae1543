//! `cargo xtask setup`: installs what the project needs, step by step, and
//! only what is missing.
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{exec, require_root};

/// Debian packages: the LLVM that bpf-linker links against, and the tools the
/// rigs, fixtures and benchmarks run.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "clang-22",
    "bpftool",
    "iproute2",
    "ethtool",
    "procps",
    "iputils-ping",
    "util-linux",
    "socat",
    "tcpdump",
    "nftables",
    "nginx-light",
    "curl",
    "wrk",
    "iperf3",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";

struct Step {
    name: &'static str,
    /// What is missing, or `None` when the step has nothing to do.
    missing: fn() -> Result<Option<String>>,
    install: fn() -> Result<()>,
    /// What to try when `install` fails.
    hint: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        name: "Debian packages",
        missing: missing_packages,
        install: install_packages,
        hint: "check that `apt-get update` works and that the package names exist (`apt-cache policy clang-22`)",
    },
    Step {
        name: "nightly toolchain with rust-src (builds the eBPF crate with -Z build-std)",
        missing: missing_rust_src,
        install: install_rust_src,
        hint: "run `rustup component add rust-src --toolchain nightly` by hand to see rustup's error",
    },
    Step {
        name: "bpf-linker (links the eBPF object, built against LLVM 22)",
        missing: missing_bpf_linker,
        install: install_bpf_linker,
        hint: "the build needs llvm-22-dev and libpolly-22-dev (first step); rerun `cargo xtask setup` after fixing them",
    },
];

/// Runs every step; prints what each found and did.
pub fn run() -> Result<()> {
    let mut installed = 0;
    for (n, step) in STEPS.iter().enumerate() {
        let prefix = format!("[setup {}/{}] {}", n + 1, STEPS.len(), step.name);
        match (step.missing)().with_context(|| format!("{prefix}: checking"))? {
            None => println!("{prefix}: present"),
            Some(what) => {
                require_root("setup")?;
                println!("{prefix}: installing {what}");
                (step.install)()
                    .with_context(|| format!("{prefix}: failed; try: {}", step.hint))?;
                if let Some(still) = (step.missing)()? {
                    bail!(
                        "{prefix}: still missing after install: {still}; try: {}",
                        step.hint
                    );
                }
                println!("{prefix}: installed");
                installed += 1;
            }
        }
    }
    if installed == 0 {
        println!("[setup] nothing to install: everything is present");
    } else {
        println!("[setup] done: {installed} step(s) installed something");
    }
    Ok(())
}

/// True when every step has nothing to do (checked without installing).
pub fn complete() -> Result<bool> {
    for step in STEPS {
        if (step.missing)()?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn missing_packages() -> Result<Option<String>> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !package_installed(pkg))
        .collect();
    Ok((!missing.is_empty()).then(|| missing.join(" ")))
}

fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && o.stdout.ends_with(b"install ok installed"))
        .unwrap_or(false)
}

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !package_installed(pkg))
        .collect();
    exec(
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    exec(
        Command::new("apt-get")
            .args(["-q", "install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

fn missing_rust_src() -> Result<Option<String>> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        return Ok(Some("the nightly toolchain".into()));
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    Ok((!listed.lines().any(|l| l.starts_with("rust-src"))).then(|| "rust-src for nightly".into()))
}

fn install_rust_src() -> Result<()> {
    exec(
        Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]),
        "rustup toolchain install nightly --component rust-src",
    )
}

fn missing_bpf_linker() -> Result<Option<String>> {
    let want = format!("bpf-linker {BPF_LINKER_VERSION}");
    let found = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok((!found.starts_with(&want)).then_some(want))
}

fn install_bpf_linker() -> Result<()> {
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    exec(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
        "cargo install bpf-linker",
    )
}
