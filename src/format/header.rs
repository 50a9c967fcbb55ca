//! The segment header: the first [`HEADER_LEN`] bytes of every segment file.
//!
//! All integers are little-endian. The static part (bytes 0..80) is written
//! once, before the segment file is linked into the log directory, and never
//! changes; its CRC covers bytes 0..72. The shared words live on their own
//! 128-byte blocks (two cache lines, so the adjacent-line prefetcher does not
//! make them false-share) and are only ever accessed as atomics.
//!
//! | offset | size | field              | meaning                                                     |
//! |-------:|-----:|--------------------|-------------------------------------------------------------|
//! |      0 |    8 | `magic`            | `b"TIDELOG\0"`                                              |
//! |      8 |    4 | `version`          | format version, currently 1                                 |
//! |     12 |    4 | `header_len`       | file offset of the first frame, currently 4096              |
//! |     16 |    8 | `capacity`         | segment length in bytes, header included: the mapping size  |
//! |     24 |    8 | `base`             | log position of file offset 0                               |
//! |     32 |    8 | `index`            | 0 for the first segment of a log, +1 for each successor     |
//! |     40 |    4 | `compat_flags`     | features an older reader may ignore                         |
//! |     44 |    4 | `incompat_flags`   | features an older reader must refuse                        |
//! |     48 |    8 | `created_nanos`    | creation time, nanoseconds since the Unix epoch             |
//! |     56 |   16 | `log_id`           | the log's identity: random at the log's creation, copied to every successor |
//! |     72 |    4 | `header_crc`       | CRC-32 (IEEE) of bytes 0..72                                |
//! |     76 |    4 | reserved           | zero                                                        |
//! |    128 |    8 | `tail`             | atomic: next unreserved file offset (may exceed `capacity`) |
//! |    256 |    8 | `grown`            | atomic: bytes writers have allocated (a hint, never trusted by readers) |
//! |    384 |    4 | `notify_seq`       | atomic: futex word, bumped when parked readers are woken    |
//! |    388 |    4 | `parked`           | atomic: non-zero when a reader may be parked on `notify_seq` |
//! |    512 |    8 | `state`            | atomic: bit 0 sealed, bit 1 dirty (a hole may be left)      |
//! |    520 |    8 | `checked`          | atomic: frames below this offset are known hole-free (trusted on `boot_id`'s boot only) |
//! |    528 |   16 | `boot_id`          | atomic pair: the kernel boot id of the boot the segment was last opened for writing in |
//! |    640 |    8 | `flushed`          | atomic: durable watermark: frames below it are complete and on stable storage |
//! |   1024 | 3072 | `index`            | atomic `u32`s: the boundary index (see [`index_shift`])     |
//!
//! Everything else up to `header_len` is reserved and zero. The words that
//! vouch for data (`state`, `checked`, `boot_id`, `flushed`) share one
//! 512-byte sector (bytes 512..1024), so a torn write of the header page
//! never mixes them from two moments.

use super::{HEADER_LEN, PAGE};
use crate::error::{CapacityDefect, HeaderDefect};

/// The eight bytes every segment file starts with.
pub const MAGIC: [u8; 8] = *b"TIDELOG\0";
/// The format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;
/// Length of the static, checksummed part of the header.
pub const STATIC_LEN: usize = 80;
/// The largest segment capacity accepted: 1 TiB.
pub const MAX_CAPACITY: u64 = 1 << 40;
/// The smallest segment capacity accepted: the header plus 15 data pages.
pub const MIN_CAPACITY: u64 = 16 * PAGE;
/// Positions stay below this, so that position arithmetic never overflows.
pub const MAX_POSITION: u64 = 1 << 62;
/// Incompatible feature bits this build understands (none yet).
pub const KNOWN_INCOMPAT_FLAGS: u32 = 0;

