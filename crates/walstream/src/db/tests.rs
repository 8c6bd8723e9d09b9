//! Unit tests of `Db` against real SQLite databases.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use ltx::TxId;
use rusqlite::Connection;

use super::*;
use crate::sqlite::wal_reader::{self, WAL_FRAME_HEADER_SIZE};
use crate::storage::SNAPSHOT_LEVEL;

fn app(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);",
    )
    .unwrap();
    c
}

fn insert(c: &Connection, n: usize) {
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{i}-{}", "v".repeat(300))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Applies every local L0 file in order into a database image.
fn replay(db: &Db) -> Vec<u8> {
    let files = db.meta.list(0).unwrap();
    let mut image = Vec::new();
    let mut expect = files[0].min_txid.0;
    for f in files {
        assert_eq!(f.min_txid.0, expect, "gap before {:?}", f.path);
        expect = f.max_txid.0 + 1;
        let mut dec =
            ltx::Decoder::new(std::io::BufReader::new(File::open(&f.path).unwrap())).unwrap();
        let h = dec.header().clone();
        let ps = h.page_size as usize;
        image.resize(h.commit as usize * ps, 0);
        let mut page = vec![0u8; ps];
        while let Some(pgno) = dec.next_page(&mut page).unwrap() {
            let off = (pgno as usize - 1) * ps;
            image[off..off + ps].copy_from_slice(&page);
        }
        dec.finish().unwrap();
    }
    image
}

fn rows(image: &[u8], dir: &Path) -> i64 {
    let p = dir.join("replayed.db");
    std::fs::write(&p, image).unwrap();
    let c = Connection::open(&p).unwrap();
    assert_eq!(
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn salts(wal: &Path) -> (u32, u32) {
    let f = File::open(wal).unwrap();
    let h = wal_reader::read_header(&f, wal).unwrap().unwrap();
    (h.salt1, h.salt2)
}

/// Regression (crash loop, seed 5029): an L9 snapshot at position P read pages from the
/// database file that an app checkpoint had filled with frames past P (the guard had moved
/// past P), so `restore -txid P` gave a state never committed. Now such a snapshot is
/// refused and taken at the next sync, whose position covers the copied frames.
#[test]
fn regression_l9_snapshot_after_checkpoint_held_newer_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    insert(&c, 5);
    db.sync().unwrap().unwrap();
    insert(&c, 5);
    db.sync().unwrap().unwrap();
    // Committed after the position; the guard moves past it; the app checkpoints it in.
    insert(&c, 7);
    db.renew_guard().unwrap();
    let (_, log, done): (i64, i64, i64) = c
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert!(done > 0 && done == log, "checkpoint copied {done} of {log}");
    db.request_l9_snapshot();
    assert!(
        matches!(db.snapshot_l9(), Err(DbError::Raced(_)) | Ok(false)),
        "a snapshot at the old position must be refused"
    );
    assert!(db.meta.list(SNAPSHOT_LEVEL).unwrap().is_empty());
    // The next sync moves the position over the copied frames and takes the snapshot.
    db.sync().unwrap().unwrap();
    let l9 = db.meta.list(SNAPSHOT_LEVEL).unwrap();
    assert_eq!(l9.len(), 1);
    let mut dec =
        ltx::Decoder::new(std::io::BufReader::new(File::open(&l9[0].path).unwrap())).unwrap();
    let ps = dec.header().page_size as usize;
    let mut image = vec![0u8; dec.header().commit as usize * ps];
    let mut page = vec![0u8; ps];
    while let Some(pgno) = dec.next_page(&mut page).unwrap() {
        let off = (pgno as usize - 1) * ps;
        image[off..off + ps].copy_from_slice(&page);
    }
    dec.finish().unwrap();
    assert_eq!(rows(&image, dir.path()), 17);
}

/// Regression (crash loop, seed 5086): a writer killed after appending its frames to the WAL
/// but before publishing them in the WAL-index leaves a valid commit frame that SQLite never
/// counts (and later overwrites). walstream replicated it, so a later snapshot of the real
/// database went back one commit. Now the scan stops at the index's mxFrame.
#[test]
fn regression_frames_past_mxframe_were_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    insert(&c, 3);
    db.sync().unwrap().unwrap();
    let before = db.pos.unwrap();
    // Append one valid commit frame (the last page again) without touching the -shm.
    let wal_path = db.wal_path().to_path_buf();
    let wal = File::options()
        .read(true)
        .write(true)
        .open(&wal_path)
        .unwrap();
    let hdr = wal_reader::read_header(&wal, &wal_path).unwrap().unwrap();
    let ps = hdr.page_size as u64;
    let fsz = WAL_FRAME_HEADER_SIZE + ps;
    let end = wal.metadata().unwrap().len();
    assert_eq!(end, before.offset, "the WAL ends at the position");
    let mut last = vec![0u8; fsz as usize];
    wal.read_exact_at(&mut last, end - fsz).unwrap();
    let seed = (
        u32::from_be_bytes(last[16..20].try_into().unwrap()),
        u32::from_be_bytes(last[20..24].try_into().unwrap()),
    );
    let commit = u32::from_be_bytes(last[4..8].try_into().unwrap());
    let mut frame = vec![0u8; fsz as usize];
    frame[0..4].copy_from_slice(&last[0..4]);
    frame[4..8].copy_from_slice(&commit.to_be_bytes());
    frame[8..12].copy_from_slice(&hdr.salt1.to_be_bytes());
    frame[12..16].copy_from_slice(&hdr.salt2.to_be_bytes());
    frame[24..].copy_from_slice(&last[24..]);
    let mut summed = frame[0..8].to_vec();
    summed.extend_from_slice(&frame[24..]);
    let (c1, c2) = wal_reader::wal_checksum(hdr.big_endian_checksums, seed, &summed);
    frame[16..20].copy_from_slice(&c1.to_be_bytes());
    frame[20..24].copy_from_slice(&c2.to_be_bytes());
    wal.write_all_at(&frame, end).unwrap();
    // The frame is valid on its own: a scan without the index would take it.
    let scan = wal_reader::scan(&wal, &wal_path, &hdr, end, Some(seed), None).unwrap();
    assert_eq!(scan.commits, 1);
    // walstream does not: it is not committed until SQLite's index says so.
    assert!(
        db.sync().unwrap().is_none(),
        "replicated an unpublished frame"
    );
    assert_eq!(db.pos.unwrap().offset, before.offset);
}

#[test]
fn db_passive_checkpoint_restarts_wal_without_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let opts = DbOptions {
        min_checkpoint_page_count: 10,
        ..DbOptions::default()
    };
    let mut db = Db::new(&path, opts).unwrap();
    let first = db.sync().unwrap().unwrap();
    assert!(first.snapshot);
    insert(&c, 200);
    let before = salts(db.wal_path());
    assert!(db.sync().unwrap().is_some());
    db.maybe_checkpoint().unwrap();
    insert(&c, 10);
    let after = salts(db.wal_path());
    assert_ne!(
        before, after,
        "WAL did not restart after walstream's PASSIVE checkpoint"
    );
    assert_eq!(after.0, before.0.wrapping_add(1));
    let o = db.sync().unwrap().unwrap();
    assert!(!o.snapshot, "needless snapshot after our own checkpoint");
    assert_eq!(rows(&replay(&db), dir.path()), 210);
}

