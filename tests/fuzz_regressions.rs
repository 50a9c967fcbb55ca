//! Every input the fuzzers found a failure with, replayed through the
//! target that found it. Each test names what was wrong and how it was
//! fixed; the bytes are the fuzzer's artifact, minimised where possible.

#[path = "../fuzz/src/lib.rs"]
mod targets;

/// Found by `recover`: an image whose header claimed every frame was
/// verified (so recovery did not run) held an end-of-segment marker in the
/// middle of a segment that was not full. Appends went on after the marker,
/// where readers following it never looked. Fixed: a reader meeting an end
/// marker in a segment whose tail has not crossed the data limit reports
/// `CorruptFrame` (no writer makes one), and `skip_damaged` gets past it.
#[test]
fn recover_end_marker_in_a_segment_that_is_not_full() {
    targets::recover(&[
        0xb1, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x08, 0x29, 0xfc, 0xff, 0xfe, 0x00,
        0x0a, 0x20, 0xef, 0xff, 0xff, 0xfe, 0x19, 0xff, 0x00, 0x64, 0x0a, 0x20, 0xef, 0xff, 0x64,
    ]);
}

/// Found by `recover` (the same defect, raw mode): a text file taken as a
/// segment body.
#[test]
fn recover_end_marker_in_a_segment_that_is_not_full_raw() {
    targets::recover(b"00000000: b11d 0000 0000 0000 8008 29fc fffe 000a  ..........).....\x0a00000010: 20ef ffff fe19 ff00 640a 20ef ff64        .......d. ..d\x0a");
}

/// Found by `recover` in CI: an image claiming every frame verified (so no
/// recovery) started with a padding frame whose checksum the fuzzer solved
/// and whose length ran 150 MB past the 64 KiB segment. Readers followed it
/// off the end of the segment and never saw the records appended after it.
/// Fixed: padding that runs past the tail is reported as `CorruptFrame`
/// (no writer makes one), and `skip_damaged` gets past it.
#[test]
fn recover_padding_running_past_the_segment() {
    targets::recover(&[
        0x74, 0x29, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xc0, 0x00, 0x0a, 0x29, 0x1e,
        0x03, 0x01, 0x00, 0x66, 0x00, 0x0a, 0x29, 0x1e, 0x03, 0x01, 0xc0, 0xc0, 0x00, 0x0a, 0x29,
        0x1e, 0x03, 0x01, 0x00, 0x66, 0x00, 0x0a, 0x29, 0x1e, 0x00, 0x66,
    ]);
}
