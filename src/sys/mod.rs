//! Everything that needs `unsafe`: the shared mapping (with load and store
//! access in separate types) and the thin system-call wrappers. No other
//! module uses `unsafe`; each block here carries a `SAFETY:` comment.

#![expect(
    unsafe_code,
    reason = "the mapping and the system calls are the crate's only unsafe code"
)]

pub(crate) mod calls;
pub(crate) mod map;
