//! `walstream version [-verbose]`.

/// The version string. Litestream prints its bare version (`0.5.17`); walstream does the same.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The Litestream release walstream is a drop-in for (formats, CLI, config).
pub const LITESTREAM_COMPAT: &str = "0.5.17";

/// `version [-verbose]`.
#[derive(Debug, Clone, clap::Args)]
pub struct VersionArgs {
    /// Print build details (compatibility, build profile, OS/arch).
    #[arg(long = "verbose")]
    pub verbose: bool,
}

/// The `-verbose` text, laid out like Litestream's (`Version:`, `OS/Arch:`, ...).
pub fn verbose() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "Version:     {}\nCompatible:  Litestream {LITESTREAM_COMPAT}\nBuild:       {profile}\nOS/Arch:     {}/{arch}\n",
        version(),
        std::env::consts::OS,
    )
}

/// Prints the version, like `litestream version`.
pub fn run(args: &VersionArgs) {
    if args.verbose {
        print!("{}", verbose());
    } else {
        println!("{}", version());
    }
}
