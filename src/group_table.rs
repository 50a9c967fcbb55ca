//! The group table of a log, mapped: consumer groups' dispatch positions,
//! members, claims and dead letters (layout in
//! [`format::group`](crate::format::group)). This module is the protocol
//! on the shared words; [`group`](crate::group) drives it with readers.
//!
//! **Claiming new records** (one compare-and-swap on `dispatch`):
//! 1. the member takes a free claim slot (`FREE -> FILLING`, its own);
//! 2. it walks up to a batch of records from the dispatch position `d`,
//!    verifying them, to the position `e` after the last;
//! 3. it writes `start = d`, `end = e` and marks the slot `PENDING`;
//! 4. if `dispatch` names a slot `p` that is still `PENDING` with
//!    `end == d`, it helps it to `CLAIMED` (see below);
//! 5. it swaps `dispatch` from `(d, p)` to `(e, its slot)`, and marks its
//!    slot `CLAIMED`; if the swap fails, the slot goes back to `FILLING`
//!    and the member tries again from the new `d`.
//!
//! A member killed between 3 and 5 leaves a `PENDING` slot that is a real
//! claim if and only if its swap succeeded: then `dispatch` still names
//! it, with its `end`, or the next member to move `dispatch` helped it to
//! `CLAIMED` first (step 4). So whoever cleans up after a dead member knows
//! which: a real claim is handed out again, a failed attempt is freed.
//! No record is lost between `dispatch` and the claim slots.
//!
//! **Liveness.** A member holds a lock on its member slot's bytes, through
//! a file description of its own; the kernel drops it when the process
//! dies. Members probe it (`F_OFD_GETLK`, which takes nothing) for the
//! owners of claims when they scan, every few milliseconds, so a dead
//! member's claims move to the living within milliseconds, not after the
//! visibility timeout.
//!
//! **Redelivery.** A claim whose owner died, or that stayed
//! unacknowledged past the visibility timeout, or that its owner released,
//! becomes an orphan: `CLAIMED` with no owner. A member that takes it
//! counts a delivery of its first record and gets that record alone;
//! acknowledging it moves `start` past it and orphans the rest again. A
//! record handed out more than `max_deliveries` times is written to the
//! dead-letter ring and skipped. Every step is a swap of the claim word
//! that bumps its generation, and the fields are written only by the
//! member that owns the word in the state `UPDATING` (or `FILLING`), so a
//! member whose claim was taken from it can never write after losing it,
//! and its acknowledgement fails.
//!
//! **The watermark** is the least of `dispatch` and the `start` of every
//! claim that may be real (`PENDING`, `CLAIMED`, `UPDATING`), loaded in
//! that order: a claim with a start below the `dispatch` loaded existed
//! already, in one of those states, until it was acknowledged. It only
//! ever grows (a compare-and-swap in the group's epoch, see `raise_watermark`),
//! and is what retention and listings see.

use std::sync::atomic::Ordering;

use crate::dir::LogDir;
use crate::error::GroupDefect;
use crate::format::group::{
    block_offset, check_claim, check_settings, claim_offset, claim_parts, claim_word, dead_offset,
    decode_name, deliveries_count, deliveries_word, dispatch_parts, dispatch_word, encode_name,
    header_defect, member_offset, watermark_parts, watermark_word, BLOCKS, BLOCK_LEN, CLAIMS,
    CLAIM_CLAIMED, CLAIM_FILLING, CLAIM_FREE, CLAIM_LEN, CLAIM_PENDING, CLAIM_UPDATING, C_CLAIMED,
    C_DELIVERIES, C_END, C_START, C_WORD, DEAD, D_DELIVERIES, D_END, D_NANOS, D_POSITION,
    FILE_NAME, GEOMETRY, G_CREATED, G_DEAD_COUNT, G_DISPATCH, G_EPOCH, G_MAX_DELIVERIES, G_NAME,
    G_NAME_CRC, G_NAME_LEN, G_ORPHANED, G_STATE, G_VISIBILITY, G_WATERMARK, MAX_NAME, MEMBERS,
    MEMBER_LEN, M_JOINED, M_PID, M_STATE, NO_OWNER, STATE_FREE, STATE_LIVE,
};
use crate::format::FRAME_ALIGN;
use crate::sys::calls::{mono_ns_coarse, wall_ns_coarse};
use crate::table::{Hold, TableFile};
use crate::{Error, Result};

/// A live group, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupRec {
    pub(crate) block: u32,
    pub(crate) name: String,
    pub(crate) dispatch: u64,
    pub(crate) watermark: u64,
    pub(crate) max_deliveries: u64,
    pub(crate) visibility_nanos: u64,
    pub(crate) created_nanos: u64,
    pub(crate) dead_count: u64,
}