/// File offset of the `magic` field.
pub const OFF_MAGIC: usize = 0;
/// File offset of the `version` field.
pub const OFF_VERSION: usize = 8;
/// File offset of the `header_len` field.
pub const OFF_HEADER_LEN: usize = 12;
/// File offset of the `capacity` field.
pub const OFF_CAPACITY: usize = 16;
/// File offset of the `base` field.
pub const OFF_BASE: usize = 24;
/// File offset of the `index` field (the segment's sequence number).
pub const OFF_SEGMENT_INDEX: usize = 32;
/// File offset of the `compat_flags` field.
pub const OFF_COMPAT_FLAGS: usize = 40;
/// File offset of the `incompat_flags` field.
pub const OFF_INCOMPAT_FLAGS: usize = 44;
/// File offset of the `created_nanos` field.
pub const OFF_CREATED_NANOS: usize = 48;
/// File offset of the `log_id` field: 16 bytes that name the log, drawn at
/// random when its first segment is created and copied into every
/// successor, so that every segment of a log carries the same id and no
/// other log's does (a bridge names the log's records by it).
pub const OFF_LOG_ID: usize = 56;
/// File offset of the `header_crc` field; the CRC covers the bytes before.
pub const OFF_CRC: usize = 72;
/// File offset of the `tail` word.
pub const OFF_TAIL: usize = 128;
/// File offset of the `grown` word.
pub const OFF_GROWN: usize = 256;
/// File offset of the `notify_seq` futex word.
pub const OFF_NOTIFY_SEQ: usize = 384;
/// File offset of the `parked` flag.
pub const OFF_PARKED: usize = 388;
/// File offset of the `state` word.
pub const OFF_STATE: usize = 512;
/// File offset of the `checked` word.
pub const OFF_CHECKED: usize = 520;
/// File offset of the `boot_id` words (16 bytes: two `u64`s).
pub const OFF_BOOT_ID: usize = 528;
/// File offset of the `flushed` word.
pub const OFF_FLUSHED: usize = 640;
/// File offset of the `synced_seq` word (`u32`): bumped after every raise
/// of `flushed`; the futex that appenders waiting for a sync sleep on.
pub const OFF_SYNCED_SEQ: usize = 648;
/// File offset of the `sync_waiters` flag (`u32`): set by a process
/// waiting for another's sync, cleared by the leader that wakes it.
pub const OFF_SYNC_WAITERS: usize = 652;
/// File offset of the `sync_error` word: the generation of the last failed
/// sync (high 32 bits) and its `errno` while its pages are not yet written
/// again (low 32 bits, 0 once a later sync succeeded).
pub const OFF_SYNC_ERROR: usize = 656;
/// File offset of the boundary index.
pub const OFF_INDEX: usize = 1024;
/// Entries in the boundary index.
pub const INDEX_SLOTS: u64 = 768;

/// The boundary index's stride, as a power of two: the smallest at least a
/// page such that the segment has at most [`INDEX_SLOTS`] marks.
///
/// Mark `k` (for `1 <= k <= capacity >> shift`) is the offset
/// `k << shift`; its entry, the `u32` at `OFF_INDEX + 4 * (k - 1)`, holds a
/// frame boundary at or after the mark (see [`encode_index_entry`]), or 0
/// while none is known. Appenders fill an entry when their reservation
/// covers its mark: the end of that reservation is where the next frame
/// starts. Readers start a walk from an entry to prove that a position is
/// a frame boundary, and skip damage to the next entry, so that no
/// boundary is ever guessed from bytes a payload could forge.
///
/// ```
/// use tidelog::format::header::index_shift;
/// assert_eq!(index_shift(64 << 10), 12); // 16 marks, 4 KiB apart
/// assert_eq!(index_shift(1 << 30), 21); // 512 marks, 2 MiB apart
/// ```
pub const fn index_shift(capacity: u64) -> u32 {
    let mut s = 12;
    while (capacity >> s) > INDEX_SLOTS {
        s += 1;
    }
    s
}

/// The entry that records `boundary` for the mark at offset `mark`: the
/// distance in 8-byte words, plus one (0 means "unknown"). `None` if the
/// boundary is before the mark, misaligned, or too far to encode.
pub const fn encode_index_entry(mark: u64, boundary: u64) -> Option<u32> {
    if boundary < mark || !(boundary - mark).is_multiple_of(8) {
        return None;
    }
    let words = (boundary - mark) / 8;
    if words >= u32::MAX as u64 {
        return None;
    }
    Some(words as u32 + 1)
}

