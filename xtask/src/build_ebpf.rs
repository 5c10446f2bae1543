//! `cargo xtask build-ebpf`: the XDP object on its own, for inspection with
//! bpftool or llvm-objdump. (`cargo build` builds and embeds the same object
//! through lb-ctl's build.rs, with aya-build.)
use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::{exec, root};

pub const TARGET: &str = "bpfel-unknown-none";

pub fn run(release: bool) -> Result<PathBuf> {
    // The nightly toolchain through rustup, with the flags aya-build passes.
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root())
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--package",
            "lb-ebpf",
            "--bins",
        ])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
                "-Cdebuginfo=2".into(),
                "-Clink-arg=--btf".into(),
            ]
            .join("\x1f"),
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if release {
        cmd.arg("--release");
    }
    exec(&mut cmd, "building the eBPF object")?;
    let profile = if release { "release" } else { "debug" };
    Ok(root().join("target").join(TARGET).join(profile).join("lb"))
}
