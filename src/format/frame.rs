//! Frames: the records, padding and end markers inside a segment.
//!
//! A frame is an 8-byte header word followed by the payload, zero-filled to
//! the next multiple of [`FRAME_ALIGN`]. Frames start on 8-byte boundaries, so
//! the header word is one aligned 64-bit atomic in the mapping.
//!
//! | bytes | field  | meaning                                                         |
//! |------:|--------|-----------------------------------------------------------------|
//! |  0..4 | `meta` | u32 LE: bit 31 in progress, bits 28..=30 kind, bits 0..=27 length |
//! |  4..8 | `crc`  | u32 LE: CRC-32 (IEEE), 0 while the frame is in progress          |
//! | 8..   | payload, then zeros up to the next multiple of 8                          |
//!
//! Kinds: 1 data, 2 padding, 3 end of segment, 4 tagged data. A header word
//! of zero means nothing has been written at that position yet.
//!
//! A data frame's payload is a record's envelope: the record's append time
//! ([`STAMP_LEN`] bytes, u64 LE, nanoseconds since the Unix epoch), then the
//! record's bytes. A tagged data frame's envelope holds a tag
//! ([`TAG_LEN`] bytes, u64 LE) between the time and the record: metadata
//! that travels with the record, published in the same frame (so never
//! without it), and not part of the record's bytes. The frame layer
//! (lengths, CRC, parsing) treats the envelope as opaque bytes; readers
//! split it ([`split_envelope`]).
//!
//! The CRC covers the frame's log position (u64 LE), then `meta` (u32 LE),
//! then the payload (for padding and end frames, no payload). Mixing in the
//! position means a frame copied, replayed or read at the wrong offset never
//! validates, and mixing in `meta` means a flipped length bit is caught.

use super::{FRAME_ALIGN, FRAME_HEADER_LEN};
use crate::error::FrameDefect;

/// The largest payload a frame can describe (28 bits of length).
pub const MAX_PAYLOAD: u32 = (1 << 28) - 1;

/// The largest data frame payload: the largest whose whole frame can still
/// be turned into one padding frame (whose length must be a multiple of
/// 8). The largest record is [`STAMP_LEN`] bytes less.
pub const MAX_RECORD: u32 = MAX_PAYLOAD & !7;

/// Bytes a data frame's payload holds before the record: its append time.
pub const STAMP_LEN: u32 = 8;

/// Bytes a tagged data frame's payload holds between the append time and
/// the record: the tag.
pub const TAG_LEN: u32 = 8;

/// Bytes a data frame's payload holds before the record.
#[inline]
pub const fn envelope_len(tagged: bool) -> u32 {
    if tagged {
        STAMP_LEN + TAG_LEN
    } else {
        STAMP_LEN
    }
}

/// The largest area one padding frame can cover after its header.
pub const MAX_PADDING: u32 = MAX_PAYLOAD & !7;

const IN_PROGRESS: u32 = 1 << 31;
const KIND_SHIFT: u32 = 28;
const KIND_MASK: u32 = 0b111;
const LEN_MASK: u32 = MAX_PAYLOAD;

/// The kinds of frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A record.
    Data = 1,
    /// Skipped by readers: left by a writer that gave up or was unblocked.
    Padding = 2,
    /// The segment ends here; readers continue in the next segment.
    End = 3,
    /// A record with a tag beside it (see [`TAG_LEN`]).
    Tagged = 4,
}

/// What a header word says, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Nothing written yet.
    Empty,
    /// A writer has claimed a data frame of `len` payload bytes and is
    /// filling it.
    InProgress {
        /// Payload length.
        len: u32,
    },
    /// A published record; `crc` must still be checked against the payload.
    Data {
        /// Payload length.
        len: u32,
        /// The stored checksum.
        crc: u32,
        /// A tagged data frame (kind 4): a tag between time and record.
        tagged: bool,
    },
    /// A padding frame of `len` payload bytes, to be skipped.
    Padding {
        /// Length of the skipped area after the header.
        len: u32,
    },
    /// End of segment.
    End,
}

impl Header {
    /// Total bytes the frame occupies, header and alignment included.
    pub fn frame_len(&self) -> u64 {
        match *self {
            Self::Empty | Self::End => FRAME_HEADER_LEN,
            Self::InProgress { len } | Self::Data { len, .. } | Self::Padding { len } => {
                frame_len(len)
            }
        }
    }
}

/// Total bytes a frame with `payload_len` bytes of payload occupies.
#[inline]
pub const fn frame_len(payload_len: u32) -> u64 {
    (FRAME_HEADER_LEN + payload_len as u64 + (FRAME_ALIGN - 1)) & !(FRAME_ALIGN - 1)
}

