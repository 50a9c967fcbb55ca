//! Recovery on crafted crash images: what a writer killed at each step of
//! the protocol leaves behind, written into segment files byte by byte.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tidelog::format::frame;
use tidelog::{Log, Options, Position};

const TAIL: u64 = 128;
const STATE: u64 = 512;
const CHECKED: u64 = 520;
const BOOT_ID: u64 = 528;

fn options() -> Options {
    Options::new().segment_capacity(64 << 10).grow_step(4096)
}

fn seg(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:016x}.tlog"))
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, off)
        .unwrap();
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

fn u64_at(path: &Path, off: u64) -> u64 {
    u64::from_le_bytes(read_at(path, off, 8).try_into().unwrap())
}

/// A log with `n` small records, closed cleanly; returns the end offset.
fn base_log(dir: &Path, n: u32) -> u64 {
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    for i in 0..n {
        a.append(format!("committed {i}").as_bytes()).unwrap();
    }
    drop(a);
    drop(log);
    u64_at(&seg(dir, 0), TAIL)
}

/// Makes the image look as if the machine restarted since it was written:
/// its header names another boot.
fn restarted(dir: &Path) {
    write_at(&seg(dir, 0), BOOT_ID, &[0x5A; 16]);
}

/// Makes the image look like its writer crashed: nothing verified since
/// the segment's start, and the tail word as the dead writer left it.
fn crash(dir: &Path, tail: u64) {
    write_at(&seg(dir, 0), CHECKED, &0u64.to_le_bytes());
    write_at(&seg(dir, 0), TAIL, &tail.to_le_bytes());
}

fn records(log: &Log) -> Vec<(Position, Vec<u8>)> {
    let mut r = log.reader();
    let mut out = Vec::new();
    while let Some(rec) = r.try_next().unwrap() {
        out.push((rec.position(), rec.to_vec()));
    }
    out
}

fn committed(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("committed {i}").into_bytes())
        .collect()
}

/// The frame of a record appended at a fixed time.
fn data_frame(pos: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::encode_record(pos, 1_764_000_000_000_000_000, payload, &mut v);
    v
}

#[test]
fn in_progress_frame_at_the_tail_is_padded_over_on_the_same_boot() {
    // Killed while copying: in-progress header, half the payload. On the
    // boot that wrote it, the end of the log does not move back: the torn
    // frame becomes padding, so that a reader standing at the tail (where
    // `end_position` put it) is still at a boundary.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 10);
    let path = seg(tmp.path(), 0);
    write_at(&path, end, &frame::in_progress_word(100).to_le_bytes());
    write_at(&path, end + 8, &[0xEE; 50]);
    let tail = end + frame::frame_len(100);
    crash(tmp.path(), tail);

    let log = options().open(tmp.path()).unwrap();
    let rep = log.recovery().clone();
    assert!(rep.ran && rep.holes_padded == 1, "{rep:?}");
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, committed(10));
    assert_eq!(
        read_at(&path, end, 8),
        frame::padding_word(end, (tail - end - 8) as u32).to_le_bytes()
    );
    let pos = log.appender().unwrap().append(b"next").unwrap();
    assert_eq!(u64::from(pos), tail);
    let mut want = committed(10);
    want.push(b"next".to_vec());
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, want);
}

#[test]
fn in_progress_frame_at_the_tail_is_cut_after_a_restart() {
    // The same image after a restart: the torn frame may hide a lost record,
    // so the log ends before it and the space is reused.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 10);
    let path = seg(tmp.path(), 0);
    write_at(&path, end, &frame::in_progress_word(100).to_le_bytes());
    write_at(&path, end + 8, &[0xEE; 50]);
    crash(tmp.path(), end + frame::frame_len(100));
    restarted(tmp.path());

    let log = options().open(tmp.path()).unwrap();
    let rep = log.recovery().clone();
    assert!(rep.ran && rep.after_restart && rep.bytes_cut > 0, "{rep:?}");
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, committed(10));
    // The torn bytes are gone and the space is reused.
    assert!(read_at(&path, end, 58).iter().all(|&b| b == 0));
    let pos = log.appender().unwrap().append(b"next").unwrap();
    assert_eq!(u64::from(pos), end);
}

