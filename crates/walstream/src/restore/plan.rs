//! Restore planning: a pure function from a replica's listing and a target to the chain of LTX
//! files whose compaction is the database at that target.
//!
//! The rules follow Litestream 0.5:
//! 1. start from the newest L9 snapshot that is eligible (MaxTXID ≤ the `-txid` target, or created
//!    strictly before the `-timestamp` target);
//! 2. then repeatedly add, from levels 8 down to 0, the eligible file that extends the contiguous
//!    range furthest (ties: lower MinTXID, then higher level, then older);
//! 3. a `-txid` target must be reached exactly, otherwise the TXID is "not available".
//!
//! A file may overlap the chain (start at or before the chain's end): an LTX file holds the final
//! image of every page changed in its range, so laying it over the state at any TXID inside that
//! range is exact. This is the usual case after a snapshot, whose TXID falls inside an L1 interval.
//! Chain files that the new file covers entirely are dropped.
//!
//! Follow mode (`restore -f`) plans here too: [`plan_follow`] picks what to apply after the
//! copy's position, and [`replica_mismatch`] says when a recorded position cannot be trusted.
use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use ltx::TxId;

use crate::storage::{LtxFileInfo, SNAPSHOT_LEVEL};

use super::{RestoreError, Target};

/// Plans a restore: the chain of files to compact, in TXID order, the first one starting at TXID 1.
///
/// `files` is the listing of every level (any order). Files at level 9 count as snapshots only if
/// their MinTXID is 1. `replica` only names the replica in errors.
pub fn plan(
    files: &[LtxFileInfo],
    target: &Target,
    replica: &str,
) -> Result<Vec<LtxFileInfo>, RestoreError> {
    let eligible = |f: &LtxFileInfo| match target {
        Target::Latest => true,
        Target::TxId(t) => f.max_txid <= *t,
        Target::Timestamp(ts) => f.created_at < *ts,
    };

    if let Target::Timestamp(ts) = target {
        let span = time_span(files);
        if span.is_none_or(|(_, newest)| *ts > newest) {
            return Err(RestoreError::TimestampNotAvailable {
                timestamp: *ts,
                span,
            });
        }
    }

    let mut chain: Vec<LtxFileInfo> = Vec::new();
    if let Some(snapshot) = files
        .iter()
        .filter(|f| {
            f.level == SNAPSHOT_LEVEL
                && f.min_txid == TxId(1)
                && f.min_txid <= f.max_txid
                && eligible(f)
        })
        .max_by(|a, b| {
            a.max_txid
                .cmp(&b.max_txid)
                .then_with(|| b.created_at.cmp(&a.created_at))
        })
    {
        chain.push(snapshot.clone());
    }
    let mut current = chain.last().map(|f| f.max_txid).unwrap_or(TxId(0));

    // Files that may extend the chain, sorted by MinTXID so each step scans only a prefix.
    let mut candidates: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| {
            f.level < SNAPSHOT_LEVEL && f.min_txid.0 >= 1 && f.min_txid <= f.max_txid && eligible(f)
        })
        .collect();
    candidates.sort_by_key(|f| f.min_txid);

    let reached = |current: TxId| matches!(target, Target::TxId(t) if current >= *t);
    let mut start = 0;
    while !reached(current) {
        let next = current.0.saturating_add(1);
        let reachable = candidates.partition_point(|f| f.min_txid.0 <= next);
        // `current` only grows: leading files it has passed are done for good.
        while start < reachable && candidates[start].max_txid <= current {
            start += 1;
        }
        let best = candidates[start..reachable]
            .iter()
            .copied()
            .filter(|f| f.max_txid > current)
            .max_by(|a, b| better(a, b));
        let Some(best) = best else { break };
        while chain
            .last()
            .is_some_and(|last| last.min_txid >= best.min_txid)
        {
            chain.pop();
        }
        chain.push(best.clone());
        current = best.max_txid;
    }

    if chain.is_empty() {
        return Err(match target {
            Target::Latest => RestoreError::NoBackups {
                replica: replica.to_string(),
            },
            Target::TxId(t) => RestoreError::TxNotAvailable {
                target: *t,
                available: coverage(files),
            },
            Target::Timestamp(ts) => RestoreError::TimestampNotAvailable {
                timestamp: *ts,
                span: time_span(files),
            },
        });
    }
    match target {
        Target::TxId(t) if current != *t => {
            return Err(RestoreError::TxNotAvailable {
                target: *t,
                available: coverage(files),
            });
        }
        Target::Latest => {
            if let Some(after) = files
                .iter()
                .filter(|f| f.min_txid.0 > current.0.saturating_add(1))
                .map(|f| f.min_txid)
                .min()
            {
                return Err(RestoreError::NonContiguous {
                    have: current,
                    next: after,
                });
            }
        }
        _ => {}
    }
    Ok(chain)
}

