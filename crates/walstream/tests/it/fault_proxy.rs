//! An HTTP/1.1 fault proxy for tests, in front of a real server (moto): it answers some requests
//! with `503 SlowDown` or with bytes that are not HTTP, stalls some, cuts some responses mid-body
//! (or drops them after the request reached the server), resets some connections (RST), and
//! leaves junk on the connection after some responses, at seeded rates or for the first N
//! requests of each path; faults switch on and off at run time. It records every request:
//! method, path, `Range` header, status, the faults applied, and the body bytes it served, and
//! counts each fault kind ([`FaultProxy::count`]).
//!
//! It understands just enough HTTP/1.1: a request head, a body by `Content-Length` or chunked
//! encoding, a response head and its body. Each connection carries one request (both sides are
//! told `Connection: close`), so that responses can be relayed to the end of the stream and cut
//! anywhere; the one exception is [`Fault::Junk`], which keeps the connection open so that the
//! client's next request on it reads the junk as its answer. It runs on its own thread and
//! runtime, listens on 127.0.0.1 on a free port, and stops when dropped.
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
    /// Not forwarded; answered with bytes that are not HTTP (an invalid status line).
    Garbage,
    /// Forwarded; the connection was reset (RST, by `SO_LINGER` 0 and close) in the middle of
    /// the response body, or before any response when there is no body to cut.
    Reset,
    /// Forwarded and answered in full, keeping the connection open; then junk bytes followed on
    /// it, as the answer to the client's next request if it sent one within a second.
    Junk,
    /// A request that reused a connection after a [`Fault::Junk`] response: it read the junk
    /// as its answer (it was not forwarded).
    JunkHit,
}

impl Fault {
    /// Every kind, for reports.
    pub const ALL: [Fault; 8] = [
        Fault::SlowDown,
        Fault::Stall,
        Fault::Cut,
        Fault::Drop,
        Fault::Garbage,
        Fault::Reset,
        Fault::Junk,
        Fault::JunkHit,
    ];
}

/// What the proxy sends for [`Fault::Garbage`] and [`Fault::Junk`]: not an HTTP status line
/// (hyper reads it as "invalid HTTP version parsed").
pub const JUNK: &[u8] = b"\x15\x03\x01junk from the fault proxy\r\n\r\n";

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
    /// Resets mid-body fall there too.
    pub cut_fraction: f64,
    /// Probability of a [`Fault::Garbage`] answer.
    pub garbage: f64,
    /// Probability of a [`Fault::Reset`].
    pub reset: f64,
    /// Probability of [`Fault::Junk`] after the response.
    pub junk: f64,
    /// The first N requests of each path (any method) get [`Fault::Garbage`].
    pub garbage_first: u32,
    /// The next N requests of each path get [`Fault::Reset`].
    pub reset_first: u32,
    /// The next N requests of each path get [`Fault::Junk`].
    pub junk_first: u32,
    /// Listing responses (a GET with a query string) are relayed with chunked transfer
    /// encoding instead of `Content-Length`, so that cuts and resets also hit chunked bodies.
    pub chunked_listings: bool,
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
            garbage: 0.0,
            reset: 0.0,
            junk: 0.0,
            garbage_first: 0,
            reset_first: 0,
            junk_first: 0,
            chunked_listings: false,
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
    /// Requests per path while faults were on, for the `*_first` faults.
    requests_per_path: Mutex<HashMap<String, u32>>,
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
            requests_per_path: Mutex::new(HashMap::new()),
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

    /// How many times `fault` was applied so far.
    pub fn count(&self, fault: Fault) -> usize {
        count_fault(&self.shared.records.lock().unwrap(), fault)
    }

    /// Every fault kind with its count, for messages.
    pub fn counts(&self) -> String {
        counts_of(&self.shared.records.lock().unwrap())
    }

    /// Forgets the records and the per-path counts (the configuration stays).
    pub fn reset_records(&self) {
        self.shared.records.lock().unwrap().clear();
        self.shared.gets_per_path.lock().unwrap().clear();
        self.shared.requests_per_path.lock().unwrap().clear();
    }
}

/// How many of `records` had `fault` applied.
pub fn count_fault(records: &[Record], fault: Fault) -> usize {
    records
        .iter()
        .map(|r| r.faults.iter().filter(|f| **f == fault).count())
        .sum()
}

