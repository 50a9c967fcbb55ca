//! The fuzz targets' bodies, shared by the cargo-fuzz binaries in
//! `fuzz_targets/` and by the stable `cargo test` that replays the seed
//! corpus and the regressions (`tests/fuzz_corpus.rs` includes this file).
//!
//! Every property is an `assert!`: a panic anywhere is a finding.

#![allow(
    dead_code,
    reason = "each fuzz target and the corpus tests use a different part of this file"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use tidelog::format::frame::{self, Header, ParseError};
use tidelog::format::header::{SegmentHeader, MAX_POSITION, STATIC_LEN};
use tidelog::format::HEADER_LEN;
use tidelog::{Error, Log, Options, Position, Reader};

/// Arbitrary bytes parsed as a run of frames at an arbitrary position.
///
/// Properties: no panic; a data frame that parses re-encodes to exactly the
/// bytes it was parsed from; control frames re-encode to the same header
/// word; a checksum failure reports the checksum of the bytes.
pub fn frame(data: &[u8]) {
    let Some((pos, mut buf)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut pos = (u64::from_le_bytes(*pos) & !7) % MAX_POSITION;
    for w in buf.chunks_exact(8) {
        let _ = frame::decode(u64::from_le_bytes(w.try_into().unwrap()), pos);
    }
    while !buf.is_empty() {
        match frame::parse(buf, pos) {
            Ok(p) => {
                assert!(p.len >= 8 && p.len % 8 == 0 && p.len as usize <= buf.len());
                let mut again = Vec::new();
                frame::encode(pos, &p, &mut again);
                assert_eq!(again.len() as u64, p.len);
                match p.header {
                    Header::Data { len, .. } => {
                        assert_eq!(p.payload.len(), len as usize);
                        assert_eq!(
                            &again[..],
                            &buf[..p.len as usize],
                            "data frame re-encodes differently"
                        );
                    }
                    _ => assert_eq!(
                        &again[..8],
                        &buf[..8],
                        "control header re-encodes differently"
                    ),
                }
                pos += p.len;
                buf = &buf[p.len as usize..];
            }
            Err(ParseError::Checksum { stored, computed }) => {
                assert_ne!(stored, computed);
                break;
            }
            Err(_) => break,
        }
    }
}

/// Arbitrary bytes validated as a segment header.
///
/// Properties: no panic; a header that validates has a sane geometry and
/// re-encodes to the same bytes (the reserved bytes 60..64 aside).
pub fn header(data: &[u8]) {
    if let Ok(h) = SegmentHeader::decode(data) {
        assert!(h.capacity % 4096 == 0 && h.capacity >= 64 << 10 && h.capacity <= 1 << 40);
        assert!(h.base % 4096 == 0 && h.base + h.capacity <= MAX_POSITION);
        assert_eq!(&h.encode()[..60], &data[..60]);
    }
}

const CAPACITY: u64 = 64 << 10;

fn options() -> Options {
    Options::new()
        .segment_capacity(CAPACITY)
        .grow_step(4096)
        .max_record_size(8 << 10)
        .unblock_timeout(std::time::Duration::ZERO)
}

/// Builds a frame region from a script: structure-aware input for the
/// recover target, so that the fuzzer starts from valid frames, holes and
/// torn tails instead of having to guess CRCs.
fn scripted_body(script: &[u8]) -> (Vec<u8>, u64) {
    let mut body = Vec::new();
    let mut u = Unstructured::new(script);
    while body.len() < (CAPACITY - HEADER_LEN - 64) as usize && !u.is_empty() {
        let Ok(op) = u.int_in_range(0u8..=7) else {
            break;
        };
        let len = u.int_in_range(0u32..=600).unwrap_or(0);
        let pos = HEADER_LEN + body.len() as u64;
        let flen = frame::frame_len(len) as usize;
        let start = body.len();
        match op {
            // Published records, most of the time.
            0 | 1 => {
                let fill = u.arbitrary::<u8>().unwrap_or(0);
                frame::encode_record(pos, u64::from(len), &vec![fill; len as usize], &mut body)
            }
            // Tagged records.
            2 => {
                let fill = u.arbitrary::<u8>().unwrap_or(0);
                let rec = vec![fill; len.saturating_sub(frame::TAG_LEN) as usize];
                frame::encode_tagged_record(pos, u64::from(len), u64::from(fill), &rec, &mut body)
            }
            // A writer that died after claiming, with part of its payload
            // (a record's: its time, then the record).
            3 => {
                let len = len + frame::STAMP_LEN;
                body.extend_from_slice(&frame::in_progress_word(len).to_le_bytes());
                body.resize(start + frame::frame_len(len) as usize, 0xCD);
            }
            // A writer that died right after reserving.
            4 => body.resize(start + flen, 0),
            5 => {
                let pad = (flen - 8) as u32;
                body.extend_from_slice(&frame::padding_word(pos, pad).to_le_bytes());
                body.resize(start + flen, 0);
            }
            // A published record damaged afterwards.
            6 => {
                frame::encode_record(pos, 7, &vec![0x42; len as usize], &mut body);
                let at = start + u.int_in_range(0..=body.len() - start - 1).unwrap_or(0);
                body[at] ^= 1 << u.int_in_range(0..=7).unwrap_or(0);
            }
            _ => {
                body.extend_from_slice(&frame::end_word(pos).to_le_bytes());
                break;
            }
        }
    }
    let tail = HEADER_LEN + body.len() as u64;
    (body, tail)
}

/// The header words of a `recover` image beyond the tail and `checked`:
/// given by an optional trailer (see [`recover`]).
#[derive(Debug, Clone, Copy, Default)]
struct HeaderClaims {
    /// Written in another boot: recovery applies the rules of a restart.
    restart: bool,
    /// The sealed bit is set in the state word.
    sealed: bool,
    /// The durable watermark claims the tail.
    flushed: bool,
    /// The `grown` hint claims the whole capacity.
    grown_all: bool,
    /// The static header claims a capacity of 1 TiB.
    huge: bool,
}

impl HeaderClaims {
    fn from_byte(b: u8) -> Self {
        Self {
            restart: b & 1 != 0,
            sealed: b & 2 != 0,
            flushed: b & 4 != 0,
            grown_all: b & 8 != 0,
            huge: b & 16 != 0,
        }
    }
}

/// The boot id of this boot as the header stores it, or zeros.
fn this_boot() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(s) = fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        if hex.len() == 32 {
            for (i, b) in id.iter_mut().enumerate() {
                let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap_or("00");
                *b = u8::from_str_radix(pair, 16).unwrap_or(0);
            }
        }
    }
    id
}

