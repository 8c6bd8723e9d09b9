//! `apply` against an in-memory store that can fail, cut or stall downloads.
#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ltx::{Encoder, Header, FLAG_NO_CHECKSUM};

use super::super::{run, Target};
use super::*;
use crate::storage::{ByteStream, ReplicaStore, StorageError};

const PAGE: u32 = 512;

#[derive(Debug, Default)]
struct MemStore {
    files: Mutex<BTreeMap<(u8, TxId, TxId), Vec<u8>>>,
    /// The first N opens fail with a transient error.
    fail_opens: AtomicU32,
    /// The first stream stops with a transient error after this many bytes.
    cut_after: Mutex<Option<usize>>,
    /// Opens never complete.
    stall: AtomicBool,
    /// Offsets of every open, in order.
    offsets: Mutex<Vec<u64>>,
    /// Each open waits this long before answering (a slow GET).
    open_delay: Mutex<Option<Duration>>,
    /// Opens in progress now, and the most seen at once.
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
}

impl MemStore {
    fn put(&self, level: u8, bytes: Vec<u8>) {
        let h = Header::from_bytes(&bytes[..ltx::HEADER_SIZE]).unwrap();
        self.files
            .lock()
            .unwrap()
            .insert((level, h.min_txid, h.max_txid), bytes);
    }
}

fn transient(key: &str) -> StorageError {
    StorageError::Transient {
        backend: "mem",
        key: key.to_string(),
        message: "connection reset".into(),
    }
}

#[async_trait]
impl ReplicaStore for MemStore {
    fn kind(&self) -> &'static str {
        "mem"
    }
    fn describe(&self) -> String {
        "mem://test".to_string()
    }
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let files = self.files.lock().unwrap();
        Ok(files
            .iter()
            .filter(|((l, _, _), _)| *l == level)
            .map(|((level, min, max), b)| LtxFileInfo {
                level: *level,
                min_txid: *min,
                max_txid: *max,
                size: b.len() as u64,
                created_at: UNIX_EPOCH + Duration::from_secs(max.0),
            })
            .collect())
    }
    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let key = format!("{level}/{}", ltx::file_name(min, max));
        self.offsets.lock().unwrap().push(offset);
        let delay = *self.open_delay.lock().unwrap();
        if let Some(d) = delay {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(d).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if self.stall.load(Ordering::SeqCst) {
            futures::future::pending::<()>().await;
        }
        if self.fail_opens.load(Ordering::SeqCst) > 0 {
            self.fail_opens.fetch_sub(1, Ordering::SeqCst);
            return Err(transient(&key));
        }
        let Some(bytes) = self.files.lock().unwrap().get(&(level, min, max)).cloned() else {
            return Err(StorageError::NotFound {
                backend: "mem",
                key,
            });
        };
        let mut tail = bytes[offset as usize..].to_vec();
        let cut = self.cut_after.lock().unwrap().take();
        let mut items: Vec<Result<Bytes, StorageError>> = Vec::new();
        if let Some(n) = cut {
            tail.truncate(n);
        }
        for chunk in tail.chunks(100) {
            items.push(Ok(Bytes::copy_from_slice(chunk)));
        }
        if cut.is_some() {
            items.push(Err(transient(&key)));
        }
        Ok(Box::pin(futures::stream::iter(items)))
    }
    async fn write_ltx_file(
        &self,
        _level: u8,
        _min: TxId,
        _max: TxId,
        _src: &Path,
        _created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        Err(StorageError::Permanent {
            backend: "mem",
            key: String::new(),
            message: "read-only".into(),
        })
    }
    async fn delete_ltx_files(&self, _files: &[LtxFileInfo]) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A database state: page contents by pgno (each page filled with one byte).
type State = BTreeMap<u32, u8>;

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PAGE as usize]
}

fn db_checksum(state: &State) -> u64 {
    let mut sum = DbChecksum::new();
    for (pgno, fill) in state {
        sum.add(page_checksum(*pgno, &page(*fill)));
    }
    sum.value()
}

