//! Test modules. `util` holds the shared helpers.
pub mod util;

mod architecture;
mod azure;
mod backend_cycle;
mod cli;
mod cold_warm;
mod config;
mod corrupt_replica;
mod crash;
mod fault_proxy;
mod faults;
mod flaky_http;
mod fleet;
mod fleet_util;
mod follow;
mod gcs;
mod interference;
mod litestream;
mod restore_bad_input;
mod restore_fallback;
mod restore_golden;
mod s3;
mod security;
mod server_api;
mod sftp;
mod stale_uploads;
mod store_down;
