//! The `tidelog` binary end to end: every subcommand, run as a process.

use std::process::{Command, Output};

fn tidelog(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .output()
        .expect("run tidelog");
    assert!(
        out.status.success(),
        "tidelog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn append_cat_info_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let positions = text(&tidelog(&[
        "append", "--create", d, "first", "second", "third",
    ]));
    assert_eq!(positions.lines().count(), 3);
    let first = positions.lines().next().unwrap();

    let cat = text(&tidelog(&["cat", "--positions", d]));
    let lines: Vec<_> = cat.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], format!("{first}\tfirst"));
    assert!(lines[2].ends_with("\tthird"));

    let from = text(&tidelog(&[
        "cat",
        "--from",
        positions.lines().nth(1).unwrap(),
        d,
    ]));
    assert_eq!(from, "second\nthird\n");

    let info = text(&tidelog(&["info", d]));
    assert!(info.contains("end position"), "{info}");

    let verify = text(&tidelog(&["verify", d]));
    assert!(verify.contains("3 records"), "{verify}");
    assert!(verify.contains("0 damaged"), "{verify}");
}

#[test]
fn verify_reports_damage_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    tidelog(&[
        "append",
        "--create",
        d,
        "aaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbb",
        "cccccccccccccccc",
    ]);
    // Flip a byte of the second record (the first is at 4096: a frame of
    // 32 bytes, header, append time and record).
    let seg = dir.join(format!("{:016x}.tlog", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096 + 32 + 20] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["verify", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "damage found: exit code 3");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("fails its checksum"), "{s}");
    // Nothing after the damage is proven to be a record boundary before
    // the end of this tiny log: the third record is not guessed at.
    assert!(s.contains("1 records"), "{s}");
}