/// The boundary an index entry for the mark at `mark` records, if any.
pub const fn decode_index_entry(mark: u64, entry: u32) -> Option<u64> {
    if entry == 0 {
        None
    } else {
        Some(mark + 8 * (entry as u64 - 1))
    }
}

/// The file offset of the entry of mark `k` (`1 <= k <= INDEX_SLOTS`).
pub const fn index_entry_offset(k: u64) -> usize {
    OFF_INDEX + 4 * (k as usize - 1)
}

/// `state` bit: an end-of-segment frame has been published.
pub const STATE_SEALED: u64 = 1;
/// `state` bit: a writer gave up a reservation it could not pad (the disk
/// was full); recovery must look at this segment even below `checked`.
pub const STATE_DIRTY: u64 = 2;

/// The static fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// Segment length in bytes, header included.
    pub capacity: u64,
    /// Log position of file offset 0.
    pub base: u64,
    /// Sequence number of the segment within its log.
    pub index: u64,
    /// Features an older reader may ignore.
    pub compat_flags: u32,
    /// Features an older reader must refuse.
    pub incompat_flags: u32,
    /// Creation time in nanoseconds since the Unix epoch.
    pub created_nanos: u64,
    /// The log's identity (see [`OFF_LOG_ID`]); zero for none.
    pub log_id: [u8; 16],
}

/// Why a segment header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the static header.
    Truncated {
        /// How many bytes there were.
        len: u64,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// Written by a newer (or a nonsensical) format version.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// Uses incompatible features this build does not know.
    UnsupportedFeatures {
        /// The unknown bits.
        flags: u32,
    },
    /// The stored CRC does not match the static fields.
    BadChecksum {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the header bytes.
        computed: u32,
    },
    /// A field holds a value no writer produces.
    Invalid {
        /// Which field and why.
        reason: HeaderDefect,
    },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "header truncated at {len} bytes"),
            Self::BadMagic => f.write_str("not a tidelog segment (bad magic)"),
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "format version {found} is not supported (this build reads up to {VERSION})"
                )
            }
            Self::UnsupportedFeatures { flags } => {
                write!(f, "unsupported incompatible feature flags {flags:#x}")
            }
            Self::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            Self::Invalid { reason } => reason.fmt(f),
        }
    }
}

