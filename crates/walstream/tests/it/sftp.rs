//! The sftp backend against OpenSSH's sshd (started by scripts/servers/sshd.sh, whose
//! `internal-sftp` starts in `$WALSTREAM_TEST_SFTP_DIR`): the shared contract suite, the layout
//! and mtimes on the server's disk, the full replication cycle through the binary, and bad input.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use walstream::config::{open_replica, ReplicaConfig};
use walstream::storage::{contract, DynStore, StorageError};
use walstream::TxId;

use super::backend_cycle::{self, env_or_fail, unique, Remote};
use super::util;

struct Sshd {
    host: String,
    port: String,
    user: String,
    key: String,
    host_key: String,
    dir: PathBuf,
}

fn sshd() -> Sshd {
    Sshd {
        host: env_or_fail("WALSTREAM_TEST_SFTP_HOST"),
        port: env_or_fail("WALSTREAM_TEST_SFTP_PORT"),
        user: env_or_fail("WALSTREAM_TEST_SFTP_USER"),
        key: env_or_fail("WALSTREAM_TEST_SFTP_KEY"),
        host_key: env_or_fail("WALSTREAM_TEST_SFTP_HOST_KEY"),
        dir: PathBuf::from(env_or_fail("WALSTREAM_TEST_SFTP_DIR")),
    }
}

fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Sshd {
    /// A URL whose (relative) path lands in the test directory.
    fn url(&self, path: &str, key: &str, host_key: &str) -> String {
        format!(
            "sftp://{}@{}:{}/{path}?key-path={}&host-key={}",
            self.user,
            self.host,
            self.port,
            q(key),
            q(host_key)
        )
    }

    fn store(&self, path: &str) -> DynStore {
        open_replica(&ReplicaConfig {
            url: Some(self.url(path, &self.key, &self.host_key)),
            ..Default::default()
        })
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_contract_suite_passes_against_sshd() {
    let s = sshd();
    contract::run_all(|| {
        let store = s.store(&unique("contract"));
        async move { store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_layout_and_mtime_on_the_server_match_litestream() {
    let s = sshd();
    let path = unique("layout");
    let store = s.store(&path);
    let mut src = contract::Sources::new();
    let data = contract::test_bytes(3 * 1024 * 1024 + 1, 5);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    store
        .write_ltx_file(9, TxId(1), TxId(0x2a), &src.file(&data), t)
        .await
        .unwrap();
    // Overwriting replaces the file whole.
    store
        .write_ltx_file(9, TxId(1), TxId(0x2a), &src.file(&data), t)
        .await
        .unwrap();
    let level = s.dir.join(&path).join("ltx/9");
    assert_eq!(
        util::dir_entries(&level),
        vec!["0000000000000001-000000000000002a.ltx".to_string()],
        "exactly the LTX file, no temp files"
    );
    let file = level.join("0000000000000001-000000000000002a.ltx");
    assert!(std::fs::read(&file).unwrap() == data);
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), t);
    assert!(contract::read_all(&*store, 9, 1, 0x2a, 1_000_000).await == data[1_000_000..]);
}

fn remote(s: &Sshd, path: &str) -> Remote {
    Remote {
        // The config names the same directory by its absolute path.
        replica_yaml: format!(
            "type: sftp\nhost: {}:{}\nuser: {}\nkey-path: {}\nhost-key: {}\npath: {}",
            s.host,
            s.port,
            s.user,
            s.key,
            s.host_key,
            s.dir.join(path).display()
        ),
        url: s.url(path, &s.key, &s.host_key),
        env: vec![],
    }
}

#[test]
fn sftp_replication_cycle_through_the_binary() {
    let s = sshd();
    let path = unique("cycle");
    backend_cycle::replication_cycle(&remote(&s, &path));
    assert!(s.dir.join(&path).join("ltx/0").is_dir());
}

#[test]
fn sftp_litestream_writes_walstream_restores() {
    let s = sshd();
    backend_cycle::litestream_writes_walstream_restores(&remote(&s, &unique("from-litestream")));
}

/// A TCP forwarder to sshd whose connections the test can cut.
struct CuttableProxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttableProxy {
    fn start(target: String) -> CuttableProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        // Lives as long as the test process; each accepted connection is piped both ways.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut guard = c.lock().unwrap();
                guard.push(client.try_clone().unwrap());
                guard.push(server.try_clone().unwrap());
                drop(guard);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableProxy {
            port,
            conns,
            accepted,
        }
    }

    fn cut_all(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_store_reconnects_after_the_session_drops() {
    let s = sshd();
    let proxy = CuttableProxy::start(format!("{}:{}", s.host, s.port));
    let path = unique("reconnect");
    let url = format!(
        "sftp://{}@127.0.0.1:{}/{path}?key-path={}&host-key={}",
        s.user,
        proxy.port,
        q(&s.key),
        q(&s.host_key)
    );
    let store = open_replica(&ReplicaConfig {
        url: Some(url),
        ..Default::default()
    })
    .unwrap();
    let mut src = contract::Sources::new();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    store
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"one"), t)
        .await
        .unwrap();
    assert_eq!(proxy.accepted(), 1);
    proxy.cut_all();
    // The next calls find the session dead, reconnect once, and succeed.
    store
        .write_ltx_file(0, TxId(2), TxId(2), &src.file(b"two"), t)
        .await
        .unwrap();
    let files = store.ltx_files(0).await.unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(proxy.accepted(), 2, "one new session");
    assert!(contract::read_all(&*store, 0, 2, 2, 0).await == b"two");
}

fn other_key(dir: &Path) -> PathBuf {
    let key = dir.join("other_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_wrong_key_host_key_and_dead_port_are_classified() {
    let s = sshd();
    let dir = util::tempdir();
    let wrong = other_key(dir.path());
    let wrong_pub = std::fs::read_to_string(wrong.with_extension("pub")).unwrap();
    let open = |url: String| -> DynStore {
        open_replica(&ReplicaConfig {
            url: Some(url),
            ..Default::default()
        })
        .unwrap()
    };
    let err = open(s.url("x", wrong.to_str().unwrap(), &s.host_key))
        .ltx_files(0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Permanent { .. })
            && err.to_string().contains("authentication failed"),
        "{err}"
    );
    // A server that shows another key than host-key is refused before authenticating.
    let err = open(s.url("x", &s.key, wrong_pub.trim()))
        .ltx_files(0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Permanent { .. })
            && err.to_string().contains("host key mismatch"),
        "{err}"
    );
    let err = open(format!(
        "sftp://{}@127.0.0.1:{}/x?key-path={}",
        s.user,
        backend_cycle::closed_port(),
        q(&s.key)
    ))
    .ltx_files(0)
    .await
    .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("cannot connect"),
        "{err}"
    );
}

#[test]
fn sftp_bad_input_fails_clearly_without_secrets() {
    let s = sshd();
    let dir = util::tempdir();
    let wrong = other_key(dir.path());
    let path = unique("bad");
    // Wrong key, and a password (which sshd does not take): neither secret nor password shown.
    let url = format!(
        "sftp://{}:hunter2secret@{}:{}/{path}?key-path={}",
        s.user,
        s.host,
        s.port,
        q(wrong.to_str().unwrap())
    );
    backend_cycle::restore_fails(
        &url,
        &[],
        &["sftp", "authentication failed", &s.user],
        &["hunter2secret"],
    );
    // A key file that does not exist.
    let missing = dir.path().join("no-such-key");
    backend_cycle::restore_fails(
        &s.url(&path, missing.to_str().unwrap(), &s.host_key),
        &[],
        &["sftp", "cannot read key-path", missing.to_str().unwrap()],
        &[],
    );
    // Nothing listening.
    let port = backend_cycle::closed_port();
    backend_cycle::restore_fails(
        &format!(
            "sftp://{}:hunter2secret@127.0.0.1:{port}/{path}?key-path={}",
            s.user,
            q(&s.key)
        ),
        &[],
        &["sftp", &format!("127.0.0.1:{port}"), "cannot connect"],
        &["hunter2secret"],
    );
    // replicate refuses to start with a wrong key; the database is untouched.
    backend_cycle::replicate_fails(
        &format!(
            "type: sftp\nhost: {}:{}\nuser: {}\npassword: hunter2secret\nkey-path: {}\npath: {path}",
            s.host,
            s.port,
            s.user,
            wrong.display()
        ),
        &[],
        &["sftp", "authentication failed"],
        &["hunter2secret"],
    );
}