/// Total bytes the frame of a record of `record_len` bytes occupies:
/// header, append time, record and alignment.
#[inline]
pub const fn record_frame_len(record_len: u32) -> u64 {
    frame_len(record_len + STAMP_LEN)
}

/// Total bytes the frame of a tagged record of `record_len` bytes
/// occupies: header, append time, tag, record and alignment.
#[inline]
pub const fn tagged_frame_len(record_len: u32) -> u64 {
    frame_len(record_len + STAMP_LEN + TAG_LEN)
}

/// A data frame's payload split into the record's append time and the
/// record; `None` if the payload is too short to hold a time (no writer
/// makes such a frame).
#[inline]
pub fn split_record(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (stamp, record) = payload.split_first_chunk::<{ STAMP_LEN as usize }>()?;
    Some((u64::from_le_bytes(*stamp), record))
}

/// A data frame's payload split into the append time, the tag (tagged
/// frames only) and the record; `None` if the payload is too short for its
/// envelope (no writer makes such a frame).
#[inline]
pub fn split_envelope(payload: &[u8], tagged: bool) -> Option<(u64, Option<u64>, &[u8])> {
    let (stamp, rest) = split_record(payload)?;
    if !tagged {
        return Some((stamp, None, rest));
    }
    let (tag, record) = rest.split_first_chunk::<{ TAG_LEN as usize }>()?;
    Some((stamp, Some(u64::from_le_bytes(*tag)), record))
}

#[inline]
const fn meta(kind: Kind, len: u32) -> u32 {
    ((kind as u32) << KIND_SHIFT) | (len & LEN_MASK)
}

#[inline]
const fn word(meta: u32, crc: u32) -> u64 {
    meta as u64 | ((crc as u64) << 32)
}

/// CRC of a frame: position, meta word, payload.
///
/// Two updates (crc32fast folds the 64-byte payload of a typical record
/// with carry-less multiplies; copying it behind the prefix to make one
/// 76-byte update measured twice as slow, 27 ns against 14 ns, because
/// of the partial final block). The hasher is cloned from one made once:
/// `Hasher::new` detects the CPU's features on every call (0.6 ns of the
/// 14).
#[inline]
pub fn crc(position: u64, meta: u32, payload: &[u8]) -> u32 {
    let mut h = hasher();
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&position.to_le_bytes());
    prefix[8..].copy_from_slice(&meta.to_le_bytes());
    h.update(&prefix);
    h.update(payload);
    h.finalize()
}

/// A fresh CRC-32 hasher, without a CPU feature detection per call.
#[inline]
fn hasher() -> crc32fast::Hasher {
    static TEMPLATE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(crc32fast::Hasher::new).clone()
}

/// The header word of a published data frame at `position` whose payload
/// is the append time `stamp` then `record` (the CRC of the two without
/// building the envelope).
#[inline]
pub fn record_word(position: u64, stamp: u64, record: &[u8]) -> u64 {
    debug_assert!(record.len() + STAMP_LEN as usize <= MAX_PAYLOAD as usize);
    let m = meta(Kind::Data, record.len() as u32 + STAMP_LEN);
    // Three updates: crc32fast hashes inputs under 16 bytes on a short
    // path and folds longer ones with carry-less multiplies, whose set-up
    // a 20-byte prefix paid for (a 64-byte record's append measured 20 %
    // slower that way).
    let mut h = hasher();
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&position.to_le_bytes());
    prefix[8..].copy_from_slice(&m.to_le_bytes());
    h.update(&prefix);
    h.update(&stamp.to_le_bytes());
    h.update(record);
    word(m, h.finalize())
}

/// The header word of a published tagged data frame at `position` whose
/// payload is the append time `stamp`, then `tag`, then `record`.
#[inline]
pub fn tagged_record_word(position: u64, stamp: u64, tag: u64, record: &[u8]) -> u64 {
    debug_assert!(record.len() + (STAMP_LEN + TAG_LEN) as usize <= MAX_PAYLOAD as usize);
    let m = meta(Kind::Tagged, record.len() as u32 + STAMP_LEN + TAG_LEN);
    let mut h = hasher();
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&position.to_le_bytes());
    prefix[8..].copy_from_slice(&m.to_le_bytes());
    h.update(&prefix);
    let mut envelope = [0u8; 16];
    envelope[..8].copy_from_slice(&stamp.to_le_bytes());
    envelope[8..].copy_from_slice(&tag.to_le_bytes());
    h.update(&envelope);
    h.update(record);
    word(m, h.finalize())
}

