//! Parsing and checking: two typed passes over the text (the file's own keys, then the top-level
//! replica defaults), unknown keys found with `serde_ignored`, Litestream's rules, and warnings
//! for what walstream does not act on.
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::{self, error_pos, KeyPath, Pos};
use super::replica::{KNOWN_TYPES, SUPPORTED_TYPES};
use super::{dir, Config, ConfigError, LoadedConfig, ReplicaConfig, Warning, WarningKind};

/// Top-level keys of a replica config that are not replica defaults at the top level.
const REPLICA_ONLY: &[&str] = &["type", "name", "url", "path"];

/// Keys Litestream 0.3 read and 0.5 ignores, with where they lived.
const OLD_KEYS: &[&str] = &[
    "retention",
    "retention-check-interval",
    "snapshot-interval",
    "max-checkpoint-page-count",
    "monitor-delay-interval",
    "shadow-retention-n",
];

/// Every key Litestream 0.5 knows, at any level, for "did you mean" hints.
const ALL_KEYS: &[&str] = &[
    "addr",
    "socket",
    "enabled",
    "permissions",
    "levels",
    "interval",
    "snapshot",
    "retention",
    "validation",
    "l0-retention",
    "l0-retention-check-interval",
    "verify-compaction",
    "heartbeat-url",
    "heartbeat-interval",
    "exec",
    "logging",
    "level",
    "stderr",
    "mcp-addr",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    "max-local-backlog",
    "dbs",
    "path",
    "dir",
    "pattern",
    "recursive",
    "watch",
    "meta-path",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
    "restore-if-db-not-exists",
    "replica",
    "replicas",
    "type",
    "name",
    "url",
    "sync-interval",
    "validation-interval",
    "auto-recover",
    "bucket",
    "region",
    "endpoint",
    "force-path-style",
    "access-key-id",
    "secret-access-key",
    "sign-payload",
    "require-content-md5",
    "skip-verify",
    "storage-class",
    "part-size",
    "concurrency",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "concurrent-writes",
    "host-key",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
    "age",
    "identities",
    "recipients",
    // walstream extensions.
    "lease",
    "lease-ttl",
];

/// Replica keys that only some types read: (key, types).
const TYPE_KEYS: &[(&str, &[&str])] = &[
    ("bucket", &["s3", "gs", "gcs", "abs", "oss", "nats"]),
    ("region", &["s3", "oss"]),
    ("endpoint", &["s3", "abs", "oss"]),
    ("force-path-style", &["s3"]),
    ("access-key-id", &["s3", "oss"]),
    ("secret-access-key", &["s3", "oss"]),
    ("sign-payload", &["s3"]),
    ("require-content-md5", &["s3"]),
    ("skip-verify", &["s3"]),
    ("storage-class", &["s3"]),
    ("part-size", &["s3", "oss"]),
    ("concurrency", &["s3", "oss"]),
    ("sse-customer-algorithm", &["s3"]),
    ("sse-customer-key", &["s3"]),
    ("sse-customer-key-path", &["s3"]),
    ("sse-kms-key-id", &["s3"]),
    ("account-name", &["abs"]),
    ("account-key", &["abs"]),
    ("sas-token", &["abs"]),
    ("host", &["sftp"]),
    ("user", &["sftp"]),
    ("password", &["sftp", "nats"]),
    ("key-path", &["sftp"]),
    ("concurrent-writes", &["sftp"]),
    ("host-key", &["sftp"]),
    ("webdav-url", &["webdav"]),
    ("webdav-username", &["webdav"]),
    ("webdav-password", &["webdav"]),
    ("jwt", &["nats"]),
    ("seed", &["nats"]),
    ("creds", &["nats"]),
    ("nkey", &["nats"]),
    ("username", &["nats"]),
    ("token", &["nats"]),
    ("tls", &["nats"]),
    ("root-cas", &["nats"]),
    ("client-cert", &["nats"]),
    ("client-key", &["nats"]),
    ("max-reconnects", &["nats"]),
    ("reconnect-wait", &["nats"]),
    ("timeout", &["nats"]),
];

/// Checking state: the text (for positions), the file, and the warnings so far.
struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
    warnings: Vec<Warning>,
}

