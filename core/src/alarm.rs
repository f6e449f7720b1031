//! Alarms before loss: which tables' oldest unapplied change is older than the operator's
//! lag threshold, and which is close enough to the stream's retention that the stream may
//! drop changes the table has not applied. Pure: the run loop supplies the clock.

/// What a table's oldest unapplied change raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// Still unapplied `alert_lag` after its schedule would have applied it, or older than
    /// `alert_lag` plus all the wait its schedule can explain: a warning, and the process
    /// reports itself not ready.
    Lag {
        /// The source table.
        table: String,
        /// Seconds since the change was made.
        age: u64,
        /// Seconds since the schedule would first have applied it (0: not due yet, but older
        /// than its schedule explains: read late).
        overdue: u64,
    },
    /// At least `RETENTION_ALARM_PERCENT` of the stream's retention old: an error every
    /// minute until it is applied.
    Retention {
        /// The source table.
        table: String,
        /// Seconds since the change was made.
        age: u64,
        /// Seconds until the stream may drop it.
        left: u64,
    },
}

/// The share of the retention (in percent) at which the retention alarm is raised.
pub const RETENTION_ALARM_PERCENT: u64 = 80;

/// The thresholds alarms are raised at.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlarmLimits {
    /// Seconds; `None`: no lag alarm.
    pub alert_lag: Option<u64>,
    /// The stream's retention in seconds; `None` (a file, or unknown): no retention alarm.
    pub retention: Option<u64>,
}

/// What a table holds unapplied, as the alarms judge it.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The source table.
    pub table: &'a str,
    /// When its oldest unapplied change was made (seconds since the epoch).
    pub oldest_change: i64,
    /// When the oldest record the stream must keep for it was made: its oldest change, or
    /// earlier, the record a position it holds back stays at.
    pub oldest_kept: i64,
    /// When its schedule would first apply that change (seconds since the epoch): the
    /// change's own time for a continuous table, later for an interval, a daily window or a
    /// quiet window; `None`: paused (or never due), so holding is what was asked for and
    /// only the retention alarm applies.
    pub due_at: Option<i64>,
    /// The longest its schedule may hold any change on purpose (seconds: `every`, the closed
    /// part of its window, and the quiet windows that push this change's apply back), past
    /// which a change is stale however it came to be held (a backlog read late); `None`
    /// when paused.
    pub allowed_wait: Option<u64>,
}

/// The alarms `held` raises at `now`: the retention alarm when the oldest record kept for a
/// table is `RETENTION_ALARM_PERCENT` of the retention old; otherwise the lag alarm when its
/// oldest change is still unapplied `alert_lag` after its schedule would have applied it, or
/// is older than `alert_lag` plus its allowed wait.
pub fn alarms<'a>(held: impl IntoIterator<Item = Held<'a>>, now: i64, limits: AlarmLimits) -> Vec<Alarm> {
    let age_of = |at: i64| now.saturating_sub(at).max(0) as u64;
    let mut out = Vec::new();
    for h in held {
        if let Some(retention) = limits.retention.filter(|r| *r > 0) {
            let kept = age_of(h.oldest_kept.min(h.oldest_change));
            if kept.saturating_mul(100) >= retention.saturating_mul(RETENTION_ALARM_PERCENT) {
                let left = retention.saturating_sub(kept);
                out.push(Alarm::Retention { table: h.table.to_string(), age: kept, left });
                continue;
            }
        }
        let Some(lag) = limits.alert_lag else { continue };
        let age = age_of(h.oldest_change);
        let overdue = h.due_at.map_or(0, |due| age_of(due.max(h.oldest_change)));
        let stale = h.allowed_wait.is_some_and(|wait| age >= lag.saturating_add(wait));
        if (h.due_at.is_some() && overdue >= lag) || stale {
            out.push(Alarm::Lag { table: h.table.to_string(), age, overdue });
        }
    }
    out.sort_by(|a, b| a.table().cmp(b.table()));
    out
}

