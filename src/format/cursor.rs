//! The cursor table: the file `cursors` in a log directory, where durable
//! named consumers keep their committed positions. Every process maps it;
//! a commit is one atomic store.
//!
//! A header page, then [`SLOTS`] slots of [`SLOT_LEN`] bytes. All integers
//! are little-endian; every field of a slot is an aligned `u64`, accessed
//! only as an atomic (the name too, eight bytes at a time).
//!
//! Header (bytes 0..4096; the rest of the page is zero):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `magic` | `b"TLCURSOR"` |
//! | 8 | 4 | `version` | 1 |
//! | 12 | 4 | `slot_len` | 128 |
//! | 16 | 4 | `slots` | 1024 |
//! | 20 | 4 | reserved | 0 |
//! | 24 | 4 | `header_crc` | CRC-32 of bytes 0..24 |
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

use crate::error::CursorDefect;

/// The file name of the cursor table in a log directory.
pub const FILE_NAME: &str = "cursors";
/// The first eight bytes of a cursor table.
pub const MAGIC: [u8; 8] = *b"TLCURSOR";
/// The cursor table format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: u64 = 4096;
/// Bytes of a slot.
pub const SLOT_LEN: u64 = 128;
/// Slots in a table: the most consumers a log can have.
pub const SLOTS: u32 = 1024;
/// The longest name, in bytes.
pub const MAX_NAME: usize = 64;
/// Bytes of the whole file.
pub const FILE_LEN: u64 = HEADER_LEN + SLOT_LEN * SLOTS as u64;

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

const OFF_VERSION: usize = 8;
const OFF_SLOT_LEN: usize = 12;
const OFF_SLOTS: usize = 16;
const OFF_CRC: usize = 24;

/// The file offset of slot `i`.
pub const fn slot_offset(i: u32) -> u64 {
    HEADER_LEN + SLOT_LEN * i as u64
}

/// The header page of a new table.
pub fn encode_header() -> Vec<u8> {
    let mut page = vec![0u8; HEADER_LEN as usize];
    page[..OFF_VERSION].copy_from_slice(&MAGIC);
    page[OFF_VERSION..OFF_SLOT_LEN].copy_from_slice(&VERSION.to_le_bytes());
    page[OFF_SLOT_LEN..OFF_SLOTS].copy_from_slice(&(SLOT_LEN as u32).to_le_bytes());
    page[OFF_SLOTS..OFF_SLOTS + 4].copy_from_slice(&SLOTS.to_le_bytes());
    let crc = crc32fast::hash(&page[..OFF_CRC]);
    page[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    page
}

/// Validates a table's header.
pub fn check_header(bytes: &[u8]) -> Result<(), CursorDefect> {
    let Some(h) = bytes.get(..OFF_CRC + 4) else {
        return Err(CursorDefect::Truncated);
    };
    if h[..OFF_VERSION] != MAGIC {
        return Err(CursorDefect::NotACursorTable);
    }
    let word = |off: usize| u32::from_le_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]);
    if word(OFF_VERSION) != VERSION {
        return Err(CursorDefect::UnsupportedVersion);
    }
    if word(OFF_CRC) != crc32fast::hash(&h[..OFF_CRC]) {
        return Err(CursorDefect::HeaderChecksum);
    }
    if u64::from(word(OFF_SLOT_LEN)) != SLOT_LEN || word(OFF_SLOTS) != SLOTS {
        return Err(CursorDefect::Geometry);
    }
    Ok(())
}

/// A name as the slot stores it: the words of the name field, its length
/// and its CRC; `None` for a name that is empty or longer than
/// [`MAX_NAME`].
pub fn encode_name(name: &str) -> Option<([u64; MAX_NAME / 8], u64, u64)> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME {
        return None;
    }
    let mut bytes = [0u8; MAX_NAME];
    bytes[..b.len()].copy_from_slice(b);
    let mut words = [0u64; MAX_NAME / 8];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        *w = u64::from_le_bytes(a);
    }
    Some((words, b.len() as u64, u64::from(crc32fast::hash(b))))
}

/// The name a live slot holds, from its name words, length and CRC.
pub fn decode_name(
    words: &[u64; MAX_NAME / 8],
    len: u64,
    crc: u64,
) -> Result<String, CursorDefect> {
    if len == 0 || len > MAX_NAME as u64 {
        return Err(CursorDefect::NameLength);
    }
    let mut bytes = Vec::with_capacity(MAX_NAME);
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.truncate(len as usize);
    if u64::from(crc32fast::hash(&bytes)) != crc {
        return Err(CursorDefect::NameChecksum);
    }
    String::from_utf8(bytes).map_err(|_| CursorDefect::NameNotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header();
        assert_eq!(check_header(&h), Ok(()));
        assert_eq!(check_header(&h[..10]), Err(CursorDefect::Truncated));
        for bit in 0..28 * 8 {
            let mut b = h.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(check_header(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn names_round_trip() {
        for name in ["a", "billing", "é-ü", &"x".repeat(64)] {
            let (w, len, crc) = encode_name(name).unwrap();
            assert_eq!(decode_name(&w, len, crc).as_deref(), Ok(name));
        }
        assert!(encode_name("").is_none());
        assert!(encode_name(&"x".repeat(65)).is_none());
        let (mut w, len, crc) = encode_name("billing").unwrap();
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
