//! Restore: plan a chain of LTX files from a replica's listing, then stream them through the
//! compactor into `<out>.tmp`, fsync, rename, fsync the directory.
