//! `Log::stats`: what a service exports.

use tidelog::{Log, Options};

#[test]
fn stats_count_appends_of_live_and_dropped_appenders_and_report_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Options::new()
        .segment_capacity(64 << 10)
        .grow_step(4096)
        .open(tmp.path())
        .unwrap();
    let fresh = log.stats().unwrap();
    assert_eq!((fresh.appends, fresh.appended_bytes), (0, 0));
    assert_eq!(fresh.segments, 1);
    {
        let mut a = log.appender().unwrap();
        for _ in 0..100 {
            a.append(&[1u8; 10]).unwrap();
        }
    }
    let mut b = log.appender().unwrap();
    b.append_batch(&[&[2u8; 5][..], &[3u8; 7]]).unwrap();
    let mut r = b.reserve(4).unwrap();
    r.copy_from_slice(b"four");
    r.commit().unwrap();
    drop(b.reserve(9).unwrap()); // dropped: not appended
    let mut c = log.consumer("audit").unwrap();
    for _ in 0..50 {
        c.next_timeout(std::time::Duration::from_millis(10))
            .unwrap()
            .unwrap();
    }
    c.commit().unwrap();
    let s = log.stats().unwrap();
    assert_eq!(s.appends, 103);
    assert_eq!(s.appended_bytes, 1000 + 5 + 7 + 4);
    assert_eq!((s.dead_writer_holes, s.unblocks, s.recoveries), (0, 0, 0));
    assert_eq!(s.end_position, log.end_position().unwrap());
    assert!(s.segments >= 1 && s.segment_bytes >= 4096);
    assert_eq!(s.consumers.len(), 1);
    assert_eq!(s.consumers[0].lag_records, 53);
    // Another handle counts its own appends only.
    let other = Log::open(tmp.path()).unwrap();
    assert_eq!(other.stats().unwrap().appends, 0);
}