#[test]
fn db_app_truncate_while_stopped_takes_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    insert(&c, 50);
    {
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        db.sync().unwrap();
        db.shutdown();
    }
    // While walstream is down: more commits, then the app truncates the WAL.
    insert(&c, 30);
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
    insert(&c, 5);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    let o = db.sync().unwrap().unwrap();
    assert!(
        o.snapshot,
        "frames lost from the WAL must lead to a full snapshot"
    );
    assert_eq!(o.txid, TxId(2), "TXIDs continue from the local position");
    assert_eq!(rows(&replay(&db), dir.path()), 85);
}

#[test]
fn db_restart_resumes_from_local_position_without_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    insert(&c, 20);
    {
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        db.sync().unwrap();
    }
    insert(&c, 20);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    let o = db.sync().unwrap().unwrap();
    assert!(!o.snapshot);
    assert_eq!(o.txid, TxId(2));
    assert_eq!(rows(&replay(&db), dir.path()), 40);
}

#[test]
fn db_emergency_truncate_takes_snapshot_and_empties_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let opts = DbOptions {
        truncate_page_n: 50,
        min_checkpoint_page_count: 1_000_000,
        ..DbOptions::default()
    };
    let mut db = Db::new(&path, opts).unwrap();
    db.sync().unwrap();
    insert(&c, 400);
    db.sync().unwrap();
    db.maybe_checkpoint().unwrap();
    let wal_len = std::fs::metadata(db.wal_path()).unwrap().len();
    assert!(
        wal_len < 50 * 4096,
        "WAL still {wal_len} bytes after the emergency TRUNCATE"
    );
    insert(&c, 1);
    db.sync().unwrap();
    assert_eq!(rows(&replay(&db), dir.path()), 401);
}

