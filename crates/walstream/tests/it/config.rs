//! The config file through the binary: replicate and restore driven by a config, `databases`
//! (checked against the real Litestream 0.5.17), env expansion, warnings on stderr with line and
//! column, clear errors for bad configs, and no secret in any output.
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

use super::util::{self, Run};

/// Runs a program with extra environment (and without the caller's LOG_LEVEL/LITESTREAM_CONFIG).
fn run_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("{} {}", program.display(), args.join(" ")),
    }
}

fn walstream_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_env(&util::bin(), args, env)
}

fn fixture(name: &str) -> PathBuf {
    util::testdata().join("configs").join(name)
}

/// The environment the fixtures reference.
const FIXTURE_ENV: &[(&str, &str)] = &[
    ("LITESTREAM_ACCESS_KEY_ID", "AKIDFIXTURE"),
    ("LITESTREAM_SECRET_ACCESS_KEY", "fixture-secret-s3"),
    ("AZURE_KEY", "fixture-secret-azure"),
];

/// A WAL-mode database with `rows` rows of a few kinds of values.
fn make_db(path: &Path, rows: i64) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT, b BLOB, r REAL);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t(v, b, r) VALUES (?1, randomblob(200), ?2)",
            rusqlite::params![
                format!("row {i} {}", "x".repeat((i % 50) as usize)),
                i as f64 / 3.0
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn config_replicate_once_then_restore_db_path_through_config() {
    let dir = util::tempdir();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    make_db(&a, 300);
    make_db(&b, 120);
    let cfg = d.join("walstream.yml");
    // Two databases: one with a plain path replica, one with a file:// URL built from an
    // environment variable; per-database options given in Litestream's forms.
    write(
        &cfg,
        &format!(
            "dbs:\n  - path: {a}\n    monitor-interval: 500ms\n    checkpoint-interval: 1m\n    busy-timeout: 2s\n    replica:\n      type: file\n      path: {d}/replica-a\n      sync-interval: 250ms\n  - path: {b}\n    meta-path: {d}/meta-b\n    replicas:\n      - url: file://${{WS_CFG_TEST_DIR}}/replica-b\n",
            a = a.display(),
            b = b.display(),
            d = d.display()
        ),
    );
    let dir_s = d.to_str().unwrap();
    let env = [("WS_CFG_TEST_DIR", dir_s)];
    walstream_env(
        &["replicate", "-config", cfg.to_str().unwrap(), "-once"],
        &env,
    )
    .success();
    assert!(d.join("replica-a/ltx/0").is_dir(), "replica-a not written");
    assert!(d.join("replica-b/ltx").is_dir(), "replica-b not written");
    // meta-path took effect for b: its local state lives there, not next to the database.
    assert!(d.join("meta-b/ltx").is_dir(), "meta-path not used");
    assert!(!d.join(".b.db-litestream").exists());

    for (db, out) in [(&a, d.join("out-a.db")), (&b, d.join("out-b.db"))] {
        walstream_env(
            &[
                "restore",
                "-config",
                cfg.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                db.to_str().unwrap(),
            ],
            &env,
        )
        .success();
        assert_eq!(util::logical_digest(&out), util::logical_digest(db));
        assert_eq!(util::integrity(&out), "ok");
    }

    // Without -o the database is restored to its own path, as in Litestream; here found through
    // $LITESTREAM_CONFIG and a relative DB_PATH.
    let digest = util::logical_digest(&a);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", a.display()));
    }
    let out = Command::new(util::bin())
        .args(["restore", "a.db"])
        .current_dir(d)
        .env_remove("LOG_LEVEL")
        .env("LITESTREAM_CONFIG", &cfg)
        .env("WS_CFG_TEST_DIR", dir_s)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(util::logical_digest(&a), digest);

    // A database the config does not list.
    let line = walstream_env(
        &[
            "restore",
            "-config",
            cfg.to_str().unwrap(),
            "-o",
            d.join("x.db").to_str().unwrap(),
            d.join("other.db").to_str().unwrap(),
        ],
        &env,
    )
    .failure();
    assert!(line.contains("database not found in config"), "{line}");
}