fn put(b: &mut [u8], off: usize, field: &[u8]) {
    b[off..off + field.len()].copy_from_slice(field);
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Checks a segment capacity: a page multiple between the limits.
pub fn check_capacity(capacity: u64) -> Result<(), CapacityDefect> {
    if !capacity.is_multiple_of(PAGE) {
        return Err(CapacityDefect::NotPageMultiple);
    }
    if capacity < MIN_CAPACITY {
        return Err(CapacityDefect::TooSmall);
    }
    if capacity > MAX_CAPACITY {
        return Err(CapacityDefect::TooLarge);
    }
    Ok(())
}

impl SegmentHeader {
    /// A version-1 header for a new segment.
    pub fn new(capacity: u64, base: u64, index: u64, created_nanos: u64) -> Self {
        Self {
            version: VERSION,
            capacity,
            base,
            index,
            compat_flags: 0,
            incompat_flags: 0,
            created_nanos,
            log_id: [0; 16],
        }
    }

    /// The same header, in the log `log_id`.
    pub fn with_log_id(mut self, log_id: [u8; 16]) -> Self {
        self.log_id = log_id;
        self
    }

    /// Log position of the segment's successor.
    pub fn next_base(&self) -> u64 {
        // `decode` guarantees that this cannot overflow.
        self.base.saturating_add(self.capacity)
    }

    /// The static header bytes, checksum included.
    pub fn encode(&self) -> [u8; STATIC_LEN] {
        let mut b = [0u8; STATIC_LEN];
        put(&mut b, OFF_MAGIC, &MAGIC);
        put(&mut b, OFF_VERSION, &self.version.to_le_bytes());
        put(&mut b, OFF_HEADER_LEN, &(HEADER_LEN as u32).to_le_bytes());
        put(&mut b, OFF_CAPACITY, &self.capacity.to_le_bytes());
        put(&mut b, OFF_BASE, &self.base.to_le_bytes());
        put(&mut b, OFF_SEGMENT_INDEX, &self.index.to_le_bytes());
        put(&mut b, OFF_COMPAT_FLAGS, &self.compat_flags.to_le_bytes());
        put(
            &mut b,
            OFF_INCOMPAT_FLAGS,
            &self.incompat_flags.to_le_bytes(),
        );
        put(&mut b, OFF_CREATED_NANOS, &self.created_nanos.to_le_bytes());
        put(&mut b, OFF_LOG_ID, &self.log_id);
        let crc = crc32fast::hash(&b[..OFF_CRC]);
        put(&mut b, OFF_CRC, &crc.to_le_bytes());
        b
    }

    /// Validates and decodes the static header from the start of a segment.
    ///
    /// The checks run in an order that gives the most useful answer: a file
    /// that is not a segment at all is `BadMagic`, one from a newer version is
    /// `UnsupportedVersion` even if its layout differs, and only then does the
    /// checksum decide between a valid header and a damaged one.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < OFF_VERSION || bytes[OFF_MAGIC..OFF_VERSION] != MAGIC {
            if bytes.len() < OFF_VERSION && MAGIC.starts_with(bytes) {
                return Err(HeaderError::Truncated {
                    len: bytes.len() as u64,
                });
            }
            return Err(HeaderError::BadMagic);
        }
        if bytes.len() < OFF_VERSION + 4 {
            return Err(HeaderError::Truncated {
                len: bytes.len() as u64,
            });
        }
        let version = u32_at(bytes, OFF_VERSION);
        if version == 0 || version > VERSION {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        if bytes.len() < STATIC_LEN {
            return Err(HeaderError::Truncated {
                len: bytes.len() as u64,
            });
        }
        let stored = u32_at(bytes, OFF_CRC);
        let computed = crc32fast::hash(&bytes[..OFF_CRC]);
        if stored != computed {
            return Err(HeaderError::BadChecksum { stored, computed });
        }
        let incompat_flags = u32_at(bytes, OFF_INCOMPAT_FLAGS);
        if incompat_flags & !KNOWN_INCOMPAT_FLAGS != 0 {
            return Err(HeaderError::UnsupportedFeatures {
                flags: incompat_flags & !KNOWN_INCOMPAT_FLAGS,
            });
        }
        if u64::from(u32_at(bytes, OFF_HEADER_LEN)) != HEADER_LEN {
            return Err(HeaderError::Invalid {
                reason: HeaderDefect::HeaderLength,
            });
        }
        let capacity = u64_at(bytes, OFF_CAPACITY);
        check_capacity(capacity).map_err(|c| HeaderError::Invalid {
            reason: HeaderDefect::Capacity(c),
        })?;
        let base = u64_at(bytes, OFF_BASE);
        if !base.is_multiple_of(PAGE) {
            return Err(HeaderError::Invalid {
                reason: HeaderDefect::BaseMisaligned,
            });
        }
        match base.checked_add(capacity) {
            Some(end) if end <= MAX_POSITION => {}
            _ => {
                return Err(HeaderError::Invalid {
                    reason: HeaderDefect::BaseOutOfRange,
                })
            }
        }
        Ok(Self {
            version,
            capacity,
            base,
            index: u64_at(bytes, OFF_SEGMENT_INDEX),
            compat_flags: u32_at(bytes, OFF_COMPAT_FLAGS),
            incompat_flags,
            created_nanos: u64_at(bytes, OFF_CREATED_NANOS),
            log_id: bytes[OFF_LOG_ID..OFF_LOG_ID + 16]
                .try_into()
                .unwrap_or([0; 16]),
        })
    }
}

