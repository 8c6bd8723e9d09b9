//! Failpoints for crash tests: named places where the process can be made to die by SIGKILL, so a
//! test can kill `walstream replicate` exactly between two steps that must survive a crash (an L0
//! file written but not uploaded, an upload's temp file not yet renamed, a compaction merged but
//! its inputs not yet pruned, ...).
//!
//! `WALSTREAM_FAILPOINTS=name=N[,name=N...]` is read once, at the first failpoint reached: the
//! `N`th time (1-based) the process passes `name`, it writes one line to stderr and sends itself
//! SIGKILL. Unset (always, outside tests), a failpoint costs one load of an initialised
//! `OnceLock`. Hand-rolled rather than the `fail` crate: that one is compiled out unless a cargo
//! feature is on, and the crash tests drive the real release-shaped binary.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "WALSTREAM_FAILPOINTS";

/// Every failpoint in the code, for tests that pick one.
pub const NAMES: &[&str] = &[
    "l0.after_write",
    "upload.before_rename",
    "upload.after_rename",
    "upload.before_position",
    "snapshot.after_write",
    "snapshot.after_upload",
    "checkpoint.after_passive",
    "checkpoint.after_restart",
    "checkpoint.after_truncate",
    "compaction.after_merge",
    "compaction.after_upload",
    "retention.between_deletes",
];

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| parse(&v))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, at)| Armed {
                name,
                at,
                hits: AtomicU64::new(0),
            })
            .collect()
    })
}

/// `name=N` pairs; malformed entries are ignored (`N` defaults to 1).
fn parse(spec: &str) -> Vec<(String, u64)> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((n, at)) => (n.trim().to_string(), at.trim().parse().unwrap_or(1)),
            None => (s.to_string(), 1),
        })
        .collect()
}

/// Passes the failpoint `name`: dies by SIGKILL if it is armed and this is its `N`th pass.
pub fn hit(name: &str) {
    let armed = armed();
    if armed.is_empty() {
        return;
    }
    for a in armed.iter().filter(|a| a.name == name) {
        if a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.at {
            eprintln!("failpoint {name} hit {}: SIGKILL", a.at);
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failpoint_spec_parses_names_and_counts() {
        assert_eq!(
            parse("a.b=3, c ,d=x,,"),
            vec![("a.b".into(), 3), ("c".into(), 1), ("d".into(), 1)]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn failpoint_unarmed_is_a_no_op() {
        for n in NAMES {
            hit(n);
        }
    }
}
