//! The command line: clap definitions, Go-style flag rewriting, logging set-up, exit codes.
//!
//! Litestream's flags are Go-style: one dash for long names (`-txid 5`, `-config=x.yml`). Before
//! clap sees them, [`rewrite_args`] turns every known long flag into `--flag`, so both spellings
//! work, as they do in Go. `-o` and `-f` stay short flags.
use std::ffi::OsString;

use clap::{Parser, Subcommand};

pub mod control;
pub mod databases;
pub mod demo;
pub mod exec;
pub mod ltx;
pub mod reencrypt;
pub mod replicate;
pub mod restore;
pub mod status;
pub mod version;
pub use self::ltx::LtxArgs;
pub use self::restore::RestoreArgs;

/// `walstream <command> [arguments]`: a drop-in for the `litestream` command.
#[derive(Debug, Parser)]
#[command(
    name = "walstream",
    about = "Continuous streaming backup of SQLite databases (Litestream 0.5 compatible)."
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a server to replicate databases.
    Replicate(replicate::ReplicateArgs),
    /// Recovers a database from a replica.
    Restore(RestoreArgs),
    /// Lists the LTX files of a replica.
    Ltx(LtxArgs),
    /// Re-encrypts a database's replica to the age recipients of the config (key rotation).
    Reencrypt(reencrypt::ReencryptArgs),
    /// Lists the databases in the config file.
    Databases(databases::DatabasesArgs),
    /// Replicates ./demo.db to ./backup, writing a row a second and checking restores (a tour).
    Demo(demo::DemoArgs),
    /// Prints the version.
    Version(version::VersionArgs),
    // --- status, reset and the control-socket commands ---
    /// Shows each database's local and replica TXID, lag, backlog and last error.
    Status(status::StatusArgs),
    /// Clears a database's local state (its meta directory's LTX files).
    Reset(status::ResetArgs),
    /// Starts replication of a database on the running daemon (control socket).
    Start(control::DbArgs),
    /// Stops replication of a database on the running daemon (control socket).
    Stop(control::DbArgs),
    /// Syncs a database now; with -wait, until the replica holds it (control socket).
    Sync(control::SyncArgs),
    /// Registers a database for replication on the running daemon (control socket).
    Register(control::RegisterArgs),
    /// Unregisters a database from the running daemon (control socket).
    Unregister(control::DbArgs),
    /// Lists the databases of the running daemon (control socket).
    List(control::DaemonArgs),
    /// Shows information about the running daemon (control socket).
    Info(control::DaemonArgs),
}

/// Long flags any command takes, and whether each takes a value.
/// Single-letter flags (`-o`, `-f`, `-h`) are clap short flags and are not in this list.
const LONG_FLAGS: &[(&str, bool)] = &[
    ("config", true),
    ("no-expand-env", false),
    ("exec", true),
    ("once", false),
    ("force-snapshot", false),
    ("enforce-retention", false),
    ("restore-if-db-not-exists", false),
    ("log-level", true),
    ("txid", true),
    ("timestamp", true),
    ("if-db-not-exists", false),
    ("if-replica-exists", false),
    ("dry-run", false),
    ("force", false),
    ("json", false),
    ("follow-interval", true),
    ("parallelism", true),
    ("integrity-check", true),
    ("level", true),
    ("replica", true),
    ("verbose", false),
    ("help", false),
    // status, reset, control-socket commands
    ("socket", true),
    ("timeout", true),
    ("wait", false),
];

/// Short flags and whether each takes a value.
const SHORT_FLAGS: &[(&str, bool)] = &[("o", true), ("f", false), ("h", false)];

