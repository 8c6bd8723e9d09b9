//! Security (issue 5, item 5): secrets never reach output, listed names never steer where restore
//! writes, the meta directory and restore's temporary files are owner-only.
//!
//! The S3 cases need moto: run `scripts/test.sh` (it starts moto via scripts/servers/moto.sh and
//! sets `WALSTREAM_TEST_S3_ENDPOINT` and `WALSTREAM_TEST_S3_AUTH_ENDPOINT`).
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::util::*;

// Test secrets: distinctive values, so a grep cannot match anything else.
const AKID: &str = "AKIAWSTESTLEAKCHECK7";
const SECRET: &str = "wsLeakCheckSecret/Key+Zq9Xy";
const SECRET_TAIL: &str = "Key+Zq9Xy";
const AZ_KEY: &str = "d3NMZWFrQ2hlY2tBenVyZUtleTEyMw==";
const SAS: &str = "sig=wsLeakCheckSasSig42";
const SFTP_PW: &str = "wsLeakCheckSftpPassw0rd";
const URL_USER: &str = "wsLeakCheckUrlUser";
const URL_PW: &str = "wsLeakCheckUrlPass";
const SSE_KEY: &str = "d3NMZWFrQ2hlY2tTc2VDS2V5MDEyMzQ1Njc4OTAxMjM0NQ==";

const ALL_SECRETS: &[&str] = &[
    AKID,
    SECRET,
    SECRET_TAIL,
    AZ_KEY,
    SAS,
    SFTP_PW,
    URL_USER,
    URL_PW,
    SSE_KEY,
];

fn moto() -> String {
    std::env::var("WALSTREAM_TEST_S3_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("WALSTREAM_TEST_S3_ENDPOINT is not set: the security tests need moto; run scripts/test.sh (it starts moto via scripts/servers/moto.sh)")
        })
}

fn moto_auth() -> String {
    std::env::var("WALSTREAM_TEST_S3_AUTH_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("WALSTREAM_TEST_S3_AUTH_ENDPOINT is not set: run scripts/test.sh (scripts/servers/moto.sh starts moto-auth)")
        })
}

/// A raw HTTP request to moto (it takes unsigned requests); returns the status line.
fn moto_raw(method: &str, path: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let endpoint = moto();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines().next().unwrap_or("").to_string()
}

fn new_bucket(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let bucket = format!("ws-sec-{tag}-{}-{nanos}", std::process::id());
    let status = moto_raw("PUT", &format!("/{bucket}"), b"");
    assert!(status.contains(" 200"), "create bucket: {status}");
    bucket
}

/// A small WAL-mode database with a few rows.
fn app_db(dir: &Path) -> PathBuf {
    let path = dir.join("app.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (randomblob(3000));",
    )
    .unwrap();
    path
}

/// Runs walstream with `args`, extra environment, in `cwd`; returns everything it printed.
fn run_env(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("walstream {}", args.join(" ")),
    }
}

/// The secrets found in a run's output.
fn leaked(run: &Run) -> Vec<&'static str> {
    ALL_SECRETS
        .iter()
        .copied()
        .filter(|s| run.stdout.contains(s) || run.stderr.contains(s))
        .collect()
}

/// One run: its name, its arguments, its extra environment.
type Job = (String, Vec<String>, Vec<(&'static str, &'static str)>);

