//! Upload temp files that a kill leaves on a file replica: the real binary killed between an
//! upload's write and its rename (failpoint `upload.before_rename`) leaves one, and
//! `remove_stale_uploads` removes it and nothing else.
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use walstream::storage::file::FileStore;
use walstream::storage::ReplicaStore;

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
    let mut child = std::process::Command::new(util::bin())
        .arg("replicate")
        .arg(&db)
        .arg(&replica)
        .env(walstream::failpoint::ENV, "upload.before_rename=1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("replicate did not reach upload.before_rename within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(9), "{status:?}");

    let (temps, before) = files_in_levels(&replica);
    assert_eq!(temps.len(), 1, "temp files after the kill: {temps:?}");
    let store = FileStore::new(&replica);
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 1);
    let (temps, after) = files_in_levels(&replica);
    assert!(temps.is_empty(), "left: {temps:?}");
    assert_eq!(after, before, "other files changed");
    assert_eq!(store.remove_stale_uploads().await.unwrap(), 0);
}
