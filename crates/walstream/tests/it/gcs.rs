//! The gs backend against fake-gcs-server (started by scripts/servers/gcs.sh, which exports
//! `STORAGE_EMULATOR_HOST`): the shared contract suite, a resumable upload, the timestamp in
//! Litestream's metadata key, the full replication cycle through the binary, and bad input.
use std::time::{Duration, SystemTime};

use walstream::config::{open_replica, ReplicaConfig};
use walstream::storage::{contract, DynStore, StorageError};
use walstream::TxId;

use super::backend_cycle::{self, env_or_fail, unique, Remote};

struct Emulator {
    host: String,
    bucket: String,
}

fn emulator() -> Emulator {
    Emulator {
        host: env_or_fail("STORAGE_EMULATOR_HOST"),
        bucket: env_or_fail("WALSTREAM_TEST_GCS_BUCKET"),
    }
}

fn store(bucket: &str, path: &str) -> DynStore {
    open_replica(&ReplicaConfig {
        url: Some(format!("gs://{bucket}/{path}")),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_contract_suite_passes_against_fake_gcs_server() {
    let e = emulator();
    contract::run_all(|| {
        let s = store(&e.bucket, &unique("contract"));
        async move { s }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_contract_listing_passes_against_fake_gcs_server() {
    let e = emulator();
    let root = unique("listing");
    contract::run_listing(store(&e.bucket, &root), |rel| {
        store(&e.bucket, &format!("{root}/{rel}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_large_file_goes_up_resumably_with_litestreams_metadata() {
    let e = emulator();
    let path = unique("large");
    let s = store(&e.bucket, &path);
    let mut src = contract::Sources::new();
    // Over the single-request limit (8 MiB): a resumable upload in 8 MiB chunks.
    let data = contract::test_bytes(20 * 1024 * 1024 + 5, 9);
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_650_000_000_250);
    let info = s
        .write_ltx_file(9, TxId(1), TxId(7), &src.file(&data), t)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    let listed = s.ltx_files(9).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].size, listed[0].created_at), (info.size, t));
    assert!(contract::read_all(&*s, 9, 1, 7, 0).await == data);
    let tail = contract::read_all(&*s, 9, 1, 7, data.len() as u64 - 3).await;
    assert!(tail == data[data.len() - 3..]);

    // The object, as the JSON API shows it: Litestream's name and metadata key.
    let name = format!("{path}/ltx/9/0000000000000001-0000000000000007.ltx");
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        e.host.trim_end_matches('/'),
        e.bucket,
        name.replace('/', "%2F")
    );
    let meta: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(meta["name"], name.as_str(), "{meta}");
    assert_eq!(
        meta["metadata"]["litestream-timestamp"], "2022-04-15T05:20:00.250000000Z",
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_missing_bucket_is_permanent_and_named() {
    let _ = emulator();
    let s = store("no-such-bucket", "db");
    let err = s.ltx_files(0).await.unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("gs: no-such-bucket/db/ltx/0/")
            && msg.contains("bucket \"no-such-bucket\" not found"),
        "{msg}"
    );
    let mut src = contract::Sources::new();
    let err = s
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"x"), SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable()
            && err
                .to_string()
                .contains("bucket \"no-such-bucket\" not found"),
        "{err}"
    );
}

#[test]
fn gcs_replication_cycle_through_the_binary() {
    let e = emulator();
    let path = unique("cycle");
    backend_cycle::replication_cycle(&Remote {
        replica_yaml: format!("type: gs\nbucket: {}\npath: {path}", e.bucket),
        url: format!("gs://{}/{path}", e.bucket),
        env: vec![],
    });
}

#[test]
fn gcs_litestream_writes_walstream_restores() {
    let e = emulator();
    let path = unique("from-litestream");
    backend_cycle::litestream_writes_walstream_restores(&Remote {
        replica_yaml: format!("type: gs\nbucket: {}\npath: {path}", e.bucket),
        url: format!("gs://{}/{path}", e.bucket),
        env: vec![],
    });
}

#[test]
fn gcs_bad_input_fails_clearly() {
    let e = emulator();
    let path = unique("bad");
    backend_cycle::restore_fails(
        &format!("gs://no-such-bucket/{path}"),
        &[],
        &["gs", "no-such-bucket", "not found"],
        &[],
    );
    let dead = format!("http://127.0.0.1:{}", backend_cycle::closed_port());
    backend_cycle::restore_fails(
        &format!("gs://{}/{path}", e.bucket),
        &[("STORAGE_EMULATOR_HOST".into(), dead.clone())],
        &["gs", &e.bucket, "cannot reach", &dead],
        &[],
    );
    backend_cycle::replicate_fails(
        &format!("type: gs\nbucket: no-such-bucket\npath: {path}"),
        &[],
        &["gs", "no-such-bucket", "not found"],
        &[],
    );
}
