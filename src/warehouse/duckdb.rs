//! The embedded DuckDB warehouse: staging through the Appender (Arrow record batches), apply in
//! SQL.

use std::collections::HashMap;
use std::path::Path;

use duckdb::types::Value;
use duckdb::{params_from_iter, Connection};
use dynashift_core::dialect::{Dialect, DuckDb};
use dynashift_core::schema::Catalog;
use dynashift_core::sql::{
    append_columns, applied_counts_query, control_tables, counters_update, stage_columns, AppliedCounts,
    Layout, Param, Statement,
};

use super::duckdb_stage::{append_record_batch, record_batch, record_batch_chunks};
use super::registry::{self, Field, Query};
use super::snapshot_load::{appendable, decide_for, load_state_query, table_exists_query, Load, LoadState};
use super::steps::{batch_steps_loading, describe_transaction, Step, STAGE};
use super::{Batch, Cause, Outcome, Status, Warehouse, WarehouseError};
use crate::text::{one_line, short_sql};

/// WAL size at which DuckDB folds the log into the database file.
const CHECKPOINT_THRESHOLD: &str = "64MB";

pub struct DuckDbWarehouse {
    conn: Connection,
    layout: Layout,
    /// Set once a batch has not fit the memory limit: checkpoints are then taken often.
    small_checkpoints: bool,
    /// How it was opened, to open it again after DuckDB invalidated the instance.
    opened: (std::path::PathBuf, String, Option<String>),
    /// DuckDB's memory limit in bytes, when one was set.
    limit_bytes: Option<u64>,
    /// See `with_checkpoint_ceiling`.
    checkpoint_ceiling: Option<u64>,
}

/// The checkpoint threshold once a batch has not fit the memory limit. Data appended since the
/// last checkpoint is held in memory, and the checkpoint itself pins it: with large values a
/// 64 MB threshold left no room under a 128 MB limit.
const SMALL_CHECKPOINT_THRESHOLD: &str = "8MB";
/// Rows larger than this on average (items near DynamoDB's 400 KB) take small checkpoints
/// from their first batch: a checkpoint that fails for memory after a commit leaves the
/// database unusable until it is reopened.
const LARGE_ROW_BYTES: usize = 16 * 1024;

/// The rows of `batch` and their staged bytes (keys and cells).
fn staged_size(batch: &Batch) -> (usize, usize) {
    let (mut rows, mut bytes) = (0usize, 0usize);
    for plan in &batch.tables {
        rows += plan.rows.len();
        for row in &plan.rows {
            bytes += row.key_text.len() + row.cells.heap_bytes();
        }
    }
    (rows, bytes)
}

/// The staged bytes one transaction takes at most, of DuckDB's memory limit: a transaction
/// pins its stage and the rows it inserts, and its checkpoint reads them again, so a third
/// of the limit leaves room for the rest.
const STAGED_SHARE_OF_LIMIT: u64 = 3;

/// What DuckDB's out-of-memory errors say, in lower case. They print as "Out of Memory
/// Error: …", but a commit's error may wrap one without that prefix.
/// <https://duckdb.org/docs/stable/guides/troubleshooting/oom_errors>
const OUT_OF_MEMORY: [&str; 6] = [
    "out of memory",
    "failed to pin block",
    "failed to allocate",
    "could not allocate block",
    "failed to offload data block",
    "failed to change memory limit",
];

/// A DuckDB error as a warehouse error, sorted once here: DuckDB reports running out of
/// memory only in its message, through the C API's generic error state.
fn duckdb_error(context: String, e: duckdb::Error) -> WarehouseError {
    let cause = Cause::of(e);
    let lower = cause.to_string().to_lowercase();
    if OUT_OF_MEMORY.iter().any(|m| lower.contains(m)) {
        WarehouseError::OutOfMemory { context, cause }
    } else {
        WarehouseError::Query { context, cause }
    }
}

fn query_err(context: &str) -> impl Fn(duckdb::Error) -> WarehouseError + '_ {
    move |e| duckdb_error(context.to_string(), e)
}

fn param_value(p: &Param) -> Value {
    match p {
        Param::Null => Value::Null,
        Param::Text(s) => Value::Text(s.clone()),
        Param::Int(i) => Value::BigInt(*i),
        Param::Bytes(b) => Value::Blob(b.clone()),
    }
}

impl DuckDbWarehouse {
    /// Opens (creating if needed) a DuckDB file; `:memory:` for an in-memory database.
    pub fn open(path: &Path, target_schema: &str) -> Result<DuckDbWarehouse, WarehouseError> {
        DuckDbWarehouse::open_with_limit(path, target_schema, None)
    }

