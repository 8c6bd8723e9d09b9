//! The SQLite connections walstream holds on a live database: WAL mode, helper tables, the guard
//! read transaction, checkpoints. This module does not decide *when*; `db` does.
//!
//! The guard: while walstream holds a read transaction, SQLite cannot restart the WAL past it, so
//! frames it has not copied stay in the file. Litestream holds one old read transaction all the
//! time, which makes every blocking app checkpoint wait out its busy timeout. walstream instead
//! renews the guard to the newest snapshot after every sync (two connections, the new one begun
//! before the old one ends, so there is never a gap), and lets go entirely only while a blocking
//! checkpointer holds the write lock and every committed frame is copied (see `db`).
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Errors from the database connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// SQLite returned an error.
    #[error("database {path}: {context}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// What walstream was doing.
        context: &'static str,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database could not be put in WAL mode.
    #[error("database {path}: cannot enable WAL mode (journal_mode is {mode:?})")]
    NotWal {
        /// The database.
        path: PathBuf,
        /// The mode SQLite reported.
        mode: String,
    },
}

/// SQLite checkpoint modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Copy what can be copied without waiting.
    Passive,
    /// Wait for readers, copy everything.
    Full,
    /// Like FULL, then make the next writer restart the WAL.
    Restart,
    /// Like RESTART, then truncate the WAL to zero bytes.
    Truncate,
}

impl CheckpointMode {
    /// The keyword in `PRAGMA wal_checkpoint(...)`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Full => "FULL",
            CheckpointMode::Restart => "RESTART",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

/// Result of `PRAGMA wal_checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointResult {
    /// 1 if it could not finish because of other connections.
    pub busy: i64,
    /// Frames in the WAL.
    pub log: i64,
    /// Frames copied to the database.
    pub checkpointed: i64,
}

/// The pair of connections walstream keeps on a database.
pub struct DbConn {
    path: PathBuf,
    conns: [Connection; 2],
    /// Index of the connection holding the guard read transaction, if any.
    guard: Option<usize>,
    /// Index of the connection holding the write lock, if any.
    writer: Option<usize>,
    switched_to_wal: bool,
}

const SQLITE_FCNTL_PERSIST_WAL: i32 = 10;

fn sqlite_err(path: &Path, context: &'static str) -> impl FnOnce(rusqlite::Error) -> ConnError {
    let path = path.to_path_buf();
    move |source| ConnError::Sqlite {
        path,
        context,
        source,
    }
}