/// Encodes the pages `changes` on top of `state` as TXIDs min..=max, with or without
/// checksums; `post_override` replaces the post-apply checksum.
fn encode(
    state: &mut State,
    min: u64,
    max: u64,
    commit: u32,
    changes: &[(u32, u8)],
    checksums: bool,
    post_override: Option<u64>,
) -> Vec<u8> {
    let pre = db_checksum(state);
    for (pgno, fill) in changes {
        state.insert(*pgno, *fill);
    }
    state.retain(|pgno, _| *pgno <= commit);
    let mut h = Header::new(PAGE, commit, TxId(min), TxId(max), (max * 1000) as i64);
    if checksums {
        if min != 1 {
            h.pre_apply_checksum = pre;
        }
    } else {
        h.flags = FLAG_NO_CHECKSUM;
    }
    let mut enc = Encoder::new(Vec::new(), &h).unwrap();
    let pages: Vec<(u32, u8)> = if min == 1 {
        state.iter().map(|(p, f)| (*p, *f)).collect()
    } else {
        let mut c = changes.to_vec();
        c.retain(|(p, _)| *p <= commit);
        c.sort();
        c
    };
    for (pgno, fill) in pages {
        enc.write_page(pgno, &page(fill)).unwrap();
    }
    let post = if checksums {
        post_override.unwrap_or_else(|| db_checksum(state))
    } else {
        0
    };
    enc.finish(post).unwrap().0
}

/// Snapshot 1-1 (3 pages), L0 2-2 (grows to 4), L0 3-3 (shrinks to 2).
fn store(checksums: bool, bad_post_at_3: bool) -> (Arc<MemStore>, State) {
    let store = Arc::new(MemStore::default());
    let mut state = State::new();
    store.put(
        9,
        encode(
            &mut state,
            1,
            1,
            3,
            &[(1, 1), (2, 2), (3, 3)],
            checksums,
            None,
        ),
    );
    store.put(
        0,
        encode(&mut state, 2, 2, 4, &[(2, 20), (4, 40)], checksums, None),
    );
    let post = bad_post_at_3.then_some(ltx::checksum::CHECKSUM_FLAG | 12345);
    store.put(0, encode(&mut state, 3, 3, 2, &[(1, 10)], checksums, post));
    (store, state)
}

fn expected(state: &State) -> Vec<u8> {
    state.values().flat_map(|f| page(*f)).collect()
}

async fn restore(
    store: &Arc<MemStore>,
    target: Target,
) -> (
    tempfile::TempDir,
    PathBuf,
    Result<RestoreSummary, RestoreError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("db");
    let dyn_store: DynStore = store.clone();
    let r = run(&dyn_store, &RestoreOptions::new(&out, target)).await;
    (dir, out, r)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn apply_chain_newest_page_wins_and_shrinks() {
    for checksums in [false, true] {
        let (store, state) = store(checksums, false);
        let (dir, out, r) = restore(&store, Target::Latest).await;
        let s = r.unwrap();
        assert_eq!(
            (s.txid, s.commit, s.page_size, s.files),
            (TxId(3), 2, PAGE, 3)
        );
        assert_eq!(std::fs::read(&out).unwrap(), expected(&state));
        assert_eq!(entries(dir.path()), ["db"]);
    }
}

#[tokio::test]
async fn apply_txid_target_stops_there() {
    let (store, _) = store(true, false);
    let (_dir, out, r) = restore(&store, Target::TxId(TxId(2))).await;
    assert_eq!(r.unwrap().commit, 4);
    let want: Vec<u8> = [1u8, 20, 3, 40].iter().flat_map(|f| page(*f)).collect();
    assert_eq!(std::fs::read(&out).unwrap(), want);
}

// Paused: the retry delays pass in virtual time.
#[tokio::test(start_paused = true)]
async fn apply_transient_open_errors_are_retried() {
    let (store, state) = store(false, false);
    store.fail_opens.store(2, Ordering::SeqCst);
    let (_dir, out, r) = restore(&store, Target::Latest).await;
    r.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), expected(&state));
}