#[test]
fn bench_runs_every_scenario_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("latency.svg");
    let out = tidelog(&[
        "bench",
        "--json",
        "--count",
        "20000",
        "--large-size",
        "65536",
        "--large-count",
        "20",
        "--rate",
        "20000",
        "--latency-seconds",
        "0.05",
        "--repeat",
        "1",
        "--segment-mib",
        "16",
        "--dir",
        tmp.path().to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let rows = report["throughput"].as_array().unwrap();
    // throughput (5), multi (2), large (2), group (3)
    assert_eq!(rows.len(), 12);
    let groups: Vec<_> = rows.iter().filter(|r| r["scenario"] == "group").collect();
    let members: Vec<_> = groups
        .iter()
        .map(|r| r["consumers"].as_u64().unwrap())
        .collect();
    assert_eq!(members, [1, 2, 4]);
    let figures = report["figures"].as_array().unwrap();
    // commit (2), retention (4)
    assert_eq!(figures.len(), 6, "{figures:?}");
    for f in figures {
        // (With segments this small, the producer may be done before
        // retention runs: appends/s may be 0.)
        let least = if f["unit"] == "records/s" { 0.0 } else { 1e-9 };
        assert!(f["value"].as_f64().unwrap() >= least, "{f}");
    }
    for row in rows {
        assert!(row["records_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    }
    let tidelog_1_1 = rows
        .iter()
        .find(|r| r["transport"] == "tidelog" && r["producers"] == 1 && r["consumers"] == 1)
        .unwrap();
    assert!(tidelog_1_1["vs_pipe"].as_f64().unwrap() > 0.0);
    let lat = report["latency"].as_array().unwrap();
    assert_eq!(lat.len(), 7);
    for l in lat {
        assert_eq!(l["latency"]["samples"].as_u64().unwrap(), 1000, "{l}");
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG");
    // The temporary logs are gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tidelog-bench-")
        })
        .collect();
    assert!(left.is_empty(), "bench left {left:?} behind");
}

#[test]
fn consumers_tail_and_trim() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let records: Vec<String> = (0..20).map(|i| format!("record {i}")).collect();
    let mut args = vec!["append", "--create", d];
    args.extend(records.iter().map(String::as_str));
    tidelog(&args);

    // The last records.
    let last = text(&tidelog(&["tail", "-n", "3", d]));
    assert_eq!(last, "record 17\nrecord 18\nrecord 19\n");
    // As a consumer: prints from its commit and commits as it goes.
    let first = text(&tidelog(&["tail", "--consumer", "ops", d]));
    assert_eq!(first.lines().count(), 20);
    assert_eq!(text(&tidelog(&["tail", "--consumer", "ops", d])), "");
    tidelog(&["append", d, "record 20"]);
    assert_eq!(
        text(&tidelog(&["tail", "--consumer", "ops", d])),
        "record 20\n"
    );

    let list = text(&tidelog(&["consumers", d]));
    assert!(list.contains("ops"), "{list}");
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["consumers", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["name"], "ops");
    assert_eq!(json[0]["lag_records"], 0);
    assert_eq!(json[0]["active"], false);
    tidelog(&["consumers", d, "reset", "ops", "--to", "start"]);
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["consumers", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["lag_records"], 21);
    // By time: every record is older than the year 2100, none older than
    // 2000.
    tidelog(&[
        "consumers",
        d,
        "reset",
        "ops",
        "--to",
        "2100-01-01T00:00:00Z",
    ]);
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["consumers", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["lag_records"], 0);
    tidelog(&[
        "consumers",
        d,
        "reset",
        "ops",
        "--to",
        "2000-01-01T00:00:00Z",
    ]);
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["consumers", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["lag_records"], 21);
    let info = text(&tidelog(&["info", d]));
    assert!(info.contains("ops"), "{info}");
    tidelog(&["consumers", d, "delete", "ops"]);
    assert!(text(&tidelog(&["consumers", d])).contains("no consumers"));

    // One segment only: nothing to trim, and the dry run says so.
    let dry = text(&tidelog(&["trim", d, "--max-bytes", "1", "--dry-run"]));
    assert!(dry.contains("would delete 0 segments"), "{dry}");
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["trim", d])
        .output()
        .unwrap();
    assert!(!out.status.success(), "trim without a limit must refuse");
}

#[test]
fn groups_list_dead_letters_reset_and_delete() {
    use tidelog::{GroupOptions, Log};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    tidelog(&["append", "--create", d, "good", "poison", "fine"]);
    {
        // Deliver "poison" once, hand it back: with one delivery allowed,
        // it goes to the dead letters; the rest is acknowledged.
        let log = Log::open(&dir).unwrap();
        let mut m = log
            .group_member_with("jobs", GroupOptions::new().batch(1).max_deliveries(1))
            .unwrap();
        for _ in 0..2 {
            let mut b = m.claim().unwrap().unwrap();
            let r = m.next_record(&mut b).unwrap().unwrap().to_vec();
            if r == b"poison" {
                m.release(b).unwrap();
            } else {
                m.ack(b).unwrap();
            }
        }
        while let Some(b) = m.claim().unwrap() {
            m.ack(b).unwrap();
        }
    }
    let list = text(&tidelog(&["groups", d]));
    assert!(list.contains("jobs"), "{list}");
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["groups", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["name"], "jobs");
    assert_eq!(json[0]["lag_records"], 0);
    assert_eq!(json[0]["dead_letters"], 1);
    assert_eq!(json[0]["members"].as_array().unwrap().len(), 0);
    let dead = text(&tidelog(&["groups", d, "dead-letters", "jobs"]));
    assert!(dead.contains("poison"), "{dead}");
    let dead: serde_json::Value =
        serde_json::from_slice(&tidelog(&["groups", "--json", d, "dead-letters", "jobs"]).stdout)
            .unwrap();
    assert_eq!(dead[0]["record"], "poison");
    assert_eq!(dead[0]["deliveries"], 1);
    let info = text(&tidelog(&["info", d]));
    assert!(info.contains("jobs"), "{info}");
    tidelog(&["groups", d, "reset", "jobs", "--to", "start"]);
    let json: serde_json::Value =
        serde_json::from_slice(&tidelog(&["groups", "--json", d]).stdout).unwrap();
    assert_eq!(json[0]["lag_records"], 3);
    tidelog(&["groups", d, "delete", "jobs"]);
    assert!(text(&tidelog(&["groups", d])).contains("no consumer groups"));
}

#[test]
fn cat_says_where_it_is_stuck_behind_a_live_appender_and_passes_a_dead_ones_hole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let log = tidelog::Log::open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"before").unwrap();
    // An appender of this (live) process holds a reservation; a record is
    // appended after it.
    let hole = a.reserve(8).unwrap();
    let at = hole.position();
    log.appender().unwrap().append(b"after").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["cat", d])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(text(&out), "before\n");
    assert!(
        stderr.contains(&format!("stopped at position {at}")) && stderr.contains("alive"),
        "{stderr}"
    );
    // The reservation is leaked and its appender dropped: the hole's owner
    // is gone, and the read-only `cat` passes over the hole by itself.
    std::mem::forget(hole);
    drop(a);
    assert_eq!(text(&tidelog(&["cat", d])), "before\nafter\n");
}

