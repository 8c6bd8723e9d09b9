//! `watch: true` on a `dir:` entry: databases created in the directory (and its subdirectories
//! with `recursive`) while `replicate` runs are picked up, and deleted ones stop being replicated
//! (their replica is kept).
//!
//! One inotify instance watches every such directory for creations, renames, deletions and
//! closes after writing. A file matching the pattern is replicated once it starts with the SQLite
//! header; one that is still empty (SQLite creates the file, then writes its header) is looked at
//! again every 200 ms for a while. A matching file that is not SQLite gets one warning line and is
//! left alone. `<name>-wal`, `-journal` and `-shm` files count as activity of `<name>`.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Control;
use crate::server::DbSpec;

/// One watched `dir:` entry.
#[derive(Debug, Clone)]
pub struct WatchedDir {
    /// Index in `dbs[]` (for messages).
    pub index: usize,
    /// The directory (absolute).
    pub dir: PathBuf,
    /// The file name pattern (Go `filepath.Match`).
    pub pattern: String,
    /// Subdirectories too.
    pub recursive: bool,
    /// Whether a file name matches `pattern` (given by the config, which owns the pattern
    /// syntax; control does not import config).
    pub matches: fn(&str, &str) -> bool,
}

/// Builds the [`DbSpec`] of a database found under a watched directory (`None`: no entry of
/// the config covers it).
pub type SpecForPath = Box<dyn Fn(&Path) -> anyhow::Result<Option<DbSpec>> + Send + Sync>;

/// How long an empty (or partly written) matching file is looked at again.
const PENDING_FOR: Duration = Duration::from_secs(30);
/// How often.
const PENDING_EVERY: Duration = Duration::from_millis(200);

enum Kind {
    Sqlite,
    NotSqlite,
    NotYet,
}

fn classify(path: &Path) -> Kind {
    use std::io::Read;
    const HEADER: &[u8; 16] = b"SQLite format 3\0";
    let Ok(mut f) = std::fs::File::open(path) else {
        return Kind::NotYet;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Kind::NotSqlite;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return Kind::NotYet,
        }
    }
    if buf[..n] != HEADER[..n] {
        Kind::NotSqlite
    } else if n == HEADER.len() {
        Kind::Sqlite
    } else {
        Kind::NotYet
    }
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
}

struct State {
    control: Arc<Control>,
    spec_for: SpecForPath,
    entries: Vec<WatchedDir>,
    watches: inotify::Watches,
    by_wd: HashMap<WatchDescriptor, (PathBuf, usize)>,
    pending: HashMap<PathBuf, (usize, Instant)>,
    warned: HashSet<PathBuf>,
}

impl State {
    fn matches(&self, entry: usize, path: &Path) -> bool {
        let Some(e) = self.entries.get(entry) else {
            return false;
        };
        let Some(name) = path.file_name() else {
            return false;
        };
        (e.matches)(&e.pattern, &name.to_string_lossy())
    }

    fn watch_tree(&mut self, dir: &Path, entry: usize) -> Vec<PathBuf> {
        let recursive = self.entries.get(entry).is_some_and(|e| e.recursive);
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            match self.watches.add(&d, mask()) {
                Ok(wd) => {
                    self.by_wd.insert(wd, (d.clone(), entry));
                }
                Err(e) => {
                    warn!(dir = %d.display(), "dbs[{entry}]: cannot watch the directory for new databases: {e}");
                    continue;
                }
            }
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for ent in rd.flatten() {
                let p = ent.path();
                match ent.file_type() {
                    Ok(t) if t.is_dir() => {
                        if recursive {
                            stack.push(p);
                        }
                    }
                    Ok(_) => files.push(p),
                    Err(_) => {}
                }
            }
        }
        files
    }

    async fn consider(&mut self, entry: usize, path: PathBuf) {
        if !self.matches(entry, &path) || self.control.contains(&path).await {
            self.pending.remove(&path);
            return;
        }
        match classify(&path) {
            Kind::Sqlite => {
                self.pending.remove(&path);
                let spec = match (self.spec_for)(&path) {
                    Ok(Some(s)) => s,
                    Ok(None) => return,
                    Err(e) => {
                        if self.warned.insert(path.clone()) {
                            warn!(db = %path.display(), "dbs[{entry}]: not replicating a new database: {}", crate::error_chain::anyhow_line(&e));
                        }
                        return;
                    }
                };
                match self.control.add(spec).await {
                    Ok(true) => {
                        info!(db = %path.display(), "dbs[{entry}]: new database in a watched directory")
                    }
                    Ok(false) => {}
                    Err(e) => warn!(db = %path.display(), "dbs[{entry}]: {e}"),
                }
            }
            Kind::NotSqlite => {
                self.pending.remove(&path);
                if self.warned.insert(path.clone()) {
                    let pattern = self
                        .entries
                        .get(entry)
                        .map(|e| e.pattern.clone())
                        .unwrap_or_default();
                    warn!(
                        "dbs[{entry}]: {} matches the pattern {pattern:?} but is not a SQLite database; not replicating it",
                        path.display()
                    );
                }
            }
            Kind::NotYet => {
                self.pending
                    .entry(path)
                    .or_insert((entry, Instant::now() + PENDING_FOR));
            }
        }
    }

    async fn gone(&mut self, path: &Path) {
        self.pending.remove(path);
        self.warned.remove(path);
        if self.control.contains(path).await {
            info!(db = %path.display(), "database deleted from a watched directory; stopping its replication (the replica is kept)");
            let control = self.control.clone();
            let path = path.to_path_buf();
            tokio::spawn(async move {
                control.unregister(&path).await;
            });
        }
    }
}

