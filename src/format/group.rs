//! The group table: the file `groups` in a log directory, where consumer
//! groups (competing consumers: a work queue) keep their dispatch
//! position, members, claims and dead letters. Every process maps it;
//! every field is an aligned little-endian `u64`, accessed only as an
//! atomic.
//!
//! Header: as every table's (see [`table`](super::table)), with `magic`
//! `b"TLGROUPS"`, `slot_len` 16384 (a group block) and `slots` 16.
//!
//! Group block `g` (at `4096 + 16384 * g`):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `state` | 0 free, 1 a live group; anything else is damage |
//! | 8 | 8 | `dispatch` | the next position to hand out, packed with the claim slot that moved it there (see [`dispatch_word`]) |
//! | 16 | 8 | `watermark` | every record before it is acknowledged or dead-lettered, packed with the low byte of `epoch` (see [`watermark_word`]) |
//! | 24 | 8 | `max_deliveries` | deliveries after which a record is dead-lettered, 1 to 2^32 - 2 |
//! | 32 | 8 | `visibility_nanos` | how long a claim may go unacknowledged, > 0 |
//! | 40 | 8 | `created_nanos` | when the group was created (wall clock) |
//! | 48 | 8 | `name_len` | bytes of the name, 1..=64 |
//! | 56 | 8 | `name_crc` | CRC-32 of the name |
//! | 64 | 64 | `name` | UTF-8, zero-filled |
//! | 128 | 8 | `dead_count` | dead letters written so far: the ring's head |
//! | 136 | 8 | `orphaned` | claims handed back so far: members look for claims to take when it changes |
//! | 144 | 8 | `epoch` | bumped when the block's group is created or reset (kept when it is deleted) |
//! | 152 | 104 | reserved | 0 |
//! | 256 | 2048 | `members` | [`MEMBERS`] slots of 64 bytes: `state` (0 free, 1 joined), `pid`, `joined_nanos` |
//! | 2304 | 8192 | `claims` | [`CLAIMS`] slots of 64 bytes: `word`, `start`, `end`, `claimed_nanos`, `deliveries` (see [`deliveries_word`]) |
//! | 10496 | 4096 | `dead` | [`DEAD`] entries of 32 bytes: `position`, `end`, `deliveries`, `dead_nanos` (a ring) |
//! | 14592 | 1792 | reserved | 0 |
//!
//! A claim's `word` packs `generation << 11 | owner << 3 | state` (see
//! [`claim_word`]); its range `start..end` is a run of whole records.
//! Every change of a claim's owner or state is a compare-and-swap of its
//! word that bumps the generation, so that a member whose claim was taken
//! from it cannot acknowledge it after.

// The whole layout is the format's specification (and the fuzzers' and
// tools' vocabulary with `unstable-internals`), used or not by this build.
#![cfg_attr(not(feature = "unstable-internals"), allow(dead_code, unused_imports))]

use super::table::{self, Geometry, HeaderFault, NameFault, NAME_WORDS};
use crate::error::GroupDefect;

pub use super::table::{encode_name, HEADER_LEN, MAX_NAME};

/// The file name of the group table in a log directory.
pub const FILE_NAME: &str = "groups";
/// The first eight bytes of a group table.
pub const MAGIC: [u8; 8] = *b"TLGROUPS";
/// The group table format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of a group block.
pub const BLOCK_LEN: u64 = 16384;
/// Group blocks in a table: the most groups a log can have.
pub const BLOCKS: u32 = 16;
/// The kind and geometry the header states.
pub const GEOMETRY: Geometry = Geometry {
    magic: MAGIC,
    version: VERSION,
    slot_len: BLOCK_LEN as u32,
    slots: BLOCKS,
};
/// Bytes of the whole file.
pub const FILE_LEN: u64 = GEOMETRY.file_len();

