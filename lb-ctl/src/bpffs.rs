//! Whether what the daemon pins outlives it.
//!
//! The program stays attached after the daemon stops only because its link
//! and maps are pinned on a bpffs, and a bpffs instance lives as long as one
//! of its mounts does. A daemon run with `ip netns exec` gets a mount
//! namespace of its own with a fresh /sys, mounts a bpffs there that only
//! its namespace sees, and when it exits the namespace goes, the bpffs with
//! it, and the XDP program is detached. The daemon detects that at start by
//! looking for its bpffs (by device number) among the mounts of PID 1.
//!
//! [`judge`] decides from the text of the two mountinfo files (pure);
//! [`check`] reads them. [`stop_message`] says at the stop what stays
//! attached, from what is pinned.
use std::path::{Path, PathBuf};

use crate::api::AlertLevel;

/// One line of `/proc/PID/mountinfo` (the fields used here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem instance.
    pub dev: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses mountinfo text (see proc(5)); lines that do not parse are
/// skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            if dash < 6 {
                return None;
            }
            Some(Mount {
                dev: fields[2].to_owned(),
                mount_point: PathBuf::from(unescape(fields[4])),
                fs_type: (*fields.get(dash + 1)?).to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount `path` is on: the one with the longest mount point that
/// contains it; of mounts stacked on one point, the last (the one seen).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// What becomes of pins in a directory when the daemon exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// PID 1 sees the same bpffs: pins outlive the daemon.
    Shared,
    /// Only the daemon's mount namespace has this bpffs: pins vanish with
    /// it.
    Private { mount_point: PathBuf },
    /// The directory is not on a bpffs at all.
    NotBpffs { fs_type: String },
}

/// Decides from the daemon's mountinfo (`own`) and PID 1's (`init`)
/// whether pins in `dir` outlive the daemon.
pub fn judge(own: &str, init: &str, dir: &Path) -> Verdict {
    let own = parse_mountinfo(own);
    let Some(mount) = mount_of(&own, dir) else {
        return Verdict::NotBpffs {
            fs_type: "none".into(),
        };
    };
    if mount.fs_type != "bpf" {
        return Verdict::NotBpffs {
            fs_type: mount.fs_type.clone(),
        };
    }
    let shared = parse_mountinfo(init)
        .iter()
        .any(|m| m.fs_type == "bpf" && m.dev == mount.dev);
    if shared {
        Verdict::Shared
    } else {
        Verdict::Private {
            mount_point: mount.mount_point.clone(),
        }
    }
}

/// Reads this process's and PID 1's mountinfo and judges `dir`.
pub fn check(dir: &Path) -> std::io::Result<Verdict> {
    let own = std::fs::read_to_string("/proc/self/mountinfo")?;
    let init = std::fs::read_to_string("/proc/1/mountinfo")?;
    Ok(judge(&own, &init, dir))
}

/// What the stop alert says, from what is pinned: the program stays
/// attached only where its link is pinned on a bpffs that outlives this
/// process.
pub fn stop_message(links: &[(String, bool)], dir: &Path, private: bool) -> (AlertLevel, String) {
    let names = |pinned: bool| -> Vec<&str> {
        links
            .iter()
            .filter(|(_, p)| *p == pinned)
            .map(|(iface, _)| iface.as_str())
            .collect()
    };
    let (kept, lost) = (names(true), names(false));
    if private {
        return (
            AlertLevel::Warning,
            format!(
                "stopped; the XDP program is detached from {} when this process exits: its pins in {} are on a bpffs private to this process's mount namespace",
                links
                    .iter()
                    .map(|(iface, _)| iface.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display()
            ),
        );
    }
    let stays = format!(
        "the XDP program stays attached to {} with its maps (pinned in {}), forwarding as configured until the next lb-ctl run adopts it; `lb-ctl xdp detach` removes it",
        kept.join(", "),
        dir.display()
    );
    match (kept.is_empty(), lost.is_empty()) {
        (false, true) => (AlertLevel::Info, format!("stopped; {stays}")),
        (false, false) => (
            AlertLevel::Warning,
            format!(
                "stopped; {stays}; no link is pinned for {}: detached from it when this process exits",
                lost.join(", ")
            ),
        ),
        _ => (
            AlertLevel::Warning,
            format!(
                "stopped; no XDP link is pinned in {}: the program is detached from {} when this process exits",
                dir.display(),
                lost.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_message_says_only_what_the_pins_show() {
        let dir = Path::new("/sys/fs/bpf/lb");
        let links = |a: bool, b: bool| vec![("ext0".to_owned(), a), ("int0".to_owned(), b)];
        assert_eq!(
            stop_message(&links(true, true), dir, false),
            (
                AlertLevel::Info,
                "stopped; the XDP program stays attached to ext0, int0 with its maps (pinned in /sys/fs/bpf/lb), forwarding as configured until the next lb-ctl run adopts it; `lb-ctl xdp detach` removes it".to_owned()
            )
        );
        assert_eq!(
            stop_message(&links(true, false), dir, false),
            (
                AlertLevel::Warning,
                "stopped; the XDP program stays attached to ext0 with its maps (pinned in /sys/fs/bpf/lb), forwarding as configured until the next lb-ctl run adopts it; `lb-ctl xdp detach` removes it; no link is pinned for int0: detached from it when this process exits".to_owned()
            )
        );
        assert_eq!(
            stop_message(&links(false, false), dir, false),
            (
                AlertLevel::Warning,
                "stopped; no XDP link is pinned in /sys/fs/bpf/lb: the program is detached from ext0, int0 when this process exits".to_owned()
            )
        );
        // Pinned, but on a bpffs that goes with the process.
        assert_eq!(
            stop_message(&links(true, true), dir, true),
            (
                AlertLevel::Warning,
                "stopped; the XDP program is detached from ext0, int0 when this process exits: its pins in /sys/fs/bpf/lb are on a bpffs private to this process's mount namespace".to_owned()
            )
        );
    }

    /// PID 1's mounts on a systemd host (shortened).
    const HOST: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 22 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:8 - bpf bpf rw,mode=700
31 28 0:29 / /run rw,nosuid,nodev shared:9 - tmpfs tmpfs rw,size=1632596k,mode=755
";

    /// The daemon under `nsenter --net` or systemd's sandboxing: the
    /// host's mounts (a copy of them, same devices).
    const SAME: &str = "\
722 721 8:1 / / rw,relatime master:1 - ext4 /dev/sda1 rw,errors=remount-ro
723 722 0:21 / /sys rw,nosuid,nodev,noexec,relatime master:7 - sysfs sysfs rw
724 723 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime master:8 - bpf bpf rw,mode=700
725 722 0:29 / /run rw,nosuid,nodev master:9 - tmpfs tmpfs rw,size=1632596k,mode=755
";

    /// The daemon under `ip netns exec`: a fresh sysfs on /sys, and the
    /// bpffs the daemon mounted there itself.
    const NETNS_EXEC: &str = "\
822 821 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
823 822 0:29 / /run rw,nosuid,nodev shared:9 - tmpfs tmpfs rw,size=1632596k,mode=755
901 822 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
902 822 0:77 / /sys rw,relatime shared:410 - sysfs lbt-1-lb rw
903 902 0:78 / /sys/fs/bpf rw,relatime shared:411 - bpf bpf rw
";

    #[test]
    fn the_hosts_bpffs_is_shared() {
        let dir = Path::new("/sys/fs/bpf/lb");
        assert_eq!(judge(SAME, HOST, dir), Verdict::Shared);
        assert_eq!(judge(HOST, HOST, dir), Verdict::Shared);
    }

    #[test]
    fn a_bpffs_of_ip_netns_exec_is_private() {
        assert_eq!(
            judge(NETNS_EXEC, HOST, Path::new("/sys/fs/bpf/lb")),
            Verdict::Private {
                mount_point: PathBuf::from("/sys/fs/bpf")
            }
        );
    }

    #[test]
    fn a_directory_elsewhere_is_judged_by_its_own_mount() {
        // A bpffs mounted at /run/lb/bpf in the host: shared; /run itself
        // is not a bpffs.
        let extra = "950 31 0:90 / /run/lb/bpf rw,relatime shared:500 - bpf bpf rw\n";
        let own = format!("{SAME}{extra}");
        let init = format!("{HOST}{extra}");
        assert_eq!(
            judge(&own, &init, Path::new("/run/lb/bpf/pins")),
            Verdict::Shared
        );
        assert_eq!(
            judge(&own, &init, Path::new("/run/lb/other")),
            Verdict::NotBpffs {
                fs_type: "tmpfs".into()
            }
        );
        // A prefix of the name is not a parent directory.
        assert_eq!(
            judge(&own, &init, Path::new("/sys/fs/bpfx")),
            Verdict::NotBpffs {
                fs_type: "sysfs".into()
            }
        );
    }

    #[test]
    fn mountinfo_fields_and_escapes_parse() {
        let text =
            "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - bpf bpf rw\nnot a line\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![Mount {
                dev: "98:0".into(),
                mount_point: PathBuf::from("/mnt two"),
                fs_type: "bpf".into(),
            }]
        );
    }
}
