//! Loading the embedded XDP object: the object itself, `lb_xdp` and its
//! tail-call programs through the verifier (a load a signal interrupts is
//! tried again, as libbpf does) and the jump table filled with the tail
//! calls, with maps of its own ([`Dataplane::load`]; over pinned maps, see
//! `pins.rs`).
use anyhow::{Context as _, Result};
use aya::{Ebpf, maps::ProgramArray, programs::Xdp};
use lb_common::{
    ICMP_PROGRAM, JUMP_ICMP, JUMP_TTL, JUMP_UNCONFIRMED, TTL_PROGRAM, UNCONFIRMED_PROGRAM,
    XDP_PROGRAM, maps,
};

use super::{Dataplane, FlowFilter, map_mut};

/// The compiled `lb-ebpf` object, built by this crate's build.rs.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb"))
}

impl Dataplane {
    /// Loads the embedded object into the kernel (verifier included), with
    /// maps of its own (nothing pinned).
    pub fn load() -> Result<Self> {
        raise_memlock_limit();
        let ebpf = Ebpf::load(object()).context("loading the XDP object into the kernel")?;
        Self::finish_load(ebpf)
    }

    /// Loads the programs and fills the jump table.
    pub(super) fn finish_load(mut ebpf: Ebpf) -> Result<Self> {
        load_program(program(&mut ebpf)?, XDP_PROGRAM)?;
        for (name, slot) in [
            (ICMP_PROGRAM, JUMP_ICMP),
            (TTL_PROGRAM, JUMP_TTL),
            (UNCONFIRMED_PROGRAM, JUMP_UNCONFIRMED),
        ] {
            let tail: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            load_program(tail, name)?;
            let fd = tail.fd()?.try_clone()?;
            let mut jump: ProgramArray<_> = map_mut(&mut ebpf, maps::JUMP)?;
            jump.set(slot, &fd, 0)
                .with_context(|| format!("putting {name} in the jump table"))?;
        }
        Ok(Self {
            filter: FlowFilter::map(&ebpf)?,
            ebpf,
            attached: Vec::new(),
        })
    }
}

/// How many times a load interrupted by a signal is tried (libbpf tries 5).
const LOAD_ATTEMPTS: usize = 5;

/// Loads `program` through the verifier. The verifier gives up with EAGAIN
/// when a signal is pending for the loading thread (a child's SIGCHLD under
/// tokio's handler, for one); like libbpf, such a load is tried again.
pub(super) fn load_program(program: &mut Xdp, name: &str) -> Result<()> {
    retry_interrupted(
        LOAD_ATTEMPTS,
        || program.load(),
        |error| {
            matches!(
                error,
                aya::programs::ProgramError::LoadError { io_error, .. }
                    if io_error.raw_os_error() == Some(libc::EAGAIN)
            )
        },
    )
    .with_context(|| format!("the kernel's verifier rejected {name}"))
}

/// Runs `load` up to `attempts` times while it fails with an error that
/// `interrupted` says a signal caused; any other outcome is final.
fn retry_interrupted<E>(
    attempts: usize,
    mut load: impl FnMut() -> Result<(), E>,
    interrupted: impl Fn(&E) -> bool,
) -> Result<(), E> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(error) if attempt < attempts && interrupted(&error) => {
                tracing::debug!(
                    attempt,
                    "the verifier was interrupted by a signal: loading again"
                );
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The XDP program of the object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing from the object"))?;
    Ok(program.try_into()?)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so that
/// large maps load there too. Harmless on newer kernels.
pub(super) fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; newer kernels do not need it");
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::retry_interrupted;

    fn eagain(error: &io::Error) -> bool {
        error.raw_os_error() == Some(libc::EAGAIN)
    }

    /// A load that fails with the given errors first, then succeeds;
    /// returns the outcome and how many times it ran.
    fn run(attempts: usize, failures: &[i32]) -> (Result<(), io::Error>, usize) {
        let mut calls = 0;
        let outcome = retry_interrupted(
            attempts,
            || {
                calls += 1;
                match failures.get(calls - 1) {
                    Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
                    None => Ok(()),
                }
            },
            eagain,
        );
        (outcome, calls)
    }

    #[test]
    fn a_load_interrupted_by_signals_is_tried_again() {
        let (outcome, calls) = run(5, &[libc::EAGAIN, libc::EAGAIN]);
        assert!(outcome.is_ok());
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_rejection_is_not_tried_again() {
        let (outcome, calls) = run(5, &[libc::EINVAL]);
        assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(calls, 1);
    }

    #[test]
    fn interruptions_end_after_the_last_attempt() {
        let (outcome, calls) = run(5, &[libc::EAGAIN; 9]);
        assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        assert_eq!(calls, 5);
    }
}
