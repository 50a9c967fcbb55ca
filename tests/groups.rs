//! Consumer groups in one process: every record handed out once, batches
//! handed back (released, dropped, overdue, their member gone) delivered
//! again one record at a time, poison records dead-lettered, the watermark
//! and retention, listing, resetting and deleting. `group_processes.rs`
//! does the same with real processes.

use std::collections::BTreeSet;
use std::time::Duration;

use tidelog::{Error, GroupOptions, Log, Options, Position, Retention, StartAt};

fn options() -> Options {
    Options::new()
        .segment_capacity(64 << 10)
        .grow_step(16 << 10)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.resize(8 + (i % 61) as usize, (i % 251) as u8);
    r
}

fn index_of(r: &[u8]) -> u64 {
    u64::from_le_bytes(r[..8].try_into().unwrap())
}

fn fill(log: &Log, from: u64, to: u64) -> Vec<Position> {
    let mut a = log.appender().unwrap();
    (from..to).map(|i| a.append(&record(i)).unwrap()).collect()
}

/// Claims, reads and acknowledges everything claimable now; returns the
/// record indices seen.
fn drain(m: &mut tidelog::GroupMember) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(mut b) = m.claim().unwrap() {
        while let Some(r) = m.next_record(&mut b).unwrap() {
            assert_eq!(&*r, &record(index_of(&r))[..]);
            seen.push(index_of(&r));
        }
        m.ack(b).unwrap();
    }
    seen
}

#[test]
fn members_share_every_record_once_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let n = 5_000;
    fill(&log, 0, n);
    assert!(
        log.segments().unwrap().len() > 3,
        "the records span segments"
    );
    let opts = GroupOptions::new().batch(37);
    let mut members: Vec<_> = (0..3)
        .map(|_| log.group_member_with("work", opts).unwrap())
        .collect();
    let mut seen = Vec::new();
    let mut per_member = [0usize; 3];
    loop {
        let mut any = false;
        for (k, m) in members.iter_mut().enumerate() {
            if let Some(mut b) = m.claim().unwrap() {
                any = true;
                assert!(!b.is_redelivery());
                let mut count = 0;
                while let Some(r) = m.next_record(&mut b).unwrap() {
                    seen.push(index_of(&r));
                    count += 1;
                }
                assert_eq!(count, b.len());
                assert!(count <= 37);
                per_member[k] += count;
                m.ack(b).unwrap();
            }
        }
        if !any {
            break;
        }
    }
    assert_eq!(seen.len() as u64, n, "no record twice");
    let set: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(set, (0..n).collect(), "every record");
    assert!(per_member.iter().all(|&c| c > 0), "{per_member:?}");
    let groups = log.groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].watermark, log.end_position().unwrap());
    assert_eq!(groups[0].lag_records, 0);
    assert_eq!(groups[0].members.len(), 3);
    assert_eq!(groups[0].in_flight, 0);
}

#[test]
fn a_released_batch_comes_back_one_record_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    fill(&log, 0, 10);
    let mut a = log.group_member("g").unwrap();
    let mut b = log.group_member("g").unwrap();
    let batch = a.claim().unwrap().unwrap();
    assert_eq!(batch.len(), 10);
    a.release(batch).unwrap();
    // Handed out again in order, one record at a time, each a second
    // delivery; whoever claims gets the next.
    let mut seen = Vec::new();
    for i in 0..10 {
        let m = if i % 2 == 0 { &mut a } else { &mut b };
        let mut one = m.claim().unwrap().expect("a redelivery");
        assert_eq!(one.len(), 1);
        assert_eq!(one.deliveries(), 2);
        assert!(one.is_redelivery());
        let r = m.next_record(&mut one).unwrap().unwrap();
        seen.push(index_of(&r));
        assert!(m.next_record(&mut one).unwrap().is_none());
        m.ack(one).unwrap();
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert!(a.claim().unwrap().is_none());
    fill(&log, 10, 20);
    let fresh = b.claim().unwrap().unwrap();
    assert_eq!((fresh.len(), fresh.deliveries()), (10, 1));
    b.ack(fresh).unwrap();
    assert_eq!(
        log.groups().unwrap()[0].watermark,
        log.end_position().unwrap()
    );
}

