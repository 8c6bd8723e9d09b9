//! `cargo fuzz run wal_reader`: see `walstream::fuzzing::wal` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = walstream::fuzzing::wal(data);
});
