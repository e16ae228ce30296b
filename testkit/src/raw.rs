//! Raw HTTP/1.1 for probes a client library would refuse to send (malformed targets, odd
//! `Host` headers, pipelined bursts): a recording upstream that shows exactly what the edge
//! forwarded, and a reader for the edge's answers off a plain socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Bounds every read of an answer: no test waits longer on one.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 upstream on 127.0.0.1 that records the head of every request it gets (request
/// line and headers, as received) and answers `200` with the request line as the body. Stops,
/// with every connection it holds, on drop.
pub struct Recorder {
    /// Its port.
    pub port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Starts one on an ephemeral port.
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let record = heads.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task, which aborts the connections.
            let mut connections = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                connections.spawn(serve(s, record.clone()));
            }
        });
        Recorder { port, heads, task }
    }

    /// The heads received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The request lines received so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One upstream connection: records each head, skips a `Content-Length` body, answers.
async fn serve(s: TcpStream, heads: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut s = BufReader::new(s);
    loop {
        let Some(head) = read_head(&mut s).await? else {
            return Ok(());
        };
        let mut body = vec![0; content_length(&head)];
        s.read_exact(&mut body).await?;
        let line = head.lines().next().unwrap_or("").to_string();
        heads.lock().unwrap().push(head);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}",
            line.len()
        );
        s.get_mut().write_all(answer.as_bytes()).await?;
    }
}

/// The lines before the blank one, or `None` at the end of the stream.
async fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            return Ok(Some(head));
        }
        head.push_str(&line);
    }
}

fn content_length(head: &str) -> usize {
    header_of(head, "content-length").map_or(0, |v| v.parse().unwrap_or(0))
}

/// The value of header `name` (any case) in a head of `Name: value` lines.
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One response as read off the socket.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    /// The `Content-Length` body.
    pub body: String,
}

impl Response {
    /// Whether it says `Connection: close`.
    pub fn closes(&self) -> bool {
        header_of(&self.head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one response (with a `Content-Length` body, as the edge's and the recorder's are),
/// or `None` when the connection ends first; fails after [`READ_LIMIT`].
pub async fn read_response(r: &mut BufReader<TcpStream>) -> Option<Response> {
    let read = async {
        let head = read_head(r).await.ok()??;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut body = vec![0; content_length(&head)];
        r.read_exact(&mut body).await.ok()?;
        Some(Response {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(READ_LIMIT, read)
        .await
        .expect("an answer, or a close, within the read limit")
}

/// Whether the peer closed the connection (rather than leaving it open for [`READ_LIMIT`]).
pub async fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(READ_LIMIT, r.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}
