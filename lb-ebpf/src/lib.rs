//! The XDP programs live in `main.rs` (the `lb` binary for bpfel-unknown-none).
//! This empty library only lets `lb-ctl` name this crate as a build dependency.
#![no_std]
