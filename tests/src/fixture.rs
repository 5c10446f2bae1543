//! Packet fixtures: run an XDP program on a crafted packet through the
//! kernel's BPF_PROG_TEST_RUN and check the returned action and the exact
//! output bytes. Table-driven: a case is a name, the input frame and what is
//! expected; [`check`] runs them all and reports every failure at once.
use std::fmt::{self, Write as _};

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun, TestRunOptions, Xdp};

/// Room the program may grow the frame by (none of ours does today).
const OUT_SLACK: usize = 256;

/// An XDP verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    /// A value outside the XDP verdicts.
    Other(u32),
}

impl Action {
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Action::Aborted,
            1 => Action::Drop,
            2 => Action::Pass,
            3 => Action::Tx,
            4 => Action::Redirect,
            other => Action::Other(other),
        }
    }
}

/// What one run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// Runs `program` once on `frame`, as received on the loopback device.
pub fn run(program: &Xdp, frame: &[u8]) -> Result<Outcome> {
    run_on(program, frame, None)
}

/// Runs `program` once on `frame`, as received on interface `ingress` of the
/// calling thread's network namespace (so that FIB lookups start there).
pub fn run_on(program: &Xdp, frame: &[u8], ingress: Option<u32>) -> Result<Outcome> {
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let ctx = ingress.map(|ifindex| xdp_md(frame.len(), ifindex));
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx.as_ref().map(|c| &c[..]),
            repeat: 1,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN on a {}-byte frame", frame.len()))?;
    out.truncate(result.data_size_out as usize);
    Ok(Outcome {
        action: Action::from_raw(result.return_value),
        frame: out,
    })
}

/// The `struct xdp_md` a test run starts from: the whole frame as data,
/// received on `ifindex` (queue 0).
pub fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let fields: [u32; 6] = [0, len as u32, 0, ifindex, 0, 0];
    let mut ctx = [0u8; 24];
    for (chunk, field) in ctx.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    ctx
}

/// What a case expects.
#[derive(Clone, Debug)]
pub enum Expect {
    /// This action, the frame byte for byte as it came in.
    Unchanged(Action),
    /// This action and exactly these bytes.
    Rewritten(Action, Vec<u8>),
    /// Passed unchanged or dropped; never forwarded, never altered.
    PassUnchangedOrDrop,
}

/// One row of a fixture table.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    pub expect: Expect,
}

impl Case {
    pub fn new(name: impl Into<String>, frame: Vec<u8>, expect: Expect) -> Self {
        Self {
            name: name.into(),
            frame,
            expect,
        }
    }
}

/// Runs every case; fails with the list of cases that did not hold, each
/// with what differed.
pub fn check(program: &Xdp, cases: &[Case]) -> Result<()> {
    check_on(program, None, cases)
}

/// [`check`], with the frames received on interface `ingress`.
pub fn check_on(program: &Xdp, ingress: Option<u32>, cases: &[Case]) -> Result<()> {
    let mut failures = String::new();
    for case in cases {
        let outcome =
            run_on(program, &case.frame, ingress).with_context(|| format!("case {}", case.name))?;
        if let Some(why) = mismatch(&case.frame, &case.expect, &outcome) {
            let _ = writeln!(failures, "- {}: {why}", case.name);
        }
    }
    if !failures.is_empty() {
        bail!("fixture cases failed:\n{failures}");
    }
    Ok(())
}

/// Why `outcome` does not meet `expect`, or `None` when it does.
pub fn mismatch(input: &[u8], expect: &Expect, outcome: &Outcome) -> Option<String> {
    let (actions, bytes): (&[Action], Option<&[u8]>) = match expect {
        Expect::Unchanged(action) => (std::slice::from_ref(action), Some(input)),
        Expect::Rewritten(action, bytes) => (std::slice::from_ref(action), Some(bytes)),
        Expect::PassUnchangedOrDrop => match outcome.action {
            Action::Drop => (&[Action::Drop], None),
            _ => (&[Action::Pass], Some(input)),
        },
    };
    if !actions.contains(&outcome.action) {
        return Some(format!(
            "action {:?}, expected {}",
            outcome.action,
            Actions(actions)
        ));
    }
    let expected = bytes?;
    if outcome.frame == expected {
        return None;
    }
    Some(describe_difference(expected, &outcome.frame))
}

struct Actions<'a>(&'a [Action]);

impl fmt::Display for Actions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|a| format!("{a:?}")).collect();
        f.write_str(&names.join(" or "))
    }
}

/// First differing offset, the bytes around it, and the lengths.
pub fn describe_difference(expected: &[u8], got: &[u8]) -> String {
    let first = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    let window = |bytes: &[u8]| {
        let start = first.saturating_sub(4);
        let end = (first + 8).min(bytes.len());
        bytes
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "frame differs at byte {first} (expected {} bytes, got {}): expected [{}] got [{}] (from byte {})",
        expected.len(),
        got.len(),
        window(expected),
        window(got),
        first.saturating_sub(4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(action: Action, frame: &[u8]) -> Outcome {
        Outcome {
            action,
            frame: frame.to_vec(),
        }
    }

    #[test]
    fn unchanged_pass_holds() {
        let frame = [1, 2, 3];
        assert_eq!(
            mismatch(
                &frame,
                &Expect::Unchanged(Action::Pass),
                &outcome(Action::Pass, &frame)
            ),
            None
        );
    }

    #[test]
    fn another_action_fails() {
        let frame = [1, 2, 3];
        let why = mismatch(
            &frame,
            &Expect::Unchanged(Action::Pass),
            &outcome(Action::Tx, &frame),
        );
        assert_eq!(why.as_deref(), Some("action Tx, expected Pass"));
    }

    #[test]
    fn one_altered_byte_fails_and_is_located() {
        let frame = [1, 2, 3, 4, 5, 6];
        let why = mismatch(
            &frame,
            &Expect::Unchanged(Action::Pass),
            &outcome(Action::Pass, &[1, 2, 3, 9, 5, 6]),
        )
        .unwrap();
        assert!(why.starts_with("frame differs at byte 3 "), "{why}");
    }

    #[test]
    fn pass_or_drop_accepts_drop_with_any_bytes_but_not_tx() {
        let frame = [1, 2, 3];
        let e = Expect::PassUnchangedOrDrop;
        assert_eq!(mismatch(&frame, &e, &outcome(Action::Drop, &[])), None);
        assert_eq!(mismatch(&frame, &e, &outcome(Action::Pass, &frame)), None);
        assert!(mismatch(&frame, &e, &outcome(Action::Pass, &[1, 2])).is_some());
        assert!(mismatch(&frame, &e, &outcome(Action::Tx, &frame)).is_some());
    }
}
