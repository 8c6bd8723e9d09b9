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
    let cli = match Cli::try_parse_from(cli::rewrite_args(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 1, as in Litestream
            // (clap's own default is 2).
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
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
    match result {
        Ok(code) => {
            if code != 0 {
                std::process::exit(code);
            }
        }
        Err(e) => {
            eprintln!(
                "error: {}",
                walstream::logging::redact(&walstream::error_chain::anyhow_line(&e))
            );
            std::process::exit(1);
        }
    }
}
