//! Directory mode: a `dbs[]` entry with `dir` + `pattern` stands for every SQLite database in
//! that directory (and its subdirectories with `recursive`). Each one gets its own replica path
//! (the entry's, plus the database's path relative to `dir`) and, with `meta-path`, its own meta
//! directory, as Litestream derives them.
use std::path::{Component, Path, PathBuf};

use super::{expand_path, DbConfig, ReplicaConfig};
use crate::paths::split_url;

/// Checks a `filepath.Match` pattern.
pub(super) fn check_pattern(pattern: &str) -> Result<(), String> {
    glob_match(pattern, "").map(|_| ())
}

/// Go's `filepath.Match` on a file name: `*` (any run), `?` (one character), `[abc]`, `[a-z]`,
/// `[^a-z]`, and `\` to escape. A malformed pattern is an error.
pub(super) fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern first, so that an early mismatch cannot hide a syntax error.
    let mut i = 0;
    while i < p.len() {
        i = match p[i] {
            '[' => class_end(&p, i)?,
            '\\' if i + 1 >= p.len() => return Err(bad(pattern)),
            '\\' => i + 2,
            _ => i + 1,
        };
    }
    Ok(match_from(&p, 0, &n, 0))
}

fn bad(pattern: &str) -> String {
    format!("syntax error in pattern {pattern:?}")
}

/// Index just past the class starting at `p[start] == '['`.
fn class_end(p: &[char], start: usize) -> Result<usize, String> {
    let s: String = p.iter().collect();
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        match p.get(i) {
            None => return Err(bad(&s)),
            Some(']') if !first => return Ok(i + 1),
            _ => {}
        }
        first = false;
        let lo = class_char(p, &mut i).ok_or_else(|| bad(&s))?;
        if p.get(i) == Some(&'-') {
            i += 1;
            let hi = class_char(p, &mut i).ok_or_else(|| bad(&s))?;
            if hi < lo {
                return Err(bad(&s));
            }
        }
    }
}

fn class_char(p: &[char], i: &mut usize) -> Option<char> {
    let c = *p.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        let e = *p.get(*i + 1)?;
        *i += 2;
        return Some(e);
    }
    *i += 1;
    Some(c)
}

fn class_matches(p: &[char], start: usize, c: char) -> bool {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&ch) = p.get(i) {
        if ch == ']' && !first {
            break;
        }
        first = false;
        let Some(lo) = class_char(p, &mut i) else {
            return false;
        };
        let hi = if p.get(i) == Some(&'-') {
            i += 1;
            class_char(p, &mut i).unwrap_or(lo)
        } else {
            lo
        };
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    hit != negate
}

fn match_from(p: &[char], pi: usize, n: &[char], ni: usize) -> bool {
    let Some(&pc) = p.get(pi) else {
        return ni == n.len();
    };
    match pc {
        '*' => (ni..=n.len())
            .take_while(|&k| k == ni || n[k - 1] != '/')
            .any(|k| match_from(p, pi + 1, n, k)),
        '?' => ni < n.len() && n[ni] != '/' && match_from(p, pi + 1, n, ni + 1),
        '[' => {
            let Ok(end) = class_end(p, pi) else {
                return false;
            };
            ni < n.len()
                && n[ni] != '/'
                && class_matches(p, pi, n[ni])
                && match_from(p, end, n, ni + 1)
        }
        '\\' => {
            p.get(pi + 1).is_some_and(|&e| n.get(ni) == Some(&e))
                && match_from(p, pi + 2, n, ni + 1)
        }
        c => n.get(ni) == Some(&c) && match_from(p, pi + 1, n, ni + 1),
    }
}

/// Whether a file starts with the SQLite header.
fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && &header == b"SQLite format 3\0"
}