/// Runs `tidelog` with `args`, standard input `input`: its exit code,
/// standard output and standard error.
fn run(args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_missing_logs_and_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    // Commands that only read refuse a missing log: 1, and nothing made.
    for cmd in ["cat", "info", "verify", "tail", "consumers"] {
        let (code, _, err) = run(&[cmd, d], b"");
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(err.contains("no log at"), "{cmd}: {err}");
    }
    // `append` too, unless told to create one.
    let (code, _, err) = run(&["append", d, "x"], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--create"), "{err}");
    assert!(!dir.exists(), "a log was made at a mistyped path");
    // Usage errors: 2.
    let (code, _, _) = run(&["cat"], b"");
    assert_eq!(code, Some(2));
    let (code, _, _) = run(&["cat", "--from", "yesterday-ish", d], b"");
    assert_eq!(code, Some(2));
    // Fine: 0.
    let (code, out, err) = run(&["append", "--create", d, "one", "two"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 2);
    // Past the end: a clear error.
    let (code, _, err) = run(&["cat", "--from", "999999999", d], b"");
    assert_eq!(code, Some(1));
    assert!(err.contains("past the end of the log"), "{err}");
    let (code, out, _) = run(&["cat", "--from", "end", d], b"");
    assert_eq!((code, out.len()), (Some(0), 0));
    let (code, out, _) = run(&["cat", "--from", "start", d], b"");
    assert_eq!((code, out), (Some(0), b"one\ntwo\n".to_vec()));
}

#[test]
fn append_takes_binary_records_lines_of_any_bytes_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    // Lines that are not UTF-8.
    let (code, out, err) = run(&["append", "--create", d], b"caf\xe9\n\xff\xfe\nplain\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 3);
    // Length-prefixed records: a newline and a zero byte inside one.
    let mut stream = Vec::new();
    for r in [&b"two\nlines"[..], b"\0\x01\x02", b""] {
        stream.extend_from_slice(&(r.len() as u32).to_le_bytes());
        stream.extend_from_slice(r);
    }
    let (code, out, err) = run(&["append", "--binary", d], &stream);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 3);
    // A stream cut inside a record: an error, what came before appended.
    let mut cut = (9u32).to_le_bytes().to_vec();
    cut.extend_from_slice(b"short");
    let (code, _, err) = run(&["append", "--binary", d], &cut);
    assert_eq!(code, Some(1));
    assert!(err.contains("ended inside a record"), "{err}");
    // A whole file as one record.
    let f = tmp.path().join("blob");
    std::fs::write(&f, [0u8, 1, 2, 255]).unwrap();
    let (code, _, err) = run(&["append", "--file", f.to_str().unwrap(), "--", d], b"");
    assert_eq!(code, Some(0), "{err}");
    let log = tidelog::Log::open_read_only(&dir).unwrap();
    let mut r = log.reader();
    let mut got = Vec::new();
    while let Some(rec) = r.try_next().unwrap() {
        got.push(rec.to_vec());
    }
    let want: Vec<Vec<u8>> = vec![
        b"caf\xe9".to_vec(),
        b"\xff\xfe".to_vec(),
        b"plain".to_vec(),
        b"two\nlines".to_vec(),
        b"\0\x01\x02".to_vec(),
        Vec::new(),
        vec![0, 1, 2, 255],
    ];
    assert_eq!(got, want);
}

#[test]
fn cat_skips_damage_when_told_and_ends_quietly_on_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    {
        // Small segments: their boundary index has a mark every 4 KiB, so
        // a reader finds a proven boundary soon after damage.
        let log = tidelog::Options::new()
            .segment_capacity(256 << 10)
            .grow_step(4096)
            .open(&dir)
            .unwrap();
        let mut a = log.appender().unwrap();
        for i in 0..2000 {
            a.append(format!("record {i:05}").as_bytes()).unwrap();
        }
    }
    // A closed pipe: the reader of the output goes away after one line.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} cat {d} | head -n 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_tidelog")
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And for JSON lines.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} cat --json {d} | head -n 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_tidelog")
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A command that prints with `println!` (its output here may fit the
    // pipe before `head` closes it, so this checks only that nothing goes
    // wrong; the panic hook for a closed pipe was checked by hand with a
    // larger output).
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} info {d} | head -n 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_tidelog")
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Damage the record at index 100 (all records are 12 bytes: frames of
    // 32 with the header and the append time).
    let seg = dir.join(format!("{:016x}.tlog", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096 + 32 * 100 + 20] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    // Without --skip-damaged: the records before, then exit 3.
    let (code, out, err) = run(&["cat", d], b"");
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 100);
    // With it: every other record, the skip on stderr, exit 3. (Records
    // between the damage and the next proven boundary are lost to it.)
    let (code, out, err) = run(&["cat", "--skip-damaged", d], b"");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("skipped damage"), "{err}");
    let text = String::from_utf8_lossy(&out).into_owned();
    let n = text.lines().count();
    assert!(n > 100 && n < 2000, "{n} records printed");
    assert_eq!(text.lines().last(), Some("record 01999"));
    // `append` whose positions nobody reads any more still appends
    // everything it is given.
    let before = tidelog::Log::open_read_only(&dir)
        .unwrap()
        .end_position()
        .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "seq 1 5000 | {} append {d} | head -n 1 >/dev/null; echo \"${{PIPESTATUS[1]}}\"",
            env!("CARGO_BIN_EXE_tidelog")
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = tidelog::Log::open_read_only(&dir).unwrap();
    let mut r = log.reader_at(before).unwrap();
    let mut n = 0;
    while r.try_next().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 5000, "appends stopped with the positions' reader");
}