/// Rewrites Go-style arguments for clap: `-txid X` → `--txid X`, `-txid=X` → `--txid=X`,
/// `--o X`/`-o=X` → `-o X`. The first element (the program name), values of flags, and
/// everything after `--` are left alone. Unknown single-dash words become `--word`, so that clap
/// reports them whole.
pub fn rewrite_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut iter = args.into_iter().map(Into::into);
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut value_next = false;
    let mut verbatim = false;
    for arg in iter {
        if verbatim || value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        let body = match s.strip_prefix("--").or_else(|| s.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => {
                out.push(arg);
                continue;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if let Some((_, takes_value)) = LONG_FLAGS.iter().find(|(n, _)| *n == name) {
            out.push(OsString::from(format!("--{body}")));
            value_next = *takes_value && value.is_none();
        } else if let Some((_, takes_value)) = SHORT_FLAGS.iter().find(|(n, _)| *n == name) {
            out.push(OsString::from(format!("-{name}")));
            if let Some(v) = value {
                out.push(OsString::from(v));
            } else {
                value_next = *takes_value;
            }
        } else if !s.starts_with("--")
            && name.len() > 1
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            // An unknown Go-style flag: clap reports `--bogus` rather than `-b`.
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Sets up logging to stderr. `level` is the `-log-level` flag; without it `$LOG_LEVEL`, then
/// `info`. Accepts Litestream's names (debug, info, warn, error) in any case.
pub fn init_logging(level: Option<&str>) {
    init_logging_to(
        level,
        crate::logging::Format::Text,
        crate::logging::Output::Stderr,
    );
}

/// Sets up logging as `replicate`'s `logging:` keys ask: text or JSON, stdout or stderr.
pub fn init_logging_to(
    level: Option<&str>,
    format: crate::logging::Format,
    out: crate::logging::Output,
) {
    let level = level
        .map(str::to_string)
        .or_else(|| std::env::var("LOG_LEVEL").ok())
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "info".to_string());
    crate::logging::init(&level, format, out);
}

/// Runs a parsed command line. Returns the exit code (`replicate -exec` passes its child's on).
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Replicate(args) => {
            let level = args
                .log_level
                .clone()
                .or_else(|| replicate::config_log_level(&args));
            // logging.type and logging.stderr (h-metrics).
            let (format, out) = replicate::config_log_output(&args);
            init_logging_to(level.as_deref(), format, out);
            replicate::run(args).await
        }
        Command::Demo(args) => {
            init_logging(Some(args.log_level.as_deref().unwrap_or("warn")));
            demo::run(args).await.map(|()| 0)
        }
        Command::Restore(args) => {
            init_logging(args.log_level.as_deref());
            restore::run(args).await.map(|()| 0)
        }
        Command::Ltx(args) => {
            init_logging(args.log_level.as_deref());
            ltx::run(args).await.map(|()| 0)
        }
        Command::Reencrypt(args) => {
            init_logging(args.log_level.as_deref());
            reencrypt::run(args).await.map(|_| 0)
        }
        Command::Databases(args) => {
            init_logging(args.log_level.as_deref());
            databases::run(args).await.map(|()| 0)
        }
        Command::Version(args) => {
            version::run(&args);
            Ok(0)
        }
        // status, reset, control-socket commands
        Command::Status(args) => {
            init_logging(Some(args.log_level.as_deref().unwrap_or("warn")));
            status::run(args).await.map(|()| 0)
        }
        Command::Reset(args) => {
            init_logging(args.log_level.as_deref());
            status::reset(args).await.map(|()| 0)
        }
        Command::Start(args) => control::start_stop(args, true).await.map(|()| 0),
        Command::Stop(args) => control::start_stop(args, false).await.map(|()| 0),
        Command::Sync(args) => control::sync(args).await.map(|()| 0),
        Command::Register(args) => control::register(args).await.map(|()| 0),
        Command::Unregister(args) => control::unregister(args).await.map(|()| 0),
        Command::List(args) => control::list(args).await.map(|()| 0),
        Command::Info(args) => control::info(args).await.map(|()| 0),
    }
}

pub use crate::paths::is_url;

/// What a `DB_PATH|REPLICA_URL` argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A replica URL, or a directory that holds a replica (`<dir>/ltx/`, or Litestream 0.3's
    /// `<dir>/generations/`).
    Replica(String),
    /// A database path, whose replica comes from the config file.
    Database(std::path::PathBuf),
}

impl Source {
    /// Classifies an argument: a URL or a directory containing `ltx/` is a replica.
    pub fn parse(arg: &str) -> Source {
        let dir = std::path::Path::new(arg);
        if is_url(arg) || dir.join("ltx").is_dir() || dir.join("generations").is_dir() {
            Source::Replica(arg.to_string())
        } else {
            Source::Database(std::path::PathBuf::from(arg))
        }
    }

    /// The replica URL, or a clear error for a database path (config files are not read yet).
    pub fn replica_url(&self, config: Option<&std::path::Path>) -> anyhow::Result<&str> {
        match self {
            Source::Replica(url) => {
                if config.is_some() && is_url(url) {
                    anyhow::bail!("cannot specify a replica URL and the -config flag");
                }
                Ok(url)
            }
            Source::Database(path) => anyhow::bail!(
                "{}: not a replica URL or replica directory (no ltx/ inside); finding a database's replica \
                 through a config file is not supported yet: pass the replica URL or directory instead",
                path.display()
            ),
        }
    }
}

