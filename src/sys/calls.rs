//! Thin wrappers around the system calls tidelog makes beyond what `std`
//! and memmap2 offer: `fallocate`, `futex`, the monotonic clocks,
//! `sysconf`, and `openat`/`linkat`/`unlinkat`. Each takes and returns safe
//! types; the `unsafe` is here and nowhere else outside `sys::map`.

use std::fs::File;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Parks the calling thread while `word` still holds `expected`, for at
/// most `timeout` (`FUTEX_WAIT`, shared between processes). Spurious
/// returns are allowed: the caller re-checks its condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for as long as it is borrowed
    // (it lives in a MAP_SHARED mapping that outlives the call); FUTEX_WAIT
    // only reads it (which the kernel allows on read-only mappings).
    // `ts_ptr` is null or points to a timespec that lives until the call
    // returns. The flags omit FUTEX_PRIVATE_FLAG because waiters and wakers
    // are in different processes. Errors (EAGAIN when the word changed,
    // EINTR, ETIMEDOUT) all mean "return to the caller", which re-checks
    // its condition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every thread, in any process, parked on `word`.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 for as long as it is borrowed;
    // FUTEX_WAKE does not access user memory beyond resolving the address.
    // The result (number woken, or an error for an address the kernel
    // cannot resolve) needs no handling: a reader that is not woken returns
    // at its timeout and re-checks.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Grows `file` to at least `len` bytes with its blocks allocated
/// (`fallocate(2)`, mode 0), so that no later store through a mapping can
/// find the disk full and raise SIGBUS. Never shrinks the file.
///
/// Not `fs2::FileExt::allocate`: it calls `posix_fallocate` and reports
/// `errno`, which `posix_fallocate` does not set, so a full disk came back
/// as whatever error happened last (seen: `ENOENT`). And not
/// `posix_fallocate` itself: where the file system lacks `fallocate`, glibc
/// emulates it by writing a zero into every block that reads as zero,
/// which races with other processes writing through their mappings and can
/// wipe a record. Such file systems get `EOPNOTSUPP` instead.
///
/// Only `from..len` is allocated: the caller knows the blocks below `from`
/// are allocated already. (Allocating from 0 every time is quadratic on
/// tmpfs, which walks every page of the range.)
pub(crate) fn allocate(file: &File, from: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let from = from.min(len);
    let (Ok(off), Ok(count)) = (
        libc::off_t::try_from(from),
        libc::off_t::try_from(len - from),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "length out of range",
        ));
    };
    if count == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: the descriptor is valid for as long as `file` is borrowed;
        // fallocate touches no memory of ours.
        let ret = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, count) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Nanoseconds on the monotonic clock. `precise: false` reads
/// `CLOCK_MONOTONIC_COARSE` (a few nanoseconds through the vDSO, resolution
/// of a scheduler tick), for timeouts of many milliseconds checked on every
/// poll of a spinning reader.
pub(crate) fn now_ns(precise: bool) -> u64 {
    clock_ns(if precise {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_MONOTONIC_COARSE
    })
}

/// Nanoseconds on `clock`.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; the clocks asked for here (monotonic and real-time, precise or
    // coarse) exist on every Linux this builds for, so the call does not
    // fail. If it did, `ts` would stay zero: a timeout would start late, a
    // claim would look fresh, a timestamp would read 1970; nothing unsafe.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The system's page size.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions and touches no memory of ours.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only when its CPU
/// has nothing else to run. Best effort.
pub(crate) fn make_thread_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads one `sched_param` we own; pid 0 is
    // the calling thread.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// The soft `RLIMIT_MEMLOCK`: how many bytes this process may lock in
