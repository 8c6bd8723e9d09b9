//! Looks at the WAL-index (`-shm`) locks other processes hold, without taking any.
//!
//! SQLite's unix VFS takes POSIX byte-range locks on the `-shm` file at offset 120 + n, where n is
//! 0 for the writer lock, 1 for the checkpointer lock, 2 for recovery and 3..8 for the read marks
//! (`wal.c`, `UNIX_SHM_BASE`). `F_GETLK` reports a conflicting lock held by another process (never
//! this process's own), with its pid.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

const SHM_LOCK_BASE: i64 = 120;
const WRITE_LOCK: i64 = 0;
const CKPT_LOCK: i64 = 1;

/// A handle on a database's `-shm` file for lock probing.
#[derive(Debug)]
pub struct ShmProbe {
    file: File,
}

impl ShmProbe {
    /// Opens `<db>-shm`. `None` if it does not exist (nobody has the database open in WAL mode).
    pub fn open(db_path: &Path) -> Option<ShmProbe> {
        let mut p = db_path.as_os_str().to_owned();
        p.push("-shm");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .ok()?;
        Some(ShmProbe { file })
    }

    /// The pid of another process holding lock `n`, if any.
    fn holder(&self, n: i64) -> Option<i32> {
        // SAFETY: flock is plain old data; fcntl(F_GETLK) only writes into it.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = (SHM_LOCK_BASE + n) as libc::off_t;
        fl.l_len = 1;
        // SAFETY: valid fd and a valid pointer to a flock struct.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLK, &mut fl) };
        if rc != 0 || fl.l_type == libc::F_UNLCK as libc::c_short {
            return None;
        }
        Some(fl.l_pid)
    }

    /// Whether another process is running a blocking checkpoint (FULL, RESTART or TRUNCATE): it
    /// holds both the checkpointer lock and the writer lock. While it does, nobody can commit.
    pub fn blocking_checkpointer(&self) -> Option<i32> {
        let ckpt = self.holder(CKPT_LOCK)?;
        let write = self.holder(WRITE_LOCK)?;
        (ckpt == write).then_some(ckpt)
    }

    /// The WAL-index header's view of the WAL: (salt1, salt2, mxFrame), the number of frames
    /// SQLite considers committed. Read without locks: the two copies of the header must agree
    /// (SQLite writes them in turn), else `None`.
    pub fn committed_frames(&self) -> Option<(u32, u32, u32)> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 96];
        self.file.read_exact_at(&mut b, 0).ok()?;
        if b[..48] != b[48..96] || b[12] == 0 {
            return None;
        }
        // Native byte order, as SQLite stores the wal-index in memory.
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // aSalt is copied from the WAL header bytes as they are (big-endian on disk).
        let salt = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some((salt(32), salt(36), w(16)))
    }

    /// The WAL-index's checkpoint progress: (salt1, salt2, nBackfill), the frames of that
    /// generation already copied into the database file. `None` when unreadable or when the two
    /// header copies disagree (a writer is updating them).
    pub fn backfilled(&self) -> Option<(u32, u32, u32)> {
        use std::os::unix::fs::FileExt;
        let (s1, s2, _) = self.committed_frames()?;
        let mut b = [0u8; 4];
        // WalCkptInfo follows the two 48-byte header copies; nBackfill is its first field.
        self.file.read_exact_at(&mut b, 96).ok()?;
        let n = u32::from_ne_bytes(b);
        // The header must not have changed while nBackfill was read.
        let (t1, t2, _) = self.committed_frames()?;
        ((s1, s2) == (t1, t2)).then_some((s1, s2, n))
    }

    /// The pid of another process holding the writer lock: a transaction is being written (or
    /// a blocking checkpoint runs).
    pub fn writer(&self) -> Option<i32> {
        self.holder(WRITE_LOCK)
    }

    /// Whether another process holds the checkpointer lock.
    pub fn checkpoint_in_progress(&self) -> bool {
        self.holder(CKPT_LOCK).is_some()
    }
}
