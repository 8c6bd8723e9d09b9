//! `s3://` URLs as Litestream 0.5.17 reads them: the host (`ParseHost`: bucket, and for known
//! providers region and endpoint), the path (cleaned, leading `/` dropped) and the query.
use super::builder::DEFAULT_REGION;
use crate::paths::{host_and_path, redact_url as redact_query};

/// A parsed `s3://host/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    /// What the host says.
    pub host: HostInfo,
    /// The path, percent-decoded.
    pub path: String,
    /// Query pairs, percent-decoded.
    pub query: Vec<(String, String)>,
}

pub(crate) fn parse_url(url: &str) -> Result<S3Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not a URL: {}", redact_query(url)))?;
    if !scheme.eq_ignore_ascii_case("s3") {
        return Err(format!("not an s3:// URL: {}", redact_query(url)));
    }
    let rest = rest.split('#').next().unwrap_or("");
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = host_and_path(rest);
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(S3Url {
        host: parse_host(host),
        path: percent_decode(path),
        query,
    })
}

/// What Litestream 0.5.17's `ParseHost` reads from an `s3://` URL's host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HostInfo {
    /// Bucket name.
    pub bucket: String,
    /// Region, for hosts that name one.
    pub region: Option<String>,
    /// Endpoint of a known provider.
    pub endpoint: Option<String>,
    /// Whether the provider wants path-style addressing.
    pub force_path_style: bool,
}

pub(crate) fn parse_host(host: &str) -> HostInfo {
    let info = |bucket: &str, region: &str, endpoint: Option<String>, fps: bool| HostInfo {
        bucket: bucket.to_string(),
        region: Some(region.to_string()).filter(|r| !r.is_empty()),
        endpoint,
        force_path_style: fps,
    };
    // `bucket.host:port` (MinIO and other local servers).
    if host.contains(':') && !host.contains(".com") {
        return match host.split_once('.') {
            Some((bucket, rest)) => {
                info(bucket, DEFAULT_REGION, Some(format!("http://{rest}")), true)
            }
            None => info("", "", Some(format!("http://{host}")), true),
        };
    }
    // `bucket.s3[.region].amazonaws.com`
    if let Some(rest) = host.strip_suffix(".amazonaws.com") {
        if let Some(bucket) = rest.strip_suffix(".s3").filter(|b| !b.is_empty()) {
            return info(bucket, "", None, false);
        }
        if let Some((before, region)) = rest.rsplit_once('.') {
            if let Some(bucket) = before.strip_suffix(".s3").filter(|b| !b.is_empty()) {
                return info(bucket, region, None, false);
            }
        }
    }
    // `[bucket.]region.digitaloceanspaces.com`
    if let Some(rest) = host.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = rest.rsplit_once('.').unwrap_or(("", rest));
        if !region.is_empty() {
            let endpoint = format!("https://{region}.digitaloceanspaces.com");
            return info(bucket, region, Some(endpoint), false);
        }
    }
    // `[bucket.]s3.region.backblazeb2.com` and `[bucket.]s3.region.scw.cloud`
    for (suffix, fps) in [(".backblazeb2.com", true), (".scw.cloud", false)] {
        if let Some(rest) = host.strip_suffix(suffix) {
            if let Some((before, region)) = rest.rsplit_once('.') {
                let bucket = if before == "s3" {
                    Some("")
                } else {
                    before.strip_suffix(".s3")
                };
                if let Some(bucket) = bucket {
                    let endpoint = if fps {
                        format!("https://s3.{region}{suffix}")
                    } else {
                        format!("s3.{region}{suffix}")
                    };
                    return info(bucket, region, Some(endpoint), fps);
                }
            }
        }
    }
    // `[bucket.]s3.filebase.com`
    if host == "s3.filebase.com" {
        return info("", "", Some("s3.filebase.com".into()), false);
    }
    if let Some(bucket) = host.strip_suffix(".s3.filebase.com") {
        return info(bucket, "", Some("s3.filebase.com".into()), false);
    }
    info(host, "", None, false)
}

