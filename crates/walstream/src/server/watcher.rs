//! One inotify instance for every database of the server.
//!
//! Each database's directory is watched once (reference-counted), with a mask that the kernel
//! applies: writes (`IN_MODIFY`), creations, deletions and renames. Opens and
//! reads never generate an event, so walstream's own reads of the WAL cannot wake it. An event
//! for `<db>`, `<db>-wal` or `<db>-shm` (created or deleted only) sets that database's
//! [`Signal`]; an `IN_Q_OVERFLOW` sets every signal's rescan flag.
//!
//! Without inotify (no instance left: 128 per user here, shared by every process), the
//! databases fall back to a poll of the WAL's size and modification time.
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What happened to one database since its task last looked.
#[derive(Debug, Default)]
pub struct Signal {
    notify: Notify,
    wal: AtomicBool,
    db: AtomicBool,
    rescan: AtomicBool,
}

/// The flags of a [`Signal`], taken at once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// The WAL was written, created, deleted or renamed.
    pub wal: bool,
    /// The database file was written (a checkpoint), created, deleted or renamed.
    pub db: bool,
    /// Events were lost (queue overflow) or someone asked for a look.
    pub rescan: bool,
}

impl Events {
    /// Whether anything happened.
    pub fn any(&self) -> bool {
        self.wal || self.db || self.rescan
    }
}

impl Signal {
    /// Wakes the database's task with a rescan.
    pub fn poke(&self) {
        self.rescan.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn set(&self, wal: bool, db: bool) {
        if wal {
            self.wal.store(true, Ordering::SeqCst);
        }
        if db {
            self.db.store(true, Ordering::SeqCst);
        }
        self.notify.notify_one();
    }

    /// Waits for the next event (returns at once if one came since the last [`Signal::take`]).
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Takes and clears the flags.
    pub fn take(&self) -> Events {
        Events {
            wal: self.wal.swap(false, Ordering::SeqCst),
            db: self.db.swap(false, Ordering::SeqCst),
            rescan: self.rescan.swap(false, Ordering::SeqCst),
        }
    }
}

#[derive(Debug)]
struct Dir {
    wd: Option<WatchDescriptor>,
    /// File name -> (signal, is the WAL) for `<db>` and `<db>-wal`.
    files: HashMap<OsString, Vec<(Arc<Signal>, FileKind)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Db,
    Wal,
    Shm,
}

#[derive(Debug, Default)]
struct Registry {
    dirs: HashMap<PathBuf, Dir>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

/// The shared watcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Watcher {
    watches: Option<Arc<Mutex<Watches>>>,
    reg: Arc<Mutex<Registry>>,
}

fn mask() -> WatchMask {
    // Not IN_CLOSE_WRITE: it fires when any descriptor opened for writing closes, written or
    // not, and SQLite opens the database and WAL read-write, so walstream's own connections
    // closing (going cold) would wake it again. IN_MODIFY reports every real write.
    WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

impl Watcher {
    /// Starts the watcher task (on the current runtime) until `cancel`. Without inotify the
    /// watcher is inactive and [`Watcher::add`] returns `false`.
    pub fn start(cancel: CancellationToken) -> Watcher {
        let reg = Arc::new(Mutex::new(Registry::default()));
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                warn!(
                    "file notifications unavailable (inotify: {e}); polling the WAL files instead"
                );
                return Watcher { watches: None, reg };
            }
        };
        let stream = match inotify.into_event_stream(vec![0u8; 64 * 1024]) {
            Ok(s) => s,
            Err(e) => {
                warn!("file notifications unavailable (inotify stream: {e}); polling instead");
                return Watcher { watches: None, reg };
            }
        };
        let watches = Arc::new(Mutex::new(stream.watches()));
        let reg2 = reg.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = stream.next() => ev,
                };
                match ev {
                    Some(Ok(ev)) => dispatch(&reg2, &ev.wd, ev.mask, ev.name.as_deref()),
                    Some(Err(e)) => {
                        warn!("reading file notifications failed: {e}; rescanning every database");
                        rescan_all(&reg2);
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    None => break,
                }
            }
        });
        Watcher {
            watches: Some(watches),
            reg,
        }
    }

    /// Watches `db` (and its `-wal`) for `signal`. Returns whether events will come; `false`
    /// means the caller must poll.
    pub fn add(&self, db: &Path, signal: &Arc<Signal>) -> bool {
        let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else {
            return false;
        };
        let Some(watches) = &self.watches else {
            return false;
        };
        let Ok(mut reg) = self.reg.lock() else {
            return false;
        };
        let reg = &mut *reg;
        let entry = reg.dirs.entry(dir.to_path_buf()).or_insert_with(|| Dir {
            wd: None,
            files: HashMap::new(),
        });
        if entry.wd.is_none() {
            let added = watches.lock().map_err(|_| ()).and_then(|mut w| {
                w.add(dir, mask()).map_err(|e| {
                    warn!(dir = %dir.display(), "cannot watch the database directory ({e}); polling it instead");
                })
            });
            match added {
                Ok(wd) => {
                    reg.by_wd.insert(wd.clone(), dir.to_path_buf());
                    entry.wd = Some(wd);
                }
                Err(()) => return false,
            }
        }
        for (suffix, kind) in [
            ("", FileKind::Db),
            ("-wal", FileKind::Wal),
            ("-shm", FileKind::Shm),
        ] {
            let mut n = name.to_os_string();
            n.push(suffix);
            entry
                .files
                .entry(n)
                .or_default()
                .push((signal.clone(), kind));
        }
        true
    }

    /// Stops watching `db` for `signal`; the directory's watch goes with its last database.
    pub fn remove(&self, db: &Path, signal: &Arc<Signal>) {
        let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else {
            return;
        };
        let Ok(mut reg) = self.reg.lock() else { return };
        let reg = &mut *reg;
        let Some(entry) = reg.dirs.get_mut(dir) else {
            return;
        };
        for suffix in ["", "-wal", "-shm"] {
            let mut n = name.to_os_string();
            n.push(suffix);
            if let Some(v) = entry.files.get_mut(&n) {
                v.retain(|(s, _)| !Arc::ptr_eq(s, signal));
                if v.is_empty() {
                    entry.files.remove(&n);
                }
            }
        }
        if entry.files.is_empty() {
            if let (Some(wd), Some(watches)) = (entry.wd.take(), &self.watches) {
                reg.by_wd.remove(&wd);
                if let Ok(mut w) = watches.lock() {
                    // The directory may be gone already, which removed the watch.
                    let _ = w.remove(wd);
                }
            }
            reg.dirs.remove(dir);
        }
    }

    /// Directories watched (for tests and status).
    pub fn watched_dirs(&self) -> usize {
        self.reg.lock().map(|r| r.by_wd.len()).unwrap_or(0)
    }
}

