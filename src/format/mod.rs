//! The on-disk format: pure functions over bytes, no I/O.
//!
//! Everything here is deterministic and panic-free for any input, which is
//! what makes it the target of the fuzzers and of miri. `docs/FORMAT.md` is the
//! prose specification; the byte tables in [`header`] and [`frame`] are the
//! normative ones and the two must agree.

pub mod cursor;
pub mod frame;
pub mod group;
pub mod header;
pub mod owners;
pub mod table;

/// Every frame starts on a multiple of this many bytes, so that the frame
/// header word can be accessed as an aligned 64-bit atomic.
pub const FRAME_ALIGN: u64 = 8;

/// Size of a frame header: one little-endian 64-bit word.
pub const FRAME_HEADER_LEN: u64 = 8;

/// Size of the segment header. Data frames start at this file offset.
pub const HEADER_LEN: u64 = 4096;

/// Segment capacities and growth steps are multiples of this many bytes.
pub const PAGE: u64 = 4096;

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub const fn align_up(n: u64, align: u64) -> Option<u64> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}
