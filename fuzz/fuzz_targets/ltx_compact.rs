//! `cargo fuzz run ltx_compact`: see `ltx::fuzzing::compact` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ltx::fuzzing::compact(data);
});