/// Replicas configured with every kind of secret, pointing at servers that fail (refused
/// connections, wrong keys) or, for S3, at moto itself.
fn secret_configs(dir: &Path, db: &Path, bucket: &str) -> Vec<(String, PathBuf)> {
    let auth = moto_auth();
    let refused = "http://127.0.0.1:1";
    let replicas = [
        (
            "s3-moto",
            format!(
                "type: s3\n      bucket: {bucket}\n      path: cfg\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {AKID}\n      secret-access-key: {SECRET}",
                moto()
            ),
        ),
        (
            "s3-auth-fails",
            format!(
                "type: s3\n      bucket: walstream-auth\n      path: cfg\n      endpoint: {auth}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {AKID}\n      secret-access-key: {SECRET}"
            ),
        ),
        (
            "s3-refused-sse",
            format!(
                "type: s3\n      bucket: b\n      path: cfg\n      endpoint: {refused}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {AKID}\n      secret-access-key: {SECRET}\n      sse-customer-key: {SSE_KEY}"
            ),
        ),
        (
            "s3-endpoint-userinfo",
            format!(
                "type: s3\n      bucket: b\n      path: cfg\n      endpoint: https://{URL_USER}:{URL_PW}@127.0.0.1:1\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {AKID}\n      secret-access-key: {SECRET}"
            ),
        ),
        (
            "abs-refused",
            format!(
                "type: abs\n      account-name: wsaccount\n      account-key: {AZ_KEY}\n      bucket: c\n      path: cfg\n      endpoint: {refused}"
            ),
        ),
        (
            "abs-sas-refused",
            format!(
                "type: abs\n      account-name: wsaccount\n      sas-token: \"sv=2022-11-02&{SAS}\"\n      bucket: c\n      path: cfg\n      endpoint: {refused}"
            ),
        ),
        (
            "sftp-refused",
            format!(
                "type: sftp\n      host: 127.0.0.1:1\n      user: wsuser\n      password: {SFTP_PW}\n      path: /cfg"
            ),
        ),
        (
            "s3-url-userinfo",
            format!(
                "url: s3://{AKID}:{SECRET}@{bucket}/url?endpoint={}&region=us-east-1&forcePathStyle=true",
                moto()
            ),
        ),
        (
            "sftp-url-password",
            format!("url: sftp://wsuser:{SFTP_PW}@127.0.0.1:1/url"),
        ),
    ];
    replicas
        .iter()
        .map(|(name, yaml)| {
            let cfg = dir.join(format!("{name}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "dbs:\n  - path: {}\n    replica:\n      {yaml}\n",
                    db.display()
                ),
            )
            .unwrap();
            (name.to_string(), cfg)
        })
        .collect()
}