#[test]
fn a_reader_at_the_tail_of_a_dead_writer_stays_at_a_boundary_through_recovery() {
    // Found by review: a read-only reader started at the end position while
    // a writer that reserved the last frame was killed. If recovery cut the
    // log back below it, appends would land at other boundaries and the
    // reader would stand inside a record. (Two handles in this process:
    // they share nothing but the files, as two processes would.)
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 3);
    let path = seg(tmp.path(), 0);
    write_at(&path, end, &frame::in_progress_word(40).to_le_bytes());
    let tail = end + frame::frame_len(40);
    crash(tmp.path(), tail);
    let ro = Log::open_read_only(tmp.path()).unwrap();
    let at_end = ro.end_position().unwrap();
    assert_eq!(u64::from(at_end), tail);
    let mut waiting = ro.reader_at(at_end).unwrap();
    assert!(waiting.try_next().unwrap().is_none());
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    let first = a.append(&[9u8; 200]).unwrap();
    a.append(b"second").unwrap();
    assert_eq!(first, at_end);
    assert_eq!(&*waiting.try_next().unwrap().unwrap(), &[9u8; 200][..]);
    assert_eq!(&*waiting.try_next().unwrap().unwrap(), b"second");
}

#[test]
fn data_frame_with_a_torn_payload_at_the_tail_is_cut() {
    // What power loss can leave: a published header whose payload page did
    // not reach the disk. After a restart, the first frame that is not
    // valid ends the log.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 10);
    let path = seg(tmp.path(), 0);
    let mut f = data_frame(end, &[0x11; 300]);
    f[100..].fill(0);
    write_at(&path, end, &f);
    crash(tmp.path(), end + f.len() as u64);
    restarted(tmp.path());
    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().after_restart, "{:?}", log.recovery());
    assert!(log.recovery().bytes_cut > 0, "{:?}", log.recovery());
    assert_eq!(log.recovery().damaged_frames, 0);
    assert_eq!(records(&log).len(), 10);
}

#[test]
fn a_damaged_record_at_the_tail_is_kept_and_reported_after_a_process_crash() {
    // The same image on the boot that wrote it: a process crash never
    // leaves a published frame that fails its CRC, so this is damage, and
    // nothing is truncated away. Readers report it at its position and
    // skip to what is appended after it.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 10);
    let path = seg(tmp.path(), 0);
    let mut f = data_frame(end, &[0x11; 300]);
    f[100..].fill(0);
    write_at(&path, end, &f);
    crash(tmp.path(), end + f.len() as u64);
    let log = options().open(tmp.path()).unwrap();
    assert!(!log.recovery().after_restart, "{:?}", log.recovery());
    assert_eq!(log.recovery().damaged_frames, 1, "{:?}", log.recovery());
    let mut r = log.reader();
    for _ in 0..10 {
        r.try_next().unwrap().unwrap();
    }
    match r.try_next() {
        Err(tidelog::Error::ChecksumMismatch { position, .. }) => {
            assert_eq!(u64::from(position), end)
        }
        other => panic!("{:?}", other.map(|o| o.map(|r| r.to_vec()))),
    }
    let pos = log.appender().unwrap().append(b"later").unwrap();
    assert_eq!(u64::from(pos), end + f.len() as u64);
    assert_eq!(r.skip_damaged().unwrap(), pos);
    assert_eq!(&*r.try_next().unwrap().unwrap(), b"later");
}

