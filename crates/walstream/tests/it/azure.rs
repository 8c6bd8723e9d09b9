//! The abs backend against Azurite (started by scripts/servers/azurite.sh): the shared contract
//! suite, a multi-block upload, the full replication cycle through the binary, and bad input.
use std::time::SystemTime;

use walstream::config::{open_replica, ReplicaConfig};
use walstream::storage::{contract, DynStore, StorageError};
use walstream::TxId;

use super::backend_cycle::{self, env_or_fail, unique, Remote};

struct Azurite {
    endpoint: String,
    account: String,
    key: String,
    container: String,
}

fn azurite() -> Azurite {
    Azurite {
        endpoint: env_or_fail("WALSTREAM_TEST_AZURE_ENDPOINT"),
        account: env_or_fail("WALSTREAM_TEST_AZURE_ACCOUNT"),
        key: env_or_fail("WALSTREAM_TEST_AZURE_KEY"),
        container: env_or_fail("WALSTREAM_TEST_AZURE_CONTAINER"),
    }
}

fn config(a: &Azurite, container: &str, path: &str, key: &str) -> ReplicaConfig {
    ReplicaConfig {
        kind: Some("abs".into()),
        account_name: Some(a.account.clone()),
        account_key: Some(key.into()),
        bucket: Some(container.into()),
        path: Some(path.into()),
        endpoint: Some(a.endpoint.clone()),
        ..Default::default()
    }
}

fn store(a: &Azurite, path: &str) -> DynStore {
    open_replica(&config(a, &a.container, path, &a.key)).unwrap()
}

/// A key of the right shape that Azurite does not accept.
const WRONG_KEY: &str = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_contract_suite_passes_against_azurite() {
    let a = azurite();
    contract::run_all(|| {
        let s = store(&a, &unique("contract"));
        async move { s }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_contract_listing_passes_against_azurite() {
    let a = azurite();
    let root = unique("listing");
    contract::run_listing(store(&a, &root), |rel| store(&a, &format!("{root}/{rel}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_large_file_goes_up_in_blocks_and_reads_back() {
    let a = azurite();
    let s = store(&a, &unique("large"));
    let mut src = contract::Sources::new();
    // Over the single-put limit (32 MiB): a block list of 8 MiB blocks.
    let data = contract::test_bytes(40 * 1024 * 1024 + 17, 3);
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_650_000_000_250);
    let info = s
        .write_ltx_file(9, TxId(1), TxId(5), &src.file(&data), t)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    let listed = s.ltx_files(9).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].size, listed[0].created_at), (info.size, t));
    assert!(contract::read_all(&*s, 9, 1, 5, 0).await == data);
    let tail = contract::read_all(&*s, 9, 1, 5, data.len() as u64 - 5).await;
    assert!(tail == data[data.len() - 5..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_missing_container_and_wrong_key_are_permanent_and_named() {
    let a = azurite();
    let missing = open_replica(&config(&a, "no-such-container", "db", &a.key)).unwrap();
    let err = missing.ltx_files(0).await.unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("abs: no-such-container/db/ltx/0/") && msg.contains("not found"),
        "{msg}"
    );
    let mut src = contract::Sources::new();
    let err = missing
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"x"), SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable()
            && err
                .to_string()
                .contains("container \"no-such-container\" not found"),
        "{err}"
    );

    let wrong = open_replica(&config(&a, &a.container, "db", WRONG_KEY)).unwrap();
    for err in [
        wrong.ltx_files(0).await.unwrap_err(),
        wrong
            .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"x"), SystemTime::now())
            .await
            .unwrap_err(),
        match wrong.open_ltx_file(0, TxId(1), TxId(1), 0).await {
            Ok(_) => panic!("download with a wrong key succeeded"),
            Err(e) => e,
        },
    ] {
        let msg = err.to_string();
        assert!(!err.is_retryable(), "{msg}");
        assert!(
            msg.contains("access denied") && msg.contains(&a.container),
            "{msg}"
        );
        assert!(!msg.contains(WRONG_KEY) && !msg.contains(&a.key), "{msg}");
    }
}

