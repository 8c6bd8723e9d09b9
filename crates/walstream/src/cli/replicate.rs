//! `walstream replicate`.
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

use crate::config::{Config, ReplicaConfig};
use crate::db::DbOptions;
use crate::server::once::OnceOptions;
use crate::server::{self, DbSpec, Server, ServerOptions};

use super::exec;

/// `replicate [-config FILE] [-exec CMD] [-once [-force-snapshot] [-enforce-retention]] [DB_PATH REPLICA_URL]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicateArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// Run this command as a child (split like a shell, started once replication is ready);
    /// SIGINT/SIGTERM are forwarded to it, and walstream exits with its code.
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
    /// Restore each database that does not exist from its replica before replicating it (a
    /// replica with no backup: start empty).
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

/// The default config files, in the order they are looked for.
pub const DEFAULT_CONFIGS: [&str; 2] = ["/etc/litestream.yml", "/etc/walstream.yml"];

/// Finds the config file: `-config`, `$LITESTREAM_CONFIG`, `/etc/litestream.yml`,
/// `/etc/walstream.yml`. A path given by the flag or the variable is returned even if it does not
/// exist (loading it then says so); the two defaults only when they exist.
pub fn find_config(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("LITESTREAM_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    DEFAULT_CONFIGS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Loads a config file and logs its warnings (unknown keys, keys walstream does not act on).
pub fn load_config(path: &Path, no_expand_env: bool) -> anyhow::Result<Config> {
    let loaded = Config::load(path, !no_expand_env)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    Ok(loaded.config)
}

/// The log level the config file asks for (`logging.level`), when neither `-log-level` nor
/// `$LOG_LEVEL` is given. A config that does not load gives `None`; `replicate` reports why.
pub fn config_log_level(args: &ReplicateArgs) -> Option<String> {
    if args.log_level.is_some()
        || std::env::var_os("LOG_LEVEL").is_some_and(|v| !v.is_empty())
        || args.args.len() == 2
    {
        return None;
    }
    let path = find_config(args.config.as_deref())?;
    let loaded = Config::load(&path, !args.no_expand_env).ok()?;
    loaded.config.log_level().map(str::to_string)
}

/// `logging.type` and `logging.stderr` from the config file. Without a config file, without a
/// `logging:` key, or with a config that does not load (`replicate` then reports why): text on
/// stdout, Litestream 0.5's default. `logging.stderr: true` sends the lines to stderr. An error
/// that ends the process is one `error: ...` line on stderr either way (as Litestream's `Error:`).
pub fn config_log_output(args: &ReplicateArgs) -> (crate::logging::Format, crate::logging::Output) {
    use crate::logging::{Format, Output};
    let logging = (args.args.len() != 2)
        .then(|| find_config(args.config.as_deref()))
        .flatten()
        .and_then(|p| Config::load(&p, !args.no_expand_env).ok())
        .and_then(|l| l.config.logging);
    let Some(l) = logging else {
        return (Format::Text, Output::Stdout);
    };
    let out = match l.stderr {
        Some(true) => Output::Stderr,
        _ => Output::Stdout,
    };
    (Format::parse(l.kind.as_deref()), out)
}

/// Registers every secret of a replica's config (keys, passwords, tokens, a URL's password)
/// with the logger, so that no log line shows it.
fn register_secrets(r: &ReplicaConfig) {
    for s in [
        &r.secret_access_key,
        &r.sse_customer_key,
        &r.account_key,
        &r.sas_token,
        &r.password,
        &r.webdav_password,
        &r.jwt,
        &r.seed,
        &r.nkey,
        &r.token,
    ]
    .into_iter()
    .flatten()
    {
        crate::logging::add_secret(s);
    }
    if let Some(url) = &r.url {
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, pw)) = userinfo.split_once(':') {
                    crate::logging::add_secret(pw);
                    if let Ok(d) = percent_encoding::percent_decode_str(pw).decode_utf8() {
                        crate::logging::add_secret(&d);
                    }
                }
            }
        }
    }
    for var in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "AZURE_STORAGE_KEY",
    ] {
        if let Ok(v) = std::env::var(var) {
            crate::logging::add_secret(&v);
        }
    }
}

