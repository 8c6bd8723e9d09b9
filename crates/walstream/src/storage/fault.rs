//! A fault-injecting [`ReplicaStore`] wrapper for tests: it fails, stalls or cuts calls to any
//! inner store on a schedule, and counts every attempt, so that retry paths run
//! deterministically.
//!
//! Faults are chosen per call, in this order:
//! 1. the attempt counter of `(operation, key)` goes up;
//! 2. a stall scheduled for this attempt waits (a fixed time, or for ever);
//! 3. a failure scheduled for this attempt ([`FaultStore::fail_first`]) or drawn from the seeded
//!    probability ([`FaultStore::fail_randomly`]) returns an error; with
//!    [`FaultStore::write_lands_before_error`] a write or delete reaches the inner store first;
//! 4. otherwise the inner store answers, and a download scheduled for cutting
//!    ([`FaultStore::cut_first_opens`]) breaks after a number of bytes.
//!
//! Keys are `<level>/<min>-<max>.ltx` for a file and `<level>/` for a listing (see
//! [`file_key`], [`level_key`]). With no faults configured, the wrapper only counts, and passes
//! the shared contract suite.
//!
//! ```ignore
//! let store = Arc::new(FaultStore::new(inner).fail_first(Op::Write, 2));
//! // ... the first two writes of every file fail with a transient error ...
//! assert_eq!(store.attempts(Op::Write, &file_key(0, TxId(1), TxId(1))), 3);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use ltx::TxId;

use super::{ByteStream, DynStore, LtxFileInfo, ReplicaStore, StorageError};

/// A store operation, as counted and scheduled by [`FaultStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`ReplicaStore::ltx_files`], and [`ReplicaStore::list_databases`] (key `databases`).
    List,
    /// [`ReplicaStore::open_ltx_file`].
    Open,
    /// [`ReplicaStore::write_ltx_file`].
    Write,
    /// [`ReplicaStore::delete_ltx_files`].
    Delete,
}

/// What an injected failure looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A retryable error, like a 503 SlowDown or a connection reset.
    Transient,
    /// A permanent error, like a 403 Forbidden.
    Permanent,
}

/// How long an injected stall lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Waits this long, then carries on.
    For(Duration),
    /// Never completes (until the caller gives up).
    Forever,
}

/// How a cut download breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The stream yields a transient error (a connection reset).
    Error,
    /// The stream stops delivering and never ends.
    Stall,
}

/// The key of one LTX file, as attempts are counted: `<level>/<min>-<max>.ltx`.
pub fn file_key(level: u8, min: TxId, max: TxId) -> String {
    format!("{level}/{}", ltx::file_name(min, max))
}

/// The key of a level's listing: `<level>/`.
pub fn level_key(level: u8) -> String {
    format!("{level}/")
}

#[derive(Debug, Default)]
struct State {
    enabled: bool,
    fail_first: HashMap<Op, (u32, FaultKind)>,
    probability: f64,
    rng: u64,
    write_lands: bool,
    stall_first: HashMap<Op, (u32, Stall)>,
    cut: Option<(u32, u64, Cut)>,
    attempts: HashMap<(Op, String), u32>,
    opens: Vec<(String, u64)>,
    injected: u32,
}

