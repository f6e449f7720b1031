//! `every`, `window`, `priority` and `paused` (in `[defaults]` and per table) and the
//! `[schedule]` section: when each table's held changes are applied.

use std::collections::BTreeMap;

use dynashift_core::schedule::{parse_duration, InvalidSchedule, Quiet, Schedule, Window};

use super::raw::{RawDefaults, RawSchedule, TableOverride};
use super::InvalidSetting;

/// Every table's schedule, and the rules over all of them.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    default: Schedule,
    tables: BTreeMap<String, Schedule>,
    /// Windows in which nothing is applied.
    pub quiet: Vec<Quiet>,
    /// Tables one batch applies at most (0: no limit).
    pub max_tables_per_batch: usize,
}

impl Schedules {
    /// The schedule of `table`.
    pub fn of(&self, table: &str) -> &Schedule {
        self.tables.get(table).unwrap_or(&self.default)
    }

    /// Whether any table may be held past a batch: some schedule is not continuous, there
    /// are quiet windows, or batches apply a limited number of tables. When not, every batch
    /// applies every table, as without schedules.
    pub fn is_active(&self) -> bool {
        !self.default.is_continuous()
            || self.tables.values().any(|s| !s.is_continuous())
            || !self.quiet.is_empty()
            || self.max_tables_per_batch > 0
    }

    /// Tables with a schedule of their own, and the default's.
    pub fn listed(&self) -> impl Iterator<Item = (&str, &Schedule)> {
        self.tables.iter().map(|(t, s)| (t.as_str(), s))
    }

    /// The default schedule (`[defaults]`).
    pub fn default_schedule(&self) -> &Schedule {
        &self.default
    }
}

/// The four schedule keys of one section, as written.
struct ScheduleKeys<'a> {
    every: Option<&'a str>,
    window: Option<&'a str>,
    priority: Option<i64>,
    paused: Option<bool>,
}

/// A schedule from its keys, unset keys taken from `base`; an error names the key.
fn schedule(keys: ScheduleKeys, base: &Schedule) -> Result<Schedule, (&'static str, InvalidSchedule)> {
    let every = match keys.every {
        Some(text) => parse_duration(text).map_err(|e| ("every", e))?,
        None => base.every,
    };
    let window = match keys.window {
        Some(text) => Some(Window::parse(text).map_err(|e| ("window", e))?),
        None => base.window,
    };
    Ok(Schedule {
        every,
        window,
        priority: keys.priority.unwrap_or(base.priority),
        paused: keys.paused.unwrap_or(base.paused),
    })
}

/// Reads the schedules from `[defaults]`, `[tables."…"]` and `[schedule]`.
pub fn schedules(
    defaults: &RawDefaults,
    tables: &BTreeMap<String, TableOverride>,
    raw: &RawSchedule,
) -> Result<Schedules, InvalidSetting> {
    let keys = ScheduleKeys {
        every: defaults.every.as_deref(),
        window: defaults.window.as_deref(),
        priority: defaults.priority,
        paused: defaults.paused,
    };
    let default = schedule(keys, &Schedule::default()).map_err(|(key, e)| match key {
        "every" => InvalidSetting::parse("defaults.every", e),
        _ => InvalidSetting::parse("defaults.window", e),
    })?;
    let mut out = BTreeMap::new();
    for (table, o) in tables {
        if o.every.is_none() && o.window.is_none() && o.priority.is_none() && o.paused.is_none() {
            continue;
        }
        let keys = ScheduleKeys {
            every: o.every.as_deref(),
            window: o.window.as_deref(),
            priority: o.priority,
            paused: o.paused,
        };
        let s = schedule(keys, &default)
            .map_err(|(key, e)| InvalidSetting::value("tables", format!("\"{table}\".{key}: {e}")))?;
        out.insert(table.clone(), s);
    }
    let quiet = raw
        .quiet
        .iter()
        .map(|q| Quiet::parse(q).map_err(|e| InvalidSetting::parse("schedule.quiet", e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schedules { default, tables: out, quiet, max_tables_per_batch: raw.max_tables_per_batch.unwrap_or(0) })
}
