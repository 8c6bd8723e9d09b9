//! Upload temp files of the file and SFTP stores: `.<name>.<pid>-<seq>.tmp` beside the target
//! `<name>`, renamed into place when whole. A kill mid-upload leaves one behind; at start
//! [`super::ReplicaStore::remove_stale_uploads`] removes those, except the ones this process is
//! writing right now ([`InFlight`]), so a call while uploads run does not break them.
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Makes temp names unique within the process, so concurrent writes of one name don't share one.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Keys (backend-qualified paths) of the temp files this process is writing.
static IN_FLIGHT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn in_flight_set() -> MutexGuard<'static, Option<HashSet<String>>> {
    // The set stays consistent through a panic elsewhere: take it anyway.
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh temp name for an upload of `name` (an LTX file name).
pub(crate) fn temp_name(name: &str) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}-{seq}.tmp", std::process::id())
}

/// Whether `name` is an upload temp name as [`temp_name`] makes them: `.`, an LTX file name,
/// `.<digits>-<digits>.tmp`. Nothing else matches, an LTX file least of all.
pub(crate) fn is_temp_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((ltx_name, tag)) = inner.rsplit_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    ltx::parse_file_name(ltx_name).is_some()
        && tag
            .split_once('-')
            .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Marks a temp file as being written by this process for as long as it lives.
#[derive(Debug)]
pub(crate) struct InFlight(String);

impl InFlight {
    /// Registers `key` (the backend name and the temp file's full path).
    pub(crate) fn new(key: String) -> InFlight {
        in_flight_set()
            .get_or_insert_with(HashSet::new)
            .insert(key.clone());
        InFlight(key)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(set) = in_flight_set().as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Whether this process is writing the temp file `key` right now.
pub(crate) fn is_in_flight(key: &str) -> bool {
    in_flight_set().as_ref().is_some_and(|s| s.contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_temp_names_match_only_their_own_pattern() {
        let ltx = "0000000000000001-0000000000000002.ltx";
        let made = temp_name(ltx);
        assert!(is_temp_name(&made), "{made}");
        assert!(is_temp_name(&format!(".{ltx}.1-2.tmp")));
        for other in [
            ltx,
            "0000000000000001-0000000000000002.ltx.tmp",
            ".0000000000000001-0000000000000002.ltx.tmp",
            ".0000000000000001-0000000000000002.ltx.1-.tmp",
            ".0000000000000001-0000000000000002.ltx.x-2.tmp",
            ".0000000000000001-0000000000000002.ltx.12.tmp",
            ".1-2.ltx.1-2.tmp",
            ".lease.1-2.tmp",
            ".db.sqlite.1-2.tmp",
            "",
            ".tmp",
        ] {
            assert!(!is_temp_name(other), "{other:?} taken for a temp name");
        }
    }

    #[test]
    fn upload_temp_in_flight_registers_until_dropped() {
        let key = format!("test:{}", temp_name("x"));
        assert!(!is_in_flight(&key));
        let g = InFlight::new(key.clone());
        assert!(is_in_flight(&key));
        drop(g);
        assert!(!is_in_flight(&key));
    }
}
