//! The eBPF toolchain and the LLVM it must share with bpf-linker: rustc
//! writes the eBPF crate as LLVM bitcode and bpf-linker reads it with its own
//! LLVM, which reads only bitcode of its own major version ("Invalid
//! record" otherwise). The parsers and the decision are pure and tested; the
//! callers run the commands.
use std::process::Command;

use anyhow::{Context as _, Result, anyhow};

use crate::{ebpf_build, root};

/// The LLVM major the project builds bpf-linker against (Debian's
/// `llvm-N-dev`, bpf-linker's `llvm-N` feature). The toolchain in
/// `lb-ebpf/rust-toolchain.toml` must be built on the same major.
pub const LLVM_MAJOR: u32 = 22;

/// The pinned eBPF channel, from `lb-ebpf/rust-toolchain.toml`.
pub fn ebpf_channel() -> Result<String> {
    ebpf_build::channel(&root()).map_err(|err| anyhow!("the eBPF toolchain: {err}"))
}

/// The LLVM major of a toolchain's rustc, from `rustc -vV` ("LLVM version: 22.1.4").
pub fn parse_rustc_llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|version| version.trim().split('.').next()?.parse().ok())
}

/// The LLVM major a dynamically linked bpf-linker loads, from `ldd`
/// ("libLLVM.so.22.1 => ..." or "libLLVM-22.so => ...").
pub fn parse_ldd_llvm_major(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|line| {
        let name = line.split_whitespace().next()?;
        let rest = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-"))?;
        rest.split(['.', '-']).next()?.parse().ok()
    })
}

/// What setup concludes from the two LLVM versions.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The toolchain and bpf-linker share the project's LLVM major.
    Agree,
    /// The pinned toolchain is on another LLVM than the project's: the
    /// toolchain file (or `LLVM_MAJOR`) must change.
    ToolchainDiffers { toolchain: u32 },
    /// bpf-linker is built against another LLVM (or one we cannot tell):
    /// it must be rebuilt against the project's.
    LinkerDiffers { linker: Option<u32> },
}

/// Compares the toolchain's and bpf-linker's LLVM majors with `LLVM_MAJOR`.
pub fn verdict(toolchain: u32, linker: Option<u32>) -> Verdict {
    if toolchain != LLVM_MAJOR {
        Verdict::ToolchainDiffers { toolchain }
    } else if linker != Some(LLVM_MAJOR) {
        Verdict::LinkerDiffers { linker }
    } else {
        Verdict::Agree
    }
}

/// The command that rebuilds bpf-linker against the project's LLVM.
pub fn bpf_linker_install_command(version: &str) -> String {
    format!(
        "LLVM_PREFIX=/usr/lib/llvm-{LLVM_MAJOR} cargo install --force bpf-linker --version {version} \
         --no-default-features --features llvm-{LLVM_MAJOR}"
    )
}

/// A message a person can act on for a verdict other than `Agree`.
pub fn explain(verdict: &Verdict, channel: &str, linker_version: &str) -> Option<String> {
    let file = ebpf_build::TOOLCHAIN_FILE;
    match verdict {
        Verdict::Agree => None,
        Verdict::ToolchainDiffers { toolchain } => Some(format!(
            "the eBPF toolchain {channel} ({file}) is built on LLVM {toolchain}, but bpf-linker \
             is built against LLVM {LLVM_MAJOR}: bpf-linker cannot read that bitcode. Fix: set \
             `channel` in {file} to a dated nightly whose `rustc -vV` says LLVM {LLVM_MAJOR} \
             (nightly-2026-05-20 does), then run `cargo xtask setup`"
        )),
        Verdict::LinkerDiffers { linker } => Some(format!(
            "bpf-linker is built against {}, but the eBPF toolchain {channel} is built on LLVM \
             {LLVM_MAJOR}. Fix: {}",
            linker.map_or("an LLVM it does not name".to_owned(), |l| format!(
                "LLVM {l}"
            )),
            bpf_linker_install_command(linker_version)
        )),
    }
}

