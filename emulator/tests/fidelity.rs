//! The emulator answers like ASRS / ASP.NET Core SignalR, bad input included: these are the
//! answers the edge's users would get from the real service, so the other suites can trust it.

use std::time::Duration;

use asrs_emulator::Emulator;
use testkit::client::hub::{self, HANDSHAKE, RS};
use testkit::client::ws::{Refused, WsClient};
use testkit::{emulator, http, instance, token};
use tokio_tungstenite::tungstenite::Message;

const HOST: &str = "a.service.signalr.net";

/// One instance "a" (key "key-a", audience checked) with a short connect window.
async fn one_instance(window: Duration) -> (Emulator, String) {
    let mut ic = instance("a", "key-a", true);
    ic.connect_window = window;
    let em = emulator(vec![ic]).await;
    let base = format!("http://{}", em.instances[0].addr);
    (em, base)
}

fn tok() -> String {
    token("key-a", HOST, "chat")
}

async fn post(base: &str, path: &str, token: Option<&str>, body: &str) -> reqwest::Response {
    let mut r = http()
        .post(format!("{base}{path}"))
        .header("host", HOST)
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// `method` on the instance with its Host and a valid token.
async fn call(method: reqwest::Method, base: &str, path: &str) -> reqwest::Response {
    http()
        .request(method, format!("{base}{path}"))
        .header("host", HOST)
        .bearer_auth(tok())
        .send()
        .await
        .unwrap()
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    call(reqwest::Method::GET, base, path).await
}

/// Negotiates (v1) and returns the connection token.
async fn negotiate_id(base: &str) -> String {
    let r = post(
        base,
        "/client/negotiate?hub=chat&negotiateVersion=1",
        Some(&tok()),
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["connectionToken"].as_str().unwrap().to_string()
}

/// Opens a WebSocket to `/client/?<query>`; Err carries the HTTP status of a refused upgrade.
async fn ws(base: &str, query: &str) -> Result<WsClient, u16> {
    let url = format!("{}/client/?{query}", base.replacen("http", "ws", 1));
    match WsClient::connect(&url, Some(HOST), Some(&tok())).await {
        Ok(ws) => Ok(ws),
        Err(Refused::Status(status)) => Err(status),
        Err(Refused::Other(e)) => panic!("websocket: {e}"),
    }
}

/// The next hub records, or "<closed>" once the socket closes.
async fn records(ws: &mut WsClient) -> Vec<String> {
    match tokio::time::timeout(Duration::from_secs(10), ws.next_message()).await {
        Ok(Some(Ok(Message::Text(t)))) => hub::split_records(t.as_str()),
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => vec!["<closed>".into()],
        other => panic!("unexpected {other:?}"),
    }
}

async fn handshake(ws: &mut WsClient) {
    ws.send_text(HANDSHAKE).await.unwrap();
    assert_eq!(records(ws).await, vec!["{}"]);
}

#[tokio::test]
async fn negotiate_answers_like_the_service() {
    let (_em, base) = one_instance(Duration::from_secs(5)).await;
    let t = tok();
    let r = get(&base, "/client/negotiate?hub=chat").await;
    assert_eq!(r.status(), 405);
    let r = post(&base, "/client/negotiate", Some(&t), "").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "'hub' query parameter is required."
    );
    let r = post(&base, "/client/negotiate?hub=chat&hub=x", Some(&t), "").await;
    assert_eq!(r.status(), 400);
    for bad in [
        None,
        Some("not-a-jwt".to_string()),
        Some(token("other-key", HOST, "chat")),
        Some(token("key-a", "b.service.signalr.net", "chat")),
        Some(token("key-a", HOST, "otherhub")),
    ] {
        let r = post(&base, "/client/negotiate?hub=chat", bad.as_deref(), "").await;
        assert_eq!(r.status(), 401, "{bad:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    // The token may come in the query too (SSE does that).
    let r = post(
        &base,
        &format!("/client/negotiate?hub=chat&access_token={t}"),
        None,
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    let v0: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0["connectionId"].is_string() && v0.get("connectionToken").is_none());
    let r = post(
        &base,
        "/client/negotiate?hub=chat&negotiateVersion=1",
        Some(&t),
        "",
    )
    .await;
    let v1: serde_json::Value = r.json().await.unwrap();
    assert!(v1["connectionToken"].is_string());
    assert_eq!(v1["availableTransports"].as_array().unwrap().len(), 3);
    // Another tenant's Host gets 404, and the answer names the instance.
    let r = http()
        .post(format!("{base}/client/negotiate?hub=chat"))
        .header("host", "b.service.signalr.net")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-emulator-instance"], "a");
}

#[tokio::test]
async fn websocket_connect_rules() {
    let (_em, base) = one_instance(Duration::from_millis(300)).await;
    assert_eq!(ws(&base, "hub=chat&id=unknown").await.err(), Some(404));
    assert_eq!(ws(&base, "id=x").await.err(), Some(400));
    let id = negotiate_id(&base).await;
    let mut first = ws(&base, &format!("hub=chat&id={id}")).await.unwrap();
    assert_eq!(
        ws(&base, &format!("hub=chat&id={id}")).await.err(),
        Some(409)
    );
    // Sends over HTTP are refused on a WebSocket connection.
    let r = post(
        &base,
        &format!("/client/?hub=chat&id={id}"),
        Some(&tok()),
        "x",
    )
    .await;
    assert_eq!(r.status(), 405);
    handshake(&mut first).await;
    // No id: a new connection, as pysignalr and signalrcore expect.
    let mut direct = ws(&base, "hub=chat&asrs_request_id=r1").await.unwrap();
    handshake(&mut direct).await;
    direct
        .send(Message::text(format!(
            "{{\"type\":1,\"invocationId\":\"1\",\"target\":\"whoami\",\"arguments\":[]}}{RS}"
        )))
        .await
        .unwrap();
    let who: serde_json::Value = serde_json::from_str(&records(&mut direct).await[0]).unwrap();
    assert_eq!(who["result"]["requestIdAtConnect"], "r1");
    // Past the connect window, a negotiated id is gone.
    let late = negotiate_id(&base).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ws(&base, &format!("hub=chat&id={late}")).await.err(),
        Some(404)
    );
}

#[tokio::test]
async fn bad_hub_input_gets_the_servers_answers() {
    let (em, base) = one_instance(Duration::from_secs(5)).await;
    let open = |base: String| async move {
        let id = negotiate_id(&base).await;
        ws(&base, &format!("hub=chat&id={id}")).await.unwrap()
    };
    // A handshake that is not JSON: an error handshake response, then close.
    let mut c = open(base.clone()).await;
    c.send(Message::text(format!("garbage{RS}"))).await.unwrap();
    assert!(records(&mut c).await[0].contains("\"error\""));
    assert_eq!(records(&mut c).await, vec!["<closed>"]);
    // Malformed JSON after the handshake: a close message with the error.
    let mut c = open(base.clone()).await;
    handshake(&mut c).await;
    c.send(Message::text(format!("{{\"type\":1,{RS}")))
        .await
        .unwrap();
    let r = records(&mut c).await;
    assert!(
        r[0].contains("\"type\":7") && r[0].contains("Error reading JSON"),
        "{r:?}"
    );
    // Invalid UTF-8 in a binary frame: the same, and the instance carries on.
    let mut c = open(base.clone()).await;
    handshake(&mut c).await;
    c.send(Message::binary(vec![0xff, 0xfe, 0x1e]))
        .await
        .unwrap();
    assert!(records(&mut c).await[0].contains("\"type\":7"));
    // Over the size limit (32 KiB by default), even before the record ends: closed with the reason.
    let mut c = open(base.clone()).await;
    handshake(&mut c).await;
    c.send(Message::text("x".repeat(40 * 1024))).await.unwrap();
    let r = records(&mut c).await;
    assert!(r[0].contains("maximum message size of 32768B"), "{r:?}");
    // A record split over frames is whole once its separator arrives; unknown methods and
    // wrong argument counts get completion errors, not a close.
    let mut c = open(base.clone()).await;
    handshake(&mut c).await;
    c.send(Message::text(
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"ec",
    ))
    .await
    .unwrap();
    c.send(Message::text(format!("ho\",\"arguments\":[\"hi\"]}}{RS}")))
        .await
        .unwrap();
    assert!(records(&mut c).await[0].contains("\"result\":\"hi\""));
    c.send(Message::text(format!(
        "{{\"type\":1,\"invocationId\":\"2\",\"target\":\"nope\",\"arguments\":[]}}{RS}{{\"type\":1,\"invocationId\":\"3\",\"target\":\"echo\",\"arguments\":[]}}{RS}"
    )))
    .await
    .unwrap();
    let mut got = records(&mut c).await;
    if got.len() < 2 {
        got.extend(records(&mut c).await);
    }
    assert!(got[0].contains("Method does not exist"), "{got:?}");
    assert!(got[1].contains("argument"), "{got:?}");
    // Every connection closed above is forgotten (the server learns of dropped sockets a moment
    // later, so poll); only `c` remains.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while em.instances[0].state.list().len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed connections still listed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Wrong methods on the transport endpoint.
    let r = call(reqwest::Method::PUT, &base, "/client/?hub=chat&id=x").await;
    assert_eq!(r.status(), 405);
}

/// Waits (polling the admin list) until the connection has registered long poll number `n`.
async fn poll_registered(em: &Emulator, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while em.instances[0].state.list()[0]["pollGeneration"] != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "poll {n} never registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn long_polling_and_sse_lifecycle() {
    let (em, base) = one_instance(Duration::from_secs(5)).await;
    assert_eq!(get(&base, "/client/?hub=chat").await.status(), 400);
    let r = http()
        .get(format!("{base}/client/?hub=chat&id=unknown"))
        .header("host", HOST)
        .header("accept", "text/event-stream")
        .bearer_auth(tok())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let id = negotiate_id(&base).await;
    let path = format!("/client/?hub=chat&id={id}");
    // The first poll answers at once, empty.
    let r = get(&base, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    // A newer poll ends the pending one with 204.
    let pending = tokio::spawn({
        let (base, path) = (base.clone(), path.clone());
        async move { get(&base, &path).await.status() }
    });
    poll_registered(&em, 1).await;
    let newer = tokio::spawn({
        let (base, path) = (base.clone(), path.clone());
        async move { get(&base, &path).await }
    });
    assert_eq!(pending.await.unwrap(), 204);
    let sent = post(
        &base,
        &path,
        Some(&tok()),
        &format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"),
    )
    .await;
    assert_eq!(sent.status(), 200);
    let r = newer.await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("{{}}{RS}"));
    // DELETE answers 202 and ends a pending poll with 204.
    let pending = tokio::spawn({
        let (base, path) = (base.clone(), path.clone());
        async move { get(&base, &path).await.status() }
    });
    poll_registered(&em, 3).await;
    let r = call(reqwest::Method::DELETE, &base, &path).await;
    assert_eq!(r.status(), 202);
    assert_eq!(pending.await.unwrap(), 204);
    assert_eq!(get(&base, &path).await.status(), 404);
}
