//! Riding out warehouse outages: a lost connection or a server that is not up yet is retried
//! with capped exponential backoff and jitter; any other error stops the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::registry::positions_committed;
use super::{Batch, Outcome, Warehouse, WarehouseError};

use crate::backoff::Backoff;

/// Sleeps `delay` in short steps; false when a stop was requested meanwhile.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

/// Runs `attempt` until it succeeds, fails for good, or a stop is requested (which returns
/// the last transient error).
pub fn until_available<T>(
    what: &str,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> Result<T, WarehouseError>,
) -> Result<T, WarehouseError> {
    let mut backoff = Backoff::default();
    loop {
        match attempt() {
            Err(e) if e.is_transient() => {
                let metrics = crate::metrics::metrics();
                metrics.health.warehouse_down.store(true, Ordering::Relaxed);
                metrics.retries.with_label_values(&["warehouse_unavailable"]).inc();
                let delay = backoff.next_delay();
                tracing::warn!("{what}: {e}; retrying in {:.1}s", delay.as_secs_f64());
                if !sleep_unless_stopped(delay, stop) {
                    return Err(e);
                }
            }
            other => {
                if other.is_ok() {
                    crate::metrics::metrics().health.warehouse_down.store(false, Ordering::Relaxed);
                }
                return other;
            }
        }
    }
}

/// Applies `batch`, retrying on a lost connection. When the connection broke during the
/// commit, the batch may have landed: its positions, committed with it, tell.
pub fn apply_with_retry<W: Warehouse + ?Sized>(
    warehouse: &mut W,
    batch: &Batch,
    stop: &AtomicBool,
) -> Result<Outcome, WarehouseError> {
    let mut interrupted = false;
    until_available("applying a batch", stop, || {
        if interrupted {
            warehouse.reconnect()?;
            let committed = warehouse.load_checkpoints(&batch.source)?;
            if positions_committed(&committed, &batch.checkpoints) {
                tracing::warn!("the interrupted batch had been committed; not applying it again");
                return Ok(Outcome::default());
            }
        }
        interrupted = true;
        warehouse.apply(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[5] >= Duration::from_millis(400) && delays[5] <= Duration::from_millis(800));
    }

    #[test]
    fn gives_up_on_a_permanent_error_at_once() {
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let r: Result<(), _> = until_available("x", &stop, || {
            calls += 1;
            Err(WarehouseError::Query { context: "q".into(), cause: "syntax".into() })
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn retries_a_transient_error() {
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let r = until_available("x", &stop, || {
            calls += 1;
            if calls < 3 {
                Err(WarehouseError::Unavailable { context: "c".into(), cause: "down".into() })
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }
}