/// Writes a one-segment log whose segment has `body` after its header.
fn write_image(
    dir: &Path,
    body: &[u8],
    tail: u64,
    file_len: u64,
    claims_checked: bool,
    claims: HeaderClaims,
) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{:016x}.tlog", 0));
    let capacity = if claims.huge { 1 << 40 } else { CAPACITY };
    let mut page = vec![0u8; HEADER_LEN as usize];
    page[..STATIC_LEN].copy_from_slice(&SegmentHeader::new(capacity, 0, 0, 1).encode());
    page[128..136].copy_from_slice(&tail.to_le_bytes());
    let grown = if claims.grown_all { capacity } else { file_len };
    page[256..264].copy_from_slice(&grown.to_le_bytes());
    // `checked`: the image may claim that every frame below the tail was
    // verified (a lie when it holds holes or damage; recovery and the
    // unblocker must cope either way).
    if claims_checked {
        page[520..528].copy_from_slice(&tail.to_le_bytes());
    }
    if claims.sealed {
        page[512..520].copy_from_slice(&1u64.to_le_bytes());
    }
    if claims.flushed {
        page[640..648].copy_from_slice(&tail.to_le_bytes());
    }
    if !claims.restart {
        page[528..544].copy_from_slice(&this_boot());
    }
    let f = fs::File::create(&path).unwrap();
    f.write_all_at(&page, 0).unwrap();
    f.write_all_at(body, HEADER_LEN).unwrap();
    f.set_len(file_len).unwrap();
    path
}

