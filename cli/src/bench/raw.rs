//! The physical-limit transport: fixed-size records copied into a shared
//! file mapping that grows like a tidelog segment (fallocate in 64 MiB
//! steps, pages pre-faulted 1 MiB ahead), published by storing a byte count.
//! No frames, no checksums, no lock-free multi-writer protocol: what tidelog
//! costs is the difference to this.
//!
//! The only `unsafe` of the command-line tool; each block says why it holds.
#![expect(
    unsafe_code,
    reason = "the raw-memcpy limit maps a file and writes through raw pointers"
)]

use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Advice, MmapOptions, MmapRaw};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Data starts after a page holding the published byte count.
const DATA: u64 = 4096;
const GROW: u64 = 64 << 20;
const PREFAULT: u64 = 1 << 20;

/// Creates the file of a raw run.
pub fn create(path: &Path) -> Result<()> {
    let f = File::create(path)?;
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, DATA)?;
    Ok(())
}

fn counter(map: &MmapRaw) -> &AtomicU64 {
    // SAFETY: the mapping is at least one page long (`map` maps DATA bytes
    // more than the capacity), its base is page-aligned, and the first word
    // is only ever accessed through this atomic: stored by the producer,
    // loaded by the consumer. The consumer's mapping is read-only, which
    // std allows for atomic loads of lock-free atomics (no store is ever made
    // through it).
    unsafe { AtomicU64::from_ptr(map.as_mut_ptr().cast::<u64>()) }
}

fn map(path: &Path, capacity: u64, writable: bool) -> Result<(File, MmapRaw)> {
    let file = OpenOptions::new().read(true).write(writable).open(path)?;
    let len = usize::try_from(DATA + capacity)?;
    let mut opts = MmapOptions::new();
    opts.len(len);
    let map = if writable {
        opts.map_raw(&file)?
    } else {
        opts.map_raw_read_only(&file)?
    };
    Ok((file, map))
}

pub struct RawProducer {
    file: File,
    map: MmapRaw,
    written: u64,
    grown: u64,
    populated: u64,
}

impl RawProducer {
    /// Opens the producer side and prepares the first 64 MiB (grown and
    /// pre-faulted), as the tidelog producer does before the clock starts.
    pub fn open(path: &Path, capacity: u64) -> Result<Self> {
        let (file, map) = map(path, capacity, true)?;
        let mut p = Self {
            file,
            map,
            written: DATA,
            grown: DATA,
            populated: DATA,
        };
        let ahead = (DATA + GROW).min(p.map.len() as u64);
        while p.populated < ahead {
            p.prepare(p.populated + PREFAULT)?;
        }
        Ok(p)
    }

    /// Grows the file and pre-faults pages up to `end`, in `PREFAULT`
    /// steps. Where the kernel cannot pre-fault, writes take the faults.
    fn prepare(&mut self, end: u64) -> Result<()> {
        let end = end.min(self.map.len() as u64);
        if end > self.grown {
            let to = (end.div_ceil(GROW) * GROW).min(self.map.len() as u64);
            rustix::fs::fallocate(
                &self.file,
                rustix::fs::FallocateFlags::empty(),
                self.grown,
                to - self.grown,
            )?;
            self.grown = to;
        }
        let to = (end.div_ceil(PREFAULT) * PREFAULT).min(self.grown);
        let from = self.populated & !4095;
        let _ = self
            .map
            .advise_range(Advice::PopulateWrite, from as usize, (to - from) as usize);
        self.populated = to;
        Ok(())
    }

    /// Keeps a 64 MiB window ahead of the writes prepared, 16 KiB per call,
    /// like `Appender::pretouch`.
    pub fn idle(&mut self) -> Result<()> {
        if self.populated < self.written + GROW && self.populated < self.map.len() as u64 {
            self.prepare(self.populated + (16 << 10))?;
        }
        Ok(())
    }

    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        let end = self.written + record.len() as u64;
        if end > self.map.len() as u64 {
            return Err("raw mapping full".into());
        }
        if end > self.populated {
            self.prepare(end)?;
        }
        // SAFETY: `written..end` is inside the mapping (checked above) and
        // inside the file (grown above); only this producer writes there, and
        // the consumer reads it only after the Release store below publishes
        // it. `record` is a separate allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                record.as_ptr(),
                self.map.as_mut_ptr().add(self.written as usize),
                record.len(),
            );
        }
        self.written = end;
        counter(&self.map).store(end, Ordering::Release);
        Ok(())
    }
}

pub struct RawConsumer {
    _file: File,
    map: MmapRaw,
    read: u64,
    size: u64,
    /// The producer's count as last loaded: reloaded only when the
    /// consumer has caught up with it, so the counter's cache line is not
    /// pulled across on every record.
    known: u64,
}

impl RawConsumer {
    /// Opens the consumer side of a run whose records are `size` bytes.
    pub fn open(path: &Path, capacity: u64, size: usize) -> Result<Self> {
        let (file, map) = map(path, capacity, false)?;
        Ok(Self {
            _file: file,
            map,
            read: DATA,
            size: size as u64,
            known: DATA,
        })
    }

    /// Waits (spinning) for the next record and hands it to `f`.
    pub fn pop(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let end = self.read + self.size;
        if end > self.map.len() as u64 {
            return Err("raw run longer than its mapping".into());
        }
        let c = counter(&self.map);
        while self.known < end {
            self.known = c.load(Ordering::Acquire);
            if self.known < end {
                std::hint::spin_loop();
            }
        }
        // SAFETY: an Acquire load saw the producer publish `end`, so the
        // bytes below it are written (the producer's copy happens-before its
        // Release store), inside the file (the producer grows it before it
        // writes) and inside the mapping (checked above), and never written
        // again.
        let record = unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(self.read as usize),
                self.size as usize,
            )
        };
        f(record)?;
        self.read = end;
        Ok(())
    }
}
