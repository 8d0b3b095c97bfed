//! A small circuit breaker for the clients of remote dependencies (Infisical, the OpenBao
//! archive).
//!
//! When a dependency is down, every caller would otherwise wait out timeouts and retries; with the
//! breaker open they get an answer in microseconds and the lookup path can fall back or answer
//! 503 at once. Closed: requests flow, consecutive failures are counted. Open: requests are
//! refused until the cool-down passes. Half-open: exactly one probe is let through; its success
//! closes the breaker, its failure opens it again for another cool-down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker is doing, for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `tenant_vault_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    /// The dependency, for logs and the `dependency` label of the state gauge.
    name: &'static str,
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub(crate) fn new(name: &'static str, threshold: u32, cooldown: Duration) -> Self {
        metrics::gauge!("tenant_vault_breaker_state", "dependency" => name)
            .set(BreakerState::Closed.gauge());
        Self {
            name,
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the state is still
        // a valid enum value, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a request go out now? Moves Open to HalfOpen after the cool-down and then admits
    /// exactly one probe.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut inner = self.lock();
        match &mut *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } => {
                if Instant::now() >= *until {
                    *inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    self.publish(BreakerState::HalfOpen);
                    true
                } else {
                    false
                }
            }
            Inner::HalfOpen { probe_in_flight } => {
                if *probe_in_flight {
                    false
                } else {
                    *probe_in_flight = true;
                    true
                }
            }
        }
    }

    /// The server answered (any status that shows it is alive and well enough to talk).
    pub(crate) fn on_success(&self) {
        let mut inner = self.lock();
        if !matches!(*inner, Inner::Closed { failures: 0 }) {
            if !matches!(*inner, Inner::Closed { .. }) {
                tracing::info!(dependency = self.name, "circuit breaker closed");
            }
            *inner = Inner::Closed { failures: 0 };
            self.publish(BreakerState::Closed);
        }
    }

    /// A transport error, timeout or 5xx.
    pub(crate) fn on_failure(&self) {
        let mut inner = self.lock();
        let open = match &mut *inner {
            Inner::Closed { failures } => {
                *failures += 1;
                *failures >= self.threshold
            }
            Inner::HalfOpen { .. } => true,
            Inner::Open { .. } => false,
        };
        if open {
            tracing::warn!(
                dependency = self.name,
                cooldown_ms = self.cooldown.as_millis() as u64,
                "circuit breaker opened"
            );
            *inner = Inner::Open {
                until: Instant::now() + self.cooldown,
            };
            self.publish(BreakerState::Open);
        }
    }

    /// A request that was admitted ended without telling us anything about the server (for
    /// example the caller's future was dropped). Lets another probe through in half-open.
    pub(crate) fn on_abandon(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probe_in_flight } = &mut *inner {
            *probe_in_flight = false;
        }
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!("tenant_vault_breaker_state", "dependency" => self.name).set(state.gauge());
    }

    pub(crate) fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = CircuitBreaker::new("test", 2, Duration::from_millis(30));
        assert!(b.try_acquire());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire(), "probe admitted after cool-down");
        assert!(!b.try_acquire(), "only one probe at a time");
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
    }

    #[test]
    fn success_resets_the_count() {
        let b = CircuitBreaker::new("test", 2, Duration::from_secs(60));
        b.on_failure();
        b.on_success();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
