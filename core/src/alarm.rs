//! Alarms before loss: which tables' oldest unapplied change is older than the operator's
//! lag threshold, and which is close enough to the stream's retention that the stream may
//! drop changes the table has not applied. Pure: the run loop supplies the clock.

/// What a table's oldest unapplied change raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// Older than `alert_lag`: a warning, and the process reports itself not ready.
    Lag {
        /// The source table.
        table: String,
        /// Seconds since the change was made.
        age: u64,
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

/// The alarms of tables whose oldest unapplied change was made at `oldest` (seconds since the
/// epoch), at `now`; a table raises the retention alarm instead of the lag alarm when both hold.
pub fn alarms<'a>(
    oldest: impl IntoIterator<Item = (&'a str, i64)>,
    now: i64,
    limits: AlarmLimits,
) -> Vec<Alarm> {
    let mut out = Vec::new();
    for (table, made) in oldest {
        let age = now.saturating_sub(made).max(0) as u64;
        if let Some(retention) = limits.retention.filter(|r| *r > 0) {
            if age.saturating_mul(100) >= retention.saturating_mul(RETENTION_ALARM_PERCENT) {
                let left = retention.saturating_sub(age);
                out.push(Alarm::Retention { table: table.to_string(), age, left });
                continue;
            }
        }
        if limits.alert_lag.is_some_and(|lag| age >= lag) {
            out.push(Alarm::Lag { table: table.to_string(), age });
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
        let at = |hours: i64| alarms([("Orders", made)], made + hours * HOUR, limits);
        assert!(at(5).is_empty(), "five hours: under the lag threshold");
        assert_eq!(at(6), vec![Alarm::Lag { table: "Orders".into(), age: 6 * 3600 }]);
        assert_eq!(at(19), vec![Alarm::Lag { table: "Orders".into(), age: 19 * 3600 }]);
        // 80% of 24 hours is 19.2 hours.
        let at_20 = at(20);
        assert_eq!(
            at_20,
            vec![Alarm::Retention { table: "Orders".into(), age: 20 * 3600, left: 4 * 3600 }],
            "the retention alarm replaces the lag alarm"
        );
        assert_eq!(at(30), vec![Alarm::Retention { table: "Orders".into(), age: 30 * 3600, left: 0 }]);
    }

    #[test]
    fn no_thresholds_no_alarms_and_tables_in_order() {
        assert!(alarms([("A", 0)], 10 * 24 * HOUR, AlarmLimits::default()).is_empty());
        let limits = AlarmLimits { alert_lag: Some(60), retention: None };
        let raised = alarms([("b", 0), ("a", 0), ("c", 100)], 120, limits);
        assert_eq!(raised.iter().map(Alarm::table).collect::<Vec<_>>(), ["a", "b"]);
        // A clock behind the change's time is not an alarm.
        assert!(alarms([("a", 500)], 100, limits).is_empty());
    }
}