/// Reads a log to its end; on damage, skips it (at most `limit` steps, so a
/// reader that cannot make progress is a finding, not a hang).
fn drain(
    reader: &mut Reader,
    file: Option<&Path>,
    limit: usize,
) -> (Vec<(Position, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut damaged = 0;
    // The one-segment image, for an independent check of what is delivered.
    let image = file.map(|p| fs::read(p).unwrap());
    for _ in 0..limit {
        match reader.try_next() {
            Ok(Some(r)) => {
                if let Some(image) = &image {
                    // The bytes handed out are the bytes in the file, and
                    // they match the CRC in their header.
                    let pos = u64::from(r.position());
                    let at = pos as usize;
                    let head: [u8; 8] = image[at..at + 8].try_into().unwrap();
                    // After the header, the record's append time (and
                    // its tag, if it has one).
                    let stamp = frame::STAMP_LEN as usize;
                    let env = frame::envelope_len(r.tag().is_some()) as usize;
                    let payload = &image[at + 8..at + 8 + env + r.len()];
                    assert_eq!(&payload[env..], &r[..]);
                    assert_eq!(&payload[..stamp], &r.timestamp_nanos().to_le_bytes());
                    if let Some(tag) = r.tag() {
                        assert_eq!(&payload[stamp..env], &tag.to_le_bytes());
                    }
                    let word = u64::from_le_bytes(head);
                    match frame::decode(word, pos) {
                        Ok(Header::Data { len, crc, tagged }) => {
                            assert_eq!(len as usize, payload.len());
                            assert_eq!(tagged, r.tag().is_some());
                            assert!(
                                frame::check_data(pos, len, crc, tagged, payload).is_ok(),
                                "delivered a record failing its CRC"
                            );
                        }
                        other => panic!("delivered a record whose header is {other:?}"),
                    }
                }
                out.push((r.position(), r.to_vec()));
            }
            Ok(None) => return (out, damaged),
            Err(e) => {
                assert!(e.is_corruption(), "unexpected error {e}");
                damaged += 1;
                let before = reader.position();
                let after = reader.skip_damaged().unwrap();
                if after == before {
                    // Nothing valid has been published after the damage.
                    return (out, damaged);
                }
                assert!(after > before, "skip_damaged moved backwards");
            }
        }
    }
    panic!("reader did not reach the end in {limit} steps");
}

/// An arbitrary segment image, opened read-only, then recovered and read.
///
/// Input: a mode byte, then the segment body (raw, or a script when bit 7
/// of the mode is set), then optionally a trailer of two bytes, `claims`
/// and `0xB0`, whose bits set more header words (see [`HeaderClaims`]):
/// written in another boot, sealed, a durable watermark at the tail, a
/// `grown` hint at the capacity, a 1 TiB capacity.
///
/// Properties: no panic, no signal, no hang; every delivered record passes
/// its CRC and matches the file; what a read-only reader delivers before
/// any damage survives recovery unchanged; the log accepts appends
/// afterwards and an appended record stays readable at its position;
/// opening never grows the file past what its frames need plus a page (a
/// header's claims never decide how much to allocate); after the rules of
/// a restart the log reads from start to end without an error; and, unless
/// the header claims a `checked` watermark on this boot (which recovery
/// trusts), recovery is idempotent and the appended record is the last one
/// a reader walking the log delivers.
pub fn recover(data: &[u8]) {
    let (data, claims) = match data {
        [rest @ .., flags, 0xB0] if !rest.is_empty() => (rest, HeaderClaims::from_byte(*flags)),
        _ => (data, HeaderClaims::default()),
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (body, natural_tail) = if mode & 0x80 != 0 {
        scripted_body(rest)
    } else {
        let body = &rest[..rest.len().min((CAPACITY - HEADER_LEN) as usize)];
        (body.to_vec(), HEADER_LEN + body.len() as u64)
    };
    // The tail word, as a dead writer may have left it (past the body if it
    // reserved and never wrote), behind the frames (a header page older
    // than the data pages after a power loss), past the capacity (writers
    // overshooting at a rollover), or garbage.
    let k = u64::from(mode >> 2 & 0x1f);
    let tail = match mode & 0x03 {
        0 => natural_tail,
        1 => natural_tail + 8 * k,
        2 => natural_tail.saturating_sub(8 * k).max(HEADER_LEN),
        _ if mode & 0x10 != 0 => CAPACITY + 8 * k,
        _ => u64::from(mode).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    };
    // The file may end anywhere after the header, even inside a frame.
    let file_len = if mode & 0x40 != 0 {
        HEADER_LEN + body.len() as u64
    } else {
        (HEADER_LEN + body.len() as u64)
            .next_multiple_of(4096)
            .max(HEADER_LEN + 4096)
    };
    let claims_checked = mode & 0x20 != 0;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let path = write_image(&dir, &body, tail, file_len, claims_checked, claims);

    let ro = Log::open_read_only(&dir).unwrap();
    let (before, damaged_before) = drain(&mut ro.reader(), Some(&path), 100_000);
    drop(ro);

    let log = match options().open(&dir) {
        Ok(log) => log,
        Err(Error::NoSpace { .. }) => return,
        Err(e) => panic!("recovery failed: {e}"),
    };
    let grown_to = fs::metadata(&path).unwrap().len();
    assert!(
        grown_to
            <= file_len
                .max(HEADER_LEN + body.len() as u64 + 8)
                .next_multiple_of(4096),
        "opening grew the file from {file_len} to {grown_to}"
    );
    let (after, damaged_after) = drain(&mut log.reader(), Some(&path), 100_000);
    if claims.restart && !claims.flushed {
        // After a restart what survives is a prefix that reads cleanly.
        // (A durable watermark vouches for the frames below it: damage
        // there is damage at rest, which readers report.)
        assert_eq!(
            damaged_after, 0,
            "damage left after recovery from a restart"
        );
        assert!(log.recovery().after_restart);
    }
    if damaged_before == 0 {
        // Everything readable before recovery is still there.
        assert!(after.len() >= before.len(), "recovery lost records");
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "recovery changed records"
        );
    }
    let mut appender = log.appender().unwrap();
    let pos = appender.append(b"after recovery").unwrap();
    drop(appender);
    drop(log);
    let log = options().open(&dir).unwrap();
    // Whatever the image held, the acknowledged record is at its position.
    // A header that lies about the `checked` watermark on this boot is
    // trusted (docs/FORMAT.md, "Trust"); damage it hid, or a frame it hid
    // that the record was appended inside, may then stand between every
    // proven boundary and the record, and `reader_at` says so instead of
    // guessing, but it never hands out another record.
    let lied = claims_checked && !claims.restart;
    match log
        .reader_at(pos)
        .map(|mut at| at.try_next().map(|o| o.map(|r| (r.position(), r.to_vec()))))
    {
        Ok(Ok(found)) => assert_eq!(found, Some((pos, b"after recovery".to_vec()))),
        Ok(Err(e)) | Err(e) => assert!(
            lied && (e.is_corruption() || matches!(e, Error::InvalidPosition { .. })),
            "reader_at({pos}): {e}"
        ),
    }
    if lied {
        // The watermark is trusted (docs/FORMAT.md, "Trust"): an image whose
        // header lies about it, with frames below it unfinished or crossing
        // it, is not re-read, and a reader walking from the start may report
        // damage and skip past records appended after it.
        return;
    }
    let (again, _) = drain(&mut log.reader(), None, 100_000);
    assert_eq!(
        &again[..after.len()],
        &after[..],
        "a second open changed records"
    );
    assert_eq!(
        again.last().map(|(p, b)| (*p, &b[..])),
        Some((pos, &b"after recovery"[..]))
    );
}

/// One step of the `ops` target.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// Append a record of `len % 2048` bytes of `fill`.
    Append { len: u16, fill: u8 },
    /// Append records near the size limit, forcing rollovers.
    AppendBig { count: u8, fill: u8 },
    /// Append a batch of `count % 8` records in one reservation.
    AppendBatch { count: u8, len: u16, fill: u8 },
    /// Reserve a record, fill it in place, then commit it or (if `drop`)
    /// drop it, which must leave nothing behind.
    Reserve { len: u16, fill: u8, drop: bool },
    /// Read up to `n` records with the long-lived reader.
    Read { n: u8 },
    /// Start a reader at the position of record `index % len`.
    ReaderAt { index: u16 },
    /// Close cleanly and open again.
    Reopen,
    /// Continue from a copy of the files taken as they are now, as if the
    /// writer had been killed; `torn` adds a half-written frame at the tail.
    Crash { torn: Option<u16> },
    /// As `Crash`, but as if the machine restarted too: the copy's segments
    /// name another boot, so recovery applies the rules of a restart. The
    /// copy holds every page, so nothing acknowledged may be lost.
    Restart { torn: Option<u16> },
    /// Flush to disk.
    Flush,
    /// Append a record of `len % 2048` bytes of `fill` with `tag` beside it.
    AppendTagged { len: u16, fill: u8, tag: u64 },
}

