//! `heartbeat-url`: an HTTP GET every `heartbeat-interval` while every database is healthy, so
//! that a dead-man's-switch service (healthchecks.io and the like) alerts when replication
//! stops.
//!
//! A database is healthy when it is caught up (the replica holds its newest TXID) or its last
//! upload attempt succeeded; an idle database therefore counts as healthy. A ping is sent at the
//! end of an interval only if every database was healthy at some moment within it (sampled
//! every second). A ping that fails is one warning line; replication is not affected.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{registry, DbView};

/// Default `heartbeat-interval` (Litestream's, as `config::DEFAULT_HEARTBEAT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The interval: `$WALSTREAM_HEARTBEAT_INTERVAL` (hidden, for tests: the config requires at
/// least a minute), else the config's, else 5 minutes.
pub fn interval(config: Option<Duration>) -> Duration {
    std::env::var("WALSTREAM_HEARTBEAT_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .or(config)
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Whether a database is healthy now.
pub fn healthy(v: &DbView) -> bool {
    v.local <= v.remote || (v.connected && !v.failing)
}

/// Pings `url` every `interval` while every database is healthy, until `cancel`.
pub async fn run(url: String, interval: Duration, cancel: tokio_util::sync::CancellationToken) {
    let shown = crate::paths::redact_url(&url);
    let client = match reqwest::Client::builder()
        .timeout(interval.min(Duration::from_secs(30)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(url = %shown, "heartbeat disabled: cannot build an HTTP client: {e}");
            return;
        }
    };
    let sample = interval.min(Duration::from_secs(1));
    let mut last_healthy: HashMap<PathBuf, Instant> = HashMap::new();
    let mut next_ping = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(sample) => {}
        }
        let now = Instant::now();
        let views = registry().views();
        for v in &views {
            if healthy(v) {
                last_healthy.insert(v.path.clone(), now);
            }
        }
        last_healthy.retain(|p, _| views.iter().any(|v| &v.path == p));
        if now < next_ping {
            continue;
        }
        next_ping = now + interval;
        let window_start = now.checked_sub(interval).unwrap_or(now);
        let unhealthy: Vec<String> = views
            .iter()
            .filter(|v| last_healthy.get(&v.path).is_none_or(|t| *t < window_start))
            .map(|v| v.path.display().to_string())
            .collect();
        if !unhealthy.is_empty() {
            debug!(databases = ?unhealthy, "heartbeat skipped: not every database replicated within the interval");
            continue;
        }
        let r = tokio::select! {
            _ = cancel.cancelled() => return,
            r = client.get(&url).send() => r,
        };
        match r.and_then(|r| r.error_for_status()) {
            Ok(_) => debug!(url = %shown, "heartbeat sent"),
            Err(e) => {
                warn!(url = %shown, "heartbeat failed (replication continues): {}", e.without_url())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_caught_up_databases_are_healthy_failing_behind_ones_are_not() {
        let v = |local, remote, connected, failing| DbView {
            path: PathBuf::new(),
            local,
            remote,
            connected,
            failing,
        };
        assert!(healthy(&v(5, 5, true, false)));
        assert!(healthy(&v(5, 5, true, true)), "caught up despite an error");
        assert!(healthy(&v(6, 5, true, false)), "last attempt succeeded");
        assert!(!healthy(&v(6, 5, true, true)));
        assert!(!healthy(&v(6, 0, false, true)), "store down at start");
        assert!(
            healthy(&v(0, 0, false, true)),
            "nothing written: nothing owed"
        );
    }
}
