//! object_store errors as [`StorageError`]s: what is worth retrying, and a short message with
//! the HTTP status and S3's error code and message (or the transport failure), never a secret or
//! a request's query string.
//!
//! object_store's errors carry the status and body only in their text (its `RetryError` is not
//! public), so the status, `<Code>` and `<Message>` are read from there; the transport failure
//! kind comes from the `HttpError` in the source chain.
use object_store::aws::AmazonS3ConfigKey;

use super::credential::Credentials;
use super::{Settings, BACKEND};
use crate::storage::StorageError;

/// An object_store error for `key` (relative to the bucket), classified, named
/// `s3://<bucket>/<key>` and scrubbed of every secret.
pub(super) fn to_storage_error(e: &object_store::Error, key: &str, s: &Settings) -> StorageError {
    let (class, message) = classify(e, s);
    let key = format!("s3://{}/{key}", s.bucket);
    let message = scrub(message, s);
    match class {
        Class::NotFound => StorageError::NotFound {
            backend: BACKEND,
            key,
        },
        Class::Transient => StorageError::Transient {
            backend: BACKEND,
            key,
            message,
        },
        Class::Permanent => StorageError::Permanent {
            backend: BACKEND,
            key,
            message,
        },
    }
}

/// `message` with every secret of `s` replaced.
pub(super) fn scrub(mut message: String, s: &Settings) -> String {
    for secret in s.secrets() {
        if message.contains(&secret) {
            message = message.replace(&secret, "[REDACTED]");
        }
    }
    message
}

/// How an error should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The object is missing.
    NotFound,
    /// Worth retrying.
    Transient,
    /// Not worth retrying.
    Permanent,
}

