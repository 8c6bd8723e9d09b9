//! The S3 store against real servers: moto (started by `scripts/test.sh`, see
//! `scripts/servers/moto.sh`), moto with signature checking, a closed port, and a tiny local
//! HTTP server that answers fixed error responses. These tests fail, saying what to run, when
//! the servers are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use ltx::TxId;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

use super::builder::{self, DEFAULT_PART_SIZE};
use super::credential::Env;
use super::S3Options;
use super::{S3Store, METADATA_TIMESTAMP};
use crate::storage::contract::{self, Sources};
use crate::storage::{DynStore, LtxFileInfo, ReplicaStore, StorageError};

const KEY_ID: &str = "walstream-test";
const SECRET: &str = "walstream-test-secret";

fn need(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{var} is not set: the S3 tests need moto; run scripts/test.sh (it starts moto via scripts/servers/moto.sh)")
    })
}

fn moto() -> String {
    need("WALSTREAM_TEST_S3_ENDPOINT")
}

/// A bucket name no other test uses.
pub(crate) fn unique_bucket(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "ws-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a bucket on moto with an unsigned `PUT /<bucket>` (moto accepts it).
pub(crate) fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "create bucket {bucket}: {}",
        resp.lines().next().unwrap_or("")
    );
}

/// A store for `url` with the given environment (not the process's).
fn store_with(url: &str, vars: &[(&str, &str)], extra: impl FnOnce(&mut S3Options)) -> S3Store {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let f = move |k: &str| vars.get(k).cloned();
    let mut cfg = S3Options {
        url: Some(url.to_string()),
        ..Default::default()
    };
    extra(&mut cfg);
    let s = builder::settings_with_env(&cfg, &Env::new(&f, None)).unwrap();
    S3Store::new(s).unwrap()
}

fn moto_url(endpoint: &str, bucket: &str, path: &str) -> String {
    format!("s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&forcePathStyle=true")
}

fn moto_store(bucket: &str, path: &str) -> S3Store {
    store_with(
        &moto_url(&moto(), bucket, path),
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
        |_| {},
    )
}

fn auth_store(path: &str, secret: &str) -> S3Store {
    let url = moto_url(
        &need("WALSTREAM_TEST_S3_AUTH_ENDPOINT"),
        &need("WALSTREAM_TEST_S3_AUTH_BUCKET"),
        path,
    );
    store_with(&url, &[], |c| {
        c.access_key_id = Some(need("WALSTREAM_TEST_S3_AUTH_KEY_ID"));
        c.secret_access_key = Some(secret.to_string());
    })
}