#[test]
fn db_max_sync_wal_bytes_splits_backlog_at_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let opts = DbOptions {
        max_sync_wal_bytes: 64 * 1024,
        ..DbOptions::default()
    };
    let mut db = Db::new(&path, opts).unwrap();
    db.sync().unwrap();
    for _ in 0..20 {
        insert(&c, 30);
    }
    let mut n = 0;
    while db.sync().unwrap().is_some() {
        n += 1;
    }
    assert!(n > 3, "backlog was not split: {n} files");
    assert_eq!(rows(&replay(&db), dir.path()), 600);
}

#[test]
fn db_not_in_wal_mode_is_switched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    db.sync().unwrap();
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn db_l9_snapshot_equals_replayed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    db.sync().unwrap();
    insert(&c, 300);
    c.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
    db.request_l9_snapshot();
    db.sync().unwrap();
    let l9 = db.meta.list(SNAPSHOT_LEVEL).unwrap();
    assert_eq!(l9.len(), 1);
    assert_eq!(l9[0].min_txid, TxId(1));
    assert_eq!(Some(l9[0].max_txid), db.local_txid());
    let mut dec =
        ltx::Decoder::new(std::io::BufReader::new(File::open(&l9[0].path).unwrap())).unwrap();
    let h = dec.header().clone();
    let ps = h.page_size as usize;
    let mut image = vec![0u8; h.commit as usize * ps];
    let mut page = vec![0u8; ps];
    while let Some(pgno) = dec.next_page(&mut page).unwrap() {
        image[(pgno as usize - 1) * ps..pgno as usize * ps].copy_from_slice(&page);
    }
    dec.finish().unwrap();
    assert_eq!(image, replay(&db));
    assert_eq!(rows(&image, dir.path()), 200);
    // Asked once, written once.
    insert(&c, 1);
    db.sync().unwrap();
    assert_eq!(db.meta.list(SNAPSHOT_LEVEL).unwrap().len(), 1);
}

/// Descriptors of this process open on the database, its `-wal` or its `-shm`.
fn fds_on(db: &Path) -> usize {
    let names: Vec<std::path::PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            std::path::PathBuf::from(p)
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| names.contains(t))
        .count()
}

/// Runs `f` on an app connection that is closed afterwards. Only walstream's connections stay
/// in this process, so [`fds_on`] counts walstream's descriptors alone (SQLite defers closing a
/// descriptor while another connection of the same process holds locks on the file).
fn with_app<T>(path: &Path, f: impl FnOnce(&Connection) -> T) -> T {
    let c = app(path);
    f(&c)
}

#[test]
fn db_new_and_close_idle_hold_no_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    with_app(&path, |c| insert(c, 10));
    assert_eq!(fds_on(&path), 0);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    assert_eq!(fds_on(&path), 0, "Db::new opened the database");
    assert!(!db.is_open());
    assert!(db.sync().unwrap().unwrap().snapshot);
    assert!(db.is_open());
    assert!(
        fds_on(&path) >= 3,
        "connections, -shm probe and file handle"
    );
    with_app(&path, |c| insert(c, 5));
    db.close_idle().unwrap();
    assert!(!db.is_open());
    assert_eq!(fds_on(&path), 0, "descriptors left after close_idle");
    // The last sync before closing copied the 5 rows.
    assert_eq!(rows(&replay(&db), dir.path()), 15);
    // Cheap checks while closed open nothing.
    assert!(!db.has_blocking_checkpointer());
    assert!(!db.yield_to_app_checkpoint().unwrap());
    db.maybe_checkpoint().unwrap();
    assert_eq!(fds_on(&path), 0);
    // Closing twice is fine, and the next sync opens again.
    db.close_idle().unwrap();
    assert!(db.sync().unwrap().is_none());
    assert!(db.is_open());
    db.shutdown();
    assert_eq!(fds_on(&path), 0);
}

