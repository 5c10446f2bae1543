//! An XDP program that passes every frame, for the veth peers of the LB's
//! interfaces.
//!
//! A frame the LB's program sends back out the interface it came in on
//! (XDP_TX, e.g. an ICMP time exceeded to the client) is queued on the veth
//! peer, whose receive side is woken up for it only when the peer runs an
//! XDP program of its own (the kernel's `veth_xdp_flush`); GRO alone, which
//! is enough for redirected frames, leaves it queued until the peer's next
//! frame. A real NIC sends it at once, and so does the rig with this
//! program on the peer.
//!
//! Two instructions (`r0 = XDP_PASS; exit`), loaded and attached with the
//! `bpf(2)` system call: the tests crate has no eBPF object of its own.
//! Loaded as `xdp.frags` (`BPF_F_XDP_HAS_FRAGS`; it reads nothing, so any
//! frame suits it): veth refuses a program without it when the peer's MTU
//! is more than about a page (the rig's jumbo frames).
use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_PASS: u8 = 2;
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// `r0 = XDP_PASS` (BPF_ALU64 | BPF_MOV | BPF_K), `exit` (BPF_JMP | BPF_EXIT).
static PROGRAM: [[u8; 8]; 2] = [
    [0xb7, 0, 0, 0, XDP_PASS, 0, 0, 0],
    [0x95, 0, 0, 0, 0, 0, 0, 0],
];

/// Attaches the pass program to `iface` in `ns`; it stays attached while
/// the returned link is open (and goes with the namespace).
pub(super) fn attach(ns: &Netns, iface: &str) -> Result<OwnedFd> {
    ns.run_in(|| {
        let name = CString::new(iface)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface}: {}", io::Error::last_os_error());
        }
        let program = load().context("loading the XDP pass program")?;
        link(&program, ifindex).with_context(|| format!("attaching XDP pass to {iface}"))
    })
    .with_context(|| format!("XDP pass program on {}:{iface}", ns.name()))
}

fn load() -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &BPF_PROG_TYPE_XDP.to_ne_bytes());
    put(&mut attr, 4, &(PROGRAM.len() as u32).to_ne_bytes());
    put(&mut attr, 8, &(PROGRAM.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    // prog_flags
    put(&mut attr, 44, &BPF_F_XDP_HAS_FRAGS.to_ne_bytes());
    put(&mut attr, 48, b"lbt_pass");
    put(&mut attr, 68, &BPF_XDP.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr)
}

fn link(program: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &(program.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 4, &ifindex.to_ne_bytes());
    put(&mut attr, 8, &BPF_XDP.to_ne_bytes());
    bpf(BPF_LINK_CREATE, &mut attr)
}

fn put(attr: &mut [u8], offset: usize, bytes: &[u8]) {
    attr[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// The `bpf(2)` commands above return a new file descriptor.
fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a bpf_attr of the size given, zero beyond the
    // fields set; the pointers in it outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
