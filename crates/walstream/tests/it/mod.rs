//! Test modules. `util` holds the shared helpers.
pub mod util;

mod cli;
mod litestream;
mod restore_bad_input;
mod restore_golden;
