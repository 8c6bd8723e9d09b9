//! `cargo fuzz run ltx_decode`: see `ltx::fuzzing::decode` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ltx::fuzzing::decode(data);
});
