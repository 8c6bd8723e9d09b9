//! The few calls of the GCS JSON API a replica needs, over reqwest: list with metadata, media
//! download by range, multipart and resumable upload with metadata, delete, and the
//! generation-conditional read and write of the lease.
//!
//! object_store's GCS client speaks the XML API, which no GCS emulator serves; the JSON API is
//! what Google's own clients use and what `fake-gcs-server` (the test server) implements.
use std::collections::HashMap;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// Everything but RFC 3986's unreserved characters: object names go in a path segment or a
/// query value, `/` included.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Resumable uploads send chunks of this size (a multiple of 256 KiB, as GCS requires).
pub(super) const CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug)]
pub(super) enum ApiFailure {
    /// The service answered with an error status and, usually, a message.
    Status { status: u16, message: String },
    /// No (whole) answer: connect, timeout, reset, a body cut short.
    Transport(reqwest::Error),
    /// An answer that does not parse, or a credential that cannot be had.
    Other { message: String, transient: bool },
}

/// One listed object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object {
    /// Full object name.
    pub name: String,
    /// Size in bytes (the JSON API sends a decimal string).
    #[serde(default, deserialize_with = "de_u64_string")]
    pub size: u64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub time_created: Option<String>,
    /// Custom metadata.
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
}

fn de_u64_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        U(u64),
    }
    match N::deserialize(d)? {
        N::U(u) => Ok(u),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// An object resource's generation (a decimal string in the JSON API).
#[derive(Debug, Deserialize)]
struct Generation {
    #[serde(deserialize_with = "de_u64_string")]
    generation: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A bucket behind the JSON API.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub http: reqwest::Client,
    /// `https://storage.googleapis.com`, or an emulator's address.
    pub base: String,
    pub bucket: String,
}

/// An `Authorization` header value, or none (emulators).
pub(super) type Bearer = Option<String>;

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ApiFailure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    // {"error":{"code":404,"message":"…"}}, or plain text from some servers.
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect());
    Err(ApiFailure::Status {
        status: status.as_u16(),
        message,
    })
}

fn with_auth(rb: reqwest::RequestBuilder, bearer: &Bearer) -> reqwest::RequestBuilder {
    match bearer {
        Some(token) if !token.is_empty() => rb.bearer_auth(token),
        _ => rb,
    }
}

