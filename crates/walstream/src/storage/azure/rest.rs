//! The two calls made without object_store: List Blobs with `include=metadata` (one request per
//! 5,000 blobs that brings each blob's `litestreamtimestamp` along, which object_store's listing
//! leaves out), and Delete Blob (object_store deletes through the Blob Batch API, which not every
//! service or SAS accepts; Azurite answers a batch under a SAS with a 500).
//!
//! Each request is authorized by object_store's [`AzureAuthorizer`] with a credential from the
//! store's own provider (shared key, SAS or bearer token), and sent by object_store's HTTP
//! client, so it goes wherever and however the store's other requests go.
use std::collections::HashMap;
use std::time::SystemTime;

use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequestBody, ReqwestConnector,
};
use object_store::ClientOptions;
use serde::Deserialize;

/// Blobs per List Blobs page (the service's maximum).
const PAGE_SIZE: &str = "5000";

/// One listed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlobItem {
    /// Full blob name.
    pub name: String,
    /// Content length.
    pub size: u64,
    /// The service's creation time (Last-Modified when the service gives none).
    pub created: Option<SystemTime>,
    /// The `litestreamtimestamp` metadata, as stored.
    pub timestamp: Option<String>,
}

/// Why a call failed.
#[derive(Debug)]
pub(super) enum RestFailure {
    /// The service answered with an error status; `code` is Azure's error code.
    Status { status: u16, code: Option<String> },
    /// No answer: connect, timeout, reset.
    Http(HttpError),
    /// Worth retrying, though not an HTTP failure (a credential fetch that failed in transit, an
    /// answer that does not parse).
    Transient(String),
    /// Not worth retrying (a bad credential set-up, a request that cannot be built). An answer
    /// that does not parse is [`RestFailure::Transient`]: a proxy may have garbled it.
    Other(String),
}

/// Talks to one container.
#[derive(Debug)]
pub(super) struct RestClient {
    http: HttpClient,
    container_url: reqwest::Url,
    account: String,
    credentials: AzureCredentialProvider,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<Blob>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Blob {
    name: String,
    properties: Properties,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct Properties {
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Creation-Time", default)]
    creation_time: Option<String>,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
}

impl RestClient {
    /// A client for `<endpoint>/<container>`.
    pub(super) fn new(
        endpoint: &str,
        container: &str,
        account: String,
        credentials: AzureCredentialProvider,
        options: &ClientOptions,
    ) -> Result<RestClient, String> {
        let mut container_url = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("invalid endpoint {endpoint:?}: {e}"))?;
        container_url
            .path_segments_mut()
            .map_err(|()| format!("invalid endpoint {endpoint:?}: cannot hold a path"))?
            .pop_if_empty()
            .push(container);
        let http = ReqwestConnector::default()
            .connect(options)
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(RestClient {
            http,
            container_url,
            account,
            credentials,
        })
    }

    /// Every blob whose name starts with `prefix`, in the service's (lexicographic) order.
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<BlobItem>, RestFailure> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self.page(prefix, marker.as_deref()).await?;
            for b in page.blobs.blob {
                let timestamp = b.metadata.as_ref().and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(super::TIMESTAMP_METADATA))
                        .map(|(_, v)| v.clone())
                });
                let created = b
                    .properties
                    .creation_time
                    .as_deref()
                    .or(b.properties.last_modified.as_deref())
                    .and_then(|t| httpdate::parse_http_date(t).ok());
                out.push(BlobItem {
                    name: b.name,
                    size: b.properties.content_length,
                    created,
                    timestamp,
                });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    async fn page(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<EnumerationResults, RestFailure> {
        let mut url = self.container_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("include", "metadata")
                .append_pair("maxresults", PAGE_SIZE)
                .append_pair("prefix", prefix);
            if let Some(m) = marker {
                q.append_pair("marker", m);
            }
        }
        let (status, body) = self.send(http::Method::GET, &url, &[]).await?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body);
            return Err(RestFailure::Status {
                status,
                code: super::error_code(&text),
            });
        }
        let text = String::from_utf8_lossy(&body);
        quick_xml::de::from_str(&text)
            .map_err(|e| RestFailure::Transient(format!("cannot parse List Blobs answer: {e}")))
    }
}

