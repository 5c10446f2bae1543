//! Incremental Internet checksum updates (RFC 1624): collect the difference
//! of the 16-bit words a rewrite changes, then apply it to each checksum that
//! covers them.

/// The one's-complement difference of the words changed so far.
#[derive(Clone, Copy)]
pub struct Diff(u32);

impl Diff {
    #[inline(always)]
    pub const fn new() -> Self {
        Diff(0)
    }

    /// One 16-bit word (big-endian value) changes from `old` to `new`.
    #[inline(always)]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
    }

    /// A run of bytes of even length changes (addresses, ports).
    #[inline(always)]
    pub fn bytes<const N: usize>(&mut self, old: &[u8; N], new: &[u8; N]) {
        let mut i = 0;
        while i + 1 < N {
            self.word(
                u16::from_be_bytes([old[i], old[i + 1]]),
                u16::from_be_bytes([new[i], new[i + 1]]),
            );
            i += 2;
        }
    }

    /// The checksum `csum` (big-endian value as stored) after the changes.
    #[inline(always)]
    pub fn apply(self, csum: u16) -> u16 {
        !fold(u32::from(!csum) + self.0)
    }
}

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
