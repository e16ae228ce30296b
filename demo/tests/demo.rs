//! The demo binary: a taken port is refused; a run serves the app's negotiate and the client
//! negotiate it redirects to through the edge, and Ctrl-C stops it with status 0.

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
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
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
    let connection_token = loop {
        assert!(
            Instant::now() < deadline,
            "the demo did not negotiate within 30 s"
        );
        let attempt = || {
            let (status, body) = post(port, "/chat/negotiate?negotiateVersion=1", None)?;
            (status == 200).then_some(())?;
            let app = json(&body);
            let url = app["url"].as_str()?;
            let query = url.split_once('?')?.1;
            let token = app["accessToken"].as_str()?;
            let (status, body) = post(port, &format!("/client/negotiate?{query}"), Some(token))?;
            (status == 200).then_some(())?;
            json(&body)["connectionToken"].as_str().map(str::to_string)
        };
        if let Some(t) = attempt() {
            break t;
        }
        assert!(
            demo.0.try_wait().unwrap().is_none(),
            "the demo exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!connection_token.is_empty());
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