#[test]
fn hole_of_a_writer_that_never_claimed_is_padded() {
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 10);
    let path = seg(tmp.path(), 0);
    // A dead writer reserved 72 bytes and wrote nothing; the next writer
    // published after it.
    let hole = frame::frame_len(64);
    let after = data_frame(end + hole, b"published after the hole");
    write_at(&path, end + hole, &after);
    crash(tmp.path(), end + hole + after.len() as u64);

    let log = options().open(tmp.path()).unwrap();
    assert_eq!(log.recovery().holes_padded, 1, "{:?}", log.recovery());
    let got = records(&log);
    assert_eq!(got.len(), 11);
    assert_eq!(
        got[10],
        (
            Position::from(end + hole),
            b"published after the hole".to_vec()
        )
    );
}

#[test]
fn in_progress_frame_before_a_published_one_is_padded() {
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 3);
    let path = seg(tmp.path(), 0);
    let dead = frame::frame_len(200);
    write_at(&path, end, &frame::in_progress_word(200).to_le_bytes());
    write_at(&path, end + 8, &[0xAB; 120]);
    let after = data_frame(end + dead, b"survivor");
    write_at(&path, end + dead, &after);
    crash(tmp.path(), end + dead + after.len() as u64);

    let log = options().open(tmp.path()).unwrap();
    assert_eq!(log.recovery().holes_padded, 1);
    let got = records(&log);
    assert_eq!(got.last().unwrap().1, b"survivor");
    assert_eq!(got.len(), 4);
}

#[test]
fn stale_bytes_past_the_tail_are_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 5);
    let path = seg(tmp.path(), 0);
    // A valid-looking frame where future appends will land, after a hole
    // (not a run of valid frames from the tail). If it survived, a reader
    // could take it for a new record.
    let stale_at = end + 64;
    write_at(&path, stale_at, &data_frame(stale_at, b"stale"));
    crash(tmp.path(), end);
    let log = options().open(tmp.path()).unwrap();
    assert!(read_at(&path, stale_at, 16).iter().all(|&b| b == 0));
    let mut a = log.appender().unwrap();
    for i in 0..20 {
        a.append(&[i; 3]).unwrap();
    }
    let got = records(&log);
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|(_, b)| b != b"stale"));
}

#[test]
fn unsealed_earlier_segment_is_sealed_and_a_missing_successor_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut expected = Vec::new();
    {
        let log = options().open(dir).unwrap();
        let mut a = log.appender().unwrap();
        let mut i = 0u32;
        while log.segments().unwrap().len() < 3 {
            let rec = format!("record {i}").into_bytes();
            a.append(&rec).unwrap();
            expected.push(rec);
            i += 1;
        }
    }
    let segs: Vec<u64> = {
        let mut v: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_suffix(".tlog")
                    .map(|h| u64::from_str_radix(h, 16).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(segs.len(), 3);
    // Segment 1's end-marker writer died: remove the marker and the sealed
    // bit. Segment 2 (holding one record) stays.
    let p1 = seg(dir, segs[1]);
    let cap = 64 << 10;
    let mut off = 4096;
    loop {
        let w = u64_at(&p1, off);
        match frame::decode(w, segs[1] + off).unwrap() {
            frame::Header::End => break,
            h => off += h.frame_len(),
        }
        assert!(off < cap);
    }
    write_at(&p1, off, &0u64.to_le_bytes());
    write_at(&p1, STATE, &0u64.to_le_bytes());
    write_at(&p1, CHECKED, &0u64.to_le_bytes());
    write_at(&seg(dir, segs[2]), CHECKED, &0u64.to_le_bytes());

    let log = options().open(dir).unwrap();
    assert!(log.recovery().segments_scanned >= 2, "{:?}", log.recovery());
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, expected);
    assert!(log.segments().unwrap()[1].sealed);
    drop(log);

    // Now the newest segment goes missing after its predecessor was sealed
    // (a crash between sealing and creating it, simulated by deleting it
    // and the records it held).
    fs::remove_file(seg(dir, segs[2])).unwrap();
    write_at(&seg(dir, segs[1]), STATE, &1u64.to_le_bytes());
    let log = options().open(dir).unwrap();
    assert_eq!(log.segments().unwrap().len(), 3, "successor recreated");
    let pos = log.appender().unwrap().append(b"appended after").unwrap();
    assert!(u64::from(pos) > segs[2]);
    let got = records(&log);
    assert_eq!(got.last().unwrap().1, b"appended after");
}

