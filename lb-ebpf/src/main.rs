//! lb's XDP program. Parses Ethernet, then IPv4 or IPv6, and hands every
//! packet it does not own to the kernel untouched (`XDP_PASS`).
//!
//! Rules for this file: one concern per function; every pointer is checked
//! against `data_end` right next to its use; constants and map layouts come
//! from `lb-common`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::Counter;

#[map(name = "LB_STATS")]
static LB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let counter = classify(&ctx);
    count(counter);
    xdp_action::XDP_PASS
}

/// Decides what the packet is. Nothing is forwarded yet: every class passes.
#[inline(always)]
fn classify(ctx: &XdpContext) -> Counter {
    let Some(ethertype) = ethertype(ctx) else {
        return Counter::PassMalformed;
    };
    let complete = match ethertype {
        ETH_P_IP => ipv4_header_complete(ctx, ETH_HDR_LEN),
        ETH_P_IPV6 => fits(ctx, ETH_HDR_LEN, IPV6_HDR_LEN),
        _ => return Counter::PassNotIp,
    };
    if complete {
        Counter::PassNotService
    } else {
        Counter::PassMalformed
    }
}

/// The EtherType of the frame, or `None` when the frame is shorter than an
/// Ethernet header.
#[inline(always)]
fn ethertype(ctx: &XdpContext) -> Option<u16> {
    let start = ctx.data();
    if start + ETH_HDR_LEN > ctx.data_end() {
        return None;
    }
    // SAFETY: the 14 bytes of the header are inside the packet (checked above).
    let raw = unsafe { *((start + 12) as *const [u8; 2]) };
    Some(u16::from_be_bytes(raw))
}

/// True when an IPv4 header with a sane IHL starts at `offset` and fits.
#[inline(always)]
fn ipv4_header_complete(ctx: &XdpContext, offset: usize) -> bool {
    let start = ctx.data() + offset;
    if start + IPV4_MIN_HDR_LEN > ctx.data_end() {
        return false;
    }
    // SAFETY: the first 20 bytes of the header are inside the packet.
    let version_ihl = unsafe { *(start as *const u8) };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    version_ihl >> 4 == 4 && header_len >= IPV4_MIN_HDR_LEN && fits(ctx, offset, header_len)
}

/// True when `len` bytes from `offset` are inside the packet.
#[inline(always)]
fn fits(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    ctx.data() + offset + len <= ctx.data_end()
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = LB_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
