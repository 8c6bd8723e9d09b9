//! Test modules. `util` holds the shared helpers, `harness` the one for a running replicator.
pub mod harness;
pub mod util;

mod azure;
mod backend_cycle;
mod cli;
mod config;
mod corrupt_replica;
mod crash;
mod fault_proxy;
mod faults;
mod follow;
mod gcs;
mod history;
mod interference;
mod litestream;
mod replication;
mod restore_bad_input;
mod restore_fallback;
mod restore_golden;
mod s3;
mod security;
mod sftp;
mod stale_uploads;
