//! `replicate -exec`: the supervised app.
//!
//! The command is split like a shell splits it (quotes and backslashes, no expansion), as
//! Litestream does, and the program is run itself rather than through `sh -c`, so that the
//! signals walstream forwards reach the app and not a shell.
//!
//! The child never outlives walstream: it is started with `PR_SET_PDEATHSIG` = SIGKILL, so the
//! kernel kills it when walstream dies, even by SIGKILL. The death signal fires when the
//! *thread* that forked exits, not the process, so the fork happens on a dedicated thread that
//! lives as long as the process (tokio's blocking threads exit when idle).
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;

use anyhow::Context;

/// Splits `-exec`'s command like a shell: `app -port "8 0"` → `["app", "-port", "8 0"]`.
pub fn split(cmd: &str) -> anyhow::Result<Vec<String>> {
    let argv =
        shell_words::split(cmd).map_err(|e| anyhow::anyhow!("-exec {cmd:?}: cannot split: {e}"))?;
    if argv.is_empty() {
        anyhow::bail!("-exec: empty command");
    }
    Ok(argv)
}

/// Checks that `program` can be run (a path to an executable file, or a name found in
/// `$PATH`), so that a typo fails before replication starts, in one line.
pub fn check_program(program: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::Path::new(program);
        return match std::fs::metadata(p) {
            Err(e) => Err(anyhow::anyhow!("-exec {program:?}: {e}")),
            Ok(_) if !runnable(p) => {
                Err(anyhow::anyhow!("-exec {program:?}: not an executable file"))
            }
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| runnable(&d.join(program))) {
        return Ok(());
    }
    anyhow::bail!("-exec {program:?}: executable file not found in $PATH")
}

/// The exit code walstream passes on for a child's status: its code, or 128 + the signal that
/// killed it (as a shell reports it).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// A running child.
#[derive(Debug)]
pub struct Child {
    /// Its process id.
    pub pid: i32,
    /// The program, for messages.
    pub program: String,
    exited: tokio::sync::oneshot::Receiver<std::io::Result<ExitStatus>>,
}

/// Sends `sig` to the child `pid` (call it only until its exit has been seen: after that the
/// pid may belong to another process).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Child {
    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        match (&mut self.exited).await {
            Ok(r) => r.with_context(|| format!("-exec {}: wait", self.program)),
            Err(_) => anyhow::bail!("-exec {}: the waiting thread is gone", self.program),
        }
    }
}

/// Starts `argv` as walstream's child, inheriting stdin, stdout, stderr and the environment.
/// A program that cannot be started is an error naming it.
pub fn spawn(argv: Vec<String>) -> anyhow::Result<Child> {
    let program = argv.first().cloned().unwrap_or_default();
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<std::io::Result<i32>>(1);
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("walstream-exec".into())
        .spawn(move || supervise(argv, started_tx, exit_tx))
        .context("-exec: start the supervising thread")?;
    let pid = match started_rx.recv() {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => return Err(anyhow::anyhow!("-exec {program:?}: {e}")),
        Err(_) => anyhow::bail!("-exec {program:?}: the supervising thread exited"),
    };
    Ok(Child {
        pid,
        program,
        exited: exit_rx,
    })
}

/// The supervising thread: forks the child (so that its death signal is tied to this thread),
/// reports the pid, reaps it, reports its status, then stays alive until the process exits.
fn supervise(
    argv: Vec<String>,
    started: std::sync::mpsc::SyncSender<std::io::Result<i32>>,
    exited: tokio::sync::oneshot::Sender<std::io::Result<ExitStatus>>,
) {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: getpid is async-signal-safe; read here, before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (prctl, getppid, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // walstream ignores SIGXFSZ (main.rs); an ignored signal would stay ignored in the app.
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // walstream died between the fork and the prctl: do not run orphaned.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("walstream exited while starting"));
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let pid = child.id() as i32;
            let _ = started.send(Ok(pid));
            let _ = exited.send(child.wait());
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    }
    // The child's death signal belongs to this thread: it must not exit before the process.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn split_like_a_shell() {
        assert_eq!(
            split(r#"app -name "a b" 'c d' e\ f"#).unwrap(),
            ["app", "-name", "a b", "c d", "e f"]
        );
        assert!(split("   ").is_err());
        assert!(split(r#"app "unterminated"#).is_err());
    }

    #[test]
    fn check_program_finds_path_names_and_refuses_missing_ones() {
        check_program("sh").unwrap();
        check_program("/bin/sh").unwrap();
        let e = check_program("walstream-no-such-program")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("walstream-no-such-program") && e.contains("not found"),
            "{e}"
        );
        let e = check_program("/nonexistent/app").unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/app") && e.contains("No such file"),
            "{e}"
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = check_program(f.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an executable"), "{e}");
    }

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }
}
