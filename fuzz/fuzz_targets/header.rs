#![no_main]
//! cargo-fuzz target `header`: see `tidelog_fuzz::header`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::header(data));