impl RestClient {
    /// Deletes one blob; `Ok(false)` if it (or its container) was not there.
    pub(super) async fn delete(&self, blob: &str) -> Result<bool, RestFailure> {
        let mut url = self.container_url.clone();
        url.path_segments_mut()
            .map_err(|()| RestFailure::Other("endpoint cannot hold a path".into()))?
            .extend(blob.split('/'));
        let (status, body) = self
            .send(
                http::Method::DELETE,
                &url,
                &[("x-ms-delete-snapshots", "include")],
            )
            .await?;
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(RestFailure::Status {
                status,
                code: super::error_code(&String::from_utf8_lossy(&body)),
            }),
        }
    }

    /// Sends an authorized request without a body; returns the status and the body.
    async fn send(
        &self,
        method: http::Method,
        url: &reqwest::Url,
        headers: &[(&'static str, &'static str)],
    ) -> Result<(u16, bytes::Bytes), RestFailure> {
        let credential = self.credentials.get_credential().await.map_err(|e| {
            if has_http_error(&e) {
                RestFailure::Transient(format!("cannot get a credential: {e}"))
            } else {
                RestFailure::Other(format!("cannot get a credential: {e}"))
            }
        })?;
        let mut builder = http::Request::builder().method(method).uri(url.as_str());
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut request = builder
            .body(HttpRequestBody::empty())
            .map_err(|e| RestFailure::Other(format!("cannot build request: {e}")))?;
        AzureAuthorizer::new(&credential, &self.account)
            .try_authorize(&mut request)
            .map_err(|e| RestFailure::Other(format!("cannot sign request: {e}")))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(RestFailure::Http)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(RestFailure::Http)?;
        Ok((status, body))
    }
}

fn has_http_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<HttpError>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_blobs_answer_parses_with_metadata_and_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:1/devstoreaccount1" ContainerName="c">
  <Prefix>db/ltx/0/</Prefix><MaxResults>5000</MaxResults>
  <Blobs>
    <Blob><Name>db/ltx/0/0000000000000001-0000000000000001.ltx</Name>
      <Properties><Creation-Time>Tue, 14 Nov 2023 22:13:20 GMT</Creation-Time>
        <Last-Modified>Tue, 14 Nov 2023 22:13:21 GMT</Last-Modified>
        <Content-Length>1234</Content-Length><BlobType>BlockBlob</BlobType></Properties>
      <Metadata><litestreamtimestamp>2023-11-14T22:13:20.123Z</litestreamtimestamp></Metadata>
    </Blob>
    <Blob><Name>db/ltx/0/x</Name>
      <Properties><Last-Modified>Tue, 14 Nov 2023 22:13:21 GMT</Last-Modified>
        <Content-Length>0</Content-Length></Properties><Metadata /></Blob>
  </Blobs>
  <NextMarker>abc</NextMarker>
</EnumerationResults>"#;
        let r: EnumerationResults = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(r.next_marker.as_deref(), Some("abc"));
        assert_eq!(r.blobs.blob.len(), 2);
        let b = &r.blobs.blob[0];
        assert_eq!(b.properties.content_length, 1234);
        assert_eq!(
            b.metadata.as_ref().unwrap()["litestreamtimestamp"],
            "2023-11-14T22:13:20.123Z"
        );
        assert!(r.blobs.blob[1]
            .metadata
            .as_ref()
            .is_none_or(|m| m.is_empty()));
        let empty: EnumerationResults = quick_xml::de::from_str(
            r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#,
        )
        .unwrap();
        assert!(empty.blobs.blob.is_empty());
        assert!(empty.next_marker.is_none_or(|m| m.is_empty()));
    }
}
