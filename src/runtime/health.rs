//! Endpoint health: the state the request path reads (one atomic load) and the probes that set it.
//!
//! Probes reuse pingora-load-balancing's `HttpHealthCheck` / `TcpHealthCheck`, one per endpoint,
//! because ASRS needs each instance's own `Host` and SNI, which a shared check cannot send.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::protocols::tls::CaType;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck as Probe, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;

use crate::config::{CheckKind, HealthCheck};

/// Health of one endpoint; starts healthy so a fresh edge serves before the first probe.
#[derive(Debug)]
pub struct Health {
    healthy: AtomicBool,
    /// Consecutive probe results that disagree with `healthy`.
    streak: AtomicU32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }
}

impl Health {
    /// Whether new connections may go to the endpoint.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the state outright (the first probe of an endpoint a reload adds).
    pub fn set(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
    }

    /// Records one probe result; returns the new state when it flipped.
    pub fn record(
        &self,
        ok: bool,
        healthy_threshold: usize,
        unhealthy_threshold: usize,
    ) -> Option<bool> {
        let healthy = self.is_healthy();
        if ok == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) as usize + 1;
        let needed = if ok {
            healthy_threshold
        } else {
            unhealthy_threshold
        };
        if streak >= needed {
            self.healthy.store(ok, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            Some(ok)
        } else {
            None
        }
    }
}

/// What a probe needs to know about its endpoint.
pub struct ProbeTarget<'a> {
    /// Host name (SNI).
    pub host: &'a str,
    /// `Host` header value (host, plus port when not the scheme's default).
    pub authority: &'a str,
    /// Whether to speak TLS.
    pub tls: bool,
    /// Verify the certificate.
    pub verify: bool,
    /// Trust these CAs instead of the system's.
    pub ca: Option<Arc<CaType>>,
    /// Where to connect.
    pub addr: std::net::SocketAddr,
}

/// A compiled active health check of one endpoint.
pub struct Prober {
    probe: Box<dyn Probe + Send + Sync>,
    backend: Backend,
    /// Time between probes.
    pub interval: Duration,
    /// Settings the result is judged by.
    pub settings: HealthCheck,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("backend", &self.backend.addr)
            .finish()
    }
}

impl Prober {
    /// Builds the probe for one endpoint.
    pub fn new(settings: &HealthCheck, target: ProbeTarget<'_>) -> Result<Self, String> {
        let probe: Box<dyn Probe + Send + Sync> = match settings.kind {
            CheckKind::Http => {
                let mut check = HttpHealthCheck::new(target.host, target.tls);
                let mut req = RequestHeader::build(
                    settings.method.0.clone(),
                    settings.path.0.as_bytes(),
                    None,
                )
                .map_err(|e| format!("invalid health check request: {e}"))?;
                req.insert_header("Host", target.authority)
                    .map_err(|e| format!("invalid Host for health check: {e}"))?;
                req.insert_header("User-Agent", "signalr-edge-health")
                    .map_err(|e| e.to_string())?;
                check.req = req;
                let o = &mut check.peer_template.options;
                o.connection_timeout = Some(settings.timeout);
                o.total_connection_timeout = Some(settings.timeout);
                o.read_timeout = Some(settings.timeout);
                o.write_timeout = Some(settings.timeout);
                o.verify_cert = target.verify;
                o.verify_hostname = target.verify;
                o.ca = target.ca;
                Box::new(check)
            }
            CheckKind::Tcp => {
                let mut check = if target.tls {
                    TcpHealthCheck::new_tls(target.host)
                } else {
                    TcpHealthCheck::new()
                };
                let o = &mut check.peer_template.options;
                o.connection_timeout = Some(settings.timeout);
                o.total_connection_timeout = Some(settings.timeout);
                o.verify_cert = target.verify;
                o.verify_hostname = target.verify;
                o.ca = target.ca;
                check
            }
        };
        let backend = Backend::new(&target.addr.to_string()).map_err(|e| e.to_string())?;
        Ok(Prober {
            probe,
            backend,
            interval: settings.interval,
            settings: settings.clone(),
        })
    }

    /// A prober running `probe` against `addr` (tests: probes that fail or panic on demand).
    #[cfg(test)]
    pub(crate) fn with_probe(
        probe: Box<dyn Probe + Send + Sync>,
        settings: &HealthCheck,
        addr: std::net::SocketAddr,
    ) -> Self {
        Prober {
            probe,
            backend: Backend::new(&addr.to_string()).expect("an ip:port"),
            interval: settings.interval,
            settings: settings.clone(),
        }
    }

    /// Runs one probe, bounded by the probe timeout; `Err` says why it failed.
    pub async fn probe(&self) -> Result<(), String> {
        // Connect, write and read are each bounded; this bounds the sum as well.
        let limit = self.settings.timeout.saturating_mul(2);
        match tokio::time::timeout(limit, self.probe.check(&self.backend)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_state() {
        let h = Health::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(
            h.record(false, 2, 3),
            None,
            "a failure resets the recovery streak"
        );
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true));
        assert!(h.is_healthy());
    }
}