struct Harness {
    tmp: tempfile::TempDir,
    generation: u32,
    log: Option<Log>,
    reader: Option<Reader>,
    /// The model: every acknowledged record, in order.
    model: Vec<(Position, Vec<u8>)>,
    /// Records the long-lived reader has delivered.
    cursor: usize,
    /// The tags of the tagged records in the model, by position.
    tags: std::collections::BTreeMap<Position, u64>,
}

impl Harness {
    fn dir(&self) -> PathBuf {
        self.tmp.path().join(format!("log{}", self.generation))
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn check_all(&self) {
        let (all, damaged) = drain(&mut self.log().reader(), None, 1_000_000);
        assert_eq!(damaged, 0);
        assert_eq!(all, self.model, "log differs from the model");
        assert_eq!(
            self.log().last_tag().unwrap(),
            self.tags.last_key_value().map(|(p, t)| (*p, *t)),
            "last tag differs from the model"
        );
    }

    fn reset_reader(&mut self) {
        let reader = match self.model.get(self.cursor) {
            Some((pos, _)) => self.log().reader_at(*pos).unwrap(),
            None => {
                let end = self.log().end_position().unwrap();
                self.log().reader_at(end).unwrap()
            }
        };
        self.reader = Some(reader);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Arbitrary sequences of operations against a `Vec` of records.
///
/// Properties: the log always holds exactly the acknowledged records, in
/// order, at the positions `append` returned; readers deliver exactly the
/// model; crashes (with or without a torn frame) lose nothing acknowledged.
pub fn ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = u.arbitrary_iter::<Op>() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut h = Harness {
        tmp,
        generation: 0,
        log: None,
        reader: None,
        model: Vec::new(),
        cursor: 0,
        tags: std::collections::BTreeMap::new(),
    };
    h.log = Some(options().open(h.dir()).unwrap());
    h.reader = Some(h.log().reader());
    let mut appender = h.log().appender().unwrap();
    let max = h.log().max_record_size();
    for op in ops.take(64) {
        let Ok(op) = op else { break };
        match op {
            Op::Append { len, fill } => {
                let rec = vec![fill; len as usize % 2048];
                let pos = appender.append(&rec).unwrap();
                assert!(
                    h.model.last().is_none_or(|(p, _)| *p < pos),
                    "positions must increase"
                );
                h.model.push((pos, rec));
            }
            Op::AppendBig { count, fill } => {
                for i in 0..count % 8 {
                    let rec = vec![fill.wrapping_add(i); max - usize::from(i)];
                    let pos = appender.append(&rec).unwrap();
                    h.model.push((pos, rec));
                }
            }
            Op::AppendBatch { count, len, fill } => {
                let batch: Vec<Vec<u8>> = (0..count % 8)
                    .map(|i| {
                        vec![fill.wrapping_add(i); (usize::from(len) + usize::from(i) * 97) % 3000]
                    })
                    .collect();
                match appender.append_batch(&batch).unwrap() {
                    Some(span) => {
                        let first = h.model.len();
                        for rec in batch {
                            // Positions are filled in from a read below.
                            h.model.push((Position::from(0), rec));
                        }
                        // The batch is contiguous: read it back from its start.
                        let mut r = h.log().reader_at(*span.start()).unwrap();
                        for (i, slot) in h.model[first..].iter_mut().enumerate() {
                            let got = r.try_next().unwrap().unwrap();
                            assert_eq!(&*got, &slot.1[..], "batch record {i}");
                            slot.0 = got.position();
                        }
                        assert_eq!(h.model.last().unwrap().0, *span.end());
                    }
                    None => assert!(batch.is_empty()),
                }
            }
            Op::Reserve { len, fill, drop } => {
                let len = usize::from(len) % 2048;
                let mut r = appender.reserve(len).unwrap();
                assert!(r.iter().all(|&b| b == 0), "a reservation starts zeroed");
                r.fill(fill);
                if !drop {
                    let pos = r.commit().unwrap();
                    h.model.push((pos, vec![fill; len]));
                }
            }
            Op::Read { n } => {
                let reader = h.reader.as_mut().unwrap();
                for _ in 0..n {
                    match reader.try_next().unwrap() {
                        Some(r) => {
                            let (pos, rec) = &h.model[h.cursor];
                            assert_eq!((r.position(), &*r), (*pos, &rec[..]));
                            assert_eq!(r.tag(), h.tags.get(pos).copied());
                            h.cursor += 1;
                        }
                        None => {
                            assert_eq!(h.cursor, h.model.len(), "reader stopped early");
                            break;
                        }
                    }
                }
            }
            Op::ReaderAt { index } => {
                if !h.model.is_empty() {
                    let i = index as usize % h.model.len();
                    let mut r = h.log().reader_at(h.model[i].0).unwrap();
                    let got = r.try_next().unwrap().unwrap();
                    assert_eq!(&*got, &h.model[i].1[..]);
                }
            }
            Op::Reopen => {
                drop(appender);
                h.reader = None;
                h.log.take().unwrap().close().unwrap();
                h.log = Some(options().open(h.dir()).unwrap());
                assert!(!h.log().recovery().ran, "a clean close needs no recovery");
                appender = h.log().appender().unwrap();
                h.reset_reader();
                h.check_all();
            }
            Op::Crash { torn } | Op::Restart { torn } => {
                let restart = matches!(op, Op::Restart { .. });
                let from = h.dir();
                h.generation += 1;
                let to = h.dir();
                copy_dir(&from, &to);
                if let Some(len) = torn {
                    // The killed writer had claimed a frame and copied part
                    // of its payload.
                    let mut segs: Vec<_> = fs::read_dir(&to)
                        .unwrap()
                        .filter_map(|e| {
                            let p = e.unwrap().path();
                            (p.extension()? == "tlog").then_some(p)
                        })
                        .collect();
                    segs.sort();
                    let last = segs.last().unwrap();
                    let f = fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(last)
                        .unwrap();
                    let mut t = [0u8; 8];
                    f.read_exact_at(&mut t, 128).unwrap();
                    let tail = u64::from_le_bytes(t);
                    // A record's payload: its append time, then the record.
                    let len = u32::from(len) % 512 + frame::STAMP_LEN;
                    let flen = frame::frame_len(len);
                    let flen_end = tail + flen;
                    if flen_end + 8 <= CAPACITY && flen_end <= f.metadata().unwrap().len() {
                        f.write_all_at(&frame::in_progress_word(len).to_le_bytes(), tail)
                            .unwrap();
                        f.write_all_at(&vec![0xEE; len as usize / 2], tail + 8)
                            .unwrap();
                        f.write_all_at(&flen_end.to_le_bytes(), 128).unwrap();
                    }
                }
                if restart {
                    for e in fs::read_dir(&to).unwrap() {
                        let p = e.unwrap().path();
                        if p.extension().is_some_and(|x| x == "tlog") {
                            let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                            f.write_all_at(&[0x5A; 16], 528).unwrap();
                        }
                    }
                }
                drop(appender);
                h.reader = None;
                drop(h.log.take());
                h.log = Some(options().open(&to).unwrap());
                assert_eq!(h.log().recovery().damaged_frames, 0);
                assert_eq!(h.log().recovery().after_restart, restart);
                appender = h.log().appender().unwrap();
                h.reset_reader();
                h.check_all();
            }
            Op::Flush => h.log().flush().unwrap(),
            Op::AppendTagged { len, fill, tag } => {
                let rec = vec![fill; len as usize % 2048];
                let pos = appender.append_tagged(tag, &rec).unwrap();
                h.model.push((pos, rec));
                h.tags.insert(pos, tag);
            }
        }
    }
    h.check_all();
    let mut by_pos = BTreeMap::new();
    for (p, r) in &h.model {
        assert!(by_pos.insert(*p, r).is_none(), "position handed out twice");
    }
}

/// Arbitrary bytes as the cursor table of a log with a few records.
///
/// Input: a mode byte, then bytes laid over a valid, empty table: over the
/// slots (from byte 4096), or, with bit 0 of the mode, from byte 0 (the
/// header too); bit 1 cuts the file to the input's length.
///
/// Properties: no panic and no hang; listing, opening consumers (each name
/// listed, and a new one), committing, resetting and deleting give either
/// success or a typed error (`CorruptCursorTable`, `ConsumerBusy`,
/// `ConsumerNotFound`, `TooManyConsumers`, `InvalidPosition`); a consumer
/// that opens reads only records of the log.
pub fn cursor(data: &[u8]) {
    use tidelog::format::cursor::{encode_header, FILE_LEN, HEADER_LEN as TABLE_HEADER};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3 + i as usize]).collect();
    {
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        for r in &records {
            a.append(r).unwrap();
        }
    }
    let mut table = encode_header();
    table.resize(FILE_LEN as usize, 0);
    let at = if mode & 1 != 0 {
        0
    } else {
        TABLE_HEADER as usize
    };
    let n = rest.len().min(table.len() - at);
    table[at..at + n].copy_from_slice(&rest[..n]);
    if mode & 2 != 0 {
        table.truncate(at + n);
    }
    fs::write(dir.join("cursors"), &table).unwrap();

