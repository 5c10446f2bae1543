//! Self-fencing. A clustered node's event loop renews its lease (`LB_LEASE`)
//! on every pass; once the lease has passed (the daemon was killed or
//! stalled) the node is *fenced*: the peer takes the group over, and this
//! node must answer nothing for the floating IPs that are still configured
//! on its interfaces (the kernel would answer ARP, neighbour solicitations,
//! pings and connections for them). So, fenced, the program drops every
//! packet addressed to a floating IP and every ARP request or neighbour
//! solicitation for one; and service traffic is not forwarded (`role.rs`
//! treats a fenced node as standby).
use aya_ebpf::{
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_ns},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{AF_INET, AF_INET6, FenceCheck, FloatingKey, IPPROTO_ICMPV6, Settings, role};

use crate::packet::{ETH_HDR_LEN, IPV6_HDR_LEN, read};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86DD;
/// Offset of the target protocol address in an Ethernet/IPv4 ARP packet.
const ARP_TPA: usize = ETH_HDR_LEN + 24;
const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;

/// True for an active role whose lease (`lease_until_ns`, 0: none) has
/// passed; recorded in this CPU's slot of `checks` for the rest of the
/// packet's way (see [`recorded`]). `lb_xdp` asks once per packet, first.
/// The clock is read (a helper call) once per jiffy per CPU for the same
/// lease.
#[inline(always)]
pub fn check(settings: &Settings, lease_until_ns: u64, checks: &PerCpuArray<FenceCheck>) -> bool {
    let Some(last) = checks.get_ptr_mut(0) else {
        return settings.role == role::ACTIVE && lease_until_ns != 0 && passed(lease_until_ns);
    };
    // SAFETY: this CPU's slot; nothing else writes it while we run.
    let last = unsafe { &mut *last };
    if settings.role != role::ACTIVE || lease_until_ns == 0 {
        last.expired = 0;
        return false;
    }
    // SAFETY: bpf_jiffies64 has no preconditions.
    let now = unsafe { bpf_jiffies64() };
    if last.jiffies != now || last.lease != lease_until_ns {
        last.jiffies = now;
        last.lease = lease_until_ns;
        last.expired = u64::from(passed(lease_until_ns));
    }
    last.expired != 0
}

/// What [`check`] found for the packet on its way (this CPU's, from the
/// same run of the program or of the one that tail-called this one).
#[inline(always)]
pub fn recorded(checks: &PerCpuArray<FenceCheck>) -> bool {
    checks.get(0).is_some_and(|last| last.expired != 0)
}

/// Whether the clock is past `lease_until_ns`.
#[inline(always)]
fn passed(lease_until_ns: u64) -> bool {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() > lease_until_ns }
}

/// On a fenced node: whether the frame is addressed to, or asks for, a
/// floating IP (to be dropped).
#[inline(always)]
pub fn for_floating_ip(ctx: &XdpContext, floating: &HashMap<FloatingKey, u8>) -> bool {
    let Some(ethertype) = read::<2>(ctx, 12) else {
        return false;
    };
    let mut key = FloatingKey::default();
    match u16::from_be_bytes(ethertype) {
        ETH_P_ARP => {
            let Some(tpa) = read::<4>(ctx, ARP_TPA) else {
                return false;
            };
            key.family = AF_INET;
            key.addr[..4].copy_from_slice(&tpa);
        }
        ETH_P_IP => {
            let Some(dst) = read::<4>(ctx, ETH_HDR_LEN + 16) else {
                return false;
            };
            key.family = AF_INET;
            key.addr[..4].copy_from_slice(&dst);
        }
        ETH_P_IPV6 => {
            let Some(dst) = read::<16>(ctx, ETH_HDR_LEN + 24) else {
                return false;
            };
            key.family = AF_INET6;
            key.addr = dst;
            if is_floating(floating, &key) {
                return true;
            }
            // A neighbour solicitation goes to a multicast address; what it
            // asks for is its target.
            let Some([next_header, _]) = read::<2>(ctx, ETH_HDR_LEN + 6) else {
                return false;
            };
            let icmp = ETH_HDR_LEN + IPV6_HDR_LEN;
            let Some([icmp_type, _]) = read::<2>(ctx, icmp) else {
                return false;
            };
            if next_header != IPPROTO_ICMPV6 || icmp_type != ICMPV6_NEIGHBOUR_SOLICITATION {
                return false;
            }
            let Some(target) = read::<16>(ctx, icmp + 8) else {
                return false;
            };
            key.addr = target;
        }
        _ => return false,
    }
    is_floating(floating, &key)
}

#[inline(always)]
fn is_floating(floating: &HashMap<FloatingKey, u8>, key: &FloatingKey) -> bool {
    // SAFETY: a plain lookup; the value is not read.
    unsafe { floating.get(key) }.is_some()
}