fn rescan_all(reg: &Mutex<Registry>) {
    let Ok(reg) = reg.lock() else { return };
    for dir in reg.dirs.values() {
        for sigs in dir.files.values() {
            for (s, _) in sigs {
                s.poke();
            }
        }
    }
}

fn dispatch(
    reg: &Mutex<Registry>,
    wd: &WatchDescriptor,
    mask: EventMask,
    name: Option<&std::ffi::OsStr>,
) {
    if mask.contains(EventMask::Q_OVERFLOW) {
        warn!("file notification queue overflowed; rescanning every database");
        rescan_all(reg);
        return;
    }
    let Ok(mut reg) = reg.lock() else { return };
    if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
        // The directory itself went: its databases look again (and find themselves missing).
        if let Some(dir) = reg.by_wd.remove(wd) {
            debug!(dir = %dir.display(), "watched directory removed or moved");
            if let Some(d) = reg.dirs.get_mut(&dir) {
                d.wd = None;
                for sigs in d.files.values() {
                    for (s, _) in sigs {
                        s.poke();
                    }
                }
            }
        }
        return;
    }
    let Some(name) = name else { return };
    let Some(dir) = reg.by_wd.get(wd) else { return };
    let Some(d) = reg.dirs.get(dir) else { return };
    let Some(sigs) = d.files.get(name) else {
        return;
    };
    let content = mask.intersects(EventMask::MODIFY);
    for (s, kind) in sigs {
        match kind {
            FileKind::Wal => s.set(true, false),
            FileKind::Db => s.set(false, true),
            // The -shm is written through mmap (no events); only its creation or removal matters.
            FileKind::Shm if !content => s.set(true, false),
            FileKind::Shm => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    async fn wait(sig: &Signal, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), sig.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn watcher_wakes_on_writes_not_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let wal = dir.path().join("a.db-wal");
        std::fs::write(&db, b"x").unwrap();
        std::fs::write(&wal, b"y").unwrap();
        let cancel = CancellationToken::new();
        let w = Watcher::start(cancel.clone());
        let sig = Arc::new(Signal::default());
        assert!(w.add(&db, &sig));
        // Reads and opens: no event.
        for _ in 0..50 {
            let mut s = String::new();
            std::fs::File::open(&wal)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            std::fs::File::open(&db).unwrap();
        }
        assert!(!wait(&sig, 300).await, "a read woke the watcher");
        assert_eq!(sig.take(), Events::default());
        // A write to the WAL: event.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&wal)
            .unwrap()
            .write_all(b"z")
            .unwrap();
        assert!(wait(&sig, 2000).await);
        let ev = sig.take();
        assert!(ev.wal && !ev.db, "{ev:?}");
        // Another file in the directory: no event for this database.
        std::fs::write(dir.path().join("other.db-wal"), b"q").unwrap();
        assert!(!wait(&sig, 300).await);
        // A write to the database file.
        std::fs::write(&db, b"xx").unwrap();
        assert!(wait(&sig, 2000).await);
        assert!(sig.take().db);
        w.remove(&db, &sig);
        assert_eq!(w.watched_dirs(), 0);
        std::fs::write(&wal, b"after").unwrap();
        assert!(!wait(&sig, 300).await, "removed database still signalled");
        cancel.cancel();
    }

    #[tokio::test]
    async fn watcher_one_watch_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let w = Watcher::start(cancel.clone());
        let sigs: Vec<_> = (0..20).map(|_| Arc::new(Signal::default())).collect();
        for (i, s) in sigs.iter().enumerate() {
            assert!(w.add(&dir.path().join(format!("{i}.db")), s));
        }
        assert_eq!(w.watched_dirs(), 1);
        std::fs::write(dir.path().join("7.db-wal"), b"w").unwrap();
        assert!(wait(&sigs[7], 2000).await);
        assert!(!wait(&sigs[6], 200).await);
        cancel.cancel();
    }
}
