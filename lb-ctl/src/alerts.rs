//! The alert log: significant events (backend down or up, configuration
//! applied or rejected, daemon start and stop, later failovers), one JSON
//! object a line, appended and fsynced, rotated at a size limit
//! (`FILE.1` ... `FILE.3` keep the older lines).
use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, Result};

use crate::api::{Alert, AlertEvent, AlertLevel};

/// Size at which the log is rotated.
pub const ROTATE_BYTES: u64 = 1 << 20;
/// Rotated files kept.
pub const KEEP: usize = 3;

/// The alert log of this node.
#[derive(Debug)]
pub struct AlertLog {
    path: PathBuf,
}

impl AlertLog {
    /// Opens (creating the directory if needed) the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .with_context(|| format!("creating the alert log's directory {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .with_context(|| format!("opening the alert log {}", path.display()))?;
        // A line torn by a crash is closed, so that the next alert starts on
        // a line of its own.
        let torn = fs::read(path)
            .map(|bytes| bytes.last().is_some_and(|&b| b != b'\n'))
            .unwrap_or(false);
        if torn {
            file.write_all(b"\n")?;
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Appends an alert (and logs it through tracing).
    pub fn record(&self, level: AlertLevel, event: AlertEvent, message: impl Into<String>) {
        let alert = Alert {
            time: rfc3339(SystemTime::now()),
            level,
            event,
            message: message.into(),
        };
        let event = event.name();
        match level {
            AlertLevel::Info => tracing::info!(event, message = %alert.message, "alert"),
            AlertLevel::Warning => tracing::warn!(event, message = %alert.message, "alert"),
            AlertLevel::Error => tracing::error!(event, message = %alert.message, "alert"),
        }
        if let Err(err) = self.append(&alert) {
            tracing::error!(error = %err, path = %self.path.display(), "cannot write the alert log");
        }
    }

    fn append(&self, alert: &Alert) -> Result<()> {
        self.rotate_if_full()?;
        let mut line = serde_json::to_string(alert)?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    fn rotate_if_full(&self) -> Result<()> {
        let size = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size < ROTATE_BYTES {
            return Ok(());
        }
        for n in (1..KEEP).rev() {
            let _ = fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        fs::rename(&self.path, self.rotated(1))?;
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// The last `limit` alerts, oldest first (rotated files included).
    /// Lines that are not alerts (a torn last line after a crash) are
    /// skipped.
    pub fn recent(&self, limit: usize) -> Vec<Alert> {
        let mut files: Vec<PathBuf> = (1..=KEEP).rev().map(|n| self.rotated(n)).collect();
        files.push(self.path.clone());
        let mut alerts: Vec<Alert> = Vec::new();
        for path in files {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            alerts.extend(
                BufReader::new(file)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|line| serde_json::from_str(&line).ok()),
            );
        }
        let skip = alerts.len().saturating_sub(limit);
        alerts.split_off(skip)
    }
}

/// `2026-11-25T06:08:20Z` (UTC, whole seconds).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_500_500);
        assert_eq!(rfc3339(t), "2026-11-24T06:08:20Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn alerts_append_rotate_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::open(&dir.path().join("alerts.jsonl")).unwrap();
        let big = "x".repeat(4096);
        let n = (ROTATE_BYTES as usize / 4096) + 20;
        for i in 0..n {
            log.record(
                AlertLevel::Info,
                AlertEvent::ConfigApplied,
                format!("{i} {big}"),
            );
        }
        assert!(dir.path().join("alerts.jsonl.1").exists());
        let recent = log.recent(5);
        assert_eq!(recent.len(), 5);
        assert!(recent[4].message.starts_with(&format!("{} ", n - 1)));
        assert!(recent[0].message.starts_with(&format!("{} ", n - 5)));
        // A torn line (crash while writing) is skipped, not fatal.
        fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("alerts.jsonl"))
            .unwrap()
            .write_all(b"{\"time\":\"20")
            .unwrap();
        assert_eq!(log.recent(1)[0].message, recent[4].message);
    }

    #[test]
    fn events_are_stable_names_and_an_unknown_one_still_reads() {
        let alert = Alert {
            time: "2026-11-25T15:00:00Z".into(),
            level: AlertLevel::Warning,
            event: AlertEvent::DualActiveResolved,
            message: "m".into(),
        };
        let line = serde_json::to_string(&alert).unwrap();
        assert!(line.contains(r#""event":"dual_active_resolved""#), "{line}");
        assert_eq!(serde_json::from_str::<Alert>(&line).unwrap(), alert);
        let newer = line.replace("dual_active_resolved", "something_new");
        let read: Alert = serde_json::from_str(&newer).unwrap();
        assert_eq!(read.event, AlertEvent::Other);
        assert_eq!(AlertEvent::Failover.to_string(), "failover");
    }
}