    let typed = |e: &Error| {
        assert!(
            matches!(
                e,
                Error::CorruptCursorTable { .. }
                    | Error::ConsumerBusy { .. }
                    | Error::ConsumerNotFound { .. }
                    | Error::TooManyConsumers { .. }
                    | Error::InvalidPosition { .. }
            ),
            "unexpected error {e:?}"
        )
    };
    let log = options().open(&dir).unwrap();
    let mut names = vec!["fresh".to_owned()];
    match log.consumers() {
        Ok(list) => names.extend(list.into_iter().map(|c| c.name)),
        Err(e) => typed(&e),
    }
    for name in &names {
        match log.consumer(name) {
            Ok(mut c) => {
                for _ in 0..10 {
                    match c.try_next() {
                        Ok(Some(r)) => assert!(records.iter().any(|x| x[..] == r[..])),
                        Ok(None) => break,
                        Err(e) => {
                            assert!(e.is_corruption(), "{e}");
                            break;
                        }
                    }
                }
                if let Err(e) = c.commit() {
                    typed(&e);
                }
            }
            Err(e) => typed(&e),
        }
        if let Err(e) = log.reset_consumer(name, tidelog::StartAt::Beginning) {
            typed(&e);
        }
        if let Err(e) = log.delete_consumer(name) {
            typed(&e);
        }
    }
}

