//! age encryption of a replica's LTX objects: a store decorator that encrypts each LTX file whole
//! (its bytes as they are, after LZ4 page compression) to the configured recipients on write, and
//! decrypts on read, under the same object keys. Replication, compaction, restore, follow mode
//! and retention see plain LTX files and work unchanged.
//!
//! - The format is age's (binary, X25519 recipients), so `age -d -i key.txt OBJECT` (or `rage`)
//!   opens an object by hand.
//! - Reads are ranged: age's STREAM payload is cut into 64 KiB plaintext chunks of 64 KiB + 16
//!   bytes on the store, so a read from plaintext offset `o` fetches the header (a small ranged
//!   read from 0) and then the object from the start of `o`'s chunk. age's own
//!   [`age::stream::StreamReader`] does the decryption and the seek.
//! - A reader tells an encrypted object from a plain one by its first bytes (the age header line
//!   `age-encryption.org/v1` against the LTX magic): plain objects (written before encryption was
//!   turned on) pass through as they are.
//! - Listed sizes ([`LtxFileInfo::size`]) are the stored (encrypted) sizes; the plaintext size is
//!   known only after a read, so downloads check completeness through age (its last chunk is
//!   marked) instead of by size.
//! - A source file that is already an age file is uploaded as it is: compaction writes its output
//!   encrypted ([`Encryption::seal`]), so that no plaintext reaches its work directory.
//! - The lease and the objects outside the LTX levels (`list_objects`, `open_object`: Litestream
//!   0.3 backups, which carry their own encryption) are not touched.
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use ltx::TxId;

use super::{
    ByteStream, DynStore, LeaseObject, LeaseVersion, LtxFileInfo, ObjectInfo, ReplicaStore,
    StorageError,
};
use crate::age_keys::{self, AgeKeys, Identity, AGE_MAGIC};

/// Plaintext bytes per age STREAM chunk.
pub const CHUNK_SIZE: u64 = 64 * 1024;
/// Stored bytes per full chunk (plaintext and a 16-byte tag).
pub const ENCRYPTED_CHUNK_SIZE: u64 = CHUNK_SIZE + 16;
/// The payload nonce that follows the header.
const NONCE_SIZE: usize = 16;
/// An age header longer than this is refused (ours are a few hundred bytes).
const MAX_HEADER: usize = 64 * 1024;
/// How many uploads' sizes are remembered (see [`Encryption::stored_len`]).
const MAX_REMEMBERED: usize = 4096;

/// (level, min, max) of an LTX file.
type FileKey = (u8, TxId, TxId);

/// The keys of an encrypted replica, shared by the decorator and the code that must keep its
/// own temp files encrypted (compaction).
pub struct Encryption {
    recipients: Vec<age::x25519::Recipient>,
    identities: Vec<Identity>,
    /// (level, min, max) -> (plaintext length, stored length) of files uploaded by this process.
    written: Mutex<HashMap<FileKey, (u64, u64)>>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("recipients", &self.recipients.len())
            .field(
                "identities",
                &format_args!("{} (REDACTED)", self.identities.len()),
            )
            .finish()
    }
}

