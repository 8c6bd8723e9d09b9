//! The behaviour every [`ReplicaStore`] must show, as one `pub async fn` per behaviour.
//!
//! Every backend *and every wrapper* (fault injection, prefixing, ...) runs the whole list
//! through [`run_all`] in its tests, giving each function a fresh, empty store:
//!
//! ```ignore
//! contract::run_all(|| async { Arc::new(FileStore::new(fresh_dir())) as DynStore }).await;
//! ```
//!
//! The functions panic with a message naming the broken rule, as test code does. Compiled for
//! tests and under the `testing` feature, so other crates' tests can use it too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use ltx::TxId;

use super::{DynStore, LtxFileInfo, ReplicaStore};

/// Runs every contract function, each on a new store from `new_store`.
pub async fn run_all<F, Fut>(mut new_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DynStore>,
{
    write_then_list_sorted(&*new_store().await).await;
    list_missing_level_is_empty(&*new_store().await).await;
    open_reads_whole_file(&*new_store().await).await;
    open_at_offset_returns_tail(&*new_store().await).await;
    open_missing_is_not_found(&*new_store().await).await;
    delete_is_idempotent(&*new_store().await).await;
    overwrite_replaces_file(&*new_store().await).await;
    created_at_round_trips(&*new_store().await).await;
    list_many_files(&*new_store().await).await;
    lease_writes_are_conditional(&*new_store().await).await;
    remove_stale_uploads_keeps_ltx_files(&*new_store().await).await;
}

/// The listing of databases under a root ([`ReplicaStore::list_databases`]), which needs more
/// than one store: `root` is a fresh, empty store, and `at(rel)` opens the store at
/// `<root>/<rel>` the way a `dir:` entry derives each database's replica. Every backend and
/// wrapper runs it beside [`run_all`].
pub async fn run_listing<F>(root: DynStore, at: F)
where
    F: Fn(&str) -> DynStore,
{
    list_databases_finds_each_database_with_ltx_files(&*root, &at).await;
}

/// Source files for writes, in a temp directory that lives as long as this value.
pub struct Sources {
    dir: tempfile::TempDir,
    n: usize,
}

impl Sources {
    /// A new empty temp directory.
    pub fn new() -> Self {
        Sources {
            dir: tempfile::tempdir().expect("create temp dir for contract sources"),
            n: 0,
        }
    }
    /// Writes `data` to a new file and returns its path.
    pub fn file(&mut self, data: &[u8]) -> PathBuf {
        self.n += 1;
        let p = self.dir.path().join(format!("src-{}", self.n));
        std::fs::write(&p, data).expect("write contract source file");
        p
    }
}

impl Default for Sources {
    fn default() -> Self {
        Self::new()
    }
}

/// Deterministic pseudo-random bytes (no `rand`: this module also builds outside tests).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Reads a file's bytes from `offset` to the end.
pub async fn read_all(
    store: &dyn ReplicaStore,
    level: u8,
    min: u64,
    max: u64,
    offset: u64,
) -> Vec<u8> {
    let stream = store
        .open_ltx_file(level, TxId(min), TxId(max), offset)
        .await
        .unwrap_or_else(|e| panic!("open L{level} {min}-{max} at {offset}: {e}"));
    let chunks: Vec<bytes::Bytes> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read L{level} {min}-{max}: {e}"));
    chunks.concat()
}

async fn write(
    store: &dyn ReplicaStore,
    level: u8,
    min: u64,
    max: u64,
    src: &Path,
    at: SystemTime,
) -> LtxFileInfo {
    store
        .write_ltx_file(level, TxId(min), TxId(max), src, at)
        .await
        .unwrap_or_else(|e| panic!("write L{level} {min}-{max}: {e}"))
}

async fn list(store: &dyn ReplicaStore, level: u8) -> Vec<LtxFileInfo> {
    store
        .ltx_files(level)
        .await
        .unwrap_or_else(|e| panic!("list L{level}: {e}"))
}

fn ranges(files: &[LtxFileInfo]) -> Vec<(u64, u64)> {
    files.iter().map(|f| (f.min_txid.0, f.max_txid.0)).collect()
}

fn close(a: SystemTime, b: SystemTime, tolerance: Duration) -> bool {
    match a.duration_since(b) {
        Ok(d) => d <= tolerance,
        Err(e) => e.duration() <= tolerance,
    }
}

/// Files written out of order list sorted by (MinTXID, MaxTXID), with the sizes written, only
/// in their own level; `write_ltx_file` returns the same info the listing gives.
pub async fn write_then_list_sorted(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let now = SystemTime::now();
    let mut written = Vec::new();
    for (i, (min, max)) in [(5u64, 5u64), (1, 1), (3, 4), (2, 2), (1, 4), (0x10, 0xff)]
        .into_iter()
        .enumerate()
    {
        let data = test_bytes(100 + i * 37, i as u64);
        let info = write(store, 0, min, max, &src.file(&data), now).await;
        assert_eq!(
            (info.level, info.min_txid, info.max_txid, info.size),
            (0, TxId(min), TxId(max), data.len() as u64),
            "write_ltx_file returned wrong info"
        );
        written.push(info);
    }
    write(store, 2, 7, 9, &src.file(b"level two"), now).await;

    let l0 = list(store, 0).await;
    assert_eq!(
        ranges(&l0),
        vec![(1, 1), (1, 4), (2, 2), (3, 4), (5, 5), (0x10, 0xff)],
        "L0 listing order"
    );
    for f in &l0 {
        let w = written
            .iter()
            .find(|w| w.min_txid == f.min_txid && w.max_txid == f.max_txid)
            .unwrap();
        assert_eq!(
            (f.level, f.size),
            (0, w.size),
            "listed info for {}",
            f.file_name()
        );
    }
    let l2 = list(store, 2).await;
    assert_eq!(ranges(&l2), vec![(7, 9)], "L2 listing");
    assert_eq!((l2[0].level, l2[0].size), (2, 9));
    assert!(list(store, 1).await.is_empty(), "L1 should be empty");
}

/// Listing a level nothing was ever written to is empty, not an error.
pub async fn list_missing_level_is_empty(store: &dyn ReplicaStore) {
    for level in [0, 1, super::SNAPSHOT_LEVEL] {
        assert!(
            list(store, level).await.is_empty(),
            "L{level} of an empty store"
        );
    }
}

/// A file larger than any sensible stream chunk reads back byte for byte.
pub async fn open_reads_whole_file(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let data = test_bytes(700 * 1024 + 3, 42);
    write(store, 1, 1, 10, &src.file(&data), SystemTime::now()).await;
    assert!(
        read_all(store, 1, 1, 10, 0).await == data,
        "whole-file read differs"
    );
    let empty = Vec::new();
    write(store, 1, 11, 11, &src.file(&empty), SystemTime::now()).await;
    assert!(
        read_all(store, 1, 11, 11, 0).await.is_empty(),
        "empty file read"
    );
}

/// Opening at an offset returns exactly the bytes from there on, so downloads can resume.
pub async fn open_at_offset_returns_tail(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let data = test_bytes(300 * 1024, 7);
    write(store, 0, 3, 3, &src.file(&data), SystemTime::now()).await;
    for offset in [1usize, 100, 256 * 1024, data.len() - 1] {
        let tail = read_all(store, 0, 3, 3, offset as u64).await;
        assert!(
            tail == data[offset..],
            "tail from {offset}: got {} bytes, want {}",
            tail.len(),
            data.len() - offset
        );
    }
}

/// A missing file (in an existing level and in a missing one) is `NotFound`.
pub async fn open_missing_is_not_found(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    write(store, 0, 1, 1, &src.file(b"x"), SystemTime::now()).await;
    for (level, min, max) in [(0u8, 2u64, 2u64), (5, 1, 1)] {
        match store.open_ltx_file(level, TxId(min), TxId(max), 0).await {
            Ok(s) => {
                // A lazy backend may only notice on the first read.
                let first = s.into_future().await.0;
                match first {
                    Some(Err(e)) => assert!(
                        e.is_not_found(),
                        "L{level} {min}-{max}: want NotFound, got {e}"
                    ),
                    _ => panic!("L{level} {min}-{max}: opening a missing file succeeded"),
                }
            }
            Err(e) => assert!(
                e.is_not_found(),
                "L{level} {min}-{max}: want NotFound, got {e}"
            ),
        }
    }
}

/// Deleting removes just the files named; deleting them again, deleting files that never
/// existed, and deleting nothing all succeed.
pub async fn delete_is_idempotent(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let now = SystemTime::now();
    let a = write(store, 0, 1, 1, &src.file(b"a"), now).await;
    let b = write(store, 0, 2, 2, &src.file(b"b"), now).await;
    let c = write(store, 1, 1, 2, &src.file(b"c"), now).await;
    store
        .delete_ltx_files(std::slice::from_ref(&a))
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    assert_eq!(
        ranges(&list(store, 0).await),
        vec![(2, 2)],
        "after deleting 1-1"
    );
    let ghost = LtxFileInfo {
        level: 4,
        min_txid: TxId(9),
        max_txid: TxId(9),
        size: 0,
        created_at: now,
    };
    store
        .delete_ltx_files(&[a.clone(), ghost])
        .await
        .unwrap_or_else(|e| panic!("delete missing: {e}"));
    store
        .delete_ltx_files(&[])
        .await
        .unwrap_or_else(|e| panic!("delete nothing: {e}"));
    store
        .delete_ltx_files(&[b, c])
        .await
        .unwrap_or_else(|e| panic!("delete rest: {e}"));
    assert!(
        list(store, 0).await.is_empty() && list(store, 1).await.is_empty(),
        "all deleted"
    );
}

/// Writing a name again replaces the whole file: one listing entry, the new size and bytes.
pub async fn overwrite_replaces_file(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let first = test_bytes(5000, 1);
    let second = test_bytes(1234, 2);
    write(store, 0, 4, 6, &src.file(&first), SystemTime::now()).await;
    write(store, 0, 4, 6, &src.file(&second), SystemTime::now()).await;
    let files = list(store, 0).await;
    assert_eq!(ranges(&files), vec![(4, 6)], "one entry after overwrite");
    assert_eq!(files[0].size, second.len() as u64, "size after overwrite");
    assert!(
        read_all(store, 0, 4, 6, 0).await == second,
        "bytes after overwrite"
    );
}

/// The `created_at` given to `write_ltx_file` comes back from the listing within a second,
/// including times far in the past.
pub async fn created_at_round_trips(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let times = [
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_600_000_000_123),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_000_999),
        SystemTime::now(),
    ];
    for (i, t) in times.iter().enumerate() {
        let info = write(store, 3, i as u64 + 1, i as u64 + 1, &src.file(b"t"), *t).await;
        assert!(
            close(info.created_at, *t, Duration::from_secs(1)),
            "returned created_at {i}"
        );
    }
    let files = list(store, 3).await;
    assert_eq!(files.len(), times.len());
    for (f, t) in files.iter().zip(times) {
        assert!(
            close(f.created_at, t, Duration::from_secs(1)),
            "listed created_at of {}: {:?} vs {:?}",
            f.file_name(),
            f.created_at,
            t
        );
    }
}