/// Arbitrary bytes in the group table of a log with a few records and a
/// group `work` that has a batch waiting to be delivered again.
///
/// Input: a mode byte, a little-endian `u16` offset, then bytes laid over
/// the table from that offset (taken modulo the table's length); bit 0 of
/// the mode cuts the file after them.
///
/// Properties: no panic and no hang; listing the groups and the dead
/// letters, joining (the group, and a new one), claiming, reading,
/// acknowledging, releasing, resetting and deleting give either success
/// or a typed error; every record a member reads is one of the log's.
pub fn group(data: &[u8]) {
    use tidelog::format::group::FILE_LEN;
    use tidelog::GroupOptions;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((at, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 3 + i as usize]).collect();
    let opts = GroupOptions::new()
        .batch(2)
        .max_deliveries(2)
        .visibility_timeout(std::time::Duration::from_millis(1));
    {
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        for r in &records {
            a.append(r).unwrap();
        }
        let mut m = log.group_member_with("work", opts).unwrap();
        let held = m.claim().unwrap().unwrap();
        let done = m.claim().unwrap().unwrap();
        m.ack(done).unwrap();
        // Handed back, waiting for redelivery (the owner of a claim is one
        // of the bytes the input can change).
        m.release(held).unwrap();
    }
    let path = dir.join("groups");
    let mut table = fs::read(&path).unwrap();
    let at = usize::from(u16::from_le_bytes(*at)) % FILE_LEN as usize;
    let n = rest.len().min(table.len() - at);
    table[at..at + n].copy_from_slice(&rest[..n]);
    if mode & 1 != 0 {
        table.truncate(at + n);
    }
    fs::write(&path, &table).unwrap();

    let typed = |e: &Error| {
        assert!(
            e.is_corruption()
                || matches!(
                    e,
                    Error::GroupNotFound { .. }
                        | Error::GroupBusy { .. }
                        | Error::TooManyGroups { .. }
                        | Error::TooManyMembers { .. }
                        | Error::TooManyClaims { .. }
                        | Error::ClaimLost { .. }
                        | Error::InvalidPosition { .. }
                ),
            "unexpected error {e:?}"
        )
    };
    let log = options().open(&dir).unwrap();
    let mut names = vec!["work".to_owned(), "fresh".to_owned()];
    match log.groups() {
        Ok(list) => names.extend(list.into_iter().map(|g| g.name)),
        Err(e) => typed(&e),
    }
    for name in &names {
        if let Err(e) = log.dead_letters(name) {
            typed(&e);
        }
        match log.group_member_with(name, opts) {
            Ok(mut m) => {
                for round in 0..8 {
                    let mut b = match m.claim() {
                        Ok(Some(b)) => b,
                        Ok(None) => break,
                        Err(e) => {
                            typed(&e);
                            break;
                        }
                    };
                    loop {
                        match m.next_record(&mut b) {
                            Ok(Some(r)) => assert!(records.iter().any(|x| x[..] == r[..])),
                            Ok(None) => break,
                            Err(e) => {
                                typed(&e);
                                break;
                            }
                        }
                    }
                    let r = if round % 3 == 2 {
                        m.release(b)
                    } else {
                        m.ack(b)
                    };
                    if let Err(e) = r {
                        typed(&e);
                    }
                }
            }
            Err(e) => typed(&e),
        }
        if let Err(e) = log.groups() {
            typed(&e);
        }
        if let Err(e) = log.reset_group(name, tidelog::StartAt::Beginning) {
            typed(&e);
        }
        if let Err(e) = log.delete_group(name) {
            typed(&e);
        }
    }
}

