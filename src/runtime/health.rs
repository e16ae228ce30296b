//! Endpoint health: the state the request path reads (atomic loads; the clock only while an
//! ejection is set), the probes that set the active half and the passive half (outlier
//! detection) that real requests feed.
//!
//! Probes reuse pingora-load-balancing's `HttpHealthCheck` / `TcpHealthCheck`, one per endpoint,
//! because ASRS needs each instance's own `Host` and SNI, which a shared check cannot send.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pingora_core::protocols::tls::CaType;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck as Probe, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use serde::Serialize;

use crate::config::{CheckKind, HealthCheck, PassiveHealth};
use crate::metrics::HealthMetrics;

/// Milliseconds on the process's monotonic clock, from 1 (0 stands for "no ejection").
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Health of one endpoint; starts healthy so a fresh edge serves before the first probe.
#[derive(Debug)]
pub struct Health {
    healthy: AtomicBool,
    /// Consecutive probe results that disagree with `healthy`.
    streak: AtomicU32,
    /// End of the current ejection on the `now_ms` clock; 0 when none is set.
    ejected_until: AtomicU64,
    /// Consecutive failed requests (passive health).
    failures: AtomicU64,
    /// Ejections since the endpoint first appeared (kept across reloads with the rest).
    ejections: AtomicU64,
    /// Where transitions and ejections are counted for `/metrics`.
    metrics: Option<HealthMetrics>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            metrics: None,
        }
    }
}

/// What `/status` shows of one endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HealthView {
    /// The active probe's verdict (true without probes).
    pub probe_healthy: bool,
    /// Seconds left of the current ejection, if one is set.
    pub ejected_for_seconds: Option<f64>,
    /// Consecutive failed requests so far.
    pub failures: u64,
    /// Ejections so far.
    pub ejections: u64,
}

impl Health {
    /// A fresh (healthy) state whose changes are counted in `metrics`.
    pub fn observed(metrics: HealthMetrics) -> Self {
        Health {
            metrics: Some(metrics),
            ..Health::default()
        }
    }

    /// Counts a change of the endpoint's health.
    fn transition(&self, healthy: bool) {
        if let Some(m) = &self.metrics {
            if healthy {
                m.to_healthy.inc();
            } else {
                m.to_unhealthy.inc();
            }
        }
    }

    /// Whether new connections may go to the endpoint: the probe says so and no ejection is
    /// running. Reads the clock only while an ejection is set.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected_at(None)
    }

    /// The active probe's verdict alone.
    pub fn probe_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether an ejection runs at `now` (the clock when `None`); clears one that ended, so
    /// that later calls skip the clock again.
    fn is_ejected_at(&self, now: Option<u64>) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now.unwrap_or_else(now_ms) < until {
            return true;
        }
        let cleared = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        // The ejection's end is a transition back when the probe agrees (counted once).
        if cleared && self.probe_healthy() {
            self.transition(true);
        }
        false
    }

    /// Time left of the ejection at `now`, if one runs.
    pub fn ejection_left(&self, now: u64) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Records a failed request at `now`; returns the ejection it started, if it did. Failures
    /// during an ejection (requests already under way) neither extend nor count.
    pub fn passive_failure(&self, p: &PassiveHealth, now: u64) -> Option<Duration> {
        if p.failures == 0 || self.is_ejected_at(Some(now)) {
            return None;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        // Only the request that reached the threshold ejects (concurrent ones see 0 or more).
        if n < p.failures as u64
            || self
                .failures
                .compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let ms = u64::try_from(p.ejection.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(ms.max(1)), Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.ejections.inc();
        }
        if self.probe_healthy() {
            self.transition(false);
        }
        Some(p.ejection)
    }

    /// Records an answer that ends a failure streak (any response header but a failing one).
    pub fn passive_success(&self) {
        // Read first: the common case writes nothing, so the cache line stays shared.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// The state as `/status` shows it, at `now`.
    pub fn view(&self, now: u64) -> HealthView {
        HealthView {
            probe_healthy: self.probe_healthy(),
            ejected_for_seconds: self.ejection_left(now).map(|d| d.as_secs_f64()),
            failures: self.failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
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
        let healthy = self.probe_healthy();
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
            // While ejected the endpoint stays unhealthy whatever the probe says.
            if !self.is_ejected_at(None) {
                self.transition(ok);
            }
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
    fn consecutive_failures_eject_for_the_ejection_time() {
        let p = PassiveHealth {
            failures: 3,
            ejection: Duration::from_secs(10),
        };
        let h = Health::default();
        assert_eq!(h.passive_failure(&p, 1_000), None);
        assert_eq!(h.passive_failure(&p, 1_000), None);
        // A response header in between starts the count again.
        h.passive_success();
        assert_eq!(h.passive_failure(&p, 1_000), None);
        assert_eq!(h.passive_failure(&p, 1_000), None);
        assert_eq!(h.passive_failure(&p, 2_000), Some(p.ejection));
        assert!(h.is_ejected_at(Some(2_000)) && h.is_ejected_at(Some(11_999)));
        assert_eq!(h.ejection_left(5_000), Some(Duration::from_secs(7)));
        // Requests under way when it was ejected neither extend nor count.
        assert_eq!(h.passive_failure(&p, 3_000), None);
        assert_eq!(h.view(3_000).failures, 0);
        let v = h.view(2_000);
        assert_eq!((v.probe_healthy, v.ejections), (true, 1));
        assert_eq!(v.ejected_for_seconds, Some(10.0));
        // Back after the ejection time, cleared so that is_healthy skips the clock again.
        assert!(!h.is_ejected_at(Some(12_000)));
        assert_eq!(h.ejected_until.load(Ordering::Relaxed), 0);
        assert!(h.is_healthy());
        assert_eq!(h.view(12_000).ejected_for_seconds, None);
        // The probe's verdict and the ejection are independent: each alone keeps requests away.
        h.record(false, 1, 1);
        assert!(!h.is_healthy() && h.ejection_left(12_000).is_none());
    }

    #[test]
    fn failures_zero_turns_passive_health_off() {
        let off = PassiveHealth {
            failures: 0,
            ejection: Duration::from_secs(10),
        };
        let h = Health::default();
        for _ in 0..100 {
            assert_eq!(h.passive_failure(&off, 1), None);
        }
        assert!(h.is_healthy());
        let one = PassiveHealth { failures: 1, ..off };
        assert_eq!(h.passive_failure(&one, now_ms()), Some(off.ejection));
        assert!(!h.is_healthy(), "ejected on the real clock");
    }

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
