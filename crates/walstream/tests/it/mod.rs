//! Test modules. `util` holds the shared helpers.
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
mod idle;
mod interference;
mod litestream;
mod restore_bad_input;
mod restore_fallback;
mod restore_golden;
mod s3;
mod security;
mod sftp;