// Paused: the retry delays pass in virtual time.
#[tokio::test(start_paused = true)]
async fn apply_persistent_transient_errors_fail_naming_file() {
    let (store, _) = store(false, false);
    store.fail_opens.store(100, Ordering::SeqCst);
    let (dir, _out, r) = restore(&store, Target::Latest).await;
    let err = r.unwrap_err();
    assert!(matches!(err, RestoreError::Download { .. }), "{err:?}");
    assert!(err.to_string().contains(".ltx in mem://test"), "{err}");
    assert!(err.is_retryable());
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn apply_cut_download_resumes_at_offset() {
    let (store, state) = store(false, false);
    *store.cut_after.lock().unwrap() = Some(150);
    let (_dir, out, r) = restore(&store, Target::Latest).await;
    r.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), expected(&state));
    assert!(
        store.offsets.lock().unwrap().contains(&150),
        "{:?}",
        store.offsets.lock().unwrap()
    );
}

#[tokio::test]
async fn apply_wrong_post_apply_checksum_is_detected() {
    let (store, _) = store(true, true);
    let (dir, _out, r) = restore(&store, Target::Latest).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, RestoreError::DbChecksumMismatch { txid: TxId(3), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("0000000000000003-0000000000000003.ltx"),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn apply_missing_file_is_not_found_naming_it() {
    let (store, _) = store(false, false);
    let files = super::super::list(store.as_ref()).await.unwrap();
    let chain = super::super::plan(&files, &Target::Latest, "mem://test").unwrap();
    store.files.lock().unwrap().remove(&(0, TxId(3), TxId(3)));
    let dir = tempfile::tempdir().unwrap();
    let dyn_store: DynStore = store.clone();
    let err = apply(
        &dyn_store,
        &chain,
        &RestoreOptions::new(dir.path().join("db"), Target::Latest),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("level 0 file 0000000000000003-0000000000000003.ltx"),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn apply_dropped_future_leaves_nothing() {
    let (store, _) = store(false, false);
    store.stall.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let dyn_store: DynStore = store.clone();
    let opts = RestoreOptions::new(dir.path().join("db"), Target::Latest);
    let r = tokio::time::timeout(Duration::from_millis(200), run(&dyn_store, &opts)).await;
    assert!(r.is_err(), "the stalled restore should not finish");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[tokio::test]
async fn apply_existing_output_is_refused_before_downloading() {
    let (store, _) = store(false, false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db"), b"keep").unwrap();
    let dyn_store: DynStore = store.clone();
    let err = run(
        &dyn_store,
        &RestoreOptions::new(dir.path().join("db"), Target::Latest),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RestoreError::OutputExists { .. }));
    assert!(store.offsets.lock().unwrap().is_empty());
    assert_eq!(std::fs::read(dir.path().join("db")).unwrap(), b"keep");
}

/// Several GETs are in flight at once: 24 files, each GET taking 50 ms, reach `-parallelism`
/// concurrent opens (8 by default, 3 when asked) and restore the right bytes; with 1 there is
/// never more than one.
#[tokio::test]
async fn apply_downloads_in_parallel_up_to_parallelism() {
    for (parallelism, want) in [(8usize, 8u32), (3, 3), (1, 1)] {
        let store = Arc::new(MemStore::default());
        let mut state = State::new();
        store.put(
            9,
            encode(&mut state, 1, 1, 2, &[(1, 1), (2, 2)], false, None),
        );
        for t in 2..=24u64 {
            let fill = (t % 250) as u8 + 3;
            store.put(0, encode(&mut state, t, t, 2, &[(2, fill)], false, None));
        }
        *store.open_delay.lock().unwrap() = Some(Duration::from_millis(50));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("db");
        let mut opts = RestoreOptions::new(&out, Target::Latest);
        opts.parallelism = parallelism;
        let dyn_store: DynStore = store.clone();
        let summary = run(&dyn_store, &opts).await.unwrap();
        assert_eq!(summary.txid, TxId(24));
        assert_eq!(summary.files, 24);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes[PAGE as usize], state[&2]);
        assert_eq!(
            store.max_in_flight.load(Ordering::SeqCst),
            want,
            "parallelism {parallelism}"
        );
    }
}
