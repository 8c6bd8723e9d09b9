//! The command line: clap definitions, Go-style flag rewriting, logging set-up, exit codes.
pub mod replicate;
