//! Builds the XDP object from `lb-ebpf` (bpfel-unknown-none, nightly, via
//! bpf-linker) and leaves it in OUT_DIR, where `src/dataplane.rs` embeds it.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lb-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP object failed; `cargo xtask setup` installs bpf-linker and the nightly rust-src it needs")
}
