//! Retention: which replica files are redundant, as a pure function of the listing, the policy
//! and the clock. Deleting is the caller's job, after this plan has been checked.
//!
//! Rules (Litestream 0.5's, made safe):
//! - snapshots (L9) older than `snapshot.retention` go, but the newest snapshot always stays;
//! - in levels 1..=8, files whose MaxTXID is at or below the oldest kept snapshot's go (no
//!   restore that starts at a kept snapshot needs them), except the newest file of each level;
//! - L0 files go once compacted into L1 and older than `l0-retention`;
//! - with no snapshot at all, only L0 files that L1 covers may go;
//! - finally the plan is checked: the newest state, and every kept snapshot's state, must still
//!   restore from what remains, reaching the same TXID. If not, nothing is deleted.
//!
//! Deletions of a pass are independent: any subset of them leaves a replica that restores, so an
//! interrupted pass is harmless.
use std::time::{Duration, SystemTime};

use ltx::TxId;

use crate::restore::{plan, Target};
use crate::storage::{LtxFileInfo, SNAPSHOT_LEVEL};

/// `snapshot.retention`, `l0-retention`, `retention.enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep snapshots this long (24 h).
    pub snapshot_retention: Duration,
    /// Keep compacted L0 files this long (5 m).
    pub l0_retention: Duration,
    /// `retention.enabled` (true).
    pub enabled: bool,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(300),
            enabled: true,
        }
    }
}

fn older_than(f: &LtxFileInfo, now: SystemTime, age: Duration) -> bool {
    now.duration_since(f.created_at).is_ok_and(|d| d > age)
}

/// L0 files by retention status, as Litestream's `litestream_l0_retention_files_total`
/// counts them: (eligible: compacted into L1 and older than `l0-retention`; not compacted;
/// compacted but too recent).
pub fn l0_status(
    files: &[LtxFileInfo],
    policy: &RetentionPolicy,
    now: SystemTime,
) -> (u64, u64, u64) {
    let l1_max = files
        .iter()
        .filter(|f| f.level == 1)
        .map(|f| f.max_txid)
        .max();
    let (mut eligible, mut not_compacted, mut too_recent) = (0, 0, 0);
    for f in files.iter().filter(|f| f.level == 0) {
        if l1_max.is_none_or(|m| f.max_txid > m) {
            not_compacted += 1;
        } else if older_than(f, now, policy.l0_retention) {
            eligible += 1;
        } else {
            too_recent += 1;
        }
    }
    (eligible, not_compacted, too_recent)
}

/// The files to delete from `files` (every level of one replica). Empty if nothing is
/// redundant, retention is disabled, or the safety check fails.
pub fn plan_deletions(
    files: &[LtxFileInfo],
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Vec<LtxFileInfo> {
    if !policy.enabled || files.is_empty() {
        return Vec::new();
    }
    let mut delete: Vec<LtxFileInfo> = Vec::new();
    let mut snapshots: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && f.min_txid == TxId(1))
        .collect();
    snapshots.sort_by_key(|f| f.max_txid);
    let newest_snapshot = snapshots.last().map(|f| f.max_txid);
    let kept: Vec<&LtxFileInfo> = snapshots
        .iter()
        .copied()
        .filter(|f| {
            Some(f.max_txid) == newest_snapshot || !older_than(f, now, policy.snapshot_retention)
        })
        .collect();
    delete.extend(
        snapshots
            .iter()
            .filter(|f| !kept.iter().any(|k| k == *f))
            .map(|f| (*f).clone()),
    );
    if let Some(oldest_kept) = kept.iter().map(|f| f.max_txid).min() {
        for level in 1..SNAPSHOT_LEVEL {
            let lvl: Vec<&LtxFileInfo> = files.iter().filter(|f| f.level == level).collect();
            let newest = lvl.iter().map(|f| f.max_txid).max();
            delete.extend(
                lvl.iter()
                    .filter(|f| f.max_txid <= oldest_kept && Some(f.max_txid) != newest)
                    .map(|f| (*f).clone()),
            );
        }
    }
    if let Some(l1_max) = files
        .iter()
        .filter(|f| f.level == 1)
        .map(|f| f.max_txid)
        .max()
    {
        delete.extend(
            files
                .iter()
                .filter(|f| {
                    f.level == 0 && f.max_txid <= l1_max && older_than(f, now, policy.l0_retention)
                })
                .cloned(),
        );
    }
    if delete.is_empty() || !still_restores(files, &delete, &kept) {
        return Vec::new();
    }
    delete
}

