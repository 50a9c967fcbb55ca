#![no_main]
//! cargo-fuzz target `cursor`: see `tidelog_fuzz::cursor`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::cursor(data));
