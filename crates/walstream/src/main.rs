//! The `walstream` binary: parses the command line and turns the result into an exit code.
use clap::Parser;

use walstream::cli::{self, Cli};

fn main() {
    // A write past a file-size limit (RLIMIT_FSIZE) then fails with EFBIG, which is reported
    // and retried like a full disk, instead of SIGXFSZ killing the process.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse_from(cli::rewrite_args(std::env::args_os()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Waits for blocking tasks (a cancelled restore removes its temporary files).
    drop(runtime);
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