#[test]
fn info_and_cat_speak_json_and_info_shows_units() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    {
        let log = tidelog::Log::open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        a.append(b"plain text").unwrap();
        a.append(&[0xff, 0x00]).unwrap();
        log.consumer("ops").unwrap().commit().unwrap();
    }
    let info: serde_json::Value =
        serde_json::from_slice(&tidelog(&["info", "--json", d]).stdout).unwrap();
    assert_eq!(info["segments"][0]["base"], 0);
    assert!(info["segments"][0]["created"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(info["consumers"][0]["name"], "ops");
    assert!(info["end_position"].as_u64().unwrap() > 4096);
    let id = tidelog::Log::open_read_only(&dir).unwrap().id().to_string();
    assert_eq!(info["id"], id.as_str());
    let text = text(&tidelog(&["info", d]));
    assert!(text.contains("KiB") || text.contains("MiB"), "{text}");
    assert!(text.contains(&format!("log id: {id}")), "{text}");
    let cat = text_of(&tidelog(&["cat", "--json", d]));
    let lines: Vec<serde_json::Value> = cat
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["payload"], "plain text");
    assert_eq!(lines[0]["position"], 4096);
    assert_eq!(lines[1]["payload_base64"], "/wA=");
    assert_eq!(lines[1]["position"], lines[0]["next"]);
}

