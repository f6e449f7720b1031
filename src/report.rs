//! What the commands print: a run's per-table summary, `status`, and the schedules.

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::pipeline::Summary;
use crate::warehouse::registry::format_version;
use crate::warehouse::Status;

/// The per-table summary printed after a run.
pub fn format_summary(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<32} {:>10} {:>10} {:>8}\n", "table", "changes", "applied", "rejects"));
    for (t, f) in &s.tables {
        out.push_str(&format!("{:<32} {:>10} {:>10} {:>8}\n", t, f.changes, f.applied, f.rejects));
    }
    out.push_str(&format!(
        "{} records in {} batches; {} rejected{}\n",
        s.records,
        s.batches,
        s.rejects,
        if s.skipped > 0 { format!("; {} skipped by include/exclude", s.skipped) } else { String::new() }
    ));
    out
}

/// `now` (seconds since the epoch) gives the lag: the age of each table's newest change applied.
pub fn format_status(s: &Status, now: i64) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7}  {}\n",
        "table",
        "target",
        "rows",
        "columns",
        "applied",
        "deletes",
        "expired",
        "rejects",
        "lag",
        "newest change"
    );
    for t in &s.tables {
        out.push_str(&format!(
            "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7}  {}\n",
            t.source_table,
            t.target,
            t.rows,
            t.columns,
            t.changes_applied,
            t.deletes_applied,
            t.expired,
            t.rejects,
            lag_secs(t.newest_change_micros, now).map_or_else(|| "-".to_string(), format_age),
            t.newest_change.as_deref().unwrap_or("-")
        ));
    }
    for t in s.tables.iter().filter(|t| t.overflow_rows > 0) {
        out.push_str(&format!(
            "{}: {} rows keep attributes past the column limit in the overflow column\n",
            t.source_table, t.overflow_rows
        ));
    }
    if s.unattributed_rejects > 0 {
        out.push_str(&format!("rejects not tied to a table: {}\n", s.unattributed_rejects));
    }
    for b in &s.backfills {
        let (what, unit) = match b.source.split_once(':') {
            Some(("export", id)) => (format!("backfill from export {id}"), "data files"),
            Some((_, table)) => (format!("backfill by scan of `{table}`"), "segments"),
            None => (b.source.clone(), "shards"),
        };
        out.push_str(&format!("{what}: {} of the {} {unit} started are read whole\n", b.ended, b.started));
    }
    out.push_str(&format!(
        "{} batches committed; last at {}\n",
        s.batches,
        s.last_batch_at.as_deref().unwrap_or("-")
    ));
    out
}

/// Seconds from a change made at `micros` to `now`.
fn lag_secs(micros: Option<i64>, now: i64) -> Option<i64> {
    micros.map(|m| (now - m.div_euclid(1_000_000)).max(0))
}

/// A duration, short: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn format_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// What batches with schedules keep besides the tables: each table's last apply and what it
/// held after the last batch.
#[derive(Debug, Default)]
pub struct Kept {
    /// Seconds since the epoch.
    pub last_applied: HashMap<String, i64>,
    /// Changes held and when the oldest was made (seconds since the epoch).
    pub held: HashMap<String, (u64, i64)>,
    /// Per shard of a stream: how far behind its tip the reading was (milliseconds), and
    /// when that was recorded (seconds since the epoch).
    pub shards: BTreeMap<String, (i64, i64)>,
}

impl Kept {
    /// The shards' lag rows a run wrote (`"<milliseconds> <seconds>"`); others are skipped.
    pub fn shards_from(rows: HashMap<String, String>) -> BTreeMap<String, (i64, i64)> {
        let parse = |text: &str| -> Option<(i64, i64)> {
            let (ms, at) = text.split_once(' ')?;
            Some((ms.parse().ok()?, at.parse().ok()?))
        };
        rows.into_iter().filter_map(|(shard, text)| parse(&text).map(|v| (shard, v))).collect()
    }
}

/// Each shard's lag as the last run recorded it, for the text form of `status`.
pub fn format_shards(kept: &Kept, now: i64) -> String {
    if kept.shards.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "
{:<60} {:>10} {:>10}
",
        "shard", "behind", "recorded"
    );
    for (shard, (ms, at)) in &kept.shards {
        out.push_str(&format!(
            "{:<60} {:>10} {:>10}
",
            shard,
            format_age(ms / 1000),
            format!("{} ago", format_age((now - at).max(0)))
        ));
    }
    out
}

