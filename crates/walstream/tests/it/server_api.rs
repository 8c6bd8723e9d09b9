//! The replication server driven in-process, without the binary (issue 9): three databases on
//! file replicas; one removed at run time (its replica is kept, restores to the source as it was,
//! and writes after removal do not reach it), then added back; `status()` fields; once every
//! database is quiet for `cold_after`, `open_databases()` is 0 and the process holds no
//! descriptor on any database file, `-wal` or `-shm`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walstream::server::{DbSpec, DbStatus, Server, ServerOptions};
use walstream::storage::file::FileStore;
use walstream::storage::DynStore;

use super::fleet_util::{commit, create_db, max_l0, open, restore_digest};
use super::util;

fn spec(db: &Path, replica: &Path) -> DbSpec {
    let store: DynStore = Arc::new(FileStore::new(replica));
    DbSpec::new(db, store)
}

fn status_of(server: &Server, db: &Path) -> Option<DbStatus> {
    server.status().into_iter().find(|s| s.path == db)
}

/// Waits until the server reports the database uploaded up to what it has locally.
async fn wait_caught_up(server: &Server, db: &Path, within: Duration) -> DbStatus {
    let t0 = Instant::now();
    loop {
        let st = status_of(server, db).expect("database in status()");
        if st.local_txid.is_some() && st.remote_txid == st.local_txid {
            return st;
        }
        assert!(
            t0.elapsed() < within,
            "{} not caught up within {within:?}: {st:?}",
            db.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the file replica's newest L0 file is the server's remote TXID for `db`, and the
/// restore of the replica equals the source.
async fn wait_restore_equals(url: &str, db: &Path, out: &Path, within: Duration) {
    let want = util::logical_digest(db);
    let t0 = Instant::now();
    loop {
        let (url2, out2) = (url.to_string(), out.to_path_buf());
        let got = tokio::task::spawn_blocking(move || restore_digest(&url2, &out2))
            .await
            .unwrap();
        if got.as_deref() == Ok(want.as_str()) {
            return;
        }
        assert!(
            t0.elapsed() < within,
            "restore of {url} never equalled {}: {got:?}",
            db.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn held_descriptors(files: &[PathBuf]) -> Vec<PathBuf> {
    super::fleet_util::fd_targets("self")
        .into_iter()
        .filter(|t| files.contains(t))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_add_remove_status_and_cold() {
    let dir = util::tempdir();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let dbs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("db{i}.db"))).collect();
    let reps: Vec<PathBuf> = (0..3).map(|i| root.join(format!("rep{i}"))).collect();
    let urls: Vec<String> = reps
        .iter()
        .map(|r| format!("file://{}", r.display()))
        .collect();
    let out = root.join("restored.db");
    for db in &dbs {
        create_db(db);
    }
    let cold_after = Duration::from_secs(1);
    let server = Server::new(ServerOptions {
        cold_after,
        ..ServerOptions::default()
    });
    for (db, rep) in dbs.iter().zip(&reps) {
        server.add(spec(db, rep)).unwrap();
    }
    // A second add of the same path is refused, naming it.
    let dup = server.add(spec(&dbs[0], &reps[0])).unwrap_err().to_string();
    assert!(dup.contains("db0.db"), "{dup}");

    // Writes reach every replica.
    let conns: Vec<_> = dbs.iter().map(|d| open(d)).collect();
    for (i, c) in conns.iter().enumerate() {
        for k in 0..5 {
            commit(c, &format!("db{i}-{k}"));
        }
    }
    for (i, db) in dbs.iter().enumerate() {
        let st = wait_caught_up(&server, db, Duration::from_secs(30)).await;
        assert!(st.connected, "{st:?}");
        assert_eq!(st.last_error, None, "{st:?}");
        assert!(st.open, "a database just written is warm: {st:?}");
        assert_eq!(
            max_l0(&reps[i]),
            st.remote_txid.map(|t| t.0),
            "the replica's newest L0 file is the remote TXID"
        );
        wait_restore_equals(&urls[i], db, &out, Duration::from_secs(30)).await;
    }
    let statuses = server.status();
    assert_eq!(
        statuses.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
        dbs,
        "status() lists the three databases, sorted"
    );

    // Remove db1: a final sync; its replica is kept and equals the source as it was.
    commit(&conns[1], "db1-last-before-removal");
    server.remove(&dbs[1]).await.unwrap();
    assert!(status_of(&server, &dbs[1]).is_none());
    assert_eq!(server.status().len(), 2);
    let unknown = server.remove(&dbs[1]).await.unwrap_err().to_string();
    assert!(unknown.contains("db1.db"), "{unknown}");
    let at_removal = util::logical_digest(&dbs[1]);
    let rep1_txid = max_l0(&reps[1]);
    assert_eq!(
        restore_digest(&urls[1], &out).unwrap(),
        at_removal,
        "the removed database's replica restores to the source at removal"
    );
    // Writes after removal do not reach its replica.
    for k in 0..5 {
        commit(&conns[1], &format!("db1-after-removal-{k}"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(max_l0(&reps[1]), rep1_txid, "a removed database was synced");
    assert_eq!(restore_digest(&urls[1], &out).unwrap(), at_removal);
    assert_ne!(util::logical_digest(&dbs[1]), at_removal);

    // Added back: what was written meanwhile reaches the replica.
    server.add(spec(&dbs[1], &reps[1])).unwrap();
    commit(&conns[1], "db1-after-re-add");
    wait_caught_up(&server, &dbs[1], Duration::from_secs(30)).await;
    assert!(max_l0(&reps[1]) > rep1_txid);
    wait_restore_equals(&urls[1], &dbs[1], &out, Duration::from_secs(30)).await;

    // Quiet: every database goes cold, with no connection and no descriptor on its files.
    drop(conns);
    let files: Vec<PathBuf> = dbs
        .iter()
        .flat_map(|d| ["", "-wal", "-shm"].map(|s| PathBuf::from(format!("{}{s}", d.display()))))
        .collect();
    let t0 = Instant::now();
    loop {
        let open_now = server.open_databases();
        let held = held_descriptors(&files);
        let any_open = server.status().iter().any(|s| s.open);
        if open_now == 0 && held.is_empty() && !any_open {
            break;
        }
        assert!(
            t0.elapsed() < cold_after * 10 + Duration::from_secs(10),
            "still warm {:?} after the quiet spell: open_databases={open_now}, descriptors {held:?}, {:?}",
            t0.elapsed(),
            server.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "server_api: all three cold {:?} after the last write (cold_after {cold_after:?})",
        t0.elapsed()
    );
    for (i, st) in server.status().iter().enumerate() {
        assert_eq!(st.local_txid, st.remote_txid, "{st:?}");
        assert_eq!(st.remote_txid.map(|t| t.0), max_l0(&reps[i]), "{st:?}");
        assert!(st.connected && st.last_error.is_none(), "{st:?}");
    }

    // A write wakes a cold database.
    let before = max_l0(&reps[2]);
    let c = open(&dbs[2]);
    commit(&c, "db2-after-cold");
    drop(c);
    let t0 = Instant::now();
    while max_l0(&reps[2]) == before {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a write to a cold database did not reach its replica: {:?}",
            server.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.shutdown().await;
    assert!(
        held_descriptors(&files).is_empty(),
        "descriptors on the databases after shutdown"
    );
    for (db, url) in dbs.iter().zip(&urls) {
        assert_eq!(
            restore_digest(url, &out).unwrap(),
            util::logical_digest(db),
            "{url} after shutdown"
        );
    }
}