impl Alarm {
    /// The table the alarm names.
    pub fn table(&self) -> &str {
        match self {
            Alarm::Lag { table, .. } | Alarm::Retention { table, .. } => table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    #[test]
    fn lag_and_retention_alarms_follow_the_clock() {
        let limits = AlarmLimits { alert_lag: Some(6 * HOUR as u64), retention: Some(24 * HOUR as u64) };
        let made = 1_000_000;
        let held = Held {
            table: "Orders",
            oldest_change: made,
            oldest_kept: made,
            due_at: Some(made),
            allowed_wait: Some(0),
        };
        let at = |hours: i64| alarms([held], made + hours * HOUR, limits);
        assert!(at(5).is_empty(), "five hours: under the lag threshold");
        assert_eq!(at(6), vec![Alarm::Lag { table: "Orders".into(), age: 6 * 3600, overdue: 6 * 3600 }]);
        assert_eq!(at(19), vec![Alarm::Lag { table: "Orders".into(), age: 19 * 3600, overdue: 19 * 3600 }]);
        // 80% of 24 hours is 19.2 hours.
        let at_20 = at(20);
        assert_eq!(
            at_20,
            vec![Alarm::Retention { table: "Orders".into(), age: 20 * 3600, left: 4 * 3600 }],
            "the retention alarm replaces the lag alarm"
        );
        assert_eq!(at(30), vec![Alarm::Retention { table: "Orders".into(), age: 30 * 3600, left: 0 }]);
    }

    fn held(table: &str, made: i64) -> Held<'_> {
        Held { table, oldest_change: made, oldest_kept: made, due_at: Some(made), allowed_wait: Some(0) }
    }

    #[test]
    fn no_thresholds_no_alarms_and_tables_in_order() {
        assert!(alarms([held("A", 0)], 10 * 24 * HOUR, AlarmLimits::default()).is_empty());
        let limits = AlarmLimits { alert_lag: Some(60), retention: None };
        let raised = alarms([held("b", 0), held("a", 0), held("c", 100)], 120, limits);
        assert_eq!(raised.iter().map(Alarm::table).collect::<Vec<_>>(), ["a", "b"]);
        // A clock behind the change's time is not an alarm.
        assert!(alarms([held("a", 500)], 100, limits).is_empty());
    }

    #[test]
    fn schedules_move_the_lag_alarm_and_positions_held_back_the_retention_alarm() {
        let limits = AlarmLimits { alert_lag: Some(6 * HOUR as u64), retention: Some(24 * HOUR as u64) };
        // A daily table due 18 hours after its change: late only 6 hours after that (and the
        // retention alarm comes first).
        let daily =
            Held { due_at: Some(18 * HOUR), allowed_wait: Some(24 * HOUR as u64), ..held("Daily", 0) };
        assert!(alarms([daily], 10 * HOUR, limits).is_empty());
        assert!(alarms([daily], 23 * HOUR, AlarmLimits { retention: None, ..limits }).is_empty());
        let late = alarms([daily], 24 * HOUR, AlarmLimits { retention: None, ..limits });
        assert_eq!(late, vec![Alarm::Lag { table: "Daily".into(), age: 24 * 3600, overdue: 6 * 3600 }]);
        // Paused: holding is what was asked for; only the retention alarm.
        let paused = Held { due_at: None, allowed_wait: None, ..held("Paused", 0) };
        assert!(alarms([paused], 19 * HOUR, limits).is_empty());
        assert!(matches!(alarms([paused], 20 * HOUR, limits)[..], [Alarm::Retention { .. }]));
        // A change made a minute ago on a shard whose held-back position is 20 hours old: no
        // lag, but the stream must keep that position's record.
        let pinned = Held { oldest_change: 20 * HOUR - 60, oldest_kept: 0, ..held("Hot", 0) };
        let raised = alarms([pinned], 20 * HOUR, limits);
        assert!(matches!(&raised[..], [Alarm::Retention { left, .. }] if *left == 4 * 3600), "{raised:?}");
        let no_retention = AlarmLimits { retention: None, ..limits };
        assert!(alarms([pinned], 20 * HOUR, no_retention).is_empty(), "60 s old: no lag alarm");
    }

    #[test]
    fn lateness_counts_from_when_the_schedule_would_apply() {
        use crate::schedule::{Quiet, Schedule};
        let limits = AlarmLimits { alert_lag: Some(HOUR as u64), retention: None };
        let hourly = Schedule { every: HOUR as u64, ..Schedule::default() };
        // Applied at 10:00; a change at 10:05 is first due at 11:00, late from 12:00.
        let (applied, made) = (10 * HOUR, 10 * HOUR + 300);
        let due_at = hourly.next_due(Some(applied), made, &[]);
        assert_eq!(due_at, Some(11 * HOUR));
        let hourly_held = Held { due_at, allowed_wait: Some(HOUR as u64), ..held("Hourly", made) };
        assert!(alarms([hourly_held], 12 * HOUR - 1, limits).is_empty());
        assert_eq!(alarms([hourly_held], 12 * HOUR, limits).len(), 1);
        // Read two hours late, just after an apply: not due for an hour, but older than the
        // hour the schedule explains plus alert_lag.
        let late =
            Held { due_at: Some(11 * HOUR), allowed_wait: Some(HOUR as u64), ..held("Hourly", 8 * HOUR) };
        assert!(matches!(alarms([late], 10 * HOUR + 60, limits)[..], [Alarm::Lag { overdue: 0, .. }]));
        // A continuous table whose change falls in a quiet window 01:00-05:00: due at 05:00.
        let quiet = [Quiet::parse("01:00-05:00").unwrap()];
        let due_at = Schedule::default().next_due(None, HOUR, &quiet);
        assert_eq!(due_at, Some(5 * HOUR));
        // The quiet window pushes this change's apply back 4 hours: its allowed wait.
        let quiet_held = Held { due_at, allowed_wait: Some(4 * HOUR as u64), ..held("Quiet", HOUR) };
        assert!(alarms([quiet_held], 6 * HOUR - 1, limits).is_empty(), "5 h old, but only just due");
        assert!(matches!(alarms([quiet_held], 6 * HOUR, limits)[..], [Alarm::Lag { overdue: 3600, .. }]));
    }
}
