#![no_main]
//! cargo-fuzz target `ops`: see `tidelog_fuzz::ops`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::ops(data));
