//! `cargo fuzz run config`: see `walstream::fuzzing::config` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = walstream::fuzzing::config(data);
});