impl Encryption {
    /// From parsed keys.
    pub fn new(keys: AgeKeys) -> Encryption {
        Encryption {
            recipients: keys.recipients,
            identities: keys.identities,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any recipient is configured (needed to write).
    pub fn has_recipients(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// The recipients new objects are encrypted to.
    pub fn recipients(&self) -> &[age::x25519::Recipient] {
        &self.recipients
    }

    /// Whether any identity is configured (needed to read).
    pub fn has_identities(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Wraps `w` in an age writer to the configured recipients; `finish()` it when done.
    pub fn seal<W: Write>(&self, w: W) -> io::Result<age::stream::StreamWriter<W>> {
        seal_to(&self.recipients, w)
    }

    /// Opens the age file `r` with the configured identities.
    pub fn open<R: Read>(
        &self,
        r: R,
    ) -> Result<age::stream::StreamReader<R>, age_keys::DecryptError> {
        age_keys::decrypt(r, &self.identities)
    }

    /// The stored length of the LTX file (level, min, max) if this process uploaded it from a
    /// plaintext of `plain_len` bytes, else `None`: compaction uses its local L0 copy only then.
    pub fn stored_len(&self, level: u8, min: TxId, max: TxId, plain_len: u64) -> Option<u64> {
        let map = self.written.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(level, min, max))
            .filter(|(p, _)| *p == plain_len)
            .map(|(_, s)| *s)
    }

    fn remember(&self, level: u8, min: TxId, max: TxId, plain: u64, stored: u64) {
        let mut map = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        map.insert((level, min, max), (plain, stored));
    }
}

/// Wraps `w` in an age writer to `recipients`.
pub fn seal_to<W: Write>(
    recipients: &[age::x25519::Recipient],
    w: W,
) -> io::Result<age::stream::StreamWriter<W>> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| io::Error::other(format!("age: {e}")))?;
    enc.wrap_output(w)
}

/// Encrypts the file `src` into `dst` (created owner-only) to `recipients`; returns the
/// plaintext length. Blocking.
pub fn seal_file(
    recipients: &[age::x25519::Recipient],
    src: &Path,
    dst: &mut std::fs::File,
) -> io::Result<u64> {
    let mut input = std::fs::File::open(src)?;
    let mut w = seal_to(
        recipients,
        io::BufWriter::with_capacity(256 * 1024, &mut *dst),
    )?;
    let n = io::copy(&mut input, &mut w)?;
    let mut out = w.finish()?;
    out.flush()?;
    drop(out);
    dst.sync_all()?;
    Ok(n)
}

/// The decorator. See the module documentation.
#[derive(Debug)]
pub struct EncryptedStore {
    inner: DynStore,
    enc: Arc<Encryption>,
}

impl EncryptedStore {
    /// Encrypts and decrypts the LTX files of `inner` with `keys`.
    pub fn wrap(inner: DynStore, keys: AgeKeys) -> DynStore {
        Arc::new(EncryptedStore {
            inner,
            enc: Arc::new(Encryption::new(keys)),
        })
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        format!(
            "{}/{level}/{}",
            self.inner.describe(),
            ltx::file_name(min, max)
        )
    }