#[test]
fn stale_temporaries_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    base_log(tmp.path(), 1);
    let stale = tmp.path().join(".0000000000010000.999999.1.tmp");
    fs::write(&stale, b"half a segment").unwrap();
    drop(options().open(tmp.path()).unwrap());
    assert!(!stale.exists());
}

#[test]
fn a_record_ending_past_the_tail_is_not_delivered() {
    // No writer publishes past its reservation, so a frame that ends past
    // the tail word is not one a writer made; here the header also claims
    // every frame below the tail verified, so no recovery looks at it.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 5);
    let path = seg(tmp.path(), 0);
    write_at(&path, end, &data_frame(end, &[0; 8]));
    write_at(&path, TAIL, &(end + 8).to_le_bytes());
    write_at(&path, CHECKED, &(end + 8).to_le_bytes());

    let corrupt_at_end = |r: &mut tidelog::Reader| {
        for _ in 0..5 {
            r.try_next().unwrap().unwrap();
        }
        // `CorruptFrame` (past the tail); or, once a writable open's
        // recovery zeroed the stale bytes past the tail (the record's
        // append time among them), `ChecksumMismatch`.
        match r.try_next() {
            Err(
                tidelog::Error::CorruptFrame { position, .. }
                | tidelog::Error::ChecksumMismatch { position, .. },
            ) => assert_eq!(u64::from(position), end),
            other => panic!(
                "expected damage at {end}, got {:?}",
                other.map(|o| o.is_some())
            ),
        }
    };
    let ro = Options::new().open_read_only(tmp.path()).unwrap();
    corrupt_at_end(&mut ro.reader());
    drop(ro);

    // A writer's reader refuses it too, and what is appended afterwards is
    // found past it.
    let log = options().open(tmp.path()).unwrap();
    let mut r = log.reader();
    corrupt_at_end(&mut r);
    let pos = log.appender().unwrap().append(b"appended").unwrap();
    assert!(u64::from(pos) >= end + 8);
    let mut found = None;
    for _ in 0..4 {
        match r.try_next() {
            Ok(Some(rec)) => {
                found = Some((rec.position(), rec.to_vec()));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                r.skip_damaged().unwrap();
            }
        }
    }
    assert_eq!(found, Some((pos, b"appended".to_vec())));
}

#[test]
fn a_tail_word_near_the_end_of_the_address_space_is_recovered() {
    // Found by review: `tail + 8` overflowed (a panic in debug builds) when
    // deciding whether the segment needs recovery, and the next append's
    // `fetch_add` would have wrapped the tail around.
    let tmp = tempfile::tempdir().unwrap();
    base_log(tmp.path(), 3);
    let path = seg(tmp.path(), 0);
    write_at(&path, TAIL, &(u64::MAX - 7).to_le_bytes());
    write_at(&path, CHECKED, &(64u64 << 10).to_le_bytes());
    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().ran);
    let pos = log.appender().unwrap().append(b"more").unwrap();
    assert!(u64::from(pos) < 64 << 10, "{pos}");
    let mut want = committed(3);
    want.push(b"more".to_vec());
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, want);
}