/// When a file of `files` would next become deletable by age alone, after `now`: a compacted
/// L0 file reaching `l0-retention`, or a snapshot other than the newest reaching
/// `snapshot.retention`. `None` if no file will without something new being written, so that an
/// idle replica needs no more retention passes.
pub fn next_deletion_due(
    files: &[LtxFileInfo],
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Option<SystemTime> {
    if !policy.enabled {
        return None;
    }
    let l1_max = files
        .iter()
        .filter(|f| f.level == 1)
        .map(|f| f.max_txid)
        .max();
    let newest_snapshot = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL)
        .map(|f| f.max_txid)
        .max();
    let l0 = files
        .iter()
        .filter(|f| f.level == 0 && l1_max.is_some_and(|m| f.max_txid <= m))
        .map(|f| f.created_at + policy.l0_retention);
    let snaps = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && Some(f.max_txid) != newest_snapshot)
        .map(|f| f.created_at + policy.snapshot_retention);
    l0.chain(snaps)
        // Just past the age limit (`older_than` is strict).
        .map(|t| t + Duration::from_millis(1))
        .filter(|t| *t > now)
        .min()
}

/// Whether the newest state and each kept snapshot's state restore from what remains.
fn still_restores(files: &[LtxFileInfo], delete: &[LtxFileInfo], kept: &[&LtxFileInfo]) -> bool {
    let remaining: Vec<LtxFileInfo> = files
        .iter()
        .filter(|f| !delete.contains(f))
        .cloned()
        .collect();
    let latest = |set: &[LtxFileInfo]| {
        plan(set, &Target::Latest, "")
            .ok()
            .and_then(|c| c.last().map(|f| f.max_txid))
    };
    let before = latest(files);
    if before.is_some() && latest(&remaining) != before {
        return false;
    }
    kept.iter()
        .all(|s| plan(&remaining, &Target::TxId(s.max_txid), "").is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn retention_next_deletion_due_only_for_files_coming_of_age() {
        let policy = RetentionPolicy::default();
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = |level: u8, min: u64, max: u64, at: SystemTime| LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: at,
        };
        // L0 not yet compacted, one snapshot: nothing will come of age by itself.
        let files = vec![f(9, 1, 1, t0), f(0, 2, 2, t0)];
        assert_eq!(next_deletion_due(&files, &policy, t0), None);
        // Once L1 covers L0, the L0 file comes of age after l0-retention.
        let files = vec![f(9, 1, 1, t0), f(0, 2, 2, t0), f(1, 2, 2, t0)];
        let due = next_deletion_due(&files, &policy, t0).unwrap();
        assert!(
            due > t0 + policy.l0_retention
                && due < t0 + policy.l0_retention + Duration::from_secs(1)
        );
        // Past it: nothing more to wait for (the pass deletes it).
        assert_eq!(next_deletion_due(&files, &policy, due), None);
        // An older snapshot comes of age after snapshot.retention.
        let files = vec![f(9, 1, 1, t0), f(9, 1, 5, t0 + Duration::from_secs(10))];
        let due = next_deletion_due(&files, &policy, t0).unwrap();
        assert!(due > t0 + policy.snapshot_retention);
    }
    use super::*;
    use std::time::UNIX_EPOCH;

    fn f(level: u8, min: u64, max: u64, age_s: u64, now: SystemTime) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 1,
            created_at: now - Duration::from_secs(age_s),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(10_000_000)
    }

    #[test]
    fn retention_deletes_old_snapshot_and_what_it_covers() {
        let n = now();
        let files = vec![
            f(9, 1, 10, 100_000, n),
            f(9, 1, 20, 10, n),
            f(1, 1, 10, 100_000, n),
            f(1, 11, 20, 20, n),
            f(1, 21, 22, 5, n),
            f(0, 21, 21, 600, n),
            f(0, 22, 22, 1, n),
        ];
        let del = plan_deletions(&files, &RetentionPolicy::default(), n);
        assert!(del.contains(&files[0]), "old snapshot kept");
        assert!(
            del.contains(&files[2]),
            "L1 below the oldest kept snapshot kept"
        );
        assert!(!del.contains(&files[1]), "newest snapshot deleted");
        assert!(!del.contains(&files[4]), "newest L1 deleted");
        assert!(del.contains(&files[5]), "compacted, old L0 kept");
        assert!(!del.contains(&files[6]), "young L0 deleted");
    }

    #[test]
    fn retention_keeps_newest_snapshot_even_if_old() {
        let n = now();
        let files = vec![f(9, 1, 5, 999_999, n), f(0, 6, 6, 1, n)];
        assert!(plan_deletions(&files, &RetentionPolicy::default(), n).is_empty());
    }

    #[test]
    fn retention_disabled_deletes_nothing() {
        let n = now();
        let files = vec![f(9, 1, 10, 100_000, n), f(9, 1, 20, 10, n)];
        let p = RetentionPolicy {
            enabled: false,
            ..RetentionPolicy::default()
        };
        assert!(plan_deletions(&files, &p, n).is_empty());
    }

    #[test]
    fn retention_never_deletes_uncompacted_l0() {
        let n = now();
        let files = vec![
            f(9, 1, 10, 10, n),
            f(1, 11, 12, 500, n),
            f(0, 13, 13, 900, n),
            f(0, 14, 14, 900, n),
        ];
        let del = plan_deletions(&files, &RetentionPolicy::default(), n);
        assert!(del.iter().all(|d| d.level != 0), "{del:?}");
    }

    #[test]
    fn retention_refuses_a_plan_that_breaks_the_chain() {
        let n = now();
        // L1 claims to cover 2..=3 but there is a hole at 2 in every other level: deleting L0 3
        // would still leave L1, so build a case where L1 does not start right after a kept file.
        let files = vec![
            f(0, 1, 1, 900, n),
            f(0, 2, 2, 900, n),
            f(1, 2, 2, 900, n),
            f(1, 5, 5, 900, n),
            f(0, 5, 5, 900, n),
        ];
        let del = plan_deletions(&files, &RetentionPolicy::default(), n);
        let remaining: Vec<LtxFileInfo> =
            files.iter().filter(|x| !del.contains(x)).cloned().collect();
        let before = plan(&files, &Target::Latest, "")
            .ok()
            .map(|c| c.last().unwrap().max_txid);
        let after = plan(&remaining, &Target::Latest, "")
            .ok()
            .map(|c| c.last().unwrap().max_txid);
        assert_eq!(before, after);
    }

    #[test]
    fn retention_any_subset_of_a_plan_still_restores() {
        let n = now();
        let mut files = vec![f(9, 1, 10, 100_000, n), f(9, 1, 30, 100, n)];
        for t in 1..=40u64 {
            files.push(f(0, t, t, 2000 - t * 10, n));
        }
        files.push(f(1, 1, 10, 100_000, n));
        files.push(f(1, 11, 30, 100, n));
        files.push(f(1, 31, 35, 50, n));
        let del = plan_deletions(&files, &RetentionPolicy::default(), n);
        assert!(!del.is_empty());
        let target = plan(&files, &Target::Latest, "")
            .unwrap()
            .last()
            .unwrap()
            .max_txid;
        // Interrupted passes: every prefix of the deletions leaves a replica that restores fully.
        for k in 0..=del.len() {
            let rem: Vec<LtxFileInfo> = files
                .iter()
                .filter(|x| !del[..k].contains(x))
                .cloned()
                .collect();
            let got = plan(&rem, &Target::Latest, "")
                .unwrap()
                .last()
                .unwrap()
                .max_txid;
            assert_eq!(got, target, "after {k} deletions");
        }
    }
}