    fn permanent(&self, key: String, message: String) -> StorageError {
        StorageError::Permanent {
            backend: self.inner.kind(),
            key,
            message,
        }
    }
}

/// Whether `head` starts with the age header line (`false` while too short to tell).
fn starts_age(head: &[u8]) -> bool {
    head.starts_with(AGE_MAGIC)
}

/// Whether `head` can still turn out to be an age file (it is a prefix of the magic, or starts
/// with it).
fn may_be_age(head: &[u8]) -> bool {
    let n = head.len().min(AGE_MAGIC.len());
    head[..n] == AGE_MAGIC[..n]
}

/// The length of the age header plus the payload nonce at the start of `buf`, when `buf` holds
/// them whole. The header ends with the MAC line `--- <mac>\n`; stanza bodies are base64 and
/// stanza lines start with `-> `, so the first line starting with `--- ` is the MAC line.
fn prefix_len(buf: &[u8]) -> Option<usize> {
    let mac = buf.windows(5).position(|w| w == b"\n--- ")?;
    let end = buf[mac + 1..].iter().position(|&b| b == b'\n')? + mac + 2;
    (buf.len() >= end + NONCE_SIZE).then_some(end + NONCE_SIZE)
}

/// The reader age's [`age::stream::StreamReader`] reads from: the header and nonce (`prefix`,
/// at offset 0) and the stored bytes from offset `base` on, fed into a queue as they arrive.
/// The decrypting stream calls the age reader only when a whole encrypted chunk is queued (or the
/// object has ended), so an empty queue means the end of the object.
struct Feed {
    prefix: Vec<u8>,
    base: u64,
    pos: u64,
    queue: Arc<Mutex<BytesMut>>,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let plen = self.prefix.len() as u64;
        if self.pos < plen {
            let from = self.pos as usize;
            let n = buf.len().min(self.prefix.len() - from);
            buf[..n].copy_from_slice(&self.prefix[from..from + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos < self.base {
            return Err(io::Error::other(
                "age reader: read outside the fetched range",
            ));
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = buf.len().min(q.len());
        q.copy_to_slice(&mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Feed {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(0) => Ok(self.pos),
            SeekFrom::Start(p) if p <= self.prefix.len() as u64 || p == self.base => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::other(format!(
                "age reader: seek to {pos:?} outside the fetched range"
            ))),
        }
    }
}

/// Collects the stored bytes at the start of `stream` until it is clear whether they are an age
/// file and, if so, until its header and nonce are whole. Returns the bytes read (possibly more
/// than the prefix), whether the stream ended, and the prefix length (`None`: not age).
async fn read_prefix(
    stream: &mut ByteStream,
    key: &str,
    backend: &'static str,
) -> Result<(BytesMut, bool, Option<usize>), StorageError> {
    let mut buf = BytesMut::new();
    loop {
        if !may_be_age(&buf) {
            return Ok((buf, false, None));
        }
        if starts_age(&buf) {
            if let Some(n) = prefix_len(&buf) {
                return Ok((buf, false, Some(n)));
            }
            if buf.len() > MAX_HEADER {
                return Err(StorageError::Permanent {
                    backend,
                    key: key.to_string(),
                    message: "invalid age file: no end of header in the first 64 KiB".to_string(),
                });
            }
        }
        match stream.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => {
                if starts_age(&buf) {
                    return Err(StorageError::Permanent {
                        backend,
                        key: key.to_string(),
                        message: "invalid age file: truncated in its header".to_string(),
                    });
                }
                return Ok((buf, true, None));
            }
        }
    }
}

enum Phase {
    /// Waiting for a whole chunk before the first read (and the seek, when `seek_to` is set).
    Start {
        seek_to: Option<u64>,
        discard: bool,
    },
    Reading,
    Done,
}

/// The state of one decrypting read.
struct Decrypting {
    key: String,
    backend: &'static str,
    inner: ByteStream,
    inner_done: bool,
    queue: Arc<Mutex<BytesMut>>,
    reader: age::stream::StreamReader<Feed>,
    phase: Phase,
    /// Plaintext position of the next byte the reader yields.
    pos: u64,
}

impl Decrypting {
    fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn damaged(&self, e: io::Error) -> StorageError {
        StorageError::Permanent {
            backend: self.backend,
            key: self.key.clone(),
            message: format!(
                "age decryption failed at plaintext offset {}: {e} (the object is damaged, \
                 truncated or not the one encrypted)",
                self.pos
            ),
        }
    }

    /// Whether the next read of the age reader may pull a new chunk and the queue does not hold
    /// a whole one yet.
    fn needs_input(&self) -> bool {
        let pulls = match self.phase {
            Phase::Start { .. } => true,
            _ => self.pos.is_multiple_of(CHUNK_SIZE),
        };
        pulls && !self.inner_done && (self.queued() as u64) < ENCRYPTED_CHUNK_SIZE
    }

    async fn next(&mut self) -> Option<Result<Bytes, StorageError>> {
        loop {
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            if self.needs_input() {
                match self.inner.next().await {
                    Some(Ok(b)) => {
                        self.queue
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&b);
                    }
                    Some(Err(e)) => {
                        // A cut download: the caller resumes at the plaintext offset it has.
                        self.phase = Phase::Done;
                        return Some(Err(e));
                    }
                    None => self.inner_done = true,
                }
                continue;
            }
            if let Phase::Start { seek_to, discard } = self.phase {
                self.phase = Phase::Reading;
                if let Some(t) = seek_to {
                    if let Err(e) = self.reader.seek(SeekFrom::Start(t)) {
                        self.phase = Phase::Done;
                        return Some(Err(self.damaged(e)));
                    }
                    self.pos = t;
                    if discard {
                        let mut one = [0u8; 1];
                        match self.reader.read(&mut one) {
                            Ok(1) => self.pos += 1,
                            Ok(_) => {
                                self.phase = Phase::Done;
                                return None;
                            }
                            Err(e) => {
                                self.phase = Phase::Done;
                                return Some(Err(self.damaged(e)));
                            }
                        }
                    }
                }
                continue;
            }
            let mut buf = vec![0u8; CHUNK_SIZE as usize];
            match self.reader.read(&mut buf) {
                Ok(0) => {
                    self.phase = Phase::Done;
                    return None;
                }
                Ok(n) => {
                    buf.truncate(n);
                    self.pos += n as u64;
                    return Some(Ok(Bytes::from(buf)));
                }
                Err(e) => {
                    self.phase = Phase::Done;
                    return Some(Err(self.damaged(e)));
                }
            }
        }
    }
}

/// A stream of `first` and then the rest of `rest`.
fn chain(first: BytesMut, rest: ByteStream) -> ByteStream {
    let head = futures::stream::iter((!first.is_empty()).then(|| Ok(first.freeze())));
    Box::pin(head.chain(rest))
}

#[async_trait]
impl ReplicaStore for EncryptedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        self.inner.ltx_files(level).await
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let key = self.key(level, min, max);
        let backend = self.inner.kind();
        let mut head = self.inner.open_ltx_file(level, min, max, 0).await?;
        let (got, ended, prefix) = read_prefix(&mut head, &key, backend).await?;
        let Some(plen) = prefix else {
            // A plain LTX file (written before encryption was turned on).
            if offset == 0 {
                return Ok(if ended {
                    chain(got, Box::pin(futures::stream::empty()))
                } else {
                    chain(got, head)
                });
            }
            drop(head);
            return self.inner.open_ltx_file(level, min, max, offset).await;
        };
        if !self.enc.has_identities() {
            return Err(self.permanent(
                key,
                "the object is age-encrypted and no age identity is configured (age: \
                 identities: [...] on the replica)"
                    .to_string(),
            ));
        }
        let queue = Arc::new(Mutex::new(BytesMut::new()));
        let (prefix_bytes, base, inner, seek_to, discard) = if offset == 0 {
            // One read: the header and what follows come from the same stream.
            queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&got[plen..]);
            (got[..plen].to_vec(), plen as u64, head, None, false)
        } else {
            drop(head);
            // Seek to a byte inside a chunk (age's reader wants one): the one before `offset`
            // when `offset` starts a chunk, dropped after.
            let (target, discard) = if offset.is_multiple_of(CHUNK_SIZE) {
                (offset - 1, true)
            } else {
                (offset, false)
            };
            let base = plen as u64 + (target / CHUNK_SIZE) * ENCRYPTED_CHUNK_SIZE;
            let rest = self.inner.open_ltx_file(level, min, max, base).await?;
            (got[..plen].to_vec(), base, rest, Some(target), discard)
        };
        let feed = Feed {
            prefix: prefix_bytes,
            base,
            pos: 0,
            queue: queue.clone(),
        };
        let reader = self.enc.open(feed).map_err(|e| {
            self.permanent(
                key.clone(),
                match e {
                    age_keys::DecryptError::NoIdentity => "the object is age-encrypted and no \
                         age identity is configured (age: identities: [...] on the replica)"
                        .to_string(),
                    other => other.to_string(),
                },
            )
        })?;
        let state = Decrypting {
            key,
            backend,
            inner,
            inner_done: false,
            queue,
            reader,
            phase: Phase::Start { seek_to, discard },
            pos: 0,
        };
        Ok(Box::pin(futures::stream::unfold(state, |mut s| async {
            s.next().await.map(|item| (item, s))
        })))
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let io_err = |path: &Path, source| StorageError::Io {
            backend: "age",
            path: path.to_path_buf(),
            source,
        };
        let mut head = [0u8; 22];
        let n = {
            let mut f = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..]).map_err(|e| io_err(src, e))? {
                    0 => break,
                    k => n += k,
                }
            }
            n
        };
        if starts_age(&head[..n]) {
            // Already encrypted (compaction output, re-encryption): as it is.
            return self
                .inner
                .write_ltx_file(level, min, max, src, created_at)
                .await;
        }
        if !self.enc.has_recipients() {
            return Err(self.permanent(
                self.key(level, min, max),
                "no age recipient is configured to encrypt it (age: recipients: [...])".to_string(),
            ));
        }
        let dir = src.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".walstream-age-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| io_err(dir, e))?;
        let (enc, from, tmp) = (self.enc.clone(), src.to_path_buf(), tmp);
        let (tmp, plain) = tokio::task::spawn_blocking(move || {
            let mut tmp = tmp;
            let n = seal_file(&enc.recipients, &from, tmp.as_file_mut());
            (tmp, n)
        })
        .await
        .map_err(|e| io_err(src, io::Error::other(e)))?;
        let plain = plain.map_err(|e| io_err(src, e))?;
        let info = self
            .inner
            .write_ltx_file(level, min, max, tmp.path(), created_at)
            .await?;
        self.enc.remember(level, min, max, plain, info.size);
        Ok(info)
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        self.inner.delete_ltx_files(files).await
    }
    fn supports_lease(&self) -> bool {
        self.inner.supports_lease()
    }
    async fn read_lease(&self) -> Result<Option<LeaseObject>, StorageError> {
        self.inner.read_lease().await
    }
    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        self.inner.write_lease(data, expected).await
    }
    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        self.inner.remove_stale_uploads().await
    }
    async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.inner.list_objects(prefix).await
    }
    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        self.inner.open_object(key, offset).await
    }
    fn ltx_layout(&self) -> crate::storage::LtxLayout {
        self.inner.ltx_layout()
    }
    async fn list_databases(&self, recursive: bool) -> Result<Vec<String>, StorageError> {
        self.inner.list_databases(recursive).await
    }
    fn encryption(&self) -> Option<Arc<Encryption>> {
        Some(self.enc.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;
    use std::str::FromStr;

    fn keys(id: &age::x25519::Identity, with_identity: bool) -> AgeKeys {
        AgeKeys {
            identities: if with_identity {
                vec![Box::new(id.clone())]
            } else {
                Vec::new()
            },
            recipients: vec![id.to_public()],
        }
    }

    async fn read_all(s: &DynStore, offset: u64) -> Result<Vec<u8>, StorageError> {
        let mut st = s.open_ltx_file(0, TxId(1), TxId(2), offset).await?;
        let mut out = Vec::new();
        while let Some(b) = st.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    fn plaintext(len: usize) -> Vec<u8> {
        let mut v = b"LTX1".to_vec();
        let mut x = 7u64;
        while v.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.push((x >> 33) as u8);
        }
        v.truncate(len);
        v
    }

    #[tokio::test]
    async fn encrypts_on_write_and_reads_every_range() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let inner: DynStore = Arc::new(FileStore::new(dir.path().join("r")));
        let store = EncryptedStore::wrap(inner.clone(), keys(&id, true));
        let c = CHUNK_SIZE as usize;
        for len in [0usize, 5, c, 2 * c, 3 * c + 123] {
            let plain = plaintext(len.max(4));
            let src = dir.path().join("src.ltx");
            std::fs::write(&src, &plain).unwrap();
            let info = store
                .write_ltx_file(0, TxId(1), TxId(2), &src, SystemTime::now())
                .await
                .unwrap();
            // On the store: an age file, none of the plaintext.
            let raw = read_all(&inner, 0).await.unwrap();
            assert!(raw.starts_with(AGE_MAGIC));
            assert_eq!(raw.len() as u64, info.size);
            if plain.len() >= 64 {
                assert!(!raw.windows(32).any(|w| w == &plain[32..64]));
            }
            assert!(
                store
                    .encryption()
                    .unwrap()
                    .stored_len(0, TxId(1), TxId(2), plain.len() as u64)
                    == Some(info.size)
            );
            // age's own reader opens it: the format is age's.
            let mut dec = Vec::new();
            age_keys::decrypt(raw.as_slice(), &[Box::new(id.clone()) as Identity])
                .unwrap()
                .read_to_end(&mut dec)
                .unwrap();
            assert_eq!(dec, plain);
            let n = plain.len() as u64;
            let mut offsets = vec![0, 1, n / 2, n.saturating_sub(1), n];
            for k in 1..=3u64 {
                for o in [k * CHUNK_SIZE - 1, k * CHUNK_SIZE, k * CHUNK_SIZE + 1] {
                    if o <= n {
                        offsets.push(o);
                    }
                }
            }
            for o in offsets {
                let got = read_all(&store, o).await.unwrap();
                assert_eq!(got, &plain[o as usize..], "len {len} offset {o}");
            }
        }
    }

    #[tokio::test]
    async fn plain_objects_pass_through_and_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let inner: DynStore = Arc::new(FileStore::new(dir.path().join("r")));
        let plain = plaintext(200_000);
        let src = dir.path().join("src.ltx");
        std::fs::write(&src, &plain).unwrap();
        inner
            .write_ltx_file(0, TxId(1), TxId(2), &src, SystemTime::now())
            .await
            .unwrap();
        let store = EncryptedStore::wrap(inner.clone(), keys(&id, true));
        assert_eq!(read_all(&store, 0).await.unwrap(), plain);
        assert_eq!(read_all(&store, 70_000).await.unwrap(), &plain[70_000..]);

        store
            .write_ltx_file(0, TxId(1), TxId(2), &src, SystemTime::now())
            .await
            .unwrap();
        // No identity: named, clear.
        let no_id = EncryptedStore::wrap(inner.clone(), keys(&id, false));
        let e = read_all(&no_id, 0).await.unwrap_err().to_string();
        assert!(
            e.contains("age-encrypted and no age identity")
                && e.contains(&ltx::file_name(TxId(1), TxId(2))),
            "{e}"
        );
        // A wrong identity.
        let other = age::x25519::Identity::generate();
        let wrong = EncryptedStore::wrap(
            inner.clone(),
            AgeKeys {
                identities: vec![Box::new(other)],
                recipients: vec![],
            },
        );
        let e = read_all(&wrong, 0).await.unwrap_err().to_string();
        assert!(e.contains("none of the 1 configured age identities"), "{e}");
        // A flipped byte in the second chunk: the read fails naming the object.
        let path = dir
            .path()
            .join("r/ltx/0")
            .join(ltx::file_name(TxId(1), TxId(2)));
        let mut raw = std::fs::read(&path).unwrap();
        let i = raw.len() - 70_000;
        raw[i] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let e = read_all(&store, 0).await.unwrap_err();
        assert!(!e.is_retryable());
        let e = e.to_string();
        assert!(
            e.contains("age decryption failed") && e.contains(&ltx::file_name(TxId(1), TxId(2))),
            "{e}"
        );
        // Writing without a recipient is refused.
        let ro = EncryptedStore::wrap(
            inner,
            AgeKeys {
                identities: vec![Box::new(
                    age::x25519::Identity::from_str(&{
                        use age::secrecy::ExposeSecret;
                        id.to_string().expose_secret().to_string()
                    })
                    .unwrap(),
                )],
                recipients: vec![],
            },
        );
        let e = ro
            .write_ltx_file(0, TxId(3), TxId(3), &src, SystemTime::now())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no age recipient"), "{e}");
    }
}