/// Classifies an object_store error and writes a short message for it: the HTTP status with
/// S3's error code and message, or the transport failure, never the request's query string.
pub(super) fn classify(e: &object_store::Error, s: &Settings) -> (Class, String) {
    use object_store::Error as E;
    let text = e.to_string();
    let status = status_code(&text);
    let code = xml_tag(&text, "Code");
    let s3_message = xml_tag(&text, "Message");
    let http_kind = http_error_kind(e);
    let retries = retries(&text);

    let status_msg = |st: u16| {
        let mut m = format!("HTTP {st}");
        match (&code, &s3_message) {
            (Some(c), Some(msg)) => m.push_str(&format!(": {c}: {msg}")),
            (Some(c), None) => m.push_str(&format!(": {c}")),
            _ => {
                if let Some(body) = body_after_status(&text) {
                    m.push_str(&format!(": {body}"));
                }
            }
        }
        m
    };
    let with_retries = |m: String| match retries {
        Some(n) => format!("{m} (after {n} retries)"),
        None => m,
    };

    if let Some(source) = credential_source(&text, s) {
        // The credential chain's last resort failed: say that no credentials were found. Only a
        // 5xx from the credential service is worth retrying.
        let detail = match status {
            Some(st) => status_msg(st),
            None => innermost(e),
        };
        let class = if status.is_some_and(|st| st >= 500) {
            Class::Transient
        } else {
            Class::Permanent
        };
        return (
            class,
            format!(
                "no S3 credentials: none in the replica config (access-key-id, \
                 secret-access-key), LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY, \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS profile, and getting them \
                 from {source} failed: {detail}"
            ),
        );
    }
    if code.as_deref() == Some("NoSuchBucket") {
        return (
            Class::Permanent,
            format!("bucket {:?} does not exist (NoSuchBucket)", s.bucket),
        );
    }
    if let E::NotFound { .. } = e {
        return (Class::NotFound, "not found".to_string());
    }
    let transient_code = matches!(
        code.as_deref(),
        Some(
            "SlowDown"
                | "InternalError"
                | "ServiceUnavailable"
                | "RequestTimeout"
                | "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
        )
    );
    if let Some(st) = status {
        let class = if transient_code || st >= 500 || st == 429 || st == 408 {
            Class::Transient
        } else {
            Class::Permanent
        };
        return (class, with_retries(status_msg(st)));
    }
    if transient_code {
        return (
            Class::Transient,
            with_retries(format!(
                "{}{}",
                code.clone().unwrap_or_default(),
                s3_message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
        );
    }
    if let Some(kind) = http_kind {
        use object_store::client::HttpErrorKind as K;
        let detail = innermost(e);
        let what = match kind {
            K::Connect => "cannot connect",
            K::Request => "request failed",
            K::Timeout => "timed out",
            K::Interrupted => "connection interrupted",
            K::Decode => "reading the response failed",
            _ => "HTTP error",
        };
        let class = if crate::storage::http_failure_is_transient(kind, &detail) {
            Class::Transient
        } else {
            Class::Permanent
        };
        return (
            class,
            with_retries(format!("{what} to {}: {detail}", s.endpoint_for_messages())),
        );
    }
    let class = match e {
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::Precondition { .. }
        | E::AlreadyExists { .. }
        | E::NotModified { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => Class::Permanent,
        E::JoinError { .. } => Class::Transient,
        _ => {
            if text.contains("incorrectly configured region") {
                Class::Permanent
            } else {
                // Unrecognised, such as a response that did not parse (a garbled or cut-short
                // listing: "tag not closed: `>` not found before end of input"): worth another
                // try.
                Class::Transient
            }
        }
    };
    (class, with_retries(strip_queries(&innermost(e))))
}

/// Which credential service an error came from, when the store relies on object_store's chain.
fn credential_source(text: &str, s: &Settings) -> Option<&'static str> {
    if s.credentials != Credentials::Chain {
        return None;
    }
    if text.contains("169.254.170.2")
        || s.chain_config
            .iter()
            .any(|(k, v)| *k == AmazonS3ConfigKey::ContainerCredentialsFullUri && text.contains(v))
    {
        Some("the container credentials endpoint")
    } else if text.contains("AssumeRoleWithWebIdentity") || text.contains("sts.") {
        Some("web identity (AWS_WEB_IDENTITY_TOKEN_FILE)")
    } else if text.contains("169.254.169.254") || text.contains("/latest/api/token") {
        Some("the EC2 instance metadata service")
    } else {
        None
    }
}

/// The status in object_store's "status code: 404 Not Found" text.
fn status_code(text: &str) -> Option<u16> {
    let i = text.find("status code: ")? + "status code: ".len();
    text.get(i..i + 3)?.parse().ok()
}

/// The response body after "status code: NNN Reason: ", trimmed, when it is not XML.
fn body_after_status(text: &str) -> Option<String> {
    let i = text.find("status code: ")?;
    let rest = &text[i..];
    let (_, body) = rest
        .split_once(": ")
        .and_then(|(_, r)| r.split_once(": "))?;
    let body = body.trim();
    if body.is_empty() || body.starts_with('<') {
        return None;
    }
    Some(body.chars().take(200).collect())
}

fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let i = text.find(&open)? + open.len();
    let j = text[i..].find(&close)? + i;
    Some(text[i..j].trim().to_string()).filter(|s| !s.is_empty())
}

fn retries(text: &str) -> Option<usize> {
    let i = text.find("after ")? + "after ".len();
    let rest = &text[i..];
    let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    rest[n.len()..]
        .starts_with(" retries")
        .then(|| n.parse().ok())
        .flatten()
}

fn http_error_kind(e: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            return Some(h.kind());
        }
        cur = err.source();
    }
    None
}

/// The deepest error's text (the actual cause), without URLs' query strings.
fn innermost(e: &object_store::Error) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    strip_queries(&cur.to_string())
}

/// Drops `?query` from every URL in `text`.
fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut skipping = false;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_url = false;
            skipping = false;
        } else if !in_url
            && (bytes[i..].starts_with(b"http://") || bytes[i..].starts_with(b"https://"))
        {
            in_url = true;
        } else if in_url && c == '?' {
            skipping = true;
        }
        if !skipping {
            out.push(c);
        }
    }
    out
}

pub(super) fn is_range_not_satisfiable(e: &object_store::Error) -> bool {
    let t = e.to_string();
    status_code(&t) == Some(416)
        || t.contains("InvalidRange")
        || t.contains("Range Not Satisfiable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_text_helpers() {
        let t = "Generic S3 error: Error performing GET http://h:1/b?list-type=2&prefix=a in 2ms, after 3 retries, max_retries: 3, retry_timeout: 60s  - Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code><Message>Reduce</Message></Error>";
        assert_eq!(status_code(t), Some(503));
        assert_eq!(xml_tag(t, "Code").as_deref(), Some("SlowDown"));
        assert_eq!(retries(t), Some(3));
        assert_eq!(
            strip_queries("GET http://h:1/b?x=secret in 2ms"),
            "GET http://h:1/b in 2ms"
        );
        assert_eq!(
            body_after_status("status code: 502 Bad Gateway: proxy says no").as_deref(),
            Some("proxy says no")
        );
    }
}
