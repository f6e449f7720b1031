//! A snapshot load (an export) appended without guards while its table holds nothing else.
//!
//! Every stream batch is guarded against the rows already in its table, and those guards read
//! the whole table's keys: a load guarded the same way costs more per item as the table grows.
//! An export lists each item once, so while a table holds only rows that this load appended,
//! its rows need no guard.
//!
//! "Only rows this load appended" is kept as a count. `<source>@appended` holds, per table, the
//! rows the load appended, written in the same transaction as they are; the registry's
//! `changes_applied` counts every change applied to the table. The two are equal only while
//! nothing else has been applied. A table holding rows or tombstones before the registry
//! counted anything (a layout older than the counters) is guarded as well.

use dynashift_core::dialect::Dialect;
use dynashift_core::plan::{RowOp, TablePlan};
use dynashift_core::schema::TableSchema;
use dynashift_core::sql::{Layout, Param, Statement};

use super::Batch;

/// How a table plan's rows go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Staged, guarded against the table's rows and tombstones, then applied.
    Guarded,
    /// Appended unguarded; the load had appended `before` rows to the table until now.
    Appended { before: u64 },
}

/// The checkpoint source under which a snapshot load of `source` counts its appended rows
/// (table → rows).
pub fn appended_source(source: &str) -> String {
    format!("{source}@appended")
}

/// Whether `plan` may be appended unguarded, as far as its rows tell: the batch is a snapshot
/// load and every row is an upsert of the load's version, with a key of its own.
pub fn appendable(batch: &Batch, plan: &TablePlan) -> bool {
    let Some(version) = batch.snapshot else { return false };
    !plan.rows.is_empty()
        && plan.rows.iter().all(|r| r.op == RowOp::Upsert && !r.deleted && r.version.micros == version)
        && !plan.has_repeated_keys()
}

/// Whether the target table of `schema` exists: one row, one `BIGINT` (0 or 1).
pub fn table_exists_query(layout: &Layout, schema: &TableSchema) -> Statement {
    Statement::with(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = CAST($1 AS VARCHAR) AND table_name = CAST($2 AS VARCHAR)",
        vec![Param::Text(layout.target_schema.clone()), Param::Text(schema.name.clone())],
    )
}

/// What decides the load, in one row: the registry's `changes_applied` (`BIGINT`), the rows
/// the load appended (text or NULL), whether a tombstone of the table exists (`BIGINT` 0 or 1)
/// and, when the table `exists`, whether it holds a row (`BIGINT` 0 or 1).
pub fn load_state_query(
    d: &dyn Dialect,
    layout: &Layout,
    batch: &Batch,
    schema: &TableSchema,
    exists: bool,
) -> Statement {
    let control = |t: &str| d.qualified(&layout.control_schema, t);
    let any_row = if exists {
        format!(
            "(SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT 1) AS any_row)",
            d.qualified(&layout.target_schema, &schema.name)
        )
    } else {
        "CAST(0 AS BIGINT)".to_string()
    };
    Statement::with(
        format!(
            "SELECT COALESCE((SELECT changes_applied FROM {tables} WHERE source_table = {p1}), 0), \
             (SELECT sequence FROM {checkpoints} WHERE source = {p2} AND shard = {p1}), \
             (SELECT COUNT(*) FROM (SELECT 1 FROM {tombstones} WHERE source_table = {p1} LIMIT 1) AS tomb), \
             {any_row}",
            tables = control("tables"),
            checkpoints = control("checkpoints"),
            tombstones = control("tombstones"),
            p1 = d.param(1),
            p2 = d.param(2),
        ),
        vec![Param::Text(schema.source_table.clone()), Param::Text(appended_source(&batch.source))],
    )
}

/// What `load_state_query` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadState {
    pub changes_applied: i64,
    pub appended: Option<u64>,
    pub tombstone: bool,
    pub any_row: bool,
}

/// Appended when every change applied to the table is a row this load appended, and the
/// table held no row or tombstone before it began.
pub fn decide(state: LoadState) -> Load {
    let before = state.appended.unwrap_or(0);
    let only_this_load = u64::try_from(state.changes_applied).is_ok_and(|applied| applied == before);
    let untouched_before = before > 0 || (!state.any_row && !state.tombstone);
    if only_this_load && untouched_before && !state.tombstone {
        Load::Appended { before }
    } else {
        Load::Guarded
    }
}

/// `decide` for table plan `plan`, saying so in the log when its rows go in unguarded.
pub fn decide_for(plan: &TablePlan, state: LoadState) -> Load {
    let load = decide(state);
    if load != Load::Guarded {
        tracing::debug!(
            table = %plan.source_table,
            rows = plan.rows.len(),
            "appended unguarded: a snapshot load into a table that holds nothing else"
        );
    }
    load
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(changes_applied: i64, appended: Option<u64>, tombstone: bool, any_row: bool) -> LoadState {
        LoadState { changes_applied, appended, tombstone, any_row }
    }

    #[test]
    fn only_a_table_this_load_alone_has_written_is_appended() {
        assert_eq!(decide(state(0, None, false, false)), Load::Appended { before: 0 }, "new or empty");
        assert_eq!(decide(state(500, Some(500), false, true)), Load::Appended { before: 500 }, "resumed");
        assert_eq!(decide(state(501, Some(500), false, true)), Load::Guarded, "the stream applied one more");
        assert_eq!(decide(state(7, None, false, true)), Load::Guarded, "the stream wrote it first");
        assert_eq!(decide(state(0, None, true, false)), Load::Guarded, "a tombstone");
        assert_eq!(decide(state(500, Some(500), true, true)), Load::Guarded, "a delete since");
        assert_eq!(decide(state(0, None, false, true)), Load::Guarded, "rows the registry never counted");
    }
}
