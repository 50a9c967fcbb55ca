//! The owner table: the file `owners` in a log directory, which says which
//! appenders are alive and where each may be holding a reservation, so
//! that a reader stuck at an unfinished frame can tell a dead writer's hole
//! (repair it now) from a live writer's (wait).
//!
//! A header page, then [`SLOTS`] slots of [`SLOT_LEN`] bytes (one cache
//! line each: a slot is written by one appender only). All integers are
//! little-endian; every field is an aligned `u64`, accessed only as an
//! atomic.
//!
//! Header: as every table's (see [`table`](super::table)), with `magic`
//! `b"TLOWNERS"`, `slot_len` 64 and `slots` 1024; and at byte
//! [`OFF_HIGH`] of the header page, `high`: one past the highest slot ever
//! taken (readers scan slots below it).
//!
//! Slot `i` (at `4096 + 64 * i`):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `busy` | 0: the appender holds no reservation; otherwise a log position at or below the start of the reservation it is making or holding |
//! | 8 | 8 | `pid` | the process that took the slot (for people; never trusted) |
//! | 16 | 8 | `taken_nanos` | wall-clock time the slot was taken (ns since the Unix epoch) |
//! | 24 | 40 | reserved | 0 |
//!
//! A slot is alive while an open-file-description lock is held on its
//! first byte: the appender's process takes it with the slot and the
//! kernel drops it when the appender is dropped or the process dies.

// The whole layout is the format's specification, used or not by this
// build.
#![cfg_attr(not(feature = "unstable-internals"), allow(dead_code, unused_imports))]

use super::table::{self, Geometry, HeaderFault};

pub use super::table::HEADER_LEN;

/// The file name of the owner table in a log directory.
pub const FILE_NAME: &str = "owners";
/// The first eight bytes of an owner table.
pub const MAGIC: [u8; 8] = *b"TLOWNERS";
/// The owner table format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of a slot.
pub const SLOT_LEN: u64 = 64;
/// Slots in a table: the most appenders a log can have at once.
pub const SLOTS: u32 = 1024;
/// The kind and geometry the header states.
pub const GEOMETRY: Geometry = Geometry {
    magic: MAGIC,
    version: VERSION,
    slot_len: SLOT_LEN as u32,
    slots: SLOTS,
};
/// Bytes of the whole file.
pub const FILE_LEN: u64 = GEOMETRY.file_len();

/// Offset of the `high` word in the header page.
pub const OFF_HIGH: u64 = 512;
/// Offset of the `busy` word in a slot.
pub const SLOT_BUSY: u64 = 0;
/// Offset of the `pid` word in a slot.
pub const SLOT_PID: u64 = 8;
/// Offset of the `taken_nanos` word in a slot.
pub const SLOT_TAKEN_NANOS: u64 = 16;

/// The file offset of slot `i`.
pub const fn slot_offset(i: u32) -> u64 {
    HEADER_LEN + SLOT_LEN * i as u64
}

/// The header page of a new table.
pub fn encode_header() -> Vec<u8> {
    table::encode_header(&GEOMETRY)
}

/// Validates a table's header.
pub fn check_header(bytes: &[u8]) -> Result<(), HeaderFault> {
    table::check_header(bytes, &GEOMETRY)
}

/// What a header fault means, in words.
pub fn fault_text(f: HeaderFault) -> &'static str {
    match f {
        HeaderFault::Truncated => "owner table is truncated",
        HeaderFault::Magic => "not a tidelog owner table (bad magic)",
        HeaderFault::Version => "owner table format version is not supported",
        HeaderFault::Checksum => "owner table header checksum mismatch",
        HeaderFault::Geometry => "owner table slot geometry is not supported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_every_slot_and_high_is_in_the_header() {
        assert_eq!(slot_offset(SLOTS), FILE_LEN);
        const { assert!(OFF_HIGH >= 28 && OFF_HIGH + 8 <= HEADER_LEN) };
        assert_eq!(check_header(&encode_header()), Ok(()));
    }
}
