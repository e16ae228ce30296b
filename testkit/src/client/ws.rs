//! The WebSocket transport: one connection carries both directions, a record per text frame
//! or several.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::hub::{self, HANDSHAKE};
use super::{failed, Error, ANSWER};

/// The WebSocket stream under a client.
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a WebSocket did not open.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    /// Anything else: connect, timeout, bad handshake.
    Other(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Status(s) => write!(f, "upgrade answered {s}"),
            Refused::Other(e) => f.write_str(e),
        }
    }
}

/// An open WebSocket (boxed: the stream is large, and clients are moved around).
pub struct WsClient {
    ws: Box<WsStream>,
}

impl WsClient {
    /// Opens `url` (`ws://...`), sending `Host: host` and `Authorization: Bearer token` when
    /// given; the upgrade must answer within 10 s.
    pub async fn connect(
        url: &str,
        host: Option<&str>,
        token: Option<&str>,
    ) -> Result<WsClient, Refused> {
        let other = |e: &dyn std::fmt::Display| Refused::Other(e.to_string());
        let mut req = url.into_client_request().map_err(|e| other(&e))?;
        if let Some(host) = host {
            req.headers_mut()
                .insert("host", host.parse().map_err(|e| other(&e))?);
        }
        if let Some(token) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().map_err(|e| other(&e))?,
            );
        }
        match tokio::time::timeout(ANSWER, tokio_tungstenite::connect_async(req)).await {
            Err(_) => Err(Refused::Other("timeout".into())),
            Ok(Ok((ws, _))) => Ok(WsClient { ws: Box::new(ws) }),
            Ok(Err(tungstenite::Error::Http(resp))) => Err(Refused::Status(resp.status().as_u16())),
            Ok(Err(e)) => Err(Refused::Other(e.to_string())),
        }
    }

    /// Sends one frame; a failure means the connection is gone.
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.ws
            .send(msg)
            .await
            .map_err(|e| Error::Closed(format!("send: {e}")))
    }

    /// Sends `text` (records, or any bytes a test wants the server to see) as one text frame.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::text(text)).await
    }

    /// The next frame as it came, `None` at the end of the stream.
    pub async fn next_message(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.ws.next().await
    }

    /// The records of the next frame (none for frames other than text); `Closed` once the
    /// server closes.
    pub async fn next_records(&mut self) -> Result<Vec<String>, Error> {
        match self.next_message().await {
            Some(Ok(Message::Text(t))) => Ok(hub::split_records(t.as_str())),
            Some(Ok(Message::Close(c))) => Err(Error::Closed(format!("close {c:?}"))),
            Some(Ok(_)) => Ok(vec![]),
            Some(Err(e)) => Err(Error::Closed(e.to_string())),
            None => Err(Error::Closed("end of stream".into())),
        }
    }

    /// Sends the handshake and waits for its empty answer.
    pub async fn handshake(&mut self) -> Result<(), Error> {
        self.send_text(HANDSHAKE).await?;
        let deadline = tokio::time::Instant::now() + ANSWER;
        loop {
            let records = tokio::time::timeout_at(deadline, self.next_records())
                .await
                .map_err(|_| failed("no handshake answer in time"))??;
            if records.iter().any(|r| r == "{}") {
                return Ok(());
            }
        }
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = (*self.ws).close(None).await;
    }
}

/// Connects to `<ws_base>/client/?<query>` with `token`, sends the handshake and a `whoami`
/// invocation without waiting in between, and returns the invocation's result.
pub async fn ws_whoami(
    ws_base: &str,
    query: &str,
    token: &str,
) -> Result<serde_json::Value, String> {
    let mut ws = WsClient::connect(&format!("{ws_base}/client/?{query}"), None, Some(token))
        .await
        .map_err(|e| e.to_string())?;
    ws.send_text(HANDSHAKE).await.map_err(|e| e.to_string())?;
    ws.send_text(&hub::invocation("1", "whoami", &[]))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next_message())
            .await
            .map_err(|_| "timeout".to_string())?;
        let Some(Ok(Message::Text(t))) = msg else {
            return Err(format!("unexpected {msg:?}"));
        };
        for rec in hub::split_records(t.as_str()) {
            let v: serde_json::Value = serde_json::from_str(&rec).map_err(|e| e.to_string())?;
            if v["type"] == 3 {
                ws.close().await;
                return Ok(v["result"].clone());
            }
        }
    }
}