/// `status --json`: the same figures with stable field names (docs/operations.md), times as
/// RFC 3339 text and lags in seconds, and each table's schedule.
pub fn status_json(config: &Config, s: &Status, kept: &Kept, now: i64) -> serde_json::Value {
    let Kept { last_applied, held, shards } = kept;
    let schedules = &config.schedules;
    let time = |secs: i64| format_version(secs.saturating_mul(1_000_000));
    let entry = |name: &str, t: Option<&crate::warehouse::TableStatus>| {
        let schedule = schedules.of(name);
        let last = last_applied.get(name).copied();
        let next_due = match schedule.next_due(last, now, &schedules.quiet) {
            _ if schedule.paused => None,
            Some(at) => Some(time(at.max(now))),
            None => None,
        };
        let count = |f: fn(&crate::warehouse::TableStatus) -> i64| t.map_or(0, f);
        serde_json::json!({
            "table": name,
            "target": t.map(|t| &t.target),
            "columns_mode": t.map(|t| &t.mode),
            "rows": count(|t| t.rows),
            "columns": count(|t| t.columns),
            "changes_applied": count(|t| t.changes_applied),
            "deletes_applied": count(|t| t.deletes_applied),
            "expired": count(|t| t.expired),
            "rejects": count(|t| t.rejects),
            "overflow_rows": count(|t| t.overflow_rows),
            "newest_change": t.and_then(|t| t.newest_change.as_ref()),
            "lag_seconds": lag_secs(t.and_then(|t| t.newest_change_micros), now),
            "schedule": schedule.to_string(),
            "paused": schedule.paused,
            "last_applied": last.map(time),
            "next_due": next_due,
            "held_changes": held.get(name).map(|(changes, _)| changes),
            "oldest_held_change": held.get(name).map(|(_, oldest)| time(*oldest)),
        })
    };
    // Tables in the warehouse, and those holding changes they never applied (no table yet).
    let mut tables: Vec<(&str, Option<&crate::warehouse::TableStatus>)> =
        s.tables.iter().map(|t| (t.source_table.as_str(), Some(t))).collect();
    tables.extend(
        held.keys().filter(|h| !s.tables.iter().any(|t| &t.source_table == *h)).map(|h| (h.as_str(), None)),
    );
    tables.sort_by(|a, b| a.0.cmp(b.0));
    let tables: Vec<serde_json::Value> = tables.into_iter().map(|(name, t)| entry(name, t)).collect();
    let shards: Vec<serde_json::Value> = shards
        .iter()
        .map(|(shard, (ms, at))| serde_json::json!({ "shard": shard, "behind_ms": ms, "recorded_at": time(*at) }))
        .collect();
    let backfills: Vec<serde_json::Value> = s
        .backfills
        .iter()
        .map(|b| serde_json::json!({ "source": b.source, "started": b.started, "ended": b.ended }))
        .collect();
    serde_json::json!({
        "tables": tables,
        "shards": shards,
        "backfills": backfills,
        "unattributed_rejects": s.unattributed_rejects,
        "batches": s.batches,
        "last_batch_at": s.last_batch_at,
        "as_of": time(now),
    })
}

/// Per table with changes or a schedule of its own: its schedule, when it was last applied,
/// what it held after the last batch, and when it is next due (at `now`).
pub fn format_schedules(config: &Config, status: &Status, kept: &Kept, now: i64) -> String {
    let Kept { last_applied, held, .. } = kept;
    let schedules = &config.schedules;
    let mut tables: Vec<&str> = status.tables.iter().map(|t| t.source_table.as_str()).collect();
    tables.extend(schedules.listed().map(|(t, _)| t));
    // A table holding changes it never applied has no registry row yet.
    tables.extend(held.keys().map(String::as_str));
    tables.sort_unstable();
    tables.dedup();
    let mut out = format!(
        "{:<24} {:<28} {:>8} {:>8} {:>11} {:<22} {}\n",
        "table", "schedule", "priority", "held", "oldest held", "last applied", "next due"
    );
    for table in tables {
        let schedule = schedules.of(table);
        let last = last_applied.get(table).copied();
        let next = match schedule.next_due(last, now, &schedules.quiet) {
            _ if schedule.paused => "paused".to_string(),
            Some(t) if t <= now => "now".to_string(),
            Some(t) => format_version(t.saturating_mul(1_000_000)),
            None => "never (quiet windows cover its window)".to_string(),
        };
        let (held_changes, oldest) = match held.get(table) {
            Some((changes, oldest)) => (changes.to_string(), format_age((now - oldest).max(0))),
            None => ("-".to_string(), "-".to_string()),
        };
        out.push_str(&format!(
            "{:<24} {:<28} {:>8} {:>8} {:>11} {:<22} {}\n",
            table,
            schedule.to_string(),
            schedule.priority,
            held_changes,
            oldest,
            last.map_or_else(|| "-".to_string(), |t| format_version(t.saturating_mul(1_000_000))),
            next
        ));
    }
    if !schedules.quiet.is_empty() || schedules.max_tables_per_batch > 0 {
        let per_batch = match schedules.max_tables_per_batch {
            0 => "any number of tables".to_string(),
            n => format!("at most {n} table(s)"),
        };
        out.push_str(&format!("{} quiet window(s); {per_batch} per batch\n", schedules.quiet.len()));
    }
    out
}
