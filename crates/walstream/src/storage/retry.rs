//! Retrying storage calls: capped exponential backoff with jitter, classified by
//! [`StorageError::is_retryable`].
//!
//! [`RetryPolicy`] is a plain, documented value; [`RetryPolicy::run`] retries one operation
//! (`op(attempt)`) until it succeeds, fails permanently, or the policy is exhausted, and returns
//! the last error unchanged (it already names backend and key). [`Backoff`] is the state
//! underneath, for loops that need more control, such as a download that resumes where it
//! stopped and starts its delays over whenever it made progress.
//!
//! Which errors are retried is the error's own business ([`StorageError::is_retryable`]): 5xx,
//! SlowDown/429, timeouts and connection resets are; 403, a missing bucket or container and a
//! missing object are not.
//!
//! ```
//! # async fn example(store: walstream::storage::DynStore) -> Result<(), walstream::storage::StorageError> {
//! use walstream::storage::retry::RetryPolicy;
//! let files = RetryPolicy::restore()
//!     .run(store.kind(), "ltx/0", |_attempt| store.ltx_files(0))
//!     .await?;
//! # let _ = files; Ok(()) }
//! ```
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::StorageError;

/// How to retry: delays grow from `initial_backoff` by `multiplier` up to `max_backoff`; each
/// delay is drawn uniformly from `[d/2, d]` ("equal jitter") so that many clients failing
/// together do not retry together, yet no retry comes sooner than half the nominal delay.
///
/// Retrying stops at the first non-retryable error, after `max_attempts` attempts, or when the
/// next attempt would start later than `max_elapsed` after the first.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Nominal delay before the first retry.
    pub initial_backoff: Duration,
    /// Cap on the nominal delay.
    pub max_backoff: Duration,
    /// Growth of the nominal delay per retry (at least 1).
    pub multiplier: f64,
    /// Attempts in all, the first included; `None` is no limit.
    pub max_attempts: Option<u32>,
    /// No attempt starts later than this after the first; `None` is no limit.
    pub max_elapsed: Option<Duration>,
    /// An attempt still running after this long is abandoned and counts as a transient timeout.
    /// `None` leaves timeouts to the backend (object_store has its own request timeouts).
    pub attempt_timeout: Option<Duration>,
}