impl Api {
    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            enc(&self.bucket),
            enc(name)
        )
    }

    /// Every object whose name starts with `prefix`.
    pub async fn list(&self, prefix: &str, bearer: &Bearer) -> Result<Vec<Object>, ApiFailure> {
        let url = format!("{}/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!(
                "{url}?prefix={}&maxResults=1000&fields={}",
                enc(prefix),
                enc("items(name,size,timeCreated,metadata),nextPageToken")
            );
            if let Some(t) = &token {
                q.push_str("&pageToken=");
                q.push_str(&enc(t));
            }
            let resp = with_auth(self.http.get(q), bearer)
                .send()
                .await
                .map_err(ApiFailure::Transport)?;
            let page: ObjectList = check(resp)
                .await?
                .json()
                .await
                .map_err(ApiFailure::Transport)?;
            out.extend(page.items);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The object's bytes from `offset`; `Ok(None)` when `offset` is at or past its end.
    pub async fn download(
        &self,
        name: &str,
        offset: u64,
        bearer: &Bearer,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, reqwest::Error>>>, ApiFailure> {
        let mut rb = self
            .http
            .get(format!("{}?alt=media", self.object_url(name)));
        if offset > 0 {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let resp = with_auth(rb, bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        if offset > 0 && resp.status() == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(None);
        }
        let resp = check(resp).await?;
        // A server that ignores Range answers 200 with the whole object: skip to `offset`.
        let skip = if offset > 0 && resp.status() == reqwest::StatusCode::OK {
            offset
        } else {
            0
        };
        let stream = resp.bytes_stream();
        if skip == 0 {
            return Ok(Some(stream.boxed()));
        }
        let skipped = stream
            .scan(skip, |left, chunk| {
                let out = chunk.map(|mut b| {
                    let n = (*left).min(b.len() as u64) as usize;
                    *left -= n as u64;
                    b.split_off(n)
                });
                futures::future::ready(Some(out))
            })
            .try_filter(|b| futures::future::ready(!b.is_empty()));
        Ok(Some(skipped.boxed()))
    }

    /// Uploads `data` as `name` in one multipart request: metadata and bytes together.
    pub async fn upload_multipart(
        &self,
        name: &str,
        metadata: &serde_json::Value,
        data: Vec<u8>,
        bearer: &Bearer,
    ) -> Result<(), ApiFailure> {
        self.multipart(name, metadata, data, None, bearer)
            .await
            .map(drop)
    }

    /// Uploads `data` as `name` only if the object's generation is `generation` (0: only if
    /// there is no such object); returns the new generation. A failed condition is a 412.
    pub async fn upload_if_generation(
        &self,
        name: &str,
        data: Vec<u8>,
        generation: u64,
        bearer: &Bearer,
    ) -> Result<u64, ApiFailure> {
        let metadata = serde_json::json!({});
        let resp = self
            .multipart(name, &metadata, data, Some(generation), bearer)
            .await?;
        let o: Generation = resp.json().await.map_err(ApiFailure::Transport)?;
        Ok(o.generation)
    }

    /// The object's current generation, or `None` when there is no such object.
    pub async fn generation(&self, name: &str, bearer: &Bearer) -> Result<Option<u64>, ApiFailure> {
        let url = format!("{}?fields=generation", self.object_url(name));
        let resp = with_auth(self.http.get(url), bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let o: Generation = check(resp)
            .await?
            .json()
            .await
            .map_err(ApiFailure::Transport)?;
        Ok(Some(o.generation))
    }

    /// The bytes of generation `generation` of the object, or `None` when the object is gone
    /// or at another generation now (404 or 412).
    pub async fn download_generation(
        &self,
        name: &str,
        generation: u64,
        bearer: &Bearer,
    ) -> Result<Option<Bytes>, ApiFailure> {
        let url = format!(
            "{}?alt=media&ifGenerationMatch={generation}",
            self.object_url(name)
        );
        let resp = with_auth(self.http.get(url), bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        if matches!(resp.status().as_u16(), 404 | 412) {
            return Ok(None);
        }
        check(resp)
            .await?
            .bytes()
            .await
            .map(Some)
            .map_err(ApiFailure::Transport)
    }

    async fn multipart(
        &self,
        name: &str,
        metadata: &serde_json::Value,
        data: Vec<u8>,
        if_generation_match: Option<u64>,
        bearer: &Bearer,
    ) -> Result<reqwest::Response, ApiFailure> {
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base,
            enc(&self.bucket)
        );
        if let Some(g) = if_generation_match {
            url.push_str(&format!("&ifGenerationMatch={g}"));
        }
        let boundary = boundary_for(&data);
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n",
                object_resource(name, metadata)
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let rb = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body);
        let resp = with_auth(rb, bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        check(resp).await
    }

    /// Starts a resumable upload of `len` bytes; returns the session URL.
    pub async fn start_resumable(
        &self,
        name: &str,
        metadata: &serde_json::Value,
        len: u64,
        bearer: &Bearer,
    ) -> Result<String, ApiFailure> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable",
            self.base,
            enc(&self.bucket)
        );
        let rb = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", len.to_string())
            .body(object_resource(name, metadata));
        let resp = with_auth(rb, bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        let resp = check(resp).await?;
        resp.headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ApiFailure::Other {
                message: "resumable upload started without a session URL".to_string(),
                transient: false,
            })
    }

    /// Sends bytes `start..start+chunk.len()` of a `total`-byte resumable upload. The last chunk
    /// completes it.
    pub async fn put_chunk(
        &self,
        session: &str,
        start: u64,
        chunk: Vec<u8>,
        total: u64,
        bearer: &Bearer,
    ) -> Result<(), ApiFailure> {
        let end = start + chunk.len() as u64;
        let range = if chunk.is_empty() {
            format!("bytes */{total}")
        } else {
            format!("bytes {start}-{}/{total}", end - 1)
        };
        let rb = self
            .http
            .put(session)
            .header(reqwest::header::CONTENT_RANGE, range)
            .body(chunk);
        let resp = with_auth(rb, bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        // 308 Resume Incomplete: the chunk is in, more are expected.
        if resp.status().as_u16() == 308 && end < total {
            return Ok(());
        }
        check(resp).await.map(drop)
    }

    /// Deletes an object; `Ok(false)` if there was none.
    pub async fn delete(&self, name: &str, bearer: &Bearer) -> Result<bool, ApiFailure> {
        let resp = with_auth(self.http.delete(self.object_url(name)), bearer)
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(resp).await.map(|_| true)
    }
}

/// The JSON object resource of an upload: name, content type and custom metadata.
fn object_resource(name: &str, metadata: &serde_json::Value) -> String {
    serde_json::json!({
        "name": name,
        "contentType": "application/octet-stream",
        "metadata": metadata,
    })
    .to_string()
}

/// A multipart boundary that does not occur in `data`.
fn boundary_for(data: &[u8]) -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (data.len() as u64).rotate_left(32);
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = format!("walstream-{seed:016x}");
        if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
            return b;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gcs_object_names_encode_as_one_component() {
        assert_eq!(
            enc("db/ltx/0/0000000000000001-0000000000000001.ltx"),
            "db%2Fltx%2F0%2F0000000000000001-0000000000000001.ltx"
        );
        assert_eq!(enc("a b+c?d"), "a%20b%2Bc%3Fd");
    }

    #[test]
    fn gcs_object_listing_parses_string_sizes_and_metadata() {
        let l: ObjectList = serde_json::from_str(
            r#"{"kind":"storage#objects","items":[{"name":"p/ltx/0/x","size":"12",
            "timeCreated":"2023-11-14T22:13:20.5Z","metadata":{"litestream-timestamp":"t"}},
            {"name":"y","size":3}],"nextPageToken":"n"}"#,
        )
        .unwrap();
        assert_eq!(l.items[0].size, 12);
        assert_eq!(l.items[1].size, 3);
        assert_eq!(
            l.items[0].metadata.as_ref().unwrap()["litestream-timestamp"],
            "t"
        );
        assert_eq!(l.next_page_token.as_deref(), Some("n"));
        let empty: ObjectList = serde_json::from_str(r#"{"kind":"storage#objects"}"#).unwrap();
        assert!(empty.items.is_empty() && empty.next_page_token.is_none());
    }

    #[test]
    fn gcs_boundary_avoids_the_data() {
        let b = boundary_for(b"hello");
        assert!(b.starts_with("walstream-"));
        let data = format!("xx{b}yy");
        assert_ne!(boundary_for(data.as_bytes()), b);
    }
}
