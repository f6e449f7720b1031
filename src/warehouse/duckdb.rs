//! The embedded DuckDB warehouse: staging through the Appender, apply in SQL.

use std::collections::HashMap;
use std::path::Path;

use duckdb::types::{Null, ToSql, Value};
use duckdb::{appender_params_from_iter, params_from_iter, Connection};
use dynashift_core::dialect::{Dialect, DuckDb};
use dynashift_core::naming::NamingStyle;
use dynashift_core::schema::{Catalog, ColumnDef, TableSchema};
use dynashift_core::sql::{
    applied_counts_query, control_tables, counters_update, AppliedCounts, Layout, Param, Statement,
};
use dynashift_core::types::{Cell, ColumnMode, ColumnType};

use super::steps::{batch_steps, describe, Step, STAGE};
use super::{Batch, Outcome, Status, TableStatus, Warehouse, WarehouseError};

pub struct DuckDbWarehouse {
    conn: Connection,
    layout: Layout,
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

fn query_err(context: &str) -> impl Fn(duckdb::Error) -> WarehouseError + '_ {
    move |e| WarehouseError::Query { context: context.to_string(), message: one_line(e) }
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
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(|e| WarehouseError::Open {
            what: format!("DuckDB file {}", path.display()),
            message: one_line(e),
        })?;
        if let Some(limit) = memory_limit {
            let literal = limit.replace('\'', "''");
            conn.execute_batch(&format!("SET memory_limit = '{literal}'")).map_err(|e| {
                WarehouseError::Open { what: "DuckDB memory limit".into(), message: one_line(e) }
            })?;
        }
        let layout = Layout { target_schema: target_schema.to_string(), ..Layout::default() };
        Ok(DuckDbWarehouse { conn, layout })
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
            .map_err(|e| WarehouseError::Query { context: short(&s.sql), message: one_line(e) })
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
        for row in &plan.rows {
            let mut values: Vec<&dyn ToSql> = Vec::with_capacity(6 + row.cells.len());
            values.push(&row.key_text);
            values.push(&row.version.micros);
            values.push(&row.version.sequence);
            let event = row.event.as_str();
            let op = row.op.code();
            values.push(&event);
            values.push(&op);
            values.push(&row.deleted);
            for cell in &row.cells {
                values.push(match cell {
                    Cell::Null => &Null,
                    Cell::Text(s) => s,
                    Cell::Int(i) => i,
                    Cell::Bytes(b) => b,
                });
            }
            app.append_row(appender_params_from_iter(values)).map_err(query_err("staging rows"))?;
        }
        app.flush().map_err(query_err("staging rows"))?;
        Ok(())
    }

    fn apply_in_transaction(&self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let mut outcome = Outcome::default();
        for step in batch_steps(&DuckDb, &self.layout, batch) {
            match step {
                Step::Sql(s) => {
                    let t = std::time::Instant::now();
                    self.run(&s)?;
                    tracing::trace!(ms = t.elapsed().as_millis() as u64, sql = %short(&s.sql), "statement");
                }
                Step::LoadStage { index, columns } => {
                    let t = std::time::Instant::now();
                    self.load_stage(batch, index, &columns)?;
                    tracing::trace!(
                        ms = t.elapsed().as_millis() as u64,
                        rows = batch.tables[index].rows.len(),
                        "stage loaded"
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

    fn control(&self, table: &str) -> String {
        DuckDb.qualified(&self.layout.control_schema, table)
    }
}

fn short(sql: &str) -> String {
    let s: String = sql.chars().take(120).collect();
    if s.len() < sql.len() {
        format!("{s}…")
    } else {
        s
    }
}

impl Warehouse for DuckDbWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        &DuckDb
    }

    fn setup(&mut self) -> Result<(), WarehouseError> {
        for s in control_tables(&DuckDb, &self.layout) {
            self.run(&s)?;
        }
        Ok(())
    }

    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError> {
        let mut catalog = Catalog::default();
        let sql = format!(
            "SELECT source_table, target_name, columns_mode, naming, key_attributes FROM {} ORDER BY source_table",
            self.control("tables")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(query_err("reading the table registry"))?;
        let rows: Vec<(String, String, String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(|rows| rows.collect())
            .map_err(query_err("reading the table registry"))?;
        let mut tables: HashMap<String, TableSchema> = HashMap::new();
        for (source, name, mode, naming, keys) in rows {
            let mode: ColumnMode = serde_json::from_value(serde_json::Value::String(mode.clone()))
                .map_err(|_| WarehouseError::Corrupt(format!("table {source} has unknown mode {mode}")))?;
            let naming: NamingStyle = serde_json::from_value(serde_json::Value::String(naming.clone()))
                .map_err(|_| {
                    WarehouseError::Corrupt(format!("table {source} has unknown naming {naming}"))
                })?;
            let keys: Vec<String> = serde_json::from_str(&keys)
                .map_err(|_| WarehouseError::Corrupt(format!("table {source} has bad key list")))?;
            let schema = TableSchema::new(&source, name, mode, naming, keys, DuckDb.max_identifier());
            tables.insert(source, schema);
        }
        let sql = format!(
            "SELECT source_table, attribute, column_name, column_type, is_variant FROM {} ORDER BY source_table, ordinal",
            self.control("columns")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(query_err("reading the column registry"))?;
        let cols: Vec<(String, Option<String>, String, String, bool)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(|rows| rows.collect())
            .map_err(query_err("reading the column registry"))?;
        for (source, attribute, name, ty, is_variant) in cols {
            let table = tables.get_mut(&source).ok_or_else(|| {
                WarehouseError::Corrupt(format!("columns registered for unknown table {source}"))
            })?;
            let ty = ColumnType::from_code(&ty)
                .ok_or_else(|| WarehouseError::Corrupt(format!("column {name} has unknown type {ty}")))?;
            table.restore_column(ColumnDef { attribute, name, ty, is_variant });
        }
        for (_, t) in tables {
            catalog.restore_table(t);
        }
        Ok(catalog)
    }

    fn load_checkpoints(&mut self, source: &str) -> Result<HashMap<String, String>, WarehouseError> {
        let sql = format!("SELECT shard, sequence FROM {} WHERE source = $1", self.control("checkpoints"));
        let mut stmt = self.conn.prepare(&sql).map_err(query_err("reading checkpoints"))?;
        let rows = stmt
            .query_map([source], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(query_err("reading checkpoints"))?;
        Ok(rows)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        self.conn.execute_batch("BEGIN TRANSACTION").map_err(query_err("starting a transaction"))?;
        match self.apply_in_transaction(batch) {
            Ok(outcome) => {
                self.conn.execute_batch("COMMIT").map_err(query_err("committing the batch"))?;
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        let mut out = vec!["BEGIN TRANSACTION;".to_string()];
        out.extend(describe(&DuckDb, &self.layout, batch));
        out.push("COMMIT;".into());
        out
    }

    fn status(&mut self) -> Result<Status, WarehouseError> {
        let sql = format!(
            "SELECT source_table, target_schema, target_name, columns_mode, changes_applied, deletes_applied, \
             expired_applied + expired_kept, \
             CASE WHEN last_version > 0 THEN strftime(make_timestamp(last_version), '%Y-%m-%dT%H:%M:%S.%fZ') END \
             FROM {} ORDER BY source_table",
            self.control("tables")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(query_err("reading status"))?;
        type Row = (String, String, String, String, i64, i64, i64, Option<String>);
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(query_err("reading status"))?;
        let mut status = Status::default();
        for (source, schema, name, mode, applied, deletes, expired, newest) in rows {
            let count = |sql: String, p: &str| -> Result<i64, WarehouseError> {
                self.conn.query_row(&sql, [p], |r| r.get(0)).map_err(query_err("reading status"))
            };
            let target = DuckDb.qualified(&schema, &name);
            let rows: i64 = self
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {target} WHERE NOT \"_ddb_deleted\""), [], |r| {
                    r.get(0)
                })
                .map_err(query_err("counting rows"))?;
            let columns = count(
                format!("SELECT COUNT(*) FROM {} WHERE source_table = $1", self.control("columns")),
                &source,
            )?;
            let rejects = count(
                format!("SELECT COUNT(*) FROM {} WHERE table_name = $1", self.control("rejects")),
                &source,
            )?;
            status.tables.push(TableStatus {
                source_table: source,
                target: format!("{schema}.{name}"),
                mode,
                rows,
                columns,
                newest_change: newest,
                changes_applied: applied,
                deletes_applied: deletes,
                expired,
                rejects,
            });
        }
        let mut unattributed: i64 = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {} WHERE table_name IS NULL", self.control("rejects")),
                [],
                |r| r.get(0),
            )
            .map_err(query_err("reading status"))?;
        let known: Vec<&str> = status.tables.iter().map(|t| t.source_table.as_str()).collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT table_name, COUNT(*) FROM {} WHERE table_name IS NOT NULL GROUP BY table_name",
                self.control("rejects")
            ))
            .map_err(query_err("reading status"))?;
        let by_table: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(query_err("reading status"))?;
        for (t, n) in by_table {
            if !known.contains(&t.as_str()) {
                unattributed += n;
            }
        }
        status.unattributed_rejects = unattributed;
        let (batches, last): (i64, Option<String>) = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*), CAST(MAX(committed_at) AS VARCHAR) FROM {}", self.control("runs")),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(query_err("reading status"))?;
        status.batches = batches;
        status.last_batch_at = last;
        Ok(status)
    }
}
