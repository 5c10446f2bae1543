//! What the browser tests share: a headless chromium ([`browser`]), the
//! real console binary ([`console`]), a fake daemon for it to ask
//! ([`daemon`]), a proxy that puts the browser inside a rig ([`proxy`]),
//! a child's stderr kept and read line by line ([`stderr`], also for
//! `e2e.rs`) and the `lb-ctl` binary of the tests against real daemons
//! ([`lb_ctl`]).
pub mod browser;
pub mod console;
pub mod daemon;
#[allow(dead_code)] // tests/pair.rs only.
pub mod proxy;
pub mod stderr;

use std::path::{Path, PathBuf};

/// `lb-ctl`, built into the same directory as this crate's binary.
#[allow(dead_code)] // tests/real_daemon.rs and tests/pair.rs only.
pub fn lb_ctl() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_lb-console")).with_file_name("lb-ctl");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p lb-ctl` (cargo xtask test does)",
        path.display()
    );
    path
}