/// `Greater` when `a` is the better next file: reaches further, then starts earlier, then sits at
/// a higher level (fewer, bigger files), then is older.
fn better(a: &LtxFileInfo, b: &LtxFileInfo) -> Ordering {
    a.max_txid
        .cmp(&b.max_txid)
        .then_with(|| b.min_txid.cmp(&a.min_txid))
        .then_with(|| a.level.cmp(&b.level))
        .then_with(|| b.created_at.cmp(&a.created_at))
}

/// The TXID ranges the listing covers, merged where files touch or overlap. Used in errors.
pub fn coverage(files: &[LtxFileInfo]) -> Vec<(TxId, TxId)> {
    let mut spans: Vec<(TxId, TxId)> = files
        .iter()
        .filter(|f| f.min_txid <= f.max_txid)
        .map(|f| (f.min_txid, f.max_txid))
        .collect();
    spans.sort();
    let mut out: Vec<(TxId, TxId)> = Vec::new();
    for (min, max) in spans {
        match out.last_mut() {
            Some(last) if min.0 <= last.1 .0.saturating_add(1) => last.1 = last.1.max(max),
            _ => out.push((min, max)),
        }
    }
    out
}

/// Oldest and newest creation times of the files, if any.
pub fn time_span(files: &[LtxFileInfo]) -> Option<(SystemTime, SystemTime)> {
    let oldest = files.iter().map(|f| f.created_at).min()?;
    let newest = files.iter().map(|f| f.created_at).max()?;
    Some((oldest, newest))
}

/// What [`plan_follow`] decided (follow mode: `restore -f`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowPlan {
    /// Nothing after the position.
    UpToDate,
    /// Files to apply, in order; the first starts at or before position + 1, each next one
    /// starts at or before the previous MaxTXID + 1 and reaches further. It may stop short of
    /// the replica's newest TXID when there is a gap after it.
    Apply(Vec<LtxFileInfo>),
    /// Files exist past the position, but none continues from it.
    Gap {
        /// The position.
        at: TxId,
        /// The lowest MinTXID past the position.
        next: TxId,
    },
    /// The listing ends before the position (or is empty).
    Behind {
        /// The newest TXID listed (0 if none).
        newest: TxId,
    },
}

/// Plans what to apply after `pos` from `files` (any levels, any order).
///
/// From the position on, each step takes the L0 file that reaches furthest among those starting
/// at or before the next TXID; when L0 has none, the lowest of L1..L8 that has one (its
/// furthest); when none of those either and `allow_full`, the full file (MinTXID 1, such as an
/// L9 snapshot) that reaches furthest. Files that begin before the position are sound to lay
/// over it: an LTX file holds the final image of every page changed in its range.
pub fn plan_follow(files: &[LtxFileInfo], pos: TxId, allow_full: bool) -> FollowPlan {
    let newest = files.iter().map(|f| f.max_txid).max().unwrap_or(TxId(0));
    if newest < pos || files.is_empty() {
        return FollowPlan::Behind { newest };
    }
    let usable = |f: &&LtxFileInfo| f.min_txid.0 >= 1 && f.min_txid <= f.max_txid;
    let mut chain: Vec<LtxFileInfo> = Vec::new();
    let mut current = pos;
    loop {
        let next = current.0.saturating_add(1);
        let reaches = |f: &&LtxFileInfo| f.min_txid.0 <= next && f.max_txid > current;
        let furthest = |level: u8| {
            files
                .iter()
                .filter(usable)
                .filter(|f| f.level == level)
                .filter(reaches)
                .max_by(|a, b| {
                    a.max_txid
                        .cmp(&b.max_txid)
                        .then_with(|| b.min_txid.cmp(&a.min_txid))
                })
        };
        let mut best = (0..SNAPSHOT_LEVEL).find_map(furthest);
        if best.is_none() && allow_full {
            best = files
                .iter()
                .filter(usable)
                .filter(|f| f.min_txid == TxId(1))
                .filter(reaches)
                .max_by(|a, b| {
                    a.max_txid
                        .cmp(&b.max_txid)
                        .then_with(|| a.level.cmp(&b.level))
                });
        }
        let Some(best) = best else { break };
        current = best.max_txid;
        chain.push(best.clone());
    }
    if !chain.is_empty() {
        return FollowPlan::Apply(chain);
    }
    match files
        .iter()
        .filter(|f| f.max_txid > pos)
        .map(|f| f.min_txid)
        .min()
    {
        Some(next) => FollowPlan::Gap { at: pos, next },
        None => FollowPlan::UpToDate,
    }
}

