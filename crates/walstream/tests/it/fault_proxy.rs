//! An HTTP/1.1 fault proxy for tests, in front of a real server (moto): it answers some requests
//! with `503 SlowDown`, stalls some, and cuts some responses mid-body (or drops them after the
//! request reached the server), at seeded rates or for the first N GETs of each object; faults
//! switch on and off at run time. It records every request: method, path, `Range` header,
//! status, the fault applied, and the body bytes it served.
//!
//! It understands just enough HTTP/1.1: a request head, a body by `Content-Length` or chunked
//! encoding, a response head and its body. Each connection carries one request (both sides are
//! told `Connection: close`), so that responses can be relayed to the end of the stream and cut
//! anywhere. It runs on its own thread and runtime, listens on 127.0.0.1 on a free port, and
//! stops when dropped.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A fault the proxy applied to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answered `503 SlowDown` without forwarding.
    SlowDown,
    /// Held for [`FaultConfig::stall_for`] before forwarding (it may be cut as well).
    Stall,
    /// Forwarded; the response body was cut after part of it.
    Cut,
    /// Forwarded (the request took effect); the connection closed before any response.
    Drop,
}

/// What the proxy does, changeable at run time with [`FaultProxy::set_config`].
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Master switch: with `false` every request passes untouched.
    pub enabled: bool,
    /// Only requests whose path ends with this are faulted (e.g. `.ltx`: objects, not listings).
    pub path_suffix: Option<String>,
    /// Probability of a `503 SlowDown`.
    pub slowdown: f64,
    /// Probability of a stall.
    pub stall: f64,
    /// How long a stall lasts.
    pub stall_for: Duration,
    /// Probability that a response is cut mid-body (or dropped when it has no body).
    pub cut: f64,
    /// The first N GETs of each path (with a body of at least 2 bytes) are cut.
    pub cut_first_gets: u32,
    /// Where a cut falls, as a fraction of the response body (at least one byte is served).
    pub cut_fraction: f64,
    /// Seed of the fault draws.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            enabled: false,
            path_suffix: None,
            slowdown: 0.0,
            stall: 0.0,
            stall_for: Duration::from_secs(1),
            cut: 0.0,
            cut_first_gets: 0,
            cut_fraction: 0.5,
            seed: 1,
        }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Record {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The request's `Range` header.
    pub range: Option<String>,
    /// Response status sent (0 when none was).
    pub status: u16,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
    /// Faults applied, in order.
    pub faults: Vec<Fault>,
}

struct Shared {
    upstream: String,
    cfg: Mutex<(FaultConfig, u64)>,
    records: Mutex<Vec<Record>>,
    gets_per_path: Mutex<HashMap<String, u32>>,
}

