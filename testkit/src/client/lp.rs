//! The long-polling transport: each GET waits for the server's next records, sends go by
//! POST, and DELETE ends the connection.

use super::{failed, post_records, Error};

/// A long-polling connection.
pub struct LpClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl LpClient {
    /// A connection at `url` (`.../client/?...&id=...`); nothing is sent yet.
    pub fn new(http: &reqwest::Client, url: &str, token: &str) -> LpClient {
        LpClient {
            http: http.clone(),
            url: url.to_string(),
            token: token.to_string(),
        }
    }

    /// One poll: the records' text (the first poll answers at once, empty), or `Closed` once
    /// the server ends the connection (`204`).
    pub async fn poll(&self) -> Result<String, Error> {
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

    /// POSTs records to the connection.
    pub async fn send(&self, text: &str) -> Result<(), Error> {
        post_records(&self.http, &self.url, &self.token, text).await
    }

    /// Ends the connection (`DELETE`).
    pub async fn delete(self) {
        let _ = self
            .http
            .delete(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await;
    }
}
