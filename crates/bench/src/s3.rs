//! Unsigned S3 calls to moto (it checks no signatures): bucket creation, listing, GET.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn host(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://").trim_end_matches('/')
}

/// One request with `Connection: close`; returns (status, body).
pub fn http(
    endpoint: &str,
    method: &str,
    target: &str,
    range: Option<(u64, u64)>,
) -> Result<(u16, Vec<u8>)> {
    let h = host(endpoint);
    let mut s = TcpStream::connect(h).with_context(|| format!("connecting to {h}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    // moto checks no signature, but answers 403 to an anonymous GET of an object uploaded with a
    // private ACL: any Authorization header makes the request a signed one.
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\nContent-Length: 0\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=00\r\n"
    );
    if let Some((a, b)) = range {
        req.push_str(&format!("Range: bytes={a}-{b}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("{method} {target}"))?;
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("{method} {target}: no HTTP head in the answer");
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&b[i..i + nl]).to_string();
        let Ok(n) = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16) else {
            break;
        };
        i += nl + 2;
        if n == 0 || i + n > b.len() {
            break;
        }
        out.extend_from_slice(&b[i..i + n]);
        i += n + 2;
    }
    out
}

pub fn create_bucket(endpoint: &str, bucket: &str) -> Result<()> {
    let (status, body) = http(endpoint, "PUT", &format!("/{bucket}"), None)?;
    if status != 200 {
        bail!(
            "creating bucket {bucket}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(a) = rest.find(&open) {
        let after = &rest[a + open.len()..];
        let Some(b) = after.find(&close) else { break };
        out.push(&after[..b]);
        rest = &after[b + close.len()..];
    }
    out
}

/// Every object under `prefix` as (key, size).
pub fn list(endpoint: &str, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut target = format!("/{bucket}?list-type=2&prefix={}", enc(prefix));
        if let Some(t) = &token {
            target.push_str(&format!("&continuation-token={}", enc(t)));
        }
        let (status, body) = http(endpoint, "GET", &target, None)?;
        if status != 200 {
            bail!("listing {bucket}/{prefix}: HTTP {status}");
        }
        let xml = String::from_utf8_lossy(&body).to_string();
        for c in xml_all(&xml, "Contents") {
            let key = xml_all(c, "Key")
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let size = xml_all(c, "Size")
                .first()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push((key, size));
        }
        match xml_all(&xml, "NextContinuationToken").first() {
            Some(t) if xml.contains("<IsTruncated>true</IsTruncated>") => {
                token = Some(t.to_string())
            }
            _ => return Ok(out),
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Downloads `objects` (key, size) with `par` threads, in ranged GETs of `part` bytes:
/// returns (bytes, seconds).
pub fn parallel_get(
    endpoint: &str,
    bucket: &str,
    objects: &[(String, u64)],
    par: usize,
    part: u64,
) -> Result<(u64, f64)> {
    let mut jobs = Vec::new();
    for (k, size) in objects {
        let mut at = 0;
        while at < *size {
            let end = (at + part).min(*size) - 1;
            jobs.push((k.clone(), at, end));
            at = end + 1;
        }
    }
    let jobs = std::sync::Mutex::new(jobs);
    let started = Instant::now();
    let total = std::thread::scope(|sc| -> Result<u64> {
        let handles: Vec<_> = (0..par)
            .map(|_| {
                sc.spawn(|| -> Result<u64> {
                    let mut got = 0;
                    loop {
                        let job = jobs.lock().ok().and_then(|mut j| j.pop());
                        let Some((k, a, b)) = job else { return Ok(got) };
                        let (status, body) =
                            http(endpoint, "GET", &format!("/{bucket}/{k}"), Some((a, b)))?;
                        if status != 206 && status != 200 {
                            bail!("GET {k} bytes {a}-{b}: HTTP {status}");
                        }
                        got += body.len() as u64;
                    }
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h
                .join()
                .map_err(|_| anyhow::anyhow!("GET thread panicked"))??;
        }
        Ok(sum)
    })?;
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Copies every object under `prefix` into `dir` in the file-replica layout
/// (`<dir>/ltx/<level decimal>/<name>`), from the S3 layout `<prefix>/<level %04x>/<name>`.
pub fn mirror_to_file_replica(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    dir: &Path,
) -> Result<u64> {
    let mut bytes = 0;
    for (key, _) in list(endpoint, bucket, prefix)? {
        let rel = key.trim_start_matches(prefix).trim_start_matches('/');
        let mut it = rel.split('/');
        let (Some(level), Some(name), None) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let Ok(level) = u32::from_str_radix(level, 16) else {
            continue;
        };
        let (status, body) = http(endpoint, "GET", &format!("/{bucket}/{key}"), None)?;
        if status != 200 {
            bail!("GET {key}: HTTP {status}");
        }
        let d = dir.join("ltx").join(level.to_string());
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), &body)
            .with_context(|| format!("writing {}", d.join(name).display()))?;
        bytes += body.len() as u64;
    }
    Ok(bytes)
}
