//! Replays the fuzzers' seed corpus (`fuzz/seeds/<target>/`) through
//! the fuzz targets' own bodies on stable, so that CI without nightly still
//! exercises every target. The bodies live in `fuzz/src/lib.rs`.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        f(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn frame_corpus() {
    replay("frame", targets::frame);
}

#[test]
fn header_corpus() {
    replay("header", targets::header);
}

#[test]
fn recover_corpus() {
    replay("recover", targets::recover);
}

#[test]
fn cursor_corpus() {
    replay("cursor", targets::cursor);
}

#[test]
fn group_corpus() {
    replay("group", targets::group);
}

#[test]
fn ops_corpus() {
    replay("ops", targets::ops);
}

/// Regenerates the seed corpus: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the format changes"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, name, data) in targets::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    }
}
