//! walstream: continuous, streaming backup of SQLite databases, a drop-in successor to Litestream 0.5.
//!
//! The path of a committed page:
//! - [`sqlite::wal_reader`] reads committed frames from the live `-wal` file;
//! - [`db`] turns each sync's frames into an L0 LTX file in the meta directory
//!   (`.<db>-litestream/ltx/0/`) and hands it to the replica;
//! - [`storage`] holds the [`storage::ReplicaStore`] trait and its backends, which put the file at
//!   `<path>/ltx/<level>/<min>-<max>.ltx`;
//! - [`restore`] plans a chain of files and streams them through [`ltx::Compactor`] into a database.
#![deny(missing_docs)]

pub mod age_keys;
pub mod cli;
pub mod compaction;
pub mod config;
pub mod control;
pub mod db;
pub mod error_chain;
pub mod failpoint;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod history;
pub mod lease;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod paths;
pub mod replica;
pub mod restore;
pub mod retention;
pub mod server;
pub mod sqlite;
pub mod storage;
pub mod text;

pub use ltx::TxId;