/// `SlowDown=3 Stall=0 ...` over `records`.
pub fn counts_of(records: &[Record]) -> String {
    Fault::ALL
        .iter()
        .map(|f| format!("{f:?}={}", count_fault(records, *f)))
        .collect::<Vec<_>>()
        .join(" ")
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
        self.encode(true, None)
    }

    /// The head for the client: `Connection: close` unless `keep_alive` (then HTTP/1.1, no
    /// Connection header), and, with `framing`, the body's framing header in place of any.
    fn encode(&self, close: bool, framing: Option<Framing>) -> Vec<u8> {
        let first = if close {
            self.first.clone()
        } else {
            match self.first.split_once(' ') {
                Some((_, rest)) => format!("HTTP/1.1 {rest}"),
                None => self.first.clone(),
            }
        };
        let mut out = format!("{first}\r\n");
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if framing.is_some()
                && (k.eq_ignore_ascii_case("content-length")
                    || k.eq_ignore_ascii_case("transfer-encoding"))
            {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        match framing {
            Some(Framing::Length(n)) => out.push_str(&format!("Content-Length: {n}\r\n")),
            Some(Framing::Chunked) => out.push_str("Transfer-Encoding: chunked\r\n"),
            None => {}
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// How a response body relayed to the client is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
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

/// A response body without its framing: chunked encoding decoded, else `Content-Length`
/// bytes, else everything up to EOF (the upstream was told to close).
async fn read_payload<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    head: &Head,
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
        None => {
            r.read_to_end(&mut body).await?;
        }
    }
    Ok(body)
}

/// What to do with one request, decided when it arrives.
#[derive(Default)]
struct Decision {
    slowdown: bool,
    garbage: bool,
    reset: bool,
    junk: bool,
    stall: Option<Duration>,
    cut: bool,
    fraction: f64,
    chunked: bool,
}

fn decide(sh: &Shared, method: &str, path: &str, listing: bool) -> Decision {
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
    d.chunked = cfg.chunked_listings && listing;
    let seen = {
        let mut per_path = sh.requests_per_path.lock().unwrap();
        let n = per_path.entry(path.to_string()).or_insert(0);
        *n += 1;
        *n - 1
    };
    if seen < cfg.garbage_first {
        d.garbage = true;
        return d;
    }
    if seen < cfg.garbage_first + cfg.reset_first {
        d.reset = true;
        return d;
    }
    if seen < cfg.garbage_first + cfg.reset_first + cfg.junk_first {
        d.junk = true;
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
    // Drawn only when asked for, so that the other faults' draws stay as they were.
    if cfg.garbage > 0.0 && Shared::draw(rng) < cfg.garbage {
        d.garbage = true;
        return d;
    }
    if cfg.reset > 0.0 && Shared::draw(rng) < cfg.reset {
        d.reset = true;
    } else if cfg.junk > 0.0 && Shared::draw(rng) < cfg.junk {
        d.junk = true;
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

/// Closes `conn` with a reset (RST) instead of a FIN.
fn reset(conn: BufReader<TcpStream>) -> std::io::Result<()> {
    let conn = conn.into_inner();
    conn.set_zero_linger()?;
    drop(conn);
    Ok(())
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
    let listing = method == "GET" && target.contains('?');
    let d = decide(&sh, &method, &path, listing);
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

    if d.slowdown {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>{path}</Resource><RequestId>fault-proxy</RequestId></Error>"
        );
        let resp = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
        client.get_mut().write_all(resp.as_bytes()).await?;
        client.get_mut().shutdown().await?;
        update(&sh, i, |r| {
            r.status = 503;
            r.body_bytes = xml.len() as u64;
            r.faults.push(Fault::SlowDown);
        });
        return Ok(());
    }
    if d.garbage {
        update(&sh, i, |r| r.faults.push(Fault::Garbage));
        client.get_mut().write_all(JUNK).await?;
        client.get_mut().shutdown().await?;
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
    let payload = if has_body {
        read_payload(&mut upstream, &resp).await?
    } else {
        Vec::new()
    };
    let n = payload.len() as u64;
    let framing = has_body.then_some(if d.chunked || resp.chunked() {
        Framing::Chunked
    } else {
        Framing::Length(n)
    });

    // Cut or reset: part of a 2xx body of at least 2 bytes.
    let cut_at = ((d.cut || d.reset) && n >= 2 && (200..300).contains(&status))
        .then(|| ((n as f64 * d.fraction) as u64).clamp(1, n - 1));
    if d.reset && cut_at.is_none() {
        update(&sh, i, |r| r.faults.push(Fault::Reset));
        return reset(client);
    }
    if d.cut && cut_at.is_none() && method != "GET" {
        update(&sh, i, |r| r.faults.push(Fault::Drop));
        client.get_mut().shutdown().await?;
        return Ok(());
    }
    if d.cut && cut_at.is_some() && method == "GET" {
        *sh.gets_per_path
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_insert(0) += 1;
    }
    let keep_alive = d.junk && cut_at.is_none();
    client
        .get_mut()
        .write_all(&resp.encode(!keep_alive, framing))
        .await?;
    update(&sh, i, |r| r.status = status);

    let sent = cut_at.unwrap_or(n) as usize;
    match framing {
        Some(Framing::Chunked) if sent > 0 => {
            // One chunk announcing the whole payload, of which only `sent` bytes follow when
            // cut, and no last chunk.
            client
                .get_mut()
                .write_all(format!("{n:x}\r\n").as_bytes())
                .await?;
            client.get_mut().write_all(&payload[..sent]).await?;
            if cut_at.is_none() {
                client.get_mut().write_all(b"\r\n0\r\n\r\n").await?;
            }
        }
        Some(Framing::Chunked) => client.get_mut().write_all(b"0\r\n\r\n").await?,
        _ => client.get_mut().write_all(&payload[..sent]).await?,
    }
    client.get_mut().flush().await?;
    update(&sh, i, |r| r.body_bytes = sent as u64);
    if cut_at.is_some() {
        if d.reset {
            update(&sh, i, |r| r.faults.push(Fault::Reset));
            return reset(client);
        }
        update(&sh, i, |r| r.faults.push(Fault::Cut));
        client.get_mut().shutdown().await?;
        return Ok(());
    }
    if keep_alive {
        // The junk answers the next request on this connection, if one comes soon.
        update(&sh, i, |r| r.faults.push(Fault::Junk));
        let next = tokio::time::timeout(Duration::from_secs(1), read_head(&mut client)).await;
        if let Ok(Ok(Some(next))) = next {
            let mut parts = next.first.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let path = parts
                .next()
                .unwrap_or("")
                .split('?')
                .next()
                .unwrap_or("")
                .to_string();
            record(
                &sh,
                Record {
                    method,
                    path,
                    range: next.get("range").map(str::to_string),
                    status: 0,
                    body_bytes: 0,
                    faults: vec![Fault::JunkHit],
                },
            );
        }
        client.get_mut().write_all(JUNK).await?;
    }
    client.get_mut().shutdown().await?;
    Ok(())
}
