//! `lag_ms` and the steps of `max_new_flows_per_s`: paced runs of new
//! flows, their arrival in lb2's flow table watched.
use std::{
    fs,
    path::Path,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, Map, MapData};
use lb_common::{Flow, FlowKey};
use lb_tests::daemon::DaemonProcess;

use crate::{
    SAMPLE_LIMIT, SAMPLES_PER_S,
    pair::{Active, FlowSource, status, test_run},
};

/// One paced run of new flows.
pub(super) struct LagRun {
    pub(super) rate: u64,
    pub(super) flows: u64,
    pub(super) driven_for: Duration,
    /// The sampled flows' lags, ms, in the order they were made.
    pub(super) lags: Vec<f64>,
    pub(super) missing: u64,
    pub(super) records_lost: u64,
    pub(super) resyncs: u64,
    /// Flows the active's periodic refresh sent meanwhile (in the same
    /// ordered stream as the new flows).
    pub(super) refreshed: u64,
    /// TCP segments lb1 sent again meanwhile (its namespace's
    /// `RetransSegs`: the replication connection is its one busy one).
    pub(super) retransmits: u64,
    pub(super) wrong_actions: u64,
}

impl LagRun {
    /// The `q` quantile (nearest rank) of the lags, ms.
    pub(super) fn p(&self, q: f64) -> f64 {
        quantile(&self.lags, q)
    }

    pub(super) fn achieved(&self) -> f64 {
        self.flows as f64 / self.driven_for.as_secs_f64()
    }

    pub(super) fn describe(&self) -> String {
        let quarter = self.lags.len() / 4;
        format!(
            "{}/s: {} flows in {:.2} s ({:.0}/s), {} sampled: lag p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (first quarter p50 {:.2}, last quarter p50 {:.2}); {} missing, {} records lost, {} resyncs; {} flows refreshed and {} TCP segments retransmitted by lb1 meanwhile",
            self.rate,
            self.flows,
            self.driven_for.as_secs_f64(),
            self.achieved(),
            self.lags.len(),
            self.p(0.5),
            self.p(0.99),
            self.p(1.0),
            quantile(&self.lags[..quarter], 0.5),
            quantile(&self.lags[self.lags.len() - quarter..], 0.5),
            self.missing,
            self.records_lost,
            self.resyncs,
            self.refreshed,
            self.retransmits
        )
    }

    /// The driver (one thread of BPF_PROG_TEST_RUN calls, sharing the
    /// machine with both daemons) could not make the rate.
    pub(super) fn short(&self) -> bool {
        self.achieved() < 0.95 * self.rate as f64
    }

    /// Why the lag is not bounded at the rate achieved, if it is not.
    pub(super) fn unbounded(&self) -> Option<String> {
        if self.wrong_actions > 0 {
            return Some(format!("{} runs got another action", self.wrong_actions));
        }
        if self.records_lost > 0 {
            return Some(format!(
                "{} flow records lost in the ring",
                self.records_lost
            ));
        }
        if self.resyncs > 0 {
            return Some(format!(
                "{} resyncs (the standby fell behind the window)",
                self.resyncs
            ));
        }
        if self.missing > 0 {
            return Some(format!(
                "{} sampled flows not in the standby's table within {SAMPLE_LIMIT:?}",
                self.missing
            ));
        }
        let quarter = self.lags.len() / 4;
        let first = quantile(&self.lags[..quarter], 0.5);
        let last = quantile(&self.lags[self.lags.len() - quarter..], 0.5);
        if last > 2.0 * first + 5.0 {
            return Some(format!(
                "the lag grows over the run (median {first:.2} ms in the first quarter, {last:.2} ms in the last)"
            ));
        }
        None
    }
}

/// TCP segments retransmitted in the calling thread's namespace (lb1's:
/// `/proc/thread-self`, as `/proc/self` is the main thread's).
pub(super) fn tcp_retransmits() -> Result<u64> {
    let snmp = fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp: "));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        bail!("no Tcp lines in /proc/thread-self/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .context("no RetransSegs in /proc/thread-self/net/snmp")?
        .1
        .parse()
        .context("RetransSegs")
}

pub(super) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// New flows at `rate` for `time` through lb1's program; every Nth one's
/// arrival in the standby's flow table (`standby_flows`, its pin) is
/// watched by a thread that looks it up until it is there.
pub(super) fn lag_run(
    active: &Active,
    lb1: &DaemonProcess,
    standby_flows: &Path,
    rate: u64,
    time: Duration,
    flows: &mut FlowSource,
) -> Result<LagRun> {
    let count = rate * time.as_secs();
    let every = (rate / SAMPLES_PER_S).max(1);
    // Built before the clock starts: the driver only runs them.
    // Each flow: its SYN, then the ACK that confirms it (and has it
    // reported).
    let frames: Vec<([Vec<u8>; 2], Option<FlowKey>)> = (0..count)
        .map(|i| {
            let (syn, ack) = flows.next_flow();
            let key = (i % every == 0).then(|| syn.flow_key());
            ([syn.build(), ack.build()], key)
        })
        .collect();
    let data = MapData::from_pin(standby_flows)
        .with_context(|| format!("opening {}", standby_flows.display()))?;
    let table: HashMap<MapData, FlowKey, Flow> = HashMap::try_from(Map::LruHashMap(data))?;
    let before = status(lb1)?;
    let retransmits = tcp_retransmits()?;
    let (samples, watched) = mpsc::channel::<(FlowKey, Instant)>();
    let (driven_for, wrong_actions, (lags, missing)) = thread::scope(|scope| {
        let watcher = scope.spawn(move || {
            // Real-time priority for the watcher alone, so that what it
            // sees late is the standby's lag, not its own wait for a CPU
            // on this shared machine (it sleeps between lookups: a few % of
            // a CPU). Best effort: without it the lags are upper bounds.
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler on the calling thread (0) with a
            // valid parameter.
            let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            let mut lags = Vec::new();
            let mut missing = 0u64;
            for (key, made) in watched {
                loop {
                    if table.get(&key, 0).is_ok() {
                        lags.push(made.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                    if made.elapsed() > SAMPLE_LIMIT {
                        missing += 1;
                        break;
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            }
            (lags, missing)
        });
        let mut wrong = 0u64;
        let start = Instant::now();
        let period = Duration::from_secs(1).as_nanos() as f64 / rate as f64;
        for (i, (frame, key)) in frames.iter().enumerate() {
            let due = start + Duration::from_nanos((i as f64 * period) as u64);
            // Sleeps overshoot by tens of µs: the flows then due go in a
            // burst, and the rate holds over any millisecond. No spinning:
            // the two CPUs are the daemons' too.
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            match test_run(&active.program, active.ingress, &frame[0]) {
                Ok(action) if action == active.action => {}
                _ => wrong += 1,
            }
            let made = Instant::now();
            match test_run(&active.program, active.ingress, &frame[1]) {
                Ok(action) if action == active.action => {}
                _ => wrong += 1,
            }
            if let Some(key) = key {
                let _ = samples.send((*key, made));
            }
        }
        let driven_for = start.elapsed();
        drop(samples);
        let watched = watcher.join().expect("the lag watcher panicked");
        (driven_for, wrong, watched)
    });
    let after = status(lb1)?;
    Ok(LagRun {
        rate,
        flows: count,
        driven_for,
        lags,
        missing,
        records_lost: after.records_lost - before.records_lost,
        resyncs: after.resyncs - before.resyncs,
        refreshed: after.refreshed - before.refreshed,
        retransmits: tcp_retransmits()? - retransmits,
        wrong_actions,
    })
}