/// Litestream's reading of a URL path: `strings.TrimPrefix(path.Clean(p), "/")`.
pub(crate) fn litestream_url_path(p: &str) -> String {
    let cleaned = crate::paths::go_clean(p);
    cleaned.strip_prefix('/').unwrap_or(&cleaned).to_string()
}

/// Our key prefix: the path's non-empty segments (without `.` and `..`), joined by `/`.
pub(crate) fn normalize_prefix(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn with_scheme(e: &str, default: &str) -> String {
    let e = e.trim();
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("{default}://{e}")
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug: a secret key with a `/` in `s3://KEY:SECRET@bucket/path` cut the authority short, so
    /// the rest of the secret became the bucket, the endpoint or the path, and went into logs and
    /// errors.
    #[test]
    fn s3_url_secret_with_slash_never_becomes_host_or_path() {
        let url = "s3://AKIAX:abc/def+ghi@bucket/db?region=us-east-1";
        let Ok(u) = parse_url(url) else {
            panic!("{url} does not parse")
        };
        assert_eq!(u.host.bucket, "bucket");
        assert_eq!(u.path, "/db");
        assert_eq!(redact_query(url), "s3://bucket/db");
        assert_eq!(host_and_path("AKIAX:abc/def@b"), ("b", ""));
        // Ordinary URLs are unchanged, an `@` in the path included.
        assert_eq!(
            host_and_path("b.localhost:9000/p@x"),
            ("b.localhost:9000", "/p@x")
        );
        assert_eq!(host_and_path("u:p@b/p"), ("b", "/p"));
        assert_eq!(host_and_path("bucket/p@x"), ("bucket", "/p@x"));
        assert_eq!(host_and_path("[::1]:9000/p@x"), ("[::1]:9000", "/p@x"));
    }

    #[test]
    fn s3_parse_host_like_litestream() {
        let h = parse_host("mybucket.localhost:9000");
        assert_eq!(
            (h.bucket.as_str(), h.endpoint.as_deref(), h.force_path_style),
            ("mybucket", Some("http://localhost:9000"), true)
        );
        let h = parse_host("mybucket.s3.eu-central-1.amazonaws.com");
        assert_eq!(
            (h.bucket.as_str(), h.region.as_deref()),
            ("mybucket", Some("eu-central-1"))
        );
        assert_eq!(parse_host("my.bucket.s3.amazonaws.com").bucket, "my.bucket");
        let h = parse_host("bkt.nyc3.digitaloceanspaces.com");
        assert_eq!(
            (
                h.bucket.as_str(),
                h.region.as_deref(),
                h.endpoint.as_deref()
            ),
            (
                "bkt",
                Some("nyc3"),
                Some("https://nyc3.digitaloceanspaces.com")
            )
        );
        let h = parse_host("bkt.s3.us-west-002.backblazeb2.com");
        assert_eq!(
            (h.bucket.as_str(), h.endpoint.as_deref(), h.force_path_style),
            ("bkt", Some("https://s3.us-west-002.backblazeb2.com"), true)
        );
        let h = parse_host("bkt.s3.fr-par.scw.cloud");
        assert_eq!(
            (h.bucket.as_str(), h.endpoint.as_deref()),
            ("bkt", Some("s3.fr-par.scw.cloud"))
        );
        assert_eq!(parse_host("bkt.s3.filebase.com").bucket, "bkt");
        let h = parse_host("plain-bucket");
        assert_eq!(
            (h.bucket.as_str(), h.endpoint, h.force_path_style),
            ("plain-bucket", None, false)
        );
    }

    #[test]
    fn s3_redact_query_drops_secrets() {
        assert_eq!(
            redact_query("s3://user:pw@b/p?secret=x&endpoint=y"),
            "s3://b/p"
        );
    }
}
