//! age keys from a replica's `age: {identities: [...], recipients: [...]}` config, as Litestream
//! 0.3 reads them, and decryption of age files with them.
//!
//! - An identity entry is an X25519 secret key (`AGE-SECRET-KEY-1…`), as in Litestream 0.3. As a
//!   walstream extension an entry may instead be the path of an age identity file (as written by
//!   `age-keygen`: comments and one or more keys).
//! - A recipient entry is an X25519 public key (`age1…`) or, as an extension, the path of a
//!   recipients file (one key per line, `#` comments).
//! - `${VAR}` expansion is the config loader's business and has happened before.
//!
//! Errors name the entry (`age.identities[1]`) and, for files, the path, but never the text of a
//! secret key.
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// `age:` (Litestream 0.3 encryption): keys, or paths of key files. Read by the config, used here
/// (the config depends on this module, not the other way round).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AgeConfig {
    /// Private keys.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Public keys.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// The header line every age file starts with (binary format).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The first line of an ASCII-armored age file.
const ARMOR_MAGIC: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// Largest key file read (an identity file is a few hundred bytes).
const MAX_KEY_FILE: u64 = 1 << 20;

/// An identity usable to decrypt.
pub type Identity = Box<dyn age::Identity + Send + Sync>;

/// Parsed `age:` config.
#[derive(Default)]
pub struct AgeKeys {
    /// Every identity, in config order (an identity file may add several).
    pub identities: Vec<Identity>,
    /// Every recipient, in config order.
    pub recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeKeys")
            .field(
                "identities",
                &format_args!("{} (REDACTED)", self.identities.len()),
            )
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

/// A key entry that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgeKeyError {
    /// The entry is neither a key nor a readable file.
    #[error("{entry}: {message}")]
    Invalid {
        /// `age.identities[0]`, `age.recipients[2]`.
        entry: String,
        /// What is wrong (never the key text).
        message: String,
    },
    /// A key file could not be read.
    #[error("{entry}: {}", .path.display())]
    Io {
        /// The entry.
        entry: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AgeKeys {
    /// Whether no key at all is configured.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.recipients.is_empty()
    }
}

/// Parses every entry of `cfg`. Fails on the first entry that is not a key and not a file of keys.
pub fn parse(cfg: &AgeConfig) -> Result<AgeKeys, AgeKeyError> {
    let mut keys = AgeKeys::default();
    for (i, entry) in cfg.identities.iter().enumerate() {
        keys.identities
            .extend(parse_identity(entry, &format!("age.identities[{i}]"))?);
    }
    for (i, entry) in cfg.recipients.iter().enumerate() {
        keys.recipients
            .extend(parse_recipient(entry, &format!("age.recipients[{i}]"))?);
    }
    Ok(keys)
}

/// Checks the entries of `cfg` that are keys themselves (paths are read when used), for the
/// config loader. `Err` names the entry.
pub fn check_inline(cfg: &AgeConfig) -> Result<(), String> {
    for (i, entry) in cfg.identities.iter().enumerate() {
        let e = entry.trim();
        if looks_like_identity(e) && age::x25519::Identity::from_str(e).is_err() {
            return Err(format!(
                "age.identities[{i}]: not a valid age identity (AGE-SECRET-KEY-1...)"
            ));
        }
        if e.is_empty() {
            return Err(format!("age.identities[{i}]: empty"));
        }
    }
    for (i, entry) in cfg.recipients.iter().enumerate() {
        let e = entry.trim();
        if looks_like_recipient(e) && age::x25519::Recipient::from_str(e).is_err() {
            return Err(format!(
                "age.recipients[{i}]: {e:?} is not a valid age recipient (age1...)"
            ));
        }
        if e.is_empty() {
            return Err(format!("age.recipients[{i}]: empty"));
        }
    }
    Ok(())
}

fn looks_like_identity(s: &str) -> bool {
    s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-")
}

fn looks_like_recipient(s: &str) -> bool {
    s.starts_with("age1") && !s.contains('/')
}

fn parse_identity(entry: &str, name: &str) -> Result<Vec<Identity>, AgeKeyError> {
    let e = entry.trim();
    let invalid = |message: String| AgeKeyError::Invalid {
        entry: name.to_string(),
        message,
    };
    if e.is_empty() {
        return Err(invalid("empty".to_string()));
    }
    if looks_like_identity(e) {
        return match age::x25519::Identity::from_str(e) {
            Ok(id) => Ok(vec![Box::new(id)]),
            Err(_) => Err(invalid(
                "not a valid age identity (AGE-SECRET-KEY-1...)".to_string(),
            )),
        };
    }
    let path = crate::paths::expand_path(e).unwrap_or_else(|_| PathBuf::from(e));
    let data = read_key_file(&path, name)?;
    // The parser's own errors may quote the offending line: say only which file it was.
    let not_identities = || {
        invalid(format!(
            "{}: not an age identity file (expected AGE-SECRET-KEY-1... lines)",
            path.display()
        ))
    };
    let file =
        age::IdentityFile::from_buffer(std::io::Cursor::new(data)).map_err(|_| not_identities())?;
    let ids = file.into_identities().map_err(|_| not_identities())?;
    if ids.is_empty() {
        return Err(not_identities());
    }
    Ok(ids)
}

fn parse_recipient(entry: &str, name: &str) -> Result<Vec<age::x25519::Recipient>, AgeKeyError> {
    let e = entry.trim();
    let invalid = |message: String| AgeKeyError::Invalid {
        entry: name.to_string(),
        message,
    };
    if e.is_empty() {
        return Err(invalid("empty".to_string()));
    }
    if looks_like_recipient(e) {
        return age::x25519::Recipient::from_str(e)
            .map(|r| vec![r])
            .map_err(|_| invalid(format!("{e:?} is not a valid age recipient (age1...)")));
    }
    let path = crate::paths::expand_path(e).unwrap_or_else(|_| PathBuf::from(e));
    let data = read_key_file(&path, name)?;
    let mut out = Vec::new();
    for (n, line) in data.lines().enumerate() {
        let line = line.map_err(|source| AgeKeyError::Io {
            entry: name.to_string(),
            path: path.clone(),
            source,
        })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match age::x25519::Recipient::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) => {
                return Err(invalid(format!(
                    "{} line {}: not an age recipient (expected age1... lines)",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(invalid(format!(
            "{}: no age recipient in the file",
            path.display()
        )));
    }
    Ok(out)
}

fn read_key_file(path: &Path, name: &str) -> Result<Vec<u8>, AgeKeyError> {
    let io = |source| AgeKeyError::Io {
        entry: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut data = Vec::new();
    f.take(MAX_KEY_FILE).read_to_end(&mut data).map_err(io)?;
    Ok(data)
}

/// Whether `head` (the first bytes of a file, at least 34 of them when the file is that long)
/// starts like an age file, binary or armored.
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(AGE_MAGIC) || head.starts_with(ARMOR_MAGIC)
}

/// Why an age file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The file is encrypted and no identity was given.
    #[error("the file is age-encrypted and no age identity is configured (age: identities: [...] on the replica)")]
    NoIdentity,
    /// None of the identities opens the file.
    #[error("none of the {count} configured age identities can decrypt the file (it was encrypted to other recipients)")]
    NoMatchingIdentity {
        /// How many were tried.
        count: usize,
    },
    /// The age header is damaged or of an unknown kind.
    #[error("invalid age file: {0}")]
    Invalid(String),
}

/// Opens the age file `input` with the first identity that matches; the reader yields the
/// plaintext and fails (with an I/O error of kind `InvalidData`) on a damaged chunk.
pub fn decrypt<R: Read>(
    input: R,
    identities: &[Identity],
) -> Result<age::stream::StreamReader<R>, DecryptError> {
    if identities.is_empty() {
        return Err(DecryptError::NoIdentity);
    }
    let dec = age::Decryptor::new(input).map_err(|e| DecryptError::Invalid(e.to_string()))?;
    if dec.is_scrypt() {
        return Err(DecryptError::Invalid(
            "the file is passphrase-encrypted; only identities are supported".to_string(),
        ));
    }
    dec.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => DecryptError::NoMatchingIdentity {
                count: identities.len(),
            },
            other => DecryptError::Invalid(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Write;

    fn keypair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_string().expose_secret().to_string(),
            id.to_public().to_string(),
        )
    }

    fn encrypt(plain: &[u8], to: &str) -> Vec<u8> {
        let r = age::x25519::Recipient::from_str(to).unwrap();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn inline_keys_and_key_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        let (sk1, pk1) = keypair();
        let (sk2, pk2) = keypair();
        let id_file = dir.path().join("key.txt");
        std::fs::write(
            &id_file,
            format!("# created: now\n# public key: {pk2}\n{sk2}\n"),
        )
        .unwrap();
        let rcpt_file = dir.path().join("recipients.txt");
        std::fs::write(&rcpt_file, format!("# team\n{pk1}\n\n{pk2}\n")).unwrap();
        let cfg = AgeConfig {
            identities: vec![sk1.clone(), id_file.display().to_string()],
            recipients: vec![pk1.clone(), rcpt_file.display().to_string()],
        };
        check_inline(&cfg).unwrap();
        let keys = parse(&cfg).unwrap();
        assert_eq!(keys.identities.len(), 2);
        assert_eq!(keys.recipients.len(), 3);
        // Debug never shows a key.
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains(&sk1) && dbg.contains("REDACTED"), "{dbg}");

        // Each identity opens what was encrypted to its recipient.
        for (pk, plain) in [(&pk1, b"one".as_slice()), (&pk2, b"two".as_slice())] {
            let ct = encrypt(plain, pk);
            assert!(is_age(&ct));
            let mut out = Vec::new();
            decrypt(ct.as_slice(), &keys.identities)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain);
        }
    }

