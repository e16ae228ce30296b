//! One minimal SignalR client over the three transports: negotiate, connect, handshake,
//! invocations (`echo`, `whoami`, `broadcast`), the server's records, and close. Errors are
//! strings; `Closed` means the server side ended an established connection, as opposed to a
//! request that failed.

pub mod hub;
pub mod lp;
pub mod negotiate;
pub mod sse;
pub mod ws;

use std::time::Duration;

use hub::HANDSHAKE;
use lp::LpClient;
use sse::SseClient;
use ws::WsClient;

/// Longest wait for one answer.
pub const ANSWER: Duration = Duration::from_secs(10);

/// An HTTP client with a 10 s timeout per request.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(ANSWER).build().unwrap()
}

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

/// POSTs records to a connection (SSE and long polling send this way).
async fn post_records(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    text: &str,
) -> Result<(), Error> {
    let r = http
        .post(url)
        .bearer_auth(token)
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

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSockets.
    WebSockets,
    /// Server-Sent Events.
    ServerSentEvents,
    /// Long polling.
    LongPolling,
}

/// Where and as whom a client connects, on hub `chat`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Bearer token.
    pub token: String,
    /// `asrs_request_id`.
    pub request_id: String,
}

impl Target {
    /// Negotiates (v1): the instance that answered and the connection token.
    pub async fn negotiate(&self, http: &reqwest::Client) -> Result<(String, String), Error> {
        let query = format!(
            "hub=chat&negotiateVersion=1&asrs_request_id={}",
            self.request_id
        );
        let n = negotiate::try_negotiate(http, &self.base, &query, &self.token)
            .await
            .map_err(|e| failed(format!("negotiate: {e:?}")))?;
        if n.status != 200 {
            return Err(failed(format!(
                "negotiate: {} from {:?}",
                n.status, n.instance
            )));
        }
        let token = n
            .connection_token
            .ok_or_else(|| failed("negotiate: no connectionToken"))?;
        Ok((n.instance, token))
    }
}

/// One connected client.
pub enum Client {
    /// Over a WebSocket.
    Ws(WsClient),
    /// Over Server-Sent Events.
    Sse(SseClient),
    /// Over long polling.
    Lp(LpClient),
}

impl Client {
    /// Negotiates and connects over `transport`, including the hub handshake; returns the
    /// instance that negotiated.
    pub async fn connect(
        http: &reqwest::Client,
        t: &Target,
        transport: Transport,
    ) -> Result<(Client, String), Error> {
        let (instance, id) = t.negotiate(http).await?;
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
                let ws_url = url.replacen("http://", "ws://", 1);
                let mut ws = WsClient::connect(&ws_url, None, Some(&t.token))
                    .await
                    .map_err(|e| failed(format!("connect: {e}")))?;
                ws.handshake().await?;
                Client::Ws(ws)
            }
            Transport::ServerSentEvents => {
                let mut c = Client::Sse(SseClient::open(http, &url, &t.token).await?);
                c.send(HANDSHAKE).await?;
                c.expect(|r| r == "{}").await?;
                c
            }
            Transport::LongPolling => {
                let lp = LpClient::new(http, &url, &t.token);
                // The first poll answers at once: the transport is open.
                lp.poll().await?;
                let mut c = Client::Lp(lp);
                c.send(HANDSHAKE).await?;
                c.expect(|r| r == "{}").await?;
                c
            }
        };
        Ok(client)
    }

    /// Sends raw records (the handshake, invocations).
    pub async fn send(&mut self, text: &str) -> Result<(), Error> {
        match self {
            Client::Ws(ws) => ws.send_text(text).await,
            Client::Sse(sse) => sse.send(text).await,
            Client::Lp(lp) => lp.send(text).await,
        }
    }

    /// Reads records until one satisfies `want` (pings and others are skipped), for 10 s.
    pub async fn expect(&mut self, want: impl Fn(&str) -> bool) -> Result<String, Error> {
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
        match self {
            Client::Ws(ws) => ws.next_records().await,
            Client::Sse(sse) => Ok(hub::split_records(&sse.next_data().await?)),
            Client::Lp(lp) => Ok(hub::split_records(&lp.poll().await?)),
        }
    }

    /// Invokes `target` with string `arguments` as invocation `id`; returns its completion
    /// record.
    pub async fn invoke(
        &mut self,
        id: &str,
        target: &str,
        arguments: &[&str],
    ) -> Result<String, Error> {
        self.send(&hub::invocation(id, target, arguments)).await?;
        self.expect(|r| hub::is_completion_of(r, id)).await
    }

    /// Invokes `echo` and checks that its completion carries the payload back.
    pub async fn echo(&mut self, n: u64) -> Result<(), Error> {
        let payload = format!("m{n}");
        let answer = self.invoke(&n.to_string(), "echo", &[&payload]).await?;
        if answer.contains(&payload) {
            Ok(())
        } else {
            Err(failed(format!("echo {n}: {answer}")))
        }
    }

    /// Invokes `whoami`: the instance, connection, host, SNI and request ids it saw.
    pub async fn whoami(&mut self, id: &str) -> Result<serde_json::Value, Error> {
        let answer = self.invoke(id, "whoami", &[]).await?;
        let v: serde_json::Value = serde_json::from_str(&answer).map_err(failed)?;
        Ok(v["result"].clone())
    }

    /// Invokes `broadcast` of `message` to every connection of the hub and waits for its
    /// completion (the broadcast itself arrives among the next records).
    pub async fn broadcast(&mut self, id: &str, message: &str) -> Result<(), Error> {
        self.invoke(id, "broadcast", &[message]).await.map(drop)
    }

    /// Ends the connection from the client side.
    pub async fn close(self) {
        match self {
            Client::Ws(ws) => ws.close().await,
            Client::Sse(_) => {}
            Client::Lp(lp) => lp.delete().await,
        }
    }

    /// Whether the client holds a connection open between messages (WebSocket, SSE), as
    /// opposed to long polling, whose every poll is a new request.
    pub fn is_streaming(&self) -> bool {
        !matches!(self, Client::Lp(_))
    }
}