#[test]
fn a_batch_dropped_or_left_by_its_member_is_delivered_again() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    fill(&log, 0, 3);
    let mut a = log.group_member("g").unwrap();
    let mut b = log.group_member("g").unwrap();
    {
        let mut batch = a.claim().unwrap().unwrap();
        let _ = a.next_record(&mut batch).unwrap();
        // Dropped unacknowledged, as when processing panics.
    }
    assert_eq!(drain(&mut b), vec![0, 1, 2]);
    fill(&log, 3, 6);
    let held = a.claim().unwrap().unwrap();
    assert_eq!(held.start(), log.groups().unwrap()[0].watermark);
    drop(a); // the member leaves holding a batch
    std::mem::forget(held); // (its drop would hand it back too)
    assert_eq!(drain(&mut b), vec![3, 4, 5]);
}

#[test]
fn a_poison_record_goes_to_the_dead_letters_after_max_deliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let positions = fill(&log, 0, 8);
    let poison = 5;
    let opts = GroupOptions::new().max_deliveries(3);
    let mut m = log.group_member_with("g", opts).unwrap();
    let mut done = Vec::new();
    let mut poison_deliveries = 0;
    for _ in 0..100 {
        let Some(mut b) = m.claim().unwrap() else {
            break;
        };
        let mut failed = false;
        let mut got = Vec::new();
        while let Some(r) = m.next_record(&mut b).unwrap() {
            if index_of(&r) == poison {
                poison_deliveries += 1;
                failed = true;
                break;
            }
            got.push(index_of(&r));
        }
        if failed {
            m.release(b).unwrap();
        } else {
            done.extend(got);
            m.ack(b).unwrap();
        }
    }
    // Records 0..5 came twice: in the first batch (released) and one at a
    // time after; only their acknowledged delivery counts here.
    assert_eq!(done, vec![0, 1, 2, 3, 4, 6, 7]);
    assert_eq!(poison_deliveries, 3);
    let dead = log.dead_letters("g").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, positions[poison as usize]);
    assert_eq!(dead[0].end, positions[poison as usize + 1]);
    assert_eq!(dead[0].deliveries, 3);
    let info = &log.groups().unwrap()[0];
    assert_eq!(info.dead_letters, 1);
    assert_eq!(info.watermark, log.end_position().unwrap());
}

#[test]
fn an_overdue_batch_is_handed_on_and_its_late_ack_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    fill(&log, 0, 4);
    // Long enough that the check "not overdue yet" holds on a busy
    // machine.
    let visibility = Duration::from_millis(500);
    let opts = GroupOptions::new().visibility_timeout(visibility);
    let mut slow = log.group_member_with("g", opts).unwrap();
    let mut other = log.group_member_with("g", opts).unwrap();
    let claimed = std::time::Instant::now();
    let batch = slow.claim().unwrap().unwrap();
    let early = other.claim().unwrap();
    if claimed.elapsed() < visibility {
        assert!(early.is_none(), "not overdue yet");
    }
    std::thread::sleep(visibility + Duration::from_millis(100));
    let mut seen = Vec::new();
    if let Some(mut b) = early {
        // Only on a machine so slow that the batch was overdue already.
        while let Some(r) = other.next_record(&mut b).unwrap() {
            seen.push(index_of(&r));
        }
        other.ack(b).unwrap();
    }
    while let Some(mut b) = other.claim_timeout(Duration::from_millis(50)).unwrap() {
        assert!(b.is_redelivery());
        while let Some(r) = other.next_record(&mut b).unwrap() {
            seen.push(index_of(&r));
        }
        other.ack(b).unwrap();
    }
    assert_eq!(seen, vec![0, 1, 2, 3]);
    match slow.ack(batch) {
        Err(Error::ClaimLost { name, position }) => {
            assert_eq!(name, "g");
            assert_eq!(position, log.reader().position());
        }
        other => panic!("expected ClaimLost, got {other:?}"),
    }
}

