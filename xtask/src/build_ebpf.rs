//! `cargo xtask build-ebpf`: the XDP object on its own, for inspection with
//! bpftool or llvm-objdump. (`cargo build` builds and embeds the same object
//! through lb-ctl's build.rs.) Both build with the toolchain
//! `lb-ebpf/rust-toolchain.toml` pins.
use std::path::PathBuf;

use anyhow::Result;

use crate::{ebpf_build, exec, root, toolchain};

pub fn run(release: bool) -> Result<PathBuf> {
    let channel = toolchain::ebpf_channel()?;
    let mut cmd = ebpf_build::cargo(&root(), &channel, "build");
    cmd.arg("--bins");
    if release {
        cmd.arg("--release");
    }
    exec(
        &mut cmd,
        &format!("building the eBPF object with {channel}"),
    )?;
    Ok(ebpf_build::object_path(&root().join("target"), release))
}