/// The header word of a published data frame at `position`.
///
/// `payload.len()` must not exceed [`MAX_PAYLOAD`]; callers check the record
/// size limit first, which is never larger.
#[inline]
pub fn data_word(position: u64, payload: &[u8]) -> u64 {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let m = meta(Kind::Data, payload.len() as u32);
    word(m, crc(position, m, payload))
}

#[cfg(any(test, feature = "unstable-internals"))]
/// The header word of a published tagged data frame at `position` with
/// the whole `payload` (time, tag, record) given.
#[inline]
pub fn tagged_data_word(position: u64, payload: &[u8]) -> u64 {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let m = meta(Kind::Tagged, payload.len() as u32);
    word(m, crc(position, m, payload))
}

/// The header word a writer stores first, to claim a data frame of `len`
/// payload bytes. Tagged or not, a frame being written is kind 1: the kind
/// is settled when it is published.
#[inline]
pub const fn in_progress_word(len: u32) -> u64 {
    word(IN_PROGRESS | meta(Kind::Data, len), 0)
}

/// The header word of a padding frame of `len` bytes after its header.
#[inline]
pub fn padding_word(position: u64, len: u32) -> u64 {
    let m = meta(Kind::Padding, len);
    word(m, crc(position, m, &[]))
}

/// The header word of an end-of-segment frame.
#[inline]
pub fn end_word(position: u64) -> u64 {
    let m = meta(Kind::End, 0);
    word(m, crc(position, m, &[]))
}

/// Decodes a header word found at `position`.
///
/// Only the header is checked here; a `Data` frame's payload CRC is checked
/// by [`check_data`] once the payload is in bounds.
pub fn decode(word: u64, position: u64) -> Result<Header, FrameDefect> {
    if word == 0 {
        return Ok(Header::Empty);
    }
    let m = word as u32;
    let stored = (word >> 32) as u32;
    let len = m & LEN_MASK;
    let kind = (m >> KIND_SHIFT) & KIND_MASK;
    if m & IN_PROGRESS != 0 {
        if kind != Kind::Data as u32 || stored != 0 {
            return Err(FrameDefect::MalformedInProgress);
        }
        if len < STAMP_LEN {
            return Err(FrameDefect::MissingTime);
        }
        return Ok(Header::InProgress { len });
    }
    match kind {
        // Every record's payload starts with its append time.
        k if k == Kind::Data as u32 && len < STAMP_LEN => Err(FrameDefect::MissingTime),
        k if k == Kind::Data as u32 => Ok(Header::Data {
            len,
            crc: stored,
            tagged: false,
        }),
        // A tagged record's payload holds its time and its tag.
        k if k == Kind::Tagged as u32 && len < STAMP_LEN + TAG_LEN => Err(FrameDefect::MissingTag),
        k if k == Kind::Tagged as u32 => Ok(Header::Data {
            len,
            crc: stored,
            tagged: true,
        }),
        k if k == Kind::Padding as u32 => {
            if stored != crc(position, m, &[]) || !(len as u64).is_multiple_of(FRAME_ALIGN) {
                return Err(FrameDefect::MalformedPadding);
            }
            Ok(Header::Padding { len })
        }
        k if k == Kind::End as u32 => {
            if len != 0 || stored != crc(position, m, &[]) {
                return Err(FrameDefect::MalformedEnd);
            }
            Ok(Header::End)
        }
        _ => Err(FrameDefect::UnknownKind),
    }
}

/// Checks a data frame's payload against the CRC its header carries.
///
/// Returns the computed CRC on mismatch.
#[inline]
pub fn check_data(
    position: u64,
    len: u32,
    stored: u32,
    tagged: bool,
    payload: &[u8],
) -> Result<(), u32> {
    let kind = if tagged { Kind::Tagged } else { Kind::Data };
    let computed = crc(position, meta(kind, len), payload);
    if computed == stored {
        Ok(())
    } else {
        Err(computed)
    }
}

