//! A small HTTP/1.x server and client over a Unix socket, enough for the control API (JSON
//! bodies, one request per connection).
//!
//! The server answers every request with `Content-Length` and `Connection: close`, and closes the
//! connection after it: Go's client (Litestream's CLI) and curl both accept that. The client
//! sends HTTP/1.0, so that a server (Litestream's Go server) never answers with chunked encoding;
//! a chunked answer is still decoded.
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request or response body.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), percent-decoded per parameter by [`Request::query`].
    pub query: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `key`, percent-decoded (`+` is a space).
    pub fn query(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == key).then(|| decode(v))
        })
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON body (with the trailing newline Go's encoder writes).
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// A plain-text body.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or closed early.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not an HTTP request we can read.
    #[error("{0}")]
    Malformed(String),
}

/// Finds `\r\n\r\n` (or `\n\n`) and returns the index just past it.
fn head_end(buf: &[u8]) -> Option<usize> {
    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(i + 4);
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// Reads a head and returns (head text, what was read past it).
async fn read_head(
    stream: &mut (impl AsyncReadExt + Unpin),
) -> Result<(String, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(&buf) {
            let rest = buf.split_off(end);
            let head = String::from_utf8_lossy(&buf).into_owned();
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Malformed("header too large".into()));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "connection closed before the end of the header".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one request from `stream`.
pub async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Request, ReadError> {
    let (head, mut body) = read_head(stream).await?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(ReadError::Malformed(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let len = match header(&head, "content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Malformed(format!("bad Content-Length {v:?}")))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(ReadError::Malformed("body too large".into()));
    }
    if header(&head, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return Err(ReadError::Malformed(
            "chunked request bodies are not supported".into(),
        ));
    }
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(64 * 1024)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "body shorter than Content-Length".into(),
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body,
    })
}

/// Writes `resp` and closes the writing side.
pub async fn write_response(
    stream: &mut (impl AsyncWriteExt + Unpin),
    resp: &Response,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Errors of [`request`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("failed to connect to control socket {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no answer from control socket {path} within {timeout:?}")]
    Timeout {
        /// The socket.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The answer could not be read.
    #[error("control socket {path}: {message}")]
    Bad {
        /// The socket.
        path: String,
        /// What.
        message: String,
    },
}

/// Sends one request to the server at `socket` and returns (status, body), all within
/// `timeout`.
pub async fn request(
    socket: &Path,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ClientError> {
    let path = socket.display().to_string();
    let fut = async {
        let mut s = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.clone(),
                source,
            })?;
        let bad = |message: String| ClientError::Bad {
            path: path.clone(),
            message,
        };
        let mut req = format!("{method} {target} HTTP/1.0\r\nHost: localhost\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        s.write_all(&out)
            .await
            .map_err(|e| bad(format!("send request: {e}")))?;
        let (head, mut rest) = read_head(&mut s)
            .await
            .map_err(|e| bad(format!("read response: {e}")))?;
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", head.lines().next())))?;
        let len = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
        let chunked =
            header(&head, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if len.is_some_and(|l| rest.len() >= l) || rest.len() > MAX_BODY {
                break;
            }
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| bad(format!("read response: {e}")))?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        if let Some(l) = len {
            rest.truncate(l);
        }
        if chunked {
            rest = dechunk(&rest).ok_or_else(|| bad("bad chunked response".into()))?;
        }
        Ok((status, rest))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { path, timeout }),
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_roundtrip_and_query() {
        let raw = b"POST /sync?path=%2Ftmp%2Fa+b.db HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{}\n\nextra";
        let mut r: &[u8] = raw;
        let req = read_request(&mut r).await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/sync");
        assert_eq!(req.query("path").as_deref(), Some("/tmp/a b.db"));
        assert_eq!(req.body, b"{}\n\n");
        let mut bad: &[u8] = b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert!(read_request(&mut bad).await.is_err());
    }

    #[test]
    fn dechunk_decodes() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_none());
    }
}