impl Ctx<'_> {
    fn pos(&self, key: &KeyPath) -> Option<Pos> {
        locate::locate(self.text, key)
    }

    fn warn(&mut self, key: KeyPath, kind: WarningKind, message: impl Into<String>) {
        let pos = self.pos(&key);
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            pos,
            key,
            kind,
            message: message.into(),
        });
    }

    fn unsupported(&mut self, key: KeyPath, what: &str) {
        self.warn(
            key,
            WarningKind::Unsupported,
            format!("{what} not supported by walstream yet; ignored"),
        );
    }

    fn invalid(&self, key: &KeyPath, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.to_path_buf(),
            pos: self.pos(key),
            message: if key.0.is_empty() {
                message.to_string()
            } else {
                format!("{key}: {message}")
            },
        }
    }
}

/// A serde_norway error as a [`ConfigError::Parse`], with the position moved out of the text.
fn parse_error(file: &Path, e: &serde_norway::Error) -> ConfigError {
    let pos = error_pos(e);
    let mut message = e.to_string();
    if let Some(p) = pos {
        let suffix = format!(" at line {} column {}", p.line, p.column);
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    ConfigError::Parse {
        path: file.to_path_buf(),
        pos,
        message,
    }
}

/// Parses, checks and merges: [`Config::parse`].
pub(super) fn parse(text: &str, file: &Path) -> Result<LoadedConfig, ConfigError> {
    let value: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| parse_error(file, &e))?;
    if value.is_null() {
        return Ok(LoadedConfig {
            config: Config {
                file: file.to_path_buf(),
                ..Config::default()
            },
            warnings: Vec::new(),
        });
    }
    if !value.is_mapping() {
        return Err(ConfigError::Parse {
            path: file.to_path_buf(),
            pos: Some(Pos { line: 1, column: 1 }),
            message: "the config must be a mapping of keys (addr, dbs, ...)".to_string(),
        });
    }

    let mut ignored_top: Vec<KeyPath> = Vec::new();
    let mut config: Config =
        serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |p| {
            ignored_top.push(KeyPath::from(&p))
        })
        .map_err(|e| parse_error(file, &e))?;
    let mut ignored_defaults: Vec<KeyPath> = Vec::new();
    let mut defaults: ReplicaConfig =
        serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |p| {
            ignored_defaults.push(KeyPath::from(&p))
        })
        .map_err(|e| parse_error(file, &e))?;
    config.file = file.to_path_buf();

    let mut cx = Ctx {
        text,
        file,
        warnings: Vec::new(),
    };

    // Unknown keys: a top-level key is unknown when neither pass read it (or it is one of the
    // replica-only keys, which are no defaults); deeper keys are reported by the pass that read
    // their parent.
    let mut unknown: Vec<KeyPath> = Vec::new();
    for p in &ignored_top {
        let top = p.first_key().unwrap_or("");
        if p.0.len() > 1 || REPLICA_ONLY.contains(&top) || ignored_defaults.iter().any(|q| q == p) {
            unknown.push(p.clone());
        }
    }
    unknown.extend(ignored_defaults.iter().filter(|p| p.0.len() > 1).cloned());
    for p in unknown {
        let message = unknown_message(&p);
        cx.warn(p, WarningKind::UnknownKey, message);
    }
    // The replica-only keys at the top level are no defaults (Litestream ignores them there).
    defaults.kind = None;
    defaults.name = None;
    defaults.url = None;
    defaults.path = None;

    check_top(&mut cx, &config, &defaults)?;
    for i in 0..config.dbs.len() {
        check_db(&mut cx, &mut config, &defaults, i)?;
    }
    check_duplicates(&cx, &config)?;
    config.defaults = defaults;

    let mut warnings = cx.warnings;
    warnings.sort_by_key(|w| w.pos.map(|p| (p.line, p.column)));
    Ok(LoadedConfig { config, warnings })
}

