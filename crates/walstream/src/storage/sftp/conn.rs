//! One SSH session with its SFTP channel: connect, verify the host key, authenticate. Blocking
//! (libssh2); the store runs it on tokio's blocking threads.
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use ssh2::{ErrorCode, HashType, MethodType, Session, Sftp};

use super::Settings;

/// TCP connect timeout (Litestream's dial timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Any one blocking libssh2 call gives up after this long.
const CALL_TIMEOUT_MS: u32 = 60_000;

/// libssh2's session error codes that say the session is unusable or never came up.
pub(super) const SESSION_AUTH_FAILED: i32 = -18;
pub(super) const SESSION_PUBKEY_UNVERIFIED: i32 = -19;
pub(super) const SESSION_FILE: i32 = -16;

/// SFTP status codes (draft-ietf-secsh-filexfer-02).
pub(super) const FX_NO_SUCH_FILE: i32 = 2;
pub(super) const FX_PERMISSION_DENIED: i32 = 3;
pub(super) const FX_NO_SUCH_PATH: i32 = 10;

/// Why a connection could not be made.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// The server could not be reached (resolve, connect, handshake, a dropped link).
    Unreachable(String),
    /// The server is reachable but refuses us, or the settings are wrong.
    Refused(String),
}

/// An authenticated session and its SFTP channel.
pub(super) struct Conn {
    // Kept alive for `sftp`; dropped after it (field order).
    pub sftp: Sftp,
    _session: Session,
}

/// A host key as `authorized_keys` writes it: `[options] type base64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostKey {
    pub kind: String,
    pub blob: Vec<u8>,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-dss",
];

impl HostKey {
    /// Parses `host-key` (the key itself, as Litestream 0.5 takes it, or a file holding it).
    pub fn parse(text: &str) -> Result<HostKey, String> {
        let from_line = |line: &str| -> Option<HostKey> {
            let words: Vec<&str> = line.split_whitespace().collect();
            let i = words.iter().position(|w| KEY_TYPES.contains(w))?;
            let blob = base64::engine::general_purpose::STANDARD
                .decode(words.get(i + 1)?)
                .ok()?;
            Some(HostKey {
                kind: words[i].to_string(),
                blob,
            })
        };
        if let Some(k) = from_line(text) {
            return Ok(k);
        }
        let path = Path::new(text.trim());
        if path.is_file() {
            let content = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read host-key file {}: {e}", path.display()))?;
            if let Some(k) = content.lines().find_map(from_line) {
                return Ok(k);
            }
        }
        Err("cannot parse host-key: expected `TYPE BASE64 [comment]`, as in authorized_keys".into())
    }

    /// Host key algorithms to ask for, so the server shows this key.
    fn algorithms(&self) -> &str {
        match self.kind.as_str() {
            "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
            other => other,
        }
    }
}

/// `SHA256:<base64>` of a key blob, as OpenSSH prints fingerprints.
fn fingerprint(sha256: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256)
    )
}

/// Whether an error means the session (not just this one call) is gone.
pub(super) fn session_broken(e: &ssh2::Error) -> bool {
    match e.code() {
        // SFTP statuses are answers on a working channel, except "connection lost".
        ErrorCode::SFTP(c) => c == 6 || c == 7,
        ErrorCode::Session(_) => true,
    }
}