/// memory without `CAP_IPC_LOCK`; `None` if unlimited (or unknown).
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// Whether this process holds `CAP_IPC_LOCK` (which lifts
/// `RLIMIT_MEMLOCK`), from the effective set in /proc/self/status.
pub(crate) fn can_lock_beyond_limit() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Opens `name`, a single path component, relative to the directory `dir`
/// (`openat(2)`), never following a symbolic link in that last component
/// (`O_NOFOLLOW`: a symlink fails with `ELOOP`), never blocking in `open`
/// itself (`O_NONBLOCK`: a FIFO without a writer opens at once instead of
/// hanging), and never acquiring a controlling terminal (`O_NOCTTY`). The
/// descriptor is close-on-exec. `flags` adds the
/// access mode and creation flags; `mode` is used when the file is created.
pub(crate) fn open_at(dir: &File, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let name = component(name)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    loop {
        // SAFETY: `dir` is an open descriptor for as long as it is borrowed;
        // `name` is a NUL-terminated string that outlives the call; the
        // mode is passed as the variadic `mode_t` argument `openat` reads
        // only with `O_CREAT`.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
        if fd >= 0 {
            // SAFETY: `openat` returned a new descriptor that nothing else
            // owns; the `OwnedFd` takes sole ownership and closes it.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Hard-links `from` to `to`, both names in the directory `dir`
/// (`linkat(2)` without `AT_SYMLINK_FOLLOW`: a symlink is linked as itself,
/// never its target). Fails with `EEXIST` if `to` exists, whatever it is.
pub(crate) fn link_at(dir: &File, from: &str, to: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (from, to) = (component(from)?, component(to)?);
    let fd = dir.as_raw_fd();
    // SAFETY: the descriptor is open while `dir` is borrowed; both names
    // are NUL-terminated strings that outlive the call.
    let ret = unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the directory entry `name` of `dir` (`unlinkat(2)`): a symlink
/// is removed itself, its target is untouched.
pub(crate) fn unlink_at(dir: &File, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let name = component(name)?;
    // SAFETY: the descriptor is open while `dir` is borrowed; `name` is a
    // NUL-terminated string that outlives the call.
    let ret = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `name` as a C string, refused unless it is one plain path component.
fn component(name: &str) -> io::Result<std::ffi::CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single file name",
        ));
    }
    std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file name contains NUL"))
}

/// Nanoseconds since the Unix epoch on the coarse real-time clock (a few
/// nanoseconds through the vDSO, resolution of a scheduler tick): for
/// timestamps people read, such as the time of a consumer's last commit.
pub(crate) fn wall_ns_coarse() -> u64 {
    clock_ns(libc::CLOCK_REALTIME_COARSE)
}

/// Takes an exclusive open-file-description lock (`F_OFD_SETLK`, or
/// `F_OFD_SETLKW` to wait) on `len` bytes at `start` of `file`. Such a lock
/// belongs to the open file description: the kernel drops it when the
/// last descriptor of that description is closed, which includes the
/// death of the process, and it conflicts with locks of every other
/// description, in this process too. `Ok(false)`: another description
/// holds a conflicting lock (only without `wait`).
pub(crate) fn ofd_lock(file: &File, start: u64, len: u64, wait: bool) -> io::Result<bool> {
    ofd(file, libc::F_WRLCK, start, len, wait)
}

/// Drops this description's lock on `len` bytes at `start` of `file`.
pub(crate) fn ofd_unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    ofd(file, libc::F_UNLCK, start, len, false).map(|_| ())
}