    #[test]
    fn bad_entries_are_named_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let bad_sk = "AGE-SECRET-KEY-1NOTAREALKEYATALL";
        let cfg = AgeConfig {
            identities: vec![bad_sk.to_string()],
            recipients: vec![],
        };
        let e = check_inline(&cfg).unwrap_err();
        assert!(
            e.contains("age.identities[0]") && !e.contains(bad_sk),
            "{e}"
        );
        let e = parse(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("age.identities[0]") && !e.contains(bad_sk),
            "{e}"
        );

        // A file that holds something else than keys.
        let junk = dir.path().join("junk.txt");
        std::fs::write(&junk, "hello world\n").unwrap();
        for cfg in [
            AgeConfig {
                identities: vec![junk.display().to_string()],
                recipients: vec![],
            },
            AgeConfig {
                identities: vec![],
                recipients: vec![junk.display().to_string()],
            },
        ] {
            let e = parse(&cfg).unwrap_err().to_string();
            assert!(e.contains("junk.txt") && e.contains("not an age"), "{e}");
        }
        // A missing file.
        let cfg = AgeConfig {
            identities: vec![dir.path().join("nope").display().to_string()],
            recipients: vec![],
        };
        let e = parse(&cfg).unwrap_err();
        assert!(matches!(e, AgeKeyError::Io { .. }), "{e}");
        // A recipient that is not a key.
        let cfg = AgeConfig {
            identities: vec![],
            recipients: vec!["age1notakey".to_string()],
        };
        assert!(check_inline(&cfg)
            .unwrap_err()
            .contains("age.recipients[0]"));
    }

    #[test]
    fn decrypt_errors_are_clear() {
        let (_, pk) = keypair();
        let (other_sk, _) = keypair();
        let ct = encrypt(b"secret rows", &pk);
        let wrong: Vec<Identity> = vec![Box::new(
            age::x25519::Identity::from_str(&other_sk).unwrap(),
        )];
        assert!(matches!(
            decrypt(ct.as_slice(), &[]),
            Err(DecryptError::NoIdentity)
        ));
        let e = decrypt(ct.as_slice(), &wrong).err().unwrap();
        assert!(
            matches!(e, DecryptError::NoMatchingIdentity { count: 1 }),
            "{e}"
        );
        assert!(matches!(
            decrypt(&b"age-encryption.org/v1\n-> garbage\n"[..], &wrong),
            Err(DecryptError::Invalid(_))
        ));
        assert!(!is_age(b"\x04\x22\x4d\x18"));
    }
}
