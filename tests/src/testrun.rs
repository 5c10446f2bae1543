//! Timing an XDP program with BPF_PROG_TEST_RUN, for the benchmarks (the
//! data plane's and the replication's): runs with `repeat = 1`, each on a
//! frame of its own (with `repeat` > 1 the kernel runs the program again on
//! the buffer the previous run rewrote), the kernel's own `duration` of each
//! run in a histogram. And the program a running daemon attached, by its
//! pinned link, so that a bench can run the very program (and maps) a
//! daemon forwards with.
use std::{
    ffi::CString,
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{
    TestRun, TestRunOptions, Xdp,
    links::{FdLink, PinnedLink},
    loaded_programs,
};

use aya_obj::programs::XdpAttachType;

use crate::fixture::{self, Action};

/// Durations above this many ns share the last bucket.
const BUCKETS: usize = 100_000;

/// The durations of test runs: their histogram (1 ns buckets) and sum.
#[derive(Clone)]
pub struct Durations {
    histogram: Vec<u64>,
    total_ns: u64,
    runs: u64,
}

impl Default for Durations {
    fn default() -> Self {
        Self {
            histogram: vec![0; BUCKETS + 1],
            total_ns: 0,
            runs: 0,
        }
    }
}

impl Durations {
    pub fn add(&mut self, ns: u64) {
        self.histogram[(ns as usize).min(BUCKETS)] += 1;
        self.total_ns += ns;
        self.runs += 1;
    }

    /// Adds the runs of `other` (measured in blocks, summed up).
    pub fn merge(&mut self, other: &Durations) {
        for (mine, theirs) in self.histogram.iter_mut().zip(&other.histogram) {
            *mine += theirs;
        }
        self.total_ns += other.total_ns;
        self.runs += other.runs;
    }

    pub fn runs(&self) -> u64 {
        self.runs
    }

    pub fn mean_ns(&self) -> f64 {
        self.total_ns as f64 / self.runs.max(1) as f64
    }

    pub fn median_ns(&self) -> u64 {
        let mut seen = 0;
        self.histogram
            .iter()
            .position(|&n| {
                seen += n;
                seen * 2 >= self.runs
            })
            .unwrap_or(BUCKETS) as u64
    }
}

/// Runs `program` `runs` times with repeat = 1, each on the frame `next`
/// leaves in the buffer (the kernel copies it in afresh for every run, so
/// every run starts from the original packet), received on `ingress` of the
/// calling thread's namespace. Every run must return `expect`; all of them
/// must be done within `limit`.
pub fn measure(
    program: &Xdp,
    ingress: u32,
    runs: u64,
    expect: u32,
    limit: Duration,
    mut next: impl FnMut(u64, &mut Vec<u8>),
) -> Result<Durations> {
    let deadline = Instant::now() + limit;
    let mut durations = Durations::default();
    let mut wrong = 0u64;
    let mut first_wrong = None;
    let mut frame = Vec::new();
    for run in 0..runs {
        next(run, &mut frame);
        let ctx = fixture::xdp_md(frame.len(), ingress);
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: 1,
                ..Default::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN, run {run}"))?;
        if result.return_value != expect {
            wrong += 1;
            first_wrong.get_or_insert((run, result.return_value));
        }
        durations.add(result.duration.as_nanos() as u64);
        if run % 4096 == 0 && Instant::now() > deadline {
            bail!("only {run} of {runs} runs within {limit:?}");
        }
    }
    if let Some((run, action)) = first_wrong {
        bail!(
            "{wrong} of {runs} runs did not return {:?} (first: run {run} returned {:?})",
            Action::from_raw(expect),
            Action::from_raw(action)
        );
    }
    Ok(durations)
}

/// The XDP program a daemon attached to `iface`, found through the link it
/// pinned in `pin_dir` (`link_IFACE`). aya opens a program only from a pin:
/// the program is pinned at `scratch` (a path on a bpffs that must not
/// exist yet) for the time it takes to open it, and unpinned at once.
pub fn attached_program(pin_dir: &Path, iface: &str, scratch: &Path) -> Result<Xdp> {
    let link_path = pin_dir.join(format!("link_{iface}"));
    let link = PinnedLink::from_pin(&link_path)
        .with_context(|| format!("opening the pinned link {}", link_path.display()))?;
    let id = FdLink::from(link)
        .info()
        .context("reading the pinned link's information")?
        .program_id();
    let info = loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
        .with_context(|| format!("program {id} (attached to {iface}) is not loaded"))?;
    let fd = info.fd().with_context(|| format!("opening program {id}"))?;
    pin_fd(fd.as_fd().as_raw_fd(), scratch)?;
    let program = Xdp::from_pin(scratch, XdpAttachType::Interface);
    let _ = fs::remove_file(scratch);
    program.with_context(|| format!("opening program {id} from {}", scratch.display()))
}

/// BPF_OBJ_PIN of `fd` at `path` (aya pins only the objects it loaded).
fn pin_fd(fd: i32, path: &Path) -> Result<()> {
    /// The part of `union bpf_attr` BPF_OBJ_PIN reads (the kernel takes
    /// the rest as zero).
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    const BPF_OBJ_PIN: libc::c_long = 6;
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{} holds a NUL byte", path.display()))?;
    let attr = ObjPin {
        pathname: cpath.as_ptr() as u64,
        bpf_fd: fd as u32,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    // SAFETY: BPF_OBJ_PIN reads `attr` (of the size given) and the
    // NUL-terminated path it points to, both alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &attr as *const ObjPin,
            std::mem::size_of::<ObjPin>(),
        )
    };
    if ret != 0 {
        bail!(
            "pinning program descriptor {fd} at {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