#[cfg(any(test, feature = "unstable-internals"))]
/// A frame parsed out of a byte buffer by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// What the header says.
    pub header: Header,
    /// The payload: the record for data frames, empty for the others.
    pub payload: &'a [u8],
    /// Bytes the frame occupies in the buffer.
    pub len: u64,
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Why [`parse`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends inside the frame.
    Truncated,
    /// The header word is invalid.
    Malformed(FrameDefect),
    /// The payload does not match its CRC.
    Checksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The alignment bytes after the payload are not zero.
    NonZeroAlignment,
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Parses the complete frame at the start of `buf`, which sits at log
/// position `position`. Empty and in-progress headers parse as themselves
/// with an empty payload; their `len` is the header alone for `Empty` and the
/// claimed frame for `InProgress`.
pub fn parse(buf: &[u8], position: u64) -> Result<Parsed<'_>, ParseError> {
    let Some(head) = buf.get(..FRAME_HEADER_LEN as usize) else {
        return Err(ParseError::Truncated);
    };
    let mut w = [0u8; 8];
    w.copy_from_slice(head);
    let header = decode(u64::from_le_bytes(w), position).map_err(ParseError::Malformed)?;
    let total = header.frame_len();
    if (buf.len() as u64) < total {
        return Err(ParseError::Truncated);
    }
    let total_usize = total as usize;
    let payload = match header {
        Header::Data {
            len,
            crc: stored,
            tagged,
        } => {
            let end = FRAME_HEADER_LEN as usize + len as usize;
            let payload = &buf[FRAME_HEADER_LEN as usize..end];
            check_data(position, len, stored, tagged, payload)
                .map_err(|computed| ParseError::Checksum { stored, computed })?;
            if buf[end..total_usize].iter().any(|&b| b != 0) {
                return Err(ParseError::NonZeroAlignment);
            }
            payload
        }
        _ => &[],
    };
    Ok(Parsed {
        header,
        payload,
        len: total,
    })
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Appends the canonical bytes of a data frame at `position` to `out`.
pub fn encode_data(position: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&data_word(position, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len() as u32) as usize, 0);
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Appends the canonical bytes of the data frame of `record`, appended at
/// `stamp` (ns since the Unix epoch), at `position` to `out`.
pub fn encode_record(position: u64, stamp: u64, record: &[u8], out: &mut Vec<u8>) {
    let mut payload = stamp.to_le_bytes().to_vec();
    payload.extend_from_slice(record);
    encode_data(position, &payload, out);
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Appends the canonical bytes of the tagged data frame of `record`,
/// appended at `stamp` with `tag`, at `position` to `out`.
pub fn encode_tagged_record(position: u64, stamp: u64, tag: u64, record: &[u8], out: &mut Vec<u8>) {
    let mut payload = stamp.to_le_bytes().to_vec();
    payload.extend_from_slice(&tag.to_le_bytes());
    payload.extend_from_slice(record);
    let start = out.len();
    out.extend_from_slice(&tagged_data_word(position, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out.resize(start + frame_len(payload.len() as u32) as usize, 0);
}

#[cfg(any(test, feature = "unstable-internals"))]
/// Appends the canonical bytes of a frame as [`parse`] returned it, so that
/// `encode(parse(b)) == b[..len]` for every buffer that parses. Padding
/// payload is not preserved by `parse` and comes out as zeros.
pub fn encode(position: u64, parsed: &Parsed<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    match parsed.header {
        Header::Empty => out.extend_from_slice(&[0; 8]),
        Header::InProgress { len } => {
            out.extend_from_slice(&in_progress_word(len).to_le_bytes());
            out.resize(start + frame_len(len) as usize, 0);
        }
        Header::Data { tagged: false, .. } => encode_data(position, parsed.payload, out),
        Header::Data { tagged: true, .. } => {
            out.extend_from_slice(&tagged_data_word(position, parsed.payload).to_le_bytes());
            out.extend_from_slice(parsed.payload);
            out.resize(start + parsed.len as usize, 0);
        }
        Header::Padding { len } => {
            out.extend_from_slice(&padding_word(position, len).to_le_bytes());
            out.resize(start + frame_len(len) as usize, 0);
        }
        Header::End => out.extend_from_slice(&end_word(position).to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_aligned() {
        assert_eq!(frame_len(0), 8);
        assert_eq!(frame_len(1), 16);
        assert_eq!(frame_len(8), 16);
        assert_eq!(frame_len(64), 72);
        assert_eq!(frame_len(MAX_PAYLOAD), 8 + (1 << 28));
    }

    #[test]
    fn records_carry_their_time() {
        assert_eq!(record_frame_len(64), 80);
        assert_eq!(record_frame_len(0), 16);
        for len in [0usize, 1, 7, 8, 64, 100] {
            let record: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let stamp = 1_764_000_000_123_456_789u64 + len as u64;
            let mut buf = Vec::new();
            encode_record(8192, stamp, &record, &mut buf);
            assert_eq!(buf.len() as u64, record_frame_len(len as u32));
            assert_eq!(
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                record_word(8192, stamp, &record)
            );
            let p = parse(&buf, 8192).unwrap();
            assert_eq!(split_record(p.payload), Some((stamp, &record[..])));
        }
        assert_eq!(split_record(&[1, 2, 3]), None);
    }

    #[test]
    fn tagged_records_carry_time_and_tag() {
        assert_eq!(tagged_frame_len(64), 88);
        assert_eq!(tagged_frame_len(0), 24);
        for len in [0usize, 1, 7, 8, 64, 100] {
            let record: Vec<u8> = (0..len).map(|i| (i * 11 + 5) as u8).collect();
            let stamp = 1_764_000_000_123_456_789u64 + len as u64;
            let tag = 0xDEAD_BEEF_0000_0000u64 + len as u64;
            let mut buf = Vec::new();
            encode_tagged_record(8192, stamp, tag, &record, &mut buf);
            assert_eq!(buf.len() as u64, tagged_frame_len(len as u32));
            assert_eq!(
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                tagged_record_word(8192, stamp, tag, &record)
            );
            let p = parse(&buf, 8192).unwrap();
            assert!(matches!(p.header, Header::Data { tagged: true, .. }));
            assert_eq!(
                split_envelope(p.payload, true),
                Some((stamp, Some(tag), &record[..]))
            );
            let mut again = Vec::new();
            encode(8192, &p, &mut again);
            assert_eq!(again, buf);
            // The same bytes as an untagged frame do not validate: the
            // kind is under the CRC.
            let mut plain = buf.clone();
            plain[3] = (plain[3] & 0x8F) | 0x10;
            assert!(matches!(
                parse(&plain, 8192),
                Err(ParseError::Checksum { .. })
            ));
        }
        assert_eq!(split_envelope(&[0; 12], true), None);
        assert_eq!(
            decode(tagged_data_word(64, &[0; 12]), 64),
            Err(FrameDefect::MissingTag)
        );
    }

    #[test]
    fn data_round_trip() {
        for len in [8usize, 9, 15, 16, 63, 64, 65, 4096] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut buf = Vec::new();
            encode_data(4096, &payload, &mut buf);
            let p = parse(&buf, 4096).unwrap();
            assert_eq!(p.payload, &payload[..]);
            assert_eq!(p.len, buf.len() as u64);
            let mut again = Vec::new();
            encode(4096, &p, &mut again);
            assert_eq!(again, buf);
        }
    }

    #[test]
    fn crc_is_the_same_whichever_way_it_is_fed() {
        // Against the plain definition: CRC-32 of position, meta and
        // payload, in that order, in one piece.
        for len in [0usize, 1, 15, 16, 63, 64, 115, 116, 117, 128, 1000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let meta = meta(Kind::Data, len as u32);
            let mut whole = 0x0123_4567_89AB_CDEFu64.to_le_bytes().to_vec();
            whole.extend_from_slice(&meta.to_le_bytes());
            whole.extend_from_slice(&payload);
            assert_eq!(
                crc(0x0123_4567_89AB_CDEF, meta, &payload),
                crc32fast::hash(&whole),
                "payload of {len} bytes"
            );
        }
    }

    #[test]
    fn position_is_part_of_the_checksum() {
        let mut buf = Vec::new();
        encode_data(4096, b"hello, world", &mut buf);
        assert!(matches!(
            parse(&buf, 4104),
            Err(ParseError::Checksum { .. })
        ));
    }

    #[test]
    fn every_bit_flip_in_a_data_frame_is_caught() {
        let mut buf = Vec::new();
        encode_data(8192, b"the quick brown fox", &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            if let Ok(p) = parse(&b, 8192) {
                assert!(
                    !matches!(p.header, Header::Data { .. }),
                    "flip of bit {bit} still parsed as data"
                );
            }
        }
    }

    #[test]
    fn control_frames_round_trip() {
        for (w, h) in [
            (padding_word(64, 16), Header::Padding { len: 16 }),
            (padding_word(64, 0), Header::Padding { len: 0 }),
            (end_word(64), Header::End),
            (in_progress_word(13), Header::InProgress { len: 13 }),
            (0, Header::Empty),
        ] {
            assert_eq!(decode(w, 64), Ok(h));
        }
        // Too short for a record's append time, published or not.
        assert_eq!(
            decode(in_progress_word(5), 64),
            Err(FrameDefect::MissingTime)
        );
        assert_eq!(
            decode(data_word(64, b"short"), 64),
            Err(FrameDefect::MissingTime)
        );
        assert!(decode(padding_word(64, 16), 72).is_err());
        assert!(decode(end_word(64), 72).is_err());
        assert!(decode(padding_word(64, 12), 64).is_err());
        assert!(decode(u64::from(7u32 << 28), 0).is_err());
    }
}