/// The databases a `dir` entry covers now, each as a `path` entry of its own.
pub(super) fn scan_entry(db: &DbConfig) -> Result<Vec<DbConfig>, String> {
    let dir = expand_path(db.dir.as_deref().unwrap_or("")).map_err(|e| format!("dir: {e}"))?;
    let pattern = db.pattern.as_deref().unwrap_or("");
    let recursive = db.recursive == Some(true);
    let mut found = Vec::new();
    walk(&dir, pattern, recursive, &mut found)
        .map_err(|e| format!("failed to scan directory {}: {e}", dir.display()))?;
    if found.is_empty() && db.watch != Some(true) {
        return Err(format!(
            "no SQLite databases found in directory {} with pattern {pattern}",
            dir.display()
        ));
    }
    Ok(found.iter().filter_map(|p| derive(db, &dir, p)).collect())
}

fn walk(dir: &Path, pattern: &str, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_type()?.is_dir() {
            if recursive {
                walk(&path, pattern, recursive, out)?;
            }
            continue;
        }
        let name = e.file_name();
        let name = name.to_string_lossy();
        if glob_match(pattern, &name).unwrap_or(false) && is_sqlite(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The entry a `dir` config would make for `want` (an absolute path), if its pattern covers it.
/// The file need not exist.
pub(super) fn entry_for(db: &DbConfig, want: &Path) -> Option<DbConfig> {
    let dir = expand_path(db.dir.as_deref()?).ok()?;
    let rel = want.strip_prefix(&dir).ok()?;
    let parts: Vec<_> = rel.components().collect();
    if parts.is_empty()
        || parts.iter().any(|c| !matches!(c, Component::Normal(_)))
        || (parts.len() > 1 && db.recursive != Some(true))
    {
        return None;
    }
    let name = want.file_name()?.to_string_lossy();
    if !glob_match(db.pattern.as_deref()?, &name).ok()? {
        return None;
    }
    derive(db, &dir, want)
}

/// The `path` entry for one database found under `dir`.
fn derive(db: &DbConfig, dir: &Path, path: &Path) -> Option<DbConfig> {
    let rel = path.strip_prefix(dir).ok()?;
    let rel_slash = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let mut out = db.clone();
    out.path = Some(path.to_string_lossy().into_owned());
    out.dir = None;
    out.pattern = None;
    out.recursive = None;
    out.watch = None;
    if let Some(base) = &db.meta_path {
        let base = expand_path(base).ok()?;
        let file = rel.file_name()?.to_string_lossy();
        let parent = rel.parent().unwrap_or(Path::new(""));
        out.meta_path = Some(
            base.join(parent)
                .join(format!(".{file}-litestream"))
                .to_string_lossy()
                .into_owned(),
        );
    }
    out.replica = db.replica.as_ref().map(|r| with_rel(r, &rel_slash));
    out.replicas = db
        .replicas
        .as_ref()
        .map(|l| l.iter().map(|r| with_rel(r, &rel_slash)).collect());
    Some(out)
}

/// A copy of the replica with the database's relative path appended to its URL's path or its
/// `path`, so that every database of a directory has its own place on the replica.
fn with_rel(r: &ReplicaConfig, rel: &str) -> ReplicaConfig {
    let mut out = r.clone();
    if let Some(url) = &r.url {
        out.url = Some(url_join(url, rel));
        return out;
    }
    let base = r.path.clone().unwrap_or_default();
    out.path = Some(if base.is_empty() {
        rel.to_string()
    } else if r.replica_type() == "file" {
        Path::new(&base).join(rel).to_string_lossy().into_owned()
    } else {
        clean_join(&base, rel)
    });
    out
}

/// `path.Join` for slash paths.
fn clean_join(base: &str, rel: &str) -> String {
    crate::paths::clean_path(&format!("{base}/{rel}"))
}

fn url_join(url: &str, rel: &str) -> String {
    let Some((scheme, rest)) = split_url(url) else {
        return clean_join(url, rel);
    };
    let (main, tail) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => main.split_at(i),
        None => (main, ""),
    };
    let joined = if path.is_empty() {
        rel.to_string()
    } else {
        clean_join(path, rel)
    };
    format!(
        "{scheme}://{authority}/{}{tail}",
        joined.trim_start_matches('/')
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn glob_match_like_go_filepath_match() {
        assert!(glob_match("*.db", "a.db").unwrap());
        assert!(!glob_match("*.db", "a.db-wal").unwrap());
        assert!(glob_match("t?.sqlite", "t1.sqlite").unwrap());
        assert!(glob_match("[a-c]*", "beta").unwrap());
        assert!(!glob_match("[^a-c]*", "beta").unwrap());
        assert!(glob_match("\\*x", "*x").unwrap());
        assert!(glob_match("*", "").unwrap());
        assert!(glob_match("[", "x").is_err());
        assert!(glob_match("a\\", "a").is_err());
        assert!(glob_match("[z-a]", "b").is_err());
        assert!(check_pattern("*.db").is_ok());
    }

    #[test]
    fn dir_derive_appends_relative_path() {
        let db: DbConfig = serde_norway::from_str(
            "dir: /data/t\npattern: '*.db'\nrecursive: true\nmeta-path: /meta\nreplica:\n  url: s3://b/base?region=x\n",
        )
        .unwrap();
        let d = entry_for(&db, Path::new("/data/t/acme/app.db")).unwrap();
        assert_eq!(d.path.as_deref(), Some("/data/t/acme/app.db"));
        assert_eq!(
            d.meta_path.as_deref(),
            Some("/meta/acme/.app.db-litestream")
        );
        assert_eq!(
            d.replica.unwrap().url.as_deref(),
            Some("s3://b/base/acme/app.db?region=x")
        );
        assert!(entry_for(&db, Path::new("/data/t/acme/app.txt")).is_none());
        assert!(entry_for(&db, Path::new("/data/other/app.db")).is_none());

        let flat: DbConfig =
            serde_norway::from_str("dir: /d\npattern: '*.db'\nreplica:\n  path: /bk\n").unwrap();
        let d = entry_for(&flat, Path::new("/d/x.db")).unwrap();
        assert_eq!(d.replica.unwrap().path.as_deref(), Some("/bk/x.db"));
        assert!(entry_for(&flat, Path::new("/d/sub/x.db")).is_none());

        let s3: DbConfig = serde_norway::from_str(
            "dir: /d\npattern: '*.db'\nreplica:\n  type: s3\n  bucket: b\n  path: tenants\n",
        )
        .unwrap();
        let d = entry_for(&s3, Path::new("/d/x.db")).unwrap();
        assert_eq!(d.replica.unwrap().path.as_deref(), Some("tenants/x.db"));
    }

    #[test]
    fn dir_scan_finds_only_sqlite_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        for p in ["a.db", "sub/b.db"] {
            let c = rusqlite::Connection::open(d.join(p)).unwrap();
            c.execute_batch("CREATE TABLE t(x)").unwrap();
        }
        std::fs::write(d.join("fake.db"), b"not a database").unwrap();
        let yaml = format!(
            "dir: {}\npattern: '*.db'\nreplica:\n  path: /bk\n",
            d.display()
        );
        let mut db: DbConfig = serde_norway::from_str(&yaml).unwrap();
        let found: Vec<String> = scan_entry(&db)
            .unwrap()
            .into_iter()
            .map(|e| e.path.unwrap())
            .collect();
        assert_eq!(found, [d.join("a.db").display().to_string()]);
        db.recursive = Some(true);
        assert_eq!(scan_entry(&db).unwrap().len(), 2);
        db.pattern = Some("*.sqlite".into());
        let err = scan_entry(&db).unwrap_err();
        assert!(err.contains("no SQLite databases found"), "{err}");
        db.watch = Some(true);
        assert!(scan_entry(&db).unwrap().is_empty());
    }
}
