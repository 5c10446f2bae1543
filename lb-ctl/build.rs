//! Builds the XDP object from `lb-ebpf` (bpfel-unknown-none, with the
//! toolchain `lb-ebpf/rust-toolchain.toml` pins, linked by bpf-linker) and
//! leaves it in OUT_DIR, where `src/dataplane/load.rs` embeds it. The eBPF
//! build's own output is shown only when it fails.
#[path = "../lb-ebpf/ebpf_build.rs"]
mod ebpf_build;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("lb-ctl lives in the workspace")?;
    for watched in ["lb-ebpf", "lb-common", ebpf_build::TOOLCHAIN_FILE] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let channel = ebpf_build::channel(workspace).map_err(anyhow::Error::msg)?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target_dir = out_dir.join("ebpf-target");
    let output = ebpf_build::cargo(workspace, &channel, "build")
        .args(["--bins", "--release", "--target-dir"])
        .arg(&target_dir)
        .output()
        .context("could not run rustup; `cargo xtask setup` installs what the eBPF build needs")?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        bail!(
            "building the XDP object with {channel} failed ({}): see the output above; \
             `cargo xtask setup` installs the pinned toolchain and bpf-linker and checks that their LLVM versions agree",
            output.status
        );
    }
    let object = ebpf_build::object_path(&target_dir, true);
    std::fs::copy(&object, out_dir.join("lb"))
        .with_context(|| format!("copying {} into OUT_DIR", object.display()))?;
    Ok(())
}
