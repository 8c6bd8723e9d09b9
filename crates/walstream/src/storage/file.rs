//! A replica in a local directory: `<root>/ltx/<level>/<min>-<max>.ltx`, mtime = LTX timestamp.
use std::path::PathBuf;

/// A directory replica.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}