    /// Opens with DuckDB's memory budget set to `memory_limit` (a size the config validated).
    pub fn open_with_limit(
        path: &Path,
        target_schema: &str,
        memory_limit: Option<&str>,
    ) -> Result<DuckDbWarehouse, WarehouseError> {
        // The limit is given at open, so replaying a write-ahead log stays within it too.
        let mut settings = duckdb::Config::default();
        if let Some(limit) = memory_limit {
            settings = settings.max_memory(limit).map_err(|e| WarehouseError::Open {
                what: "DuckDB memory limit".into(),
                cause: Cause::of(e),
            })?;
        }
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory_with_flags(settings)
        } else {
            Connection::open_with_flags(path, settings)
        }
        .map_err(|e| WarehouseError::Open {
            what: format!("DuckDB file {}", path.display()),
            cause: Cause::of(e),
        })?;
        // DuckDB checkpoints whenever its WAL passes 16 MB, which with batches of tens of
        // MB meant a checkpoint (a rewrite of touched row groups) at almost every commit.
        // 64 MB quarters that work for ~50 MB more memory (W1: commits 8.9 s → 4.7 s).
        conn.execute_batch(&format!("SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")).map_err(|e| {
            WarehouseError::Open { what: "DuckDB checkpoint threshold".into(), cause: Cause::of(e) }
        })?;
        // DuckDB's own pool defaults to every core, which the planner's decoding also uses:
        // leaving one core to the planner made W1 10–15% faster on two cores.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).max(1);
        conn.execute_batch(&format!("SET threads = {threads}"))
            .map_err(|e| WarehouseError::Open { what: "DuckDB threads".into(), cause: Cause::of(e) })?;
        let layout = Layout { target_schema: target_schema.to_string(), ..Layout::default() };
        let opened = (path.to_path_buf(), target_schema.to_string(), memory_limit.map(str::to_string));
        let limit_bytes = memory_limit.and_then(crate::size::parse_size);
        Ok(DuckDbWarehouse {
            conn,
            layout,
            small_checkpoints: false,
            opened,
            limit_bytes,
            checkpoint_ceiling: None,
        })
    }

    /// Opens the database again (its write-ahead log is replayed), with the same settings.
    fn reopen(&mut self) -> Result<(), WarehouseError> {
        let (path, schema, limit) = self.opened.clone();
        // The old instance must be gone before the file is opened again.
        self.conn = Connection::open_in_memory()
            .map_err(|e| WarehouseError::Open { what: "DuckDB".into(), cause: Cause::of(e) })?;
        let (small, ceiling) = (self.small_checkpoints, self.checkpoint_ceiling);
        *self = DuckDbWarehouse::open_with_limit(&path, &schema, limit.as_deref())?;
        self.checkpoint_ceiling = ceiling;
        if small {
            self.use_small_checkpoints()?;
        }
        Ok(())
    }

    fn use_small_checkpoints(&mut self) -> Result<(), WarehouseError> {
        if !self.small_checkpoints {
            self.small_checkpoints = true;
            tracing::info!("large values: DuckDB checkpoints every {SMALL_CHECKPOINT_THRESHOLD} from now on");
            self.conn
                .execute_batch(&format!("SET checkpoint_threshold = '{SMALL_CHECKPOINT_THRESHOLD}'"))
                .map_err(query_err("lowering the checkpoint threshold"))?;
        }
        Ok(())
    }

    /// The memory DuckDB may take for a checkpoint that failed within its own limit: the
    /// whole memory budget, since nothing else of the run works meanwhile.
    pub fn with_checkpoint_ceiling(mut self, bytes: u64) -> DuckDbWarehouse {
        self.checkpoint_ceiling = Some(bytes);
        self
    }

    /// After a checkpoint failed for memory: checkpoints once with the limit raised to the
    /// ceiling, then sets it back. DuckDB pins large strings a vector (2,048 rows) at a time
    /// while it checkpoints, and they cannot be spilled, so a table of items near 400 KB can
    /// need several times a small limit; without the checkpoint the log, replayed into memory
    /// on every open, only grows. A checkpoint that fails again invalidates the instance: it
    /// is reopened and that failure returned.
    fn checkpoint_with_more_memory(&mut self) -> Result<(), WarehouseError> {
        let (Some(ceiling), Some(limit)) = (self.checkpoint_ceiling, self.limit_bytes) else { return Ok(()) };
        if ceiling <= limit {
            return Ok(());
        }
        tracing::warn!(
            limit_mb = limit / 1_000_000,
            ceiling_mb = ceiling / 1_000_000,
            "DuckDB checkpoints once with its memory limit raised to the memory budget"
        );
        let set = |bytes: u64| format!("SET memory_limit = '{}KB'", bytes / 1000);
        if let Err(e) = self.conn.execute_batch(&format!("{}; CHECKPOINT;", set(ceiling))) {
            let failure = duckdb_error("checkpointing with the memory budget".into(), e);
            self.reopen()?;
            return Err(failure);
        }
        self.conn.execute_batch(&set(limit)).map_err(query_err("setting the memory limit back"))
    }

    /// Applies the two parts of a split batch in turn, adding up what each applied.
    fn apply_halves(&mut self, (first, second): (Batch, Batch)) -> Result<Outcome, WarehouseError> {
        let mut outcome = self.apply(&first)?;
        drop(first);
        outcome.add(self.apply(&second)?);
        Ok(outcome)
    }

    fn apply_whole(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        self.conn.execute_batch("BEGIN TRANSACTION").map_err(query_err("starting a transaction"))?;
        match self.apply_in_transaction(batch) {
            Ok(outcome) => {
                let t = std::time::Instant::now();
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    let message = one_line(&e);
                    // The data is in; only DuckDB's automatic checkpoint failed, and the instance
                    // must be opened again before it can be used.
                    if message.contains("COMMIT succeeded and is durable") {
                        tracing::warn!(
                            "DuckDB's checkpoint after a commit failed ({message}); reopening the database"
                        );
                        self.reopen()?;
                        // The batch is durable either way; a checkpoint that still fails is
                        // tried again after the next commit.
                        if let Err(e) = self.checkpoint_with_more_memory() {
                            tracing::warn!("{e}");
                        }
                        return Ok(outcome);
                    }
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(query_err("committing the batch")(e));
                }
                tracing::trace!(
                    ms = t.elapsed().as_millis() as u64,
                    resident_mb = crate::memory::resident_mb(),
                    "committed"
                );
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn run(&self, s: &Statement) -> Result<usize, WarehouseError> {
        self.conn
            .execute(&s.sql, params_from_iter(s.params.iter().map(param_value)))
            .map_err(|e| duckdb_error(short_sql(&s.sql), e))
    }

    fn load_stage(
        &self,
        batch: &Batch,
        index: usize,
        columns: &[(String, &'static str)],
    ) -> Result<(), WarehouseError> {
        let plan = &batch.tables[index];
        self.run(&Statement::new(DuckDb.create_stage(STAGE, columns)))?;
        let mut app = self
            .conn
            .appender_to_catalog_and_db(STAGE, "temp", "main")
            .map_err(query_err("opening the stage appender"))?;
        for rows in record_batch_chunks(&plan.rows) {
            let batch = record_batch(rows, columns)
                .map_err(|e| WarehouseError::Query { context: "staging rows".into(), cause: Cause::of(e) })?;
            app.append_record_batch(batch).map_err(query_err("staging rows"))?;
        }
        app.flush().map_err(query_err("staging rows"))?;
        Ok(())
    }

    /// How each table plan of `batch` goes in (`snapshot_load`). DuckDB lets one process
    /// write a file, and its batches are applied one at a time, so nothing else can write a
    /// table between this look and the commit.
    fn loads(&self, batch: &Batch) -> Result<Vec<Load>, WarehouseError> {
        let mut loads = vec![Load::Guarded; batch.tables.len()];
        for (index, plan) in batch.tables.iter().enumerate() {
            let Some(schema) = batch.catalog.tables.get(&plan.source_table) else { continue };
            if !appendable(batch, plan) {
                continue;
            }
            let query = |s: &Statement| {
                self.conn
                    .query_row(&s.sql, params_from_iter(s.params.iter().map(param_value)), |r| {
                        Ok(LoadState {
                            changes_applied: r.get(0)?,
                            appended: r.get::<_, Option<String>>(1)?.and_then(|t| t.parse().ok()),
                            tombstone: r.get::<_, i64>(2)? > 0,
                            any_row: r.get::<_, i64>(3)? > 0,
                        })
                    })
                    .map_err(query_err("looking at a snapshot load's table"))
            };
            let exists = table_exists_query(&self.layout, schema);
            let exists: i64 = self
                .conn
                .query_row(&exists.sql, params_from_iter(exists.params.iter().map(param_value)), |r| r.get(0))
                .map_err(query_err("looking for a snapshot load's table"))?;
            loads[index] =
                decide_for(plan, query(&load_state_query(&DuckDb, &self.layout, batch, schema, exists > 0))?);
        }
        Ok(loads)
    }

    /// Appends table plan `index`'s rows to its table through the Appender, which casts each
    /// staged column to the table's type as `CAST` would.
    fn append_rows(&self, batch: &Batch, index: usize) -> Result<(), WarehouseError> {
        let plan = &batch.tables[index];
        let schema = batch.schema_of(plan)?;
        let columns = stage_columns(&DuckDb, schema, plan);
        let names = append_columns(plan.staged.iter().map(|&i| schema.columns[i].name.as_str()));
        let context = format!("appending rows to {}", schema.name);
        let mut app = self
            .conn
            .appender_with_columns_to_db(&schema.name, &self.layout.target_schema, &names)
            .map_err(|e| duckdb_error(context.clone(), e))?;
        let now = crate::run::unix_now_micros();
        for rows in record_batch_chunks(&plan.rows) {
            let rows = append_record_batch(rows, &columns, now)
                .map_err(|e| WarehouseError::Query { context: context.clone(), cause: Cause::of(e) })?;
            app.append_record_batch(rows).map_err(|e| duckdb_error(context.clone(), e))?;
        }
        app.flush().map_err(|e| duckdb_error(context, e))
    }

    fn apply_in_transaction(&self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let mut outcome = Outcome::default();
        let loads = self.loads(batch)?;
        for step in batch_steps_loading(&DuckDb, &self.layout, batch, &loads, true) {
            match step {
                Step::Sql(s) | Step::Schema(s) => {
                    let t = std::time::Instant::now();
                    self.run(&s)?;
                    tracing::trace!(ms = t.elapsed().as_millis() as u64, sql = %short_sql(&s.sql), "statement");
                }
                Step::Together(statements) => {
                    for s in statements {
                        self.run(&s)?;
                    }
                }
                Step::LoadStage { index, columns } => {
                    let t = std::time::Instant::now();
                    self.load_stage(batch, index, &columns)?;
                    tracing::trace!(
                        ms = t.elapsed().as_millis() as u64,
                        rows = batch.tables[index].rows.len(),
                        resident_mb = crate::memory::resident_mb(),
                        "stage loaded"
                    );
                }
                Step::AppendStaged { .. } => {
                    return Err(WarehouseError::Corrupt("DuckDB appends through its Appender".into()))
                }
                Step::AppendRows { index } => {
                    let t = std::time::Instant::now();
                    self.append_rows(batch, index)?;
                    let plan = &batch.tables[index];
                    *outcome.applied.entry(plan.source_table.clone()).or_default() += plan.rows.len() as u64;
                    tracing::trace!(
                        ms = t.elapsed().as_millis() as u64,
                        rows = plan.rows.len(),
                        "rows appended"
                    );
                }
                Step::CountApplied { index } => {
                    let plan = &batch.tables[index];
                    let counts = self
                        .conn
                        .query_row(&applied_counts_query(&DuckDb, STAGE), [], |r| {
                            Ok(AppliedCounts {
                                changes: r.get(0)?,
                                deletes: r.get(1)?,
                                expired: r.get(2)?,
                                newest_version: r.get(3)?,
                            })
                        })
                        .map_err(query_err("counting applied changes"))?;
                    self.run(&counters_update(
                        &DuckDb,
                        &self.layout,
                        &plan.source_table,
                        counts,
                        plan.expired_kept,
                    ))?;
                    *outcome.applied.entry(plan.source_table.clone()).or_default() += counts.changes as u64;
                }
            }
        }
        Ok(outcome)
    }
}

impl Warehouse for DuckDbWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        &DuckDb
    }

    fn is_set_up(&mut self) -> Result<bool, WarehouseError> {
        super::registry::control_tables_exist(self)
    }

    fn setup(&mut self) -> Result<(), WarehouseError> {
        for s in control_tables(&DuckDb, &self.layout) {
            self.run(&s)?;
        }
        super::upgrade::upgrade_layout(self)
    }

    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError> {
        registry::load_catalog(self)
    }

    fn load_checkpoints(&mut self, source: &str) -> Result<HashMap<String, String>, WarehouseError> {
        registry::load_checkpoints(self, source)
    }

    /// A batch DuckDB cannot hold within its memory limit (large values: every staged value
    /// and row of a transaction is pinned) is applied again as two halves, each in its own
    /// transaction, down to single rows: the first half carries the schema changes, the
    /// second the positions, so a stop between them only re-reads changes that the version
    /// guard then finds applied.
    ///
    /// A batch whose staged bytes pass a third of the memory limit is split the same way
    /// before it is tried: a transaction that fails for memory has cost its whole work, and a
    /// checkpoint that fails for memory after a commit closes the database until reopened.
    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let (rows, bytes) = staged_size(batch);
        if !self.small_checkpoints && bytes / rows.max(1) > LARGE_ROW_BYTES {
            self.use_small_checkpoints()?;
        }
        let too_large = self.limit_bytes.is_some_and(|limit| bytes as u64 > limit / STAGED_SHARE_OF_LIMIT);
        if too_large {
            if let Some(halves) = super::split::split_batch(batch) {
                tracing::debug!(
                    rows,
                    bytes,
                    "a batch larger than a third of DuckDB's memory limit; applying it in halves"
                );
                return self.apply_halves(halves);
            }
        }
        match self.apply_whole(batch) {
            Err(e @ WarehouseError::OutOfMemory { .. }) => {
                self.use_small_checkpoints()?;
                let Some(halves) = super::split::split_batch(batch) else { return Err(e) };
                tracing::warn!(rows, "a batch did not fit DuckDB's memory limit; applying it in halves");
                self.apply_halves(halves)
            }
            other => other,
        }
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        describe_transaction(&DuckDb, &self.layout, batch)
    }

    fn settle_snapshot(&mut self, source_table: &str) -> Result<u64, WarehouseError> {
        let catalog = registry::load_catalog(self)?;
        let Some(schema) = catalog.tables.get(source_table) else { return Ok(0) };
        let t = DuckDb.qualified(&self.layout.target_schema, &schema.name);
        let key = DuckDb.quote("_ddb_key");
        let repeated = format!("SELECT {key} FROM {t} GROUP BY {key} HAVING COUNT(*) > 1");
        // The load is over and nothing else runs: the look at every key takes every core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.conn
            .execute_batch(&format!("SET threads = {cores}"))
            .map_err(query_err("giving DuckDB every core"))?;
        let found: i64 = self
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM ({repeated})"), [], |r| r.get(0))
            .map_err(query_err("looking for keys loaded twice"))?;
        if found == 0 {
            return Ok(0);
        }
        let removed = self
            .conn
            .execute(
                &format!(
                    "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER \
                     (PARTITION BY {key} ORDER BY rowid) AS n FROM {t} WHERE {key} IN ({repeated})) \
                     WHERE n > 1)",
                ),
                [],
            )
            .map_err(query_err("removing keys loaded twice"))?;
        Ok(removed as u64)
    }

    fn status(&mut self) -> Result<Status, WarehouseError> {
        registry::status(self)
    }
}

