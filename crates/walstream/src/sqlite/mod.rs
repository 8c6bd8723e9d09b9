//! Reading SQLite's files directly (the WAL) and the one SQLite connection walstream holds.
pub mod wal_reader;