/// A claim slot, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimRec {
    pub(crate) word: u64,
    pub(crate) generation: u64,
    pub(crate) owner: u64,
    pub(crate) state: u64,
}

/// What a member gets when it takes an orphan: the claim, now its own in
/// the state `UPDATING`, with its range and the deliveries so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) generation: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) deliveries: u64,
}

/// How a swap of `dispatch` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatched {
    /// The claim is the member's, `CLAIMED` at this generation.
    Claimed(u64),
    /// Another member moved `dispatch` first: the slot is the member's,
    /// `FILLING` again at this generation.
    Raced(u64),
    /// The swap succeeded, but the claim was handed on before the member
    /// could mark it (it overran the visibility timeout in between): the
    /// records will be delivered to someone, the slot is no longer its.
    HandedOn,
}

/// A dead letter, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeadRec {
    pub(crate) position: u64,
    pub(crate) end: u64,
    pub(crate) deliveries: u64,
    pub(crate) nanos: u64,
}

/// An open group table.
#[derive(Debug)]
pub(crate) struct GroupTable {
    file: TableFile,
}

impl GroupTable {
    /// Writes the table to stable storage.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    /// Opens the table of the log in `dir`, creating it if `create` and it
    /// does not exist; `Ok(None)` if it does not exist and not `create`.
    pub(crate) fn open(dir: &LogDir, mode: u32, create: bool) -> Result<Option<GroupTable>> {
        let path = dir.join(FILE_NAME);
        let file = TableFile::open(dir, FILE_NAME, &GEOMETRY, mode, create, |f| {
            Error::CorruptGroupTable {
                path: path.clone(),
                group: None,
                reason: header_defect(f),
            }
        })?;
        Ok(file.map(|file| GroupTable { file }))
    }

    /// Opens the existing table for listing only (loads and lock probes):
    /// for a file system or files this process may not write.
    pub(crate) fn open_read_only(dir: &LogDir) -> Result<Option<GroupTable>> {
        let path = dir.join(FILE_NAME);
        let file =
            TableFile::open_read_only(dir, FILE_NAME, &GEOMETRY, |f| Error::CorruptGroupTable {
                path: path.clone(),
                group: None,
                reason: header_defect(f),
            })?;
        Ok(file.map(|file| GroupTable { file }))
    }

    pub(crate) fn corrupt(&self, block: u32, reason: GroupDefect) -> Error {
        Error::CorruptGroupTable {
            path: self.file.path(),
            group: Some(block),
            reason,
        }
    }

    #[inline]
    fn load(&self, block: u32, field: u64) -> u64 {
        self.file.load(block_offset(block) + field)
    }

    #[inline]
    fn store(&self, block: u32, field: u64, v: u64) {
        self.file.store(block_offset(block) + field, v);
    }

    #[inline]
    fn cas(&self, block: u32, field: u64, current: u64, new: u64) -> bool {
        self.file
            .cas(block_offset(block) + field, current, new)
            .is_ok()
    }

    #[inline]
    fn claim_field(&self, block: u32, c: u32, field: u64) -> u64 {
        self.load(block, claim_offset(c) + field)
    }

    #[inline]
    fn set_claim_field(&self, block: u32, c: u32, field: u64, v: u64) {
        self.store(block, claim_offset(c) + field, v);
    }

    #[inline]
    fn cas_claim(&self, block: u32, c: u32, current: u64, new: u64) -> bool {
        self.cas(block, claim_offset(c) + C_WORD, current, new)
    }

    /// The live group in `block`, `None` if the block is free.
    pub(crate) fn read_group(&self, block: u32) -> Result<Option<GroupRec>> {
        match self.load(block, G_STATE) {
            STATE_FREE => return Ok(None),
            STATE_LIVE => {}
            _ => return Err(self.corrupt(block, GroupDefect::GroupState)),
        }
        let mut words = [0u64; MAX_NAME / 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.load(block, G_NAME + 8 * i as u64);
        }
        let name = decode_name(
            &words,
            self.load(block, G_NAME_LEN),
            self.load(block, G_NAME_CRC),
        )
        .map_err(|r| self.corrupt(block, r))?;
        let max_deliveries = self.load(block, G_MAX_DELIVERIES);
        let visibility_nanos = self.load(block, G_VISIBILITY);
        check_settings(max_deliveries, visibility_nanos).map_err(|r| self.corrupt(block, r))?;
        Ok(Some(GroupRec {
            block,
            name,
            dispatch: self.dispatch(block)?.0,
            watermark: watermark_parts(self.load(block, G_WATERMARK)).1,
            max_deliveries,
            visibility_nanos,
            created_nanos: self.load(block, G_CREATED),
            dead_count: self.load(block, G_DEAD_COUNT),
        }))
    }

