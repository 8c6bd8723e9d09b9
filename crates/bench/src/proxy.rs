//! A counting HTTP/1.1 proxy in front of moto. It keeps client connections alive, forwards
//! each request on a fresh upstream connection (told `Connection: close`), and records the
//! method, path, query, request body bytes, status and the instant the response was fully
//! written back to the client. Bodies are relayed whole (they are at most a multipart part).
//! `Expect: 100-continue` is answered by the proxy itself.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request seen by the proxy.
#[derive(Debug, Clone)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Request body bytes as sent by the client (framing excluded).
    pub req_bytes: u64,
    pub status: u16,
    /// When the last response byte was written to the client.
    pub end: Instant,
}

impl Record {
    /// True for a request that completed an object: a plain PUT or a multipart completion.
    pub fn completes_object(&self) -> bool {
        (200..300).contains(&self.status)
            && ((self.method == "PUT" && !self.query.contains("partNumber="))
                || (self.method == "POST" && self.query.contains("uploadId=")))
    }
}

pub struct Proxy {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Result<Proxy> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("proxy bind")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let recs = records.clone();
        let thread = std::thread::Builder::new()
            .name("proxy".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("bench: proxy runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    loop {
                        let Ok((conn, _)) = listener.accept().await else {
                            continue;
                        };
                        let recs = recs.clone();
                        let up = upstream.clone();
                        tokio::spawn(async move {
                            let _ = serve(conn, &up, recs).await;
                        });
                    }
                });
            })?;
        Ok(Proxy {
            addr,
            records,
            _thread: thread,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Head {
    pub first: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    fn content_length(&self) -> Option<u64> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
    /// The head re-encoded without hop-by-hop headers and `skip`, plus `extra` lines.
    fn encode(&self, skip: &[&str], extra: &[String]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            let drop = ["connection", "keep-alive", "expect"]
                .iter()
                .chain(skip)
                .any(|s| k.eq_ignore_ascii_case(s));
            if !drop {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        for e in extra {
            out.push_str(e);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

pub async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("EOF in HTTP head"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        first: first.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// A body without its framing: chunked decoded, else `Content-Length` bytes, else (only when
/// `to_eof`) everything up to EOF.
pub async fn read_payload<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    head: &Head,
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.chunked() {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line).await?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).await? == 0 || l == "\r\n" {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await?;
        }
    }
    match head.content_length() {
        Some(n) => {
            body.resize(n as usize, 0);
            r.read_exact(&mut body).await?;
        }
        None if to_eof => {
            r.read_to_end(&mut body).await?;
        }
        None => {}
    }
    Ok(body)
}

async fn serve(conn: TcpStream, upstream: &str, recs: Arc<Mutex<Vec<Record>>>) -> Result<()> {
    let _ = conn.set_nodelay(true);
    let (rd, mut wr) = conn.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    while let Some(head) = read_head(&mut rd).await? {
        let mut parts = head.first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        if head
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = read_payload(&mut rd, &head, false).await?;
        let mut up = TcpStream::connect(upstream)
            .await
            .with_context(|| format!("connecting to {upstream}"))?;
        let _ = up.set_nodelay(true);
        let mut req = head.encode(
            &["content-length", "transfer-encoding"],
            &[
                format!("Content-Length: {}", body.len()),
                "Connection: close".into(),
            ],
        );
        req.extend_from_slice(&body);
        up.write_all(&req).await?;
        let mut upr = BufReader::with_capacity(256 * 1024, up);
        let resp = read_head(&mut upr)
            .await?
            .ok_or_else(|| anyhow!("upstream closed before a response"))?;
        let status: u16 = resp
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let payload = if no_body {
            Vec::new()
        } else {
            read_payload(&mut upr, &resp, true).await?
        };
        let mut out = if no_body {
            resp.encode(&["transfer-encoding"], &[])
        } else {
            resp.encode(
                &["content-length", "transfer-encoding"],
                &[format!("Content-Length: {}", payload.len())],
            )
        };
        // HTTP/1.0 from werkzeug: answer as 1.1 so the client keeps the connection.
        if out.starts_with(b"HTTP/1.0") {
            out[5..8].copy_from_slice(b"1.1");
        }
        out.extend_from_slice(&payload);
        wr.write_all(&out).await?;
        wr.flush().await?;
        let rec = Record {
            method,
            path,
            query,
            req_bytes: body.len() as u64,
            status,
            end: Instant::now(),
        };
        if let Ok(mut v) = recs.lock() {
            v.push(rec);
        }
    }
    Ok(())
}