/// The seed corpus: `(target, file name, bytes)`. Valid inputs of every
/// shape, so that mutation starts from deep inside the parsers.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();

    // frame: a position, then a run of frames at that position.
    let pos = 3 * 4096u64;
    let mut run = pos.to_le_bytes().to_vec();
    let mut p = pos;
    for payload in [
        &b""[..],
        b"a",
        b"hello, world",
        &[7u8; 64][..],
        &[0u8; 300][..],
    ] {
        let start = run.len();
        frame::encode_record(p, 1_764_460_800_000_000_000, payload, &mut run);
        p += (run.len() - start) as u64;
    }
    run.extend_from_slice(&frame::padding_word(p, 16).to_le_bytes());
    run.extend_from_slice(&[0; 16]);
    p += 24;
    run.extend_from_slice(&frame::in_progress_word(13).to_le_bytes());
    run.extend_from_slice(&[0; 16]);
    out.push(("frame", "seed-run".to_owned(), run));
    let mut end = 4096u64.to_le_bytes().to_vec();
    end.extend_from_slice(&frame::end_word(4096).to_le_bytes());
    out.push(("frame", "seed-end".to_owned(), end));
    let _ = p;

    // header: valid headers and near misses.
    let h = SegmentHeader::new(1 << 30, 1 << 30, 1, 1_700_000_000_000_000_000);
    out.push(("header", "seed-valid".to_owned(), h.encode().to_vec()));
    let mut newer = h.encode();
    newer[8] = 2;
    out.push(("header", "seed-newer".to_owned(), newer.to_vec()));
    out.push((
        "header",
        "seed-truncated".to_owned(),
        h.encode()[..30].to_vec(),
    ));
    // The largest capacity a header may claim.
    let huge = SegmentHeader::new(1 << 40, 0, 0, 1);
    out.push(("header", "seed-1tib".to_owned(), huge.encode().to_vec()));

    // recover: scripts (mode bit 7) and raw bodies cut from real logs.
    let scripts: [(&str, Vec<u8>); 4] = [
        (
            "seed-script-records",
            vec![0x80, 0, 10, 0, 1, 0, 200, 0, 2, 2, 50, 1, 1, 0, 0, 0],
        ),
        (
            "seed-script-hole",
            vec![0x80, 0, 10, 0, 4, 0, 64, 0, 0, 20, 0],
        ),
        (
            "seed-script-torn",
            vec![0x80, 0, 10, 0, 1, 0, 30, 3, 3, 0, 100],
        ),
        (
            "seed-script-damage",
            vec![0xC1, 0, 10, 0, 6, 0, 40, 5, 3, 0, 0, 8, 0, 0, 12, 7],
        ),
    ];
    for (name, s) in scripts {
        out.push(("recover", name.to_owned(), s));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    {
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        for i in 0..40u32 {
            a.append(&i.to_le_bytes().repeat(i as usize)).unwrap();
        }
    }
    let image = fs::read(dir.join(format!("{:016x}.tlog", 0))).unwrap();
    let used = u64::from_le_bytes(image[128..136].try_into().unwrap()) as usize;
    let mut raw = vec![0x00];
    raw.extend_from_slice(&image[HEADER_LEN as usize..used]);
    out.push(("recover", "seed-raw-clean".to_owned(), raw.clone()));
    raw[0] = 0x05; // tail past the body: a reservation nobody wrote
    out.push(("recover", "seed-raw-reserved".to_owned(), raw.clone()));
    // Header claims (the trailer): written in another boot, with and
    // without a durable watermark; a stale sealed bit on this boot; a
    // hostile header claiming 1 TiB, sealed, grown to the capacity.
    for (name, claims) in [
        ("seed-raw-restart", 0x01u8),
        ("seed-raw-restart-flushed", 0x05),
        ("seed-raw-stale-sealed", 0x02),
        ("seed-raw-hostile-huge", 0x1A),
    ] {
        let mut r = raw.clone();
        r.extend_from_slice(&[claims, 0xB0]);
        out.push(("recover", name.to_owned(), r));
    }
    raw[0] = 0x40; // file cut at the end of the body
    raw.truncate(raw.len() - 37);
    out.push(("recover", "seed-raw-cut".to_owned(), raw));
    let mut hole = vec![0x80, 0, 10, 0, 4, 0, 64, 0, 0, 20, 0];
    hole.extend_from_slice(&[0x01, 0xB0]);
    out.push(("recover", "seed-script-hole-restart".to_owned(), hole));

    // A record whose payload holds a data frame checksummed for its own
    // position, then valid 8-byte padding frames to its end; and the same
    // with a bit of the record's length flipped, which points it into them.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let outer = {
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        a.append(b"before").unwrap();
        let mut r = a.reserve(200).unwrap();
        let outer = r.position().get();
        r.fill(0xAB);
        let mut forged = Vec::new();
        // Record byte `j` sits after the frame header and the append time.
        frame::encode_record(outer + 16 + 16, 1, b"smuggled", &mut forged);
        r[16..16 + forged.len()].copy_from_slice(&forged);
        let mut j = 16 + forged.len();
        while j + 8 <= 200 {
            r[j..j + 8]
                .copy_from_slice(&frame::padding_word(outer + 16 + j as u64, 0).to_le_bytes());
            j += 8;
        }
        r.commit().unwrap();
        for i in 0..20u32 {
            a.append(&i.to_le_bytes()).unwrap();
        }
        outer
    };
    let image = fs::read(dir.join(format!("{:016x}.tlog", 0))).unwrap();
    let used = u64::from_le_bytes(image[128..136].try_into().unwrap()) as usize;
    let mut smuggled = vec![0x00];
    smuggled.extend_from_slice(&image[HEADER_LEN as usize..used]);
    out.push(("recover", "seed-raw-smuggled".to_owned(), smuggled.clone()));
    // Byte 0 of the outer frame's header is the low byte of its length.
    smuggled[1 + (outer - HEADER_LEN) as usize] ^= 0x10;
    out.push(("recover", "seed-raw-smuggled-flipped".to_owned(), smuggled));

    // cursor: a live slot for a real position, a slot with a state no
    // writer stores, a name that fails its checksum, a damaged header, a
    // table cut short.
    {
        use tidelog::format::cursor::encode_name;
        let mut slot = vec![0u8; 128];
        let (words, len, crc) = encode_name("billing").unwrap();
        slot[0..8].copy_from_slice(&1u64.to_le_bytes());
        slot[8..16].copy_from_slice(&4096u64.to_le_bytes());
        slot[32..40].copy_from_slice(&len.to_le_bytes());
        slot[40..48].copy_from_slice(&crc.to_le_bytes());
        for (i, w) in words.iter().enumerate() {
            slot[48 + 8 * i..56 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let mut live = vec![0x00];
        live.extend_from_slice(&slot);
        out.push(("cursor", "seed-live".to_owned(), live.clone()));
        let mut bad_state = live.clone();
        bad_state[1] = 7;
        out.push(("cursor", "seed-bad-state".to_owned(), bad_state));
        let mut bad_name = live.clone();
        bad_name[1 + 48] ^= 1;
        out.push(("cursor", "seed-bad-name".to_owned(), bad_name));
        let mut header = vec![0x01];
        header.extend_from_slice(b"TLCURSOR\x01\0\0\0");
        out.push(("cursor", "seed-bad-header".to_owned(), header));
        let mut cut = live;
        cut[0] = 0x02;
        out.push(("cursor", "seed-cut".to_owned(), cut));
    }

    // group: the table as it is (no bytes), a block's state, its
    // dispatch word, a claim word, a claim's range and deliveries, a
    // member slot, the dead-letter count, a damaged header, a cut file.
    {
        use tidelog::format::group::{
            block_offset, claim_offset, dead_offset, member_offset, C_DELIVERIES, C_START,
            G_DEAD_COUNT, G_DISPATCH, G_STATE,
        };
        let at = |off: u64, bytes: &[u8], mode: u8| {
            let mut v = vec![mode];
            v.extend_from_slice(&(off as u16).to_le_bytes());
            v.extend_from_slice(bytes);
            v
        };
        let b0 = block_offset(0);
        for (name, off, bytes, mode) in [
            ("seed-as-is", 0, &[][..], 0),
            ("seed-state", b0 + G_STATE, &[2u8][..], 0),
            ("seed-dispatch", b0 + G_DISPATCH, &[0xff, 0x13][..], 0),
            (
                "seed-claim-word",
                b0 + claim_offset(0),
                &[0x1b, 0, 0, 1][..],
                0,
            ),
            (
                "seed-claim-range",
                b0 + claim_offset(0) + C_START,
                &[0x08, 0x10][..],
                0,
            ),
            (
                "seed-deliveries",
                b0 + claim_offset(0) + C_DELIVERIES,
                &[9][..],
                0,
            ),
            (
                "seed-member",
                b0 + member_offset(0),
                &[1, 0, 0, 0, 0, 0, 0, 0, 7][..],
                0,
            ),
            ("seed-dead", b0 + G_DEAD_COUNT, &[0xff, 0xff][..], 0),
            ("seed-dead-entry", b0 + dead_offset(0), &[0x10, 0x10][..], 0),
            ("seed-header", 9, &[2][..], 0),
            ("seed-cut", b0 + 100, &[1][..], 1),
        ] {
            out.push(("group", name.to_owned(), at(off, bytes, mode)));
        }
    }

    // ops: byte strings that decode to mixed operation sequences.
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..6 {
        let bytes: Vec<u8> = (0..64 + 48 * i)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        out.push(("ops", format!("seed-{i}"), bytes));
    }
    out
}
