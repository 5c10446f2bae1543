//! wrk's summary, parsed.
use anyhow::{Context as _, Result, bail};

/// wrk's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_s: f64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
    /// Responses with a status outside 2xx and 3xx.
    pub non_2xx: u64,
}

impl WrkReport {
    /// Parses wrk's text output.
    pub fn parse(text: &str) -> Result<Self> {
        let mut report = WrkReport::default();
        let mut seen_total = false;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.split_once(" requests in ") {
                report.requests = rest.0.trim().parse().context("wrk's request count")?;
                seen_total = true;
            } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
                report.requests_per_s = rest.trim().parse().context("wrk's Requests/sec")?;
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                for part in rest.split(',') {
                    let n = part.split_whitespace().nth(1).unwrap_or("0");
                    report.socket_errors += n.parse::<u64>().context("wrk's socket errors")?;
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                report.non_2xx = rest.trim().parse().context("wrk's non-2xx count")?;
            }
        }
        if !seen_total {
            bail!("no summary in wrk's output:\n{text}");
        }
        Ok(report)
    }

    pub fn errors(&self) -> u64 {
        self.socket_errors + self.non_2xx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 5s test @ http://198.18.1.11/\n  1 threads and 10 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   181.24us  101.14us   5.07ms   93.85%\n    Req/Sec    52.10k     2.07k   55.69k    70.00%\n  259186 requests in 5.00s, 60.06MB read\n  Socket errors: connect 0, read 2, write 1, timeout 3\n  Non-2xx or 3xx responses: 4\nRequests/sec:  51822.52\nTransfer/sec:     12.01MB\n";
        let report = WrkReport::parse(text).unwrap();
        assert_eq!(
            report,
            WrkReport {
                requests: 259186,
                requests_per_s: 51822.52,
                socket_errors: 6,
                non_2xx: 4,
            }
        );
        assert_eq!(report.errors(), 10);
    }

    #[test]
    fn wrk_output_without_summary_is_an_error() {
        assert!(
            WrkReport::parse("unable to connect to 198.18.1.11:80 Connection refused\n").is_err()
        );
    }
}