impl State {
    /// xorshift64 in [0, 1).
    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What to do with one call.
struct Plan {
    attempt: u32,
    stall: Option<Stall>,
    fail: Option<FaultKind>,
    cut: Option<(u64, Cut)>,
    write_lands: bool,
}

/// A [`ReplicaStore`] that injects faults into calls to an inner store. See the module docs.
#[derive(Debug)]
pub struct FaultStore {
    inner: DynStore,
    state: Mutex<State>,
}

impl FaultStore {
    /// Wraps `inner`, injecting nothing until told to.
    pub fn new(inner: DynStore) -> Self {
        FaultStore {
            inner,
            state: Mutex::new(State {
                enabled: true,
                rng: 1,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the counters from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the first `n` attempts of each distinct key of `op` with a transient error.
    pub fn fail_first(self, op: Op, n: u32) -> Self {
        self.fail_first_with(op, n, FaultKind::Transient)
    }

    /// Fails the first `n` attempts of each distinct key of `op` with errors of `kind`.
    pub fn fail_first_with(self, op: Op, n: u32, kind: FaultKind) -> Self {
        self.state().fail_first.insert(op, (n, kind));
        self
    }

    /// Fails any call with probability `p` (a transient error), drawn from a generator seeded
    /// with `seed`, so a run is repeatable.
    pub fn fail_randomly(self, p: f64, seed: u64) -> Self {
        {
            let mut s = self.state();
            s.probability = p;
            s.rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        }
        self
    }

    /// With `true`, a failing write or delete is performed on the inner store before the error is
    /// returned, as when the request landed but the answer was lost.
    pub fn write_lands_before_error(self, yes: bool) -> Self {
        self.state().write_lands = yes;
        self
    }

    /// Stalls the first `n` attempts of each distinct key of `op`.
    pub fn stall_first(self, op: Op, n: u32, stall: Stall) -> Self {
        self.state().stall_first.insert(op, (n, stall));
        self
    }

    /// Cuts the first `n` downloads of each file after `after_bytes` bytes of the stream.
    pub fn cut_first_opens(self, n: u32, after_bytes: u64, how: Cut) -> Self {
        self.state().cut = Some((n, after_bytes, how));
        self
    }

    /// Turns injection on or off at run time; counting goes on either way.
    pub fn set_enabled(&self, on: bool) {
        self.state().enabled = on;
    }

    /// Attempts made so far for `(op, key)`.
    pub fn attempts(&self, op: Op, key: &str) -> u32 {
        self.state()
            .attempts
            .get(&(op, key.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Attempts made so far for `op`, over every key.
    pub fn total_attempts(&self, op: Op) -> u32 {
        self.state()
            .attempts
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Faults injected so far (failures, stalls and cuts).
    pub fn injected(&self) -> u32 {
        self.state().injected
    }

    /// The offsets every open of `key` asked for, in order.
    pub fn open_offsets(&self, key: &str) -> Vec<u64> {
        self.state()
            .opens
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, o)| *o)
            .collect()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &DynStore {
        &self.inner
    }

    fn plan(&self, op: Op, keys: &[String]) -> Plan {
        let mut s = self.state();
        let mut attempt = 0;
        for k in keys {
            let n = s.attempts.entry((op, k.clone())).or_insert(0);
            *n += 1;
            attempt = attempt.max(*n);
        }
        // A delete of several files counts as its most-tried file's attempt: it keeps failing
        // until every file in it is past the scheduled failures.
        let mut plan = Plan {
            attempt,
            stall: None,
            fail: None,
            cut: None,
            write_lands: s.write_lands,
        };
        if !s.enabled {
            return plan;
        }
        if let Some((n, stall)) = s.stall_first.get(&op).copied() {
            if attempt <= n {
                plan.stall = Some(stall);
            }
        }
        if let Some((n, kind)) = s.fail_first.get(&op).copied() {
            if attempt <= n {
                plan.fail = Some(kind);
            }
        }
        if plan.fail.is_none() && s.probability > 0.0 && s.draw() < s.probability {
            plan.fail = Some(FaultKind::Transient);
        }
        if op == Op::Open && plan.fail.is_none() {
            if let Some((n, after, how)) = s.cut {
                if attempt <= n {
                    plan.cut = Some((after, how));
                }
            }
        }
        s.injected += u32::from(plan.stall.is_some())
            + u32::from(plan.fail.is_some())
            + u32::from(plan.cut.is_some());
        plan
    }

    fn error(&self, kind: FaultKind, key: &str, attempt: u32) -> StorageError {
        match kind {
            FaultKind::Transient => StorageError::Transient {
                backend: self.inner.kind(),
                key: key.to_string(),
                message: format!("injected fault: 503 SlowDown (attempt {attempt})"),
            },
            FaultKind::Permanent => StorageError::Permanent {
                backend: self.inner.kind(),
                key: key.to_string(),
                message: format!("injected fault: 403 Forbidden (attempt {attempt})"),
            },
        }
    }

    /// Stalls as planned, then returns the planned failure, if any.
    async fn before(&self, plan: &Plan, key: &str) -> Result<(), StorageError> {
        match plan.stall {
            Some(Stall::For(d)) => tokio::time::sleep(d).await,
            Some(Stall::Forever) => std::future::pending::<()>().await,
            None => {}
        }
        match plan.fail {
            Some(kind) => Err(self.error(kind, key, plan.attempt)),
            None => Ok(()),
        }
    }
}

/// Passes `stream` through until `after` bytes were delivered, then breaks it as `how` says.
fn cut_stream(
    stream: ByteStream,
    after: u64,
    how: Cut,
    backend: &'static str,
    key: String,
) -> ByteStream {
    let state = (stream, after, false);
    let s = futures::stream::unfold(state, move |(mut stream, left, done)| {
        let key = key.clone();
        async move {
            if done {
                return None;
            }
            if left == 0 {
                // Nothing more gets through: break the stream here.
                return match how {
                    Cut::Error => Some((
                        Err(StorageError::Transient {
                            backend,
                            key,
                            message: "injected fault: connection reset mid-body".to_string(),
                        }),
                        (stream, 0, true),
                    )),
                    Cut::Stall => std::future::pending().await,
                };
            }
            match stream.next().await {
                None => None,
                Some(Err(e)) => Some((Err(e), (stream, left, true))),
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    if n <= left {
                        Some((Ok(chunk), (stream, left - n, false)))
                    } else {
                        Some((Ok(chunk.slice(..left as usize)), (stream, 0, false)))
                    }
                }
            }
        }
    });
    Box::pin(s)
}

#[async_trait]
impl ReplicaStore for FaultStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let key = level_key(level);
        let plan = self.plan(Op::List, std::slice::from_ref(&key));
        self.before(&plan, &key).await?;
        self.inner.ltx_files(level).await
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let key = file_key(level, min, max);
        self.state().opens.push((key.clone(), offset));
        let plan = self.plan(Op::Open, std::slice::from_ref(&key));
        self.before(&plan, &key).await?;
        let stream = self.inner.open_ltx_file(level, min, max, offset).await?;
        Ok(match plan.cut {
            Some((after, how)) => cut_stream(stream, after, how, self.inner.kind(), key),
            None => stream,
        })
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let key = file_key(level, min, max);
        let plan = self.plan(Op::Write, std::slice::from_ref(&key));
        match plan.fail {
            Some(kind) if plan.write_lands => {
                self.before(&Plan { fail: None, ..plan }, &key).await?;
                self.inner
                    .write_ltx_file(level, min, max, src, created_at)
                    .await?;
                Err(self.error(kind, &key, plan.attempt))
            }
            _ => {
                self.before(&plan, &key).await?;
                self.inner
                    .write_ltx_file(level, min, max, src, created_at)
                    .await
            }
        }
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        let keys: Vec<String> = files
            .iter()
            .map(|f| file_key(f.level, f.min_txid, f.max_txid))
            .collect();
        let key = keys.first().cloned().unwrap_or_default();
        let plan = self.plan(Op::Delete, &keys);
        match plan.fail {
            Some(kind) if plan.write_lands => {
                self.before(&Plan { fail: None, ..plan }, &key).await?;
                self.inner.delete_ltx_files(files).await?;
                Err(self.error(kind, &key, plan.attempt))
            }
            _ => {
                self.before(&plan, &key).await?;
                self.inner.delete_ltx_files(files).await
            }
        }
    }

    fn encryption(&self) -> Option<std::sync::Arc<crate::storage::encrypted::Encryption>> {
        self.inner.encryption()
    }
    fn supports_lease(&self) -> bool {
        self.inner.supports_lease()
    }

    async fn read_lease(&self) -> Result<Option<super::LeaseObject>, StorageError> {
        self.inner.read_lease().await
    }

    async fn write_lease(
        &self,
        data: bytes::Bytes,
        expected: Option<&super::LeaseVersion>,
    ) -> Result<super::LeaseVersion, StorageError> {
        self.inner.write_lease(data, expected).await
    }

    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        self.inner.remove_stale_uploads().await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        self.inner.list_objects(prefix).await
    }

    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        self.inner.open_object(key, offset).await
    }

    fn ltx_layout(&self) -> super::LtxLayout {
        self.inner.ltx_layout()
    }

    async fn list_databases(&self, recursive: bool) -> Result<Vec<String>, StorageError> {
        // A listing like a level's: the same faults apply.
        let key = "databases".to_string();
        let plan = self.plan(Op::List, std::slice::from_ref(&key));
        self.before(&plan, &key).await?;
        self.inner.list_databases(recursive).await
    }
}

/// Shorthand: `Arc`-wrapped for use as a [`DynStore`] while keeping the counters reachable.
pub fn wrap(inner: DynStore) -> Arc<FaultStore> {
    Arc::new(FaultStore::new(inner))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::contract::{self, read_all, test_bytes, Sources};
    use crate::storage::file::FileStore;
    use futures::TryStreamExt;

    fn file_store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(FileStore::new(dir.path().join("replica")));
        (dir, store)
    }

    #[tokio::test]
    async fn fault_store_without_faults_passes_contract_listing() {
        let (dir, root) = file_store();
        let base = dir.path().join("replica");
        contract::run_listing(Arc::new(FaultStore::new(root)), |rel| {
            Arc::new(FaultStore::new(Arc::new(FileStore::new(base.join(rel))))) as DynStore
        })
        .await;
    }

    #[tokio::test]
    async fn fault_store_without_faults_passes_contract() {
        let mut dirs = Vec::new();
        contract::run_all(|| {
            let (dir, store) = file_store();
            dirs.push(dir);
            async move { Arc::new(FaultStore::new(store)) as DynStore }
        })
        .await;
    }

    #[tokio::test]
    async fn fault_store_disabled_passes_contract() {
        let mut dirs = Vec::new();
        contract::run_all(|| {
            let (dir, store) = file_store();
            dirs.push(dir);
            let fs = FaultStore::new(store)
                .fail_first(Op::Write, 5)
                .fail_randomly(0.5, 3)
                .cut_first_opens(5, 10, Cut::Error);
            fs.set_enabled(false);
            async move { Arc::new(fs) as DynStore }
        })
        .await;
    }

    #[tokio::test]
    async fn fault_store_fails_first_n_per_key() {
        let (_dir, inner) = file_store();
        let store = FaultStore::new(inner.clone()).fail_first(Op::Write, 2);
        let mut src = Sources::new();
        let p = src.file(&test_bytes(200, 1));
        let now = SystemTime::now();
        for (min, max) in [(1, 1), (2, 2)] {
            for attempt in 1..=2 {
                let err = store
                    .write_ltx_file(0, TxId(min), TxId(max), &p, now)
                    .await
                    .unwrap_err();
                assert!(err.is_retryable(), "{err}");
                assert!(err.to_string().contains(&file_key(0, TxId(min), TxId(max))));
                assert!(err.to_string().contains(&format!("attempt {attempt}")));
            }
            store
                .write_ltx_file(0, TxId(min), TxId(max), &p, now)
                .await
                .unwrap();
            assert_eq!(
                store.attempts(Op::Write, &file_key(0, TxId(min), TxId(max))),
                3
            );
        }
        assert_eq!(store.total_attempts(Op::Write), 6);
        assert_eq!(store.injected(), 4);
        assert_eq!(inner.ltx_files(0).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn fault_store_write_lands_before_error() {
        let (_dir, inner) = file_store();
        let store = FaultStore::new(inner.clone())
            .fail_first(Op::Write, 1)
            .write_lands_before_error(true);
        let mut src = Sources::new();
        let p = src.file(&test_bytes(50, 2));
        let err = store
            .write_ltx_file(0, TxId(1), TxId(1), &p, SystemTime::now())
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            inner.ltx_files(0).await.unwrap().len(),
            1,
            "the write should have landed"
        );
    }

    #[tokio::test]
    async fn fault_store_permanent_fault() {
        let (_dir, inner) = file_store();
        let store = FaultStore::new(inner).fail_first_with(Op::List, 1, FaultKind::Permanent);
        let err = store.ltx_files(3).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("403") && err.to_string().contains("3/"),
            "{err}"
        );
        assert!(store.ltx_files(3).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn fault_store_cut_stream_breaks_after_bytes_and_records_offsets() {
        let (_dir, inner) = file_store();
        let mut src = Sources::new();
        let data = test_bytes(1000, 3);
        inner
            .write_ltx_file(0, TxId(1), TxId(1), &src.file(&data), SystemTime::now())
            .await
            .unwrap();
        let store = FaultStore::new(inner).cut_first_opens(1, 300, Cut::Error);
        let key = file_key(0, TxId(1), TxId(1));
        let mut got = Vec::new();
        let mut stream = store.open_ltx_file(0, TxId(1), TxId(1), 0).await.unwrap();
        let err = loop {
            match stream.next().await {
                Some(Ok(b)) => got.extend_from_slice(&b),
                Some(Err(e)) => break e,
                None => panic!("stream not cut"),
            }
        };
        assert!(
            err.is_retryable() && err.to_string().contains(&key),
            "{err}"
        );
        assert_eq!(got, data[..300]);
        let rest = read_all(&store, 0, 1, 1, got.len() as u64).await;
        assert_eq!(rest, data[300..]);
        assert_eq!(store.open_offsets(&key), [0, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn fault_store_stalls_then_proceeds() {
        let (_dir, inner) = file_store();
        let store =
            FaultStore::new(inner).stall_first(Op::List, 1, Stall::For(Duration::from_secs(30)));
        let start = tokio::time::Instant::now();
        store.ltx_files(0).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        store.ltx_files(0).await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        let forever =
            FaultStore::new(store.inner().clone()).stall_first(Op::List, 1, Stall::Forever);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), forever.ltx_files(0))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn fault_store_random_faults_are_seeded() {
        async fn pattern(seed: u64) -> Vec<bool> {
            let (_dir, inner) = file_store();
            let store = FaultStore::new(inner).fail_randomly(0.3, seed);
            let mut v = Vec::new();
            for _ in 0..64 {
                v.push(store.ltx_files(0).await.is_err());
            }
            v
        }
        let a = pattern(7).await;
        assert_eq!(a, pattern(7).await);
        assert_ne!(a, pattern(8).await);
        let failures = a.iter().filter(|f| **f).count();
        assert!((8..=32).contains(&failures), "{failures} of 64 at p=0.3");
    }

    #[tokio::test]
    async fn fault_store_cut_stall_never_ends() {
        let (_dir, inner) = file_store();
        let mut src = Sources::new();
        inner
            .write_ltx_file(
                0,
                TxId(1),
                TxId(1),
                &src.file(&test_bytes(500, 4)),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let store = FaultStore::new(inner).cut_first_opens(1, 100, Cut::Stall);
        let stream = store.open_ltx_file(0, TxId(1), TxId(1), 0).await.unwrap();
        let r =
            tokio::time::timeout(Duration::from_millis(200), stream.try_collect::<Vec<_>>()).await;
        assert!(r.is_err(), "a stalled stream ended");
    }
}