pub use crate::text::{fmt_time, tabwrite};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_args(std::iter::once("walstream").chain(args.iter().copied()))
            .into_iter()
            .skip(1)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn rewrite_args_single_dash_long_flags_get_two_dashes() {
        assert_eq!(
            rw(&[
                "restore",
                "-txid",
                "5",
                "-if-db-not-exists",
                "-o",
                "out.db",
                "s3://b/db"
            ]),
            [
                "restore",
                "--txid",
                "5",
                "--if-db-not-exists",
                "-o",
                "out.db",
                "s3://b/db"
            ]
        );
    }

    #[test]
    fn rewrite_args_equals_forms() {
        assert_eq!(
            rw(&["restore", "-txid=5", "--timestamp=x"]),
            ["restore", "--txid=5", "--timestamp=x"]
        );
        assert_eq!(
            rw(&["restore", "-o=out.db", "--o", "b.db"]),
            ["restore", "-o", "out.db", "-o", "b.db"]
        );
    }

    #[test]
    fn rewrite_args_double_dash_forms_are_kept() {
        assert_eq!(
            rw(&["ltx", "--level", "all", "--json"]),
            ["ltx", "--level", "all", "--json"]
        );
    }

    #[test]
    fn rewrite_args_values_are_not_rewritten() {
        // A value that looks like a flag stays a value.
        assert_eq!(
            rw(&["replicate", "-exec", "-json", "-once"]),
            ["replicate", "--exec", "-json", "--once"]
        );
        assert_eq!(
            rw(&["restore", "-o", "-force"]),
            ["restore", "-o", "-force"]
        );
    }

    #[test]
    fn rewrite_args_unknown_flags_and_after_double_dash_untouched() {
        assert_eq!(rw(&["restore", "-bogus", "x"]), ["restore", "--bogus", "x"]);
        assert_eq!(
            rw(&["restore", "--bogus", "-5"]),
            ["restore", "--bogus", "-5"]
        );
        assert_eq!(rw(&["restore", "--", "-txid"]), ["restore", "--", "-txid"]);
        assert_eq!(rw(&["restore", "-", "-f"]), ["restore", "-", "-f"]);
    }

    #[test]
    fn rewrite_args_help_forms() {
        assert_eq!(rw(&["restore", "-help", "-h"]), ["restore", "--help", "-h"]);
    }

    #[test]
    fn cli_parses_flags_before_and_after_path() {
        let before = Cli::try_parse_from(rewrite_args([
            "walstream",
            "restore",
            "-o",
            "x",
            "-txid",
            "5",
            "file:///r",
        ]));
        let after = Cli::try_parse_from(rewrite_args([
            "walstream",
            "restore",
            "file:///r",
            "-o",
            "x",
            "-force",
        ]));
        match before.unwrap().command {
            Command::Restore(a) => {
                assert_eq!(a.txid.as_deref(), Some("5"));
                assert_eq!(a.path, "file:///r");
            }
            other => panic!("{other:?}"),
        }
        match after.unwrap().command {
            Command::Restore(a) => assert!(a.force),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_parses_ltx_and_version() {
        let c = Cli::try_parse_from(rewrite_args([
            "walstream",
            "ltx",
            "-level",
            "all",
            "-json",
            "/r",
        ]))
        .unwrap();
        match c.command {
            Command::Ltx(a) => {
                assert_eq!(a.level, "all");
                assert!(a.json);
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(rewrite_args(["walstream", "version"])).unwrap();
        assert!(matches!(c.command, Command::Version(ref a) if !a.verbose));
        let c = Cli::try_parse_from(rewrite_args(["walstream", "version", "-verbose"])).unwrap();
        assert!(matches!(c.command, Command::Version(ref a) if a.verbose));
    }

    #[test]
    fn cli_parses_replicate_go_style() {
        let c = Cli::try_parse_from(rewrite_args([
            "walstream",
            "replicate",
            "-config",
            "/etc/x.yml",
            "-once",
        ]))
        .unwrap();
        match c.command {
            Command::Replicate(a) => {
                assert_eq!(a.config.unwrap().to_str(), Some("/etc/x.yml"));
                assert!(a.once);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn is_url_needs_scheme() {
        assert!(is_url("s3://bucket/db"));
        assert!(is_url("file:///tmp/x"));
        assert!(!is_url("/tmp/x"));
        assert!(!is_url("./a://b"));
    }

    #[test]
    fn tabwrite_matches_go_tabwriter() {
        let rows = vec![
            vec!["level".to_string(), "min_txid".into(), "size".into()],
            vec!["0".to_string(), "0000000000000001".into(), "575".into()],
        ];
        assert_eq!(
            tabwrite(&rows),
            "level  min_txid          size\n0      0000000000000001  575\n"
        );
    }
}