async fn raw_client(store: &S3Store) -> Arc<object_store::aws::AmazonS3> {
    store.client().await.unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_contract_suite_passes_on_moto() {
    let endpoint = moto();
    let bucket = unique_bucket("contract");
    create_bucket(&endpoint, &bucket);
    let mut n = 0;
    contract::run_all(|| {
        n += 1;
        let s: DynStore = Arc::new(moto_store(&bucket, &format!("c{n}/db")));
        async move { s }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_contract_listing_passes_on_moto() {
    let endpoint = moto();
    let bucket = unique_bucket("listing");
    create_bucket(&endpoint, &bucket);
    let root: DynStore = Arc::new(moto_store(&bucket, "tenants"));
    contract::run_listing(root, |rel| {
        Arc::new(moto_store(&bucket, &format!("tenants/{rel}"))) as DynStore
    })
    .await;
}

/// Every request signed and checked (moto with auth on): list with pagination, ranged GETs,
/// PUTs with metadata and bulk deletes all carry valid SigV4 signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_contract_suite_passes_with_signature_checks() {
    let secret = need("WALSTREAM_TEST_S3_AUTH_SECRET");
    let run = format!("contract-{}", unique_bucket("p"));
    let mut n = 0;
    contract::run_all(|| {
        n += 1;
        let s: DynStore = Arc::new(auth_store(&format!("{run}/{n}"), &secret));
        async move { s }
    })
    .await;
}

#[tokio::test]
async fn s3_layout_and_timestamp_metadata_match_litestream() {
    let endpoint = moto();
    let bucket = unique_bucket("layout");
    create_bucket(&endpoint, &bucket);
    let store = moto_store(&bucket, "app/db");
    let mut src = Sources::new();
    let t0 = UNIX_EPOCH + Duration::from_millis(1_764_141_186_280);
    let t9 = UNIX_EPOCH + Duration::from_millis(1_764_141_187_000);
    store
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"zero"), t0)
        .await
        .unwrap();
    store
        .write_ltx_file(9, TxId(1), TxId(0x2a), &src.file(b"snapshot"), t9)
        .await
        .unwrap();

    let client = raw_client(&store).await;
    let mut keys: Vec<String> = client
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "app/db/0000/0000000000000001-0000000000000001.ltx",
            "app/db/0009/0000000000000001-000000000000002a.ltx",
        ]
    );
    let head = client
        .get_opts(
            &ObjPath::from("app/db/0000/0000000000000001-0000000000000001.ltx"),
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ts = head
        .attributes
        .get(&Attribute::Metadata(METADATA_TIMESTAMP.into()))
        .map(|v| v.as_ref().to_string());
    assert_eq!(ts.as_deref(), Some("2025-11-26T07:13:06.28Z"));

    // A store that never saw these files reads created_at from the metadata (one HEAD each).
    let fresh = moto_store(&bucket, "app/db");
    let l0 = fresh.ltx_files(0).await.unwrap();
    let l9 = fresh.ltx_files(9).await.unwrap();
    assert_eq!((l0.len(), l0[0].created_at, l0[0].size), (1, t0, 4));
    assert_eq!(
        (l9.len(), l9[0].created_at, l9[0].max_txid),
        (1, t9, TxId(0x2a))
    );

    // An object without the metadata (another tool's upload) reports its LastModified; foreign
    // names and deeper keys are not LTX files of the level.
    let before = SystemTime::now() - Duration::from_secs(5);
    for key in [
        "app/db/0000/0000000000000002-0000000000000002.ltx",
        "app/db/0000/README",
        "app/db/0000/x/0000000000000003-0000000000000003.ltx",
    ] {
        client
            .put(&ObjPath::from(key), PutPayload::from_static(b"plain"))
            .await
            .unwrap();
    }
    let l0 = fresh.ltx_files(0).await.unwrap();
    assert_eq!(l0.len(), 2, "{l0:?}");
    assert_eq!(l0[1].min_txid, TxId(2));
    assert!(
        l0[1].created_at > before,
        "LastModified expected: {:?}",
        l0[1].created_at
    );
    assert_eq!(l0[0].created_at, t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_large_file_goes_up_as_multipart_and_reads_back() {
    let endpoint = moto();
    let bucket = unique_bucket("multipart");
    create_bucket(&endpoint, &bucket);
    let store = store_with(
        &moto_url(&endpoint, &bucket, "big"),
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
        |c| c.concurrency = Some(2),
    );
    assert_eq!(store.settings().part_size, DEFAULT_PART_SIZE);
    let data = contract::test_bytes(2 * DEFAULT_PART_SIZE as usize + 12_345, 9);
    let mut src = Sources::new();
    let t = SystemTime::now();
    let info = store
        .write_ltx_file(9, TxId(1), TxId(100), &src.file(&data), t)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);

    // S3 gives a multipart object an ETag of `<md5 of part md5s>-<parts>`.
    let client = raw_client(&store).await;
    let head = client
        .get_opts(
            &ObjPath::from(store.key(9, TxId(1), TxId(100))),
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let etag = head.meta.e_tag.clone().unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "not a 3-part upload: ETag {etag}"
    );
    assert!(head
        .attributes
        .get(&Attribute::Metadata(METADATA_TIMESTAMP.into()))
        .is_some());

    assert!(contract::read_all(&store, 9, 1, 100, 0).await == data);
    let off = DEFAULT_PART_SIZE as usize + 7;
    assert!(contract::read_all(&store, 9, 1, 100, off as u64).await == data[off..]);
    // Resuming at the very end reads nothing.
    assert!(contract::read_all(&store, 9, 1, 100, data.len() as u64)
        .await
        .is_empty());
    let files = moto_store(&bucket, "big").ltx_files(9).await.unwrap();
    assert_eq!(files[0].size, data.len() as u64);
}

fn assert_permanent_naming(err: &StorageError, bucket: &str, want: &str, secret: &str) {
    let msg = err.to_string();
    assert!(
        matches!(err, StorageError::Permanent { .. }) && !err.is_retryable(),
        "want a permanent error, got {msg}"
    );
    assert!(
        msg.starts_with("s3: ") && msg.contains(bucket) && msg.contains(want),
        "{msg}"
    );
    assert!(!msg.contains(secret), "secret in {msg}");
}

#[tokio::test]
async fn s3_missing_bucket_is_permanent_and_named() {
    let bucket = unique_bucket("absent");
    let store = moto_store(&bucket, "app");
    let mut src = Sources::new();
    let e = store.ltx_files(0).await.unwrap_err();
    assert_permanent_naming(&e, &bucket, "NoSuchBucket", SECRET);
    let e = store
        .open_ltx_file(0, TxId(1), TxId(1), 0)
        .await
        .err()
        .unwrap();
    assert!(
        !e.is_not_found(),
        "a missing bucket is not a missing file: {e}"
    );
    assert_permanent_naming(&e, &bucket, "NoSuchBucket", SECRET);
    let e = store
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"x"), SystemTime::now())
        .await
        .unwrap_err();
    assert_permanent_naming(&e, &bucket, "NoSuchBucket", SECRET);
}

