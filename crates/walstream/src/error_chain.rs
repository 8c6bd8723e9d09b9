//! One line for an error and its causes, each cause printed once.
//!
//! Many of walstream's error types (thiserror) write their cause into their own message
//! (`replica {replica}: {source}`) *and* report it as their `source()`. Printing such a chain
//! with anyhow's `{:#}` repeats every cause once per level above it:
//! `database d: lease owner file f: Permission denied (os error 13): lease owner file f:
//! Permission denied (os error 13): Permission denied (os error 13)`. [`line`] walks the chain
//! and appends a cause only when the text so far does not already say it, so that both kinds of
//! wrapper (those that repeat their source and anyhow's `.context()`, which does not) read once.
use std::error::Error;

/// The error and each cause not already part of the text, joined by `": "`, on one line.
pub fn line(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.replace('\n', " ")
}

/// [`line`] for an `anyhow::Error` (its context layers and the error inside).
pub fn anyhow_line(err: &anyhow::Error) -> String {
    let mut chain = err.chain();
    let mut out = chain.next().map(|e| e.to_string()).unwrap_or_default();
    for c in chain {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("lease owner file /m/owner: {source}")]
    struct Inner {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("database /d.db: {source}")]
    struct Outer {
        source: Inner,
    }

    fn denied() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EACCES)
    }

    #[test]
    fn each_cause_once_when_wrappers_repeat_their_source() {
        let e = Outer {
            source: Inner { source: denied() },
        };
        let l = line(&e);
        assert_eq!(l.matches("os error 13").count(), 1, "{l}");
        assert_eq!(l.matches("lease owner file").count(), 1, "{l}");
        assert!(
            l.starts_with("database /d.db: lease owner file /m/owner: "),
            "{l}"
        );
        // What `{:#}` printed before.
        let a = anyhow::Error::new(Outer {
            source: Inner { source: denied() },
        });
        assert_eq!(format!("{a:#}").matches("os error 13").count(), 3);
        assert_eq!(anyhow_line(&a), l);
    }

    #[test]
    fn context_layers_that_do_not_repeat_are_all_kept() {
        let a = anyhow::Error::new(denied())
            .context("open /x/app.db")
            .context("restore on start");
        let l = anyhow_line(&a);
        assert!(
            l.starts_with("restore on start: open /x/app.db: ") && l.contains("os error 13"),
            "{l}"
        );
        assert_eq!(l.matches("os error 13").count(), 1, "{l}");
    }
}
