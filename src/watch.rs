//! The run's watch over what it holds: the held figures, the backlog, and the lag and
//! retention alarms they raise, logged when raised and once a minute while they hold.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use dynashift_core::alarm::{Alarm, AlarmLimits, Held};

use crate::flow::{Gathered, Scheduler};
use crate::metrics::metrics;
use crate::planner::Planner;

/// The alarms' thresholds, and when each alarm was last logged: each is repeated once a minute while it holds.
pub struct AlarmLog {
    limits: AlarmLimits,
    logged: HashMap<(String, bool), std::time::Instant>,
}

impl AlarmLog {
    /// Without schedules nothing is held on purpose, and a change near the retention is in
    /// the next batch: only the lag alarm.
    pub fn new(limits: AlarmLimits, scheduled: bool) -> AlarmLog {
        let limits = if scheduled { limits } else { AlarmLimits { retention: None, ..limits } };
        AlarmLog { limits, logged: HashMap::new() }
    }
}

/// How often a raised alarm is logged again.
const ALARM_REPEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// After each read: the figures of what is held (bytes, per-table oldest change), the
/// source's backlog, and the alarms those raise — logged when raised and once a minute after.
pub fn watch(
    planner: &Planner,
    gathered: &Gathered,
    caught_up: bool,
    now: i64,
    log: &mut AlarmLog,
    scheduler: Option<&Scheduler>,
) {
    let m = metrics();
    m.health.backlog.store(!caught_up, Ordering::Relaxed);
    if caught_up {
        m.health.progressed(now);
    }
    watch_held(planner, gathered, now, log, scheduler);
}

/// The held part of `watch`, also run while waiting for the warehouse: an outage is when
/// held changes grow old. Without a scheduler every table is continuous: a change is due
/// when it is made.
pub fn watch_held(
    planner: &Planner,
    gathered: &Gathered,
    now: i64,
    log: &mut AlarmLog,
    scheduler: Option<&Scheduler>,
) {
    let m = metrics();
    m.held_bytes.set(gathered.bytes as i64);
    let held: Vec<Held> = planner
        .oldest_unapplied()
        .map(|(table, oldest_change, oldest_kept)| {
            let (due_at, allowed_wait) =
                scheduler.map_or((Some(oldest_change), Some(0)), |s| s.alarm_terms(table, oldest_change));
            Held { table, oldest_change, oldest_kept, due_at, allowed_wait }
        })
        .collect();
    let raised = dynashift_core::alarm::alarms(held.iter().copied(), now, log.limits);
    m.set_unapplied(held.iter().map(|h| (h.table.to_string(), h.oldest_change)));
    m.set_alarms(&raised);
    let key = |a: &Alarm| (a.table().to_string(), matches!(a, Alarm::Retention { .. }));
    log.logged.retain(|k, _| raised.iter().any(|a| key(a) == *k));
    for alarm in &raised {
        if log.logged.get(&key(alarm)).is_some_and(|at| at.elapsed() < ALARM_REPEAT) {
            continue;
        }
        log.logged.insert(key(alarm), std::time::Instant::now());
        match alarm {
            Alarm::Lag { table, age, overdue } => tracing::warn!(
                table,
                hours = format!("{:.1}", *age as f64 / 3600.0),
                overdue_hours = format!("{:.1}", *overdue as f64 / 3600.0),
                "this table's oldest unapplied change is late: alert_lag past when its schedule would apply it, \
                 or older than its schedule explains"
            ),
            Alarm::Retention { table, left, .. } => tracing::error!(
                table,
                hours_left = format!("{:.1}", *left as f64 / 3600.0),
                "this table's oldest unapplied change nears the stream's retention: apply it (`sync --once --all`) \
                 or the stream drops changes it has not applied"
            ),
        }
    }
}