/// One database to replicate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Database path.
    pub db: PathBuf,
    /// The replica.
    pub replica: ReplicaConfig,
    /// Options.
    pub opts: DbOptions,
    /// Restore it from the replica first if it does not exist (`-restore-if-db-not-exists`, or
    /// the database's `restore-if-db-not-exists` key).
    pub restore_if_missing: bool,
}

/// What `replicate` was asked to do.
#[derive(Debug)]
struct Plan {
    targets: Vec<Target>,
    /// The command to supervise (`-exec`, else the config's `exec`) and whether it came from
    /// the config.
    exec: Option<(String, bool)>,
    /// `shutdown-sync-timeout`.
    shutdown_timeout: Option<std::time::Duration>,
    /// Metrics, heartbeat and backlog settings (h-metrics).
    ops: OpsSettings,
    /// The config file, when one was used (control socket, watched directories).
    config: Option<Config>,
    /// The `dir:` entries (their `dbs[]` indexes) whose missing databases are restored on start
    /// (`restore-if-db-not-exists`). When there are any, the directories are scanned only after
    /// those restores ([`config_targets`]), and `targets` is empty until then.
    restore_dirs: Vec<usize>,
}

/// `addr`, `heartbeat-url`, `heartbeat-interval`, `max-local-backlog`.
#[derive(Debug, Clone, Default)]
struct OpsSettings {
    addr: Option<String>,
    heartbeat_url: Option<String>,
    heartbeat_interval: Option<std::time::Duration>,
    max_local_backlog: Option<u64>,
}

impl OpsSettings {
    fn from_config(cfg: &Config) -> OpsSettings {
        OpsSettings {
            addr: cfg.addr.clone().filter(|a| !a.trim().is_empty()),
            heartbeat_url: cfg.heartbeat_url.clone().filter(|u| !u.trim().is_empty()),
            heartbeat_interval: cfg.heartbeat_interval,
            max_local_backlog: Some(cfg.max_local_backlog()),
        }
    }
}

/// The error when no DB_PATH REPLICA_URL and no config file are given: Litestream's
/// `config file not found`, naming every place looked in, and where to start instead.
fn no_config_error() -> anyhow::Error {
    anyhow::anyhow!(
        "config file not found: looked in {} (no -config flag, $LITESTREAM_CONFIG not set); pass \
         -config PATH or DB_PATH REPLICA_URL, or run `walstream demo` to try walstream on ./demo.db",
        DEFAULT_CONFIGS.join(", ")
    )
}

/// The databases to replicate and the command to run.
fn plan(args: &ReplicateArgs) -> anyhow::Result<Plan> {
    match args.args.as_slice() {
        [db, url] => {
            if args.config.is_some() {
                anyhow::bail!("cannot specify a replica URL and -config at the same time");
            }
            Ok(Plan {
                targets: vec![Target {
                    db: PathBuf::from(db),
                    replica: ReplicaConfig {
                        url: Some(url.clone()),
                        ..Default::default()
                    },
                    opts: DbOptions::default(),
                    restore_if_missing: args.restore_if_db_not_exists,
                }],
                exec: args.exec.clone().map(|e| (e, false)),
                shutdown_timeout: None,
                ops: OpsSettings::default(),
                config: None,
                restore_dirs: Vec::new(),
            })
        }
        [one] => anyhow::bail!("must specify a replica URL after the database path {one:?}"),
        _ => {
            let Some(path) = find_config(args.config.as_deref()) else {
                return Err(no_config_error());
            };
            let cfg = load_config(&path, args.no_expand_env)?;
            if cfg.dbs.is_empty() {
                anyhow::bail!("config {}: no databases specified", path.display());
            }
            let restore_dirs: Vec<usize> = cfg
                .dbs
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    d.path.is_none()
                        && (args.restore_if_db_not_exists
                            || d.restore_if_db_not_exists == Some(true))
                })
                .map(|(i, _)| i)
                .collect();
            let targets = if restore_dirs.is_empty() {
                config_targets(&cfg, args, &[])?
            } else {
                Vec::new()
            };
            let exec = match (
                &args.exec,
                cfg.exec.as_deref().filter(|e| !e.trim().is_empty()),
            ) {
                (Some(e), _) => Some((e.clone(), false)),
                (None, Some(e)) => Some((e.to_string(), true)),
                (None, None) => None,
            };
            Ok(Plan {
                targets,
                exec,
                shutdown_timeout: cfg.shutdown_sync_timeout,
                ops: OpsSettings::from_config(&cfg),
                config: Some(cfg),
                restore_dirs,
            })
        }
    }
}