fn text_of(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn cat_starts_at_a_time_and_prints_record_times() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (code, _, err) = run(&["append", "--create", d, "early"], b"");
    assert_eq!(code, Some(0), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(60));
    let (code, cut, err) = run(&["cat", "--json", "--from", "end", d], b"");
    assert_eq!((code, cut.len()), (Some(0), 0), "{err}");
    // The cut between the two records, as RFC 3339 with a fraction.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    let (code, _, err) = run(&["append", d, "late"], b"");
    assert_eq!(code, Some(0), "{err}");
    let rfc = |secs: u64, nanos: u32| {
        // Through `date`, to check the parser against another implementation.
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
            .output()
            .unwrap();
        format!(
            "{}.{nanos:09}Z",
            String::from_utf8_lossy(&out.stdout).trim()
        )
    };
    let between = rfc(now.as_secs(), now.subsec_nanos());
    let (code, out, err) = run(&["cat", "--from", &between, d], b"");
    assert_eq!(
        (code, out),
        (Some(0), b"late\n".to_vec()),
        "{between}: {err}"
    );
    // The same instant with an offset.
    let shifted = {
        let s = rfc(now.as_secs() + 5400, now.subsec_nanos());
        s.replace('Z', "+01:30")
    };
    let (code, out, err) = run(&["cat", "--from", &shifted, d], b"");
    assert_eq!(
        (code, out),
        (Some(0), b"late\n".to_vec()),
        "{shifted}: {err}"
    );
    // --since: both records are younger than an hour, none is from the future.
    let (code, out, _) = run(&["cat", "--since", "1h", d], b"");
    assert_eq!((code, out), (Some(0), b"early\nlate\n".to_vec()));
    let (code, out, _) = run(&["cat", "--since", "0s", d], b"");
    assert_eq!((code, out.len()), (Some(0), 0));
    // JSON lines carry each record's time, between the cuts.
    let (code, out, _) = run(&["cat", "--json", d], b"");
    assert_eq!(code, Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
    assert!(
        times[0] < between.as_str() && between.as_str() < times[1],
        "{times:?}"
    );
    // Usage errors: a time that is not one, and --from with --since.
    for bad in [
        &["cat", "--from", "2026-13-01T00:00:00Z", d][..],
        &["cat", "--from", "2026-12-01 10:00", d],
        &["cat", "--since", "10 minutes", d],
        &["cat", "--since", "10m", "--from", "start", d],
    ] {
        let (code, _, err) = run(bad, b"");
        assert_eq!(code, Some(2), "{bad:?}: {err}");
    }
}

#[test]
fn times_that_do_not_exist_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (code, _, err) = run(&["append", "--create", d, "x"], b"");
    assert_eq!(code, Some(0), "{err}");
    for bad in [
        "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-12-01T24:00:00Z",
        "2026-12-01T10:00:00+25:00",
        "2026-12-01T10:00:00",
        "",
    ] {
        let (code, _, err) = run(&["cat", "--from", bad, d], b"");
        assert_eq!(code, Some(2), "{bad:?}: {err}");
    }
    // A leap day that exists, and a time before 1970: both fine.
    for good in ["2024-02-29T12:00:00.5Z", "1969-12-31T23:59:59Z"] {
        let (code, out, err) = run(&["cat", "--from", good, d], b"");
        assert_eq!((code, out), (Some(0), b"x\n".to_vec()), "{good}: {err}");
    }
}
