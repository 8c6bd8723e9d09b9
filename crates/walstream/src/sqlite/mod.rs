//! Reading SQLite's files directly (the WAL) and the SQLite connections walstream holds.
pub mod conn;
pub mod locks;
pub mod wal_reader;
