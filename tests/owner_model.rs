//! Model check of judging a hole's owner (docs/FORMAT.md, "Judging the
//! owner of a hole"): writers that may die at any step, a reader with
//! write access that pads a dead owner's hole, and a read-only reader that
//! passes over it by itself.
//!
//! An explicit-state search over every interleaving of the atomic steps
//! (sequentially consistent: the memory-ordering argument is in FORMAT.md
//! and `src/owners.rs`). A writer announces its floor in its `busy` word,
//! reserves, claims, fills, publishes, then clears `busy`; it may die
//! before any of these steps (its lock, `alive`, goes with it). A judge at
//! an unfinished frame below the tail it loaded scans the `busy` words one
//! step at a time, probing the liveness of those at or below its position,
//! reloads the frame's word, and only then acts. Judges never time out:
//! the unblock timeout is the other model's business
//! (`tests/protocol_model.rs`).
//!
//! Checked in every final state:
//! - every writer that finished has exactly one published frame, at the
//!   position it was told, with its own payload; a dead one at most one;
//! - both readers delivered exactly the records the log holds, in order:
//!   nobody passed over a record a live writer was still to publish;
//! - no reader took a payload word for a header.
//!
//! Broken protocols must be caught: announcing `busy` after the
//! reservation, clearing it before the publish, and acting without
//! reloading the frame's word after the scan.

