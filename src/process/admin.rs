//! The admin listener: `POST /reload`, `GET /readyz`, `GET /healthz`, `GET /status`,
//! `GET /metrics` (Prometheus text), each
//! behind `admin_guard` (the listener's `Host`, the token if one is set, no cross-site posts).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::header::{self, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use log::{error, info};

use super::admin_guard;
use super::ops::Ops;
use crate::proxy::refusal::Refusal;
use crate::reload::Trigger;

/// The admin routes over the shared operations state, behind the guard.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload))
        .layer(middleware::from_fn_with_state(ops.clone(), guard))
        .with_state(ops)
}

/// The live status page: static HTML and script that poll `/status` and `/metrics` with the
/// operator's token, so the page itself carries no data.
const STATUS_PAGE: &str = include_str!("status_page.html");

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing but this page's own script and style, and the same origin's JSON.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
                 connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

/// The two ends of an admin connection: the guard checks `Host` against the local one.
#[derive(Debug, Clone, Copy)]
struct Ends {
    local: Option<SocketAddr>,
    peer: SocketAddr,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Ends {
            local: stream.io().local_addr().ok(),
            peer: *stream.remote_addr(),
        }
    }
}

/// Runs `admin_guard::check` on every request; a refused one is counted and answered here.
async fn guard(
    State(ops): State<Arc<Ops>>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    req: Request,
    next: Next,
) -> Response {
    let runtime = ops.reloader.runtime();
    let verdict = match ends.local {
        Some(local) => admin_guard::check(
            req.method(),
            req.uri().path(),
            req.headers(),
            local,
            runtime.admin_token.as_ref(),
        ),
        None => Err(Refusal::AdminWrongHost),
    };
    drop(runtime);
    match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            refusal.count();
            // Method and reason only: nothing the client sent that could be a credential.
            info!(
                "admin: refused {} from {}: {} ({})",
                req.method(),
                ends.peer.ip(),
                refusal.as_str(),
                refusal.status()
            );
            refused(refusal)
        }
    }
}

fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
    let text = match refusal {
        Refusal::AdminWrongHost => {
            "signalr-edge admin: Host must be this listener's address or localhost\n"
        }
        Refusal::AdminUnauthorized => {
            "signalr-edge admin: Authorization: Bearer <admin token> required\n"
        }
        _ => "signalr-edge admin: POST needs Content-Type: application/json or X-Signalr-Edge: 1\n",
    };
    let mut response = (status, text).into_response();
    if refusal == Refusal::AdminUnauthorized {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"signalr-edge admin\""),
        );
    }
    response
}

/// Serves the admin routes on `listener` until `stop` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    ops: Arc<Ops>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!("admin listener {addr}: {e}");
            return;
        }
    };
    info!("admin listener on http://{addr} (/reload /readyz /healthz /status /metrics)");
    let app = router(ops).into_make_service_with_connect_info::<Ends>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    match served {
        Ok(()) => info!("admin listener {addr}: handed to the new process"),
        Err(e) => error!("admin listener {addr}: {e}"),
    }
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    if ops.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if ops.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn status(State(ops): State<Arc<Ops>>) -> Response {
    Json(ops.status()).into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics(),
    )
        .into_response()
}

async fn reload(State(ops): State<Arc<Ops>>) -> Response {
    let report = ops.reloader.reload(Trigger::Admin).await;
    let code = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (code, Json(report)).into_response()
}
