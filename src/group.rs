//! Consumer groups: competing consumers that share the records of a log,
//! each record going to one member at a time, with acknowledgements,
//! redelivery and dead letters (the protocol is in
//! [`group_table`](crate::group_table)).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::consumer::{system_time, StartAt};
use crate::error::GroupDefect;
use crate::group_table::{ClaimRec, Dispatched, GroupTable, Taken, STRIPE};
use crate::read::{Reader, Record, WaitStrategy};
use crate::store::Store;
use crate::sys::calls::mono_ns_coarse;
use crate::table::Hold;
use crate::{Error, Position, Result};

/// How often a member looks over the group's claims for dead members'
/// and overdue ones, at most (also whenever a claim is handed back).
const SCAN_EVERY: u64 = 2_000_000;
/// How long a waiting member waits for records before it looks again.
const WAIT_SLICE: Duration = Duration::from_millis(5);
/// A reader walks forward to a position at most this far ahead; farther,
/// it is opened there (from the segment's boundary index).
const WALK_LIMIT: u64 = 1 << 20;

/// How a member joins a consumer group. The group's own settings
/// (`max_deliveries`, `visibility_timeout` and where it starts) are the
/// ones given by the member that created it; later members' are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOptions {
    start: StartAt,
    batch: u32,
    visibility_timeout: Duration,
    max_deliveries: u32,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            start: StartAt::Beginning,
            batch: 64,
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

impl GroupOptions {
    /// The defaults: a new group starts at the log's oldest record; batches
    /// of up to 64 records; a visibility timeout of 30 s; 5 deliveries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where a new group starts (the default is the oldest record).
    pub fn start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// The most records this member claims at once (default 64): a claim
    /// is one compare-and-swap, so larger batches cost less per record,
    /// and more is redelivered if the member dies holding one.
    pub fn batch(mut self, records: u32) -> Self {
        self.batch = records;
        self
    }

    /// How long a batch may stay unacknowledged before it is handed to
    /// another member (default 30 s). A member whose process dies loses its
    /// batches at once, whatever this says.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Deliveries after which a record goes to the group's dead letters
    /// instead of being handed out again (default 5; at most 2^32 - 2).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries;
        self
    }

    pub(crate) fn start_at(&self) -> StartAt {
        self.start
    }

    pub(crate) fn check(&self) -> Result<(u64, u64)> {
        let nanos = u64::try_from(self.visibility_timeout.as_nanos()).unwrap_or(u64::MAX);
        if self.batch == 0
            || self.max_deliveries == 0
            || self.max_deliveries == u32::MAX
            || nanos == 0
        {
            return Err(Error::InvalidOptions {
                reason: crate::OptionsDefect::GroupSettings,
            });
        }
        Ok((u64::from(self.max_deliveries), nanos))
    }
}

