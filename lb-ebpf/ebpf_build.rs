//! How the eBPF crate is built and linted, in one place for the two builds
//! that need it: `lb-ctl/build.rs` (the object lb-ctl embeds) and `cargo
//! xtask` (build-ebpf, the BPF clippy run, setup's checks). Each includes
//! this file with `#[path]`; it is not part of the eBPF crate itself.
//!
//! The toolchain is the one `lb-ebpf/rust-toolchain.toml` names: see the
//! comment there for why it is pinned.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF target (little-endian BPF).
pub const TARGET: &str = "bpfel-unknown-none";

/// The toolchain file, relative to the workspace root.
pub const TOOLCHAIN_FILE: &str = "lb-ebpf/rust-toolchain.toml";

/// The channel `lb-ebpf/rust-toolchain.toml` pins (e.g. `nightly-2026-05-20`).
pub fn channel(workspace: &Path) -> Result<String, String> {
    let path = workspace.join(TOOLCHAIN_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|err| format!("reading {}: {err}", path.display()))?;
    parse_channel(&text).map_err(|err| format!("{}: {err}", path.display()))
}

/// The `[toolchain] channel` of a rust-toolchain.toml.
pub fn parse_channel(text: &str) -> Result<String, String> {
    let doc: toml::Table = text.parse().map_err(|err| format!("{err}"))?;
    let channel = doc
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .ok_or("no `[toolchain] channel = \"...\"`")?;
    // A dated nightly: build-std needs nightly, and an undated channel floats
    // to whatever LLVM it has that day.
    let dated = channel.strip_prefix("nightly-").is_some_and(|date| {
        date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    });
    if !dated {
        return Err(format!(
            "channel `{channel}` is not a dated nightly: name one (nightly-YYYY-MM-DD) whose LLVM matches bpf-linker's"
        ));
    }
    Ok(channel.to_owned())
}

/// `rustup run CHANNEL cargo SUBCOMMAND --package lb-ebpf` for the BPF
/// target, with the flags the eBPF build needs; the caller adds the rest.
pub fn cargo(workspace: &Path, channel: &str, subcommand: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace)
        .args(["run", channel, "cargo", subcommand, "--package", "lb-ebpf"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
                "-Cdebuginfo=2".into(),
                "-Clink-arg=--btf".into(),
                // bpf-linker asks LLVM by default to keep every memcpy in
                // order for old JITs, which also leaves every memset to a
                // call of a byte-by-byte loop (zeroing a key's IPv4 address
                // tail, 12 bytes, twice per packet). Without it LLVM writes
                // them as stores in place: no such call is left, and the
                // verifier explores a quarter fewer instructions of lb_xdp
                // (lb-ctl/tests/object.rs checks the calls).
                "-Clink-arg=--disable-expand-memcpy-in-order".into(),
            ]
            .join("\x1f"),
        )
        // The outer cargo's compiler and wrappers are the host toolchain's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS");
    cmd
}

/// Where `cargo build --target-dir DIR` leaves the object `lb`.
pub fn object_path(target_dir: &Path, release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    target_dir.join(TARGET).join(profile).join("lb")
}
