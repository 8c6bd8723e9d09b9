//! The local meta directory, `.<db>-litestream` beside the database (Litestream's layout), which
//! holds the L0 files not yet known to be safe on the replica and the newest L0, whose header
//! records the WAL position. Files are written atomically: temp file, fsync, rename, fsync dir.
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ltx::{Header, TxId};

/// Errors in the meta directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// File system error.
    #[error("meta directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file there is not a valid LTX file.
    #[error("meta directory {path}: {source}")]
    Ltx {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: ltx::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MetaError {
    let path = path.to_path_buf();
    move |source| MetaError::Io { path, source }
}

/// Prefix of the work directories compaction creates in the meta directory's root.
pub const COMPACT_WORKDIR_PREFIX: &str = ".walstream-compact-";

/// One LTX file in the meta directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLtx {
    /// Level directory it sits in.
    pub level: u8,
    /// MinTXID.
    pub min_txid: TxId,
    /// MaxTXID.
    pub max_txid: TxId,
    /// Path.
    pub path: PathBuf,
}

/// The meta directory of one database.
#[derive(Debug, Clone)]
pub struct MetaDir {
    root: PathBuf,
}

impl MetaDir {
    /// `.<name>-litestream` beside `db_path`, or `meta_path` if configured.
    pub fn for_db(db_path: &Path, meta_path: Option<&Path>) -> MetaDir {
        if let Some(p) = meta_path {
            return MetaDir {
                root: p.to_path_buf(),
            };
        }
        let dir = db_path.parent().unwrap_or(Path::new("."));
        let name = db_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        MetaDir {
            root: dir.join(format!(".{name}-litestream")),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ltx/<level>`.
    pub fn level_dir(&self, level: u8) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// LTX files of a level, sorted by (min, max). A missing directory is empty.
    pub fn list(&self, level: u8) -> Result<Vec<LocalLtx>, MetaError> {
        let dir = self.level_dir(level);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err(&dir))?;
            let name = ent.file_name();
            let Some((min, max)) = ltx::parse_file_name(&name.to_string_lossy()) else {
                continue;
            };
            out.push(LocalLtx {
                level,
                min_txid: min,
                max_txid: max,
                path: ent.path(),
            });
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    /// Reads the header of a local LTX file.
    pub fn read_header(path: &Path) -> Result<Header, MetaError> {
        let mut f = File::open(path).map_err(io_err(path))?;
        let mut b = [0u8; ltx::HEADER_SIZE];
        f.read_exact(&mut b).map_err(io_err(path))?;
        Header::from_bytes(&b).map_err(|source| MetaError::Ltx {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Creates the directories with owner-only permissions.
    pub fn ensure_level(&self, level: u8) -> Result<PathBuf, MetaError> {
        let dir = self.level_dir(level);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Writes an LTX file atomically into `level`: `fill` gets a buffered writer on a temp file
    /// (mode 0600); then fsync, rename to `<min>-<max>.ltx`, fsync the directory.
    pub fn write_atomic<E>(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
    ) -> Result<PathBuf, E>
    where
        E: From<MetaError>,
    {
        let dir = self.ensure_level(level)?;
        let name = ltx::file_name(min, max);
        let tmp = dir.join(format!("{name}.tmp"));
        let dst = dir.join(&name);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let mut w = BufWriter::with_capacity(256 * 1024, f);
        let r = fill(&mut w);
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let done = (|| -> Result<(), MetaError> {
            w.flush().map_err(io_err(&tmp))?;
            let f = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io_err(&tmp))?;
            fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))?;
            Ok(())
        })();
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(dst)
    }

    /// Removes temp files a crash may have left, and compaction work directories
    /// ([`COMPACT_WORKDIR_PREFIX`]) a process killed mid-compaction left in the root.
    pub fn remove_temp_files(&self) {
        if let Ok(rd) = fs::read_dir(&self.root) {
            for ent in rd.flatten() {
                if ent
                    .file_name()
                    .to_string_lossy()
                    .starts_with(COMPACT_WORKDIR_PREFIX)
                {
                    let _ = fs::remove_dir_all(ent.path());
                }
            }
        }
        for level in 0..=9u8 {
            let Ok(rd) = fs::read_dir(self.level_dir(level)) else {
                continue;
            };
            for ent in rd.flatten() {
                if ent.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_file(ent.path());
                }
            }
        }
    }

    /// Deletes every LTX file of every level (used when the replica is ahead of local state).
    pub fn reset(&self) -> Result<(), MetaError> {
        for level in 0..=9u8 {
            for f in self.list(level)? {
                fs::remove_file(&f.path).map_err(io_err(&f.path))?;
            }
        }
        Ok(())
    }
}
