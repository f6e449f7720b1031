//! Warehouses: a dialect plus a driver that runs a batch as one transaction.

pub mod data_api;
pub mod data_api_calls;
#[cfg(feature = "duckdb")]
pub mod duckdb;
#[cfg(feature = "duckdb")]
mod duckdb_stage;
mod pg_append;
mod pg_apply;
pub mod pg_bind;
#[cfg(feature = "test-support")]
pub mod pg_data_api;
pub mod pg_nul;
pub mod pg_session;
pub(crate) mod pg_sql;
pub mod postgres;
pub mod redshift;
pub mod redshift_wire;
pub mod registry;
pub mod retry;
pub mod s3_stage;
pub mod snapshot_load;
pub mod split;
pub mod steps;
pub mod upgrade;

use std::collections::HashMap;

use dynashift_core::dialect::Dialect;
use dynashift_core::plan::TablePlan;
use dynashift_core::schema::{Catalog, TableSchema};
use dynashift_core::Position;

pub use crate::cause::Cause;

/// A record that could not be decoded, kept with its raw bytes, position and reason.
#[derive(Debug, Clone)]
pub struct Reject {
    pub position: Position,
    pub table: Option<String>,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// Everything one batch writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The catalog after this batch's schema evolution.
    pub catalog: Catalog,
    pub tables: Vec<TablePlan>,
    pub rejects: Vec<Reject>,
    /// Source name → (shard → newest consumed sequence).
    pub source: String,
    pub checkpoints: Vec<Position>,
    pub records: u64,
    pub changes: u64,
    /// With schedules: the tables this batch applies and when (seconds since the epoch),
    /// kept so that a later run (`sync --once` from cron) knows when each is next due.
    pub applied_at: Vec<(String, i64)>,
    /// With schedules: what each table holds after this batch, as `status` shows it (table →
    /// `"<changes> <oldest change, seconds since the epoch>"`, or `PRUNED`: nothing held).
    pub held: Vec<(String, String)>,
    /// For a stream: how far behind its tip each shard's reading was, for `status` (shard →
    /// `"<milliseconds> <as of, seconds since the epoch>"`, or `PRUNED`: no longer read),
    /// written at most every `BEHIND_EVERY_SECS`.
    pub shard_behind: Vec<(String, String)>,
    /// With schedules: how far the tables this batch applies have their changes in, per
    /// shard (`PRUNED`: a mark dropped), so a restart that re-reads from the low watermark
    /// skips what each table already has.
    pub table_marks: Vec<TableMark>,
    /// A snapshot load's version (see `SourceConfig::snapshot_version`): a warehouse may
    /// append such a batch's rows to a table that holds nothing but earlier rows of the same
    /// load without guarding them (`fresh_load`).
    pub snapshot: Option<i64>,
}

/// A table's changes up to `position` (of its shard) are in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMark {
    pub table: String,
    pub position: Position,
}

/// The checkpoint source under which the tables' last applies are kept for `source`.
pub fn applies_source(source: &str) -> String {
    format!("{source}@applied")
}

/// The checkpoint source under which what each table holds is kept for `source`.
pub fn held_source(source: &str) -> String {
    format!("{source}@held")
}

/// The checkpoint source under which how far behind each shard was is kept for `source`.
pub fn behind_source(source: &str) -> String {
    format!("{source}@behind")
}

/// How often (seconds) a batch writes the shards' lag for `status`.
pub const BEHIND_EVERY_SECS: i64 = 30;

/// The checkpoint source under which the tables' marks are kept for `source`: one row per
/// table and shard, its `shard` column the pair as a JSON array (names may hold anything).
pub fn marks_source(source: &str) -> String {
    format!("{source}@tables")
}

/// The `shard` column of a table's mark.
pub fn mark_key(table: &str, shard: &str) -> String {
    serde_json::Value::from(vec![table, shard]).to_string()
}

/// The table and shard of a mark's `shard` column; `None` for text not written by
/// `mark_key` (such a row is ignored: without a mark, changes are only read again).
pub fn parse_mark_key(key: &str) -> Option<(String, String)> {
    let (table, shard): (String, String) = serde_json::from_str(key).ok()?;
    Some((table, shard))
}

/// What a committed batch did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per source table: changes that won over what the warehouse already had.
    pub applied: HashMap<String, u64>,
}