/// The databases of a config: `path:` entries, and the databases found in `dir:` entries now.
/// Those of the `dir:` entries in `restored_dirs` were restored already
/// ([`restore_dir_if_missing`]), so they are not restored again.
fn config_targets(
    cfg: &Config,
    args: &ReplicateArgs,
    restored_dirs: &[usize],
) -> anyhow::Result<Vec<Target>> {
    let targets: Vec<Target> = cfg
        .databases()?
        .into_iter()
        .map(|d| Target {
            restore_if_missing: !restored_dirs.contains(&d.index)
                && (args.restore_if_db_not_exists || d.restore_if_db_not_exists),
            db: d.path,
            replica: d.replica,
            opts: DbOptions {
                history: cfg.history(),
                ..d.options
            },
        })
        .collect();
    for t in &targets {
        check_age(&t.replica).map_err(|m| {
            anyhow::anyhow!("config {}: {}: {m}", cfg.file.display(), t.db.display())
        })?;
    }
    if targets.is_empty() && cfg.watched_dirs().is_empty() {
        warn!(
            "config {}: no databases found yet (directory entries are watched for none)",
            cfg.file.display()
        );
    }
    Ok(targets)
}

/// `age` on a replicated database: its LTX files are encrypted to the recipients; the identities
/// read them back (compaction of files no longer local, restore on start). Both are needed.
pub(crate) fn check_age(replica: &ReplicaConfig) -> Result<(), String> {
    let Some(age) = &replica.age else {
        return Ok(());
    };
    match (age.recipients.is_empty(), age.identities.is_empty()) {
        (true, true) | (false, false) => Ok(()),
        (true, false) => Err(
            "age: replication needs recipients (age: recipients: [age1...]) to \
             encrypt the replica, and identities to read it back"
                .to_string(),
        ),
        (false, true) => Err("age: replication needs identities (age: identities: \
             [AGE-SECRET-KEY-1...] or key files) to read the replica back for compaction and \
             restore, besides the recipients"
            .to_string()),
    }
}

fn spec(t: Target, store: crate::storage::DynStore) -> DbSpec {
    DbSpec {
        path: t.db,
        store,
        lease: t.replica.lease_options(),
        opts: t.opts,
    }
}

fn open_store(t: &Target) -> anyhow::Result<crate::storage::DynStore> {
    register_secrets(&t.replica);
    crate::config::open_replica(&t.replica)
        .map(crate::metrics::store::Instrumented::wrap)
        .with_context(|| format!("replica for {}", t.db.display()))
}

/// Restores `t.db` from its replica if the database does not exist. A replica that answers
/// that it holds no backup means a first start: the database starts empty. A store that does
/// not answer is retried ([`crate::storage::retry::RetryPolicy::restore`]), then the error
/// names it.
pub async fn restore_if_missing(
    db: &Path,
    store: &crate::storage::DynStore,
) -> anyhow::Result<Option<ltx::TxId>> {
    use crate::restore::{self, RestoreOptions, Target as At};
    if db.exists() {
        info!(db = %db.display(), "database exists; not restoring it");
        return Ok(None);
    }
    let replica = store.describe();
    let what = || format!("restore {} from {replica} on start", db.display());
    // A -wal or -shm without its database belongs to a database that is gone: SQLite would
    // replay that WAL onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            warn!(file = %p.display(), "removing a {suffix} file left without its database before restoring");
            std::fs::remove_file(&p)
                .with_context(|| format!("{}: remove {}", what(), p.display()))?;
        }
    }
    let files = restore::list(store.as_ref()).await.with_context(what)?;
    let chain = match restore::plan(&files, &At::Latest, &replica) {
        Ok(chain) => chain,
        Err(e) if e.is_no_backups() => {
            info!(db = %db.display(), replica = %replica, "database does not exist and the replica holds no backup: starting with a new database");
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(what),
    };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: create {}", what(), dir.display()))?;
    }
    let opts = RestoreOptions::new(db, At::Latest);
    let summary = restore::apply_with_fallback(store, &files, chain, &opts)
        .await
        .with_context(what)?;
    info!(db = %db.display(), replica = %replica, txid = %summary.txid, files = summary.files, "database did not exist: restored it from the replica");
    Ok(Some(summary.txid))
}

