//! Upload temp files that a kill leaves on a file replica: the real binary killed between an
//! upload's write and its rename (failpoint `upload.before_rename`) leaves one, and
//! `remove_stale_uploads` removes it and nothing else.
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use walstream::storage::file::FileStore;
use walstream::storage::ReplicaStore;

use super::harness::Replicator;
use super::util;

fn files_in_levels(replica: &Path) -> (Vec<String>, Vec<String>) {
    let (mut temps, mut others) = (Vec::new(), Vec::new());
    for level in 0..=9 {
        let Ok(rd) = std::fs::read_dir(replica.join("ltx").join(level.to_string())) else {
            continue;
        };
        for e in rd {
            let name = format!("{level}/{}", e.unwrap().file_name().to_string_lossy());
            if name.ends_with(".tmp") {
                temps.push(name);
            } else {
                others.push(name);
            }
        }
    }
    temps.sort();
    others.sort();
    (temps, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_upload_temp_file_left_by_a_kill_is_removed() {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(5000));")
            .unwrap();
    }
    let log = dir.path().join("walstream.log");
    let mut rep =
        Replicator::walstream(&["replicate", db.to_str().unwrap(), replica.to_str().unwrap()])
            .var(walstream::failpoint::ENV, "upload.before_rename=1")
            .start(&log);
    let Some(status) = rep.wait_exit(Duration::from_secs(120)) else {
        panic!(
            "replicate did not reach upload.before_rename within 120 s; log:\n{}",
            rep.log()
        );
    };
    assert_eq!(status.signal(), Some(9), "{status:?}; log:\n{}", rep.log());

    let (temps, before) = files_in_levels(&replica);
    assert_eq!(temps.len(), 1, "temp files after the kill: {temps:?}");
    let store = FileStore::new(&replica);
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 1);
    let (temps, after) = files_in_levels(&replica);
    assert!(temps.is_empty(), "left: {temps:?}");
    assert_eq!(after, before, "other files changed");
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 0);
}
