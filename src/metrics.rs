//! The process's figures for monitoring: counters and gauges in a Prometheus registry, the
//! lag of each table and shard, and the health `/readyz` reports. One set per process
//! (`metrics()`): the reader, the run loop and the applier each update their own part.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use dynashift_core::alarm::Alarm;

/// Every figure the metrics listener serves. Names and meanings: docs/operations.md.
pub struct Metrics {
    registry: Registry,
    pub records_read: IntCounter,
    pub changes_read: IntCounterVec,
    pub changes_applied: IntCounterVec,
    pub rejects: IntCounterVec,
    pub rows_written: IntCounterVec,
    pub batches: IntCounter,
    pub batch_seconds: Histogram,
    pub batch_records: Histogram,
    pub retries: IntCounterVec,
    pub early_applies: IntCounterVec,
    pub shards: IntGauge,
    pub idle_shards: IntGauge,
    pub empty_polls: IntCounter,
    pub throttled: IntCounter,
    pub held_bytes: IntGauge,
    applied_lag: IntGaugeVec,
    unapplied_lag: IntGaugeVec,
    shard_behind: GaugeVec,
    pub alarms: IntGaugeVec,
    /// Lag inputs as times, turned into ages when scraped (an age keeps growing between
    /// batches; a stored age would not).
    lag: Mutex<LagBook>,
    pub health: Health,
}

/// When things happened, per table and shard, for the lag gauges and `status`.
#[derive(Default, Debug, Clone)]
pub struct LagBook {
    /// Per table: when the newest change applied was made (seconds since the epoch).
    pub newest_applied: HashMap<String, i64>,
    /// Per table: when the oldest change read and not yet applied was made.
    pub oldest_unapplied: HashMap<String, i64>,
    /// Per shard: how far behind the stream's tip the last read was (milliseconds).
    pub shard_behind_ms: HashMap<String, i64>,
}

/// What `/readyz` answers from.
#[derive(Default)]
pub struct Health {
    /// The warehouse answered the last call (cleared while retrying a lost connection).
    pub warehouse_down: AtomicBool,
    /// A lag alarm is raised (the oldest unapplied change is older than `alert_lag`).
    pub lagging: AtomicBool,
    /// When a batch last committed, or the source was last found caught up (seconds since
    /// the epoch; 0: not yet).
    pub last_progress: AtomicI64,
    /// The source has a backlog (the last read was full).
    pub backlog: AtomicBool,
    /// The run loop has started (the warehouse was set up and the source opened).
    pub started: AtomicBool,
    /// The source's last calls failed (throttled or unreachable) and no page came since.
    pub source_down: AtomicBool,
}

/// How long a backlog may go without a commit before the process is not ready.
pub const STALL_SECS: i64 = 300;

impl Health {
    /// Why the process is not ready, or `None` when it is.
    pub fn not_ready(&self, now: i64) -> Option<String> {
        if !self.started.load(Ordering::Relaxed) {
            return Some("starting: the warehouse and the source are being opened".into());
        }
        if self.warehouse_down.load(Ordering::Relaxed) {
            return Some("the warehouse cannot be reached; retrying".into());
        }
        if self.source_down.load(Ordering::Relaxed) {
            return Some("the source's calls fail (throttled or unreachable); retrying".into());
        }
        if self.lagging.load(Ordering::Relaxed) {
            return Some(
                "a table raises an alarm: its oldest unapplied change is older than alert_lag (plus \
                 its schedule's wait), or near the stream's retention"
                    .into(),
            );
        }
        let last = self.last_progress.load(Ordering::Relaxed);
        if self.backlog.load(Ordering::Relaxed) && last > 0 && now - last > STALL_SECS {
            return Some(format!("positions have not advanced for {} s with a backlog", now - last));
        }
        None
    }

    /// A batch committed or the source was found caught up at `now`.
    pub fn progressed(&self, now: i64) {
        self.last_progress.store(now, Ordering::Relaxed);
    }
}

/// Registers the metric `make` builds under `name` (fixed, distinct names: neither step can
/// fail, and a failure is a bug worth stopping on).
fn register<M>(registry: &Registry, name: &str, make: impl FnOnce() -> prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = make().unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(metric.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, name, || IntCounter::new(name, help))
}