fn field(value: Value) -> Field {
    match value {
        Value::Null => Field::Null,
        Value::Boolean(b) => Field::Bool(b),
        Value::TinyInt(n) => Field::Int(n.into()),
        Value::SmallInt(n) => Field::Int(n.into()),
        Value::Int(n) => Field::Int(n.into()),
        Value::BigInt(n) => Field::Int(n),
        Value::HugeInt(n) => Field::Int(n.clamp(i64::MIN.into(), i64::MAX.into()) as i64),
        Value::UInt(n) => Field::Int(n.into()),
        Value::Text(s) => Field::Text(s),
        other => Field::Text(format!("{other:?}")),
    }
}

impl Query for DuckDbWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        &DuckDb
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Field>>, WarehouseError> {
        let mut stmt = self.conn.prepare(sql).map_err(query_err(&short_sql(sql)))?;
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(param_value)))
            .map_err(query_err(&short_sql(sql)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(query_err(&short_sql(sql)))? {
            let n = row.as_ref().column_count();
            let mut fields = Vec::with_capacity(n);
            for i in 0..n {
                fields.push(field(row.get::<_, Value>(i).map_err(query_err(&short_sql(sql)))?));
            }
            out.push(fields);
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str) -> Result<(), WarehouseError> {
        self.conn.execute_batch(sql).map_err(query_err(&short_sql(sql)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_memory_is_its_own_kind_of_error() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("SET memory_limit = '1MB'").unwrap();
        let e = db
            .execute_batch("CREATE TABLE t AS SELECT repeat('x', 1000) || i AS v FROM range(100000) r(i)")
            .unwrap_err();
        let e = duckdb_error("filling t".into(), e);
        assert!(matches!(e, WarehouseError::OutOfMemory { .. }), "{e}");
        assert!(e.to_string().starts_with("filling t: "), "{e}");
        let e = duckdb_error("reading".into(), db.execute_batch("SELECT * FROM missing").unwrap_err());
        assert!(matches!(e, WarehouseError::Query { .. }), "{e}");
    }
}
