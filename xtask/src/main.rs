//! Project tasks: `cargo xtask setup | build-ebpf | test | demo | bench`.
mod bench;
mod build_ebpf;
mod demo;
mod profile;
mod setup;
mod test;
mod toolchain;

#[path = "../../lb-ebpf/ebpf_build.rs"]
mod ebpf_build;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "lb's project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the project needs (Debian packages, chromium and
    /// chromium-driver for the console's browser tests, the pinned eBPF
    /// toolchain, bpf-linker) and check that their versions agree.
    /// Idempotent: a second run installs nothing.
    Setup,
    /// Build the XDP object on its own (target/bpfel-unknown-none/...).
    BuildEbpf {
        #[arg(long)]
        release: bool,
    },
    /// The whole suite: setup if needed, fmt, clippy, unit tests, packet
    /// fixtures, netns rig tests, the console's browser tests.
    Test {
        /// Passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Bring up the demo rig (client, LB with XDP, nginx backends) until
    /// Ctrl-C; `--down` removes what a demo left.
    Demo {
        #[arg(long)]
        down: bool,
    },
    /// Run a benchmark (`dataplane`): prints a table and writes
    /// target/bench/WHICH.json (see docs/benchmarks.md).
    Bench {
        /// Which benchmark: `dataplane`.
        which: String,
        /// Passed to the benchmark (e.g. `--runs N`, `--secs S`,
        /// `--only test-run|rig`); `--profile` runs it under `perf record`
        /// and reports where lb's XDP programs spent their samples, by
        /// source line (target/bench/WHICH-profile.txt).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => build_ebpf::run(release).map(|path| {
            println!("{}", path.display());
        }),
        Task::Test { args } => test::run_all(&args),
        Task::Demo { down: true } => demo::down(),
        Task::Demo { down: false } => demo::up(),
        Task::Bench { which, args } => bench::run(&which, &args),
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The cargo that runs us (so `cargo +toolchain xtask` stays consistent).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, inheriting stdio; fails with `what` when it fails.
fn exec(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn require_root(task: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`cargo xtask {task}` needs root (packages, network namespaces, XDP); run it as root"
        );
    }
    Ok(())
}
