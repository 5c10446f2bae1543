//! The flow filter's edge in user space (`LB_FLOW_FILTER`, see
//! `lb_common::maps::FLOW_FILTER`): the map mapped into this process, the
//! bits of the flows user space writes into the connection table, and the
//! rebuild that clears the bits of flows the table no longer holds.
//!
//! Invariant: every flow in the connection table has its bit in the half
//! the program reads. The program and [`FlowFilter::add`] set a flow's bit
//! in both halves after its insert; a rebuild clears the half not read,
//! sets it again for every flow the table holds (a flow inserted before
//! the clear of its word is found by the walk, which starts after), and
//! only then makes the program read it.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use lb_common::{
    FLOW_FILTER_ENTRIES, FLOW_FILTER_READ, FLOW_FILTER_WORDS, FlowKey, flow_filter_entry, hash,
    maps,
};

/// Bits of one half.
pub const FILTER_BITS: u64 = 64 * FLOW_FILTER_WORDS as u64;

/// The flow filter, shared with the program (cheap to clone).
#[derive(Clone)]
pub struct FlowFilter {
    mapping: Arc<Mapping>,
}

/// What a rebuild found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Flows of the connection table walked.
    pub flows: u64,
    /// Bits set in the new half when it was made the one read.
    pub bits: u64,
}

/// The map's memory, mapped shared with the kernel, unmapped on drop (the
/// mapping holds the map alive without a descriptor).
struct Mapping {
    words: NonNull<AtomicU64>,
    len: usize,
    /// One rebuild at a time.
    rebuilding: Mutex<()>,
}

// SAFETY: the memory is only reached through atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the address and length of our own mmap, unmapped once.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.len) };
    }
}

impl FlowFilter {
    /// Maps the filter of `ebpf` (created `BPF_F_MMAPABLE` by the object).
    pub fn map(ebpf: &aya::Ebpf) -> Result<Self> {
        let name = maps::FLOW_FILTER;
        let Some(aya::maps::Map::Array(data)) = ebpf.map(name) else {
            bail!("map {name} missing from the object or not an array");
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (FLOW_FILTER_ENTRIES as usize * 8).next_multiple_of(page);
        // SAFETY: a shared mapping of an mmapable array map's values; the
        // kernel checks the length against the map. The result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mapping {name} into memory (is it BPF_F_MMAPABLE?)"));
        }
        let words = NonNull::new(addr.cast::<AtomicU64>()).context("mmap returned null")?;
        Ok(Self {
            mapping: Arc::new(Mapping {
                words,
                len,
                rebuilding: Mutex::new(()),
            }),
        })
    }

    fn entries(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds at least FLOW_FILTER_ENTRIES 8-byte
        // words (page aligned) for as long as `self.mapping` lives.
        unsafe {
            std::slice::from_raw_parts(self.mapping.words.as_ptr(), FLOW_FILTER_ENTRIES as usize)
        }
    }

    fn entry(&self, half: u32, word: u32) -> &AtomicU64 {
        &self.entries()[flow_filter_entry(half, word) as usize]
    }

    /// The half the program reads (0 or 1).
    pub fn half_read(&self) -> u32 {
        (self.entries()[FLOW_FILTER_READ as usize].load(Ordering::SeqCst) & 1) as u32
    }

    /// Sets the bit of client-side `key` in both halves: after its flow
    /// was written into the connection table.
    pub fn add(&self, key: &FlowKey) {
        let bit = hash::flow_filter_bit(key);
        for half in 0..2 {
            self.entry(half, bit / 64)
                .fetch_or(1 << (bit % 64), Ordering::SeqCst);
        }
    }

    /// Whether the program takes the connection table's lookup for a SYN of
    /// client-side `key` (its bit is set in the half read).
    pub fn may_hold(&self, key: &FlowKey) -> bool {
        let bit = hash::flow_filter_bit(key);
        self.entry(self.half_read(), bit / 64)
            .load(Ordering::SeqCst)
            & (1 << (bit % 64))
            != 0
    }

    /// Bits set in the half read.
    pub fn bits(&self) -> u64 {
        self.bits_of(self.half_read())
    }

    fn bits_of(&self, half: u32) -> u64 {
        (0..FLOW_FILTER_WORDS)
            .map(|word| u64::from(self.entry(half, word).load(Ordering::Relaxed).count_ones()))
            .sum()
    }

    /// Rebuilds the half not read from `flows` (every key of the
    /// connection table, walked after the clear) and makes the program
    /// read it. If the walk fails, the program goes on reading the half it
    /// read, unchanged, and the error says why.
    pub fn rebuild(&self, flows: impl IntoIterator<Item = Result<FlowKey>>) -> Result<Rebuilt> {
        let _one = self
            .mapping
            .rebuilding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let read = self.half_read();
        let other = 1 - read;
        for word in 0..FLOW_FILTER_WORDS {
            self.entry(other, word).store(0, Ordering::SeqCst);
        }
        let mut walked = 0;
        for key in flows {
            let key = key.context("walking the connection table to rebuild the flow filter")?;
            let bit = hash::flow_filter_bit(&key);
            self.entry(other, bit / 64)
                .fetch_or(1 << (bit % 64), Ordering::SeqCst);
            walked += 1;
        }
        self.entries()[FLOW_FILTER_READ as usize].store(u64::from(other), Ordering::SeqCst);
        Ok(Rebuilt {
            flows: walked,
            bits: self.bits_of(other),
        })
    }
}

/// When the daemon rebuilds the filter: bits set since the last rebuild
/// (flows confirmed or written since, some of them gone from the table
/// since) must have grown by this many, so that a filter kept full by a
/// table that is full is not walked again and again...
pub const REBUILD_GROWTH: u64 = FILTER_BITS / 16;
/// ...and this long must have passed (a walk of a full table takes a few
/// seconds of one CPU: aya 0.14 reads a hash map one key per syscall).
pub const REBUILD_INTERVAL: Duration = Duration::from_secs(60);

/// Whether a rebuild is due: the half read has `bits` set, `after_last`
/// right after the last rebuild, which was `since` ago.
pub fn rebuild_due(bits: u64, after_last: u64, since: Duration) -> bool {
    since >= REBUILD_INTERVAL && bits >= after_last.saturating_add(REBUILD_GROWTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_is_due_once_the_filter_grew_enough_and_long_enough_ago() {
        let long = REBUILD_INTERVAL;
        assert!(rebuild_due(REBUILD_GROWTH, 0, long));
        assert!(!rebuild_due(REBUILD_GROWTH - 1, 0, long));
        assert!(!rebuild_due(
            REBUILD_GROWTH,
            0,
            long - Duration::from_secs(1)
        ));
        // A full table keeps a dense filter: only growth beyond it counts.
        assert!(!rebuild_due(700_000, 660_000, long * 10));
        assert!(rebuild_due(660_000 + REBUILD_GROWTH, 660_000, long));
        // Fewer bits than after the last rebuild (the half read changed).
        assert!(!rebuild_due(10, 660_000, long));
    }
}
