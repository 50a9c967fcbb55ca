//! What the cursor table and the group table have in common: a header page
//! that names the file's kind, version and geometry under a CRC, and names
//! stored as eight atomic words with their length and CRC.
//!
//! Header (bytes 0..4096 of both files; the rest of the page is zero):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `magic` | the file's kind |
//! | 8 | 4 | `version` | 1 |
//! | 12 | 4 | `slot_len` | bytes of a slot (a cursor, a group block) |
//! | 16 | 4 | `slots` | how many slots follow the header |
//! | 20 | 4 | reserved | 0 |
//! | 24 | 4 | `header_crc` | CRC-32 of bytes 0..24 |

/// Bytes of the header page.
pub const HEADER_LEN: u64 = 4096;
/// The longest name, in bytes.
pub const MAX_NAME: usize = 64;
/// Words of a stored name.
pub const NAME_WORDS: usize = MAX_NAME / 8;

const OFF_VERSION: usize = 8;
const OFF_SLOT_LEN: usize = 12;
const OFF_SLOTS: usize = 16;
const OFF_CRC: usize = 24;

/// A table's kind and geometry, as its header states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The first eight bytes.
    pub magic: [u8; 8],
    /// The format version this build writes and reads.
    pub version: u32,
    /// Bytes of a slot.
    pub slot_len: u32,
    /// Slots after the header.
    pub slots: u32,
}

impl Geometry {
    /// Bytes of the whole file.
    pub const fn file_len(&self) -> u64 {
        HEADER_LEN + self.slot_len as u64 * self.slots as u64
    }
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// Shorter than the header.
    Truncated,
    /// Another kind of file.
    Magic,
    /// Another version of the format.
    Version,
    /// The CRC does not match.
    Checksum,
    /// Another slot size or count.
    Geometry,
}

/// Why a stored name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFault {
    /// Empty or longer than [`MAX_NAME`].
    Length,
    /// Does not match its CRC.
    Checksum,
    /// Not UTF-8.
    NotUtf8,
}

/// The header page of a new table.
pub fn encode_header(g: &Geometry) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_LEN as usize];
    page[..OFF_VERSION].copy_from_slice(&g.magic);
    page[OFF_VERSION..OFF_SLOT_LEN].copy_from_slice(&g.version.to_le_bytes());
    page[OFF_SLOT_LEN..OFF_SLOTS].copy_from_slice(&g.slot_len.to_le_bytes());
    page[OFF_SLOTS..OFF_SLOTS + 4].copy_from_slice(&g.slots.to_le_bytes());
    let crc = crc32fast::hash(&page[..OFF_CRC]);
    page[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    page
}

/// Validates a table's header against the geometry this build expects.
pub fn check_header(bytes: &[u8], g: &Geometry) -> Result<(), HeaderFault> {
    let Some(h) = bytes.get(..OFF_CRC + 4) else {
        return Err(HeaderFault::Truncated);
    };
    if h[..OFF_VERSION] != g.magic {
        return Err(HeaderFault::Magic);
    }
    let word = |off: usize| u32::from_le_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]);
    if word(OFF_VERSION) != g.version {
        return Err(HeaderFault::Version);
    }
    if word(OFF_CRC) != crc32fast::hash(&h[..OFF_CRC]) {
        return Err(HeaderFault::Checksum);
    }
    if word(OFF_SLOT_LEN) != g.slot_len || word(OFF_SLOTS) != g.slots {
        return Err(HeaderFault::Geometry);
    }
    Ok(())
}

/// A name as a table stores it: the words of the name field, its length
/// and its CRC; `None` for a name that is empty or longer than
/// [`MAX_NAME`].
pub fn encode_name(name: &str) -> Option<([u64; NAME_WORDS], u64, u64)> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME {
        return None;
    }
    let mut bytes = [0u8; MAX_NAME];
    bytes[..b.len()].copy_from_slice(b);
    let mut words = [0u64; NAME_WORDS];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        *w = u64::from_le_bytes(a);
    }
    Some((words, b.len() as u64, u64::from(crc32fast::hash(b))))
}

/// The name stored as `words`, `len` and `crc`.
pub fn decode_name(words: &[u64; NAME_WORDS], len: u64, crc: u64) -> Result<String, NameFault> {
    if len == 0 || len > MAX_NAME as u64 {
        return Err(NameFault::Length);
    }
    let mut bytes = Vec::with_capacity(MAX_NAME);
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.truncate(len as usize);
    if u64::from(crc32fast::hash(&bytes)) != crc {
        return Err(NameFault::Checksum);
    }
    String::from_utf8(bytes).map_err(|_| NameFault::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        magic: *b"TLTESTXX",
        version: 1,
        slot_len: 128,
        slots: 4,
    };

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(&G);
        assert_eq!(check_header(&h, &G), Ok(()));
        assert_eq!(check_header(&h[..10], &G), Err(HeaderFault::Truncated));
        for bit in 0..28 * 8 {
            let mut b = h.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(check_header(&b, &G).is_err(), "bit {bit}");
        }
        let other = Geometry { slots: 5, ..G };
        assert_eq!(
            check_header(&encode_header(&other), &G),
            Err(HeaderFault::Geometry)
        );
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
        assert_eq!(decode_name(&w, len, crc), Err(NameFault::Checksum));
        assert_eq!(decode_name(&w, 65, crc), Err(NameFault::Length));
    }
}