impl Outcome {
    /// Adds what `more` applied (a later part or batch) to this outcome.
    pub fn add(&mut self, more: Outcome) {
        for (table, n) in more.applied {
            *self.applied.entry(table).or_default() += n;
        }
    }
}

impl Batch {
    /// Approximate memory of the planned rows.
    pub fn planned_weight(&self) -> usize {
        self.tables.iter().map(TablePlan::weight).sum()
    }

    /// The schema of table plan `plan`'s table, which the batch's catalog always holds.
    pub fn schema_of(&self, plan: &TablePlan) -> Result<&TableSchema, WarehouseError> {
        self.catalog
            .tables
            .get(&plan.source_table)
            .ok_or_else(|| WarehouseError::Corrupt(format!("no schema for table `{}`", plan.source_table)))
    }
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStatus {
    pub source_table: String,
    pub target: String,
    pub mode: String,
    pub rows: i64,
    pub columns: i64,
    pub newest_change: Option<String>,
    /// The same, in microseconds since the epoch.
    pub newest_change_micros: Option<i64>,
    pub changes_applied: i64,
    pub deletes_applied: i64,
    pub expired: i64,
    pub rejects: i64,
    /// Live rows holding attributes in the overflow column (the table is at the warehouse's
    /// column limit).
    pub overflow_rows: i64,
}

/// A backfill's progress: the shards it started (an export's data files, a scan's segments)
/// and those read to their end.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackfillStatus {
    /// `export:<export id>` or `scan:<table>`.
    pub source: String,
    pub started: i64,
    pub ended: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub tables: Vec<TableStatus>,
    /// Backfills with positions in the warehouse.
    pub backfills: Vec<BackfillStatus>,
    /// Rejects that could not be tied to a table.
    pub unattributed_rejects: i64,
    pub batches: i64,
    pub last_batch_at: Option<String>,
}

/// A warehouse failure. The variant decides what the run loop does: `Unavailable` is retried
/// on a new connection, `OutOfMemory` in smaller parts, the others stop.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot open {what}: {cause}")]
    Open {
        what: String,
        #[source]
        cause: Cause,
    },
    #[error("{context}: {cause}")]
    Query {
        context: String,
        #[source]
        cause: Cause,
    },
    /// The connection was lost or cannot be made now; a new attempt may succeed.
    #[error("{context}: {cause}")]
    Unavailable {
        context: String,
        #[source]
        cause: Cause,
    },
    /// The work did not fit the warehouse's memory; the same work in smaller parts may.
    #[error("{context}: {cause}")]
    OutOfMemory {
        context: String,
        #[source]
        cause: Cause,
    },
    #[error("the warehouse's control tables are inconsistent: {0}")]
    Corrupt(String),
}

pub trait Warehouse: Send {
    fn dialect(&self) -> &dyn Dialect;
    /// Creates the control tables if missing.
    fn setup(&mut self) -> Result<(), WarehouseError>;
    /// Whether the control tables exist, found without creating anything (a plan writes
    /// nothing).
    fn is_set_up(&mut self) -> Result<bool, WarehouseError>;
    /// The registry of target tables and columns.
    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError>;
    /// Committed positions of one source: shard → sequence.
    fn load_checkpoints(&mut self, source: &str) -> Result<HashMap<String, String>, WarehouseError>;
    /// Applies a batch: DDL, staged rows, rejects and checkpoints in one transaction.
    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError>;
    /// The statements `apply` would run, as text, without running them.
    fn describe(&self, batch: &Batch) -> Vec<String>;
    fn status(&mut self) -> Result<Status, WarehouseError>;
    /// After a snapshot load of `source_table`: where its rows hold a key more than once (an
    /// export that listed an item twice, appended unguarded), keeps the row appended first;
    /// returns the rows removed. A warehouse whose key index refuses a second row needs none.
    fn settle_snapshot(&mut self, _source_table: &str) -> Result<u64, WarehouseError> {
        Ok(0)
    }
    /// Drops the current session and connects again (after an `Unavailable` error).
    fn reconnect(&mut self) -> Result<(), WarehouseError> {
        Ok(())
    }
}

impl WarehouseError {
    /// Whether retrying (after reconnecting) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, WarehouseError::Unavailable { .. })
    }
}
