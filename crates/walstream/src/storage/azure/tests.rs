//! Config resolution and error hygiene; the store itself is tested against Azurite in
//! `tests/it/azure.rs`.
use super::*;

fn cfg(url: Option<&str>) -> AzureOptions {
    AzureOptions {
        url: url.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn azure_settings_from_url() {
    let s = Settings::from_config(&cfg(Some("abs://acct@cont/a/./b/../db/"))).unwrap();
    assert_eq!(s.account.as_deref(), Some("acct"));
    assert_eq!(s.container, "cont");
    assert_eq!(s.prefix, "a/db");
    assert_eq!(s.endpoint(), "https://acct.blob.core.windows.net");
    let s = Settings::from_config(&cfg(Some(
        "abs://devstoreaccount1@c?endpoint=http://127.0.0.1:10000/devstoreaccount1/",
    )))
    .unwrap();
    assert_eq!(s.prefix, "");
    assert_eq!(s.endpoint(), "http://127.0.0.1:10000/devstoreaccount1");
}

#[test]
fn azure_settings_from_keys_and_endpoint_account() {
    let c = AzureOptions {
        bucket: Some("cont".into()),
        path: Some("/db".into()),
        endpoint: Some("http://127.0.0.1:1/devstoreaccount1".into()),
        account_key: Some("c2VjcmV0".into()),
        ..Default::default()
    };
    let s = Settings::from_config(&c).unwrap();
    assert_eq!((s.container.as_str(), s.prefix.as_str()), ("cont", "db"));
    // Without account-name, an emulator-style endpoint names the account.
    assert_eq!(s.account().as_deref(), Some("devstoreaccount1"));
    assert!(!format!("{s:?}").contains("c2VjcmV0"));
    let store = AzureStore::new(&c).unwrap();
    assert_eq!(store.describe(), "abs://devstoreaccount1@cont/db");
    assert_eq!(store.kind(), "abs");
    assert_eq!(
        store.blob_name(9, TxId(1), TxId(0x2a)),
        "db/ltx/9/0000000000000001-000000000000002a.ltx"
    );
}

#[test]
fn azure_settings_missing_container_or_account_is_clear() {
    let err = Settings::from_config(&AzureOptions {
        account_name: Some("a".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("container required"), "{err}");
    let err = Settings::from_config(&cfg(Some("abs://cont/db"))).unwrap_err();
    assert!(err.to_string().contains("account name required"), "{err}");
}

#[test]
fn azure_bad_account_key_names_the_key_not_its_value() {
    let c = AzureOptions {
        url: Some("abs://acct@cont/db".into()),
        account_key: Some("not base64 at all!!".into()),
        ..Default::default()
    };
    let err = AzureStore::new(&c).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("account-key is not valid base64"), "{msg}");
    assert!(!msg.contains("not base64 at all"), "{msg}");
    assert!(!err.is_retryable());
}

#[test]
fn azure_scrub_removes_secrets_and_queries() {
    let ctx = ErrorContext {
        container: "c".into(),
        endpoint: "http://x".into(),
        secrets: Arc::new(vec!["hunter2hunter2".into()]),
    };
    let msg = ctx.scrub("GET http://h/c/b?sv=1&sig=abc failed: key hunter2hunter2");
    assert_eq!(msg, "GET http://h/c/b failed: key <redacted>");
}

#[test]
fn azure_error_code_is_read_from_body() {
    assert_eq!(
        error_code("<?xml?><Error><Code>ContainerNotFound</Code><Message>x</Message></Error>")
            .as_deref(),
        Some("ContainerNotFound")
    );
    assert_eq!(error_code("nothing"), None);
}

#[test]
fn azure_timestamps_round_trip_as_go_writes_them() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    assert_eq!(rfc3339_nanos(t), "2023-11-14T22:13:20.123000000Z");
    assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123Z"), Some(t));
    assert_eq!(parse_rfc3339(&rfc3339_nanos(t)), Some(t));
    assert_eq!(parse_rfc3339("garbage"), None);
}

/// Every network or protocol failure is transient: bytes that are not HTTP, a reset, a body cut
/// short, a listing that does not parse. Against servers that misbehave that way.
#[tokio::test]
async fn azure_protocol_failures_are_transient() {
    use crate::storage::bad_http::{server, Misbehave};
    for how in Misbehave::ALL {
        let (endpoint, _) = server(how);
        let c = AzureOptions {
            url: Some(format!(
                "abs://devstoreaccount1@cont/db?endpoint={endpoint}/devstoreaccount1"
            )),
            account_key: Some("c2VjcmV0".into()),
            ..Default::default()
        };
        let store = AzureStore::new(&c).unwrap();
        let e = store.ltx_files(0).await.unwrap_err();
        let msg = e.to_string();
        assert!(e.is_retryable(), "{how:?}: list: {msg}");
        assert!(msg.contains("cont/db"), "{how:?}: {msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        let e = match store.open_ltx_file(0, TxId(1), TxId(1), 0).await {
            Err(e) => e,
            Ok(stream) => match futures::TryStreamExt::try_collect::<Vec<_>>(stream).await {
                Err(e) => e,
                Ok(_) if how == Misbehave::Gibberish => continue,
                Ok(chunks) => panic!("{how:?}: read {} chunks", chunks.len()),
            },
        };
        assert!(e.is_retryable(), "{how:?}: read: {e}");
    }
}
