//! The cursor table: the file `cursors` in a log directory, where durable
//! named consumers keep their committed positions. Every process maps it;
//! a commit is one atomic store.
//!
//! A header page, then [`SLOTS`] slots of [`SLOT_LEN`] bytes. All integers
//! are little-endian; every field of a slot is an aligned `u64`, accessed
//! only as an atomic (the name too, eight bytes at a time).
//!
//! Header: as every table's (see [`table`](super::table)), with `magic`
//! `b"TLCURSOR"`, `slot_len` 128 and `slots` 1024.
//!
//! Slot `i` (at `4096 + 128 * i`):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `state` | 0 free, 1 a live consumer; anything else is damage |
//! | 8 | 8 | `position` | the committed position: where the consumer resumes |
//! | 16 | 8 | `commit_nanos` | wall-clock time of the last commit (ns since the Unix epoch) |
//! | 24 | 8 | `created_nanos` | when the name was created |
//! | 32 | 8 | `name_len` | bytes of the name, 1..=64 |
//! | 40 | 8 | `name_crc` | CRC-32 of the name's bytes |
//! | 48 | 64 | `name` | UTF-8, zero-filled |
//! | 112 | 16 | reserved | 0 |

// The whole layout is the format's specification (and the fuzzers' and
// tools' vocabulary with `unstable-internals`), used or not by this build.
#![cfg_attr(not(feature = "unstable-internals"), allow(dead_code, unused_imports))]

use super::table::{self, Geometry, HeaderFault, NameFault, NAME_WORDS};
use crate::error::CursorDefect;

pub use super::table::{encode_name, HEADER_LEN, MAX_NAME};

/// The file name of the cursor table in a log directory.
pub const FILE_NAME: &str = "cursors";
/// The first eight bytes of a cursor table.
pub const MAGIC: [u8; 8] = *b"TLCURSOR";
/// The cursor table format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of a slot.
pub const SLOT_LEN: u64 = 128;
/// Slots in a table: the most consumers a log can have.
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

/// Offset of the `state` word in a slot.
pub const SLOT_STATE: u64 = 0;
/// Offset of the `position` word in a slot.
pub const SLOT_POSITION: u64 = 8;
/// Offset of the `commit_nanos` word in a slot.
pub const SLOT_COMMIT_NANOS: u64 = 16;
/// Offset of the `created_nanos` word in a slot.
pub const SLOT_CREATED_NANOS: u64 = 24;
/// Offset of the `name_len` word in a slot.
pub const SLOT_NAME_LEN: u64 = 32;
/// Offset of the `name_crc` word in a slot.
pub const SLOT_NAME_CRC: u64 = 40;
/// Offset of the name in a slot.
pub const SLOT_NAME: u64 = 48;

/// `state`: nobody uses the slot.
pub const STATE_FREE: u64 = 0;
/// `state`: the slot holds a consumer's name and position.
pub const STATE_LIVE: u64 = 1;

/// The file offset of slot `i`.
pub const fn slot_offset(i: u32) -> u64 {
    HEADER_LEN + SLOT_LEN * i as u64
}

/// The header page of a new table.
pub fn encode_header() -> Vec<u8> {
    table::encode_header(&GEOMETRY)
}

/// Validates a table's header.
pub fn check_header(bytes: &[u8]) -> Result<(), CursorDefect> {
    table::check_header(bytes, &GEOMETRY).map_err(header_defect)
}

/// The defect a refused header is.
pub fn header_defect(f: HeaderFault) -> CursorDefect {
    match f {
        HeaderFault::Truncated => CursorDefect::Truncated,
        HeaderFault::Magic => CursorDefect::NotACursorTable,
        HeaderFault::Version => CursorDefect::UnsupportedVersion,
        HeaderFault::Checksum => CursorDefect::HeaderChecksum,
        HeaderFault::Geometry => CursorDefect::Geometry,
    }
}

/// The name a live slot holds, from its name words, length and CRC.
pub fn decode_name(words: &[u64; NAME_WORDS], len: u64, crc: u64) -> Result<String, CursorDefect> {
    table::decode_name(words, len, crc).map_err(|f| match f {
        NameFault::Length => CursorDefect::NameLength,
        NameFault::Checksum => CursorDefect::NameChecksum,
        NameFault::NotUtf8 => CursorDefect::NameNotUtf8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_names_map_to_cursor_defects() {
        let h = encode_header();
        assert_eq!(check_header(&h), Ok(()));
        assert_eq!(check_header(&h[..10]), Err(CursorDefect::Truncated));
        let mut b = h.clone();
        b[0] ^= 1;
        assert_eq!(check_header(&b), Err(CursorDefect::NotACursorTable));
        let (mut w, len, crc) = encode_name("billing").unwrap();
        assert_eq!(decode_name(&w, len, crc).as_deref(), Ok("billing"));
        w[0] ^= 1;
        assert_eq!(decode_name(&w, len, crc), Err(CursorDefect::NameChecksum));
        assert_eq!(decode_name(&w, 65, crc), Err(CursorDefect::NameLength));
    }

    #[test]
    fn the_file_holds_every_slot() {
        assert_eq!(slot_offset(SLOTS), FILE_LEN);
        assert_eq!(SLOT_NAME + MAX_NAME as u64, 112);
    }
}
