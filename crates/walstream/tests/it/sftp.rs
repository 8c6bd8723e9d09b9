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
async fn sftp_contract_listing_passes_against_sshd() {
    let s = sshd();
    let root = unique("listing");
    contract::run_listing(s.store(&root), |rel| s.store(&format!("{root}/{rel}"))).await;
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

/// Sets a file's mtime on the server's disk (the test directory is local).
fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

/// The lease's lock file: a stale one (a process killed while holding it) is broken and the
/// write goes through; a fresh one held by someone else makes the write wait and then fail as
/// transient, leaving the lease as it was; the lock never outlives a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_lease_lock_stale_is_broken_fresh_is_waited_for() {
    let s = sshd();
    let path = unique("lease-lock");
    let store = s.store(&path);
    let v1 = store
        .write_lease(bytes::Bytes::from_static(b"owner-a 1"), None)
        .await
        .unwrap();
    let lock = s.dir.join(&path).join(".walstream/lease.lock");
    assert!(!lock.exists(), "lock left after a write");

    // A holder killed mid-write, two minutes ago.
    std::fs::write(&lock, b"12345-0-dead").unwrap();
    set_mtime(&lock, SystemTime::now() - Duration::from_secs(120));
    let v2 = store
        .write_lease(bytes::Bytes::from_static(b"owner-a 2"), Some(&v1))
        .await
        .unwrap();
    assert!(!lock.exists(), "stale lock not removed");
    let got = store.read_lease().await.unwrap().unwrap();
    assert_eq!((&got.data[..], &got.version), (&b"owner-a 2"[..], &v2));
    let leftovers: Vec<_> = std::fs::read_dir(lock.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lease")
        .collect();
    assert!(leftovers.is_empty(), "left in .walstream: {leftovers:?}");

    // A live holder: the write waits its bound and gives up, retryably, changing nothing.
    std::fs::write(&lock, b"12345-1-alive").unwrap();
    let started = std::time::Instant::now();
    let err = store
        .write_lease(bytes::Bytes::from_static(b"owner-b 1"), Some(&v2))
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && !err.is_conflict() && err.to_string().contains("lease lock"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(&lock).unwrap(),
        b"12345-1-alive",
        "lock of another taken"
    );
    let got = store.read_lease().await.unwrap().unwrap();
    assert_eq!(&got.data[..], b"owner-a 2");
    // Released: the write goes through.
    std::fs::remove_file(&lock).unwrap();
    store
        .write_lease(bytes::Bytes::from_static(b"owner-b 1"), Some(&v2))
        .await
        .unwrap();
}

/// Writers racing over separate sessions: of many creates exactly one wins, and of many
/// replaces at the same version exactly one wins; the others get `Conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_lease_racing_writers_one_wins() {
    let s = sshd();
    let path = unique("lease-race");
    let stores: Vec<DynStore> = (0..6).map(|_| s.store(&path)).collect();
    let creates = futures::future::join_all(stores.iter().enumerate().map(|(i, st)| async move {
        st.write_lease(bytes::Bytes::from(format!("owner-{i} 1")), None)
            .await
    }))
    .await;
    let won: Vec<usize> = (0..creates.len()).filter(|&i| creates[i].is_ok()).collect();
    assert_eq!(won.len(), 1, "creates: {creates:?}");
    assert!(
        creates
            .iter()
            .all(|r| r.as_ref().is_ok() || r.as_ref().is_err_and(|e| e.is_conflict())),
        "{creates:?}"
    );
    let v = creates[won[0]].as_ref().unwrap().clone();
    let replaces = futures::future::join_all(stores.iter().enumerate().map(|(i, st)| {
        let v = v.clone();
        async move {
            st.write_lease(bytes::Bytes::from(format!("owner-{i} 2")), Some(&v))
                .await
        }
    }))
    .await;
    let won: Vec<usize> = (0..replaces.len())
        .filter(|&i| replaces[i].is_ok())
        .collect();
    assert_eq!(won.len(), 1, "replaces: {replaces:?}");
    let got = stores[0].read_lease().await.unwrap().unwrap();
    assert_eq!(got.data, format!("owner-{} 2", won[0]).as_bytes());
}

/// Upload temp files a killed upload left on the server go; LTX files and strangers stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_removes_stale_upload_temp_files() {
    let s = sshd();
    let path = unique("stale-uploads");
    let store = s.store(&path);
    let mut src = contract::Sources::new();
    store
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"one"), SystemTime::now())
        .await
        .unwrap();
    let root = s.dir.join(&path);
    let stale = [
        "ltx/0/.0000000000000002-0000000000000002.ltx.777-3.tmp",
        "ltx/9/.0000000000000001-0000000000000002.ltx.1-0.tmp",
    ];
    let kept = [
        "ltx/0/0000000000000002-0000000000000002.ltx.tmp",
        "ltx/0/notes.tmp",
        "ltx/0/0000000000000001-0000000000000001.ltx",
    ];
    for p in stale.iter().chain(&kept[..2]) {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"partial").unwrap();
    }
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 2);
    for p in stale {
        assert!(!root.join(p).exists(), "{p} left");
    }
    for p in kept {
        assert!(root.join(p).exists(), "{p} removed");
    }
    assert!(contract::read_all(&*store, 0, 1, 1, 0).await == b"one");
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 0);
}