#[tokio::test]
async fn s3_wrong_secret_is_permanent_and_never_shown() {
    let wrong = "walstream-wrong-secret-d41d8cd9";
    let store = auth_store("wrong-secret", wrong);
    let bucket = need("WALSTREAM_TEST_S3_AUTH_BUCKET");
    let mut src = Sources::new();
    let e = store.ltx_files(0).await.unwrap_err();
    assert_permanent_naming(&e, &bucket, "SignatureDoesNotMatch", wrong);
    assert!(e.to_string().contains("403"), "{e}");
    let e = store
        .write_ltx_file(0, TxId(1), TxId(1), &src.file(b"x"), SystemTime::now())
        .await
        .unwrap_err();
    assert_permanent_naming(&e, &bucket, "403", wrong);
    assert!(!format!("{store:?}").contains(wrong));
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_transient() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = store_with(
        &format!("s3://b/p?endpoint=http://127.0.0.1:{port}"),
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
        |_| {},
    );
    let e = store.ltx_files(0).await.unwrap_err();
    let msg = e.to_string();
    assert!(e.is_retryable(), "{msg}");
    assert!(
        msg.contains("cannot connect") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.contains("s3://b/p/0000/"), "{msg}");
}

/// A server that answers every request with `status` and `body`, counting requests.
fn fixed_server(status: &'static str, body: &'static str) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn s3_http_errors_are_classified_for_retry() {
    for (status, body, retryable, not_found, want) in [
        ("503 Service Unavailable", "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>", true, false, "SlowDown"),
        ("500 Internal Server Error", "<Error><Code>InternalError</Code><Message>oops</Message></Error>", true, false, "HTTP 500"),
        ("429 Too Many Requests", "", true, false, "HTTP 429"),
        ("400 Bad Request", "<Error><Code>InvalidArgument</Code><Message>bad</Message></Error>", false, false, "InvalidArgument"),
        ("403 Forbidden", "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>", false, false, "AccessDenied"),
        ("404 Not Found", "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>", false, true, ""),
        ("400 Bad Request", "<Error><Code>InvalidToken</Code><Message>token walstream-test-secret</Message></Error>", false, false, "[REDACTED]"),
        ("404 Not Found", "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>", false, false, "NoSuchBucket"),
    ] {
        let (endpoint, hits) = fixed_server(status, body);
        let store = store_with(
            &format!("s3://bkt/p?endpoint={endpoint}"),
            &[("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET)],
            |_| {},
        );
        let e = store.open_ltx_file(0, TxId(1), TxId(1), 0).await.err().unwrap();
        let msg = e.to_string();
        assert_eq!((e.is_retryable(), e.is_not_found()), (retryable, not_found), "{status}: {msg}");
        assert!(msg.contains("s3://bkt/p/0000/0000000000000001-0000000000000001.ltx"), "{msg}");
        assert!(msg.contains(want), "{status}: {msg}");
        assert!(!msg.contains(SECRET) && !msg.contains('?'), "{msg}");
        // object_store itself retries what is retryable a few times, and nothing else.
        let n = hits.load(Ordering::SeqCst);
        if retryable {
            assert!(n > 1, "{status}: {n} requests");
        } else {
            assert_eq!(n, 1, "{status}");
        }
    }
}

#[tokio::test]
async fn s3_delete_in_batches_over_a_thousand_and_missing_keys() {
    let endpoint = moto();
    let bucket = unique_bucket("delete");
    create_bucket(&endpoint, &bucket);
    let store = moto_store(&bucket, "d");
    let client = raw_client(&store).await;
    // Made directly (faster than 1,200 writes through the store); the store finds them by listing.
    let keys: Vec<String> = (1..=1200u64)
        .map(|i| store.key(1, TxId(i), TxId(i)))
        .collect();
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let client = client.clone();
            async move {
                client
                    .put(&ObjPath::from(k), PutPayload::from_static(b"x"))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let files = store.ltx_files(1).await.unwrap();
    assert_eq!(files.len(), 1200);
    let mut doomed: Vec<LtxFileInfo> = files[..1100].to_vec();
    doomed.push(LtxFileInfo {
        min_txid: TxId(5000),
        max_txid: TxId(5000),
        ..files[0].clone()
    });
    store.delete_ltx_files(&doomed).await.unwrap();
    let left = store.ltx_files(1).await.unwrap();
    assert_eq!(left.len(), 100);
    assert_eq!(left[0].min_txid, TxId(1101));
}

#[test]
fn s3_open_url_dispatches_and_reports_bad_urls() {
    let s =
        crate::storage::open_url("s3://bkt/some/path?endpoint=http://127.0.0.1:9&region=us-east-1")
            .unwrap();
    assert_eq!(
        (s.kind(), s.describe().as_str()),
        ("s3", "s3://bkt/some/path")
    );
    let e = crate::storage::open_url("s3:///path?endpoint=http://127.0.0.1:9")
        .err()
        .unwrap();
    assert!(e.to_string().contains("bucket required"), "{e}");
    let e = crate::storage::open_url(
        "s3://bkt/p?endpoint=http://127.0.0.1:9&skipVerify=perhaps&token=hunter2",
    )
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("skipVerify") && !msg.contains("hunter2"),
        "{msg}"
    );
}

/// No credentials anywhere and no instance metadata service: a permanent error saying so.
#[tokio::test]
async fn s3_no_credentials_says_so() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let imds = format!("http://127.0.0.1:{port}");
    let store = store_with(
        "s3://bkt/p?endpoint=http://127.0.0.1:9",
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str())],
        |_| {},
    );
    let e = store.ltx_files(0).await.unwrap_err();
    let msg = e.to_string();
    assert!(!e.is_retryable(), "{msg}");
    assert!(
        msg.contains("no S3 credentials") && msg.contains("instance metadata"),
        "{msg}"
    );
}

