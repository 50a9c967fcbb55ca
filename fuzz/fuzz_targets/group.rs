#![no_main]
//! cargo-fuzz target `group`: see `tidelog_fuzz::group`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::group(data));
