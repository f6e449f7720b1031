//! What the commands print: a run's per-table summary, `status`, and the schedules.

use std::collections::HashMap;

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

pub fn format_status(s: &Status) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}  {}\n",
        "table", "target", "rows", "columns", "applied", "deletes", "expired", "rejects", "newest change"
    );
    for t in &s.tables {
        out.push_str(&format!(
            "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}  {}\n",
            t.source_table,
            t.target,
            t.rows,
            t.columns,
            t.changes_applied,
            t.deletes_applied,
            t.expired,
            t.rejects,
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
    out.push_str(&format!(
        "{} batches committed; last at {}\n",
        s.batches,
        s.last_batch_at.as_deref().unwrap_or("-")
    ));
    out
}

/// Per table with changes or a schedule of its own: its schedule, when it was last applied
/// and when it is next due (at `now`). Held changes live in the running process only.
pub fn format_schedules(
    config: &Config,
    status: &Status,
    last_applied: &HashMap<String, i64>,
    now: i64,
) -> String {
    let schedules = &config.schedules;
    let mut tables: Vec<&str> = status.tables.iter().map(|t| t.source_table.as_str()).collect();
    tables.extend(schedules.listed().map(|(t, _)| t));
    tables.sort_unstable();
    tables.dedup();
    let mut out = format!(
        "{:<24} {:<28} {:>8} {:<22} {}\n",
        "table", "schedule", "priority", "last applied", "next due"
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
        out.push_str(&format!(
            "{:<24} {:<28} {:>8} {:<22} {}\n",
            table,
            schedule.to_string(),
            schedule.priority,
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
