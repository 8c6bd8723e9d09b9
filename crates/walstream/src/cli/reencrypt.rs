//! `walstream reencrypt`: re-encrypts every LTX file of a database's replica to the recipients its
//! config lists now (key rotation), under the same keys.
use std::path::PathBuf;

use anyhow::Context;

use crate::storage::{self, ALL_LEVELS};

/// `reencrypt [-config PATH] DB_PATH`
#[derive(Debug, Clone, clap::Args)]
#[command(
    long_about = "Re-encrypts every LTX file of DB_PATH's replica to the age recipients that \
                  the config lists now, under the same object keys (key rotation). Each file is \
                  read with the configured identities (so list the old keys there as well as \
                  the new ones), re-encrypted in memory and written back whole; plain files of a \
                  replica that was not encrypted before are encrypted. Stop `replicate` for the \
                  database first: a file that retention deletes meanwhile would come back."
)]
pub struct ReencryptArgs {
    /// Config file.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// The database whose replica to re-encrypt, as the config file names it.
    pub path: PathBuf,
}

/// Runs `reencrypt`; returns the number of files written.
pub async fn run(args: ReencryptArgs) -> anyhow::Result<usize> {
    let found =
        super::restore::db_from_config(&args.path, args.config.as_deref(), args.no_expand_env)?;
    let store = found
        .replica
        .open_store()
        .with_context(|| format!("open the replica of {}", found.path.display()))?;
    let replica = store.describe();
    let Some(enc) = store.encryption() else {
        anyhow::bail!(
            "the replica of {} has no age keys in the config (age: {{identities: [...], \
             recipients: [...]}})",
            found.path.display()
        );
    };
    if !enc.has_recipients() || !enc.has_identities() {
        anyhow::bail!(
            "the replica of {}: re-encryption needs age recipients (the new keys) and \
             identities (to read the files as they are)",
            found.path.display()
        );
    }
    let files = storage::list_levels(store.as_ref(), ALL_LEVELS, None)
        .await
        .map_err(|e| {
            let level = e.level;
            anyhow::Error::new(e.source).context(format!("list level {level} of {replica}"))
        })?;
    let work = tempfile::Builder::new()
        .prefix(".walstream-reencrypt-")
        .tempdir_in(found.path.parent().unwrap_or(std::path::Path::new(".")))
        .or_else(|_| tempfile::tempdir())
        .context("create a work directory")?;
    for f in &files {
        let dest = work.path().join(f.file_name());
        // Decrypted as it streams in, encrypted again before it reaches the disk.
        crate::restore::download_sealed(&store, &replica, f, dest.clone(), enc.recipients())
            .await
            .with_context(|| format!("read {replica} level {} {}", f.level, f.file_name()))?;
        let info = store
            .write_ltx_file(f.level, f.min_txid, f.max_txid, &dest, f.created_at)
            .await
            .with_context(|| format!("write {replica} level {} {}", f.level, f.file_name()))?;
        let _ = std::fs::remove_file(&dest);
        println!(
            "re-encrypted level {} {} ({} bytes)",
            f.level,
            f.file_name(),
            info.size
        );
    }
    println!("{} files re-encrypted on {replica}", files.len());
    Ok(files.len())
}