/// The first page of a new segment file: the static header, the tail at
/// the first frame, the `grown` hint at `initial_len`, the boot id (two
/// little-endian words, see [`OFF_BOOT_ID`]), and zeros everywhere else.
pub fn initial_page(header: &SegmentHeader, initial_len: u64, boot_id: [u64; 2]) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_LEN as usize];
    page[..STATIC_LEN].copy_from_slice(&header.encode());
    page[OFF_TAIL..OFF_TAIL + 8].copy_from_slice(&HEADER_LEN.to_le_bytes());
    page[OFF_GROWN..OFF_GROWN + 8].copy_from_slice(&initial_len.to_le_bytes());
    page[OFF_BOOT_ID..OFF_BOOT_ID + 8].copy_from_slice(&boot_id[0].to_le_bytes());
    page[OFF_BOOT_ID + 8..OFF_BOOT_ID + 16].copy_from_slice(&boot_id[1].to_le_bytes());
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader::new(1 << 20, 3 << 20, 3, 1_700_000_000_000_000_000)
    }

    #[test]
    fn index_geometry_fits_the_header() {
        for cap in [MIN_CAPACITY, 1 << 20, 3 << 30, 1 << 30, MAX_CAPACITY] {
            let s = index_shift(cap);
            assert!(s >= 12);
            let marks = cap >> s;
            assert!(marks <= INDEX_SLOTS, "{cap}");
            assert!(index_entry_offset(marks) + 4 <= HEADER_LEN as usize);
            // Halving the stride would need more slots than there are.
            if s > 12 {
                assert!(cap >> (s - 1) > INDEX_SLOTS);
            }
        }
        assert_eq!(index_entry_offset(1), OFF_INDEX);
    }

    #[test]
    fn index_entries_round_trip() {
        let mark = 3 << 21;
        for b in [mark, mark + 8, mark + (1 << 28) + 8, mark + (1 << 34)] {
            let e = encode_index_entry(mark, b).unwrap();
            assert_ne!(e, 0);
            assert_eq!(decode_index_entry(mark, e), Some(b));
        }
        assert_eq!(encode_index_entry(mark, mark - 8), None);
        assert_eq!(encode_index_entry(mark, mark + 4), None);
        assert_eq!(encode_index_entry(mark, mark + (1 << 40)), None);
        assert_eq!(decode_index_entry(mark, 0), None);
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_truncation_is_typed() {
        let bytes = sample().encode();
        for n in 0..STATIC_LEN {
            match SegmentHeader::decode(&bytes[..n]) {
                Err(HeaderError::Truncated { len }) => assert_eq!(len, n as u64),
                other => panic!("prefix of {n} bytes gave {other:?}"),
            }
        }
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let bytes = sample().encode();
        // Bytes 76..80 are reserved: zero when written, ignored when read.
        for bit in 0..(OFF_CRC + 4) * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&b).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let mut b = sample().encode();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&b),
            Err(HeaderError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn unknown_incompat_flags_are_refused() {
        let mut h = sample();
        h.incompat_flags = 4;
        assert_eq!(
            SegmentHeader::decode(&h.encode()),
            Err(HeaderError::UnsupportedFeatures { flags: 4 })
        );
        let mut h = sample();
        h.compat_flags = 4;
        assert!(SegmentHeader::decode(&h.encode()).is_ok());
    }

    #[test]
    fn nonsense_geometry_is_refused() {
        for cap in [0, 4096, MIN_CAPACITY + 1, MAX_CAPACITY + PAGE] {
            let h = SegmentHeader {
                capacity: cap,
                ..sample()
            };
            assert!(matches!(
                SegmentHeader::decode(&h.encode()),
                Err(HeaderError::Invalid { .. })
            ));
        }
        let h = SegmentHeader {
            base: 17,
            ..sample()
        };
        assert!(SegmentHeader::decode(&h.encode()).is_err());
        let h = SegmentHeader {
            base: !(PAGE - 1),
            ..sample()
        };
        assert!(SegmentHeader::decode(&h.encode()).is_err());
    }
}