fn counters(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(registry, name, || IntCounterVec::new(Opts::new(name, help), &[label]))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, name, || IntGauge::new(name, help))
}

fn gauges(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    register(registry, name, || IntGaugeVec::new(Opts::new(name, help), &[label]))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(registry, name, || Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)))
}

impl Metrics {
    fn new() -> Metrics {
        // The names are fixed and distinct: registering them cannot fail.
        let r = Registry::new();
        Metrics {
            records_read: counter(&r, "dynashift_records_read_total", "Records read from the source."),
            changes_read: counters(
                &r,
                "dynashift_changes_read_total",
                "Decoded changes taken into batches, per source table.",
                "table",
            ),
            changes_applied: counters(
                &r,
                "dynashift_changes_applied_total",
                "Changes that won over the warehouse's state, per source table.",
                "table",
            ),
            rejects: counters(
                &r,
                "dynashift_rejects_total",
                "Records kept as rejects, per source table (empty: not tied to a table).",
                "table",
            ),
            rows_written: counters(
                &r,
                "dynashift_rows_written_total",
                "Rows staged into the warehouse (newest per key), per source table.",
                "table",
            ),
            batches: counter(&r, "dynashift_batches_total", "Batches committed."),
            batch_seconds: histogram(
                &r,
                "dynashift_batch_seconds",
                "Time to apply one batch, commit included.",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            batch_records: histogram(
                &r,
                "dynashift_batch_records",
                "Records per committed batch.",
                prometheus::exponential_buckets(10.0, 4.0, 9).unwrap_or_default(),
            ),
            retries: counters(&r, "dynashift_retries_total", "Retried calls, by cause.", "cause"),
            early_applies: counters(
                &r,
                "dynashift_early_applies_total",
                "Tables applied before their schedule (memory, retention), per source table.",
                "table",
            ),
            shards: gauge(&r, "dynashift_shards", "Shards being read."),
            idle_shards: gauge(
                &r,
                "dynashift_idle_shards",
                "Shards at the stream's tip, polled with backoff.",
            ),
            empty_polls: counter(
                &r,
                "dynashift_empty_polls_total",
                "GetRecords calls that returned nothing.",
            ),
            throttled: counter(
                &r,
                "dynashift_throttled_total",
                "Calls the service refused for throughput (ProvisionedThroughputExceeded and alike).",
            ),
            held_bytes: gauge(&r, "dynashift_held_bytes", "Bytes of changes read and not yet applied."),
            applied_lag: gauges(
                &r,
                "dynashift_applied_lag_seconds",
                "Age of the newest change applied, per source table.",
                "table",
            ),
            unapplied_lag: gauges(
                &r,
                "dynashift_unapplied_lag_seconds",
                "Age of the oldest change read and not yet applied, per source table (absent: none held).",
                "table",
            ),
            shard_behind: {
                let name = "dynashift_shard_behind_seconds";
                let help = "How far behind the stream's tip each shard's last read was.";
                let g = GaugeVec::new(Opts::new(name, help), &["shard"])
                    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
                r.register(Box::new(g.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
                g
            },
            alarms: gauges(
                &r,
                "dynashift_alarm",
                "Tables raising an alarm now, by kind (lag, retention).",
                "kind",
            ),
            registry: r,
            lag: Mutex::new(LagBook::default()),
            health: Health::default(),
        }
    }

    /// The lag inputs, to change.
    pub fn lag(&self) -> std::sync::MutexGuard<'_, LagBook> {
        // A panic elsewhere while holding the book leaves figures, not invariants: go on.
        self.lag.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the held tables' oldest unapplied changes (seconds since the epoch).
    pub fn set_unapplied(&self, oldest: impl IntoIterator<Item = (String, i64)>) {
        self.lag().oldest_unapplied = oldest.into_iter().collect();
    }

    /// Records the alarms raised at this moment.
    pub fn set_alarms(&self, raised: &[Alarm]) {
        let lag = raised.iter().filter(|a| matches!(a, Alarm::Lag { .. })).count();
        let retention = raised.len() - lag;
        self.alarms.with_label_values(&["lag"]).set(lag as i64);
        self.alarms.with_label_values(&["retention"]).set(retention as i64);
        self.health.lagging.store(!raised.is_empty(), Ordering::Relaxed);
    }

    /// Counts a committed batch, applied in `elapsed`, at `now`.
    pub fn batch_committed(
        &self,
        prepared: &crate::planner::Prepared,
        outcome: &crate::warehouse::Outcome,
        elapsed: std::time::Duration,
        now: i64,
    ) {
        let batch = &prepared.batch;
        self.batches.inc();
        self.batch_seconds.observe(elapsed.as_secs_f64());
        self.batch_records.observe(batch.records as f64);
        for (table, n) in &prepared.seen {
            self.changes_read.with_label_values(&[table]).inc_by(*n);
        }
        for (table, n) in &outcome.applied {
            self.changes_applied.with_label_values(&[table]).inc_by(*n);
        }
        for plan in &batch.tables {
            self.rows_written.with_label_values(&[&plan.source_table]).inc_by(plan.rows.len() as u64);
        }
        for reject in &batch.rejects {
            self.rejects.with_label_values(&[reject.table.as_deref().unwrap_or("")]).inc();
        }
        let mut book = self.lag();
        for (table, made) in &prepared.newest_change {
            let newest = book.newest_applied.entry(table.clone()).or_insert(*made);
            *newest = (*newest).max(*made);
        }
        drop(book);
        self.health.progressed(now);
    }

    /// The content type of `render`'s text.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_string()
    }

    /// The Prometheus text exposition of every figure, ages computed at `now`.
    pub fn render(&self, now: i64) -> String {
        {
            let book = self.lag();
            for (table, made) in &book.newest_applied {
                self.applied_lag.with_label_values(&[table]).set((now - made).max(0));
            }
            self.unapplied_lag.reset();
            for (table, made) in &book.oldest_unapplied {
                self.unapplied_lag.with_label_values(&[table]).set((now - made).max(0));
            }
            // Shards that ended leave the book: their series go with them.
            self.shard_behind.reset();
            for (shard, behind) in &book.shard_behind_ms {
                self.shard_behind.with_label_values(&[shard]).set(*behind as f64 / 1000.0);
            }
        }
        let mut out = Vec::new();
        // Encoding into memory fails only for invalid metric families, which are not made here.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The process's figures.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_computed_when_scraped() {
        let m = Metrics::new();
        m.lag().newest_applied.insert("Orders".into(), 1_000);
        m.set_unapplied([("Orders".to_string(), 900)]);
        let text = m.render(1_060);
        assert!(text.contains("dynashift_applied_lag_seconds{table=\"Orders\"} 60"), "{text}");
        assert!(text.contains("dynashift_unapplied_lag_seconds{table=\"Orders\"} 160"), "{text}");
        m.set_unapplied([]);
        let text = m.render(1_120);
        assert!(text.contains("dynashift_applied_lag_seconds{table=\"Orders\"} 120"), "{text}");
        assert!(!text.contains("dynashift_unapplied_lag_seconds{"), "nothing held: no gauge\n{text}");
    }

    #[test]
    fn readiness_names_what_is_wrong() {
        let h = Health::default();
        assert!(h.not_ready(0).unwrap().contains("starting"));
        h.started.store(true, Ordering::Relaxed);
        assert_eq!(h.not_ready(0), None);
        h.backlog.store(true, Ordering::Relaxed);
        h.progressed(100);
        assert_eq!(h.not_ready(100 + STALL_SECS), None);
        assert!(h.not_ready(101 + STALL_SECS).unwrap().contains("not advanced"));
        h.lagging.store(true, Ordering::Relaxed);
        assert!(h.not_ready(100).unwrap().contains("alarm"));
        h.warehouse_down.store(true, Ordering::Relaxed);
        assert!(h.not_ready(100).unwrap().contains("warehouse"));
        h.warehouse_down.store(false, Ordering::Relaxed);
        h.lagging.store(false, Ordering::Relaxed);
        h.source_down.store(true, Ordering::Relaxed);
        assert!(h.not_ready(100).unwrap().contains("source"));
    }
}
