//! One harness for a running replicator: `walstream replicate` (or another long-running process
//! of the tests: a `restore -f` follower, Litestream's `replicate`) with its stdout and stderr
//! appended to one log file (`replicate` logs to stdout by default, as Litestream does; a fatal
//! error is one line on stderr). It waits for log lines, sends signals, kills with SIGKILL, stops with SIGTERM and
//! checks the exit, and kills the process when dropped.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::util;

/// How long [`Replicator::stop`] waits for the exit after the signal (generous: the machine may
/// be busy building and testing other things).
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Variables of the caller's environment that would change what the process does (a config file,
/// a log level, other credentials): removed before [`Start::env`] adds the test's own.
const AMBIENT: &[&str] = &[
    "LOG_LEVEL",
    "LITESTREAM_CONFIG",
    "LITESTREAM_ACCESS_KEY_ID",
    "LITESTREAM_SECRET_ACCESS_KEY",
    "LITESTREAM_S3_ENDPOINT",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_CA_BUNDLE",
    "RUST_LOG",
];

/// What to start: a program, its arguments, extra environment. Built by
/// [`Replicator::walstream`] or [`Replicator::litestream`], started by [`Start::start`].
pub struct Start {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    name: String,
    litestream: bool,
}

impl Start {
    /// Adds environment variables (after the ambient ones are removed).
    pub fn env(mut self, env: &[(String, String)]) -> Start {
        self.env.extend(env.iter().cloned());
        self
    }

    /// Adds one environment variable.
    pub fn var(mut self, key: &str, value: &str) -> Start {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The name in failure messages (default: the program's and the first argument).
    pub fn name(mut self, name: &str) -> Start {
        self.name = name.to_string();
        self
    }

    /// Spawns the process, its stdout and stderr appended to `log` (created if missing), stdin
    /// closed.
    pub fn start(self, log: &Path) -> Replicator {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(
                f.try_clone()
                    .unwrap_or_else(|e| panic!("dup {}: {e}", log.display())),
            )
            .stderr(f);
        for k in AMBIENT {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            // Litestream 0.5.17 cannot build an S3 client for a plain-http endpoint with
            // AWS_CA_BUNDLE set (scripts/test.sh's wrapper unsets it too): it never gets it.
            if self.litestream && k == "AWS_CA_BUNDLE" {
                continue;
            }
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        Replicator {
            child,
            log: log.to_path_buf(),
            name: self.name,
        }
    }
}

/// A running process with its stdout and stderr in a log file. Dropping it kills it (SIGKILL) and reaps it.
pub struct Replicator {
    child: Child,
    log: PathBuf,
    name: String,
}

/// How a [`Replicator::stop`] went.
pub struct Stopped {
    /// From the signal to the exit.
    pub took: Duration,
    /// The whole log at the exit.
    pub log: String,
}

impl Replicator {
    /// `walstream <args>`, to be started with [`Start::start`].
    pub fn walstream(args: &[&str]) -> Start {
        Start {
            program: util::bin(),
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            name: format!("walstream {}", args.first().unwrap_or(&"")),
            litestream: false,
        }
    }

    /// The real Litestream 0.5.17 with `args`, to be started with [`Start::start`].
    pub fn litestream(args: &[&str]) -> Start {
        Start {
            program: util::litestream_bin(),
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            name: format!("litestream {}", args.first().unwrap_or(&"")),
            litestream: true,
        }
    }

    /// Starts `walstream <args>` (for example `["replicate", db, url]`), logging to `log`.
    pub fn start(args: &[&str], log: &Path) -> Replicator {
        Replicator::walstream(args).start(log)
    }

    /// Starts `walstream replicate -config <cfg>`, logging to `log`.
    pub fn with_config(cfg: &Path, log: &Path) -> Replicator {
        Replicator::start(&["replicate", "-config", path_str(cfg)], log)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("{}: wait: {e}", self.name))
    }

    /// Panics, with the log, if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(st) = self.exited() {
            panic!("{} exited early with {st}; log:\n{}", self.name, self.log());
        }
    }

    /// Waits until the log contains `what`; panics with the log if it does not within `within`,
    /// or if the process exits first. Returns the log.
    #[track_caller]
    pub fn wait_for_log(&mut self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            if let Some(st) = self.exited() {
                // It may have written the line just before exiting.
                let log = self.log();
                if log.contains(what) {
                    return log;
                }
                panic!(
                    "{} exited with {st} before logging {what:?}; log:\n{log}",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what:?} in the log within {within:?}; log:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `within` for the process to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it is not reaped before `self` is gone.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGKILL, then reaps the process.
    pub fn kill9(mut self) {
        let name = self.name.clone();
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("{name}: kill: {e}"));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("{name}: wait: {e}"));
    }

    /// SIGTERM, then waits for the exit, which must be a success.
    #[track_caller]
    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGTERM)
    }

    /// `sig` (SIGTERM or SIGINT), then waits for the exit, which must be a success.
    #[track_caller]
    pub fn stop_with(mut self, sig: i32) -> Stopped {
        let started = Instant::now();
        self.signal(sig);
        loop {
            if let Some(st) = self.exited() {
                let log = self.log();
                assert!(
                    st.success(),
                    "{} exited with {st} on signal {sig}; log:\n{log}",
                    self.name
                );
                return Stopped {
                    took: started.elapsed(),
                    log,
                };
            }
            assert!(
                started.elapsed() < STOP_WITHIN,
                "{} did not stop within {STOP_WITHIN:?} of signal {sig}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        // A stopped (SIGSTOP) process dies of SIGKILL too; SIGCONT first lets nothing linger.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
}

#[test]
fn harness_wait_for_log_fails_at_once_when_the_process_exits() {
    let dir = util::tempdir();
    let log = dir.path().join("walstream.log");
    let mut rep = Replicator::with_config(&dir.path().join("missing.yml"), &log);
    let started = Instant::now();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rep.wait_for_log("never logged", Duration::from_secs(60))
    }))
    .expect_err("wait_for_log returned for a line that is never logged");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains("before logging \"never logged\""), "{msg}");
    assert!(
        msg.contains("missing.yml"),
        "the log is in the message: {msg}"
    );
    assert!(rep.exited().is_some_and(|st| st.code() == Some(1)));
}

#[test]
fn harness_stop_returns_the_log_and_drop_kills() {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let replica = dir.path().join("replica");
    let args = ["replicate", db.to_str().unwrap(), replica.to_str().unwrap()];
    let mut rep = Replicator::start(&args, &dir.path().join("a.log"));
    rep.wait_for_log("replicating", Duration::from_secs(30));
    rep.assert_running();
    let stopped = rep.stop();
    assert!(stopped.log.contains("replicating"), "{}", stopped.log);
    assert!(stopped.took < STOP_WITHIN);

    let rep = Replicator::start(&args, &dir.path().join("b.log"));
    let pid = rep.pid();
    drop(rep);
    // Reaped: the pid is no longer our child.
    // SAFETY: waitpid(2) with WNOHANG on a pid we started.
    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "the process was not reaped on drop");
}