/// A member of a consumer group: processes that join the same group share
/// its records, each record going to one member at a time. Obtained from
/// [`Log::group_member`](crate::Log::group_member).
///
/// A member [`claim`](Self::claim)s a batch (a run of up to 64 records,
/// taken with one compare-and-swap on the group's dispatch position),
/// reads it with [`next_record`](Self::next_record), and
/// [`ack`](Self::ack)s it.
///
/// **At least once.** A batch whose member dies (the kernel drops the
/// member's lock, and the others notice within milliseconds), that stays
/// unacknowledged past the visibility timeout, that is
/// [`release`](Self::release)d or dropped unacknowledged, is delivered
/// again, to any member. A member that was only slow (stopped, swapped
/// out) and acknowledges after its batch was handed on gets
/// [`Error::ClaimLost`]: its acknowledgement counts for nothing, so a
/// record is never acknowledged twice, but its effects may have happened
/// twice. Make processing idempotent, or keep it well inside the timeout.
///
/// A member stopped (`SIGSTOP`, a debugger) in the few stores it makes
/// while it hands out a redelivery keeps that one batch until it resumes:
/// its state then is one no other member may change.
///
/// **Redelivery, one record at a time.** A batch handed out again is
/// handed out one record at a time, in order, each acknowledged before the
/// next: so a record that kills its member (a poison record) is the one
/// whose deliveries count, and after
/// [`max_deliveries`](GroupOptions::max_deliveries) it goes to the group's
/// dead letters ([`Log::dead_letters`](crate::Log::dead_letters)) and is
/// skipped.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// let mut appender = log.appender()?;
/// for i in 0..100u32 {
///     appender.append(&i.to_le_bytes())?;
/// }
/// let mut worker = log.group_member("resize")?;
/// let mut seen = 0;
/// while let Some(mut batch) = worker.claim()? {
///     while let Some(record) = worker.next_record(&mut batch)? {
///         seen += 1; // process it
///     }
///     worker.ack(batch)?;
/// }
/// assert_eq!(seen, 100);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct GroupMember {
    log: Arc<Store>,
    table: Arc<GroupTable>,
    block: u32,
    me: u32,
    name: String,
    batch: u32,
    max_deliveries: u64,
    visibility_nanos: u64,
    /// Walks ahead of the dispatch position, to find where a batch ends.
    scout: Reader,
    /// Reads the batches handed out.
    reader: Reader,
    /// A claim slot reserved (`FILLING`) for the next batch, and its
    /// generation.
    reserved: Option<(u32, u64)>,
    last_scan: u64,
    orphaned_seen: u64,
    _hold: Hold,
}

/// A batch of records claimed by a [`GroupMember`]: read it with
/// [`GroupMember::next_record`], then [`GroupMember::ack`] it. Dropping it
/// unacknowledged hands it back to the group at once, for redelivery.
#[derive(Debug)]
pub struct Batch {
    table: Arc<GroupTable>,
    block: u32,
    me: u32,
    slot: u32,
    generation: u64,
    start: u64,
    /// The end of this batch; for a redelivery (one record), unknown
    /// (`None`) until the record is read.
    end: Option<u64>,
    /// The end of the claim the batch is part of.
    claim_end: u64,
    /// The next position to read.
    next: u64,
    records: u32,
    deliveries: u32,
    settled: bool,
}

impl Batch {
    /// The position of its first record.
    pub fn start(&self) -> Position {
        Position::from(self.start)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records as usize
    }

    /// Whether it holds no record (never: a member never hands out an
    /// empty batch).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// How many times its first record has been handed out, this time
    /// included: 1 for a first delivery.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Whether it was handed out before (to this member or another), so
    /// that some of its effects may have happened already.
    pub fn is_redelivery(&self) -> bool {
        self.deliveries > 1
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.settled {
            self.table
                .release(self.block, self.me, self.slot, self.generation);
        }
    }
}

/// A consumer group, as [`Log::groups`](crate::Log::groups) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Every record before this is acknowledged or dead-lettered: where
    /// retention stops for the group.
    pub watermark: Position,
    /// The next position to hand out.
    pub dispatched: Position,
    /// Records after the watermark.
    pub lag_records: u64,
    /// Bytes of the log after the watermark.
    pub lag_bytes: u64,
    /// Members running now: process id and when each joined.
    pub members: Vec<(u32, SystemTime)>,
    /// Batches handed out and not acknowledged, orphans included.
    pub in_flight: u32,
    /// Batches waiting to be handed out again.
    pub orphans: u32,
    /// Records dead-lettered since the group was created.
    pub dead_letters: u64,
    /// Deliveries after which a record is dead-lettered.
    pub max_deliveries: u32,
    /// How long a batch may stay unacknowledged.
    pub visibility_timeout: Duration,
    /// When the group was created.
    pub created: SystemTime,
}

/// A record that was delivered `max_deliveries` times without being
/// acknowledged, as [`Log::dead_letters`](crate::Log::dead_letters) lists
/// it. The record itself stays in the log, readable at its position, until
/// retention deletes its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record's position.
    pub position: Position,
    /// The position after it (after the damage, for a damaged record).
    pub end: Position,
    /// How many times it was handed out.
    pub deliveries: u32,
    /// When it was dead-lettered.
    pub at: SystemTime,
}

