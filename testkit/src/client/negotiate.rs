//! `POST /client/negotiate`, as a SignalR client sends it (bearer token, query as given).

/// The answer of a client negotiate.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// HTTP status.
    pub status: u16,
    /// The emulated instance that answered (`X-Emulator-Instance`; empty if none did).
    pub instance: String,
    /// The connection token, when the answer has one (negotiate v1).
    pub connection_token: Option<String>,
}

/// Negotiates at `base` with `/client/negotiate?<query>` and `token`; the request itself
/// failing is an error, any answer is a `Negotiated`.
pub async fn try_negotiate(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    token: &str,
) -> Result<Negotiated, reqwest::Error> {
    let r = client
        .post(format!("{base}/client/negotiate?{query}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = r.status().as_u16();
    let instance = r
        .headers()
        .get("x-emulator-instance")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Error answers are not JSON; they have no token.
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    Ok(Negotiated {
        status,
        instance,
        connection_token: body["connectionToken"].as_str().map(str::to_string),
    })
}

/// Like `try_negotiate`, failing the test if the request fails.
pub async fn negotiate(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    token: &str,
) -> Negotiated {
    try_negotiate(client, base, query, token).await.unwrap()
}