/// The message for an unknown key: why it may be there, and what was perhaps meant.
fn unknown_message(p: &KeyPath) -> String {
    let last = match p.0.last() {
        Some(locate::Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    let mut m = String::from("unknown key, ignored (Litestream ignores it silently)");
    if p.0.len() == 1 && REPLICA_ONLY.contains(&last) {
        m = format!(
            "`{last}` is not a replica default at the top level; ignored (Litestream ignores it \
             silently): put it under dbs[].replica"
        );
    } else if OLD_KEYS.contains(&last) {
        m.push_str("; it is a Litestream 0.3 key that 0.5 no longer reads");
    } else if let Some(s) = suggest(last) {
        m.push_str(&format!("; did you mean `{s}`?"));
    }
    m
}

/// The known key closest to `k`, if it is a likely typo (edit distance 1 or 2).
fn suggest(k: &str) -> Option<&'static str> {
    let k = k.to_ascii_lowercase().replace('_', "-");
    ALL_KEYS
        .iter()
        .map(|c| (edit_distance(&k, c), *c))
        .filter(|(d, _)| *d <= 2.min(k.len() / 3 + 1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Litestream's checks of the top-level keys, and warnings for those walstream ignores.
fn check_top(cx: &mut Ctx<'_>, c: &Config, defaults: &ReplicaConfig) -> Result<(), ConfigError> {
    let k = |s: &str| KeyPath::keys(&[s]);
    let positive = |cx: &Ctx<'_>, key: KeyPath, v: Option<Duration>, what: &str| {
        if v == Some(Duration::ZERO) {
            return Err(cx.invalid(&key, format!("{what} must be greater than 0 (got 0s)")));
        }
        Ok(())
    };
    if let Some(s) = &c.snapshot {
        positive(
            cx,
            KeyPath::keys(&["snapshot", "interval"]),
            s.interval,
            "snapshot interval",
        )?;
        positive(
            cx,
            KeyPath::keys(&["snapshot", "retention"]),
            s.retention,
            "snapshot retention",
        )?;
    }
    positive(cx, k("l0-retention"), c.l0_retention, "l0 retention")?;
    positive(
        cx,
        k("l0-retention-check-interval"),
        c.l0_retention_check_interval,
        "l0 retention check interval",
    )?;
    positive(
        cx,
        k("shutdown-sync-interval"),
        c.shutdown_sync_interval,
        "shutdown sync interval",
    )?;
    if let Some(levels) = &c.levels {
        for (i, l) in levels.iter().enumerate() {
            if l.interval.unwrap_or_default().is_zero() {
                return Err(cx.invalid(
                    &k("levels").index(i).key("interval"),
                    "compaction interval must be greater than 0",
                ));
            }
        }
    }
    if let Some(u) = c.heartbeat_url.as_deref().filter(|u| !u.is_empty()) {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(cx.invalid(
                &k("heartbeat-url"),
                "heartbeat URL must be a valid HTTP or HTTPS URL",
            ));
        }
    }
    if let Some(i) = c.heartbeat_interval {
        if i < Duration::from_secs(60) {
            return Err(cx.invalid(
                &k("heartbeat-interval"),
                format!(
                    "heartbeat interval must be at least 1 minute (got {})",
                    super::fmt_duration(i)
                ),
            ));
        }
    }
    if defaults.sync_interval == Some(Duration::ZERO) {
        return Err(cx.invalid(&k("sync-interval"), "sync interval must be greater than 0"));
    }
    if let Some(age) = &defaults.age {
        if let Err(m) = crate::age_keys::check_inline(age) {
            return Err(cx.invalid(&k("age"), m));
        }
    }

    // What walstream reads but does not act on.
    if c.mcp_addr.as_deref().is_some_and(|a| !a.is_empty()) {
        cx.unsupported(k("mcp-addr"), "the MCP server is");
    }
    // levels, snapshot, l0-retention, l0-retention-check-interval and retention take effect
    // (crate::history); validation and verify-compaction do not yet.
    for (key, present) in [
        ("validation", c.validation.is_some()),
        ("verify-compaction", c.verify_compaction == Some(true)),
    ] {
        if present {
            cx.unsupported(k(key), "compaction verification is");
        }
    }
    // shutdown-sync-timeout bounds the final sync (ServerOptions::shutdown_timeout); the
    // retry interval inside it is walstream's own backoff.
    if c.shutdown_sync_interval.is_some() {
        cx.unsupported(
            k("shutdown-sync-interval"),
            "a fixed retry interval for the final sync is (walstream backs off within \
             shutdown-sync-timeout)",
        );
    }
    if let Some(l) = &c.logging {
        if let Some(level) = l.level.as_deref().filter(|v| !v.is_empty()) {
            let known = ["trace", "debug", "info", "warn", "warning", "error"];
            if !known.contains(&level.to_ascii_lowercase().as_str()) {
                cx.warn(
                    KeyPath::keys(&["logging", "level"]),
                    WarningKind::NoEffect,
                    format!("unknown log level {level:?}; using info (as Litestream does)"),
                );
            }
        }
        if let Some(t) = l.kind.as_deref().filter(|t| {
            !t.is_empty() && !["text", "json"].contains(&t.to_ascii_lowercase().as_str())
        }) {
            cx.warn(
                KeyPath::keys(&["logging", "type"]),
                WarningKind::NoEffect,
                format!("unknown log type {t:?}; using text (as Litestream does)"),
            );
        }
    }
    replica_warnings(cx, &KeyPath::default(), defaults, None);
    Ok(())
}

/// Warnings about a replica's keys (`at` is its path; `kind` its type, or `None` for the
/// top-level defaults, which apply to every type).
fn replica_warnings(cx: &mut Ctx<'_>, at: &KeyPath, r: &ReplicaConfig, kind: Option<&str>) {
    if r.validation_interval.is_some() {
        cx.unsupported(at.key("validation-interval"), "replica validation is");
    }
    if r.auto_recover.is_some() {
        cx.unsupported(at.key("auto-recover"), "auto-recover is");
    }
    let Some(kind) = kind else { return };
    if r.name.is_some() {
        cx.warn(
            at.key("name"),
            WarningKind::NoEffect,
            "replica names are deprecated and have no effect in Litestream 0.5",
        );
    }
    if KNOWN_TYPES.contains(&kind) && !SUPPORTED_TYPES.contains(&kind) {
        let key = if r.url.is_some() { "url" } else { "type" };
        cx.unsupported(at.key(key), &format!("{kind} replicas are"));
    }
    // Keys set on this replica that its type does not read.
    let set = set_keys(r);
    for (key, types) in TYPE_KEYS {
        if set.contains(key) && !types.contains(&kind) {
            cx.warn(
                at.key(key),
                WarningKind::NoEffect,
                format!("`{key}` does not apply to {kind} replicas; ignored"),
            );
        }
    }
}

/// The type-specific keys set on a replica (not counting merged defaults).
fn set_keys(r: &ReplicaConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |k: &'static str, set: bool| {
        if set {
            v.push(k);
        }
    };
    add("bucket", r.bucket.is_some());
    add("region", r.region.is_some());
    add("endpoint", r.endpoint.is_some());
    add("force-path-style", r.force_path_style.is_some());
    add("access-key-id", r.access_key_id.is_some());
    add("secret-access-key", r.secret_access_key.is_some());
    add("sign-payload", r.sign_payload.is_some());
    add("require-content-md5", r.require_content_md5.is_some());
    add("skip-verify", r.skip_verify.is_some());
    add("storage-class", r.storage_class.is_some());
    add("part-size", r.part_size.is_some());
    add("concurrency", r.concurrency.is_some());
    add("sse-customer-algorithm", r.sse_customer_algorithm.is_some());
    add("sse-customer-key", r.sse_customer_key.is_some());
    add("sse-customer-key-path", r.sse_customer_key_path.is_some());
    add("sse-kms-key-id", r.sse_kms_key_id.is_some());
    add("account-name", r.account_name.is_some());
    add("account-key", r.account_key.is_some());
    add("sas-token", r.sas_token.is_some());
    add("host", r.host.is_some());
    add("user", r.user.is_some());
    add("password", r.password.is_some());
    add("key-path", r.key_path.is_some());
    add("concurrent-writes", r.concurrent_writes.is_some());
    add("host-key", r.host_key.is_some());
    add("webdav-url", r.webdav_url.is_some());
    add("webdav-username", r.webdav_username.is_some());
    add("webdav-password", r.webdav_password.is_some());
    add("jwt", r.jwt.is_some());
    add("seed", r.seed.is_some());
    add("creds", r.creds.is_some());
    add("nkey", r.nkey.is_some());
    add("username", r.username.is_some());
    add("token", r.token.is_some());
    add("tls", r.tls.is_some());
    add("root-cas", r.root_cas.is_some());
    add("client-cert", r.client_cert.is_some());
    add("client-key", r.client_key.is_some());
    add("max-reconnects", r.max_reconnects.is_some());
    add("reconnect-wait", r.reconnect_wait.is_some());
    add("timeout", r.timeout.is_some());
    v
}

/// Litestream's checks of one `dbs[]` entry, its replica merged with the defaults, and warnings.
fn check_db(
    cx: &mut Ctx<'_>,
    c: &mut Config,
    defaults: &ReplicaConfig,
    i: usize,
) -> Result<(), ConfigError> {
    let at = KeyPath::keys(&["dbs"]).index(i);
    let db = &mut c.dbs[i];
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    match (has(&db.path), has(&db.dir)) {
        (true, true) => return Err(cx.invalid(&at, "cannot specify both 'path' and 'dir'")),
        (false, false) => return Err(cx.invalid(&at, "must specify either 'path' or 'dir'")),
        (false, true) if !has(&db.pattern) => {
            return Err(cx.invalid(&at.key("dir"), "'pattern' is required when using 'dir'"))
        }
        (true, false) if db.watch == Some(true) => {
            return Err(cx.invalid(
                &at.key("watch"),
                "'watch' can only be enabled with a directory",
            ))
        }
        _ => {}
    }
    if let Some(p) = db.pattern.as_deref().filter(|_| has(&db.dir)) {
        if let Err(e) = dir::check_pattern(p) {
            return Err(cx.invalid(&at.key("pattern"), e));
        }
    }
    if has(&db.path) {
        if let Err(e) = db.db_path() {
            return Err(cx.invalid(&at.key("path"), e));
        }
    }
    let replica_at = match (&db.replica, &db.replicas) {
        (None, None) => return Err(cx.invalid(&at, "must specify replica for database")),
        (Some(_), Some(_)) => {
            return Err(cx.invalid(
                &at.key("replicas"),
                "cannot specify 'replica' and 'replicas' on a database",
            ))
        }
        (None, Some(list)) if list.len() > 1 => {
            return Err(cx.invalid(
                &at.key("replicas"),
                "multiple replicas on a single database are no longer supported (walstream, \
                 like Litestream 0.5, replicates each database to one replica)",
            ))
        }
        (None, Some(list)) if list.is_empty() => {
            return Err(cx.invalid(&at, "must specify replica for database"))
        }
        (None, Some(_)) => at.key("replicas").index(0),
        (Some(_), None) => at.key("replica"),
    };
    let raw = match (&db.replica, &db.replicas) {
        (Some(r), _) => r.clone(),
        (None, Some(list)) => list.first().cloned().unwrap_or_default(),
        (None, None) => ReplicaConfig::default(),
    };
    let mut merged = raw.clone();
    merged.merge_defaults(defaults);
    let kind = merged.replica_type();
    replica_warnings(cx, &replica_at, &raw, Some(&kind));
    // Which keys the defaults supplied, for messages.
    let raw_keys = set_keys(&raw);
    let from_defaults: Vec<&str> = set_keys(&merged)
        .into_iter()
        .filter(|k| !raw_keys.contains(k))
        .chain(
            (raw.sync_interval.is_none() && merged.sync_interval.is_some())
                .then_some("sync-interval"),
        )
        .collect();
    if let Err((key, message)) = merged.check(&from_defaults) {
        let key_at = if from_defaults.contains(&key) {
            KeyPath::keys(&[key])
        } else if locate::locate(cx.text, &replica_at.key(key)).is_some() {
            replica_at.key(key)
        } else {
            replica_at.clone()
        };
        return Err(cx.invalid(&key_at, message));
    }
    if let Some(r) = db.replica.as_mut() {
        *r = merged;
    } else if let Some(first) = db.replicas.as_mut().and_then(|l| l.first_mut()) {
        *first = merged;
    }
    Ok(())
}

/// Litestream refuses a database listed twice; walstream also refuses two entries sharing a meta
/// directory, which would corrupt each other's state.
fn check_duplicates(cx: &Ctx<'_>, c: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<(PathBuf, usize)> = Vec::new();
    for (i, db) in c.dbs.iter().enumerate() {
        if db.path.is_none() {
            continue;
        }
        let Ok(p) = db.db_path() else { continue };
        if let Some((_, first)) = seen.iter().find(|(q, _)| *q == p) {
            return Err(cx.invalid(
                &KeyPath::keys(&["dbs"]).index(i).key("path"),
                format!(
                    "duplicate path {:?} (already used by dbs[{first}]); each database can be \
                     listed only once",
                    p.display().to_string()
                ),
            ));
        }
        seen.push((p, i));
    }
    let mut metas: Vec<(PathBuf, usize)> = Vec::new();
    for (i, db) in c.dbs.iter().enumerate() {
        let Some(Ok(m)) = db.meta_path.as_deref().map(super::expand_path) else {
            continue;
        };
        if let Some((_, first)) = metas.iter().find(|(q, _)| *q == m) {
            return Err(cx.invalid(
                &KeyPath::keys(&["dbs"]).index(i).key("meta-path"),
                format!(
                    "meta-path {:?} is also used by dbs[{first}]; two databases sharing a meta \
                     directory would corrupt each other's replication state",
                    m.display().to_string()
                ),
            ));
        }
        metas.push((m, i));
    }
    Ok(())
}