/// The LLVM major of the pinned toolchain, or `None` when it is not
/// installed.
pub fn toolchain_llvm_major(channel: &str) -> Result<Option<u32>> {
    let out = Command::new("rustup")
        .args(["run", channel, "rustc", "-vV"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_rustc_llvm_major(&text)
        .map(Some)
        .ok_or_else(|| anyhow!("`rustup run {channel} rustc -vV` names no LLVM version:\n{text}"))
}

/// The LLVM major of the bpf-linker on PATH (`None`: not found or not told).
pub fn linker_llvm_major() -> Option<u32> {
    let out = Command::new("sh")
        .args(["-c", "ldd \"$(command -v bpf-linker)\""])
        .output()
        .ok()?;
    parse_ldd_llvm_major(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major_of_rustc() {
        let nightly_22 = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
            commit-hash: e50aa6fba\ncommit-date: 2026-05-19\nhost: x86_64-unknown-linux-gnu\n\
            release: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(parse_rustc_llvm_major(nightly_22), Some(22));
        let nightly_23 = "rustc 1.101.0-nightly (92b5b8c87 2026-10-29)\nrelease: 1.101.0-nightly\nLLVM version: 23.1.4";
        assert_eq!(parse_rustc_llvm_major(nightly_23), Some(23));
        assert_eq!(
            parse_rustc_llvm_major("rustc 1.95.0\nrelease: 1.95.0\n"),
            None
        );
        assert_eq!(parse_rustc_llvm_major("LLVM version: unknown"), None);
    }

    #[test]
    fn reads_the_llvm_major_of_a_dynamically_linked_bpf_linker() {
        let debian = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007fd24fa00000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n";
        assert_eq!(parse_ldd_llvm_major(debian), Some(22));
        let older = "\tlibLLVM-17.so => /usr/lib/llvm-17/lib/libLLVM-17.so (0x00007f)\n";
        assert_eq!(parse_ldd_llvm_major(older), Some(17));
        let statically_linked = "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x7f)\n\tlibc.so.6 => /lib/libc.so.6\n";
        assert_eq!(parse_ldd_llvm_major(statically_linked), None);
        assert_eq!(parse_ldd_llvm_major(""), None);
    }

    #[test]
    fn only_the_same_llvm_major_on_both_sides_agrees() {
        assert_eq!(verdict(LLVM_MAJOR, Some(LLVM_MAJOR)), Verdict::Agree);
        // The floating nightly of 2026-11-25 (LLVM 23) against Debian's LLVM 22.
        assert_eq!(
            verdict(LLVM_MAJOR + 1, Some(LLVM_MAJOR)),
            Verdict::ToolchainDiffers {
                toolchain: LLVM_MAJOR + 1
            }
        );
        assert_eq!(
            verdict(LLVM_MAJOR, Some(LLVM_MAJOR - 1)),
            Verdict::LinkerDiffers {
                linker: Some(LLVM_MAJOR - 1)
            }
        );
        assert_eq!(
            verdict(LLVM_MAJOR, None),
            Verdict::LinkerDiffers { linker: None }
        );
        // Both on another major than the project's: still the toolchain's
        // fault first, since setup builds bpf-linker against LLVM_MAJOR.
        assert_eq!(
            verdict(LLVM_MAJOR + 1, Some(LLVM_MAJOR + 1)),
            Verdict::ToolchainDiffers {
                toolchain: LLVM_MAJOR + 1
            }
        );
    }

    #[test]
    fn a_mismatch_names_both_versions_and_the_fix() {
        let toolchain = explain(
            &Verdict::ToolchainDiffers { toolchain: 23 },
            "nightly-2026-10-30",
            "0.13.0",
        )
        .unwrap();
        assert!(toolchain.contains("LLVM 23"), "{toolchain}");
        assert!(
            toolchain.contains(&format!("LLVM {LLVM_MAJOR}")),
            "{toolchain}"
        );
        assert!(toolchain.contains("nightly-2026-10-30"), "{toolchain}");
        assert!(
            toolchain.contains("lb-ebpf/rust-toolchain.toml"),
            "{toolchain}"
        );
        let linker = explain(
            &Verdict::LinkerDiffers { linker: Some(21) },
            "nightly-2026-05-20",
            "0.13.0",
        )
        .unwrap();
        assert!(linker.contains("LLVM 21"), "{linker}");
        assert!(
            linker.contains(&format!(
                "cargo install --force bpf-linker --version 0.13.0 --no-default-features --features llvm-{LLVM_MAJOR}"
            )),
            "{linker}"
        );
        assert_eq!(explain(&Verdict::Agree, "x", "y"), None);
    }

    #[test]
    fn the_repository_pins_a_dated_toolchain_on_the_projects_llvm() {
        let channel = ebpf_channel().unwrap();
        assert!(channel.starts_with("nightly-20"), "{channel}");
        assert!(
            ebpf_build::parse_channel("[toolchain]\nchannel = \"nightly\"\n")
                .unwrap_err()
                .contains("not a dated nightly")
        );
        assert!(ebpf_build::parse_channel("[toolchain]\nchannel = \"stable\"\n").is_err());
        assert!(
            ebpf_build::parse_channel("[toolchain]\nchannel = \"nightly-2026-5-20\"\n").is_err()
        );
        assert_eq!(
            ebpf_build::parse_channel("[toolchain]\nchannel = \"nightly-2026-05-20\"\n").unwrap(),
            "nightly-2026-05-20"
        );
        assert!(ebpf_build::parse_channel("[toolchain]\n").is_err());
    }
}