/// Every network or protocol failure is transient: bytes that are not HTTP, a reset, a body cut
/// short (by `Content-Length` or inside a chunk), a body that does not parse. Listing and
/// reading, against servers that misbehave that way (no moto needed).
#[tokio::test]
async fn s3_protocol_failures_are_transient() {
    use crate::storage::bad_http::{server, Misbehave};
    for how in Misbehave::ALL {
        let (endpoint, hits) = server(how);
        let store = store_with(
            &format!("s3://bkt/p?endpoint={endpoint}&region=us-east-1&forcePathStyle=true"),
            &[
                ("AWS_ACCESS_KEY_ID", KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
            ],
            |_| {},
        );
        let e = store.ltx_files(0).await.unwrap_err();
        let msg = e.to_string();
        assert!(e.is_retryable(), "{how:?}: list: {msg}");
        assert!(msg.contains("s3://bkt/p/0000/"), "{how:?}: {msg}");
        assert!(!msg.contains(SECRET), "{msg}");
        if how == Misbehave::Garbage {
            assert!(msg.contains("invalid HTTP version parsed"), "{msg}");
        }
        // A read fails when it opens or while it streams; either way, transient.
        let e = match store.open_ltx_file(0, TxId(1), TxId(1), 0).await {
            Err(e) => e,
            Ok(stream) => match stream.try_collect::<Vec<_>>().await {
                Err(e) => e,
                // A whole (if wrong) body is the restore's size check's business.
                Ok(_) if how == Misbehave::Gibberish => continue,
                Ok(chunks) => panic!("{how:?}: read {} chunks", chunks.len()),
            },
        };
        let msg = e.to_string();
        assert!(e.is_retryable(), "{how:?}: read: {msg}");
        assert!(
            msg.contains("s3://bkt/p/0000/0000000000000001-0000000000000001.ltx"),
            "{how:?}: {msg}"
        );
        assert!(hits.load(Ordering::SeqCst) >= 2, "{how:?}");
    }
}