#[test]
fn an_unfinished_frame_below_the_watermark_is_never_padded() {
    // Every frame below `checked` is complete; an in-progress header there
    // (a header that lies about the watermark) is damage, not a dead
    // writer's frame to pad over: padding it could swallow what is appended
    // after it.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 3);
    let path = seg(tmp.path(), 0);
    write_at(&path, end, &frame::in_progress_word(32).to_le_bytes());
    write_at(&path, end + 8, &[0xCD; 32]);
    let tail = end + frame::frame_len(32);
    write_at(&path, TAIL, &tail.to_le_bytes());
    write_at(&path, CHECKED, &tail.to_le_bytes());
    let opts = options().unblock_timeout(std::time::Duration::ZERO);
    let log = opts.open(tmp.path()).unwrap();
    assert!(!log.recovery().ran);
    let mut r = log.reader();
    for _ in 0..3 {
        r.try_next().unwrap().unwrap();
    }
    for _ in 0..3 {
        // `CorruptFrame` (past the tail); or, once a writable open's
        // recovery zeroed the stale bytes past the tail (the record's
        // append time among them), `ChecksumMismatch`.
        match r.try_next() {
            Err(
                tidelog::Error::CorruptFrame { position, .. }
                | tidelog::Error::ChecksumMismatch { position, .. },
            ) => assert_eq!(u64::from(position), end),
            other => panic!(
                "expected damage at {end}, got {:?}",
                other.map(|o| o.is_some())
            ),
        }
    }
    assert_eq!(
        read_at(&path, end, 8),
        frame::in_progress_word(32).to_le_bytes()
    );
    let pos = log.appender().unwrap().append(b"appended").unwrap();
    assert_eq!(u64::from(pos), tail);
    assert_eq!(u64::from(r.skip_damaged().unwrap()), tail);
    assert_eq!(r.try_next().unwrap().unwrap().to_vec(), b"appended");
}

/// Appends "before", then reserves a frame, fills it and leaks the
/// reservation (`mem::forget`): its frame stays in progress for good.
fn append_and_leak_a_reservation(a: &mut tidelog::Appender) {
    a.append(b"before").unwrap();
    let mut res = a.reserve(16).unwrap();
    res.copy_from_slice(&[7; 16]);
    std::mem::forget(res);
}

#[test]
fn a_leaked_reservation_is_recovered_not_vouched_for() {
    // `mem::forget` on a reservation leaves its frame in progress for good.
    // A clean close must not record that every frame is complete (readers
    // would then report the frame as damage); the next open recovers it.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    append_and_leak_a_reservation(&mut a);
    a.append(b"after").unwrap();
    drop(a);
    drop(log);

    let log = options().open(tmp.path()).unwrap();
    let rep = log.recovery().clone();
    assert!(rep.ran && rep.holes_padded == 1, "{rep:?}");
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn an_unreadable_writer_count_vouches_for_nothing() {
    // The registered-writer count in open.lock decides whether the last
    // writer to close may record that no writer died mid-append. If it
    // cannot be read, nobody may: the next open recovers.
    let tmp = tempfile::tempdir().unwrap();
    base_log(tmp.path(), 3);
    let a = options().open(tmp.path()).unwrap();
    assert!(!a.recovery().ran);
    fs::write(tmp.path().join("open.lock"), [1, 2, 3]).unwrap();
    let b = options().open(tmp.path()).unwrap();
    b.appender().unwrap().append(b"from b").unwrap();
    drop(a);
    drop(b);
    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().ran, "{:?}", log.recovery());
    assert_eq!(records(&log).len(), 4);
    drop(log);
    // That open was alone and reset the count: trust is back.
    let log = options().open(tmp.path()).unwrap();
    assert!(!log.recovery().ran, "{:?}", log.recovery());
}