impl Shared {
    fn draw(rng: &mut u64) -> f64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The proxy. Dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`), with faults off.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            cfg: Mutex::new((FaultConfig::default(), 1)),
            records: Mutex::new(Vec::new()),
            gets_per_path: Mutex::new(HashMap::new()),
        });
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((conn, _)) = accepted else { continue };
                                let sh = sh.clone();
                                tokio::spawn(async move {
                                    let _ = handle(conn, sh).await;
                                });
                            }
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .unwrap();
        FaultProxy {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the configuration (the random draws restart from its seed).
    pub fn set_config(&self, cfg: FaultConfig) {
        let seed = cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        *self.shared.cfg.lock().unwrap() = (cfg, seed);
    }

    /// Turns faults on or off, keeping the rest of the configuration.
    pub fn set_enabled(&self, on: bool) {
        self.shared.cfg.lock().unwrap().0.enabled = on;
    }

    /// Every request so far.
    pub fn records(&self) -> Vec<Record> {
        self.shared.records.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
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

    /// The head with `Connection: close` instead of any Connection header.
    fn encode_closing(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Head>> {
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

/// Reads a request body as it came (raw chunked encoding kept).
async fn read_body<R: AsyncBufReadExt + Unpin>(r: &mut R, head: &Head) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.chunked() {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line).await?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).await?;
                    body.extend_from_slice(l.as_bytes());
                    if l == "\r\n" || l.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await?;
            body.extend_from_slice(&chunk);
        }
    }
    if let Some(n) = head.content_length() {
        body.resize(n as usize, 0);
        r.read_exact(&mut body).await?;
    }
    Ok(body)
}

fn record(sh: &Shared, rec: Record) -> usize {
    let mut v = sh.records.lock().unwrap();
    v.push(rec);
    v.len() - 1
}

fn update(sh: &Shared, i: usize, f: impl FnOnce(&mut Record)) {
    if let Some(r) = sh.records.lock().unwrap().get_mut(i) {
        f(r);
    }
}

/// What to do with one request, decided when it arrives.
#[derive(Default)]
struct Decision {
    slowdown: bool,
    stall: Option<Duration>,
    cut: bool,
    fraction: f64,
}

fn decide(sh: &Shared, method: &str, path: &str) -> Decision {
    let mut guard = sh.cfg.lock().unwrap();
    let (cfg, rng) = &mut *guard;
    let mut d = Decision {
        fraction: cfg.cut_fraction,
        ..Decision::default()
    };
    if !cfg.enabled
        || cfg
            .path_suffix
            .as_ref()
            .is_some_and(|s| !path.ends_with(s.as_str()))
    {
        return d;
    }
    if Shared::draw(rng) < cfg.slowdown {
        d.slowdown = true;
        return d;
    }
    if Shared::draw(rng) < cfg.stall {
        d.stall = Some(cfg.stall_for);
    }
    if Shared::draw(rng) < cfg.cut {
        d.cut = true;
    }
    if method == "GET" && cfg.cut_first_gets > 0 {
        let mut gets = sh.gets_per_path.lock().unwrap();
        let n = gets.entry(path.to_string()).or_insert(0);
        // Counted when a GET is actually cut (see `handle`), so small bodies do not use it up.
        if *n < cfg.cut_first_gets {
            d.cut = true;
        }
    }
    d
}

async fn handle(conn: TcpStream, sh: Arc<Shared>) -> std::io::Result<()> {
    let mut client = BufReader::new(conn);
    let Some(req) = read_head(&mut client).await? else {
        return Ok(());
    };
    let body = read_body(&mut client, &req).await?;
    let mut parts = req.first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let d = decide(&sh, &method, &path);
    let i = record(
        &sh,
        Record {
            method: method.clone(),
            path: path.clone(),
            range: req.get("range").map(str::to_string),
            status: 0,
            body_bytes: 0,
            faults: Vec::new(),
        },
    );
    let mut client = client.into_inner();

    if d.slowdown {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>{path}</Resource><RequestId>fault-proxy</RequestId></Error>"
        );
        let resp = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
        client.write_all(resp.as_bytes()).await?;
        client.shutdown().await?;
        update(&sh, i, |r| {
            r.status = 503;
            r.body_bytes = xml.len() as u64;
            r.faults.push(Fault::SlowDown);
        });
        return Ok(());
    }
    if let Some(t) = d.stall {
        update(&sh, i, |r| r.faults.push(Fault::Stall));
        tokio::time::sleep(t).await;
    }

    let mut upstream = BufReader::new(TcpStream::connect(&sh.upstream).await?);
    upstream.get_mut().write_all(&req.encode_closing()).await?;
    upstream.get_mut().write_all(&body).await?;
    let Some(resp) = read_head(&mut upstream).await? else {
        return Ok(());
    };
    let status: u16 = resp
        .first
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let has_body = method != "HEAD" && !matches!(status, 100..=199 | 204 | 304);
    let len = if has_body {
        resp.content_length()
    } else {
        Some(0)
    };

    // Cut: part of a body of at least 2 bytes; otherwise drop the response altogether.
    let cut_at = match (d.cut, len) {
        (true, Some(n)) if n >= 2 && (200..300).contains(&status) => {
            Some(((n as f64 * d.fraction) as u64).clamp(1, n - 1))
        }
        _ => None,
    };
    if d.cut && cut_at.is_none() && method != "GET" {
        update(&sh, i, |r| r.faults.push(Fault::Drop));
        client.shutdown().await?;
        return Ok(());
    }
    if cut_at.is_some() && method == "GET" {
        *sh.gets_per_path
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_insert(0) += 1;
    }
    client.write_all(&resp.encode_closing()).await?;
    update(&sh, i, |r| r.status = status);

    let limit = cut_at.or(len);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let want = match limit {
            Some(l) if sent >= l => break,
            Some(l) => ((l - sent) as usize).min(buf.len()),
            None => buf.len(),
        };
        let n = upstream.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        client.write_all(&buf[..n]).await?;
        sent += n as u64;
        update(&sh, i, |r| r.body_bytes = sent);
    }
    client.flush().await?;
    if cut_at.is_some() {
        update(&sh, i, |r| r.faults.push(Fault::Cut));
    }
    client.shutdown().await?;
    Ok(())
}