#[test]
fn claim_timeout_waits_for_new_records() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut m = log
        .group_member_with("g", GroupOptions::new().start(StartAt::End))
        .unwrap();
    assert!(m
        .claim_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());
    let producer = {
        let log = options().open(tmp.path()).unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            fill(&log, 0, 1);
        })
    };
    let mut b = m.claim_blocking().unwrap();
    assert_eq!(index_of(&m.next_record(&mut b).unwrap().unwrap()), 0);
    m.ack(b).unwrap();
    producer.join().unwrap();
}

#[test]
fn retention_stops_at_the_slowest_group_and_groups_reset_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let keep_little = Retention::new().max_bytes(1);
    let log = options().retention(keep_little).open(tmp.path()).unwrap();
    let mut m = log.group_member("slow").unwrap();
    fill(&log, 0, 4_000);
    let segments = log.segments().unwrap().len();
    assert!(segments > 3);
    let report = log.apply_retention().unwrap();
    assert_eq!(report.segments_deleted, 0);
    assert_eq!(report.held_back_by.as_deref(), Some("group slow"));
    // Half-way through, retention follows the watermark.
    let mut acked = 0;
    while acked < 2_000 {
        let mut b = m.claim().unwrap().unwrap();
        while m.next_record(&mut b).unwrap().is_some() {
            acked += 1;
        }
        m.ack(b).unwrap();
    }
    let report = log.apply_retention().unwrap();
    assert!(report.segments_deleted > 0);
    assert!(report.oldest <= log.groups().unwrap()[0].watermark);
    assert!(matches!(
        log.delete_group("slow"),
        Err(Error::GroupBusy { .. })
    ));
    assert!(matches!(
        log.reset_group("slow", StartAt::End),
        Err(Error::GroupBusy { .. })
    ));
    drop(m);
    log.reset_group("slow", StartAt::End).unwrap();
    assert_eq!(
        log.groups().unwrap()[0].watermark,
        log.end_position().unwrap()
    );
    let mut m = log.group_member("slow").unwrap();
    assert!(m.claim().unwrap().is_none());
    drop(m);
    log.delete_group("slow").unwrap();
    assert!(log.groups().unwrap().is_empty());
    assert!(matches!(
        log.dead_letters("slow"),
        Err(Error::GroupNotFound { .. })
    ));
    let report = log.apply_retention().unwrap();
    assert_eq!(report.held_back_by, None);
    assert_eq!(log.segments().unwrap().len(), 1);
}

#[test]
fn bad_names_and_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    assert!(matches!(
        log.group_member(""),
        Err(Error::InvalidGroupName { .. })
    ));
    assert!(matches!(
        log.group_member(&"x".repeat(65)),
        Err(Error::InvalidGroupName { .. })
    ));
    for opts in [
        GroupOptions::new().batch(0),
        GroupOptions::new().max_deliveries(0),
        GroupOptions::new().visibility_timeout(Duration::ZERO),
    ] {
        assert!(matches!(
            log.group_member_with("g", opts),
            Err(Error::InvalidOptions { .. })
        ));
    }
    let mut groups = Vec::new();
    for i in 0..16 {
        groups.push(log.group_member(&format!("g{i}")).unwrap());
    }
    assert!(matches!(
        log.group_member("one-too-many"),
        Err(Error::TooManyGroups { max: 16 })
    ));
    let members: Vec<_> = (0..31).map(|_| log.group_member("g0").unwrap()).collect();
    assert!(matches!(
        log.group_member("g0"),
        Err(Error::TooManyMembers { max: 32, .. })
    ));
    drop(members);
    log.group_member("g0").unwrap();
}

