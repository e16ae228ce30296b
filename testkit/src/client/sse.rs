//! The Server-Sent Events transport: one long GET brings the server's records, sends go by POST.

use futures_util::StreamExt;

use super::hub;
use super::{failed, post_records, Error};

/// An open event stream.
pub struct SseClient {
    http: reqwest::Client,
    url: String,
    token: String,
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseClient {
    /// Opens the event stream of the connection at `url` (`.../client/?...&id=...`).
    pub async fn open(http: &reqwest::Client, url: &str, token: &str) -> Result<SseClient, Error> {
        let r = http
            .get(url)
            .header("accept", "text/event-stream")
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| failed(format!("connect: {e:?}")))?;
        if r.status() != 200 {
            return Err(failed(format!("connect: {}", r.status())));
        }
        Ok(SseClient {
            http: http.clone(),
            url: url.to_string(),
            token: token.to_string(),
            stream: r.bytes_stream().boxed(),
            buf: String::new(),
        })
    }

    /// POSTs records to the connection. (`&mut`: the stream is not `Sync`, so a shared
    /// borrow held across the request would make the future not `Send`.)
    pub async fn send(&mut self, text: &str) -> Result<(), Error> {
        post_records(&self.http, &self.url, &self.token, text).await
    }

    /// The data of the next event (comments such as the opening `:` give empty data).
    pub async fn next_data(&mut self) -> Result<String, Error> {
        loop {
            if let Some(end) = self.buf.find("\r\n\r\n") {
                let event: String = self.buf.drain(..end + 4).collect();
                return Ok(hub::sse_data(&event));
            }
            match self.stream.next().await {
                Some(Ok(b)) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                Some(Err(e)) => return Err(Error::Closed(format!("{e:?}"))),
                None => return Err(Error::Closed("end of stream".into())),
            }
        }
    }
}
