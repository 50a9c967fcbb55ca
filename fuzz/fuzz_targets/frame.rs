#![no_main]
//! cargo-fuzz target `frame`: see `tidelog_fuzz::frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::frame(data));
