//! Types and constants shared by the XDP program (`lb-ebpf`) and user space.
//!
//! Everything here is `#[repr(C)]`, `Copy`, and laid out without implicit
//! padding: the kernel and user space read the same bytes. Map names, sizes
//! and layouts live only here. With the `user` feature the map types
//! implement `aya::Pod`.
//!
//! Byte order: addresses and ports are kept in network byte order, exactly as
//! they appear in the packet (an IPv4 address is the first 4 bytes of a
//! 16-byte address, the rest zero).
//!
//! With the `api` feature (std, user space only), [`api`] holds the
//! daemon's local API: its types and its client, shared by the daemon, the
//! CLI and the console.
#![no_std]

#[cfg(feature = "api")]
extern crate std;

#[cfg(feature = "api")]
pub mod api;
pub mod hash;
pub mod maps;

// The rest lives in private modules, one per concern, re-exported whole:
// other crates name every item from the crate root (`lb_common::FlowKey`,
// `lb_common::mode::NAT`).
mod cluster;
mod flow;
mod fragment;
mod icmp;
mod limits;
mod nexthop;
#[cfg(feature = "user")]
mod pod;
mod programs;
mod record;
mod service;
mod stats;

pub use cluster::*;
pub use flow::*;
pub use fragment::*;
pub use icmp::*;
pub use limits::*;
pub use nexthop::*;
pub use programs::*;
pub use record::*;
pub use service::*;
pub use stats::*;

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