impl DbConn {
    /// Opens the database (which must exist), switches it to WAL mode if needed, disables
    /// auto-checkpoints on walstream's connections, keeps the WAL file when they close, and creates
    /// Litestream's helper tables.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<DbConn, ConnError> {
        let open = || -> Result<Connection, ConnError> {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(sqlite_err(path, "open"))?;
            c.busy_timeout(busy_timeout)
                .map_err(sqlite_err(path, "busy_timeout"))?;
            Ok(c)
        };
        let a = open()?;
        let mode: String = a
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sqlite_err(path, "read journal_mode"))?;
        let mut switched_to_wal = false;
        if !mode.eq_ignore_ascii_case("wal") {
            let new: String = a
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(sqlite_err(path, "set journal_mode=WAL"))?;
            if !new.eq_ignore_ascii_case("wal") {
                return Err(ConnError::NotWal {
                    path: path.to_path_buf(),
                    mode: new,
                });
            }
            switched_to_wal = true;
        }
        let b = open()?;
        for c in [&a, &b] {
            c.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(sqlite_err(path, "wal_autocheckpoint"))?;
            // Closing walstream's connections (when a database goes cold) must not write: as the
            // last connection, SQLite would otherwise checkpoint on close, which writes the
            // database file and wakes the watcher again.
            c.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(sqlite_err(path, "no checkpoint on close"))?;
            let mut on: i32 = 1;
            // SAFETY: the handle is valid for the connection's lifetime; the argument is an int
            // as SQLITE_FCNTL_PERSIST_WAL requires.
            let rc = unsafe {
                rusqlite::ffi::sqlite3_file_control(
                    c.handle(),
                    c"main".as_ptr(),
                    SQLITE_FCNTL_PERSIST_WAL,
                    (&mut on as *mut i32).cast(),
                )
            };
            if rc != rusqlite::ffi::SQLITE_OK {
                return Err(ConnError::Sqlite {
                    path: path.to_path_buf(),
                    context: "persist WAL",
                    source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), None),
                });
            }
        }
        a.execute_batch(
            "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);
             CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
        )
        .map_err(sqlite_err(path, "create helper tables"))?;
        Ok(DbConn {
            path: path.to_path_buf(),
            conns: [a, b],
            guard: None,
            writer: None,
            switched_to_wal,
        })
    }

    /// Whether `open` switched the database from another journal mode to WAL.
    pub fn switched_to_wal(&self) -> bool {
        self.switched_to_wal
    }

    /// The database page size.
    pub fn page_size(&self) -> Result<u32, ConnError> {
        self.conns[0]
            .query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0))
            .map_err(sqlite_err(&self.path, "read page_size"))
    }

    fn begin_read(&self, i: usize) -> Result<(), ConnError> {
        let c = &self.conns[i];
        c.execute_batch("BEGIN DEFERRED")
            .map_err(sqlite_err(&self.path, "begin guard"))?;
        // The first read takes the WAL read lock at the newest snapshot.
        let r = c.query_row("SELECT COUNT(1) FROM _litestream_seq", [], |r| {
            r.get::<_, i64>(0)
        });
        if let Err(e) = r {
            let _ = c.execute_batch("ROLLBACK");
            return Err(sqlite_err(&self.path, "take guard read lock")(e));
        }
        Ok(())
    }

    fn end_read(&self, i: usize) {
        // A failed rollback means no transaction was open; nothing else to do.
        let _ = self.conns[i].execute_batch("ROLLBACK");
    }

    /// Moves the guard read transaction to the newest snapshot without ever dropping it: the new
    /// one begins on the other connection before the old one ends. Takes it if not held.
    pub fn renew_guard(&mut self) -> Result<(), ConnError> {
        let next = match self.guard {
            Some(i) => 1 - i,
            None => 0,
        };
        self.begin_read(next)?;
        if let Some(old) = self.guard.replace(next) {
            self.end_read(old);
        }
        Ok(())
    }

    /// Drops the guard entirely. The WAL may then be restarted by anyone.
    pub fn release_guard(&mut self) {
        if let Some(i) = self.guard.take() {
            self.end_read(i);
        }
    }

    /// Whether the guard is held.
    pub fn has_guard(&self) -> bool {
        self.guard.is_some()
    }

    /// Runs a checkpoint on the connection not holding the guard. With the guard at the newest
    /// snapshot, PASSIVE copies every frame; RESTART and TRUNCATE need the guard released first.
    pub fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointResult, ConnError> {
        let i = match self.guard {
            Some(g) => 1 - g,
            None => 0,
        };
        let sql = format!("PRAGMA wal_checkpoint({})", mode.as_str());
        self.conns[i]
            .query_row(&sql, [], |r| {
                Ok(CheckpointResult {
                    busy: r.get(0)?,
                    log: r.get(1)?,
                    checkpointed: r.get(2)?,
                })
            })
            .map_err(sqlite_err(&self.path, "checkpoint"))
    }

    fn spare(&self) -> usize {
        match self.guard {
            Some(g) => 1 - g,
            None => 0,
        }
    }

    /// Takes the write lock on the connection not holding the guard (`BEGIN IMMEDIATE`). Until
    /// [`DbConn::commit_writer`], nobody else can commit.
    pub fn begin_immediate_spare(&mut self) -> Result<(), ConnError> {
        let i = self.spare();
        self.conns[i]
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_err(&self.path, "take write lock"))?;
        self.writer = Some(i);
        Ok(())
    }

    /// Ends the guard read transaction while the writer connection keeps the write lock.
    pub fn release_guard_keep_writer(&mut self) {
        if let Some(g) = self.guard {
            if Some(g) != self.writer {
                self.end_read(g);
            }
            self.guard = None;
        }
    }

    /// Bumps `_litestream_seq` inside the writer transaction; SQLite restarts the WAL on this
    /// write when every frame has been checkpointed and no reader is using the WAL.
    pub fn bump_seq_in_writer(&mut self) -> Result<(), ConnError> {
        let Some(i) = self.writer else { return Ok(()) };
        self.conns[i]
            .execute(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
                [],
            )
            .map(|_| ())
            .map_err(sqlite_err(&self.path, "bump _litestream_seq"))
    }

    /// Commits the writer transaction (or does nothing if none).
    pub fn commit_writer(&mut self) -> Result<(), ConnError> {
        let Some(i) = self.writer.take() else {
            return Ok(());
        };
        let r = self.conns[i]
            .execute_batch("COMMIT")
            .map_err(sqlite_err(&self.path, "commit"));
        if r.is_err() {
            let _ = self.conns[i].execute_batch("ROLLBACK");
        }
        r
    }

    /// Bumps `_litestream_seq` so that the WAL gets a new frame (and, after a restart, a header).
    pub fn touch_seq(&self) -> Result<(), ConnError> {
        let i = match self.guard {
            Some(g) => 1 - g,
            None => 0,
        };
        self.conns[i]
            .execute(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
                [],
            )
            .map(|_| ())
            .map_err(sqlite_err(&self.path, "bump _litestream_seq"))
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let _ = self.commit_writer();
        self.release_guard();
    }
}