/// Restores the missing databases of the `dir:` entry `cfg.dbs[index]`: the replica at the
/// entry's root is listed ([`crate::storage::ReplicaStore::list_databases`], retried under the
/// restore policy while the store does not answer, then the error names it), and each database
/// it holds that the entry's pattern (and `recursive`) covers and that does not exist locally is
/// restored as a `path:` entry's is ([`restore_if_missing`]: parent directories created, nothing
/// half-written). Databases that exist are left alone. Returns how many were restored.
pub async fn restore_dir_if_missing(cfg: &Config, index: usize) -> anyhow::Result<usize> {
    use crate::storage::retry::RetryPolicy;
    let Some(entry) = cfg.dbs.get(index) else {
        anyhow::bail!("config {}: no dbs[{index}]", cfg.file.display());
    };
    let dir = entry.display_path();
    let Some(replica) = entry.the_replica() else {
        anyhow::bail!(
            "config {}: dbs[{index}]: must specify replica for database",
            cfg.file.display()
        );
    };
    register_secrets(replica);
    let store = crate::config::open_replica(replica)
        .map(crate::metrics::store::Instrumented::wrap)
        .with_context(|| format!("replica for {dir}"))?;
    let what = || {
        format!(
            "restore the databases of {dir} from {} on start",
            store.describe()
        )
    };
    let recursive = entry.recursive == Some(true);
    let rels = RetryPolicy::restore()
        .run(store.kind(), "databases", |_| {
            store.list_databases(recursive)
        })
        .await
        .with_context(what)?;
    let mut restored = 0;
    for rel in &rels {
        let Some(d) = cfg.dir_database(index, rel)? else {
            info!(dir = %dir, replica = %store.describe(), database = %rel, "the replica holds a database that the dir entry's pattern does not cover: not restoring it");
            continue;
        };
        let t = Target {
            db: d.path,
            replica: d.replica,
            opts: DbOptions::default(),
            restore_if_missing: true,
        };
        let db_store = open_store(&t)?;
        if restore_if_missing(&t.db, &db_store).await?.is_some() {
            restored += 1;
        }
    }
    info!(dir = %dir, replica = %store.describe(), databases = rels.len(), restored, "restore on start of a dir entry: done");
    Ok(restored)
}