impl DeadLetter {
    pub(crate) fn from_parts(position: u64, end: u64, deliveries: u64, nanos: u64) -> Self {
        Self {
            position: Position::from(position),
            end: Position::from(end),
            deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
            at: system_time(nanos),
        }
    }
}

impl GroupMember {
    /// Joins the group in `block`: takes a member slot and opens a reader
    /// at the dispatch position.
    pub(crate) fn join(
        log: Arc<Store>,
        table: Arc<GroupTable>,
        block: u32,
        name: &str,
        opts: &GroupOptions,
    ) -> Result<GroupMember> {
        let (me, hold) = table.join(&log.dir, block, name)?;
        let rec = table
            .read_group(block)?
            .ok_or_else(|| Error::GroupNotFound {
                name: name.to_owned(),
            })?;
        let scout = Reader::at(&log, Position::from(rec.dispatch))?;
        Ok(GroupMember {
            reader: scout.clone(),
            scout,
            log,
            table,
            block,
            me,
            name: name.to_owned(),
            batch: opts.batch,
            max_deliveries: rec.max_deliveries,
            visibility_nanos: rec.visibility_nanos,
            reserved: None,
            last_scan: 0,
            orphaned_seen: 0,
            _hold: hold,
        })
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.name
    }

    /// Sets how [`claim_timeout`](Self::claim_timeout) and
    /// [`claim_blocking`](Self::claim_blocking) wait for new records.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.scout.set_wait_strategy(wait);
        self.reader.set_wait_strategy(wait);
    }

    /// Builder form of [`set_wait_strategy`](Self::set_wait_strategy).
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.set_wait_strategy(wait);
        self
    }

    /// Claims the next batch: a batch to be delivered again if there is
    /// one, else up to a batch of new records. `None` if there is nothing
    /// to claim now. Never blocks.
    ///
    /// # Errors
    /// [`Error::TooManyClaims`] if this group's members hold 128 batches
    /// unacknowledged; the errors of [`Reader::try_next`] for the records
    /// walked over; [`Error::CorruptGroupTable`].
    pub fn claim(&mut self) -> Result<Option<Batch>> {
        self.claim_until(None, false)
    }

    /// Claims the next batch, waiting up to `timeout` for records to
    /// claim. `None` if the time ran out.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub fn claim_timeout(&mut self, timeout: Duration) -> Result<Option<Batch>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.claim_until(Some(deadline), true),
            // Longer than the clock can count: as long as it takes.
            None => self.claim_blocking().map(Some),
        }
    }

    /// Claims the next batch, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub fn claim_blocking(&mut self) -> Result<Batch> {
        loop {
            if let Some(b) = self.claim_until(None, true)? {
                return Ok(b);
            }
        }
    }

    fn claim_until(&mut self, deadline: Option<Instant>, wait: bool) -> Result<Option<Batch>> {
        loop {
            let now = mono_ns_coarse();
            let orphaned = self.table.orphaned(self.block);
            if orphaned != self.orphaned_seen || now.saturating_sub(self.last_scan) >= SCAN_EVERY {
                self.orphaned_seen = orphaned;
                self.last_scan = now;
                if let Some(b) = self.scan(now)? {
                    return Ok(Some(b));
                }
            }
            let slice = if wait {
                let next = Instant::now() + WAIT_SLICE;
                Some(deadline.map_or(next, |d| d.min(next)))
            } else {
                None
            };
            if let Some(b) = self.dispatch(slice)? {
                return Ok(Some(b));
            }
            match deadline {
                // Waiting until a deadline: look again until it passes.
                Some(d) if wait && Instant::now() < d => {}
                // Not waiting, the deadline passed, or one slice of
                // `claim_blocking`, which calls again.
                _ => return Ok(None),
            }
        }
    }

    /// Looks over the claims: hands back those of dead members and those
    /// overdue, raises the watermark, and takes the first orphan found.
    fn scan(&mut self, now: u64) -> Result<Option<Batch>> {
        let epoch = self.table.epoch(self.block);
        let (mut low, named, _) = self.table.dispatch(self.block)?;
        // A member stopped between its dispatch swap and marking its claim
        // leaves it PENDING, which does not expire; on a log where nobody
        // dispatches again, nobody else would help it to CLAIMED.
        if let Some(p) = named {
            self.table.help(self.block, p, low)?;
        }
        // Only "alive" is remembered over the scan: a member seen dead may
        // be replaced by a new one in its slot at any moment, so an owner
        // is found dead by a probe made after its claim's word was loaded
        // (a joiner reaps the slot's old claims, changing their words,
        // before it makes new ones).
        let mut alive = [false; crate::format::group::MEMBERS as usize];
        let mut taken = None;
        for c in 0..crate::group_table::CLAIM_SLOTS {
            if let Err(e) = self.scan_slot(c, now, &mut alive, &mut low, &mut taken) {
                // A batch taken already is handed out: dropping it would
                // count a delivery nobody saw. The watermark waits for a
                // scan that sees every claim.
                return match taken {
                    Some(b) => Ok(Some(b)),
                    None => Err(e),
                };
            }
        }
        self.table.raise_watermark(self.block, epoch, low);
        Ok(taken)
    }

    /// One claim slot of [`scan`](Self::scan): hands it back if its owner
    /// died or overran, lowers `low` to it if it may be real, and takes it
    /// into `taken` if it is an orphan and nothing was taken yet.
    fn scan_slot(
        &mut self,
        c: u32,
        now: u64,
        alive: &mut [bool; crate::format::group::MEMBERS as usize],
        low: &mut u64,
        taken: &mut Option<Batch>,
    ) -> Result<()> {
        let me = u64::from(self.me);
        let claim = self.table.claim(self.block, c)?;
        if claim.state == crate::format::group::CLAIM_FREE {
            return Ok(());
        }
        if claim.owner != me && claim.owner != crate::format::group::NO_OWNER {
            let o = claim.owner as usize;
            let live = alive[o] || self.table.member_alive(self.block, o as u32)?;
            alive[o] = live;
            if live {
                self.table
                    .expire(self.block, c, claim, now, self.visibility_nanos);
            } else {
                self.table.reap(self.block, c, claim)?;
            }
        }
        // Loaded again after any change: a claim that may be real holds
        // the watermark back at its start; one seen free was
        // acknowledged (see `group_table`, "The watermark").
        let claim = self.table.claim(self.block, c)?;
        if let Some(start) = self.table.holds_back(self.block, c, claim) {
            *low = (*low).min(start);
        }
        // Dead-lettering a claim's first record hands the rest back:
        // take it again, until a record is handed out or none is left
        // (bounded, for a table that keeps changing under the scan).
        let mut claim = claim;
        for _ in 0..4096 {
            if taken.is_some() {
                break;
            }
            *taken = self.redeliver(c, claim)?;
            let again = self.table.claim(self.block, c)?;
            if taken.is_some()
                || again.generation == claim.generation
                || again.owner != crate::format::group::NO_OWNER
            {
                break;
            }
            claim = again;
        }
        Ok(())
    }

    /// Takes the orphan `c` (loaded as `claim`) if it is one, and hands out
    /// its first record; or, past `max_deliveries`, dead-letters that record
    /// and hands the rest back. Whatever reads the log is done before the
    /// claim is taken, so that the claim is `UPDATING` only for a few
    /// stores.
    fn redeliver(&mut self, c: u32, claim: ClaimRec) -> Result<Option<Batch>> {
        use crate::format::group::{CLAIM_CLAIMED, NO_OWNER};
        if claim.state != CLAIM_CLAIMED || claim.owner != NO_OWNER {
            return Ok(None);
        }
        let Ok((start, _)) = self.table.range(self.block, c) else {
            // `take` frees a range that is not one, and reports it.
            self.table.take(self.block, self.me, c, claim)?;
            return Ok(None);
        };
        let count = self.table.deliveries(self.block, c, start);
        let deliveries = count.saturating_add(1);
        let dead = (deliveries > self.max_deliveries).then(|| self.record_end(start));
        let Some(t) = self.table.take(self.block, self.me, c, claim)? else {
            return Ok(None);
        };
        let Taken {
            generation, end, ..
        } = t;
        if t.start != start || t.deliveries != count {
            // Changed between the loads: hand it back as it is.
            self.table
                .finish(self.block, self.me, c, generation, Some(NO_OWNER));
            return Ok(None);
        }
        let now = mono_ns_coarse();
        match dead {
            None => {
                self.table
                    .set_deliveries(self.block, c, start, deliveries, now);
                let generation =
                    self.table
                        .finish(self.block, self.me, c, generation, Some(u64::from(self.me)));
                Ok(Some(Batch {
                    table: Arc::clone(&self.table),
                    block: self.block,
                    me: self.me,
                    slot: c,
                    generation,
                    start,
                    end: None,
                    claim_end: end,
                    next: start,
                    records: 1,
                    deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
                    settled: false,
                }))
            }
            Some(Ok(record_end)) => {
                self.table
                    .dead_letter(self.block, start, record_end.min(end), count);
                if record_end >= end {
                    self.table.finish(self.block, self.me, c, generation, None);
                } else {
                    // The records after it were handed out once, in the
                    // batch; the next taker hands out the next.
                    self.table.advance(self.block, c, record_end, 1);
                    self.table
                        .finish(self.block, self.me, c, generation, Some(NO_OWNER));
                }
                Ok(None)
            }
            Some(Err(e)) if Self::permanent(&e) => {
                // Its records cannot be read (deleted by retention past the
                // group, or not a run of this log's records): dead letters,
                // rather than an orphan every member trips on.
                self.table.dead_letter(self.block, start, end, count);
                self.table.finish(self.block, self.me, c, generation, None);
                Err(e)
            }
            Some(Err(e)) => {
                self.table
                    .finish(self.block, self.me, c, generation, Some(NO_OWNER));
                Err(e)
            }
        }
    }

    /// Whether an error reading a claim's records will be the same at the
    /// next try.
    fn permanent(e: &Error) -> bool {
        e.is_corruption() || matches!(e, Error::Retired { .. } | Error::InvalidPosition { .. })
    }

    /// Claims up to a batch of new records at the dispatch position,
    /// waiting until `first_wait` for the first. On an error, the claim slot
    /// reserved for it is given back.
    fn dispatch(&mut self, first_wait: Option<Instant>) -> Result<Option<Batch>> {
        let r = self.dispatch_in(first_wait);
        if r.is_err() {
            if let Some((c, _)) = self.reserved.take() {
                if let Ok(claim) = self.table.claim(self.block, c) {
                    if claim.owner == u64::from(self.me) {
                        // Freed if filling, or pending and not real; handed
                        // back if its dispatch swap succeeded.
                        let _ = self.table.reap(self.block, c, claim);
                    }
                }
            }
        }
        r
    }

    fn dispatch_in(&mut self, mut first_wait: Option<Instant>) -> Result<Option<Batch>> {
        let (c, mut generation) = match self.reserved {
            Some(r) => r,
            None => {
                let stripe = self.me * STRIPE..(self.me + 1) * STRIPE;
                match self.table.reserve(self.block, self.me, stripe)? {
                    Some(r) => r,
                    None => {
                        return Err(Error::TooManyClaims {
                            name: self.name.clone(),
                            max: crate::group_table::CLAIM_SLOTS,
                        })
                    }
                }
            }
        };
        self.reserved = Some((c, generation));
        loop {
            let (d, named, word) = self.table.dispatch(self.block)?;
            self.scout = Self::moved(
                &self.log,
                std::mem::replace(&mut self.scout, self.reader.clone()),
                d,
            )?;
            let at_d = self.scout.clone();
            // The batch ends where its last record does, not where the
            // scout stands after looking for more: a look that finds
            // nothing may have moved it past padding or an end frame into
            // the next segment, and a record published there meanwhile
            // belongs to the next batch.
            let first = match first_wait.take() {
                Some(until) => self
                    .scout
                    .next_timeout(until.saturating_duration_since(Instant::now()))
                    .map(|r| r.map(|r| r.next_position().get())),
                None => self
                    .scout
                    .try_next()
                    .map(|r| r.map(|r| r.next_position().get())),
            };
            let (e, records) = match first {
                Ok(None) => return Ok(None),
                Ok(Some(mut end)) => {
                    let mut records = 1;
                    while records < self.batch {
                        match self.scout.try_next() {
                            Ok(Some(r)) => {
                                end = r.next_position().get();
                                records += 1;
                            }
                            Ok(None) => break,
                            // Damage ends the batch before it: the next
                            // batch starts there.
                            Err(e) if e.is_corruption() => break,
                            Err(e) => return Err(e),
                        }
                    }
                    (end, records)
                }
                // A damaged record where dispatch stands: it is handed out
                // alone, as a batch up to the next proven boundary, so that
                // its member sees the damage, and it is dead-lettered after
                // `max_deliveries` instead of stopping the group.
                Err(err) if err.is_corruption() => {
                    let past = self.scout.skip_damaged()?.get();
                    if past <= d {
                        return Err(err);
                    }
                    (past, 1)
                }
                Err(err) => return Err(err),
            };
            generation = self
                .table
                .propose(self.block, self.me, c, generation, d, e)?;
            if let Some(p) = named {
                self.table.help(self.block, p, d)?;
            }
            match self
                .table
                .commit_dispatch(self.block, self.me, c, generation, word, e)?
            {
                Dispatched::Claimed(generation) => {
                    self.reserved = None;
                    self.reader = at_d;
                    return Ok(Some(Batch {
                        table: Arc::clone(&self.table),
                        block: self.block,
                        me: self.me,
                        slot: c,
                        generation,
                        start: d,
                        end: Some(e),
                        claim_end: e,
                        next: d,
                        records,
                        deliveries: 1,
                        settled: false,
                    }));
                }
                Dispatched::HandedOn => {
                    // Stalled past the visibility timeout between the swap
                    // and marking the claim: the batch is an orphan now,
                    // delivered to whoever takes it (maybe this member, at
                    // its next claim).
                    self.reserved = None;
                    return Ok(None);
                }
                Dispatched::Raced(g) => {
                    // Another member moved `dispatch` first: try again from
                    // where it is now (ahead of `d`).
                    generation = g;
                    self.reserved = Some((c, generation));
                    let (d2, _, _) = self.table.dispatch(self.block)?;
                    if self.scout.position().get() > d2 {
                        self.scout = at_d;
                    }
                }
            }
        }
    }

    /// `reader` moved to `to`: walked forward if `to` is a little ahead,
    /// else opened there.
    fn moved(log: &Arc<Store>, mut reader: Reader, to: u64) -> Result<Reader> {
        let at = reader.position().get();
        if at == to {
            return Ok(reader);
        }
        if at < to && to - at <= WALK_LIMIT {
            reader.seek_to(to)?;
            if reader.position().get() == to {
                return Ok(reader);
            }
        }
        Reader::at(log, Position::from(to))
    }

    fn reader_to(&mut self, to: u64) -> Result<()> {
        if self.reader.position().get() != to {
            let r = std::mem::replace(&mut self.reader, self.scout.clone());
            self.reader = Self::moved(&self.log, r, to)?;
        }
        Ok(())
    }

    /// Where the record at `start` ends (past the damage, if it is
    /// damaged).
    fn record_end(&mut self, start: u64) -> Result<u64> {
        self.reader_to(start)?;
        match self.reader.try_next() {
            Ok(Some(r)) => Ok(r.next_position().get()),
            Ok(None) => Err(self.table.corrupt(self.block, GroupDefect::ClaimRange)),
            Err(e) if e.is_corruption() => {
                let past = self.reader.skip_damaged()?.get();
                if past > start {
                    Ok(past)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The next record of `batch`, `None` once it has been read through.
    ///
    /// # Errors
    /// The errors of [`Reader::try_next`]: a damaged record is reported
    /// with its position (release the batch, and after `max_deliveries`
    /// it is dead-lettered).
    pub fn next_record<'a>(&'a mut self, batch: &mut Batch) -> Result<Option<Record<'a>>> {
        let end = batch.end.unwrap_or(u64::MAX);
        if batch.next >= end || (batch.end.is_none() && batch.next > batch.start) {
            return Ok(None);
        }
        self.reader_to(batch.next)?;
        let corrupt = self.table.corrupt(self.block, GroupDefect::ClaimRange);
        match self.reader.try_next()? {
            Some(r) => {
                let next = r.next_position().get();
                batch.next = next;
                if batch.end.is_none() {
                    batch.end = Some(next);
                }
                Ok(Some(r))
            }
            // Every record of a batch was published when it was claimed.
            None => Err(corrupt),
        }
    }

    /// Acknowledges `batch`: its records are done, and will not be
    /// delivered again.
    ///
    /// # Errors
    /// [`Error::ClaimLost`] if the batch was handed to another member
    /// meanwhile (this member overran the visibility timeout): the
    /// acknowledgement counts for nothing. The errors of reading the record
    /// of a redelivery that was not read.
    pub fn ack(&mut self, mut batch: Batch) -> Result<()> {
        self.check_owner(&batch)?;
        // On an error here, the batch is dropped unsettled: handed back.
        let end = match batch.end {
            Some(e) => e,
            None => self.record_end(batch.start)?,
        };
        batch.settled = true;
        let acked = self.table.ack(
            self.block,
            self.me,
            batch.slot,
            batch.generation,
            end,
            batch.claim_end,
        );
        if !acked {
            return Err(Error::ClaimLost {
                name: self.name.clone(),
                position: batch.start(),
            });
        }
        if self.log.opts.durability == crate::Durability::EveryAppend {
            self.table.sync()?;
        }
        Ok(())
    }

    /// Hands `batch` back to the group unacknowledged, to be delivered
    /// again (to any member, one record at a time); its delivery counts.
    ///
    /// # Errors
    /// [`Error::ClaimLost`] if it was handed to another member already.
    pub fn release(&mut self, mut batch: Batch) -> Result<()> {
        self.check_owner(&batch)?;
        batch.settled = true;
        if !self
            .table
            .release(self.block, self.me, batch.slot, batch.generation)
        {
            return Err(Error::ClaimLost {
                name: self.name.clone(),
                position: batch.start(),
            });
        }
        Ok(())
    }
}

impl GroupMember {
    /// A batch claimed by another member (of this group or another, in
    /// this handle or another) is refused: settling it here would settle
    /// a claim of this member's that happens to have the same slot and
    /// generation. Dropped unsettled, it goes back to its own group.
    fn check_owner(&self, batch: &Batch) -> Result<()> {
        if Arc::ptr_eq(&batch.table, &self.table)
            && batch.block == self.block
            && batch.me == self.me
        {
            return Ok(());
        }
        Err(Error::ClaimLost {
            name: self.name.clone(),
            position: batch.start(),
        })
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        if let Some((c, generation)) = self.reserved.take() {
            self.table.unreserve(self.block, self.me, c, generation);
        }
        // Hands this member's batches back now, rather than at the others'
        // next scan after the kernel drops the member's lock.
        self.table.leave(self.block, self.me);
    }
}