#[test]
fn a_damaged_record_is_reported_then_dead_lettered_and_the_group_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let positions = {
        let log = options().open(tmp.path()).unwrap();
        let p = fill(&log, 0, 300);
        log.close().unwrap();
        p
    };
    // Flip a payload byte of record 150 (in the first segment, at base 0).
    let bad = positions[150].get();
    assert!(bad < 64 << 10);
    let seg = tmp.path().join(format!("{:016x}.tlog", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[bad as usize + 8 + 3] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();

    let log = options().open(tmp.path()).unwrap();
    let opts = GroupOptions::new().max_deliveries(2).batch(64);
    let mut m = log.group_member_with("g", opts).unwrap();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..1_000 {
        let Some(mut b) = m.claim().unwrap() else {
            break;
        };
        let mut got = Vec::new();
        let mut damaged = false;
        loop {
            match m.next_record(&mut b) {
                Ok(Some(r)) => got.push(index_of(&r)),
                Ok(None) => break,
                Err(e) => {
                    assert!(e.is_corruption(), "{e}");
                    errors.push((e.position(), b.deliveries()));
                    damaged = true;
                    break;
                }
            }
        }
        if damaged {
            m.release(b).unwrap();
        } else {
            acked.extend(got);
            m.ack(b).unwrap();
        }
    }
    // The batch before it ends at it; it is reported at its first and
    // second delivery, then dead-lettered with what follows it up to the
    // next proven boundary; the group goes on after that.
    assert_eq!(
        errors,
        vec![(Some(positions[150]), 1), (Some(positions[150]), 2)]
    );
    let dead = log.dead_letters("g").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, positions[150]);
    assert_eq!(dead[0].deliveries, 2);
    let lost: Vec<u64> = (0..300)
        .filter(|&i| {
            positions[i as usize] >= dead[0].position && positions[i as usize] < dead[0].end
        })
        .collect();
    assert!(lost.contains(&150));
    let expected: Vec<u64> = (0..300).filter(|i| !lost.contains(i)).collect();
    acked.sort_unstable();
    assert_eq!(acked, expected, "every other record once");
    assert_eq!(
        log.groups().unwrap()[0].watermark,
        log.end_position().unwrap()
    );
}

#[test]
fn a_batch_ends_at_its_last_record_not_in_the_next_segment() {
    // The segment after a batch's last record exists, but its first
    // record is not published when the batch is claimed: it is published
    // while the batch is being read, and must come in the next batch,
    // not in this one as well.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut m = log
        .group_member_with("work", GroupOptions::new().batch(100_000))
        .unwrap();
    let mut a = log.appender().unwrap();
    let mut i = 0;
    let held = loop {
        let rec = record(i);
        let mut r = a.reserve(rec.len()).unwrap();
        r.copy_from_slice(&rec);
        if log.segments().unwrap().len() == 2 {
            break r;
        }
        r.commit().unwrap();
        i += 1;
    };
    let mut batch = m.claim().unwrap().unwrap();
    assert_eq!(batch.len(), i as usize);
    held.commit().unwrap();
    let mut seen = Vec::new();
    while let Some(r) = m.next_record(&mut batch).unwrap() {
        seen.push(index_of(&r));
    }
    m.ack(batch).unwrap();
    assert!(
        seen == (0..i).collect::<Vec<_>>(),
        "the batch held {} records (the last {:?}), not the {i} before the next segment",
        seen.len(),
        seen.last()
    );
    assert_eq!(drain(&mut m), vec![i]);
}

#[test]
fn a_batch_is_settled_only_by_the_member_that_claimed_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    fill(&log, 0, 10);
    let opts = GroupOptions::new().batch(4);
    let mut a = log.group_member_with("a", opts).unwrap();
    let mut b = log.group_member_with("b", opts).unwrap();
    let from_a = a.claim().unwrap().unwrap();
    let from_b = b.claim().unwrap().unwrap();
    // Same slot and generation in each group's table block: only the
    // owner may settle it.
    assert!(matches!(b.ack(from_a), Err(Error::ClaimLost { .. })));
    b.ack(from_b).unwrap();
    // `a`'s batch went back to `a` unacknowledged: all ten come to `a`.
    let mut seen = drain(&mut a);
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(drain(&mut b), (4..10).collect::<Vec<_>>());
}