    /// Every live group, by block.
    pub(crate) fn list(&self) -> Result<Vec<GroupRec>> {
        let mut out = Vec::new();
        for block in 0..BLOCKS {
            if let Some(g) = self.read_group(block)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// The live group named `name`.
    pub(crate) fn find(&self, name: &str) -> Result<Option<GroupRec>> {
        Ok(self.list()?.into_iter().find(|g| g.name == name))
    }

    /// The group named `name`, created at `start` with these settings if
    /// there is none (a group's settings are the ones it was created with).
    pub(crate) fn find_or_create(
        &self,
        name: &str,
        start: u64,
        max_deliveries: u64,
        visibility_nanos: u64,
    ) -> Result<GroupRec> {
        let (words, len, crc) = encode_name(name).ok_or_else(|| Error::InvalidGroupName {
            name: name.to_owned(),
        })?;
        let _lock = self.file.lock()?;
        if let Some(g) = self.find(name)? {
            return Ok(g);
        }
        let Some(block) = (0..BLOCKS).find(|&b| self.load(b, G_STATE) == STATE_FREE) else {
            return Err(Error::TooManyGroups { max: BLOCKS });
        };
        // A freed block is zeroed by its deletion; zeroed again here in
        // case that deletion died half-way.
        self.clear(block);
        for (i, w) in words.iter().enumerate() {
            self.store(block, G_NAME + 8 * i as u64, *w);
        }
        self.store(block, G_NAME_LEN, len);
        self.store(block, G_NAME_CRC, crc);
        let epoch = self.load(block, G_EPOCH).wrapping_add(1);
        self.store(block, G_EPOCH, epoch);
        self.store(block, G_DISPATCH, dispatch_word(start, None));
        self.store(block, G_WATERMARK, watermark_word(epoch, start));
        self.store(block, G_MAX_DELIVERIES, max_deliveries);
        self.store(block, G_VISIBILITY, visibility_nanos);
        self.store(block, G_CREATED, wall_ns_coarse());
        // Last: until now the block was free, whatever else it held.
        self.store(block, G_STATE, STATE_LIVE);
        self.read_group(block)?
            .ok_or_else(|| self.corrupt(block, GroupDefect::GroupState))
    }

    /// Zeroes every word of `block` but its state and its epoch.
    fn clear(&self, block: u32) {
        // Claim generations survive, bumped: a batch from before (its
        // member gone with the group) never matches a claim of the group
        // made next in this block.
        let generations: Vec<u64> = (0..CLAIMS)
            .map(|c| claim_parts(self.claim_field(block, c, C_WORD)).0)
            .collect();
        let mut off = 8;
        while off < BLOCK_LEN {
            if off != G_EPOCH {
                self.store(block, off, 0);
            }
            off += 8;
        }
        for (c, g) in (0..CLAIMS).zip(generations) {
            let free = claim_word(g.wrapping_add(1), NO_OWNER, CLAIM_FREE);
            self.store(block, claim_offset(c) + C_WORD, free);
        }
    }

    fn member_range(block: u32, m: u32) -> (u64, u64) {
        (block_offset(block) + member_offset(m), MEMBER_LEN)
    }

    /// Whether member `m` of `block` is alive: a probe of its lock.
    pub(crate) fn member_alive(&self, block: u32, m: u32) -> Result<bool> {
        let (start, len) = Self::member_range(block, m);
        self.file.is_held(start, len)
    }

    /// Joins the group `name` (in `block`): takes the lock of a member slot
    /// nobody holds, hands the claims a dead holder of that slot left back
    /// to the group, and returns the slot and the hold.
    pub(crate) fn join(&self, dir: &LogDir, block: u32, name: &str) -> Result<(u32, Hold)> {
        let _lock = self.file.lock()?;
        match self.read_group(block)? {
            Some(g) if g.name == name => {}
            _ => {
                return Err(Error::GroupNotFound {
                    name: name.to_owned(),
                })
            }
        }
        for m in 0..MEMBERS {
            let (start, len) = Self::member_range(block, m);
            let Some(hold) = self.file.hold(dir, start, len)? else {
                continue;
            };
            for c in 0..CLAIMS {
                let claim = self.claim(block, c)?;
                if claim.owner == u64::from(m) && claim.state != CLAIM_FREE {
                    self.reap(block, c, claim)?;
                }
            }
            let base = member_offset(m);
            self.store(block, base + M_PID, u64::from(std::process::id()));
            self.store(block, base + M_JOINED, wall_ns_coarse());
            self.store(block, base + M_STATE, 1);
            return Ok((m, hold));
        }
        Err(Error::TooManyMembers {
            name: name.to_owned(),
            max: MEMBERS,
        })
    }

    /// Leaves: hands every claim of member `m` back to the group at once
    /// (instead of at the next scan after the hold is dropped).
    pub(crate) fn leave(&self, block: u32, m: u32) {
        for c in 0..CLAIMS {
            if let Ok(claim) = self.claim(block, c) {
                if claim.owner == u64::from(m) && claim.state != CLAIM_FREE {
                    let _ = self.reap(block, c, claim);
                }
            }
        }
        self.store(block, member_offset(m) + M_STATE, 0);
    }

    /// The live members of `block`: slot, pid and time joined.
    pub(crate) fn members(&self, block: u32) -> Result<Vec<(u32, u64, u64)>> {
        let mut out = Vec::new();
        for m in 0..MEMBERS {
            if self.member_alive(block, m)? {
                let base = member_offset(m);
                out.push((
                    m,
                    self.load(block, base + M_PID),
                    self.load(block, base + M_JOINED),
                ));
            }
        }
        Ok(out)
    }

    /// The dispatch position and the claim slot that moved it there.
    pub(crate) fn dispatch(&self, block: u32) -> Result<(u64, Option<u32>, u64)> {
        let w = self.load(block, G_DISPATCH);
        let (pos, slot) = dispatch_parts(w).map_err(|r| self.corrupt(block, r))?;
        Ok((pos, slot, w))
    }

    /// Claim slot `c`.
    #[inline]
    pub(crate) fn claim(&self, block: u32, c: u32) -> Result<ClaimRec> {
        let word = self.claim_field(block, c, C_WORD);
        let (generation, owner, state) = check_claim(word).map_err(|r| self.corrupt(block, r))?;
        Ok(ClaimRec {
            word,
            generation,
            owner,
            state,
        })
    }

    /// `start..end` of claim slot `c`, checked to be a non-empty, aligned
    /// range.
    pub(crate) fn range(&self, block: u32, c: u32) -> Result<(u64, u64)> {
        let start = self.claim_field(block, c, C_START);
        let end = self.claim_field(block, c, C_END);
        if start >= end
            || !start.is_multiple_of(FRAME_ALIGN)
            || !end.is_multiple_of(FRAME_ALIGN)
            || end >> 59 != 0
        {
            return Err(self.corrupt(block, GroupDefect::ClaimRange));
        }
        Ok((start, end))
    }

    /// How many claims have been handed back so far: a member scans for
    /// orphans when this changes.
    #[inline]
    pub(crate) fn orphaned(&self, block: u32) -> u64 {
        self.load(block, G_ORPHANED)
    }

    fn note_orphan(&self, block: u32) {
        if let Some(w) = self.file.word(block_offset(block) + G_ORPHANED) {
            w.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Takes a free claim slot for member `me`, trying `preferred` first:
    /// the slot, in the state `FILLING`, and its generation.
    pub(crate) fn reserve(
        &self,
        block: u32,
        me: u32,
        preferred: impl Iterator<Item = u32>,
    ) -> Result<Option<(u32, u64)>> {
        for c in preferred.chain(0..CLAIMS) {
            let claim = self.claim(block, c)?;
            if claim.state != CLAIM_FREE {
                continue;
            }
            let generation = claim.generation + 1;
            let new = claim_word(generation, u64::from(me), CLAIM_FILLING);
            if self.cas_claim(block, c, claim.word, new) {
                return Ok(Some((c, generation)));
            }
        }
        Ok(None)
    }

    /// Writes the range `d..e` into member `me`'s `FILLING` slot `c` and
    /// marks it `PENDING`. Returns its generation.
    pub(crate) fn propose(
        &self,
        block: u32,
        me: u32,
        c: u32,
        generation: u64,
        d: u64,
        e: u64,
    ) -> Result<u64> {
        let now = mono_ns_coarse();
        self.set_claim_field(block, c, C_START, d);
        self.set_claim_field(block, c, C_END, e);
        self.set_claim_field(block, c, C_DELIVERIES, deliveries_word(d, 1));
        self.set_claim_field(block, c, C_CLAIMED, now);
        let me = u64::from(me);
        let from = claim_word(generation, me, CLAIM_FILLING);
        let to = claim_word(generation + 1, me, CLAIM_PENDING);
        if !self.cas_claim(block, c, from, to) {
            // Only this member changes its own FILLING slot.
            return Err(self.corrupt(block, GroupDefect::ClaimWord));
        }
        Ok(generation + 1)
    }

    /// Step 4: if `dispatch` (at `d`) names slot `p` and `p` is still
    /// `PENDING` with `end == d`, its swap succeeded: mark it `CLAIMED`,
    /// owner unchanged, before `dispatch` moves on and forgets it.
    pub(crate) fn help(&self, block: u32, p: u32, d: u64) -> Result<()> {
        let claim = self.claim(block, p)?;
        if claim.state == CLAIM_PENDING && self.claim_field(block, p, C_END) == d {
            let new = claim_word(claim.generation + 1, claim.owner, CLAIM_CLAIMED);
            let _ = self.cas_claim(block, p, claim.word, new);
        }
        Ok(())
    }

    /// Step 5: swaps `dispatch` from `current` to `e`, naming slot `c`
    /// (member `me`'s, `PENDING` at `generation`), and marks the slot
    /// `CLAIMED`.
    pub(crate) fn commit_dispatch(
        &self,
        block: u32,
        me: u32,
        c: u32,
        generation: u64,
        current: u64,
        e: u64,
    ) -> Result<Dispatched> {
        let me = u64::from(me);
        let pending = claim_word(generation, me, CLAIM_PENDING);
        if self.cas(block, G_DISPATCH, current, dispatch_word(e, Some(c))) {
            let claimed = claim_word(generation + 1, me, CLAIM_CLAIMED);
            if self.cas_claim(block, c, pending, claimed) {
                return Ok(Dispatched::Claimed(generation + 1));
            }
            // The next member to move `dispatch` helped it already; and if
            // this member was stalled past the visibility timeout since,
            // the claim may even have been handed on.
            let now = self.claim(block, c)?;
            if now.owner == me && now.state == CLAIM_CLAIMED {
                return Ok(Dispatched::Claimed(now.generation));
            }
            return Ok(Dispatched::HandedOn);
        }
        let filling = claim_word(generation + 1, me, CLAIM_FILLING);
        if !self.cas_claim(block, c, pending, filling) {
            return Err(self.corrupt(block, GroupDefect::ClaimWord));
        }
        Ok(Dispatched::Raced(generation + 1))
    }

    /// Gives member `me`'s `FILLING` slot back.
    pub(crate) fn unreserve(&self, block: u32, me: u32, c: u32, generation: u64) {
        let from = claim_word(generation, u64::from(me), CLAIM_FILLING);
        let _ = self.cas_claim(
            block,
            c,
            from,
            claim_word(generation + 1, NO_OWNER, CLAIM_FREE),
        );
    }

    /// Cleans up claim `c`, whose owner is dead (or is joining in its
    /// slot): a failed attempt is freed, a real claim becomes an orphan.
    /// Returns the orphan's word, or `None` if it was freed or changed
    /// meanwhile.
    pub(crate) fn reap(&self, block: u32, c: u32, claim: ClaimRec) -> Result<Option<ClaimRec>> {
        let free = claim_word(claim.generation + 1, NO_OWNER, CLAIM_FREE);
        let orphan = claim_word(claim.generation + 1, NO_OWNER, CLAIM_CLAIMED);
        let real = match claim.state {
            CLAIM_FREE => return Ok(None),
            CLAIM_FILLING => false,
            CLAIM_PENDING => {
                let (d, named, _) = self.dispatch(block)?;
                named == Some(c) && self.claim_field(block, c, C_END) == d
            }
            _ => true,
        };
        if !real {
            let _ = self.cas_claim(block, c, claim.word, free);
            return Ok(None);
        }
        if !self.cas_claim(block, c, claim.word, orphan) {
            return Ok(None);
        }
        self.note_orphan(block);
        Ok(Some(ClaimRec {
            word: orphan,
            generation: claim.generation + 1,
            owner: NO_OWNER,
            state: CLAIM_CLAIMED,
        }))
    }

    /// Hands claim `c` (owned by a living member, `CLAIMED`, loaded as
    /// `claim`) back to the group if it has been out longer than
    /// `visibility_nanos` at `now`.
    pub(crate) fn expire(
        &self,
        block: u32,
        c: u32,
        claim: ClaimRec,
        now: u64,
        visibility_nanos: u64,
    ) -> Option<ClaimRec> {
        let since = self.claim_field(block, c, C_CLAIMED);
        if claim.state != CLAIM_CLAIMED || now.saturating_sub(since) <= visibility_nanos {
            return None;
        }
        let orphan = claim_word(claim.generation + 1, NO_OWNER, CLAIM_CLAIMED);
        if !self.cas_claim(block, c, claim.word, orphan) {
            return None;
        }
        self.note_orphan(block);
        Some(ClaimRec {
            word: orphan,
            generation: claim.generation + 1,
            owner: NO_OWNER,
            state: CLAIM_CLAIMED,
        })
    }

    /// The start of claim `c` if it may be a real claim, for the watermark.
    pub(crate) fn holds_back(&self, block: u32, c: u32, claim: ClaimRec) -> Option<u64> {
        matches!(claim.state, CLAIM_PENDING | CLAIM_CLAIMED | CLAIM_UPDATING)
            .then(|| self.claim_field(block, c, C_START))
    }

    /// The group's epoch: load it before `dispatch` when computing a
    /// watermark, and raise with it.
    #[inline]
    pub(crate) fn epoch(&self, block: u32) -> u64 {
        self.load(block, G_EPOCH)
    }

    /// Raises the stored watermark to `low`, computed in `epoch` (never
    /// lowers it, and does nothing if the group was reset or recreated
    /// since); returns the watermark after.
    pub(crate) fn raise_watermark(&self, block: u32, epoch: u64, low: u64) -> u64 {
        let Some(w) = self.file.word(block_offset(block) + G_WATERMARK) else {
            return watermark_parts(self.load(block, G_WATERMARK)).1;
        };
        let mut current = w.load(Ordering::Acquire);
        loop {
            let (e, at) = watermark_parts(current);
            if e != epoch & 0xFF || low <= at {
                return at;
            }
            match w.compare_exchange(
                current,
                watermark_word(epoch, low),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return low,
                Err(now) => current = now,
            }
        }
    }

    /// Computes the group's low watermark now, raises the stored one to it,
    /// and returns the lower of the two: what retention may trust (a
    /// stored word higher than what the claims say is not believed).
    pub(crate) fn watermark(&self, block: u32) -> Result<u64> {
        let epoch = self.epoch(block);
        let (mut low, _, _) = self.dispatch(block)?;
        for c in 0..CLAIMS {
            let claim = self.claim(block, c)?;
            if let Some(start) = self.holds_back(block, c, claim) {
                low = low.min(start);
            }
        }
        Ok(self.raise_watermark(block, epoch, low).min(low))
    }

    /// Claims in flight and orphans waiting, for listings.
    pub(crate) fn claim_counts(&self, block: u32) -> Result<(u32, u32)> {
        let (mut in_flight, mut orphans) = (0, 0);
        for c in 0..CLAIMS {
            let claim = self.claim(block, c)?;
            if matches!(claim.state, CLAIM_CLAIMED | CLAIM_UPDATING | CLAIM_PENDING) {
                in_flight += 1;
                if claim.owner == NO_OWNER {
                    orphans += 1;
                }
            }
        }
        Ok((in_flight, orphans))
    }

    /// Takes the orphan `c` (loaded as `claim`) for member `me`: `UPDATING`
    /// and its own, with its range and deliveries so far. `None` if another
    /// member took it first.
    pub(crate) fn take(
        &self,
        block: u32,
        me: u32,
        c: u32,
        claim: ClaimRec,
    ) -> Result<Option<Taken>> {
        if claim.state != CLAIM_CLAIMED || claim.owner != NO_OWNER {
            return Ok(None);
        }
        let generation = claim.generation + 1;
        if !self.cas_claim(
            block,
            c,
            claim.word,
            claim_word(generation, u64::from(me), CLAIM_UPDATING),
        ) {
            return Ok(None);
        }
        match self.range(block, c) {
            Ok((start, end)) => Ok(Some(Taken {
                generation,
                start,
                end,
                deliveries: self.deliveries(block, c, start),
            })),
            Err(e) => {
                // Nothing real can be in a range that is not one: free it,
                // so that no member trips on it again.
                self.finish(block, me, c, generation, None);
                Err(e)
            }
        }
    }

    /// How many times the record at `start` (claim `c`'s) was handed out.
    pub(crate) fn deliveries(&self, block: u32, c: u32, start: u64) -> u64 {
        deliveries_count(self.claim_field(block, c, C_DELIVERIES), start)
    }

    /// While member `me` holds `c` `UPDATING`: counts `count` deliveries
    /// of the record at `start` (the claim's), handed out `now`.
    pub(crate) fn set_deliveries(&self, block: u32, c: u32, start: u64, count: u64, now: u64) {
        self.set_claim_field(block, c, C_CLAIMED, now);
        self.set_claim_field(block, c, C_DELIVERIES, deliveries_word(start, count));
    }

    /// While member `me` holds `c` `UPDATING`: moves its start to `start`,
    /// whose record was handed out `count` times. The start first: a crash
    /// between the two stores leaves a count tagged with the old start,
    /// which reads as one delivery (the batch's) of the new.
    pub(crate) fn advance(&self, block: u32, c: u32, start: u64, count: u64) {
        self.set_claim_field(block, c, C_START, start);
        self.set_claim_field(block, c, C_DELIVERIES, deliveries_word(start, count));
    }

    /// Ends member `me`'s `UPDATING` of `c` at `generation`: to `CLAIMED` by
    /// `owner` (`Some(me)` to keep it, `Some(NO_OWNER)` to orphan it), or
    /// free (`None`). Returns the new generation.
    pub(crate) fn finish(
        &self,
        block: u32,
        me: u32,
        c: u32,
        generation: u64,
        owner: Option<u64>,
    ) -> u64 {
        let from = claim_word(generation, u64::from(me), CLAIM_UPDATING);
        let to = match owner {
            Some(o) => claim_word(generation + 1, o, CLAIM_CLAIMED),
            None => claim_word(generation + 1, NO_OWNER, CLAIM_FREE),
        };
        let _ = self.cas_claim(block, c, from, to);
        if owner == Some(NO_OWNER) {
            self.note_orphan(block);
        }
        generation + 1
    }

    /// Acknowledges member `me`'s claim `c` at `generation` up to `end`:
    /// frees it if `end` is its end, else moves its start to `end` and hands
    /// the rest back. `false` if the claim is no longer the member's.
    pub(crate) fn ack(
        &self,
        block: u32,
        me: u32,
        c: u32,
        generation: u64,
        end: u64,
        slot_end: u64,
    ) -> bool {
        let now = mono_ns_coarse();
        let mine = claim_word(generation, u64::from(me), CLAIM_CLAIMED);
        if end >= slot_end {
            return self.cas_claim(
                block,
                c,
                mine,
                claim_word(generation + 1, NO_OWNER, CLAIM_FREE),
            );
        }
        let updating = claim_word(generation + 1, u64::from(me), CLAIM_UPDATING);
        if !self.cas_claim(block, c, mine, updating) {
            return false;
        }
        // The records after `end` were handed out once, in the batch.
        self.advance(block, c, end, 1);
        self.set_claim_field(block, c, C_CLAIMED, now);
        self.finish(block, me, c, generation + 1, Some(NO_OWNER));
        true
    }

    /// Hands member `me`'s claim `c` at `generation` back to the group for
    /// redelivery. `false` if the claim is no longer the member's.
    pub(crate) fn release(&self, block: u32, me: u32, c: u32, generation: u64) -> bool {
        let mine = claim_word(generation, u64::from(me), CLAIM_CLAIMED);
        let orphan = claim_word(generation + 1, NO_OWNER, CLAIM_CLAIMED);
        if !self.cas_claim(block, c, mine, orphan) {
            return false;
        }
        self.note_orphan(block);
        true
    }

    /// Appends a dead letter to the ring of `block`.
    pub(crate) fn dead_letter(&self, block: u32, position: u64, end: u64, deliveries: u64) {
        let Some(count) = self.file.word(block_offset(block) + G_DEAD_COUNT) else {
            return;
        };
        let i = count.fetch_add(1, Ordering::AcqRel);
        let base = dead_offset((i % u64::from(DEAD)) as u32);
        self.store(block, base + D_NANOS, wall_ns_coarse());
        self.store(block, base + D_DELIVERIES, deliveries);
        self.store(block, base + D_END, end);
        self.store(block, base + D_POSITION, position);
    }

    /// The dead letters the ring of `block` still holds, oldest first.
    pub(crate) fn dead_letters(&self, block: u32) -> Vec<DeadRec> {
        let count = self.load(block, G_DEAD_COUNT);
        let first = count.saturating_sub(u64::from(DEAD));
        (first..count)
            .map(|i| {
                let base = dead_offset((i % u64::from(DEAD)) as u32);
                DeadRec {
                    position: self.load(block, base + D_POSITION),
                    end: self.load(block, base + D_END),
                    deliveries: self.load(block, base + D_DELIVERIES),
                    nanos: self.load(block, base + D_NANOS),
                }
            })
            .collect()
    }

    fn no_members(&self, block: u32, name: &str) -> Result<()> {
        for m in 0..MEMBERS {
            if self.member_alive(block, m)? {
                return Err(Error::GroupBusy {
                    name: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<GroupRec> {
        self.find(name)?.ok_or_else(|| Error::GroupNotFound {
            name: name.to_owned(),
        })
    }

    /// Deletes the group `name`, which must have no members running: its
    /// block is free at once (the state word first), and cleared after.
    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let _lock = self.file.lock()?;
        let g = self.existing(name)?;
        self.no_members(g.block, name)?;
        self.store(g.block, G_STATE, STATE_FREE);
        self.clear(g.block);
        Ok(())
    }

    /// Moves the group `name`, which must have no members running, to
    /// `position`: every claim is dropped, and the watermark set there.
    pub(crate) fn reset(&self, name: &str, position: u64) -> Result<()> {
        let _lock = self.file.lock()?;
        let g = self.existing(name)?;
        self.no_members(g.block, name)?;
        // No member runs: every claim is freed whatever it holds (a
        // damaged word too, so that a reset never stops half-way), with its
        // generation bumped so that a batch from before is refused.
        for c in 0..CLAIMS {
            let word = self.claim_field(g.block, c, C_WORD);
            let generation = claim_parts(word).0;
            let free = claim_word(generation.wrapping_add(1), NO_OWNER, CLAIM_FREE);
            let _ = self.cas_claim(g.block, c, word, free);
            for field in [C_START, C_END, C_CLAIMED, C_DELIVERIES] {
                self.set_claim_field(g.block, c, field, 0);
            }
        }
        self.store(g.block, G_DISPATCH, dispatch_word(position, None));
        // The epoch after `dispatch` and just before the watermark: whoever
        // loads the new epoch then loads the new `dispatch`, so no
        // watermark computed from the old one is raised in the new epoch.
        let epoch = self.epoch(g.block).wrapping_add(1);
        self.store(g.block, G_EPOCH, epoch);
        self.store(g.block, G_WATERMARK, watermark_word(epoch, position));
        Ok(())
    }
}

/// Claim slots of a group, for callers that lay out preferences.
pub(crate) const CLAIM_SLOTS: u32 = CLAIMS;
/// Claim slots a member tries first: its own stripe, so that members
/// rarely touch each other's slots.
pub(crate) const STRIPE: u32 = CLAIMS / MEMBERS;
const _: () = assert!(CLAIM_LEN == 64 && STRIPE * MEMBERS == CLAIM_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (tempfile::TempDir, LogDir, GroupTable) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir::open(tmp.path()).unwrap();
        let t = GroupTable::open(&dir, 0o600, true).unwrap().unwrap();
        (tmp, dir, t)
    }

    #[test]
    fn a_watermark_computed_before_a_reset_or_a_recreation_is_not_raised_after() {
        let (_tmp, _dir, t) = table();
        let g = t.find_or_create("g", 4096, 5, 1_000).unwrap();
        let block = g.block;
        // A process computes a watermark far ahead, then stalls...
        t.store(block, G_DISPATCH, dispatch_word(1 << 30, None));
        let stale_epoch = t.epoch(block);
        // ...the group is reset to the start meanwhile...
        t.reset("g", 4096).unwrap();
        assert_eq!(t.raise_watermark(block, stale_epoch, 1 << 30), 4096);
        assert_eq!(t.read_group(block).unwrap().unwrap().watermark, 4096);
        // ...or deleted and the block reused by a new group.
        let epoch = t.epoch(block);
        t.delete("g").unwrap();
        let h = t.find_or_create("h", 8192, 5, 1_000).unwrap();
        assert_eq!(h.block, block);
        assert_eq!(t.raise_watermark(block, epoch, 1 << 30), 8192);
        assert_eq!(t.watermark(block).unwrap(), 8192);
        // In its own epoch, it rises, and never falls.
        let now = t.epoch(block);
        assert_eq!(t.raise_watermark(block, now, 16384), 16384);
        assert_eq!(t.raise_watermark(block, now, 8192), 16384);
    }

    #[test]
    fn a_dead_members_pending_claim_is_real_exactly_when_dispatch_moved_over_it() {
        let (_tmp, _dir, t) = table();
        let block = t.find_or_create("g", 4096, 5, 1_000).unwrap().block;
        // Member 0 proposes 4096..4200 in slot 0 but dies before its swap:
        // freed. Member 1 proposes and swaps, then dies before marking its
        // claim: handed back.
        let (c0, g0) = t.reserve(block, 0, 0..4).unwrap().unwrap();
        let g0 = t.propose(block, 0, c0, g0, 4096, 4200).unwrap();
        let (c1, g1) = t.reserve(block, 1, 4..8).unwrap().unwrap();
        let g1 = t.propose(block, 1, c1, g1, 4096, 4304).unwrap();
        let (_, _, word) = t.dispatch(block).unwrap();
        assert!(t.cas(block, G_DISPATCH, word, dispatch_word(4304, Some(c1))));
        let _ = (g0, g1);
        assert_eq!(
            t.reap(block, c0, t.claim(block, c0).unwrap()).unwrap(),
            None
        );
        assert_eq!(t.claim(block, c0).unwrap().state, CLAIM_FREE);
        let orphan = t.reap(block, c1, t.claim(block, c1).unwrap()).unwrap();
        assert_eq!(
            orphan.map(|o| (o.owner, o.state)),
            Some((NO_OWNER, CLAIM_CLAIMED))
        );
        assert_eq!(t.range(block, c1).unwrap(), (4096, 4304));
        assert_eq!(t.watermark(block).unwrap(), 4096);
    }
}
