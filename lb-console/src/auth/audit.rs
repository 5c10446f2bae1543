//! The audit trail: every change made through the console (and every
//! login, failed login and logout), one JSON object a line, appended to a
//! file: who, when, from where, what, and how it ended.
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// One line of the trail.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The user (for a failed login: the name that was tried).
    pub user: String,
    /// The client's address.
    pub from: IpAddr,
    /// What was asked, e.g. `login`, `backend add`.
    pub action: String,
    /// Its arguments, as the operator gave them (never a password).
    pub detail: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

impl AuditEntry {
    pub fn now(user: &str, from: IpAddr, action: &str, detail: &str, outcome: &str) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            at_ms,
            user: user.to_owned(),
            from,
            action: action.to_owned(),
            detail: detail.to_owned(),
            outcome: outcome.to_owned(),
        }
    }
}

/// The trail's file; appends are serialized.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    /// The trail at `path` (created on the first entry).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` and flushes it to the disk before returning: a change
    /// is never made without its line.
    pub fn record(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()
    }

    /// The last `n` entries, oldest first; lines that are not entries are
    /// skipped.
    pub fn recent(&self, n: usize) -> std::io::Result<Vec<AuditEntry>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries: std::collections::VecDeque<AuditEntry> = Default::default();
        for line in BufReader::new(file).lines() {
            if let Ok(entry) = serde_json::from_str(&line?) {
                if entries.len() == n {
                    entries.pop_front();
                }
                entries.push_back(entry);
            }
        }
        Ok(entries.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&dir.path().join("audit.jsonl"));
        assert_eq!(log.recent(10).unwrap(), vec![]);
        let from: IpAddr = "198.18.0.10".parse().unwrap();
        for i in 0..5 {
            log.record(&AuditEntry::now(
                "admin",
                from,
                "backend add",
                &format!("tcp/198.18.0.100:80 198.18.1.1{i}:80"),
                "ok",
            ))
            .unwrap();
        }
        let last = log.recent(2).unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].detail, "tcp/198.18.0.100:80 198.18.1.13:80");
        assert_eq!(last[1].detail, "tcp/198.18.0.100:80 198.18.1.14:80");
        assert_eq!(last[1].from, from);
        let text = fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().all(|l| l.starts_with("{\"at_ms\":")));
    }
}