#[test]
fn a_damaged_tail_word_loses_no_record() {
    // The shared header words carry no checksum. A tail word damaged to a
    // value no writer leaves (misaligned, inside the header), or lowered
    // below records that are there, must not make recovery cut them: it
    // follows the records that validate and raises the tail over them.
    // (Found by review: recovery clamped such a tail to the first frame and
    // zeroed every record of the segment.)
    // Misaligned, zero, the first frame, a frame boundary, inside the first
    // record, inside the second.
    for bad_tail in [17u64, 0, 4096, 4096 + 24, 4096 + 16, 4096 + 32] {
        let tmp = tempfile::tempdir().unwrap();
        let end = base_log(tmp.path(), 5);
        crash(tmp.path(), bad_tail);
        let log = options().open(tmp.path()).unwrap();
        assert!(log.recovery().ran);
        assert_eq!(log.recovery().bytes_cut, 0, "tail {bad_tail}");
        let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, committed(5), "tail {bad_tail}");
        let pos = log.appender().unwrap().append(b"next").unwrap();
        assert_eq!(u64::from(pos), end, "tail {bad_tail}");
        assert_eq!(records(&log).len(), 6);
    }
}

#[test]
fn a_watermark_pointing_inside_a_record_is_not_trusted() {
    // `checked` says where recovery may start. Damaged to point at zero
    // words inside a record, it made recovery take them for a dead writer's
    // hole and write padding headers into the record. Recovery now starts
    // there only once a copy of the file shows a frame starting there.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"first").unwrap();
    let big = a.append(&[0u8; 512]).unwrap();
    a.append(b"last").unwrap();
    drop(a);
    drop(log);
    let path = seg(tmp.path(), 0);
    let inside = u64::from(big) + 8 + 128;
    write_at(&path, CHECKED, &inside.to_le_bytes());
    let log = options().open(tmp.path()).unwrap();
    let rep = log.recovery().clone();
    assert!(rep.ran, "{rep:?}");
    assert_eq!((rep.holes_padded, rep.damaged_frames), (0, 0), "{rep:?}");
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        got,
        vec![b"first".to_vec(), vec![0u8; 512], b"last".to_vec()]
    );
}

#[test]
fn hostile_damage_cannot_make_recovery_unbounded() {
    // Found by review: every damaged frame got its own search budget, so a
    // segment made of damaged frames, each followed by a plausible record
    // header whose length reaches far ahead (checksummed in vain) and then
    // by a valid padding frame, cost megabytes of checksumming per 24
    // bytes of file: hours for a 16 MiB segment. One budget now covers the
    // whole recovery; when it runs out, nothing past the damage is cut.
    const CAP: u64 = 16 << 20;
    let opts = || Options::new().segment_capacity(CAP).grow_step(4096);
    let tmp = tempfile::tempdir().unwrap();
    let log = opts().open(tmp.path()).unwrap();
    let first = log.appender().unwrap().append(b"good").unwrap();
    drop(log);
    let path = seg(tmp.path(), 0);
    let start = u64::from(first) + frame::record_frame_len(4);
    let hostile_end = 8u64 << 20;
    let target = 12u64 << 20;
    let mut image = Vec::with_capacity((hostile_end - start) as usize);
    let mut q = start;
    let mut last_pattern = start;
    while q + 24 <= hostile_end {
        last_pattern = q;
        // A header no writer produces (kind 7)...
        image.extend_from_slice(&(7u64 << 28).to_le_bytes());
        // ... a record header whose frame ends on a zero word at `target`,
        // with a checksum that will not match...
        let len = target - (q + 8) - 8;
        let meta = (1u64 << 28) | len;
        image.extend_from_slice(&(meta | 0xDEAD_BEEF << 32).to_le_bytes());
        // ... and a valid padding frame, where the search stops.
        image.extend_from_slice(&frame::padding_word(q + 16, 0).to_le_bytes());
        q += 24;
    }
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(CAP).unwrap();
    f.write_all_at(&image, start).unwrap();
    drop(f);
    crash(tmp.path(), CAP);

    let (tx, rx) = std::sync::mpsc::channel();
    let dir = tmp.path().to_owned();
    std::thread::spawn(move || {
        let log = opts().open(&dir).unwrap();
        let report = log.recovery().clone();
        let first = log.reader().try_next().unwrap().map(|r| r.to_vec());
        let _ = tx.send((report, first));
    });
    // Far beyond what a bounded recovery takes (well under a second), far
    // below what the unbounded one did (hours).
    let (report, got) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("recovery did not finish: its search is not bounded");
    assert!(report.damaged_frames >= 1, "{report:?}");
    assert_eq!(got, Some(b"good".to_vec()));
    // Nothing was cut: the damage is still there for readers to report,
    // up to its end.
    assert_eq!(u64_at(&path, start), 7u64 << 28);
    assert_eq!(u64_at(&path, last_pattern), 7u64 << 28);
    assert_eq!(
        u64_at(&path, last_pattern + 16),
        frame::padding_word(last_pattern + 16, 0)
    );
}

