//! `walstream version`.

/// The version string. Litestream prints its bare version (`0.5.17`); walstream does the same.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Prints the version, like `litestream version`.
pub fn run() {
    println!("{}", version());
}