use std::collections::HashSet;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Word {
    Zero,
    InProgress(u8),
    Data(u8, u8),
    Pad(u8),
    Payload(u8),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Writer {
    Announce,
    Reserve,
    /// Broken protocols only: announces `busy` after reserving.
    AnnounceLate {
        off: u8,
    },
    Claim {
        off: u8,
    },
    Fill {
        off: u8,
        next: u8,
    },
    Publish {
        off: u8,
    },
    Clear {
        off: u8,
    },
    Done {
        off: u8,
    },
    Full,
    Dead,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Judge {
    Walk {
        at: u8,
    },
    /// Scanning `busy` words: `t` is the tail loaded first, `j` the next
    /// writer's word, `limit` the smallest `busy` above `at` so far.
    Scan {
        at: u8,
        word: Word,
        t: u8,
        j: u8,
        limit: u8,
    },
    /// Read-write: compare-and-swap the in-progress word for padding.
    PadFrame {
        at: u8,
        len: u8,
    },
    /// Read-write: compare-and-swap zero words for 1-word padding, below
    /// `limit`; read-only: pass over zero words below `limit`.
    Run {
        at: u8,
        q: u8,
        limit: u8,
    },
}

const N: u8 = 8;

#[derive(Clone, Copy)]
struct Protocol {
    lens: &'static [u8],
    /// How many writers may die.
    deaths: u8,
    /// Announce `busy` before the reservation (correct) or after it.
    announce_first: bool,
    /// Clear `busy` after the publish (correct) or after the claim.
    clear_after_publish: bool,
    /// Reload the frame's word after the scan (correct) or trust the
    /// first load.
    reload: bool,
}

const CORRECT: Protocol = Protocol {
    lens: &[],
    deaths: 1,
    announce_first: true,
    clear_after_publish: true,
    reload: true,
};

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    words: [Word; N as usize],
    tail: u8,
    writers: Vec<Writer>,
    /// 0: idle; otherwise the announced floor plus one.
    busy: Vec<u8>,
    floor: Vec<u8>,
    deaths: u8,
    /// The reader with write access, then the read-only one.
    judges: [Judge; 2],
    seen: [Vec<u8>; 2],
}

impl State {
    fn new(p: Protocol) -> State {
        let n = p.lens.len();
        State {
            words: [Word::Zero; N as usize],
            tail: 0,
            writers: vec![Writer::Announce; n],
            busy: vec![0; n],
            floor: vec![0; n],
            deaths: 0,
            judges: [Judge::Walk { at: 0 }; 2],
            seen: [Vec::new(), Vec::new()],
        }
    }

    fn successors(&self, p: Protocol) -> Vec<State> {
        let mut out = Vec::new();
        for (i, w) in self.writers.iter().enumerate() {
            let len = p.lens[i];
            if matches!(w, Writer::Done { .. } | Writer::Full | Writer::Dead) {
                continue;
            }
            if self.deaths < p.deaths {
                let mut s = self.clone();
                s.writers[i] = Writer::Dead;
                s.deaths += 1;
                out.push(s);
            }
            let mut s = self.clone();
            let next = match *w {
                Writer::Announce => {
                    if p.announce_first {
                        s.busy[i] = s.floor[i] + 1;
                    }
                    Writer::Reserve
                }
                Writer::Reserve => {
                    let off = s.tail;
                    if off + len > N {
                        // Moves on to the next segment, where its floor
                        // is above everything here.
                        s.busy[i] = 0;
                        Writer::Full
                    } else {
                        s.tail += len;
                        s.floor[i] = off + len;
                        if p.announce_first {
                            Writer::Claim { off }
                        } else {
                            // Broken: the floor is announced in a step of
                            // its own, after the reservation.
                            Writer::AnnounceLate { off }
                        }
                    }
                }
                Writer::AnnounceLate { off } => {
                    s.busy[i] = off + 1;
                    Writer::Claim { off }
                }
                Writer::Claim { off } => {
                    if s.words[off as usize] == Word::Zero {
                        s.words[off as usize] = Word::InProgress(len);
                        if !p.clear_after_publish {
                            s.busy[i] = 0;
                        }
                        Writer::Fill { off, next: 1 }
                    } else {
                        Writer::Announce
                    }
                }
                Writer::Fill { off, next } => {
                    if next == len {
                        Writer::Publish { off }
                    } else {
                        s.words[(off + next) as usize] = Word::Payload(i as u8);
                        Writer::Fill {
                            off,
                            next: next + 1,
                        }
                    }
                }
                Writer::Publish { off } => {
                    if s.words[off as usize] == Word::InProgress(len) {
                        s.words[off as usize] = Word::Data(i as u8, len);
                        Writer::Clear { off }
                    } else {
                        Writer::Announce
                    }
                }
                Writer::Clear { off } => {
                    s.busy[i] = 0;
                    Writer::Done { off }
                }
                Writer::Done { .. } | Writer::Full | Writer::Dead => unreachable!(),
            };
            s.writers[i] = next;
            out.push(s);
        }
        for k in 0..2 {
            let writable = k == 0;
            let mut s = self.clone();
            let next = match self.judges[k] {
                Judge::Walk { at } if at < N => match s.words[at as usize] {
                    Word::Data(id, len) => {
                        s.seen[k].push(id);
                        Judge::Walk { at: at + len }
                    }
                    Word::Pad(len) => Judge::Walk { at: at + len },
                    w @ (Word::Zero | Word::InProgress(_)) if at < s.tail => Judge::Scan {
                        at,
                        word: w,
                        t: s.tail,
                        j: 0,
                        limit: N,
                    },
                    _ => continue,
                },
                Judge::Walk { .. } => continue,
                Judge::Scan {
                    at,
                    word,
                    t,
                    j,
                    limit,
                } if (j as usize) < s.writers.len() => {
                    let b = s.busy[j as usize];
                    let alive = s.writers[j as usize] != Writer::Dead;
                    if b != 0 && b - 1 <= at {
                        if alive {
                            // A live writer may own it: wait.
                            Judge::Walk { at }
                        } else {
                            Judge::Scan {
                                at,
                                word,
                                t,
                                j: j + 1,
                                limit,
                            }
                        }
                    } else {
                        let limit = if b != 0 { limit.min(b - 1) } else { limit };
                        Judge::Scan {
                            at,
                            word,
                            t,
                            j: j + 1,
                            limit,
                        }
                    }
                }
                Judge::Scan {
                    at, word, t, limit, ..
                } => {
                    if p.reload && s.words[at as usize] != word {
                        Judge::Walk { at }
                    } else {
                        match (word, writable) {
                            (Word::InProgress(len), true) => Judge::PadFrame { at, len },
                            (Word::InProgress(len), false) => Judge::Walk { at: at + len },
                            (_, _) => Judge::Run {
                                at,
                                q: at,
                                limit: limit.min(t),
                            },
                        }
                    }
                }
                Judge::PadFrame { at, len } => {
                    if s.words[at as usize] == Word::InProgress(len) {
                        s.words[at as usize] = Word::Pad(len);
                    }
                    Judge::Walk { at }
                }
                Judge::Run { at, q, limit } => {
                    if q < limit && s.words[q as usize] == Word::Zero {
                        if writable {
                            s.words[q as usize] = Word::Pad(1);
                        }
                        Judge::Run {
                            at,
                            q: q + 1,
                            limit,
                        }
                    } else if writable {
                        Judge::Walk { at }
                    } else {
                        Judge::Walk { at: q }
                    }
                }
            };
            s.judges[k] = next;
            out.push(s);
        }
        out
    }

    /// The invariants of a final state (no step possible).
    fn check(&self) -> Result<(), String> {
        let mut delivered = Vec::new();
        let mut at = 0u8;
        while at < N {
            match self.words[at as usize] {
                Word::Data(id, len) => {
                    for k in 1..len {
                        if self.words[(at + k) as usize] != Word::Payload(id) {
                            return Err(format!(
                                "frame of writer {id} at {at} has a foreign payload"
                            ));
                        }
                    }
                    delivered.push((id, at));
                    at += len;
                }
                Word::Pad(len) | Word::InProgress(len) => at += len,
                // Below the tail with every writer finished or dead: a dead
                // writer's empty reservation.
                Word::Zero if at < self.tail => at += 1,
                Word::Zero => break,
                w => return Err(format!("reader met {w:?} at {at}")),
            }
        }
        let ids: Vec<u8> = delivered.iter().map(|(id, _)| *id).collect();
        for (k, seen) in self.seen.iter().enumerate() {
            if *seen != ids {
                let who = ["read-write", "read-only"][k];
                return Err(format!(
                    "the {who} reader read {seen:?}, the log holds {ids:?}"
                ));
            }
        }
        for (i, w) in self.writers.iter().enumerate() {
            let mine: Vec<_> = delivered
                .iter()
                .filter(|(id, _)| *id as usize == i)
                .collect();
            match *w {
                Writer::Done { off } if mine.len() != 1 || mine[0].1 != off => {
                    return Err(format!(
                        "writer {i} committed at {off}, reader saw {mine:?}"
                    ));
                }
                Writer::Dead if mine.len() > 1 => {
                    return Err(format!("dead writer {i} published twice"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn explore(p: Protocol) -> Result<usize, String> {
    let start = State::new(p);
    let mut seen = HashSet::new();
    let mut stack = vec![start.clone()];
    seen.insert(start);
    while let Some(s) = stack.pop() {
        let next = s.successors(p);
        if next.is_empty() {
            s.check().map_err(|e| format!("{e}\nin {s:?}"))?;
        }
        for n in next {
            if seen.insert(n.clone()) {
                stack.push(n);
            }
        }
    }
    Ok(seen.len())
}

#[test]
fn dead_owners_holes_are_passed_and_live_owners_records_never() {
    for lens in [&[2u8, 2][..], &[2, 3][..], &[1, 2, 2][..]] {
        let t = std::time::Instant::now();
        let states = explore(Protocol { lens, ..CORRECT }).unwrap();
        eprintln!("{lens:?}, one death: {states} states in {:?}", t.elapsed());
        assert!(states > 1000, "suspiciously small state space: {states}");
    }
}

#[test]
fn the_check_catches_busy_announced_after_the_reservation() {
    let err = explore(Protocol {
        lens: &[2, 2],
        announce_first: false,
        ..CORRECT
    })
    .expect_err("announcing after reserving must be caught");
    assert!(err.contains("read-only reader read"), "{err}");
}

#[test]
fn the_check_catches_busy_cleared_before_the_publish() {
    let err = explore(Protocol {
        lens: &[2, 2],
        clear_after_publish: false,
        ..CORRECT
    })
    .expect_err("clearing busy at the claim must be caught");
    assert!(err.contains("read-only reader read"), "{err}");
}

#[test]
fn the_check_catches_a_judge_that_does_not_reload() {
    let err = explore(Protocol {
        lens: &[2, 2],
        reload: false,
        ..CORRECT
    })
    .expect_err("acting on a word loaded before the scan must be caught");
    assert!(err.contains("read"), "{err}");
}