impl RetryPolicy {
    /// For the replicator's uploads: retry without end (the L0 files wait in the meta directory
    /// until they are uploaded, so nothing is lost while the store is away), every 5 s at most,
    /// so that replication catches up within seconds once the store is back.
    pub fn upload() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            max_attempts: None,
            max_elapsed: None,
            attempt_timeout: None,
        }
    }

    /// For restores and other one-shot commands: a bounded number of attempts (6, under 8 s of
    /// waiting in all), then the error. Backends retry each request a little themselves
    /// (object_store: 3 quick retries), so an unreachable store fails a restore in seconds.
    pub fn restore() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            multiplier: 2.0,
            max_attempts: Some(6),
            max_elapsed: Some(Duration::from_secs(60)),
            attempt_timeout: None,
        }
    }

    /// Never retries: one attempt.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: Some(1),
            ..Self::restore()
        }
    }

    /// The same policy with at most `n` attempts (`None`: no limit).
    pub fn with_max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// The same policy with a timeout per attempt.
    pub fn with_attempt_timeout(mut self, t: Option<Duration>) -> Self {
        self.attempt_timeout = t;
        self
    }

    /// A fresh backoff state, started now.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.clone())
    }

    /// Runs `op(attempt)` (attempts count from 1) until it succeeds or fails for good.
    /// `backend` and `key` name the operation in logs and in the timeout error.
    pub async fn run<T, F, Fut>(
        &self,
        backend: &'static str,
        key: &str,
        op: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.run_until(backend, key, || false, op).await
    }

    /// As [`run`](Self::run), but stops retrying (returning the last error) once `give_up()`
    /// is true when a retry is due. Used to bound retries when the process is shutting down.
    pub async fn run_until<T, F, Fut, G>(
        &self,
        backend: &'static str,
        key: &str,
        mut give_up: G,
        mut op: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
        G: FnMut() -> bool,
    {
        let mut backoff = self.backoff();
        loop {
            let attempt = backoff.attempts() + 1;
            let result = match self.attempt_timeout {
                Some(t) => match tokio::time::timeout(t, op(attempt)).await {
                    Ok(r) => r,
                    Err(_) => Err(StorageError::Transient {
                        backend,
                        key: key.to_string(),
                        message: format!("timed out after {t:?} (attempt {attempt})"),
                    }),
                },
                None => op(attempt).await,
            };
            let err = match result {
                Ok(v) => {
                    if attempt > 1 {
                        debug!(backend, key, attempt, "succeeded after retrying");
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            let delay = match backoff.next_delay() {
                Some(d) if !give_up() => d,
                _ => return Err(err),
            };
            warn!(backend, key, attempt, retry_in = ?delay, error = %err, "storage call failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::restore`]: bounded.
    fn default() -> Self {
        Self::restore()
    }
}

/// The state of one retried operation: attempts made, time since the first, the next nominal
/// delay. Uses the tokio clock, so tests can pause time.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    /// Failed attempts since the start (or the last [`reset`](Self::reset)).
    failures: u32,
    started: Instant,
    nominal: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff for `policy`, started now, with a jitter seed of its own.
    pub fn new(policy: RetryPolicy) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        Self::with_seed(policy, seed)
    }

    /// A backoff with a fixed jitter seed (for tests).
    pub fn with_seed(policy: RetryPolicy, seed: u64) -> Self {
        Backoff {
            nominal: policy.initial_backoff,
            policy,
            failures: 0,
            started: Instant::now(),
            rng: seed | 1,
        }
    }

    /// Attempts that failed so far.
    pub fn attempts(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt and returns how long to wait before the next one, or `None` when
    /// the policy allows no further attempt.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if let Some(max) = self.policy.max_attempts {
            if self.failures >= max {
                return None;
            }
        }
        let nominal = self.nominal.min(self.policy.max_backoff);
        let delay = self.jitter(nominal);
        if let Some(max) = self.policy.max_elapsed {
            if self.started.elapsed() + delay > max {
                return None;
            }
        }
        let next = nominal.as_secs_f64() * self.policy.multiplier.max(1.0);
        self.nominal = Duration::try_from_secs_f64(next)
            .unwrap_or(self.policy.max_backoff)
            .min(self.policy.max_backoff);
        Some(delay)
    }

    /// Starts over after progress (e.g. a download that received bytes before it broke): the
    /// attempt count, elapsed time and delay return to their initial values.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.started = Instant::now();
        self.nominal = self.policy.initial_backoff;
    }

    /// A duration uniformly in `[d/2, d]`.
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * unit)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    fn transient() -> StorageError {
        StorageError::Transient {
            backend: "test",
            key: "k".into(),
            message: "503 SlowDown".into(),
        }
    }

    fn permanent() -> StorageError {
        StorageError::Permanent {
            backend: "test",
            key: "bucket/k".into(),
            message: "403 Forbidden".into(),
        }
    }

    #[test]
    fn backoff_delays_grow_capped_and_jittered() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: None,
            max_elapsed: None,
            attempt_timeout: None,
        };
        let mut b = Backoff::with_seed(policy, 42);
        let nominal = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        let mut delays = Vec::new();
        for n in nominal {
            let d = b.next_delay().unwrap();
            let n = Duration::from_millis(n);
            assert!(d >= n / 2 && d <= n, "{d:?} outside [{:?}, {n:?}]", n / 2);
            delays.push(d);
        }
        // Jitter: the capped delays are not all the same.
        assert!(delays[4..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn backoff_seeds_differ() {
        let p = RetryPolicy::upload();
        let a: Vec<_> = {
            let mut b = Backoff::new(p.clone());
            (0..5).map(|_| b.next_delay().unwrap()).collect()
        };
        let b: Vec<_> = {
            let mut b = Backoff::new(p);
            (0..5).map(|_| b.next_delay().unwrap()).collect()
        };
        assert_ne!(a, b, "two backoffs jitter alike");
    }

    #[test]
    fn backoff_max_attempts_counts_the_first() {
        let mut b = Backoff::with_seed(RetryPolicy::restore().with_max_attempts(Some(3)), 1);
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay().is_some());
    }

    #[test]
    fn backoff_never_allows_one_attempt() {
        assert_eq!(Backoff::new(RetryPolicy::never()).next_delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_max_elapsed_stops_retries() {
        let policy = RetryPolicy {
            max_attempts: None,
            max_elapsed: Some(Duration::from_secs(10)),
            ..RetryPolicy::upload()
        };
        let mut b = Backoff::with_seed(policy, 7);
        let start = Instant::now();
        let mut n = 0;
        while let Some(d) = b.next_delay() {
            tokio::time::sleep(d).await;
            n += 1;
        }
        assert!(
            start.elapsed() <= Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(n >= 4, "only {n} retries in 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_transient_then_success_returns_value() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let v = RetryPolicy::restore()
            .run("test", "k", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 3 {
                        Err(transient())
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two delays: [125, 250] ms then [250, 500] ms of virtual time.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(375) && waited <= Duration::from_millis(750),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_permanent_error_is_not_retried() {
        let calls = AtomicU32::new(0);
        let err = RetryPolicy::upload()
            .run("test", "k", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(permanent()) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(err.to_string().contains("bucket/k"), "{err}");
        assert!(!err.is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_not_found_is_not_retried() {
        let calls = AtomicU32::new(0);
        let err = RetryPolicy::upload()
            .run("test", "k", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<(), _>(StorageError::NotFound {
                        backend: "test",
                        key: "k".into(),
                    })
                }
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_exhausted_returns_last_transient_error() {
        let calls = AtomicU32::new(0);
        let err = RetryPolicy::restore()
            .run("test", "k", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(transient()) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert!(
            err.is_retryable() && err.to_string().contains("SlowDown"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_upload_policy_keeps_going_until_store_returns() {
        // 200 failures span far more than any bounded policy would allow.
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        RetryPolicy::upload()
            .run("test", "k", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt <= 200 {
                        Err(transient())
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 201);
        // Capped at 5 s: 200 delays take at most 1000 s, and at least 2.5 s each once capped.
        let waited = start.elapsed();
        assert!(waited <= Duration::from_secs(1000), "{waited:?}");
        assert!(waited >= Duration::from_secs(400), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_give_up_stops_retrying() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let err = RetryPolicy::upload()
            .run_until(
                "test",
                "k",
                move || c.load(Ordering::SeqCst) >= 4,
                |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>(transient()) }
                },
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_attempt_timeout_is_transient_and_retried() {
        let policy = RetryPolicy::restore().with_attempt_timeout(Some(Duration::from_secs(2)));
        let v = policy
            .run("test", "k", |attempt| async move {
                if attempt == 1 {
                    // A stalled call.
                    std::future::pending::<()>().await;
                }
                Ok::<_, StorageError>(attempt)
            })
            .await
            .unwrap();
        assert_eq!(v, 2);
        let err = policy
            .with_max_attempts(Some(1))
            .run("s3", "bucket/0000/x.ltx", |_| {
                std::future::pending::<Result<(), _>>()
            })
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.contains("s3") && msg.contains("bucket/0000/x.ltx") && msg.contains("timed out"),
            "{msg}"
        );
    }
}