#[test]
fn a_dirty_segment_older_than_the_newest_is_recovered() {
    // Found by review: a clean close advanced the watermark of every
    // segment after a dirty one, and the next open, which looks for
    // segments to recover from the newest end, stopped before the dirty
    // one: its hole stayed, and read-only readers waited at it for ever.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    append_and_leak_a_reservation(&mut a);
    // The next append notices the leak and marks segment 0 dirty; then
    // enough to roll over into a new segment.
    let mut n = 0;
    while log.segments().unwrap().len() < 2 {
        a.append(&[n as u8; 1000]).unwrap();
        n += 1;
    }
    a.append(b"after").unwrap();
    drop(a);
    drop(log);

    let log = options().open(tmp.path()).unwrap();
    let rep = log.recovery().clone();
    assert!(rep.ran && rep.holes_padded == 1, "{rep:?}");
    drop(log);
    let ro = Options::new().open_read_only(tmp.path()).unwrap();
    let got = records(&ro);
    assert_eq!(got.len(), 1 + n + 1);
    assert_eq!(got.last().unwrap().1, b"after");
}

/// Sets the sealed bit of segment `base`'s state word, leaving the rest.
fn set_sealed_bit(dir: &Path, base: u64) {
    let path = seg(dir, base);
    let state = u64_at(&path, STATE) | 1;
    write_at(&path, STATE, &state.to_le_bytes());
}

#[test]
fn a_stale_sealed_bit_on_the_only_segment_is_repaired() {
    // Issue 9, defect 3: bit 0 of the state word of a clean log's only
    // segment. Appends used to go to a new successor while readers waited
    // at segment 0's tail forever, with no end frame to follow.
    let tmp = tempfile::tempdir().unwrap();
    let end = base_log(tmp.path(), 5);
    set_sealed_bit(tmp.path(), 0);

    // A read-only reader reports the contradiction instead of hanging.
    let ro = Log::open_read_only(tmp.path()).unwrap();
    let mut r = ro.reader();
    for _ in 0..5 {
        r.try_next().unwrap().unwrap();
    }
    match r.try_next() {
        Err(tidelog::Error::CorruptFrame { position, reason }) => {
            assert_eq!(u64::from(position), end);
            assert_eq!(reason, tidelog::FrameDefect::SealedWithoutEnd);
        }
        other => panic!("{:?}", other.map(|o| o.map(|r| r.to_vec()))),
    }
    drop(r);

    // A writable open repairs it: the segment is not sealed and takes the
    // appends.
    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().ran, "{:?}", log.recovery());
    assert!(
        !seg(tmp.path(), 64 << 10).exists(),
        "a successor was created"
    );
    let pos = log.appender().unwrap().append(b"after").unwrap();
    assert_eq!(u64::from(pos), end);
    let mut want = committed(5);
    want.push(b"after".to_vec());
    let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, want);
    // The reader opened before the repair sees the record too.
    assert_eq!(
        &*ro.reader_at(pos).unwrap().try_next().unwrap().unwrap(),
        b"after"
    );
    let got: Vec<_> = records(&ro).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, want);
}

