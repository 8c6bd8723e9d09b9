//! walstream's integration tests: one binary, modules under `it/`. They run the real `walstream`
//! binary, real SQLite, and (in `it::litestream`) the real Litestream 0.5.17.
#![allow(clippy::unwrap_used)]

mod it;