/// Waits until every database has reached its replica or reported why it cannot (at most
/// `max`): the point at which `-exec`'s app is started.
async fn wait_ready(server: &Server, max: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let st = server.status();
        if st.iter().all(|s| s.connected || s.last_error.is_some()) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!("starting the -exec command before every replica answered");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits for a database failure that ends the process, and reports the others.
///
/// A database that fails permanently (a missing bucket, a refused lease, a file that is not a
/// SQLite database) stops only that database: it is logged at ERROR once (repeats of the same
/// line are rate-limited by the logger), `status` and the socket's `/status` keep showing its
/// error, and every other database goes on. The process ends (exit 1, the error as its one-line
/// message) only when no database is left replicating and none can be added any more: no
/// control socket and no watched `dir:` entry. So a single database whose replica cannot be
/// used still exits as before (`replicate DB URL` or a one-database config), as Litestream does.
async fn next_ending_fatal(server: &Server, can_add: bool) -> Option<server::ServerError> {
    loop {
        let e = server.next_fatal().await?;
        if !can_add && server.live_count() == 0 {
            return Some(e);
        }
        tracing::error!(
            db = %e.db().display(),
            others = server.live_count(),
            "replication of this database stopped; the other databases go on: {}",
            crate::error_chain::line(&e)
        );
    }
}

/// Runs replication until SIGINT/SIGTERM (or once, or until the -exec child exits). Returns the
/// exit code: the child's with `-exec`, else 0.
pub async fn run(args: ReplicateArgs) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    if let (Some(before), Some(after)) = (server::nofile_limit(), server::raise_nofile_limit()) {
        if after > before {
            tracing::debug!(before, after, "raised the open-file limit");
        }
    }
    let mut plan = plan(&args)?;
    let exec_argv = match &plan.exec {
        Some((_, from_config)) if args.once => {
            if *from_config {
                anyhow::bail!("cannot specify -once flag with -exec (the config file's exec key)");
            }
            anyhow::bail!("cannot specify -once flag with -exec");
        }
        Some((cmd, _)) => {
            let argv = exec::split(cmd)?;
            exec::check_program(&argv[0])?;
            Some(argv)
        }
        None => None,
    };
    // Metrics and heartbeat (h-metrics): a port in use stops the start with one line.
    let ops_cancel = tokio_util::sync::CancellationToken::new();
    let _ops_stop = ops_cancel.clone().drop_guard();
    if let Some(addr) = &plan.ops.addr {
        let (local, _task) = crate::metrics::serve(addr, ops_cancel.child_token()).await?;
        info!(url = %format!("http://{local}/metrics"), "serving metrics on");
    }
    if let Some(url) = &plan.ops.heartbeat_url {
        let interval = crate::metrics::heartbeat::interval(plan.ops.heartbeat_interval);
        info!(url = %crate::paths::redact_url(url), interval = ?interval, "sending heartbeats");
        tokio::spawn(crate::metrics::heartbeat::run(
            url.clone(),
            interval,
            ops_cancel.child_token(),
        ));
    }
    // The start-up line, as Litestream's `litestream v0.5.17`, once the arguments are known good.
    info!("walstream v{}", super::version::version());
    let mut sigint = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("listen for SIGTERM")?;

    if let Some(cfg) = plan
        .config
        .as_ref()
        .filter(|_| !plan.restore_dirs.is_empty())
    {
        for &i in &plan.restore_dirs {
            let what = || cfg.dbs.get(i).map(|d| d.display_path()).unwrap_or_default();
            tokio::select! {
                r = restore_dir_if_missing(cfg, i) => { r?; }
                _ = sigint.recv() => anyhow::bail!("interrupted while restoring {}", what()),
                _ = sigterm.recv() => anyhow::bail!("interrupted while restoring {}", what()),
            }
        }
        plan.targets = config_targets(cfg, &args, &plan.restore_dirs)?;
    }
    let mut specs = Vec::with_capacity(plan.targets.len());
    for t in plan.targets {
        let store = open_store(&t)?;
        if t.restore_if_missing {
            tokio::select! {
                r = restore_if_missing(&t.db, &store) => { r?; }
                _ = sigint.recv() => anyhow::bail!("interrupted while restoring {}", t.db.display()),
                _ = sigterm.recv() => anyhow::bail!("interrupted while restoring {}", t.db.display()),
            }
        }
        specs.push(spec(t, store));
    }
    if args.once {
        let opts = OnceOptions {
            force_snapshot: args.force_snapshot,
            enforce_retention: args.enforce_retention,
        };
        for s in specs {
            server::once::replicate_once(s, opts).await?;
        }
        return Ok(0);
    }
    let mut options = ServerOptions::default();
    if let Some(t) = plan.shutdown_timeout {
        options.shutdown_timeout = t;
    }
    if let Some(b) = plan.ops.max_local_backlog {
        options.max_local_backlog = b;
    }
    let shutdown_timeout = options.shutdown_timeout;
    let server = std::sync::Arc::new(Server::new(options));
    // The control socket and watched directories (separate from the rest of `run`).
    let control = crate::control::Control::new(server.clone(), spec_from_url(plan.config.as_ref()));
    let control_cancel = tokio_util::sync::CancellationToken::new();
    let mut control_tasks = Vec::new();
    if let Some((path, mode)) = plan.config.as_ref().and_then(|c| c.control_socket()) {
        let task = crate::control::serve(control.clone(), &path, mode, control_cancel.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        control_tasks.push(task);
    }
    for s in specs {
        control.add(s).await?;
    }
    if let Some(cfg) = plan.config.as_ref() {
        let dirs = cfg.watched_dirs();
        if !dirs.is_empty() {
            let task = crate::control::dirwatch::start(
                control.clone(),
                dirs,
                spec_for_path(cfg.clone()),
                control_cancel.clone(),
            )?;
            control_tasks.push(task);
        }
    }

    // Whether a database can still be added at run time (see `next_ending_fatal`).
    let can_add = !control_tasks.is_empty();
    let mut fatal = None;
    let mut stop = false;
    let mut child: Option<exec::Child> = None;
    if let Some(argv) = exec_argv {
        tokio::select! {
            _ = wait_ready(&server, std::time::Duration::from_secs(10)) => {}
            e = next_ending_fatal(&server, can_add) => fatal = e,
            _ = sigint.recv() => stop = true,
            _ = sigterm.recv() => stop = true,
        }
        if fatal.is_none() && !stop {
            match exec::spawn(argv) {
                Ok(c) => {
                    info!(pid = c.pid, program = %c.program, "started the -exec command");
                    child = Some(c);
                }
                Err(e) => {
                    control_cancel.cancel();
                    server.shutdown().await;
                    return Err(e);
                }
            }
        }
    }
    let mut code = 0;
    if fatal.is_none() && !stop {
        let pid = child.as_ref().map(|c| c.pid);
        loop {
            let sig = tokio::select! {
                _ = sigint.recv() => libc::SIGINT,
                _ = sigterm.recv() => libc::SIGTERM,
                e = next_ending_fatal(&server, can_add) => { fatal = e; break; }
                st = async {
                    match child.as_mut() {
                        Some(c) => c.wait().await,
                        None => std::future::pending().await,
                    }
                } => {
                    child = None;
                    code = match st {
                        Ok(s) => exec::exit_code(s),
                        Err(e) => {
                            warn!("{}", crate::error_chain::anyhow_line(&e));
                            1
                        }
                    };
                    info!(code, "subprocess exited, walstream shutting down");
                    break;
                }
            };
            match pid {
                Some(pid) => {
                    info!(
                        pid,
                        signal = sig,
                        "signal received, forwarding it to the -exec command"
                    );
                    exec::signal(pid, sig);
                }
                None => {
                    info!("signal received, walstream shutting down");
                    break;
                }
            }
        }
    }
    // Stopping for a replication failure: the app must not run on unreplicated.
    if let Some(mut c) = child.take() {
        info!(pid = c.pid, "stopping the -exec command");
        exec::signal(c.pid, libc::SIGTERM);
        match tokio::time::timeout(std::time::Duration::from_secs(10), c.wait()).await {
            Ok(Ok(s)) => code = exec::exit_code(s),
            _ => {
                exec::signal(c.pid, libc::SIGKILL);
                let _ = c.wait().await;
            }
        }
    }
    control_cancel.cancel();
    for t in control_tasks {
        let _ = t.await;
    }
    info!(timeout = ?shutdown_timeout, "final sync");
    server.shutdown().await;
    if let Some(e) = fatal {
        return Err(e.into());
    }
    info!("walstream shut down");
    Ok(code)
}

// --- control socket and watched directories ---

/// How `register` builds a database from a replica URL: the config's history settings (levels,
/// snapshots, retention), default database options.
fn spec_from_url(cfg: Option<&Config>) -> crate::control::SpecFromUrl {
    let history = cfg.map(|c| c.history());
    Box::new(move |db: &Path, url: &str| {
        let t = Target {
            db: db.to_path_buf(),
            replica: ReplicaConfig {
                url: Some(url.to_string()),
                ..Default::default()
            },
            opts: DbOptions {
                history: history.clone().unwrap_or_default(),
                ..DbOptions::default()
            },
            restore_if_missing: false,
        };
        let store = open_store(&t)?;
        Ok(spec(t, store))
    })
}

/// How a database found in a watched directory is built: through the config's entry that
/// covers its path.
fn spec_for_path(cfg: Config) -> crate::control::dirwatch::SpecForPath {
    Box::new(move |db: &Path| {
        let Some(d) = cfg.find_db(db)? else {
            return Ok(None);
        };
        let t = Target {
            db: d.path,
            replica: d.replica,
            opts: DbOptions {
                history: cfg.history(),
                ..d.options
            },
            restore_if_missing: false,
        };
        let store = open_store(&t)?;
        Ok(Some(spec(t, store)))
    })
}