/// HMAC-SHA256 (RFC 2104), enough for signing a SAS in a test.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// An account SAS for the blob service (read, write, delete, list, add, create on service,
/// container and object), signed with the account key.
fn account_sas(a: &Azurite) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (sp, ss, srt, se, spr, sv) = (
        "rwdlac",
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
        "2019-12-12",
    );
    let to_sign = format!("{}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n", a.account);
    let sig = b64.encode(hmac_sha256(
        &b64.decode(&a.key).unwrap(),
        to_sign.as_bytes(),
    ));
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={}&spr={}&sig={}",
        enc(se),
        enc(spr),
        enc(&sig)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_contract_suite_passes_with_a_sas_token() {
    let a = azurite();
    let sas = account_sas(&a);
    contract::run_all(|| {
        let s = open_replica(&ReplicaConfig {
            kind: Some("abs".into()),
            account_name: Some(a.account.clone()),
            sas_token: Some(sas.clone()),
            bucket: Some(a.container.clone()),
            path: Some(unique("sas")),
            endpoint: Some(a.endpoint.clone()),
            ..Default::default()
        })
        .unwrap();
        async move { s }
    })
    .await;
}

fn remote(a: &Azurite, path: &str) -> Remote {
    Remote {
        replica_yaml: format!(
            "type: abs\naccount-name: {}\naccount-key: {}\nbucket: {}\npath: {path}\nendpoint: {}",
            a.account, a.key, a.container, a.endpoint
        ),
        url: format!(
            "abs://{}@{}/{path}?endpoint={}",
            a.account, a.container, a.endpoint
        ),
        env: vec![("LITESTREAM_AZURE_ACCOUNT_KEY".into(), a.key.clone())],
    }
}

#[test]
fn azure_replication_cycle_through_the_binary() {
    let a = azurite();
    let path = unique("cycle");
    backend_cycle::replication_cycle(&remote(&a, &path));
}

#[test]
fn azure_litestream_writes_walstream_restores() {
    let a = azurite();
    backend_cycle::litestream_writes_walstream_restores(&remote(&a, &unique("from-litestream")));
}

#[test]
fn azure_bad_input_fails_clearly_without_secrets() {
    let a = azurite();
    let path = unique("bad");
    let env_key = |k: &str| vec![("LITESTREAM_AZURE_ACCOUNT_KEY".to_string(), k.to_string())];
    // Wrong key.
    let url = format!(
        "abs://{}@{}/{path}?endpoint={}",
        a.account, a.container, a.endpoint
    );
    let line = backend_cycle::restore_fails(
        &url,
        &env_key(WRONG_KEY),
        &["abs", &a.container, "access denied"],
        &[WRONG_KEY],
    );
    assert!(line.contains("403"), "{line}");
    // Missing container.
    let url = format!(
        "abs://{}@no-such-container/{path}?endpoint={}",
        a.account, a.endpoint
    );
    backend_cycle::restore_fails(
        &url,
        &env_key(&a.key),
        &["abs", "no-such-container", "not found"],
        &[&a.key],
    );
    // Nothing listening.
    let dead = format!(
        "http://127.0.0.1:{}/{}",
        backend_cycle::closed_port(),
        a.account
    );
    let url = format!("abs://{}@{}/{path}?endpoint={dead}", a.account, a.container);
    backend_cycle::restore_fails(
        &url,
        &env_key(&a.key),
        &["abs", &a.container, "cannot reach", &dead],
        &[&a.key],
    );
    // replicate refuses to start on a wrong key or a missing container; the database is untouched.
    let yaml = |container: &str, key: &str| {
        format!(
            "type: abs\naccount-name: {}\naccount-key: {key}\nbucket: {container}\npath: {path}\nendpoint: {}",
            a.account, a.endpoint
        )
    };
    backend_cycle::replicate_fails(
        &yaml(&a.container, WRONG_KEY),
        &[],
        &["abs", &a.container, "access denied"],
        &[WRONG_KEY],
    );
    backend_cycle::replicate_fails(
        &yaml("no-such-container", &a.key),
        &[],
        &["abs", "no-such-container", "not found"],
        &[&a.key],
    );
}
