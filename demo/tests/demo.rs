//! The demo binary: a taken port is refused; a run serves the app's negotiate and the client
//! negotiate it redirects to through the edge, the same under the `/signalr` prefix (the app
//! server whose ClientEndpoint has that path) followed by a long-polling connect, and Ctrl-C
//! stops it with status 0.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_signalr-edge-demo");

/// Kills the demo if a test fails before stopping it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 POST with `Connection: close`; the status and body, or None if not answered.
fn post(port: u16, path_and_query: &str, token: Option<&str>) -> Option<(u16, String)> {
    request("POST", port, path_and_query, token)
}

/// One HTTP/1.1 request without body and with `Connection: close`; the status and body.
fn request(
    method: &str,
    port: u16,
    path_and_query: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.get(9..12)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The JSON object in a (possibly chunked) body.
fn json(body: &str) -> serde_json::Value {
    let (start, end) = (body.find('{').unwrap(), body.rfind('}').unwrap());
    serde_json::from_str(&body[start..=end]).unwrap()
}

/// A client that negotiated through the edge: the URL's path and query, token and connection token.
struct Negotiated {
    path: String,
    query: String,
    token: String,
    connection_token: String,
}

/// The app server's negotiate at `<prefix>/chat/negotiate`, then the client negotiate its
/// answer points to, both through the edge.
fn negotiate(port: u16, prefix: &str) -> Option<Negotiated> {
    let app_negotiate = format!("{prefix}/chat/negotiate?negotiateVersion=1");
    let (status, body) = post(port, &app_negotiate, None)?;
    (status == 200).then_some(())?;
    let app = json(&body);
    let url = app["url"].as_str()?;
    let (path, query) = url
        .strip_prefix(&format!("http://127.0.0.1:{port}"))?
        .split_once('?')?;
    let token = app["accessToken"].as_str()?;
    let (status, body) = post(port, &format!("{path}negotiate?{query}"), Some(token))?;
    (status == 200).then_some(())?;
    let connection_token = json(&body)["connectionToken"].as_str()?.to_string();
    Some(Negotiated {
        path: path.to_string(),
        query: query.to_string(),
        token: token.to_string(),
        connection_token,
    })
}

#[test]
fn a_taken_port_is_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(DEMO).args(["--port", &port]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
}

#[test]
fn negotiates_through_the_edge_and_stops_on_ctrl_c() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(DEMO)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Demo(child);
    // The app server's negotiate, then the client negotiate its answer points to, both through
    // the edge; retried until the edge listens and has probed the instances.
    let deadline = Instant::now() + Duration::from_secs(30);
    let plain = loop {
        assert!(
            Instant::now() < deadline,
            "the demo did not negotiate within 30 s"
        );
        if let Some(n) = negotiate(port, "") {
            break n;
        }
        assert!(
            demo.0.try_wait().unwrap().is_none(),
            "the demo exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(plain.path, "/client/");
    assert!(!plain.connection_token.is_empty());
    // The app server whose ClientEndpoint has a path sends clients to /signalr/client/, which
    // the edge forwards as /client/: negotiate, then connect by long polling (the first poll
    // answers at once; an instance answers 404 to a path it does not know).
    let prefixed = negotiate(port, "/signalr").expect("a negotiate through /signalr");
    assert_eq!(prefixed.path, "/signalr/client/");
    let poll = format!(
        "/signalr/client/?{}&id={}",
        prefixed.query, prefixed.connection_token
    );
    let (status, _) = request("GET", port, &poll, Some(&prefixed.token)).expect("a first poll");
    assert_eq!(status, 200, "the first long poll through /signalr");
    let pid = demo.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    demo.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains(&format!("edge:       http://127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("signalr-edge-demo: stopped"), "{out}");
}