/// More than 1,000 files in one level (one page of an S3 listing) all list, sorted.
pub async fn list_many_files(store: &dyn ReplicaStore) {
    const N: u64 = 1100;
    let mut src = Sources::new();
    let path = src.file(b"many");
    let now = SystemTime::now();
    // Written in a scrambled order, a few at a time.
    let order: Vec<u64> = (0..N).map(|i| (i * 7919) % N + 1).collect();
    futures::stream::iter(order)
        .map(|txid| {
            let path = path.clone();
            async move { write(store, 0, txid, txid, &path, now).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let files = list(store, 0).await;
    assert_eq!(files.len() as u64, N, "listing of {N} files");
    assert!(
        ranges(&files)
            .iter()
            .zip(1..)
            .all(|(&(a, b), i)| a == i && b == i),
        "listing of {N} files is not sorted"
    );
}

/// The lease capability. With [`ReplicaStore::supports_lease`]: create-if-absent wins once,
/// replace-if-match wins only against the current version (stale and made-up versions lose with
/// `Conflict`), reads return what the last winner wrote, and the lease never shows up in a level
/// listing. Without: both calls fail, and not with `Conflict` (which would read as "held").
pub async fn lease_writes_are_conditional(store: &dyn ReplicaStore) {
    use bytes::Bytes;
    if !store.supports_lease() {
        let r = store.read_lease().await;
        assert!(
            r.as_ref().is_err_and(|e| !e.is_conflict()),
            "read_lease without lease support: {r:?}"
        );
        let w = store.write_lease(Bytes::from_static(b"x"), None).await;
        assert!(
            w.as_ref().is_err_and(|e| !e.is_conflict()),
            "write_lease without lease support: {w:?}"
        );
        return;
    }
    let read = || async {
        store
            .read_lease()
            .await
            .unwrap_or_else(|e| panic!("read_lease: {e}"))
    };
    assert!(read().await.is_none(), "a new store has no lease");
    let v1 = store
        .write_lease(Bytes::from_static(b"owner-a 1"), None)
        .await
        .unwrap_or_else(|e| panic!("create lease: {e}"));
    let again = store
        .write_lease(Bytes::from_static(b"owner-b 1"), None)
        .await;
    assert!(
        again.as_ref().is_err_and(|e| e.is_conflict()),
        "second create must conflict: {again:?}"
    );
    let got = read().await.expect("lease after create");
    assert_eq!(
        (&got.data[..], &got.version),
        (&b"owner-a 1"[..], &v1),
        "lease after create"
    );
    let v2 = store
        .write_lease(Bytes::from_static(b"owner-a 2"), Some(&v1))
        .await
        .unwrap_or_else(|e| panic!("replace lease at its version: {e}"));
    assert_ne!(v1, v2, "a replaced lease has a new version");
    for stale in [v1.clone(), super::LeaseVersion("\"made-up\"".to_string())] {
        let r = store
            .write_lease(Bytes::from_static(b"owner-b 2"), Some(&stale))
            .await;
        assert!(
            r.as_ref().is_err_and(|e| e.is_conflict()),
            "replace at stale version {stale:?} must conflict: {r:?}"
        );
    }
    let got = read().await.expect("lease after replace");
    assert_eq!(
        (&got.data[..], &got.version),
        (&b"owner-a 2"[..], &v2),
        "lease after replace"
    );
    for level in 0..=super::SNAPSHOT_LEVEL {
        assert!(
            list(store, level).await.is_empty(),
            "the lease shows in the L{level} listing"
        );
    }
}

/// Removing stale upload temp files, after uploads that all finished, removes nothing: every
/// LTX file still lists and reads, and the count is 0. (Each backend tests in its own terms
/// that a temp file a kill left does go.)
pub async fn remove_stale_uploads_keeps_ltx_files(store: &dyn ReplicaStore) {
    let mut src = Sources::new();
    let now = SystemTime::now();
    for (level, min, max) in [
        (0u8, 1u64, 1u64),
        (0, 2, 3),
        (1, 1, 3),
        (super::SNAPSHOT_LEVEL, 1, 3),
    ] {
        write(store, level, min, max, &src.file(&test_bytes(64, min)), now).await;
    }
    let removed = store
        .remove_stale_uploads()
        .await
        .unwrap_or_else(|e| panic!("remove_stale_uploads: {e}"));
    assert_eq!(removed, 0, "removed files when no upload was stale");
    assert_eq!(
        ranges(&list(store, 0).await),
        vec![(1, 1), (2, 3)],
        "L0 after cleanup"
    );
    assert_eq!(
        ranges(&list(store, 1).await),
        vec![(1, 3)],
        "L1 after cleanup"
    );
    assert_eq!(
        ranges(&list(store, super::SNAPSHOT_LEVEL).await),
        vec![(1, 3)],
        "snapshots after cleanup"
    );
    assert!(
        read_all(store, 0, 2, 3, 0).await == test_bytes(64, 2),
        "bytes after cleanup"
    );
}

/// `list_databases` lists the relative paths of the databases under the root that hold at least
/// one LTX file (any level), sorted, each once; nested ones only when recursive; never the
/// root's own files, a database whose files were all deleted, or one with only a lease.
pub async fn list_databases_finds_each_database_with_ltx_files(
    root: &dyn ReplicaStore,
    at: &dyn Fn(&str) -> DynStore,
) {
    let none: Vec<String> = Vec::new();
    for recursive in [false, true] {
        let got = root
            .list_databases(recursive)
            .await
            .unwrap_or_else(|e| panic!("list_databases({recursive}) on an empty root: {e}"));
        assert_eq!(got, none, "an empty root holds no database");
    }
    let mut src = Sources::new();
    let f = src.file(b"ltx bytes");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // a.db: two L0 files; b.db: a snapshot only; t/c.db nested; the root's own file.
    write(&*at("a.db"), 0, 1, 1, &f, t).await;
    write(&*at("a.db"), 0, 2, 2, &f, t).await;
    write(&*at("b.db"), 9, 1, 5, &f, t).await;
    write(&*at("t/c.db"), 1, 1, 3, &f, t).await;
    write(root, 0, 1, 1, &f, t).await;
    // gone.db: its only file deleted.
    let gone = at("gone.db");
    let info = write(&*gone, 0, 1, 1, &f, t).await;
    gone.delete_ltx_files(&[info])
        .await
        .unwrap_or_else(|e| panic!("delete gone.db's file: {e}"));
    // leased.db: a lease and no LTX file.
    let leased = at("leased.db");
    if leased.supports_lease() {
        leased
            .write_lease(bytes::Bytes::from_static(b"lease"), None)
            .await
            .unwrap_or_else(|e| panic!("write leased.db's lease: {e}"));
    }
    let flat = root
        .list_databases(false)
        .await
        .unwrap_or_else(|e| panic!("list_databases(false): {e}"));
    assert_eq!(flat, ["a.db", "b.db"], "databases directly under the root");
    let all = root
        .list_databases(true)
        .await
        .unwrap_or_else(|e| panic!("list_databases(true): {e}"));
    assert_eq!(all, ["a.db", "b.db", "t/c.db"], "databases at any depth");
    // A database's own store is a root too: it holds no database below it.
    let below = at("a.db")
        .list_databases(true)
        .await
        .unwrap_or_else(|e| panic!("list_databases under a.db: {e}"));
    assert_eq!(below, none, "a.db's files are no database of a.db's store");
}