#[test]
fn config_replicate_runs_config_exec_and_stops_with_it() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    make_db(&db, 50);
    let marker = d.join("exec-ran");
    let cfg = d.join("c.yml");
    write(
        &cfg,
        &format!(
            "exec: touch {m}\ndbs:\n  - path: {db}\n    replica:\n      path: {d}/replica\n",
            m = marker.display(),
            db = db.display(),
            d = d.display()
        ),
    );
    // replicate exits when the config's `exec` command does.
    let r = walstream_env(&["replicate", "-config", cfg.to_str().unwrap()], &[]);
    r.success();
    assert!(
        marker.exists(),
        "exec from the config did not run:\n{}",
        r.stderr
    );
    let out = d.join("out.db");
    walstream_env(
        &[
            "restore",
            "-o",
            out.to_str().unwrap(),
            d.join("replica").to_str().unwrap(),
        ],
        &[],
    )
    .success();
    assert_eq!(util::logical_digest(&out), util::logical_digest(&db));
}

#[test]
fn config_databases_matches_litestream_on_every_fixture() {
    for name in [
        "01-s3-url.yml",
        "02-s3-fields.yml",
        "03-several-dbs.yml",
        "04-history.yml",
        "06-deprecated-replicas.yml",
    ] {
        let cfg = fixture(name);
        for json in [false, true] {
            let mut args = vec!["databases", "-config", cfg.to_str().unwrap()];
            if json {
                args.push("-json");
            }
            let ours = walstream_env(&args, FIXTURE_ENV);
            ours.success();
            let theirs = run_env(&util::litestream_bin(), &args, FIXTURE_ENV);
            theirs.success();
            assert_eq!(ours.stdout, theirs.stdout, "{name} json={json}");
            for secret in ["fixture-secret", "AKIDFIXTURE"] {
                assert!(
                    !ours.stdout.contains(secret) && !ours.stderr.contains(secret),
                    "{name}: {secret} shown:\n{}{}",
                    ours.stdout,
                    ours.stderr
                );
            }
        }
    }
    // Directory mode: Litestream prints its working directory; walstream shows the pattern.
    let r = walstream_env(
        &[
            "databases",
            "-config",
            fixture("05-dir-exec.yml").to_str().unwrap(),
        ],
        FIXTURE_ENV,
    );
    r.success();
    assert_eq!(
        r.stdout,
        "path                          replica\n/var/lib/app/tenants/**/*.db  s3\n"
    );
}