#[test]
fn a_stale_sealed_bit_with_a_successor_already_there_is_repaired() {
    // What the earlier code left behind: segment 0 marked sealed without an
    // end frame, and an empty successor it created. Setting `checked` to 0
    // (the old remedy) is not needed: the contradiction alone makes the
    // next writable open seal segment 0 where its records end.
    let tmp = tempfile::tempdir().unwrap();
    base_log(tmp.path(), 5);
    set_sealed_bit(tmp.path(), 0);
    let header0 = read_at(&seg(tmp.path(), 0), 0, 4096);
    let mut page = vec![0u8; 8192];
    let h = tidelog::format::header::SegmentHeader::new(64 << 10, 64 << 10, 1, 1);
    page[..tidelog::format::header::STATIC_LEN].copy_from_slice(&h.encode());
    page[128..136].copy_from_slice(&4096u64.to_le_bytes());
    page[256..264].copy_from_slice(&8192u64.to_le_bytes());
    // Written in this boot, like segment 0.
    page[528..544].copy_from_slice(&header0[528..544]);
    fs::write(seg(tmp.path(), 64 << 10), &page).unwrap();

    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().ran, "{:?}", log.recovery());
    let pos = log.appender().unwrap().append(b"after").unwrap();
    assert_eq!(u64::from(pos), (64 << 10) + 4096);
    let mut want = committed(5);
    want.push(b"after".to_vec());
    for log in [log, Log::open_read_only(tmp.path()).unwrap()] {
        let got: Vec<_> = records(&log).into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn damage_below_the_durable_watermark_is_kept_after_a_restart() {
    // Found by review: a bit flipped at rest in a flushed record made the
    // first open after a restart cut the log there, losing every flushed
    // record after it. Damage below the durable watermark is damage, not
    // a torn write: it is reported and skipped, and nothing is cut.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    let positions: Vec<Position> = (0..400)
        .map(|i| a.append(format!("flushed {i}").as_bytes()).unwrap())
        .collect();
    drop(a);
    log.close().unwrap();
    let path = seg(tmp.path(), 0);
    let victim = u64::from(positions[20]);
    let b = read_at(&path, victim + 9, 1)[0];
    write_at(&path, victim + 9, &[b ^ 4]);
    restarted(tmp.path());

    let log = options().open(tmp.path()).unwrap();
    assert!(log.recovery().after_restart, "{:?}", log.recovery());
    assert_eq!(log.recovery().bytes_cut, 0, "{:?}", log.recovery());
    let mut r = log.reader();
    let mut got = Vec::new();
    loop {
        match r.try_next() {
            Ok(Some(rec)) => got.push(rec.position()),
            Ok(None) => break,
            Err(e) => {
                assert_eq!(e.position(), Some(positions[20]));
                let at = r.position();
                assert_ne!(r.skip_damaged().unwrap(), at, "skipping moved on");
            }
        }
    }
    // Everything before the damage, and everything from the next index
    // mark on, up to the last flushed record.
    assert_eq!(&got[..20], &positions[..20]);
    assert_eq!(got.last(), positions.last());
    let pos = log.appender().unwrap().append(b"next").unwrap();
    assert!(pos > *positions.last().unwrap());
}

#[test]
fn skipping_damage_past_a_position_being_proven_reads_on() {
    // Found by review: a reader from `reader_at` whose walk met damage
    // before its position, and skipped it past that position, reported
    // `InvalidPosition` forever.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    let positions: Vec<Position> = (0..300)
        .map(|i| a.append(format!("record {i}").as_bytes()).unwrap())
        .collect();
    drop(a);
    log.close().unwrap();
    let path = seg(tmp.path(), 0);
    let victim = u64::from(positions[5]);
    let b = read_at(&path, victim + 9, 1)[0];
    write_at(&path, victim + 9, &[b ^ 4]);
    let log = Log::open_read_only(tmp.path()).unwrap();
    let mut r = log.reader_at(positions[6]).unwrap();
    assert!(r.try_next().is_err());
    let to = r.skip_damaged().unwrap();
    assert!(to > positions[6]);
    let rec = r.try_next().unwrap().unwrap();
    assert_eq!(rec.position(), to);
}