#[test]
fn db_close_idle_then_app_appends_gives_incremental_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    insert(&c, 20);
    assert!(db.sync().unwrap().unwrap().snapshot);
    let before = salts(db.wal_path());
    db.close_idle().unwrap();
    insert(&c, 7);
    assert_eq!(salts(db.wal_path()), before, "the app appended, no restart");
    let o = db.sync().unwrap().unwrap();
    assert!(
        !o.snapshot,
        "appending while closed must not cost a snapshot"
    );
    assert_eq!(o.txid, TxId(2));
    assert!(db.is_open());
    assert_eq!(db.meta.list(0).unwrap().len(), 2);
    assert_eq!(rows(&replay(&db), dir.path()), 27);
}

#[test]
fn db_close_idle_then_app_restarts_wal_gives_snapshot() {
    for mode in ["TRUNCATE", "RESTART"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        insert(&c, 20);
        db.sync().unwrap().unwrap();
        db.close_idle().unwrap();
        // While closed: commits walstream never saw, the WAL restarted past them, more commits.
        insert(&c, 11);
        let before = salts(db.wal_path());
        let busy: i64 = c
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "{mode} blocked although walstream was closed");
        insert(&c, 4);
        assert_ne!(salts(db.wal_path()), before, "{mode}: WAL did not restart");
        let o = db.sync().unwrap().unwrap();
        assert!(
            o.snapshot,
            "{mode}: a restart while closed must give a snapshot"
        );
        assert_eq!(o.txid, TxId(2), "{mode}");
        assert_eq!(rows(&replay(&db), dir.path()), 35, "{mode}");
        // And the next append continues without another snapshot.
        insert(&c, 1);
        assert!(!db.sync().unwrap().unwrap().snapshot, "{mode}");
        assert_eq!(rows(&replay(&db), dir.path()), 36, "{mode}");
    }
}

#[test]
fn db_close_idle_then_database_replaced_gives_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    with_app(&path, |c| insert(c, 3));
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    db.sync().unwrap().unwrap();
    db.close_idle().unwrap();
    // Another database moved into place (new inode).
    let other = dir.path().join("b.db");
    with_app(&other, |c| insert(c, 8));
    std::fs::rename(&other, &path).unwrap();
    let o = db.sync().unwrap().unwrap();
    assert!(o.snapshot);
    assert_eq!(rows(&replay(&db), dir.path()), 8);
}

/// Another process (the sqlite3 shell) runs a TRUNCATE checkpoint while walstream holds its
/// guard: it holds the checkpointer and writer locks and waits for the guard.
#[test]
fn db_has_blocking_checkpointer_sees_app_truncate_and_yield_lets_it_finish() {
    let sqlite3 = "/usr/bin/sqlite3";
    assert!(
        Path::new(sqlite3).exists(),
        "this test needs the sqlite3 shell at {sqlite3}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let c = app(&path);
    let mut db = Db::new(&path, DbOptions::default()).unwrap();
    insert(&c, 10);
    db.sync().unwrap().unwrap();
    assert!(!db.has_blocking_checkpointer(), "nobody is checkpointing");
    let child = std::process::Command::new(sqlite3)
        .arg(&path)
        .arg(".timeout 20000")
        .arg("PRAGMA wal_checkpoint(TRUNCATE);")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !db.has_blocking_checkpointer() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell's TRUNCATE was never seen"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(db.yield_to_app_checkpoint().unwrap(), "did not step aside");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.trim().starts_with("0|"), "TRUNCATE was busy: {line}");
    assert_eq!(std::fs::metadata(db.wal_path()).unwrap().len(), 0);
    assert!(!db.has_blocking_checkpointer());
    // Nothing was lost while the guard was let go. (Whether the next file is a snapshot depends
    // on the new salts: SQLite picks random ones when the writing connection has never restarted
    // the WAL itself, as here, and then the exactly-one-restart test cannot pass.)
    insert(&c, 2);
    assert!(db.sync().unwrap().is_some());
    assert_eq!(rows(&replay(&db), dir.path()), 12);
}