#[test]
fn config_databases_warns_unknown_keys_on_stderr_with_line() {
    let r = walstream_env(
        &[
            "databases",
            "-config",
            fixture("06-deprecated-replicas.yml").to_str().unwrap(),
        ],
        &[],
    );
    r.success();
    assert!(
        r.stderr
            .contains("06-deprecated-replicas.yml:10:9: dbs[0].replicas[0].retention: unknown key"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("WARN"), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "path                 replica\n/var/lib/app/app.db  s3\n"
    );

    // A typo gets a suggestion; a key walstream does not act on yet says so.
    let dir = util::tempdir();
    let cfg = dir.path().join("typo.yml");
    write(
        &cfg,
        "mcp-addr: ':3001'\ndbs:\n  - path: /a.db\n    checkpoint-intervall: 1m\n    replica:\n      url: s3://b/p\n",
    );
    let r = walstream_env(&["databases", "-config", cfg.to_str().unwrap()], &[]);
    r.success();
    assert!(
        r.stderr
            .contains("typo.yml:1:1: mcp-addr: the MCP server is not supported by walstream yet"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("typo.yml:4:5: dbs[0].checkpoint-intervall: unknown key")
            && r.stderr.contains("did you mean `checkpoint-interval`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn config_env_expansion_and_no_expand_env() {
    let dir = util::tempdir();
    let cfg = dir.path().join("env.yml");
    write(
        &cfg,
        "dbs:\n  - path: /data/${WS_CFG_DB}.db\n    replica:\n      url: gs://bucket/$WS_CFG_DB\n",
    );
    let env = [("WS_CFG_DB", "orders")];
    for json in [false, true] {
        let mut args = vec!["databases", "-config", cfg.to_str().unwrap()];
        if json {
            args.push("-json");
        }
        let ours = walstream_env(&args, &env);
        ours.success();
        let theirs = run_env(&util::litestream_bin(), &args, &env);
        assert_eq!(ours.stdout, theirs.stdout);
    }
    let r = walstream_env(&["databases", "-config", cfg.to_str().unwrap()], &env);
    assert!(r.stdout.contains("/data/orders.db  gs"), "{}", r.stdout);
    // Unset variables expand to nothing.
    let r = walstream_env(&["databases", "-config", cfg.to_str().unwrap()], &[]);
    assert!(r.stdout.contains("/data/.db  gs"), "{}", r.stdout);
    // -no-expand-env keeps the text as written.
    let r = walstream_env(
        &[
            "databases",
            "-no-expand-env",
            "-config",
            cfg.to_str().unwrap(),
        ],
        &env,
    );
    r.success();
    assert!(
        r.stdout.contains("/data/${WS_CFG_DB}.db  gs"),
        "{}",
        r.stdout
    );
}

#[test]
fn config_search_order_flag_then_litestream_config_env() {
    let dir = util::tempdir();
    let (one, two) = (dir.path().join("one.yml"), dir.path().join("two.yml"));
    write(
        &one,
        "dbs:\n  - path: /one.db\n    replica:\n      path: /r1\n",
    );
    write(
        &two,
        "dbs:\n  - path: /two.db\n    replica:\n      path: /r2\n",
    );
    let env = [("LITESTREAM_CONFIG", two.to_str().unwrap())];
    let r = walstream_env(&["databases"], &env);
    r.success();
    assert!(r.stdout.contains("/two.db"), "{}", r.stdout);
    let r = walstream_env(&["databases", "-config", one.to_str().unwrap()], &env);
    assert!(r.stdout.contains("/one.db"), "{}", r.stdout);
    let missing = dir.path().join("missing.yml");
    let line = walstream_env(&["databases", "-config", missing.to_str().unwrap()], &[]).failure();
    assert!(
        line.contains("config file not found") && line.contains("missing.yml"),
        "{line}"
    );
}

#[test]
fn config_malformed_and_invalid_configs_fail_clearly_and_leave_db_untouched() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    make_db(&db, 20);
    let before = util::sha256_file(&db);
    let cases: &[(&str, String, &[&str])] = &[
        (
            "bad-duration.yml",
            format!(
                "dbs:\n  - path: {}\n    monitor-interval: soon\n    replica:\n      path: {}/r\n",
                db.display(),
                d.display()
            ),
            &[
                "bad-duration.yml:3:23:",
                "monitor-interval",
                "invalid duration \"soon\"",
            ],
        ),
        (
            "bad-yaml.yml",
            format!(
                "dbs:\n  - path: {}\n    replica:\n      path: [unclosed\n",
                db.display()
            ),
            &["bad-yaml.yml:5:1:"],
        ),
        (
            "bad-type.yml",
            format!(
                "dbs:\n  - path: {}\n    replica:\n      type: ftp\n      path: /x\n",
                db.display()
            ),
            &[
                "bad-type.yml:4:7:",
                "unknown replica type in config: \"ftp\"",
            ],
        ),
        (
            "bad-scheme.yml",
            format!(
                "dbs:\n  - path: {}\n    replica:\n      url: gopher://x/y\n",
                db.display()
            ),
            &[
                "bad-scheme.yml:4:7:",
                "unknown replica type in config: \"gopher\"",
            ],
        ),
        (
            "two-replicas.yml",
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - path: /a\n      - path: /b\n",
                db.display()
            ),
            &["two-replicas.yml:3:5:", "multiple replicas"],
        ),
    ];
    for (name, text, needles) in cases {
        let cfg = d.join(name);
        write(&cfg, text);
        for cmd in ["replicate", "databases"] {
            let mut args = vec![cmd, "-config", cfg.to_str().unwrap()];
            if cmd == "replicate" {
                args.push("-once");
            }
            let line = walstream_env(&args, &[]).failure();
            for n in *needles {
                assert!(line.contains(n), "{cmd} {name}: {line:?} lacks {n:?}");
            }
        }
        let line = walstream_env(
            &[
                "restore",
                "-config",
                cfg.to_str().unwrap(),
                "-o",
                d.join("o.db").to_str().unwrap(),
                db.to_str().unwrap(),
            ],
            &[],
        )
        .failure();
        assert!(line.contains(name), "restore {name}: {line}");
    }
    assert_eq!(util::sha256_file(&db), before, "the database was touched");
    assert!(
        !d.join(".app.db-litestream").exists(),
        "a meta directory was created"
    );
    assert!(!d.join("r").exists() && !d.join("o.db").exists());
}

#[test]
fn config_secrets_never_in_output() {
    let dir = util::tempdir();
    let d = dir.path();
    let secrets = [
        ("WS_SECRET_1", "sekrit-from-env-1"),
        ("WS_SECRET_2", "sekrit-from-env-2"),
    ];
    let body = "secret-access-key: ${WS_SECRET_1}\naccount-key: literal-sekrit-3\ndbs:\n  - path: /a.db\n    replica:\n      url: sftp://user:literal-sekrit-4@host:22/p?token=literal-sekrit-5\n      password: ${WS_SECRET_2}\n      sas-token: literal-sekrit-6\n      bogus-key: 1\n";
    let ok = d.join("ok.yml");
    write(&ok, body);
    // An invalid one: the error must not carry them either.
    let bad = d.join("bad.yml");
    write(&bad, &body.replace("bogus-key: 1", "sync-interval: 0s"));
    let runs = [
        walstream_env(&["databases", "-config", ok.to_str().unwrap()], &secrets),
        walstream_env(
            &["databases", "-json", "-config", ok.to_str().unwrap()],
            &secrets,
        ),
        walstream_env(&["databases", "-config", bad.to_str().unwrap()], &secrets),
        walstream_env(
            &["replicate", "-once", "-config", bad.to_str().unwrap()],
            &secrets,
        ),
        walstream_env(
            &[
                "restore",
                "-config",
                bad.to_str().unwrap(),
                "-o",
                d.join("o.db").to_str().unwrap(),
                "/a.db",
            ],
            &secrets,
        ),
    ];
    assert!(runs[0].stderr.contains("bogus-key"), "{}", runs[0].stderr);
    assert!(runs[2].code != Some(0) && runs[2].stderr.contains("sync interval"));
    for r in &runs {
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            !all.contains("sekrit"),
            "{}: secret shown:\n{all}",
            r.cmdline
        );
    }
}

#[test]
fn config_directory_entry_replicates_each_database_to_its_own_path() {
    let dir = util::tempdir();
    let d = dir.path();
    let t = d.join("tenants");
    std::fs::create_dir_all(t.join("sub")).unwrap();
    make_db(&t.join("acme.db"), 40);
    make_db(&t.join("sub/beta.db"), 70);
    write(&t.join("notes.db"), "not a database, despite the name");
    let cfg = d.join("dir.yml");
    write(
        &cfg,
        &format!(
            "dbs:\n  - dir: {t}\n    pattern: '*.db'\n    recursive: true\n    meta-path: {d}/meta\n    replica:\n      path: {d}/backup\n",
            t = t.display(),
            d = d.display()
        ),
    );
    walstream_env(
        &["replicate", "-once", "-config", cfg.to_str().unwrap()],
        &[],
    )
    .success();
    assert!(d.join("backup/acme.db/ltx").is_dir());
    assert!(d.join("backup/sub/beta.db/ltx").is_dir());
    assert!(!d.join("backup/notes.db").exists());
    // Each database has its own meta directory under meta-path.
    assert!(d.join("meta/.acme.db-litestream").is_dir());
    assert!(d.join("meta/sub/.beta.db-litestream").is_dir());
    for name in ["acme.db", "sub/beta.db"] {
        let out = d.join(format!("out-{}", name.replace('/', "-")));
        walstream_env(
            &[
                "restore",
                "-config",
                cfg.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                t.join(name).to_str().unwrap(),
            ],
            &[],
        )
        .success();
        assert_eq!(
            util::logical_digest(&out),
            util::logical_digest(&t.join(name))
        );
    }
}

#[test]
fn config_logging_level_applies_unless_flag_or_env_says_otherwise() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    make_db(&db, 5);
    let cfg = d.join("log.yml");
    write(
        &cfg,
        &format!(
            "logging:\n  level: debug\ndbs:\n  - path: {}\n    replica:\n      path: {}/r\n",
            db.display(),
            d.display()
        ),
    );
    let c = cfg.to_str().unwrap();
    // `replicate` logs to stdout, as Litestream does.
    let r = walstream_env(&["replicate", "-once", "-config", c], &[]);
    r.success();
    assert!(r.stdout.contains("DEBUG"), "{}", r.stdout);
    let r = walstream_env(
        &["replicate", "-once", "-config", c],
        &[("LOG_LEVEL", "error")],
    );
    r.success();
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains("DEBUG") && !all.contains("INFO"), "{all}");
    let r = walstream_env(
        &["replicate", "-once", "-log-level", "warn", "-config", c],
        &[],
    );
    r.success();
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains("DEBUG"), "{all}");
}