/// The database a file stands for: itself, or `<name>` for `<name>-wal`, `-journal`, `-shm`.
fn base_of(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    for suffix in ["-wal", "-journal", "-shm"] {
        if let Some(b) = s.strip_suffix(suffix) {
            return PathBuf::from(b);
        }
    }
    path.to_path_buf()
}

/// Starts watching `entries`; databases found are added to `control` through `spec_for`.
/// Files present now that are not replicated yet are looked at once at start.
pub fn start(
    control: Arc<Control>,
    entries: Vec<WatchedDir>,
    spec_for: SpecForPath,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let inotify = Inotify::init()
        .map_err(|e| anyhow::anyhow!("watch directories for new databases: inotify: {e}"))?;
    let mut stream = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .map_err(|e| anyhow::anyhow!("watch directories for new databases: {e}"))?;
    let watches = stream.watches();
    let mut st = State {
        control,
        spec_for,
        entries: entries.clone(),
        watches,
        by_wd: HashMap::new(),
        pending: HashMap::new(),
        warned: HashSet::new(),
    };
    Ok(tokio::spawn(async move {
        for (i, e) in entries.iter().enumerate() {
            let files = st.watch_tree(&e.dir, i);
            for f in files {
                st.consider(i, f).await;
            }
            info!(dir = %e.dir.display(), pattern = %e.pattern, recursive = e.recursive, "dbs[{}]: watching for new databases", e.index);
        }
        loop {
            let next_pending = st.pending.values().map(|(_, _)| ()).next();
            let tick = async {
                match next_pending {
                    Some(()) => tokio::time::sleep(PENDING_EVERY).await,
                    None => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick => None,
                ev = stream.next() => match ev {
                    Some(ev) => Some(ev),
                    None => break,
                },
            };
            match ev {
                None => {
                    let now = Instant::now();
                    st.pending.retain(|_, (_, until)| *until > now);
                    let due: Vec<(PathBuf, usize)> = st
                        .pending
                        .iter()
                        .map(|(p, (i, _))| (p.clone(), *i))
                        .collect();
                    for (p, i) in due {
                        st.consider(i, p).await;
                    }
                }
                Some(Err(e)) => {
                    warn!("watching directories for new databases: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(Ok(ev)) => {
                    if ev.mask.contains(EventMask::Q_OVERFLOW) {
                        warn!(
                            "directory watch overflowed; looking at every watched directory again"
                        );
                        let dirs: Vec<(PathBuf, usize)> = st.by_wd.values().cloned().collect();
                        for (d, i) in dirs {
                            if let Ok(rd) = std::fs::read_dir(&d) {
                                for ent in rd.flatten() {
                                    st.consider(i, ent.path()).await;
                                }
                            }
                        }
                        continue;
                    }
                    if ev.mask.contains(EventMask::IGNORED) {
                        st.by_wd.remove(&ev.wd);
                        continue;
                    }
                    let (Some(name), Some((dir, entry))) = (ev.name, st.by_wd.get(&ev.wd).cloned())
                    else {
                        continue;
                    };
                    let path = dir.join(&name);
                    if ev.mask.contains(EventMask::ISDIR) {
                        if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                            && st.entries.get(entry).is_some_and(|e| e.recursive)
                        {
                            debug!(dir = %path.display(), "new subdirectory in a watched directory");
                            for f in st.watch_tree(&path, entry) {
                                st.consider(entry, f).await;
                            }
                        }
                        continue;
                    }
                    if ev
                        .mask
                        .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                    {
                        if base_of(&path) == path {
                            st.gone(&path).await;
                        }
                        continue;
                    }
                    st.consider(entry, base_of(&path)).await;
                }
            }
        }
    }))
}
