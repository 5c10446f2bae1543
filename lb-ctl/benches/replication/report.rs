//! The report: the JSON, the table and its targets.
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::Result;
use serde_json::{Value, json};

use crate::{LAG_RATES, TARGET_BULK_S, TARGET_NEW_FLOW_RATIO, TARGET_P99_MS};

#[derive(Default)]
pub(super) struct Report {
    /// rate -> (p50, p99) ms.
    pub(super) lag: BTreeMap<u64, (f64, f64)>,
    pub(super) max_rate: Option<u64>,
    pub(super) bytes_per_flow: Option<f64>,
    pub(super) bulk_s: Option<f64>,
    pub(super) new_flow: Option<(f64, f64)>,
    pub(super) broken: Option<u64>,
    pub(super) details: Vec<String>,
    pub(super) failures: Vec<String>,
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

impl Report {
    pub(super) fn failure(&mut self, what: String) {
        eprintln!("[bench] FAILED: {what}");
        self.failures.push(what);
    }

    pub(super) fn detail(&mut self, line: String) {
        println!("[bench]   {line}");
        self.details.push(line);
    }

    pub(super) fn json(&self) -> Value {
        let lag = |rate: u64| match self.lag.get(&rate) {
            Some(&(p50, p99)) => json!({"p50": round(p50, 2), "p99": round(p99, 2)}),
            None => json!({"p50": null, "p99": null}),
        };
        json!({
            "lag_ms": {"1000": lag(1_000), "100000": lag(100_000)},
            "max_new_flows_per_s": self.max_rate,
            "bytes_per_flow": self.bytes_per_flow.map(|b| round(b, 1)),
            "bulk_copy_1m_s": self.bulk_s.map(|s| round(s, 2)),
            "new_flow_ns": {
                "without": self.new_flow.map(|(w, _)| round(w, 1)),
                "with": self.new_flow.map(|(_, w)| round(w, 1)),
            },
            "broken_connections_on_failover": self.broken,
        })
    }

    pub(super) fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok(())
    }

    pub(super) fn table(&self) -> String {
        let show = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "not measured".into(),
        };
        let mut rows: Vec<[String; 3]> = Vec::new();
        for (rate, _) in LAG_RATES {
            let lag = self.lag.get(&rate);
            rows.push([
                format!("lag_ms.{rate}.p50"),
                show(lag.map(|l| l.0), 2),
                "ms".into(),
            ]);
            rows.push([
                format!("lag_ms.{rate}.p99"),
                show(lag.map(|l| l.1), 2),
                "ms".into(),
            ]);
        }
        rows.push([
            "max_new_flows_per_s".into(),
            show(self.max_rate.map(|r| r as f64), 0),
            "flows/s".into(),
        ]);
        rows.push([
            "bytes_per_flow".into(),
            show(self.bytes_per_flow, 1),
            "bytes".into(),
        ]);
        rows.push(["bulk_copy_1m_s".into(), show(self.bulk_s, 2), "s".into()]);
        rows.push([
            "new_flow_ns.without".into(),
            show(self.new_flow.map(|n| n.0), 1),
            "ns".into(),
        ]);
        rows.push([
            "new_flow_ns.with".into(),
            show(self.new_flow.map(|n| n.1), 1),
            "ns".into(),
        ]);
        rows.push([
            "broken_connections_on_failover".into(),
            show(self.broken.map(|b| b as f64), 0),
            "connections".into(),
        ]);
        lb_tests::table::figures(&rows, &self.targets(), &self.details)
    }

    pub(super) fn targets(&self) -> Vec<String> {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        vec![
            match self.broken {
                Some(b) => format!("0 broken connections on failover: {} ({b})", met(b == 0)),
                None => "0 broken connections on failover: not measured".into(),
            },
            match self.lag.get(&100_000) {
                Some(&(_, p99)) => format!(
                    "p99 lag <= {TARGET_P99_MS} ms at 100,000 new flows/s: {} ({p99:.2} ms, {:.2} x the target)",
                    met(p99 <= TARGET_P99_MS),
                    p99 / TARGET_P99_MS
                ),
                None => "p99 lag at 100,000 new flows/s: not measured".into(),
            },
            match self.bulk_s {
                Some(s) => format!(
                    "bulk copy of 1,000,000 flows <= {TARGET_BULK_S} s: {} ({s:.2} s, {:.2} x the target)",
                    met(s <= TARGET_BULK_S),
                    s / TARGET_BULK_S
                ),
                None => "bulk copy of 1,000,000 flows: not measured".into(),
            },
            match self.new_flow {
                Some((without, with)) => format!(
                    "new flow with replication <= 1.10 x without: {} (ratio {:.3})",
                    met(with / without <= TARGET_NEW_FLOW_RATIO),
                    with / without
                ),
                None => "new flow with / without replication: not measured".into(),
            },
        ]
    }
}
