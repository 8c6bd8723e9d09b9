//! Config resolution and the credential path; the store itself is tested against
//! fake-gcs-server in `tests/it/gcs.rs`.
use super::*;
use tokio::io::AsyncReadExt;

#[test]
fn gcs_bucket_and_path_from_url_or_keys() {
    let c = GcsOptions {
        url: Some("gs://bkt/a//b/./db/".into()),
        ..Default::default()
    };
    assert_eq!(
        bucket_and_prefix(&c).unwrap(),
        ("bkt".into(), "a/b/db".into())
    );
    let c = GcsOptions {
        bucket: Some("bkt".into()),
        path: Some("/db".into()),
        ..Default::default()
    };
    assert_eq!(bucket_and_prefix(&c).unwrap(), ("bkt".into(), "db".into()));
    let c = GcsOptions {
        ..Default::default()
    };
    let err = bucket_and_prefix(&c).unwrap_err();
    assert!(err.to_string().contains("bucket required"), "{err}");
}

/// Answers one HTTP request with an empty object listing; returns the request's head.
async fn one_request_server() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request ended");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"kind":"storage#objects"}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (base, task)
}

fn b64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

/// The production credential path, short of Google itself: a service account key file (as
/// `$GOOGLE_APPLICATION_CREDENTIALS` names it) becomes a self-signed RS256 JWT for the
/// service account, sent as the bearer token; its signature verifies with the key.
#[tokio::test]
async fn gcs_service_account_key_signs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&key).unwrap();
    let creds = dir.path().join("sa.json");
    std::fs::write(
        &creds,
        serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-1",
            "private_key": pem,
            "client_email": "walstream@p.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string(),
    )
    .unwrap();
    let (base, server) = one_request_server().await;
    let store = GcsStore::build(
        "bkt".into(),
        "db".into(),
        base,
        Auth::Google {
            credentials_file: Some(creds.to_str().unwrap().into()),
        },
    )
    .unwrap();
    assert!(store.ltx_files(0).await.unwrap().is_empty());
    let head = server.await.unwrap();
    assert!(
        head.starts_with("GET /storage/v1/b/bkt/o?prefix=db%2Fltx%2F0%2F&"),
        "{head}"
    );
    let auth = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        })
        .expect("no Authorization header");
    let jwt = auth.strip_prefix("Bearer ").expect("not a bearer token");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header: serde_json::Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("RS256"), Some("kid-1"))
    );
    assert_eq!(claims["iss"], "walstream@p.iam.gserviceaccount.com");
    assert!(
        claims["scope"]
            .as_str()
            .unwrap_or("")
            .contains("cloud-platform"),
        "{claims}"
    );
    // The signature verifies with the service account's public key.
    let signed = dir.path().join("signed");
    let sig = dir.path().join("sig");
    std::fs::write(&signed, format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(&sig, b64url(parts[2])).unwrap();
    let ok = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-prverify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&signed)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn gcs_unreadable_credentials_file_is_a_clear_permanent_error() {
    let err = GcsStore::build(
        "bkt".into(),
        String::new(),
        "http://127.0.0.1:1".into(),
        Auth::Google {
            credentials_file: Some("/nonexistent/sa.json".into()),
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        !err.is_retryable() && msg.contains("cannot set up Google credentials"),
        "{msg}"
    );
}

/// Every network or protocol failure is transient: bytes that are not HTTP, a reset, a body cut
/// short, a listing that does not parse. Against servers that misbehave that way.
#[tokio::test]
async fn gcs_protocol_failures_are_transient() {
    use crate::storage::bad_http::{server, Misbehave};
    for how in Misbehave::ALL {
        let (endpoint, _) = server(how);
        let store = GcsStore::build("bkt".into(), "db".into(), endpoint, Auth::Anonymous).unwrap();
        let e = store.ltx_files(0).await.unwrap_err();
        let msg = e.to_string();
        assert!(e.is_retryable(), "{how:?}: list: {msg}");
        assert!(msg.contains("bkt"), "{how:?}: {msg}");
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
