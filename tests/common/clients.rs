//! Minimal SignalR clients over the three transports, for load through the edge: negotiate,
//! connect, handshake, then `echo` invocations. Errors are strings; `Closed` means the server
//! side ended an established connection (as opposed to a request that failed).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const RS: char = '\u{1e}';
const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";
/// Longest wait for one answer.
const ANSWER: Duration = Duration::from_secs(10);

/// Why a client operation did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The established connection was closed by the other side.
    Closed(String),
    /// A request failed (refused, bad status, bad answer, timeout).
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Closed(e) => write!(f, "closed: {e}"),
            Error::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSockets,
    ServerSentEvents,
    LongPolling,
}

/// Where and as whom a client connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Bearer token.
    pub token: String,
    /// `asrs_request_id`.
    pub request_id: String,
}

/// A negotiated connection: the instance that answered and the connection token.
pub async fn negotiate(http: &reqwest::Client, t: &Target) -> Result<(String, String), Error> {
    let r = http
        .post(format!(
            "{}/client/negotiate?hub=chat&negotiateVersion=1&asrs_request_id={}",
            t.base, t.request_id
        ))
        .bearer_auth(&t.token)
        .send()
        .await
        .map_err(|e| failed(format!("negotiate: {e:?}")))?;
    let status = r.status();
    let instance = r
        .headers()
        .get("x-emulator-instance")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if status != 200 {
        return Err(failed(format!("negotiate: {status} from {instance:?}")));
    }
    let body: serde_json::Value = r
        .json()
        .await
        .map_err(|e| failed(format!("negotiate: {e}")))?;
    let token = body["connectionToken"]
        .as_str()
        .ok_or_else(|| failed("negotiate: no connectionToken"))?;
    Ok((instance, token.to_string()))
}

/// One connected client.
pub enum Client {
    Ws(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
    Sse(SseClient),
    Lp(LpClient),
}

/// Server-Sent Events: one long GET, sends by POST.
pub struct SseClient {
    http: reqwest::Client,
    url: String,
    token: String,
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

/// Long polling: GET polls, sends by POST, DELETE to stop.
pub struct LpClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    /// Negotiates and connects over `transport`, including the hub handshake; returns the
    /// instance that negotiated.
    pub async fn connect(
        http: &reqwest::Client,
        t: &Target,
        transport: Transport,
    ) -> Result<(Client, String), Error> {
        let (instance, id) = negotiate(http, t).await?;
        Ok((Client::open(http, t, transport, &id).await?, instance))
    }

    /// Connects a negotiated connection `id` over `transport`, including the hub handshake.
    pub async fn open(
        http: &reqwest::Client,
        t: &Target,
        transport: Transport,
        id: &str,
    ) -> Result<Client, Error> {
        let query = format!("hub=chat&asrs_request_id={}&id={id}", t.request_id);
        let url = format!("{}/client/?{query}", t.base);
        let client = match transport {
            Transport::WebSockets => {
                let mut req = url
                    .replacen("http://", "ws://", 1)
                    .into_client_request()
                    .map_err(failed)?;
                req.headers_mut().insert(
                    "authorization",
                    format!("Bearer {}", t.token).parse().map_err(failed)?,
                );
                let (mut ws, _) =
                    tokio::time::timeout(ANSWER, tokio_tungstenite::connect_async(req))
                        .await
                        .map_err(|_| failed("connect: timeout"))?
                        .map_err(|e| failed(format!("connect: {e}")))?;
                ws.send(Message::text(HANDSHAKE)).await.map_err(failed)?;
                let mut c = Client::Ws(Box::new(ws));
                c.expect(|r| r == "{}").await?;
                c
            }
            Transport::ServerSentEvents => {
                let r = http
                    .get(&url)
                    .header("accept", "text/event-stream")
                    .bearer_auth(&t.token)
                    .send()
                    .await
                    .map_err(|e| failed(format!("connect: {e:?}")))?;
                if r.status() != 200 {
                    return Err(failed(format!("connect: {}", r.status())));
                }
                let mut c = Client::Sse(SseClient {
                    http: http.clone(),
                    url,
                    token: t.token.clone(),
                    stream: r.bytes_stream().boxed(),
                    buf: String::new(),
                });
                c.send(HANDSHAKE).await?;
                c.expect(|r| r == "{}").await?;
                c
            }
            Transport::LongPolling => {
                let mut c = Client::Lp(LpClient {
                    http: http.clone(),
                    url,
                    token: t.token.clone(),
                });
                // The first poll answers at once: the transport is open.
                if let Client::Lp(lp) = &c {
                    lp.poll().await?;
                }
                c.send(HANDSHAKE).await?;
                c.expect(|r| r == "{}").await?;
                c
            }
        };
        Ok(client)
    }

