//! The app-server role: `POST /<hub>/negotiate` answers `{url, accessToken}` like the
//! Microsoft.Azure.SignalR SDK, sending clients to the edge with a token for the instance it picked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use super::token;

/// An instance the app server can send clients to.
#[derive(Clone)]
pub struct Target {
    /// Host name the token's audience names.
    pub host: String,
    /// AccessKey the token is signed with.
    pub access_key: String,
    /// The emulated instance, whose health switch the app server honours like the SDK, which
    /// stops sending clients to an endpoint it sees offline.
    pub instance: Option<Arc<super::instance::Instance>>,
}

/// Settings of the app-server role.
#[derive(Clone)]
pub struct AppSettings {
    /// Public URL of the edge, as the SDK's ClientEndpoint (`http://127.0.0.1:8080`).
    pub client_endpoint: String,
    /// Instances picked in turn.
    pub targets: Vec<Target>,
    /// Leave `asrs_request_id` out of the URL (the serverless shape).
    pub omit_request_id: bool,
    /// Static files served for other GETs (the demo page), if any.
    pub static_dirs: Vec<std::path::PathBuf>,
}

struct App {
    settings: AppSettings,
    next: AtomicUsize,
}

/// The router of the app-server role.
pub fn router(settings: AppSettings) -> Router {
    let app = Arc::new(App {
        settings,
        next: AtomicUsize::new(0),
    });
    Router::new().fallback(handle).with_state(app)
}

/// A fresh request id: base64 of 8 bytes (time-based), as the SDK makes them.
fn new_request_id(counter: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let bytes = (nanos ^ (counter as u64).rotate_left(32)).to_le_bytes();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/_emulator/headers" {
        // What the app server received, so tests can check forwarding headers.
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
            .collect();
        return Json(serde_json::Value::Object(headers)).into_response();
    }
    if let Some(hub_path) = path
        .strip_suffix("/negotiate")
        .filter(|h| !h.is_empty() && !h[1..].contains('/'))
    {
        if req.method() != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        return negotiate(&app, hub_path, req.uri().query().unwrap_or_default());
    }
    if req.method() == Method::GET && !app.settings.static_dirs.is_empty() {
        return static_file(&app.settings.static_dirs, &path).await;
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn negotiate(app: &App, hub_path: &str, query: &str) -> Response {
    let hub = hub_path.trim_start_matches('/').to_ascii_lowercase();
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    let count = app.settings.targets.len();
    let Some(target) = (0..count)
        .map(|i| &app.settings.targets[(n + i) % count])
        .find(|t| t.instance.as_ref().is_none_or(|i| i.is_healthy()))
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy SignalR instance\n",
        )
            .into_response();
    };
    let mut url = format!(
        "{}/client/?hub={hub}&asrs.op={}",
        app.settings.client_endpoint.trim_end_matches('/'),
        utf8_percent_encode(hub_path, NON_ALPHANUMERIC)
    );
    if !query.is_empty() {
        url.push('&');
        url.push_str(query);
    }
    if !app.settings.omit_request_id {
        let id = new_request_id(n);
        url.push_str("&asrs_request_id=");
        url.push_str(&utf8_percent_encode(&id, NON_ALPHANUMERIC).to_string());
    }
    let user = format!("user-{n}");
    let access_token = token::sign(
        &target.access_key,
        &token::audience(&target.host, &hub),
        Some(&user),
        Duration::from_secs(3600),
    );
    Json(json!({"url": url, "accessToken": access_token, "availableTransports": []}))
        .into_response()
}

async fn static_file(dirs: &[std::path::PathBuf], path: &str) -> Response {
    let rel = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    if rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let ctype = match rel.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "application/javascript",
        Some("css") => "text/css",
        Some("map") => "application/json",
        _ => "application/octet-stream",
    };
    for dir in dirs {
        if let Ok(bytes) = tokio::fs::read(dir.join(rel)).await {
            return ([(header::CONTENT_TYPE, ctype)], bytes).into_response();
        }
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
