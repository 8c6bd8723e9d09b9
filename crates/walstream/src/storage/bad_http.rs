//! Test servers that misbehave at the HTTP level, one way each, for the backends' error
//! classification tests: the real client meets a real broken answer on a real socket.
#![allow(clippy::unwrap_used)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How the server answers every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misbehave {
    /// Bytes that are not HTTP (hyper: "invalid HTTP version parsed").
    Garbage,
    /// A reset (RST) once the request arrived, with no answer.
    Reset,
    /// A 200 whose `Content-Length` body stops short, then the connection closes.
    CutLength,
    /// A 200 with a chunked body that stops inside a chunk, then the connection closes.
    CutChunked,
    /// A 200 whose body is not what was asked for (not XML or JSON).
    Gibberish,
}

impl Misbehave {
    pub(crate) const ALL: [Misbehave; 5] = [
        Misbehave::Garbage,
        Misbehave::Reset,
        Misbehave::CutLength,
        Misbehave::CutChunked,
        Misbehave::Gibberish,
    ];
}

const HEADERS: &str = "Last-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nETag: \"e\"\r\n\
    Content-Type: application/xml\r\nx-ms-request-id: r\r\nx-ms-version: 2023-11-03\r\n";

fn answer(mut s: TcpStream, how: Misbehave) {
    let mut buf = [0u8; 8192];
    let mut req = Vec::new();
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ = match how {
        Misbehave::Garbage => s.write_all(b"\x15\x03\x01garbage\r\n\r\n"),
        Misbehave::Reset => {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket descriptor and a `linger` of the size passed.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(s);
            return;
        }
        Misbehave::CutLength => write!(
            s,
            "HTTP/1.1 200 OK\r\n{HEADERS}Content-Length: 1000\r\nConnection: close\r\n\r\n<?xml version=\"1.0\"?><ListBucketResult"
        ),
        Misbehave::CutChunked => write!(
            s,
            "HTTP/1.1 200 OK\r\n{HEADERS}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3e8\r\n<?xml version=\"1.0\"?><ListBucketResult"
        ),
        Misbehave::Gibberish => write!(
            s,
            "HTTP/1.1 200 OK\r\n{HEADERS}Content-Length: 9\r\nConnection: close\r\n\r\n<<<<<<<<<"
        ),
    };
    let _ = s.flush();
}

/// A server on 127.0.0.1 that answers every request `how`; its `http://` endpoint and a count
/// of the connections it took.
pub(crate) fn server(how: Misbehave) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer(s, how));
        }
    });
    (format!("http://{addr}"), hits)
}
