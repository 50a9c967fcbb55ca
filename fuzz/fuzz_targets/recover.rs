#![no_main]
//! cargo-fuzz target `recover`: see `tidelog_fuzz::recover`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_fuzz::recover(data));
