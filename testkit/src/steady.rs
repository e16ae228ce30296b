//! A steady load of official `@microsoft/signalr` clients (`tests/e2e/steady.mjs` under Node)
//! for fault tests: long-lived clients with automatic reconnect plus fresh connections, over
//! WebSockets, SSE and long polling. Its events arrive as JSON lines, stamped in Unix ms.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::wait_for;

/// A running `steady.mjs`; killed on drop.
pub struct Steady {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

/// Unix time in ms, the clock of the driver's events.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Steady {
    /// Starts `per_transport` long-lived clients per transport against the app server behind
    /// `base` (`<base>/chat/negotiate`), stopping by itself after `max` at the latest, and waits
    /// until they are all connected.
    pub async fn start(e2e_dir: &Path, base: &str, per_transport: usize, max: Duration) -> Steady {
        assert!(
            e2e_dir.join("node_modules/@microsoft/signalr").is_dir(),
            "the official client is not installed: run ./ci.sh (or `npm ci` in tests/e2e)"
        );
        let mut child = Command::new("node")
            .current_dir(e2e_dir)
            .arg("steady.mjs")
            .arg(base)
            .arg(per_transport.to_string())
            .arg(max.as_secs().max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the fault tests");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let esink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                let mut e = esink.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        let steady = Steady {
            stdin: child.stdin.take(),
            child,
            events,
            stderr,
        };
        wait_for(Duration::from_secs(60), "the steady clients", || {
            if let Some(f) = steady.find("failed") {
                panic!("steady.mjs could not start: {f}\n{}", steady.stderr());
            }
            steady.find("ready").map(|_| ())
        })
        .await;
        steady
    }

    /// The first event named `ev`, if it came.
    pub fn find(&self, ev: &str) -> Option<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["ev"] == ev)
            .cloned()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// What the driver wrote on stderr.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Which instance each long-lived client landed on at start: `{"a": 3, ...}`.
    pub fn placement(&self) -> Value {
        self.find("ready")
            .map_or(Value::Null, |r| r["instances"].clone())
    }

    /// Asks the driver to stop and returns every event, the summary last.
    pub async fn stop(mut self) -> Vec<Value> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
        }
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            matches!(exited, Ok(Ok(_))),
            "steady.mjs did not stop\n{}",
            self.stderr()
        );
        // The reader task may still be taking the last lines.
        wait_for(Duration::from_secs(5), "the steady summary", || {
            self.find("summary").map(|_| ())
        })
        .await;
        self.events()
    }
}

/// What a fault did to the load, from the driver's events and the time the fault began.
#[derive(Debug, Default)]
pub struct FaultReport {
    /// Fresh connections that worked / failed, all transports.
    pub fresh_ok: u64,
    /// Fresh connections that failed.
    pub fresh_fail: u64,
    /// Fresh connections that failed more than `settle` after the fault.
    pub fresh_fail_late: u64,
    /// Last fresh failure, ms after the fault (0 when none).
    pub last_fail_ms: u64,
    /// Long-lived clients that lost their connection / got it back / gave up.
    pub downs: u64,
    /// Reconnections.
    pub ups: u64,
    /// Clients that gave up.
    pub closed: u64,
    /// Long-lived clients connected at the end, of how many.
    pub connected: u64,
    /// Longest time a long-lived client spent reconnecting, in ms.
    pub longest_outage_ms: u64,
    /// The first few failure messages.
    pub errors: Vec<String>,
}

impl FaultReport {
    /// Reads `events` (a stopped driver's) for a fault that began at `fault_at` (Unix ms);
    /// fresh failures later than `settle` after it are counted apart.
    pub fn of(events: &[Value], fault_at: u64, settle: Duration) -> FaultReport {
        let mut r = FaultReport::default();
        let mut down_since: std::collections::HashMap<(String, u64), u64> = Default::default();
        let at = |e: &Value| e["at"].as_u64().unwrap_or(0);
        for e in events {
            let key = || {
                (
                    e["transport"].as_str().unwrap_or("").to_string(),
                    e["id"].as_u64().unwrap_or(0),
                )
            };
            match e["ev"].as_str().unwrap_or("") {
                "fresh_fail" => {
                    let after = at(e).saturating_sub(fault_at);
                    if at(e) > fault_at + settle.as_millis() as u64 {
                        r.fresh_fail_late += 1;
                    }
                    r.last_fail_ms = r.last_fail_ms.max(after);
                    if r.errors.len() < 5 {
                        r.errors.push(format!(
                            "{} +{after} ms: {}",
                            e["transport"].as_str().unwrap_or(""),
                            e["error"].as_str().unwrap_or("")
                        ));
                    }
                }
                "down" => {
                    down_since.insert(key(), at(e));
                }
                "up" => {
                    if let Some(t) = down_since.remove(&key()) {
                        r.longest_outage_ms = r.longest_outage_ms.max(at(e).saturating_sub(t));
                    }
                }
                "summary" => {
                    r.connected = e["connected"].as_u64().unwrap_or(0);
                    if let Some(ts) = e["transports"].as_object() {
                        for s in ts.values() {
                            let n = |k: &str| s[k].as_u64().unwrap_or(0);
                            r.fresh_ok += n("fresh_ok");
                            r.fresh_fail += n("fresh_fail");
                            r.downs += n("downs");
                            r.ups += n("ups");
                            r.closed += n("closed");
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Share of fresh connections that failed, in percent.
    pub fn fail_percent(&self) -> f64 {
        let n = self.fresh_ok + self.fresh_fail;
        if n == 0 {
            0.0
        } else {
            100.0 * self.fresh_fail as f64 / n as f64
        }
    }
}
