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

/// A raw-mode `recover` input: `mode`, then the segment body.
fn raw_image_input(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut input = vec![mode];
    input.extend_from_slice(body);
    input
}

/// Two records, the second one's frame cut `cut` bytes short in the body;
/// its payload is zeros, so it still passes its CRC when the file's zero
/// fill stands in for the missing bytes. The tail word (the end of the
/// body) then lies inside the second frame.
fn frame_past_the_tail(len: usize, cut: usize) -> Vec<u8> {
    use tidelog::format::{frame, HEADER_LEN};
    let mut body = Vec::new();
    frame::encode_data(HEADER_LEN, &[7; 3], &mut body);
    frame::encode_data(HEADER_LEN + body.len() as u64, &vec![0; len], &mut body);
    body.truncate(body.len() - cut);
    body
}

/// Found by `recover` in CI (the runner kept no artifact; these inputs
/// rebuild the case and fail the same assertion): a record that passes its
/// CRC but ends past the tail word. A read-only reader delivered it, then
/// recovery, which trusts the tail, cut it: "recovery lost records". No
/// writer publishes past its reservation, so recovery is right and the
/// reader was wrong. Fixed: readers report a record that ends past the tail
/// as `CorruptFrame`.
#[test]
fn recover_record_ending_past_the_tail() {
    for len in [1, 9, 24] {
        for cut in 1..=8 {
            targets::recover(&raw_image_input(0x00, &frame_past_the_tail(len, cut)));
        }
    }
}

/// Found while reproducing the above: the same image, but its header claims
/// every frame below the (aligned) tail verified, so no recovery runs. The
/// reader delivered the record crossing the tail, then the next append went
/// to the tail, inside that record, and a second open read different
/// records. Fixed by the reader's tail check: the record is `CorruptFrame`
/// (asserted directly by `a_record_ending_past_the_tail_is_not_delivered`
/// in tests/recovery.rs; the target no longer compares a second open of an
/// image that claims a watermark, see docs/FORMAT.md "What recovery and
/// readers trust").
#[test]
fn recover_record_ending_past_a_claimed_checked_tail() {
    for len in [1, 8, 9, 24] {
        targets::recover(&raw_image_input(0x20, &frame_past_the_tail(len, 8)));
    }
}

/// Found by `recover` against the first fix of the above, which also had
/// recovery scan past the tail and keep valid frames there: a header whose
/// `checked` watermark claims a tail behind frames that pass their CRC,
/// with a zero word at the tail, so the first open does not recover and
/// appends at the tail. The second open recovered, kept the stale frames
/// after the appended record and delivered them as records. Fixed by going
/// back to trusting the tail in recovery (what lies past it is zeroed; a
/// flushed record always lies below a durable tail).
#[test]
fn recover_valid_frames_past_a_tail_claimed_checked() {
    targets::recover(&[
        0xaa, 0x00, 0x0a, 0x00, 0x01, 0x00, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x68, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x08, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x3a, 0x02, 0x02, 0x34, 0x01, 0x00, 0x00, 0x00,
    ]);
}

/// Found by review (reading the reader and recovery side by side): an
/// in-progress header below a watermark the header claimed, its extent
/// running past the tail. Recovery started at the watermark and never
/// looked at it; a reader's unblocker padded over it, and once an append
/// had moved the tail past it, the padding swallowed the appended record.
/// Fixed: readers report an unfinished frame below the watermark, or one
/// running past the tail, as `CorruptFrame` and never pad it (asserted
/// directly by `an_unfinished_frame_below_the_watermark_is_never_padded` in
/// tests/recovery.rs).
#[test]
fn recover_in_progress_frame_past_a_tail_claimed_checked() {
    let mut input = vec![0x22];
    input.extend_from_slice(&tidelog::format::frame::in_progress_word(32).to_le_bytes());
    input.extend_from_slice(&[0xCD; 72]);
    targets::recover(&input);
}

/// Found by review: damage followed, inside it, by a padding frame that
/// runs past the tail, and then by a valid record. Recovery kept the damage
/// in place; after an append moved the tail past the padding, a reader
/// skipping the damage found the padding valid and jumped over both the
/// record and the appended one. The same with an in-progress header that
/// runs past the tail instead of the damage and padding. Fixed: recovery
/// zeroes a damaged range after its header word (readers still report it
/// there) and pads an in-progress header that runs past the tail, so what
/// a reader skips to no longer depends on the tail.
#[test]
fn recover_damage_hiding_a_frame_that_validates_later() {
    use tidelog::format::{frame, HEADER_LEN};
    let h = HEADER_LEN;
    let mut body = Vec::new();
    body.extend_from_slice(&0x7000_0000u64.to_le_bytes());
    body.extend_from_slice(&frame::padding_word(h + 8, 40).to_le_bytes());
    frame::encode_data(h + 16, &[5; 8], &mut body);
    targets::recover(&raw_image_input(0x00, &body));

    let mut body = Vec::new();
    body.extend_from_slice(&frame::in_progress_word(32).to_le_bytes());
    frame::encode_data(h + 8, &[6; 8], &mut body);
    targets::recover(&raw_image_input(0x00, &body));
}

/// Found by `recover` on random seeds, minutes after recovery stopped
/// trusting a `checked` watermark that no frame starts at: an image whose
/// header claimed `checked` equal to a tail lying inside a padding frame.
/// The first open trusted that (as it should: the two agree), and the
/// record appended after it landed inside the old padding. At the next
/// open the word at the new tail was stale payload, so recovery distrusted
/// the watermark, rescanned the segment from its start, followed the old
/// padding and swallowed the acknowledged record. Fixed: a watermark equal
/// to the tail is a frame boundary by construction (appends go there), as
/// `Log::reader_at` already held; only a watermark that differs from the
/// tail must show a valid frame on a copy of the file.
#[test]
fn recover_watermark_equal_to_the_tail_is_trusted() {
    targets::recover(&[
        0xaa, 0x00, 0x0a, 0xa2, 0xae, 0xae, 0xee, 0xae, 0xae, 0xae, 0x1e, 0x1e, 0x00, 0x06, 0xc1,
        0x00, 0x00, 0x05, 0x0c, 0x1c, 0x03, 0x00, 0x28, 0x2d, 0x03, 0x00, 0x10, 0xf9, 0x05, 0xff,
        0x03, 0x00,
    ]);
}
