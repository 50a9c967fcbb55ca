//! Golden files: segment files of format version 1, written by this code
//! from fixed appends and kept in `tests/golden/v1/`. Today's code must
//! read each one to the records it holds, and write each one again, byte
//! for byte, from the same appends. Every other format test encodes and
//! decodes with the same code, so a field moved on both sides would pass
//! them; it does not pass these.
//!
//! The creation time and the kernel's boot id are pinned (they are the
//! only inputs of a segment file that are not the caller's). After a change
//! that is meant to change the format, regenerate with
//! `cargo test --test golden -- --ignored write_golden_files` and bump
//! the format version.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tidelog::{Log, Options};

const CREATED: u64 = 1_764_460_800_000_000_000;
const BOOT: &str = "0f6c1f5e-7d2b-4b4e-9a51-3c1d2e4f5a6b";

fn options() -> Options {
    Options::new().segment_capacity(64 << 10).grow_step(4096)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

/// A case: its name, what a read-only reader from the start delivers, and
/// what a reader delivers once a writable open has recovered the log.
struct Case {
    name: &'static str,
    read: Vec<&'static [u8]>,
    recovered: Vec<&'static [u8]>,
}

fn cases() -> Vec<Case> {
    let thousand: &'static [u8] = &[b'r'; 1000];
    vec![
        Case {
            name: "empty",
            read: vec![],
            recovered: vec![],
        },
        Case {
            name: "records",
            read: vec![b"alpha", b"beta", b"gamma"],
            recovered: vec![b"alpha", b"beta", b"gamma"],
        },
        Case {
            name: "rollover",
            read: vec![thousand; 70],
            recovered: vec![thousand; 70],
        },
        Case {
            name: "padding",
            read: vec![b"one", b"two"],
            recovered: vec![b"one", b"two"],
        },
        Case {
            name: "dead-writer",
            // A read-only reader waits at the hole; recovery pads it.
            read: vec![b"one"],
            recovered: vec![b"one", b"three"],
        },
        Case {
            name: "torn-tail",
            read: vec![b"one", b"two"],
            recovered: vec![b"one", b"two"],
        },
    ]
}

/// Writes case `name` into `dir` with this code.
fn write_case(name: &str, dir: &Path) {
    tidelog::internals::pin(CREATED, BOOT);
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    match name {
        "empty" => {}
        "records" => {
            for r in [&b"alpha"[..], b"beta", b"gamma"] {
                a.append(r).unwrap();
            }
        }
        "rollover" => {
            for _ in 0..70 {
                a.append(&[b'r'; 1000]).unwrap();
            }
            assert_eq!(log.segments().unwrap().len(), 2);
        }
        "padding" => {
            a.append(b"one").unwrap();
            // Dropped without a commit: the frame becomes padding.
            drop(a.reserve(100).unwrap());
            a.append(b"two").unwrap();
        }
        "dead-writer" => {
            // A writer that died after claiming a frame and writing part
            // of it, with a record published after its hole.
            a.append(b"one").unwrap();
            let mut r = a.reserve(40).unwrap();
            r[..10].fill(b'x');
            std::mem::forget(r);
            log.appender().unwrap().append(b"three").unwrap();
            // A dead writer never closes: leave without the close protocol.
            std::mem::forget(a);
            std::mem::forget(log);
            return;
        }
        "torn-tail" => {
            a.append(b"one").unwrap();
            a.append(b"two").unwrap();
            let mut r = a.reserve(100).unwrap();
            r[..30].fill(b't');
            std::mem::forget(r);
            std::mem::forget(a);
            std::mem::forget(log);
            return;
        }
        other => panic!("no case {other}"),
    }
    drop(a);
    log.close().unwrap();
}

/// The segment files of a log directory: name to bytes.
fn segment_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tlog"))
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn records(log: &Log) -> Vec<Vec<u8>> {
    let mut r = log.reader();
    let mut out = Vec::new();
    while let Some(rec) = r.try_next().unwrap() {
        out.push(rec.to_vec());
    }
    out
}

#[test]
fn todays_code_writes_the_golden_files_byte_for_byte() {
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(case.name);
        write_case(case.name, &dir);
        let written = segment_files(&dir);
        let golden = segment_files(&golden_dir().join(case.name));
        assert!(!golden.is_empty(), "{}: no golden files", case.name);
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            golden.keys().collect::<Vec<_>>(),
            "{}: other files",
            case.name
        );
        for (name, bytes) in &golden {
            let w = &written[name];
            assert_eq!(w.len(), bytes.len(), "{}/{name}: length", case.name);
            if let Some(i) = w.iter().zip(bytes).position(|(a, b)| a != b) {
                panic!(
                    "{}/{name}: byte {i} (of {}) is {:#04x}, the golden file has {:#04x}",
                    case.name,
                    w.len(),
                    w[i],
                    bytes[i]
                );
            }
        }
    }
}

#[test]
fn todays_code_reads_the_golden_files() {
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(case.name);
        fs::create_dir(&dir).unwrap();
        for (name, bytes) in segment_files(&golden_dir().join(case.name)) {
            fs::write(dir.join(name), bytes).unwrap();
        }
        let ro = Log::open_read_only(&dir).unwrap();
        assert_eq!(records(&ro), case.read, "{}: read-only", case.name);
        drop(ro);
        // Recovered as on the boot that wrote them.
        tidelog::internals::pin(CREATED, BOOT);
        let log = options().open(&dir).unwrap();
        assert_eq!(records(&log), case.recovered, "{}: recovered", case.name);
    }
}

/// Rewrites `tests/golden/v1/` from today's code. Only for a deliberate
/// format change (which also bumps the format version).
#[test]
#[ignore = "writes tests/golden/v1; run by hand when the format changes on purpose"]
fn write_golden_files() {
    for case in cases() {
        let out = golden_dir().join(case.name);
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(case.name);
        write_case(case.name, &dir);
        for (name, bytes) in segment_files(&dir) {
            fs::write(out.join(name), bytes).unwrap();
        }
    }
}

/// The annotated hex dump in `docs/FORMAT.md` ("A segment file, byte by
/// byte") is the golden `records` segment: every row it lists matches the
/// file, and every row of the file that is not all zeros is listed.
#[test]
fn the_hex_dump_in_format_md_is_the_golden_file() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md")).unwrap();
    let start = doc
        .find("<!-- golden: records/0000000000000000.tlog -->")
        .expect("the marker of the dump in FORMAT.md");
    let block = &doc[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[..block.find("```").unwrap()];
    let file = fs::read(golden_dir().join("records/0000000000000000.tlog")).unwrap();
    let mut listed = std::collections::BTreeSet::new();
    for line in block.lines() {
        let Some((off, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(off) = usize::from_str_radix(off.trim(), 16) else {
            continue;
        };
        let hex = rest.split("  ").next().unwrap_or("");
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(
            &file[off..off + bytes.len()],
            &bytes[..],
            "row {off:#06x} of the dump differs from the file"
        );
        listed.insert(off);
    }
    assert!(listed.len() > 10, "the dump lists too few rows");
    for (row, chunk) in file.chunks(16).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            assert!(
                listed.contains(&(row * 16)),
                "row {:#06x} of the file is not zero and not in the dump",
                row * 16
            );
        }
    }
}
