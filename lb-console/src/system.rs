//! The node's own facts for the dashboard: CPUs, memory, uptime, load and
//! the system time, read from `/proc` (the console runs on the node it
//! shows). The parsers are pure and tested on fixed text; a fact that cannot
//! be read is `None` and shown as unknown, never guessed.
use std::time::{Duration, SystemTime};

/// What the dashboard shows of the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub cpus: Option<usize>,
    /// Total and available memory, bytes.
    pub memory: Option<(u64, u64)>,
    pub uptime: Option<Duration>,
    /// The load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    pub time: SystemTime,
}

impl Facts {
    /// Reads them now.
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Self {
            cpus: std::thread::available_parallelism().map(|n| n.get()).ok(),
            memory: read("/proc/meminfo").as_deref().and_then(memory),
            uptime: read("/proc/uptime").as_deref().and_then(uptime),
            load: read("/proc/loadavg").as_deref().and_then(load),
            time: SystemTime::now(),
        }
    }
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let mut words = line[name.len()..].split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// The first number of `/proc/uptime` (seconds since boot).
pub fn uptime(text: &str) -> Option<Duration> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The three load averages of `/proc/loadavg`.
pub fn load(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace();
    let mut next = || words.next()?.parse::<f64>().ok();
    Some([next()?, next()?, next()?])
}

/// `3 d 4 h`, `4 h 12 min`, `12 min`, `40 s`: the two largest units.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// `1.5 GiB`, `512 MiB`...: binary units, one decimal above a unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The time as UTC, `2026-11-25 15:04:05 UTC` (no time zone database is
/// read: the appliance's clock is shown as it is kept).
pub fn utc(time: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", rfc3339.replace('T', " ").trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_in_bytes_and_a_bad_file_is_unknown() {
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   12288000 kB\n";
        assert_eq!(
            memory(meminfo),
            Some((24_576_000 * 1024, 12_288_000 * 1024))
        );
        assert_eq!(memory("MemTotal: 10 kB\n"), None);
        assert_eq!(memory("MemTotal: x kB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(memory("MemTotal: 1 MB\nMemAvailable: 1 kB\n"), None);
    }

    #[test]
    fn uptime_and_load_parse_and_refuse_garbage() {
        assert_eq!(
            uptime("9876.54 12345.67\n"),
            Some(Duration::from_secs_f64(9876.54))
        );
        assert_eq!(uptime("-1 0"), None);
        assert_eq!(uptime(""), None);
        assert_eq!(
            load("0.52 0.48 0.40 2/345 6789\n"),
            Some([0.52, 0.48, 0.40])
        );
        assert_eq!(load("0.52 x 0.40"), None);
    }

    #[test]
    fn durations_bytes_and_dates_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(40)), "40 s");
        assert_eq!(human_duration(Duration::from_secs(12 * 60 + 5)), "12 min");
        assert_eq!(
            human_duration(Duration::from_secs(4 * 3600 + 12 * 60)),
            "4 h 12 min"
        );
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 59)),
            "3 d 4 h"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(24 * 1024 * 1024 * 1024), "24.0 GiB");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_618_445);
        assert_eq!(utc(at), "2026-11-25 14:54:05 UTC");
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        // A leap day.
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn facts_of_this_machine_are_read() {
        let facts = Facts::read();
        assert!(facts.cpus.is_some_and(|n| n >= 1));
        let (total, available) = facts.memory.unwrap();
        assert!(available <= total && total > 0);
        assert!(facts.uptime.is_some());
        assert!(facts.load.is_some());
    }
}