/// Group field: the block's state.
pub const G_STATE: u64 = 0;
/// Group field: the packed dispatch word.
pub const G_DISPATCH: u64 = 8;
/// Group field: the low watermark.
pub const G_WATERMARK: u64 = 16;
/// Group field: deliveries before a record is dead-lettered.
pub const G_MAX_DELIVERIES: u64 = 24;
/// Group field: the visibility timeout, in nanoseconds.
pub const G_VISIBILITY: u64 = 32;
/// Group field: when the group was created.
pub const G_CREATED: u64 = 40;
/// Group field: bytes of the name.
pub const G_NAME_LEN: u64 = 48;
/// Group field: CRC-32 of the name.
pub const G_NAME_CRC: u64 = 56;
/// Group field: the name.
pub const G_NAME: u64 = 64;
/// Group field: dead letters written so far.
pub const G_DEAD_COUNT: u64 = 128;
/// Group field: claims handed back so far.
pub const G_ORPHANED: u64 = 136;
/// Group field: the epoch, bumped by every create and reset of the block.
pub const G_EPOCH: u64 = 144;

/// `state`: no group.
pub const STATE_FREE: u64 = 0;
/// `state`: a live group.
pub const STATE_LIVE: u64 = 1;

/// Member slots per group: the most members a group can have at once.
pub const MEMBERS: u32 = 32;
/// Offset of the member slots in a block.
pub const G_MEMBERS: u64 = 256;
/// Bytes of a member slot. A live member holds a lock on these bytes of
/// the file: the kernel drops it when the member's process dies.
pub const MEMBER_LEN: u64 = 64;
/// Member field: 0 free, 1 joined (for people; the lock is what counts).
pub const M_STATE: u64 = 0;
/// Member field: the process id.
pub const M_PID: u64 = 8;
/// Member field: when it joined (wall clock).
pub const M_JOINED: u64 = 16;

/// Claim slots per group: the most batches in flight at once.
pub const CLAIMS: u32 = 128;
/// Offset of the claim slots in a block.
pub const G_CLAIMS: u64 = 2304;
/// Bytes of a claim slot.
pub const CLAIM_LEN: u64 = 64;
/// Claim field: the packed generation, owner and state.
pub const C_WORD: u64 = 0;
/// Claim field: the first position of the claimed records.
pub const C_START: u64 = 8;
/// Claim field: the position after them.
pub const C_END: u64 = 16;
/// Claim field: when it was last handed out (monotonic clock).
pub const C_CLAIMED: u64 = 24;
/// Claim field: how many times the record at `start` has been handed out,
/// tagged with that `start` (see [`deliveries_word`]).
pub const C_DELIVERIES: u64 = 32;

/// Dead-letter entries per group: a ring of the latest ones.
pub const DEAD: u32 = 128;
/// Offset of the dead letters in a block.
pub const G_DEAD: u64 = 10496;
/// Bytes of a dead-letter entry.
pub const DEAD_LEN: u64 = 32;
/// Dead-letter field: the record's position.
pub const D_POSITION: u64 = 0;
/// Dead-letter field: the position after it.
pub const D_END: u64 = 8;
/// Dead-letter field: how many times it was handed out.
pub const D_DELIVERIES: u64 = 16;
/// Dead-letter field: when it was dead-lettered (wall clock).
pub const D_NANOS: u64 = 24;

/// A claim's state: nobody's.
pub const CLAIM_FREE: u64 = 0;
/// A claim's state: reserved by its owner, which is writing its range.
pub const CLAIM_FILLING: u64 = 1;
/// A claim's state: its range written, its owner moving `dispatch` over
/// it. It is a real claim if `dispatch` names this slot and `end` (the
/// compare-and-swap succeeded), or if it was helped to `CLAIMED` by the
/// next member to move `dispatch`.
pub const CLAIM_PENDING: u64 = 2;
/// A claim's state: handed out and not acknowledged. With owner
/// [`NO_OWNER`], waiting to be handed out again.
pub const CLAIM_CLAIMED: u64 = 3;
/// A claim's state: its owner is changing its range or counts.
pub const CLAIM_UPDATING: u64 = 4;
/// A claim's owner: no member (anyone may take it).
pub const NO_OWNER: u64 = 0xFF;

