//! Unique names for test rigs, and the sweep of what dead runs left.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::TEST_PREFIX;
use crate::netns;

pub(crate) fn unique_test_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{TEST_PREFIX}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes test namespaces and scratch directories whose creating process
/// is gone.
pub(super) fn sweep_stale_test_namespaces() {
    let dirs = scratch_dirs();
    let names = netns::list().into_iter().chain(
        dirs.iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
    );
    let mut stale = Vec::new();
    for name in names {
        let mut parts = name.split('-');
        if parts.next() != Some(TEST_PREFIX) {
            continue;
        }
        let Some(Ok(pid)) = parts.next().map(str::parse::<u32>) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            stale.push(format!("{TEST_PREFIX}-{pid}"));
        }
    }
    stale.sort();
    stale.dedup();
    for prefix in stale {
        remove_by_prefix(&prefix);
    }
}

/// Deletes every namespace whose name starts with `PREFIX-`, with the
/// processes inside, and the rig scratch directories of that prefix.
/// Returns the names of the namespaces deleted.
pub fn remove_by_prefix(prefix: &str) -> Vec<String> {
    let start = format!("{prefix}-");
    let names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&start))
        .collect();
    for name in &names {
        netns::delete(name);
    }
    for dir in scratch_dirs() {
        let ours = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&start));
        if ours {
            let _ = fs::remove_dir_all(&dir);
        }
    }
    names
}

/// Rig scratch directories in the temporary directory.
pub(super) fn scratch_dirs() -> Vec<PathBuf> {
    fs::read_dir(std::env::temp_dir())
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}