/// replicate, restore, databases and ltx, with secrets in config files, URLs and the environment,
/// at every log level, succeeding and failing (refused connections, wrong keys, bad URLs): no
/// secret appears on stdout or stderr.
#[test]
fn security_secrets_never_appear_in_output() {
    let dir = tempdir();
    let db = app_db(dir.path());
    let bucket = new_bucket("secrets");
    let configs = secret_configs(dir.path(), &db, &bucket);
    let log_envs: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("-log-level debug", vec![]),
        ("-log-level trace", vec![]),
        ("LOG_LEVEL=trace", vec![("LOG_LEVEL", "trace")]),
        ("RUST_LOG=trace", vec![("RUST_LOG", "trace")]),
    ];
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY),
        ("LITESTREAM_ACCESS_KEY_ID", AKID),
        ("LITESTREAM_SECRET_ACCESS_KEY", SECRET),
    ];
    let out = dir.path().join("restored.db");
    let out_s = out.to_str().unwrap().to_string();
    let db_s = db.to_str().unwrap().to_string();

    let mut jobs: Vec<Job> = Vec::new();
    for (name, cfg) in &configs {
        let cfg = cfg.to_str().unwrap().to_string();
        for (level_name, env) in &log_envs {
            let level_args: Vec<String> = if level_name.starts_with('-') {
                vec![
                    "-log-level".into(),
                    level_name.split(' ').nth(1).unwrap().into(),
                ]
            } else {
                vec![]
            };
            let mut env = env.clone();
            env.extend_from_slice(&aws_env);
            let with = |mut v: Vec<String>| {
                for (k, a) in level_args.iter().enumerate() {
                    v.insert(1 + k, a.clone());
                }
                v
            };
            jobs.push((
                format!("{name} replicate -once ({level_name})"),
                with(vec![
                    "replicate".into(),
                    "-once".into(),
                    "-config".into(),
                    cfg.clone(),
                ]),
                env.clone(),
            ));
            jobs.push((
                format!("{name} restore ({level_name})"),
                with(vec![
                    "restore".into(),
                    "-config".into(),
                    cfg.clone(),
                    "-o".into(),
                    format!("{out_s}-{}-{}", name, jobs.len()),
                    db_s.clone(),
                ]),
                env.clone(),
            ));
            jobs.push((
                format!("{name} databases ({level_name})"),
                with(vec!["databases".into(), "-config".into(), cfg.clone()]),
                env.clone(),
            ));
            jobs.push((
                format!("{name} ltx ({level_name})"),
                with(vec![
                    "ltx".into(),
                    "-config".into(),
                    cfg.clone(),
                    db_s.clone(),
                ]),
                env.clone(),
            ));
        }
    }
    // URLs with credentials on the command line, including malformed ones whose parse errors
    // echo the URL, and a secret holding '/' (AWS secrets do).
    let m = moto();
    let urls = [
        format!(
            "s3://{AKID}:{SECRET}@{bucket}/cli?endpoint={m}&region=us-east-1&forcePathStyle=true"
        ),
        format!("s3://{AKID}:{SECRET}@{bucket}/cli?endpoint=http://127.0.0.1:1&region=us-east-1"),
        format!(
            "s3://{bucket}/cli?endpoint=https://{URL_USER}:{URL_PW}@127.0.0.1:1&region=us-east-1"
        ),
        format!("s3://{URL_USER}:{URL_PW}@/nobucket"),
        format!("s3://{AKID}:{SECRET}@"),
        format!("sftp://wsuser:{SFTP_PW}@127.0.0.1:1/cli"),
        format!("sftp://wsuser:{SFTP_PW}@[::1/cli"),
        format!("abs://wsaccount:{AZ_KEY}@c/cli?endpoint=http://127.0.0.1:1"),
        format!("abs://wsaccount@c/cli?endpoint=http://127.0.0.1:1&{SAS}"),
        format!("gs://{URL_USER}:{URL_PW}@bucket/cli?endpoint=http://127.0.0.1:1"),
        format!("https://{URL_USER}:{URL_PW}@127.0.0.1:1/cli"),
    ];
    for (i, url) in urls.iter().enumerate() {
        for (level_name, env) in &log_envs[1..3] {
            let level: Vec<String> = if level_name.starts_with('-') {
                vec!["-log-level".into(), "trace".into()]
            } else {
                vec![]
            };
            let mut env = env.clone();
            env.extend_from_slice(&aws_env);
            let mut a = vec!["replicate".to_string()];
            a.extend(level.clone());
            a.extend(["-once".to_string(), db_s.clone(), url.clone()]);
            jobs.push((format!("url {i} replicate ({level_name})"), a, env.clone()));
            let mut a = vec!["restore".to_string()];
            a.extend(level.clone());
            a.extend([
                "-o".to_string(),
                format!("{out_s}-url-{i}-{}", jobs.len()),
                url.clone(),
            ]);
            jobs.push((format!("url {i} restore ({level_name})"), a, env.clone()));
            let mut a = vec!["ltx".to_string()];
            a.extend(level.clone());
            a.push(url.clone());
            jobs.push((format!("url {i} ltx ({level_name})"), a, env.clone()));
        }
    }

    // Run in parallel: failing restores retry for a while.
    let jobs = std::sync::Arc::new(std::sync::Mutex::new(
        jobs.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let results = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let jobs = jobs.clone();
            let results = results.clone();
            std::thread::spawn(move || loop {
                let Some((i, (name, args, env))) = jobs.lock().unwrap().pop() else {
                    return;
                };
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let run = run_env(&args, &env, None);
                results.lock().unwrap().insert(i, (name, run));
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = results.lock().unwrap();
    let mut leaks = Vec::new();
    let (mut ok, mut failed, mut bytes) = (0, 0, 0);
    for (name, run) in results.values() {
        bytes += run.stdout.len() + run.stderr.len();
        if run.code == Some(0) {
            ok += 1;
        } else {
            failed += 1;
        }
        let l = leaked(run);
        if !l.is_empty() {
            leaks.push(format!(
                "{name}: {l:?} in\n{}\nstdout: {}\nstderr: {}",
                run.cmdline, run.stdout, run.stderr
            ));
        }
        assert!(
            !run.stderr.contains("panicked"),
            "{name}: {}\n{}",
            run.cmdline,
            run.stderr
        );
    }
    eprintln!(
        "secrets: runs={} succeeded={ok} failed={failed} output_bytes={bytes} leaks={}",
        results.len(),
        leaks.len()
    );
    // The S3 runs against moto really replicated, so success paths were logged too.
    assert!(
        ok >= 4,
        "too few successful runs to check the success paths"
    );
    assert!(
        leaks.is_empty(),
        "{} runs leaked:\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
}

/// Every file under `root` with its size, except under `skip`.
fn tree(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), e.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    out
}

/// A file replica whose level directories hold symlinks (to files and directories outside) and
/// crafted names (`..`, odd characters, names that are almost LTX names): restore writes only the
/// output, and the files outside are unchanged.
#[test]
fn security_file_replica_names_and_symlinks_cannot_redirect_restore() {
    let root = tempdir();
    let (_d, replica) = replica_copy("basic-4k");
    let work = root.path().join("work");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim.db"), b"do not touch").unwrap();
    let l0 = replica.join("ltx/0");
    // Odd names next to the real files.
    for name in [
        "..ltx",
        "...ltx",
        "0000000000000001-0000000000000001.ltx.tmp",
        ".0000000000000001-0000000000000001.ltx",
        "0000000000000001-0000000000000001.ltx\n",
        "00000000000000g1-0000000000000001.ltx",
        "0000000000000001-0000000000000001.LTX",
        "-0000000000000001.ltx",
        "0000000000000001-.ltx",
        "0000000000000001-0000000000000001",
        " 0000000000000099-0000000000000099.ltx",
        "0000000000000099-0000000000000099.ltx;rm -rf",
        "\u{202e}0000000000000099-0000000000000099.ltx",
    ] {
        std::fs::write(l0.join(name), b"junk").unwrap();
    }
    // A level directory that is a symlink to a directory outside, and files that are symlinks
    // to files outside (one to the victim, one dangling).
    std::os::unix::fs::symlink(&outside, replica.join("ltx/3")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("victim.db"),
        replica.join("ltx/4/0000000000000001-0000000000000001.ltx"),
    )
    .or_else(|_| {
        std::fs::create_dir_all(replica.join("ltx/4"))?;
        std::os::unix::fs::symlink(
            outside.join("victim.db"),
            replica.join("ltx/4/0000000000000001-0000000000000001.ltx"),
        )
    })
    .unwrap();
    std::fs::create_dir_all(replica.join("ltx/5")).unwrap();
    std::os::unix::fs::symlink(
        root.path().join("nowhere"),
        replica.join("ltx/5/0000000000000001-0000000000000002.ltx"),
    )
    .unwrap();
    // The output's directory path itself goes through `..`.
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = work.join("x/../out/restored.db");
    std::fs::create_dir_all(work.join("x")).unwrap();

    let before = tree(root.path());
    let run = run_env(
        &[
            "restore",
            "-o",
            out.to_str().unwrap(),
            replica.to_str().unwrap(),
        ],
        &[],
        Some(&work),
    );
    let after = tree(root.path());
    let new: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let changed: Vec<&PathBuf> = before
        .iter()
        .filter(|(p, len)| after.get(*p) != Some(len))
        .map(|(p, _)| p)
        .collect();
    let restored = out_dir.join("restored.db");
    if run.code == Some(0) {
        assert_eq!(new, vec![&restored], "{}", run.stderr);
        assert_eq!(
            sha256_file(&restored),
            manifest("basic-4k")["latest"]["sha256"].as_str().unwrap()
        );
    } else {
        let line = run.failure();
        assert!(new.is_empty(), "{line}: wrote {new:?}");
        assert!(line.contains("level"), "{line}");
    }
    assert!(changed.is_empty(), "changed: {changed:?}");
    assert_eq!(
        std::fs::read(outside.join("victim.db")).unwrap(),
        b"do not touch"
    );
}

/// Objects on S3 with `..` segments, nested keys, encoded slashes and odd characters next to a
/// real replica: restore (with a relative output, run in a scratch directory) writes only the
/// output.
#[test]
fn security_s3_keys_with_dot_dot_cannot_redirect_restore() {
    let bucket = new_bucket("keys");
    let dir = tempdir();
    let db = app_db(dir.path());
    let url = format!(
        "s3://{bucket}/db?endpoint={}&region=us-east-1&forcePathStyle=true",
        moto()
    );
    walstream(&["replicate", "-once", db.to_str().unwrap(), &url]).success();
    let ltx = std::fs::read(
        fixture("basic-4k").join("replica/ltx/0/0000000000000002-0000000000000002.ltx"),
    )
    .unwrap();
    let crafted = [
        "db/0000/../../escape/0000000000000002-0000000000000002.ltx",
        "db/0000/..%2F..%2Fescape%2F0000000000000002-0000000000000002.ltx",
        "db/0000/sub/0000000000000002-0000000000000002.ltx",
        "db/0000/%2E%2E/0000000000000003-0000000000000003.ltx",
        "db/0000/0000000000000002-0000000000000002.ltx/../../../x",
        "db/0000/0000000000000004-0000000000000004.ltx%00",
        "db/0000/..",
        "db/0000/%2E%2E%2F%2E%2E%2Fx.ltx",
        "db/0009/../0000/0000000000000001-0000000000000009.ltx",
    ];
    let mut statuses = Vec::new();
    for key in crafted {
        statuses.push((key, moto_raw("PUT", &format!("/{bucket}/{key}"), &ltx)));
    }
    eprintln!("crafted puts: {statuses:?}");

    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(scratch.join("out")).unwrap();
    let before = tree(dir.path());
    let run = run_env(
        &["restore", "-o", "out/restored.db", &url],
        &[],
        Some(&scratch),
    );
    let after = tree(dir.path());
    let new: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let restored = scratch.join("out/restored.db");
    if run.code == Some(0) {
        assert_eq!(new, vec![&restored], "{}", run.stderr);
        assert_eq!(logical_digest(&restored), logical_digest(&db));
    } else {
        let line = run.failure();
        assert!(new.is_empty(), "{line}: wrote {new:?}");
    }
    assert!(!dir.path().join("escape").exists());
    assert!(
        !Path::new("/tmp/escape").exists()
            || !Path::new("/tmp/escape/0000000000000002-0000000000000002.ltx").exists()
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Everything walstream creates in the meta directory is owner-only: directories 0700, files
/// 0600. Checked after replicating several syncs (with a checkpoint) under umask 022.
#[test]
fn security_meta_dir_is_owner_only() {
    let dir = tempdir();
    let db = app_db(dir.path());
    let replica = dir.path().join("replica");
    let c = rusqlite::Connection::open(&db).unwrap();
    for i in 0..3 {
        c.execute("INSERT INTO t VALUES (randomblob(5000 + ?1))", [i])
            .unwrap();
        walstream(&[
            "replicate",
            "-once",
            db.to_str().unwrap(),
            replica.to_str().unwrap(),
        ])
        .success();
    }
    let meta = dir.path().join(".app.db-litestream");
    assert!(meta.is_dir());
    let mut bad = Vec::new();
    let mut n = 0;
    let mut stack = vec![meta.clone()];
    while let Some(d) = stack.pop() {
        n += 1;
        if mode(&d) != 0o700 {
            bad.push(format!("{} is {:o}", d.display(), mode(&d)));
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
                if mode(&e.path()) != 0o600 {
                    bad.push(format!("{} is {:o}", e.path().display(), mode(&e.path())));
                }
            }
        }
    }
    assert!(n >= 4, "too little in the meta directory to check");
    assert!(bad.is_empty(), "{bad:?}");
}

/// Restore's temporary files (`<out>.tmp` and the downloads) are owner-only while they exist;
/// a restore that fails after writing `<out>.tmp` (integrity check) leaves none behind. The
/// restored database itself gets the usual mode (0666 less the umask), as Litestream's.
#[test]
fn security_restore_temp_files_are_owner_only() {
    // Watch the output directory while a restore runs, recording the modes of what appears.
    let (_d, replica) = replica_copy("basic-4k");
    let out_dir = tempdir();
    let out = out_dir.path().join("out.db");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, u32>::new()));
    let watcher = {
        let stop = stop.clone();
        let seen = seen.clone();
        let dir = out_dir.path().to_path_buf();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                            continue;
                        };
                        let name = e.path().strip_prefix(&dir).unwrap().display().to_string();
                        if name == "out.db" {
                            continue;
                        }
                        seen.lock()
                            .unwrap()
                            .insert(name, m.permissions().mode() & 0o777);
                        if m.is_dir() {
                            stack.push(e.path());
                        }
                    }
                }
            }
        })
    };
    for i in 0..20 {
        let _ = std::fs::remove_file(&out);
        walstream(&[
            "restore",
            "-integrity-check",
            "full",
            "-o",
            out.to_str().unwrap(),
            replica.to_str().unwrap(),
        ])
        .success();
        if i == 0 {
            assert_eq!(mode(&out), 0o644, "restored database under umask 022");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    eprintln!("restore temporaries seen: {seen:?}");
    let bad: Vec<_> = seen
        .iter()
        .filter(|(name, m)| {
            let is_dir = !name.contains('/') && name.starts_with(".walstream-restore-");
            **m != if is_dir { 0o700 } else { 0o600 }
        })
        .collect();
    assert!(bad.is_empty(), "not owner-only: {bad:?}");
    assert_eq!(dir_entries(out_dir.path()), ["out.db"]);
}
