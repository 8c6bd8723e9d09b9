//! `walstream replicate`.
use std::path::PathBuf;

/// `replicate [-config FILE] [-exec CMD] [-once [-force-snapshot] [-enforce-retention]] [DB_PATH REPLICA_URL]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicateArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// Run this command as a child and stop replicating when it exits.
    #[arg(long = "exec")]
    pub exec: Option<String>,
    /// Sync once and exit.
    #[arg(long = "once")]
    pub once: bool,
    /// With -once: take a snapshot.
    #[arg(long = "force-snapshot")]
    pub force_snapshot: bool,
    /// With -once: apply retention.
    #[arg(long = "enforce-retention")]
    pub enforce_retention: bool,
    /// Restore the database from the replica first if it does not exist.
    #[arg(long = "restore-if-db-not-exists")]
    pub restore_if_db_not_exists: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// DB_PATH REPLICA_URL (instead of a config file).
    #[arg(num_args = 0..=2)]
    pub args: Vec<String>,
}

/// Runs replication until SIGINT/SIGTERM (or once).
pub async fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("replicate: not implemented yet")
}
