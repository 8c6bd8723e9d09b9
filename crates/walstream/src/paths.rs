//! Lexical helpers for paths and URLs, shared by every layer: the one "is this a URL" test, the
//! one path clean, and the one URL redaction. No I/O (except reading the current directory in
//! [`absolute_lexical`]) and no other module of this crate: it sits at the bottom of the layers.
use std::path::{Component, Path, PathBuf};

/// Splits `scheme://rest` when `s` starts with `\w+://`, the test Litestream uses to tell a
/// replica URL from a path.
pub fn split_url(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let word = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    word.then_some((scheme, rest))
}

/// Whether `s` is a replica URL (`scheme://...`) rather than a path, as Litestream decides.
pub fn is_url(s: &str) -> bool {
    split_url(s).is_some()
}

/// A slash path cleaned lexically: empty and `.` segments dropped, `..` removes the segment
/// before it and never climbs above the start (so the result cannot escape its root). A leading
/// `/` is kept; no trailing `/`. `"/"` stays `"/"`, `""` stays `""`.
///
/// Unlike Go's `path.Clean` (see [`go_clean`]), a relative path never keeps a leading `..`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    if p.starts_with('/') {
        format!("/{body}")
    } else {
        body
    }
}

/// Go's `path.Clean`, exactly: a relative path keeps its leading `..` segments, `""` is `"."`.
pub fn go_clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// `p` made absolute against the current directory and cleaned lexically (`.` and `..` folded,
/// `..` at the root stays at the root), as Go's `filepath.Abs`. Symlinks are not resolved.
pub fn absolute_lexical(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A URL safe for logs and errors: user info (user, password, account, access key) and the query
/// and fragment (which can carry tokens) are dropped; `scheme://host/path` remains. A password
/// holding an unencoded `/` is dropped too (see [`host_and_path`]). A string that is not a URL
/// loses its query and fragment only.
pub fn redact_url(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or("");
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = host_and_path(rest);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    }
}

/// Splits what follows `scheme://` (without the query) into host and path, dropping user info.
///
/// User info ends at the last `@` of the authority. A password holding an unencoded `/` (AWS
/// secret keys often do) ends the authority early: it then looks like `user:pass` with a port
/// that is not a number, and its `@` comes in the path. In that case everything up to that `@`
/// is user info, so that no part of the secret becomes the host, the path or an error message.
pub fn host_and_path(rest: &str) -> (&str, &str) {
    fn split(s: &str) -> (&str, &str) {
        s.split_at(s.find('/').unwrap_or(s.len()))
    }
    let (authority, path) = split(rest);
    if let Some((_, host)) = authority.rsplit_once('@') {
        return (host, path);
    }
    let port_is_not_a_number = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty());
    match path.find('@') {
        Some(at) if port_is_not_a_number && !authority.starts_with('[') => split(&path[at + 1..]),
        _ => (authority, path),
    }
}

/// Litestream's `expand()` for a database or meta path: drop a `sqlite://`/`sqlite3://` prefix,
/// expand a leading `~` from `$HOME`, make the path absolute and clean it lexically.
pub fn expand_path(p: &str) -> Result<PathBuf, String> {
    let p = p
        .strip_prefix("sqlite3://")
        .or_else(|| p.strip_prefix("sqlite://"))
        .unwrap_or(p);
    if p.is_empty() {
        return Err("path required".to_string());
    }
    let expanded = match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("cannot expand path {p}, no home directory available"))?;
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(p),
    };
    absolute_lexical(&expanded).map_err(|e| format!("{p}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_is_url_needs_a_word_scheme() {
        assert!(is_url("s3://bucket/db"));
        assert!(is_url("file:///tmp/x"));
        assert!(!is_url("/tmp/x"));
        assert!(!is_url("./a://b"));
        assert!(!is_url("://x"));
        assert_eq!(split_url("gs://b/p"), Some(("gs", "b/p")));
    }

    #[test]
    fn paths_clean_path_never_escapes_its_root() {
        for (p, want) in [
            ("", ""),
            ("/", "/"),
            ("a/./b//c/", "a/b/c"),
            ("/a/../../b", "/b"),
            ("a/../../b", "b"),
            ("/..", "/"),
            ("./x", "x"),
        ] {
            assert_eq!(clean_path(p), want, "{p:?}");
        }
    }

    #[test]
    fn paths_go_clean_matches_go() {
        for (p, want) in [
            ("", "."),
            ("/", "/"),
            ("a/../..", ".."),
            ("../a/./b/", "../a/b"),
            ("/../a", "/a"),
            ("a//b", "a/b"),
        ] {
            assert_eq!(go_clean(p), want, "{p:?}");
        }
    }

    #[test]
    fn paths_absolute_lexical_folds_dots() {
        assert_eq!(
            absolute_lexical(Path::new("/a/./b/../c")).ok(),
            Some(PathBuf::from("/a/c"))
        );
        assert_eq!(
            absolute_lexical(Path::new("/..")).ok(),
            Some(PathBuf::from("/"))
        );
    }

    #[test]
    fn paths_redact_url_drops_user_info_and_query() {
        for (url, want) in [
            ("sftp://u:hunter2@h/p?token=tok1", "sftp://h/p"),
            (
                "s3://AKIAX:abc/def+ghi@bucket/db?region=x",
                "s3://bucket/db",
            ),
            ("abs://account@container/p#frag", "abs://container/p"),
            ("s3://b.localhost:9000/p@x", "s3://b.localhost:9000/p@x"),
            ("/plain/path?x=1", "/plain/path"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        assert_eq!(host_and_path("AKIAX:abc/def@b"), ("b", ""));
        assert_eq!(host_and_path("u:p@b/p"), ("b", "/p"));
        assert_eq!(host_and_path("bucket/p@x"), ("bucket", "/p@x"));
        assert_eq!(host_and_path("[::1]:9000/p@x"), ("[::1]:9000", "/p@x"));
    }
}