/// Packs a claim word.
pub const fn claim_word(generation: u64, owner: u64, state: u64) -> u64 {
    (generation << 11) | ((owner & 0xFF) << 3) | (state & 7)
}

/// Unpacks a claim word: `(generation, owner, state)`.
pub const fn claim_parts(word: u64) -> (u64, u64, u64) {
    (word >> 11, (word >> 3) & 0xFF, word & 7)
}

/// Validates a claim word's owner and state.
pub fn check_claim(word: u64) -> Result<(u64, u64, u64), GroupDefect> {
    let (g, owner, state) = claim_parts(word);
    if state > CLAIM_UPDATING || (owner >= u64::from(MEMBERS) && owner != NO_OWNER) {
        return Err(GroupDefect::ClaimWord);
    }
    // Without an owner a claim is free or an orphan waiting to be taken:
    // one filling, pending or updating for nobody would hold the
    // watermark back for ever.
    if owner == NO_OWNER && state != CLAIM_FREE && state != CLAIM_CLAIMED {
        return Err(GroupDefect::ClaimWord);
    }
    Ok((g, owner, state))
}

/// Packs the dispatch word: the position (a multiple of 8, below 2^59) and
/// the claim slot that moved it there, if any.
pub const fn dispatch_word(position: u64, slot: Option<u32>) -> u64 {
    let s = match slot {
        Some(s) => s as u64 + 1,
        None => 0,
    };
    ((position >> 3) << 8) | s
}

/// Unpacks the dispatch word: `(position, slot)`.
pub fn dispatch_parts(word: u64) -> Result<(u64, Option<u32>), GroupDefect> {
    let pos = (word >> 8) << 3;
    match word & 0xFF {
        0 => Ok((pos, None)),
        s if s <= u64::from(CLAIMS) => Ok((pos, Some(s as u32 - 1))),
        _ => Err(GroupDefect::Dispatch),
    }
}

/// Packs the `deliveries` field: the count, tagged with the low 32 bits of
/// `start >> 3`. A count whose tag is not its claim's `start` belongs to a
/// start that has moved on (its owner died between storing the new start
/// and the new count): the record now at `start` was handed out once, in
/// its batch.
pub const fn deliveries_word(start: u64, count: u64) -> u64 {
    (((start >> 3) & 0xFFFF_FFFF) << 32) | (count & 0xFFFF_FFFF)
}

/// The deliveries of the record at `start`, from the `deliveries` field.
pub const fn deliveries_count(word: u64, start: u64) -> u64 {
    if word >> 32 == (start >> 3) & 0xFFFF_FFFF {
        word & 0xFFFF_FFFF
    } else {
        1
    }
}

/// Packs the `watermark` field: the position (a multiple of 8, below
/// 2^59) and the low byte of the group's `epoch`. A process that computed
/// a watermark for an earlier epoch (before a reset, or before the group
/// was deleted and the block reused) cannot raise the new one.
pub const fn watermark_word(epoch: u64, position: u64) -> u64 {
    ((epoch & 0xFF) << 56) | ((position >> 3) & ((1 << 56) - 1))
}

/// Unpacks the `watermark` field: `(epoch & 0xFF, position)`.
pub const fn watermark_parts(word: u64) -> (u64, u64) {
    (word >> 56, (word & ((1 << 56) - 1)) << 3)
}

/// The file offset of group block `g`.
pub const fn block_offset(g: u32) -> u64 {
    HEADER_LEN + BLOCK_LEN * g as u64
}

/// The offset of member slot `m` within a block.
pub const fn member_offset(m: u32) -> u64 {
    G_MEMBERS + MEMBER_LEN * m as u64
}

/// The offset of claim slot `c` within a block.
pub const fn claim_offset(c: u32) -> u64 {
    G_CLAIMS + CLAIM_LEN * c as u64
}