/// Whether a listing of L0 alone settles the next step: it continues right after `pos` with no
/// hole up to its newest file, or it is at `pos`.
pub(crate) fn l0_settles(l0: &[LtxFileInfo], pos: TxId, plan: &FollowPlan) -> bool {
    let newest = l0.iter().map(|f| f.max_txid).max();
    match (plan, newest) {
        (_, None) => false,
        (FollowPlan::UpToDate, Some(n)) => n >= pos,
        (FollowPlan::Apply(chain), Some(n)) => chain.last().is_some_and(|l| l.max_txid == n),
        _ => false,
    }
}

/// Creation time in ms since the Unix epoch.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The timestamp of a file at levels 0..8 ending at `txid`, if the listing has one.
pub(crate) fn timestamp_at(files: &[LtxFileInfo], txid: TxId) -> Option<u64> {
    files
        .iter()
        .filter(|f| f.level < SNAPSHOT_LEVEL && f.max_txid == txid)
        .map(|f| millis(f.created_at))
        .next()
}

/// Why the recorded position cannot be trusted against this listing, if it cannot.
pub(crate) fn replica_mismatch(
    files: &[LtxFileInfo],
    txid: TxId,
    timestamp_ms: Option<u64>,
) -> Option<String> {
    let newest = files.iter().map(|f| f.max_txid).max().unwrap_or(TxId(0));
    if newest < txid {
        return Some(format!(
            "replica went backwards: its newest TXID is {newest}, the copy is at {txid}"
        ));
    }
    if let (Some(want), Some(got)) = (timestamp_ms, timestamp_at(files, txid)) {
        if want != got {
            return Some(format!(
                "replica was replaced: its file ending at TXID {txid} was created at {got} ms, the copy's at {want} ms"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn f(level: u8, min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: UNIX_EPOCH + Duration::from_secs(1000 + max),
        }
    }

    fn names(chain: &[LtxFileInfo]) -> Vec<(u8, u64, u64)> {
        chain
            .iter()
            .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
            .collect()
    }

    /// The basic-4k fixture's listing (Litestream 0.5.17).
    fn basic() -> Vec<LtxFileInfo> {
        let mut v: Vec<LtxFileInfo> = (1..=9).map(|t| f(0, t, t)).collect();
        v.extend([f(1, 1, 1), f(1, 2, 2), f(1, 3, 8), f(1, 9, 9)]);
        v.extend([f(2, 1, 8), f(2, 9, 9)]);
        v.extend([f(9, 1, 1), f(9, 1, 8), f(9, 1, 9)]);
        v
    }

    #[test]
    fn plan_latest_takes_newest_snapshot_only() {
        let chain = plan(&basic(), &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(9, 1, 9)]);
    }

    #[test]
    fn plan_txid_matches_litestream_dry_run() {
        // `litestream restore -dry-run -txid 5` on basic-4k: L9 1-1, L1 2-2, L0 3, L0 4, L0 5.
        let chain = plan(&basic(), &Target::TxId(TxId(5)), "r").unwrap();
        assert_eq!(
            names(&chain),
            vec![(9, 1, 1), (1, 2, 2), (0, 3, 3), (0, 4, 4), (0, 5, 5)]
        );
    }

    #[test]
    fn plan_txid_on_snapshot_stops_there() {
        let chain = plan(&basic(), &Target::TxId(TxId(8)), "r").unwrap();
        assert_eq!(names(&chain), vec![(9, 1, 8)]);
    }

    #[test]
    fn plan_without_l0_uses_higher_levels() {
        let files: Vec<_> = basic()
            .into_iter()
            .filter(|f| f.level != 0 && f.level != 9)
            .collect();
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(2, 1, 8), (2, 9, 9)]);
    }

    #[test]
    fn plan_without_snapshot_starts_at_txid_one() {
        let files: Vec<_> = (1..=4).map(|t| f(0, t, t)).collect();
        let chain = plan(&files, &Target::TxId(TxId(3)), "r").unwrap();
        assert_eq!(names(&chain), vec![(0, 1, 1), (0, 2, 2), (0, 3, 3)]);
    }

    #[test]
    fn plan_txid_between_boundaries_is_not_available() {
        let files = vec![f(9, 1, 2), f(1, 3, 8)];
        let err = plan(&files, &Target::TxId(TxId(5)), "r").unwrap_err();
        match &err {
            RestoreError::TxNotAvailable { target, available } => {
                assert_eq!(*target, TxId(5));
                assert_eq!(available, &vec![(TxId(1), TxId(8))]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("tx not available"), "{msg}");
        assert!(msg.contains("0000000000000001-0000000000000008"), "{msg}");
    }

    #[test]
    fn plan_txid_beyond_end_is_not_available() {
        let err = plan(&basic(), &Target::TxId(TxId(0x10)), "r").unwrap_err();
        assert!(
            matches!(err, RestoreError::TxNotAvailable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn plan_empty_listing_is_no_backups() {
        let err = plan(&[], &Target::Latest, "file:///x").unwrap_err();
        assert!(matches!(err, RestoreError::NoBackups { .. }), "{err:?}");
        assert!(err.to_string().contains("file:///x"));
    }

    #[test]
    fn plan_without_start_at_one_is_no_backups() {
        let files = vec![f(0, 5, 5), f(0, 6, 6)];
        assert!(matches!(
            plan(&files, &Target::Latest, "r"),
            Err(RestoreError::NoBackups { .. })
        ));
    }

    #[test]
    fn plan_latest_with_gap_is_an_error() {
        let files = vec![f(0, 1, 1), f(0, 2, 2), f(0, 4, 4)];
        let err = plan(&files, &Target::Latest, "r").unwrap_err();
        assert!(
            matches!(
                err,
                RestoreError::NonContiguous {
                    have: TxId(2),
                    next: TxId(4)
                }
            ),
            "{err:?}"
        );
        // A TXID before the gap is still restorable.
        let chain = plan(&files, &Target::TxId(TxId(2)), "r").unwrap();
        assert_eq!(names(&chain), vec![(0, 1, 1), (0, 2, 2)]);
    }

    #[test]
    fn plan_timestamp_takes_files_created_strictly_before() {
        let files = basic();
        // created_at = 1000 + max: files up to TXID 5 are strictly before 1006.
        let ts = UNIX_EPOCH + Duration::from_secs(1006);
        let chain = plan(&files, &Target::Timestamp(ts), "r").unwrap();
        assert_eq!(chain.last().unwrap().max_txid, TxId(5));
        // After the newest file: refused, as Litestream does ("timestamp does not exist").
        let late = UNIX_EPOCH + Duration::from_secs(1010);
        let err = plan(&files, &Target::Timestamp(late), "r").unwrap_err();
        assert!(
            matches!(
                err,
                RestoreError::TimestampNotAvailable { span: Some(_), .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("outside the backups"), "{err}");
        let newest = UNIX_EPOCH + Duration::from_secs(1009);
        assert_eq!(
            plan(&files, &Target::Timestamp(newest), "r")
                .unwrap()
                .last()
                .unwrap()
                .max_txid,
            TxId(8)
        );
        let early = UNIX_EPOCH + Duration::from_secs(1001);
        assert!(matches!(
            plan(&files, &Target::Timestamp(early), "r"),
            Err(RestoreError::TimestampNotAvailable { .. })
        ));
    }

    #[test]
    fn plan_full_file_at_level_replaces_older_snapshot() {
        // Snapshot 1-5, then an L2 file 1-8 (also a full database) and L0 9.
        let files = vec![f(9, 1, 5), f(2, 1, 8), f(0, 9, 9)];
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(2, 1, 8), (0, 9, 9)]);
    }

    #[test]
    fn plan_overlapping_file_aligned_to_chain_drops_covered_files() {
        // Chain 1-1, 2-2, 3-3 then L1 2-6 starts right after 1-1 and covers 2-2, 3-3.
        let files = vec![f(0, 1, 1), f(0, 2, 2), f(0, 3, 3), f(1, 2, 6)];
        let chain = plan(&files, &Target::TxId(TxId(6)), "r").unwrap();
        assert_eq!(names(&chain), vec![(0, 1, 1), (1, 2, 6)]);
    }

    #[test]
    fn plan_takes_partially_overlapping_file() {
        // 1-4 at L1 and 3-6 at L2 overlap: 3-6 laid over the state at 4 is the state at 6.
        let files = vec![f(1, 1, 4), f(2, 3, 6), f(0, 5, 5), f(0, 6, 6)];
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(1, 1, 4), (2, 3, 6)]);
    }

    /// Regression: with L0 gone, a snapshot taken mid-interval (1-5) and the L1 files around it
    /// (3-8, 9-12) used to stop the chain at the snapshot, so `-timestamp` restores were older
    /// than one L1 interval (found by tests/history.rs's coarse check).
    #[test]
    fn regression_snapshot_inside_l1_interval_stopped_the_chain() {
        let files = vec![f(9, 1, 5), f(1, 1, 2), f(1, 3, 8), f(1, 9, 12)];
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(9, 1, 5), (1, 3, 8), (1, 9, 12)]);
        let chain = plan(&files, &Target::TxId(TxId(8)), "r").unwrap();
        assert_eq!(names(&chain), vec![(9, 1, 5), (1, 3, 8)]);
        for w in chain.windows(2) {
            assert!(w[1].min_txid.0 <= w[0].max_txid.0 + 1);
        }
    }

    #[test]
    fn plan_prefers_higher_level_on_tie() {
        let files = vec![f(0, 1, 1), f(0, 2, 2), f(1, 2, 2)];
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(names(&chain), vec![(0, 1, 1), (1, 2, 2)]);
    }

    #[test]
    fn plan_many_l0_files_is_fast() {
        let mut files: Vec<_> = (1..=50_000).map(|t| f(0, t, t)).collect();
        files.extend((0..500).map(|i| f(1, i * 100 + 1, i * 100 + 100)));
        let started = std::time::Instant::now();
        let chain = plan(&files, &Target::Latest, "r").unwrap();
        assert_eq!(chain.len(), 500);
        let chain = plan(&files, &Target::TxId(TxId(49_999)), "r").unwrap();
        assert_eq!(chain.len(), 499 + 99);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn coverage_merges_touching_ranges() {
        let files = vec![f(0, 1, 1), f(0, 2, 2), f(1, 1, 2), f(0, 5, 6)];
        assert_eq!(
            coverage(&files),
            vec![(TxId(1), TxId(2)), (TxId(5), TxId(6))]
        );
    }
}

#[cfg(test)]
mod follow_tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn f(level: u8, min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: UNIX_EPOCH + Duration::from_secs(1000 + max),
        }
    }

    fn names(plan: &FollowPlan) -> Vec<(u8, u64, u64)> {
        match plan {
            FollowPlan::Apply(chain) => chain
                .iter()
                .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
                .collect(),
            other => panic!("not Apply: {other:?}"),
        }
    }

    #[test]
    fn plan_follow_takes_l0_after_position() {
        let files: Vec<_> = (1..=6).map(|t| f(0, t, t)).collect();
        let plan = plan_follow(&files, TxId(3), false);
        assert_eq!(names(&plan), vec![(0, 4, 4), (0, 5, 5), (0, 6, 6)]);
        assert!(l0_settles(&files, TxId(3), &plan));
    }

    #[test]
    fn plan_follow_at_newest_is_up_to_date() {
        let files: Vec<_> = (1..=6).map(|t| f(0, t, t)).collect();
        let plan = plan_follow(&files, TxId(6), false);
        assert_eq!(plan, FollowPlan::UpToDate);
        assert!(l0_settles(&files, TxId(6), &plan));
    }

    #[test]
    fn plan_follow_bridges_compacted_l0_from_higher_levels() {
        // L0 4..8 were compacted into L1 4-8 (and L2 1-8) and retained away.
        let files = vec![f(2, 1, 8), f(1, 4, 8), f(0, 9, 9), f(0, 10, 10), f(9, 1, 8)];
        let l0: Vec<_> = files.iter().filter(|f| f.level == 0).cloned().collect();
        let l0_plan = plan_follow(&l0, TxId(3), false);
        assert_eq!(
            l0_plan,
            FollowPlan::Gap {
                at: TxId(3),
                next: TxId(9)
            }
        );
        assert!(!l0_settles(&l0, TxId(3), &l0_plan));
        let plan = plan_follow(&files, TxId(3), false);
        assert_eq!(names(&plan), vec![(1, 4, 8), (0, 9, 9), (0, 10, 10)]);
    }

    #[test]
    fn plan_follow_uses_straddling_file() {
        // An L1 file that began before the position is sound to lay over it.
        let files = vec![f(1, 2, 7), f(0, 8, 8)];
        assert_eq!(
            names(&plan_follow(&files, TxId(4), false)),
            vec![(1, 2, 7), (0, 8, 8)]
        );
    }

    #[test]
    fn plan_follow_prefers_lower_level_when_it_continues() {
        let files = vec![f(0, 5, 5), f(1, 5, 9), f(0, 6, 6)];
        // L0 continues, so L1 is only used where L0 stops.
        assert_eq!(
            names(&plan_follow(&files, TxId(4), false)),
            vec![(0, 5, 5), (0, 6, 6), (1, 5, 9)]
        );
    }

    #[test]
    fn plan_follow_snapshot_only_when_allowed() {
        let files = vec![f(9, 1, 20), f(0, 21, 21)];
        assert_eq!(
            plan_follow(&files, TxId(10), false),
            FollowPlan::Gap {
                at: TxId(10),
                next: TxId(1)
            }
        );
        assert_eq!(
            names(&plan_follow(&files, TxId(10), true)),
            vec![(9, 1, 20), (0, 21, 21)]
        );
    }

    #[test]
    fn plan_follow_partial_chain_stops_at_gap() {
        let files = vec![f(0, 4, 4), f(0, 5, 5), f(0, 7, 7)];
        let plan = plan_follow(&files, TxId(3), false);
        assert_eq!(names(&plan), vec![(0, 4, 4), (0, 5, 5)]);
        assert!(!l0_settles(&files, TxId(3), &plan));
    }

    #[test]
    fn plan_follow_replica_behind() {
        let files: Vec<_> = (1..=3).map(|t| f(0, t, t)).collect();
        assert_eq!(
            plan_follow(&files, TxId(9), false),
            FollowPlan::Behind { newest: TxId(3) }
        );
        assert_eq!(
            plan_follow(&[], TxId(9), false),
            FollowPlan::Behind { newest: TxId(0) }
        );
        assert!(!l0_settles(
            &[],
            TxId(9),
            &FollowPlan::Behind { newest: TxId(0) }
        ));
    }

    #[test]
    fn replica_mismatch_detects_backwards_and_replaced() {
        let files: Vec<_> = (1..=5).map(|t| f(0, t, t)).collect();
        assert!(replica_mismatch(&files, TxId(9), None)
            .unwrap()
            .contains("went backwards"));
        let ts = millis(files[2].created_at);
        assert_eq!(replica_mismatch(&files, TxId(3), Some(ts)), None);
        assert!(replica_mismatch(&files, TxId(3), Some(ts + 1))
            .unwrap()
            .contains("replaced"));
        // No file ends at the TXID (compacted past it): nothing to compare.
        let compacted = vec![f(1, 1, 5)];
        assert_eq!(replica_mismatch(&compacted, TxId(3), Some(ts + 1)), None);
        // Snapshots carry their own time and are not compared.
        let snap = vec![f(9, 1, 3), f(0, 4, 4)];
        assert_eq!(replica_mismatch(&snap, TxId(3), Some(1)), None);
    }
}