/// Whether another open file description holds a lock conflicting with an
/// exclusive one on `len` bytes at `start` of `file` (`F_OFD_GETLK`): a
/// probe that takes nothing, so it never stands in the way of the holder
/// or of a process about to take the lock.
pub(crate) fn ofd_probe(file: &File, start: u64, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(start), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "lock range out of range",
        ));
    };
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct
    // (`l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    // SAFETY: the descriptor is open while `file` is borrowed; `fl` is a
    // valid, writable `flock` that outlives the call, which reads it and
    // writes the conflicting lock (or `F_UNLCK`) back into it.
    let ret = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_OFD_GETLK,
            &mut fl as *mut libc::flock,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Nanoseconds on the coarse monotonic clock (a few nanoseconds through the
/// vDSO, resolution of a scheduler tick). The clock is the same in every
/// process of a boot, so a time stored in shared memory by one process can
/// be compared with another's now.
pub(crate) fn mono_ns_coarse() -> u64 {
    now_ns(false)
}

fn ofd(file: &File, kind: libc::c_int, start: u64, len: u64, wait: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(start), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "lock range out of range",
        ));
    };
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct
    // (`l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: the descriptor is open while `file` is borrowed; `fl` is
        // a valid `flock` that outlives the call, which only reads it (and
        // writes it back for F_GETLK, which this is not).
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if ret == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) | Some(libc::EACCES) if !wait => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// What [`futex_waitv`] returned.
#[cfg(feature = "async")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Woken, a word did not hold its value, a signal, or the timeout: the
    /// caller re-checks every word.
    Returned,
    /// The call failed otherwise: the kernel has no `futex_waitv` (Linux
    /// before 5.16), or a seccomp filter refuses it. The caller must poll.
    Unsupported,
}

/// The most words one [`futex_waitv`] call takes (the kernel's limit).
#[cfg(feature = "async")]
pub(crate) const WAITV_MAX: usize = 128;

/// Sleeps until one of the words is woken or does not hold its expected
/// value, or `timeout` passes (`futex_waitv(2)`, Linux 5.16): `own`, a word
/// of this process that [`futex_wake`] wakes, and `shared`, header words
/// of shared mappings that other processes wake. At most [`WAITV_MAX`]
/// words in all. None is waited on as a private futex: [`futex_wake`] does
/// not ask for one, and a private wait would not see its wake-ups.
#[cfg(feature = "async")]
pub(crate) fn futex_waitv(
    own: (&AtomicU32, u32),
    shared: &[(super::map::FutexWord<'_>, u32)],
    timeout: Duration,
) -> Waited {
    /// `struct futex_waitv` of `<linux/futex.h>`.
    #[repr(C)]
    struct Waitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    const FUTEX2_SIZE_U32: u32 = 0x02;
    assert!(
        shared.len() < WAITV_MAX,
        "futex_waitv takes at most 128 words"
    );
    let word = |w: &AtomicU32, expected: u32| Waitv {
        val: u64::from(expected),
        uaddr: w.as_ptr() as usize as u64,
        flags: FUTEX2_SIZE_U32,
        reserved: 0,
    };
    let mut waitv = Vec::with_capacity(shared.len() + 1);
    waitv.push(word(own.0, own.1));
    for (w, expected) in shared {
        waitv.push(word(w.0, *expected));
    }
    // The timeout is absolute, on the clock named in the call.
    let at = clock_ns(libc::CLOCK_MONOTONIC)
        .saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    let ts = libc::timespec {
        tv_sec: (at / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (at % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `waitv` is an array of `waitv.len()` (at most 128, checked
    // above) `struct futex_waitv`s laid out as the kernel expects (repr(C):
    // two u64s and two u32s, 24 bytes, reserved fields zero), alive until
    // the call returns. Each `uaddr` is the address of an aligned u32
    // borrowed for the whole call (`own` by reference; each shared word
    // through a `FutexWord`, which borrows the `Mapping` it lies in, so the
    // mapping stays in place). The kernel only reads the words (allowed on
    // read-only mappings). `ts` is a valid timespec that outlives the
    // call. EAGAIN (a word changed), ETIMEDOUT and EINTR mean "re-check";
    // any other error (ENOSYS before Linux 5.16, EPERM from a seccomp
    // filter that predates the call) is reported to the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waitv.as_ptr(),
            waitv.len() as libc::c_uint,
            0 as libc::c_uint,
            &ts as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Waited::Returned;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR) => Waited::Returned,
        _ => Waited::Unsupported,
    }
}

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`, blocking
/// only until the kernel's pool is initialised, early at boot).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes
        // for the duration of the call; getrandom writes at most that many
        // bytes into it and touches no other memory.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}