/// The offset of dead-letter entry `d` within a block.
pub const fn dead_offset(d: u32) -> u64 {
    G_DEAD + DEAD_LEN * d as u64
}

/// The header page of a new table.
pub fn encode_header() -> Vec<u8> {
    table::encode_header(&GEOMETRY)
}

/// Validates a table's header.
pub fn check_header(bytes: &[u8]) -> Result<(), GroupDefect> {
    table::check_header(bytes, &GEOMETRY).map_err(header_defect)
}

/// The defect a refused header is.
pub fn header_defect(f: HeaderFault) -> GroupDefect {
    match f {
        HeaderFault::Truncated => GroupDefect::Truncated,
        HeaderFault::Magic => GroupDefect::NotAGroupTable,
        HeaderFault::Version => GroupDefect::UnsupportedVersion,
        HeaderFault::Checksum => GroupDefect::HeaderChecksum,
        HeaderFault::Geometry => GroupDefect::Geometry,
    }
}

/// The name a live group holds.
pub fn decode_name(words: &[u64; NAME_WORDS], len: u64, crc: u64) -> Result<String, GroupDefect> {
    table::decode_name(words, len, crc).map_err(|f| match f {
        NameFault::Length => GroupDefect::NameLength,
        NameFault::Checksum => GroupDefect::NameChecksum,
        NameFault::NotUtf8 => GroupDefect::NameNotUtf8,
    })
}

/// Validates a group's settings: `(max_deliveries, visibility_nanos)`.
pub fn check_settings(max_deliveries: u64, visibility_nanos: u64) -> Result<(), GroupDefect> {
    if max_deliveries == 0 || max_deliveries >= 0xFFFF_FFFF || visibility_nanos == 0 {
        return Err(GroupDefect::Settings);
    }
    Ok(())
}

// The block holds its parts, without overlaps, and owners fit the word.
const _: () = {
    assert!(member_offset(MEMBERS) == G_CLAIMS);
    assert!(claim_offset(CLAIMS) == G_DEAD);
    assert!(dead_offset(DEAD) <= BLOCK_LEN);
    assert!(G_NAME + MAX_NAME as u64 <= G_DEAD_COUNT);
    assert!(G_EPOCH + 8 <= G_MEMBERS);
    assert!(block_offset(BLOCKS) == FILE_LEN);
    assert!((MEMBERS as u64) < NO_OWNER);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for (g, o, s) in [
            (0, NO_OWNER, CLAIM_FREE),
            (7, 3, CLAIM_CLAIMED),
            (1 << 40, 31, CLAIM_UPDATING),
        ] {
            assert_eq!(check_claim(claim_word(g, o, s)), Ok((g, o, s)));
        }
        assert_eq!(
            check_claim(claim_word(1, 32, 0)),
            Err(GroupDefect::ClaimWord)
        );
        assert_eq!(
            check_claim(claim_word(1, 3, 5)),
            Err(GroupDefect::ClaimWord)
        );
        for (p, s) in [(0, None), (4096, Some(0)), (1 << 58, Some(CLAIMS - 1))] {
            assert_eq!(dispatch_parts(dispatch_word(p, s)), Ok((p, s)));
        }
        assert_eq!(dispatch_parts(200), Err(GroupDefect::Dispatch));
        let w = deliveries_word(4096, 3);
        assert_eq!(deliveries_count(w, 4096), 3);
        assert_eq!(deliveries_count(w, 4104), 1, "a start that moved on");
        for (e, p) in [(0, 0), (7, 4096), (0x1FF, (1 << 59) - 8)] {
            assert_eq!(watermark_parts(watermark_word(e, p)), (e & 0xFF, p));
        }
        assert_eq!(check_header(&encode_header()), Ok(()));
        assert_eq!(check_settings(0, 1), Err(GroupDefect::Settings));
        assert_eq!(check_settings(5, 1), Ok(()));
    }
}