    /// Sends raw records (the handshake, invocations).
    async fn send(&mut self, text: &str) -> Result<(), Error> {
        match self {
            Client::Ws(ws) => ws
                .send(Message::text(text))
                .await
                .map_err(|e| Error::Closed(format!("send: {e}"))),
            Client::Sse(SseClient {
                http, url, token, ..
            })
            | Client::Lp(LpClient { http, url, token }) => {
                let r = http
                    .post(url.as_str())
                    .bearer_auth(token.as_str())
                    .body(text.to_string())
                    .send()
                    .await
                    .map_err(|e| failed(format!("send: {e:?}")))?;
                match r.status().as_u16() {
                    200 => Ok(()),
                    // The instance no longer knows the connection: its stream or poll ended.
                    404 => Err(Error::Closed("send: 404, the connection is gone".into())),
                    s => Err(failed(format!("send: {s}"))),
                }
            }
        }
    }

    /// Reads records until one satisfies `want` (pings and others are skipped).
    async fn expect(&mut self, want: impl Fn(&str) -> bool) -> Result<String, Error> {
        let deadline = tokio::time::Instant::now() + ANSWER;
        loop {
            let records = tokio::time::timeout_at(deadline, self.next_records())
                .await
                .map_err(|_| failed("no answer in time"))??;
            if let Some(r) = records.into_iter().find(|r| want(r)) {
                return Ok(r);
            }
        }
    }

    /// The next batch of records the server sent.
    pub async fn next_records(&mut self) -> Result<Vec<String>, Error> {
        let text = match self {
            Client::Ws(ws) => match ws.next().await {
                Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                Some(Ok(Message::Close(c))) => return Err(Error::Closed(format!("close {c:?}"))),
                Some(Ok(_)) => String::new(),
                Some(Err(e)) => return Err(Error::Closed(e.to_string())),
                None => return Err(Error::Closed("end of stream".into())),
            },
            Client::Sse(sse) => loop {
                if let Some(end) = sse.buf.find("\r\n\r\n") {
                    let event: String = sse.buf.drain(..end + 4).collect();
                    let data: String = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .collect();
                    break data;
                }
                match sse.stream.next().await {
                    Some(Ok(b)) => sse.buf.push_str(&String::from_utf8_lossy(&b)),
                    Some(Err(e)) => return Err(Error::Closed(format!("{e:?}"))),
                    None => return Err(Error::Closed("end of stream".into())),
                }
            },
            Client::Lp(lp) => lp.poll().await?,
        };
        Ok(text
            .split(RS)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Invokes `echo` and waits for its completion.
    pub async fn echo(&mut self, n: u64) -> Result<(), Error> {
        let payload = format!("m{n}");
        self.send(&format!(
            "{{\"type\":1,\"invocationId\":\"{n}\",\"target\":\"echo\",\"arguments\":[\"{payload}\"]}}{RS}"
        ))
        .await?;
        let answer = self
            .expect(|r| {
                r.contains("\"type\":3") && r.contains(&format!("\"invocationId\":\"{n}\""))
            })
            .await?;
        if answer.contains(&payload) {
            Ok(())
        } else {
            Err(failed(format!("echo {n}: {answer}")))
        }
    }

    /// Ends the connection from the client side.
    pub async fn close(self) {
        match self {
            Client::Ws(mut ws) => {
                let _ = (*ws).close(None).await;
            }
            Client::Sse(_) => {}
            Client::Lp(lp) => {
                let _ = lp.http.delete(&lp.url).bearer_auth(&lp.token).send().await;
            }
        }
    }

    /// Whether the client holds a connection open between messages (WebSocket, SSE), as
    /// opposed to long polling, whose every poll is a new request.
    pub fn is_streaming(&self) -> bool {
        !matches!(self, Client::Lp(_))
    }
}

impl LpClient {
    async fn poll(&self) -> Result<String, Error> {
        let r = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| failed(format!("poll: {e:?}")))?;
        match r.status().as_u16() {
            200 => r.text().await.map_err(|e| failed(format!("poll: {e}"))),
            204 => Err(Error::Closed("poll: 204".into())),
            s => Err(failed(format!("poll: {s}"))),
        }
    }
}
