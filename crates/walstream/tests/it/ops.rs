//! Operations (issue 11, part 1): `-exec` supervision, restore on start, CLI defaults and exit
//! codes, `walstream demo`, one-line errors with each cause once, the start-up version line.
//!
//! The supervised app is this test binary re-executed (`ops_app_process`, driven by `OPS_APP_*`
//! variables): it writes a row every 20 ms, exits 42 on SIGTERM after one last row, or exits on
//! its own with `OPS_APP_EXIT_AFTER` / `OPS_APP_EXIT_CODE`.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::util;

const APP_DB: &str = "OPS_APP_DB";
const APP_STATE: &str = "OPS_APP_STATE";
const APP_EXIT_AFTER: &str = "OPS_APP_EXIT_AFTER";
const APP_EXIT_CODE: &str = "OPS_APP_EXIT_CODE";

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

/// The supervised app, as its own process. Does nothing when run as a normal test.
#[test]
fn ops_app_process() {
    let Some(db) = std::env::var_os(APP_DB) else {
        return;
    };
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let state = PathBuf::from(std::env::var_os(APP_STATE).unwrap());
    let exit_after: Option<u64> = std::env::var(APP_EXIT_AFTER)
        .ok()
        .map(|v| v.parse().unwrap());
    let exit_code: i32 = std::env::var(APP_EXIT_CODE)
        .ok()
        .map_or(0, |v| v.parse().unwrap());
    let c = Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )
    .unwrap();
    let start: u64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    let log = |line: String| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&state)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    };
    log(format!("pid {} start {start}", std::process::id()));
    let mut n = 0u64;
    loop {
        if TERM.load(Ordering::SeqCst) {
            c.execute("INSERT INTO t(v) VALUES ('last before SIGTERM')", [])
                .unwrap();
            log(format!("sigterm rows {}", start + n + 1));
            std::process::exit(42);
        }
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{}-{}", std::process::id(), n)],
        )
        .unwrap();
        n += 1;
        if exit_after == Some(n) {
            log(format!("exit rows {}", start + n));
            std::process::exit(exit_code);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `-exec` command line that runs [`ops_app_process`].
fn app_cmd() -> String {
    format!(
        "{} --exact it::ops::ops_app_process --nocapture --test-threads 1",
        std::env::current_exe().unwrap().display()
    )
}

/// A running walstream, its output in files; killed on drop.
struct Walstream {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Walstream {
    fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Walstream {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let mut cmd = Command::new(util::bin());
        cmd.args(args)
            .current_dir(dir)
            .env_remove("LOG_LEVEL")
            .env_remove("LITESTREAM_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Walstream {
            child: cmd.spawn().unwrap(),
            out,
            err,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the exit (at most `limit`); `(code, stdout, log)`, the log being stdout then
    /// stderr (`replicate` logs to stdout, as Litestream; a fatal error is the last line, on
    /// stderr).
    fn wait(&mut self, limit: Duration) -> (Option<i32>, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < limit,
                "walstream did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.code(),
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            self.log(),
        )
    }

    /// stdout, then stderr.
    fn log(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}

impl Drop for Walstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the app (by the pid in its state file) when a test ends, so that a failing test leaves
/// no app running.
struct AppGuard(PathBuf);

impl Drop for AppGuard {
    fn drop(&mut self) {
        if let Some(pid) = app_pid(&self.0) {
            if !gone(pid) {
                // SAFETY: kill(2) on the app this test started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Waits until `f` holds (at most `limit`).
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn rows(db: &Path) -> u64 {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

/// The app's pid from its state file (the last `pid` line).
fn app_pid(state: &Path) -> Option<i32> {
    read(state)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|l| l.split(' ').next())
        .map(|p| p.parse().unwrap())
}

/// Whether a process is gone (no /proc entry, or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Restores `replica` to `dir/<name>` and returns the path.
fn restore(dir: &Path, replica: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    util::walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .success();
    out
}

/// Removes a database, its -wal/-shm and its meta directory (`.<name>-litestream`).
fn remove_local(db: &Path) {
    util::remove_db(db);
    let meta = db.with_file_name(format!(
        ".{}-litestream",
        db.file_name().unwrap().to_string_lossy()
    ));
    std::fs::remove_dir_all(&meta).unwrap();
}

#[test]
fn ops_exec_first_boot_empty_second_boot_restores_sigterm_reaches_the_app() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let replica = d.join("replica");
    let state = d.join("app.state");
    let _guard = AppGuard(state.clone());
    let env = [
        (APP_DB, db.to_str().unwrap()),
        (APP_STATE, state.to_str().unwrap()),
    ];
    let url = format!("file://{}", replica.display());

    // First boot, CLI flags: the database does not exist and the replica holds nothing.
    let cmd = app_cmd();
    let mut w = Walstream::start(
        d,
        "boot1",
        &[
            "replicate",
            "-restore-if-db-not-exists",
            "-exec",
            &cmd,
            db.to_str().unwrap(),
            &url,
        ],
        &env,
    );
    wait_for("the app to start", Duration::from_secs(30), || {
        app_pid(&state).is_some()
    });
    assert!(read(&state).starts_with(&format!("pid {} start 0", app_pid(&state).unwrap())));
    wait_for("50 rows", Duration::from_secs(30), || {
        db.exists() && rows(&db) >= 50
    });
    let pid1 = app_pid(&state).unwrap();
    w.signal(libc::SIGTERM);
    let (code, _, err) = w.wait(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(42),
        "walstream should exit with the app's code:\n{err}"
    );
    assert!(
        read(&state).contains("sigterm rows"),
        "the app never saw SIGTERM:\n{}",
        read(&state)
    );
    assert!(gone(pid1), "the app outlived walstream");
    assert!(
        err.contains(&format!("walstream v{}", env!("CARGO_PKG_VERSION"))),
        "no start-up version line:\n{err}"
    );
    assert!(err.contains("holds no backup"), "{err}");
    let n1 = rows(&db);
    let sigterm_rows: u64 = read(&state)
        .lines()
        .find_map(|l| l.strip_prefix("sigterm rows "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n1, sigterm_rows);
    // The last commits, the one made after SIGTERM included, reached the replica.
    let out1 = restore(d, &replica, "restored1.db");
    assert_eq!(rows(&out1), n1);
    assert_eq!(util::logical_digest(&out1), util::logical_digest(&db));

    // Second boot, through the config file (exec:, restore-if-db-not-exists:,
    // shutdown-sync-timeout:), after the local files are gone.
    remove_local(&db);
    std::fs::remove_file(&state).unwrap();
    let cfg = d.join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "exec: {cmd}\nshutdown-sync-timeout: 20s\ndbs:\n  - path: {db}\n    restore-if-db-not-exists: true\n    replica:\n      path: {r}\n",
            db = db.display(),
            r = replica.display()
        ),
    )
    .unwrap();
    let mut w = Walstream::start(
        d,
        "boot2",
        &["replicate", "-config", cfg.to_str().unwrap()],
        &env,
    );
    wait_for("the app to start again", Duration::from_secs(30), || {
        app_pid(&state).is_some()
    });
    // It starts where the first boot stopped: everything was restored before it ran.
    assert!(
        read(&state).contains(&format!("start {n1}")),
        "{}\n{}",
        read(&state),
        w.log()
    );
    wait_for("more rows", Duration::from_secs(30), || {
        rows(&db) >= n1 + 50
    });
    let pid2 = app_pid(&state).unwrap();
    w.signal(libc::SIGTERM);
    let (code, _, err) = w.wait(Duration::from_secs(60));
    assert_eq!(code, Some(42), "{err}");
    assert!(err.contains("restored it from the replica"), "{err}");
    assert!(
        !err.contains("not supported"),
        "config keys warned about:\n{err}"
    );
    assert!(gone(pid2));
    let n2 = rows(&db);
    assert!(n2 > n1 + 50);
    let out2 = restore(d, &replica, "restored2.db");
    assert_eq!(rows(&out2), n2);
    assert_eq!(util::logical_digest(&out2), util::logical_digest(&db));
}

#[test]
fn ops_exec_app_exiting_on_its_own_passes_its_code_after_the_final_sync() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let replica = d.join("replica");
    let state = d.join("app.state");
    let _guard = AppGuard(state.clone());
    let cmd = app_cmd();
    let mut w = Walstream::start(
        d,
        "run",
        &[
            "replicate",
            "-exec",
            &cmd,
            db.to_str().unwrap(),
            replica.to_str().unwrap(),
        ],
        &[
            (APP_DB, db.to_str().unwrap()),
            (APP_STATE, state.to_str().unwrap()),
            (APP_EXIT_AFTER, "60"),
            (APP_EXIT_CODE, "7"),
        ],
    );
    let (code, _, err) = w.wait(Duration::from_secs(60));
    assert_eq!(code, Some(7), "{err}");
    assert!(read(&state).contains("exit rows 60"), "{}", read(&state));
    let out = restore(d, &replica, "restored.db");
    assert_eq!(rows(&out), 60);
    assert_eq!(util::logical_digest(&out), util::logical_digest(&db));
}

#[test]
fn ops_exec_app_killed_by_a_signal_gives_128_plus_the_signal() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let mut w = Walstream::start(
        d,
        "run",
        &[
            "replicate",
            "-exec",
            "sh -c 'kill -KILL $$'",
            db.to_str().unwrap(),
            d.join("r").to_str().unwrap(),
        ],
        &[],
    );
    let (code, _, err) = w.wait(Duration::from_secs(60));
    assert_eq!(code, Some(128 + libc::SIGKILL), "{err}");
}

#[test]
fn ops_exec_child_dies_with_walstream_even_on_sigkill() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let state = d.join("app.state");
    let _guard = AppGuard(state.clone());
    let cmd = app_cmd();
    let mut w = Walstream::start(
        d,
        "run",
        &[
            "replicate",
            "-exec",
            &cmd,
            db.to_str().unwrap(),
            d.join("replica").to_str().unwrap(),
        ],
        &[
            (APP_DB, db.to_str().unwrap()),
            (APP_STATE, state.to_str().unwrap()),
        ],
    );
    wait_for("the app to start", Duration::from_secs(30), || {
        app_pid(&state).is_some()
    });
    let pid = app_pid(&state).unwrap();
    assert!(!gone(pid));
    // Long enough for tokio's idle blocking threads to have come and gone.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!gone(pid), "the app died early:\n{}", w.log());
    w.signal(libc::SIGKILL);
    let (code, _, _) = w.wait(Duration::from_secs(10));
    assert_eq!(code, None);
    let killed = Instant::now();
    wait_for(
        "the app to die with walstream",
        Duration::from_secs(2),
        || gone(pid),
    );
    eprintln!("app gone {:?} after walstream's SIGKILL", killed.elapsed());
}

#[test]
fn ops_exec_refusals_are_one_line_and_start_nothing() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let replica = d.join("replica");
    let r = util::walstream(&[
        "replicate",
        "-once",
        "-exec",
        "true",
        db.to_str().unwrap(),
        replica.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1));
    let line = r.failure();
    assert!(line.contains("-once") && line.contains("-exec"), "{line}");

    for (cmd, want) in [
        ("/nonexistent/app -port 80", "/nonexistent/app"),
        ("walstream-no-such-app -x", "walstream-no-such-app"),
    ] {
        let r = util::walstream(&[
            "replicate",
            "-exec",
            cmd,
            db.to_str().unwrap(),
            replica.to_str().unwrap(),
        ]);
        assert_eq!(r.code, Some(1));
        let line = r.failure();
        assert!(line.contains(want), "{line}");
    }
    // Nothing was started: no replica, no meta directory, no database.
    assert!(!replica.exists() && !db.exists() && !d.join(".app.db-litestream").exists());
}

#[test]
fn ops_restore_on_start_fails_naming_an_unreachable_store() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    // Nothing listens on port 1: connection refused, retried, then the error.
    let started = Instant::now();
    let out = Command::new(util::bin())
        .args([
            "replicate",
            "-restore-if-db-not-exists",
            "-exec",
            "true",
            db.to_str().unwrap(),
            "s3://bucket/app?endpoint=http://127.0.0.1:1&region=us-east-1",
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env_remove("LITESTREAM_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{log}{err}");
    // The fatal error is the one line on stderr; the log (stdout) shows the retries.
    assert_eq!(err.lines().count(), 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: restore ")
            && (last.contains("127.0.0.1:1") || last.contains("s3://bucket/app")),
        "{err}"
    );
    assert!(
        log.contains("retrying"),
        "the store was not retried:\n{log}"
    );
    assert!(
        !db.exists(),
        "a database was created although the store did not answer"
    );
    eprintln!("failed after {:?}", started.elapsed());
}

#[test]
fn ops_usage_errors_exit_1_help_exits_0() {
    for args in [
        &["replicate", "-bogus"][..],
        &["restore"],
        &["no-such-command"],
        &["restore", "-txid"],
    ] {
        let r = util::walstream(args);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
    }
    let r = util::walstream(&["replicate", "-help"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("-exec"), "{}", r.stdout);
}

#[test]
fn ops_replicate_without_config_fails_naming_the_paths_and_suggests_demo() {
    for p in ["/etc/litestream.yml", "/etc/walstream.yml"] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists on this machine: the test cannot run"
        );
    }
    let dir = util::tempdir();
    let out = Command::new(util::bin())
        .arg("replicate")
        .current_dir(dir.path())
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("LOG_LEVEL")
        .output()
        .unwrap();
    let r = util::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: "walstream replicate".into(),
    };
    assert_eq!(r.code, Some(1));
    let line = r.failure();
    for want in [
        "config file not found",
        "/etc/litestream.yml",
        "/etc/walstream.yml",
        "$LITESTREAM_CONFIG",
        "walstream demo",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    assert_eq!(
        util::dir_entries(dir.path()),
        Vec::<String>::new(),
        "files were created"
    );
}

#[test]
fn ops_version_verbose_and_plain() {
    let r = util::walstream(&["version", "-verbose"]);
    r.success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("Version:     {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(lines[1], "Compatible:  Litestream 0.5.17");
    assert!(
        lines.iter().any(|l| l.starts_with("OS/Arch:     linux/")),
        "{}",
        r.stdout
    );
}

#[test]
fn ops_permission_error_prints_its_cause_once() {
    let dir = util::tempdir();
    let d = dir.path();
    let work = d.join("work");
    std::fs::create_dir(&work).unwrap();
    let db = work.join("app.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    // The replica's parent cannot be written to.
    let locked = d.join("locked");
    std::fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [(d, 0o755), (&work, 0o777), (&locked, 0o555)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for f in util::dir_entries(&work) {
        std::fs::set_permissions(work.join(f), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let mut cmd = Command::new(util::bin());
    cmd.args([
        "replicate",
        db.to_str().unwrap(),
        locked.join("replica").to_str().unwrap(),
    ])
    .env_remove("LITESTREAM_CONFIG");
    // root is never refused: run as nobody.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        use std::os::unix::process::CommandExt;
        // SAFETY: setgid/setuid between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().rfind(|l| l.starts_with("error: ")).unwrap();
    assert_eq!(line.matches("Permission denied").count(), 1, "{line}");
    assert!(
        line.contains(&locked.join("replica").display().to_string()),
        "{line}"
    );
}

#[test]
fn ops_demo_writes_reports_lag_checks_restores_and_stops_on_sigint() {
    let dir = util::tempdir();
    let d = dir.path();
    let mut w = Walstream::start(d, "demo", &["demo"], &[]);
    std::thread::sleep(Duration::from_secs(8));
    w.signal(libc::SIGINT);
    let (code, out, err) = w.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("walstream demo: replicating ./demo.db (created) to ./backup/"),
        "{out}"
    );
    let lags: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("on the replica") && l.contains("ms after COMMIT"))
        .collect();
    assert!(lags.len() >= 4, "{out}");
    let checks: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("check: "))
        .collect();
    assert!(!checks.is_empty(), "{out}");
    for c in &checks {
        assert!(c.ends_with(": match"), "{c}\n{out}");
    }
    assert!(
        out.contains("stopped;") && out.contains("0 mismatches"),
        "{out}"
    );
    // What the demo wrote is on the replica: restore it and compare.
    let restored = restore(d, &d.join("backup"), "restored.db");
    assert_eq!(
        util::logical_digest(&restored),
        util::logical_digest(&d.join("demo.db"))
    );
}

#[test]
fn ops_exec_sigint_is_forwarded_too() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let mut w = Walstream::start(
        d,
        "run",
        &[
            "replicate",
            "-exec",
            "sleep 120",
            db.to_str().unwrap(),
            d.join("r").to_str().unwrap(),
        ],
        &[],
    );
    wait_for("the app to start", Duration::from_secs(30), || {
        w.log().contains("started the -exec command")
    });
    let started = Instant::now();
    w.signal(libc::SIGINT);
    let (code, _, err) = w.wait(Duration::from_secs(60));
    // sleep dies of the forwarded SIGINT: 128 + 2, well before its 120 s.
    assert_eq!(code, Some(128 + libc::SIGINT), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(err.contains("forwarding it to the -exec command"), "{err}");
}

/// moto's endpoint (scripts/servers/moto.sh); the test fails saying what to run without it.
fn moto() -> String {
    match std::env::var("WALSTREAM_TEST_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "WALSTREAM_TEST_S3_ENDPOINT is not set: this test needs moto. Run scripts/test.sh, or \
             source scripts/servers/lib.sh and scripts/servers/moto.sh first"
        ),
    }
}

/// Creates a bucket in moto (unsigned, as moto allows).
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "create bucket {bucket}: {resp}"
    );
}

#[test]
fn ops_s3_restore_on_start_fresh_then_restored_and_missing_bucket_fails() {
    let endpoint = moto();
    let bucket = format!(
        "it-ops-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    create_bucket(&endpoint, &bucket);
    let s3 =
        |b: &str| format!("s3://{b}/app?endpoint={endpoint}&region=us-east-1&forcePathStyle=true");
    let url = s3(&bucket);
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    let state = d.join("app.state");
    let _guard = AppGuard(state.clone());
    let cmd = app_cmd();
    let keys: Vec<(String, String)> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                std::env::var(k).unwrap_or_else(|_| "test".into()),
            )
        })
        .collect();
    let mut env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        (APP_DB, db.to_str().unwrap()),
        (APP_STATE, state.to_str().unwrap()),
        (APP_EXIT_AFTER, "40"),
    ]);
    let args = [
        "replicate",
        "-restore-if-db-not-exists",
        "-exec",
        &cmd,
        db.to_str().unwrap(),
        &url,
    ];
    let (code, _, err) = Walstream::start(d, "boot1", &args, &env).wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("holds no backup"), "{err}");
    assert!(read(&state).contains("start 0"), "{}", read(&state));

    remove_local(&db);
    let (code, _, err) = Walstream::start(d, "boot2", &args, &env).wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("restored it from the replica"), "{err}");
    assert!(read(&state).contains("start 40"), "{}", read(&state));
    assert_eq!(rows(&db), 80);
    let out = d.join("restored.db");
    let r = Command::new(util::bin())
        .args(["restore", "-o", out.to_str().unwrap(), &url])
        .envs(keys.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(util::logical_digest(&out), util::logical_digest(&db));

    // A bucket that does not exist is not "no backup": it fails, naming it, and starts nothing.
    remove_local(&db);
    let missing = format!("{bucket}-missing");
    let bad = s3(&missing);
    let args = [
        "replicate",
        "-restore-if-db-not-exists",
        "-exec",
        &cmd,
        db.to_str().unwrap(),
        &bad,
    ];
    let (code, _, err) = Walstream::start(d, "boot3", &args, &env).wait(Duration::from_secs(90));
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: restore ") && last.contains(&missing),
        "{err}"
    );
    assert!(!db.exists());
    assert!(
        !read(&state).contains("start 80"),
        "the app ran:\n{}",
        read(&state)
    );
}

#[test]
fn ops_exec_app_does_not_inherit_ignored_sigxfsz() {
    let dir = util::tempdir();
    let d = dir.path();
    let out = d.join("sigign");
    let cmd = format!("sh -c 'grep SigIgn /proc/$$/status > {}'", out.display());
    let r = util::walstream(&[
        "replicate",
        "-exec",
        &cmd,
        d.join("app.db").to_str().unwrap(),
        d.join("r").to_str().unwrap(),
    ]);
    r.success();
    let text = read(&out);
    let mask = u64::from_str_radix(text.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(mask & (1 << (libc::SIGXFSZ - 1)), 0, "{text}");
}
