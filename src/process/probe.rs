//! `signalr-edge probe URL`: one plain-HTTP `GET`, success on a `2xx`. The container image has
//! no curl; its `HEALTHCHECK` probes the admin listener's `/readyz` with the edge's own binary.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as sent in `Host` (the admin listener checks it).
    pub authority: String,
    /// Where to connect.
    pub host: String,
    /// The port (80 when not given).
    pub port: u16,
    /// The path and query (`/` when not given).
    pub path: String,
}

/// Parses a plain `http://` URL; anything else is refused with why.
pub fn parse(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: bad host"))?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// `GET url` within `timeout` (connect, send and answer each); the status code, or why none.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let t = parse(url)?;
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", t.host))?
        .next()
        .ok_or_else(|| format!("{}: no address", t.host))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: signalr-edge-probe\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line fits in the first bytes; the rest of the answer does not matter.
    let mut head = [0u8; 256];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        let n = stream.read(&mut head[len..]).map_err(io)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    status_code(&head[..len]).ok_or_else(|| format!("{addr}: not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_path() {
        let t = parse("http://127.0.0.1:9901/readyz").unwrap();
        assert_eq!(
            (
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            ("127.0.0.1:9901", "127.0.0.1", 9901, "/readyz")
        );
        let t = parse("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse("http://[::1]:9901/healthz").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9901));
        assert_eq!(parse("http://[::1]/").unwrap().port, 80);
        assert!(parse("https://x/").is_err());
        assert!(parse("http://:80/").is_err());
        assert!(parse("http://x:port/").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-x\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
    }

    #[test]
    fn a_probe_sends_the_host_and_reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\ndraining\n")
                .unwrap();
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        let url = format!("http://{addr}/readyz");
        assert_eq!(probe(&url, Duration::from_secs(5)), Ok(503));
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /readyz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: {addr}\r\n")), "{req}");
        // Nothing listens there any more.
        assert!(probe(&url, Duration::from_secs(5)).is_err());
    }
}
