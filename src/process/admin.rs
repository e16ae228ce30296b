//! The admin listener: `POST /reload`, `GET /readyz`, `GET /healthz`, `GET /status`.
//! No credentials: bind it to loopback (the default) or a private interface.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use log::{error, info};

use super::ops::Ops;
use crate::reload::Trigger;

/// The admin routes over the shared operations state.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .with_state(ops)
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
    info!("admin listener on http://{addr} (/reload /readyz /healthz /status)");
    let served = axum::serve(listener, router(ops))
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

async fn reload(State(ops): State<Arc<Ops>>) -> Response {
    let report = ops.reloader.reload(Trigger::Admin).await;
    let code = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (code, Json(report)).into_response()
}
