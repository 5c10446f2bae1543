//! Before the daemon starts: the bpffs its pins need and its API socket.
use std::{os::unix::fs::PermissionsExt as _, path::Path};

use anyhow::{Context as _, Result, bail};

/// Makes sure `dir` is on a bpffs, mounting `/sys/fs/bpf` if that is where
/// it should be and nothing is mounted there.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = Path::new("/sys/fs/bpf");
    let on_bpffs = |path: &Path| -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statfs writes into a zeroed struct we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
    };
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if on_bpffs(existing) {
        return Ok(());
    }
    if dir.starts_with(root) {
        let src = std::ffi::CString::new("bpf")?;
        let target = std::ffi::CString::new("/sys/fs/bpf")?;
        // SAFETY: mount(2) with valid NUL-terminated strings.
        let ret = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if ret != 0 {
            bail!(
                "mounting bpffs on /sys/fs/bpf: {}",
                std::io::Error::last_os_error()
            );
        }
        tracing::info!("mounted bpffs on /sys/fs/bpf");
        return Ok(());
    }
    bail!(
        "{} is not on a bpffs: mount one (mount -t bpf bpf DIR) or set node.bpffs_dir under /sys/fs/bpf",
        dir.display()
    )
}

/// Creates the API socket: its directory root-only, the socket mode 0600.
pub fn bind_api(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        // A daemon that is still running answers; a stale socket does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another lb-ctl daemon is running (its API answers on {})",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