impl Conn {
    /// Connects, checks the host key (when one is configured), authenticates, opens SFTP.
    pub fn open(s: &Settings) -> Result<Conn, ConnectError> {
        let addr = format!("{}:{}", s.host, s.port);
        let unreachable = ConnectError::Unreachable;
        let addrs: Vec<_> = (s.host.as_str(), s.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            unreachable(match last {
                Some(e) => format!("cannot connect: {e}"),
                None => "no address".to_string(),
            })
        })?;
        let mut session =
            Session::new().map_err(|e| unreachable(format!("cannot start SSH: {e}")))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(CALL_TIMEOUT_MS);
        if let Some(k) = &s.host_key {
            session
                .method_pref(MethodType::HostKey, k.algorithms())
                .map_err(|e| ConnectError::Refused(format!("host key type {}: {e}", k.kind)))?;
        }
        session
            .handshake()
            .map_err(|e| unreachable(format!("SSH handshake failed: {}", e.message())))?;
        match &s.host_key {
            Some(want) => {
                let (blob, _) = session.host_key().ok_or_else(|| {
                    ConnectError::Refused("server showed no host key".to_string())
                })?;
                if blob != want.blob.as_slice() {
                    let got = session
                        .host_key_hash(HashType::Sha256)
                        .map(fingerprint)
                        .unwrap_or_default();
                    let configured = base64::engine::general_purpose::STANDARD.encode(&want.blob);
                    return Err(ConnectError::Refused(format!(
                        "host key mismatch: the server's key is {got}, not the configured \
                         host-key ({} {configured})",
                        want.kind
                    )));
                }
            }
            None => tracing::warn!(host = %addr, "sftp host key not verified (set host-key)"),
        }
        authenticate(&session, s)?;
        let sftp = session
            .sftp()
            .map_err(|e| ConnectError::Refused(format!("cannot start SFTP: {}", e.message())))?;
        Ok(Conn {
            sftp,
            _session: session,
        })
    }
}

fn authenticate(session: &Session, s: &Settings) -> Result<(), ConnectError> {
    let user = &s.user;
    let mut tried = Vec::new();
    if let Some(key) = &s.key_path {
        // Read first, for a clear message; libssh2 only says "unable to open".
        let mut probe = [0u8; 1];
        std::fs::File::open(key)
            .and_then(|mut f| f.read(&mut probe))
            .map_err(|e| ConnectError::Refused(format!("cannot read key-path {key}: {e}")))?;
        match session.userauth_pubkey_file(user, None, Path::new(key), None) {
            Ok(()) => return Ok(()),
            Err(e) => match e.code() {
                ErrorCode::Session(SESSION_AUTH_FAILED | SESSION_PUBKEY_UNVERIFIED) => {
                    tried.push(format!("key {key}"))
                }
                ErrorCode::Session(SESSION_FILE) => {
                    return Err(ConnectError::Refused(format!(
                        "cannot use key-path {key}: {}",
                        e.message()
                    )))
                }
                _ if session_broken(&e) => {
                    return Err(ConnectError::Unreachable(format!(
                        "authentication interrupted: {}",
                        e.message()
                    )))
                }
                _ => tried.push(format!("key {key} ({})", e.message())),
            },
        }
    }
    if let Some(pw) = &s.password {
        match session.userauth_password(user, pw) {
            Ok(()) => return Ok(()),
            Err(e) => match e.code() {
                ErrorCode::Session(SESSION_AUTH_FAILED) => tried.push("password".into()),
                _ => tried.push(format!("password ({})", e.message())),
            },
        }
    }
    if tried.is_empty() {
        return Err(ConnectError::Refused(
            "no credentials: set `password` or `key-path`".into(),
        ));
    }
    Err(ConnectError::Refused(format!(
        "authentication failed for user {user:?} (tried {})",
        tried.join(", ")
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sftp_host_key_parses_authorized_keys_forms() {
        let k = HostKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmikhx9QDbuSHcbrdK+shhmjeGh6yaOY0dq5vwKPzVb host",
        )
        .unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.blob.len(), 51);
        let with_options = HostKey::parse(
            "no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmikhx9QDbuSHcbrdK+shhmjeGh6yaOY0dq5vwKPzVb",
        )
        .unwrap();
        assert_eq!(with_options, k);
        assert!(HostKey::parse("ssh-ed25519 !!!").is_err());
        assert!(HostKey::parse("nonsense").is_err());
        assert_eq!(
            fingerprint(&[0u8; 32]),
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
    }
}
