//! `$VAR` / `${VAR}` expansion of the config text, with the semantics of Go's `os.Expand` as
//! Litestream 0.5 uses it: unset variables expand to the empty string, `$PID` is the process id.
//!
//! The rules, checked against Litestream 0.5.17:
//! - `$NAME` takes the longest run of ASCII letters, digits and `_`;
//! - `${NAME}` takes everything up to the first `}`; `${}` is dropped, and a `${` without a
//!   closing brace is dropped (the text after it stays);
//! - `$` followed by one of `*#$@!?-` or a digit is a one-character name (`$1`, `$$`);
//! - a `$` followed by anything else, or at the very end, stays as it is.

/// Expands `$VAR` and `${VAR}` in `text`, looking each name up with `lookup`.
pub fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let value = |name: &str| -> String {
        if name == "PID" {
            return std::process::id().to_string();
        }
        lookup(name).unwrap_or_default()
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Start of the text not yet copied.
    let mut copied = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] != b'$' || j + 1 >= b.len() {
            j += 1;
            continue;
        }
        out.push_str(&text[copied..j]);
        let (name, width) = shell_name(&text[j + 1..]);
        match name {
            // Bad syntax: the consumed characters are dropped.
            None if width > 0 => {}
            // Not a name: the `$` stays.
            None => out.push('$'),
            Some(name) => out.push_str(&value(name)),
        }
        j += width + 1;
        copied = j;
    }
    out.push_str(&text[copied..]);
    out
}

/// Expands from the process environment.
pub fn expand(text: &str) -> String {
    expand_with(text, |name| std::env::var(name).ok())
}

/// The name after a `$` and how many bytes it spans (`None` with a width: bad syntax).
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    match b.first() {
        Some(b'{') => {
            if b.len() > 2 && special(b[1]) && b[2] == b'}' {
                return (Some(&s[1..2]), 3);
            }
            match s[1..].find('}') {
                Some(0) => (None, 2),
                Some(end) => (Some(&s[1..1 + end]), end + 2),
                None => (None, 1),
            }
        }
        Some(&c) if special(c) => (Some(&s[..1]), 1),
        _ => {
            let n = b
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            if n == 0 {
                (None, 0)
            } else {
                (Some(&s[..n]), n)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ex(s: &str) -> String {
        expand_with(s, |name| match name {
            "A" => Some("alpha".into()),
            "X_1" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        })
    }

    #[test]
    fn env_expand_dollar_and_braces() {
        assert_eq!(ex("$A/${A}"), "alpha/alpha");
        assert_eq!(ex("a${X_1}b$X_1-c"), "axbx-c");
        assert_eq!(ex("[$EMPTY][$UNSET][${UNSET}]"), "[][][]");
        assert_eq!(ex("no dollars"), "no dollars");
    }

    #[test]
    fn env_expand_matches_go_os_expand_edge_cases() {
        // Checked against Litestream 0.5.17: `/tmp/$PID/a${}b${X/c$1d$$e$` ->
        // `/tmp/<pid>/abX/cde$`.
        let pid = std::process::id();
        assert_eq!(
            ex("/tmp/$PID/a${}b${X/c$1d$$e$"),
            format!("/tmp/{pid}/abX/cde$")
        );
        assert_eq!(ex("cost: 5$"), "cost: 5$");
        assert_eq!(ex("a $ b"), "a $ b");
        assert_eq!(ex("$.x"), "$.x");
        assert_eq!(ex("${1}"), "");
        assert_eq!(ex("é$Aé"), "éalphaé");
    }
}
