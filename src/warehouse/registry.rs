//! Reading the control tables back: the table and column registry, checkpoints and the
//! figures of `status`. The same queries serve every warehouse; each driver only runs them.

use std::collections::HashMap;

use dynashift_core::checkpoint::{compare_checkpoint, PRUNED};
use dynashift_core::dialect::Dialect;
use dynashift_core::naming::NamingStyle;
use dynashift_core::schema::{Catalog, ColumnDef, TableSchema};
use dynashift_core::sql::{Layout, Param};
use dynashift_core::types::{ColumnMode, ColumnType};
use dynashift_core::Position;

use super::{BackfillStatus, Status, TableStatus, WarehouseError};

/// One value of a result row, as the registry queries need them.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

/// The query surface the registry needs from a driver.
pub trait Query {
    fn dialect(&self) -> &dyn Dialect;
    fn layout(&self) -> &Layout;
    /// Runs `sql` with bound `params`; every row's fields in select order.
    fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Field>>, WarehouseError>;
    /// Runs a statement that returns no rows (DDL, an UPDATE).
    fn execute(&mut self, sql: &str) -> Result<(), WarehouseError>;
}

/// Whether the control tables exist (their `meta` table, created last), asked of the
/// information schema, which DuckDB, PostgreSQL and Redshift all have.
pub fn control_tables_exist(q: &mut dyn Query) -> Result<bool, WarehouseError> {
    let d = q.dialect();
    let sql = format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
        d.param(1),
        d.param(2)
    );
    let schema = Param::Text(q.layout().control_schema.clone());
    Ok(!q.rows(&sql, &[schema, Param::Text("meta".into())])?.is_empty())
}

fn corrupt(what: &str) -> WarehouseError {
    WarehouseError::Corrupt(what.to_string())
}

fn text(row: &mut [Field], i: usize, what: &str) -> Result<String, WarehouseError> {
    match std::mem::replace(&mut row[i], Field::Null) {
        Field::Text(s) => Ok(s),
        _ => Err(corrupt(&format!("{what} is not text"))),
    }
}

fn opt_text(row: &mut [Field], i: usize) -> Option<String> {
    match std::mem::replace(&mut row[i], Field::Null) {
        Field::Text(s) => Some(s),
        _ => None,
    }
}

fn int(row: &[Field], i: usize, what: &str) -> Result<i64, WarehouseError> {
    match row[i] {
        Field::Int(n) => Ok(n),
        Field::Null => Ok(0),
        _ => Err(corrupt(&format!("{what} is not a number"))),
    }
}

fn control(q: &dyn Query, table: &str) -> String {
    q.dialect().qualified(&q.layout().control_schema, table)
}

fn from_code<T: serde::de::DeserializeOwned>(code: &str, what: &str) -> Result<T, WarehouseError> {
    serde_json::from_value(serde_json::Value::String(code.to_string()))
        .map_err(|_| corrupt(&format!("{what} has unknown value {code}")))
}

/// The registry of target tables and columns.
pub fn load_catalog(q: &mut dyn Query) -> Result<Catalog, WarehouseError> {
    let limits = q.dialect().limits();
    let sql = format!(
        "SELECT source_table, target_name, columns_mode, naming, key_attributes FROM {} ORDER BY source_table",
        control(q, "tables")
    );
    let mut tables: HashMap<String, TableSchema> = HashMap::new();
    for mut row in q.rows(&sql, &[])? {
        let source = text(&mut row, 0, "tables.source_table")?;
        let name = text(&mut row, 1, "tables.target_name")?;
        let mode: ColumnMode = from_code(&text(&mut row, 2, "tables.columns_mode")?, &source)?;
        let naming: NamingStyle = from_code(&text(&mut row, 3, "tables.naming")?, &source)?;
        let keys: Vec<String> = serde_json::from_str(&text(&mut row, 4, "tables.key_attributes")?)
            .map_err(|_| corrupt(&format!("table {source} has a bad key list")))?;
        let schema = TableSchema::new(&source, name, mode, naming, keys, limits);
        tables.insert(source, schema);
    }
    let sql = format!(
        "SELECT source_table, attribute, column_name, column_type, is_variant FROM {} \
         ORDER BY source_table, ordinal",
        control(q, "columns")
    );
    for mut row in q.rows(&sql, &[])? {
        let source = text(&mut row, 0, "columns.source_table")?;
        let attribute = opt_text(&mut row, 1);
        let name = text(&mut row, 2, "columns.column_name")?;
        let code = text(&mut row, 3, "columns.column_type")?;
        let is_variant = row[4] == Field::Bool(true);
        let table = tables
            .get_mut(&source)
            .ok_or_else(|| corrupt(&format!("columns registered for unknown table {source}")))?;
        let ty = ColumnType::from_code(&code)
            .ok_or_else(|| corrupt(&format!("column {name} has unknown type {code}")))?;
        table.restore_column(ColumnDef { attribute, name, ty, is_variant });
    }
    let mut catalog = Catalog::default();
    for (_, t) in tables {
        catalog.restore_table(t);
    }
    Ok(catalog)
}

/// Committed positions of one source: shard → sequence.
pub fn load_checkpoints(q: &mut dyn Query, source: &str) -> Result<HashMap<String, String>, WarehouseError> {
    let sql = format!(
        "SELECT shard, sequence FROM {} WHERE source = {}",
        control(q, "checkpoints"),
        q.dialect().param(1)
    );
    let mut out = HashMap::new();
    for mut row in q.rows(&sql, &[Param::Text(source.to_string())])? {
        let shard = text(&mut row, 0, "checkpoints.shard")?;
        out.insert(shard, text(&mut row, 1, "checkpoints.sequence")?);
    }
    Ok(out)
}

/// Whether every position of `positions` is at or before the committed checkpoints: a batch
/// whose commit was interrupted may have landed after all.
pub fn positions_committed(committed: &HashMap<String, String>, positions: &[Position]) -> bool {
    !positions.is_empty()
        && positions.iter().all(|p| match committed.get(p.shard.as_ref()) {
            Some(c) => compare_checkpoint(c, &p.sequence).is_ge(),
            // A pruned shard's row is deleted.
            None => &*p.sequence == PRUNED,
        })
}

/// A version (µs since the epoch) as an RFC 3339 UTC time.
pub fn format_version(micros: i64) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    let (secs, sub) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    DateTime::from_secs_and_nanos(secs, (sub * 1000) as u32)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| format!("{micros} µs"))
}

/// Per table: rows, columns, newest change, counters, rejects.
pub fn status(q: &mut dyn Query) -> Result<Status, WarehouseError> {
    let sql = format!(
        "SELECT source_table, target_schema, target_name, columns_mode, changes_applied, deletes_applied, \
         expired_applied + expired_kept, last_version FROM {} ORDER BY source_table",
        control(q, "tables")
    );
    let registry = q.rows(&sql, &[])?;
    let mut rejects: HashMap<Option<String>, i64> = HashMap::new();
    let sql = format!("SELECT table_name, COUNT(*) FROM {} GROUP BY table_name", control(q, "rejects"));
    for mut row in q.rows(&sql, &[])? {
        let n = int(&row, 1, "reject count")?;
        rejects.insert(opt_text(&mut row, 0), n);
    }
    let sql = format!("SELECT source_table, COUNT(*) FROM {} GROUP BY source_table", control(q, "columns"));
    let mut columns: HashMap<String, i64> = HashMap::new();
    for mut row in q.rows(&sql, &[])? {
        let n = int(&row, 1, "column count")?;
        columns.insert(text(&mut row, 0, "columns.source_table")?, n);
    }
    // Tables at the column limit: their overflow column (no attribute, flagged as variant).
    let sql = format!(
        "SELECT source_table, column_name FROM {} WHERE attribute IS NULL AND is_variant",
        control(q, "columns")
    );
    let mut overflow: HashMap<String, String> = HashMap::new();
    for mut row in q.rows(&sql, &[])? {
        overflow
            .insert(text(&mut row, 0, "columns.source_table")?, text(&mut row, 1, "columns.column_name")?);
    }
    let mut status = Status::default();
    for mut row in registry {
        let source = text(&mut row, 0, "tables.source_table")?;
        let schema = text(&mut row, 1, "tables.target_schema")?;
        let name = text(&mut row, 2, "tables.target_name")?;
        let d = q.dialect();
        let overflowing = match overflow.get(&source) {
            Some(column) => format!("COUNT({})", d.quote(column)),
            None => "0".into(),
        };
        let sql = format!(
            "SELECT COUNT(*), CAST({overflowing} AS BIGINT) FROM {} WHERE NOT {}",
            d.qualified(&schema, &name),
            d.quote("_ddb_deleted")
        );
        let live = q.rows(&sql, &[])?;
        let last_version = int(&row, 7, "tables.last_version")?;
        status.tables.push(TableStatus {
            rows: live.first().map(|r| int(r, 0, "row count")).transpose()?.unwrap_or(0),
            overflow_rows: live.first().map(|r| int(r, 1, "overflow count")).transpose()?.unwrap_or(0),
            columns: columns.get(&source).copied().unwrap_or(0),
            rejects: rejects.remove(&Some(source.clone())).unwrap_or(0),
            target: format!("{schema}.{name}"),
            mode: text(&mut row, 3, "tables.columns_mode")?,
            newest_change: (last_version > 0).then(|| format_version(last_version)),
            newest_change_micros: (last_version > 0).then_some(last_version),
            changes_applied: int(&row, 4, "tables.changes_applied")?,
            deletes_applied: int(&row, 5, "tables.deletes_applied")?,
            expired: int(&row, 6, "tables.expired")?,
            source_table: source,
        });
    }
    // What is left could not be tied to a replicated table.
    status.unattributed_rejects = rejects.values().sum();
    // Backfills: their shards (an export's data files, a scan's segments) started and ended.
    let sql = format!(
        "SELECT source, COUNT(*), CAST(SUM(CASE WHEN sequence = 'end' THEN 1 ELSE 0 END) AS BIGINT) FROM {} \
         WHERE (source LIKE 'export:%' OR source LIKE 'scan:%') AND source NOT LIKE '%@%' GROUP BY source ORDER BY source",
        control(q, "checkpoints")
    );
    for mut row in q.rows(&sql, &[])? {
        status.backfills.push(BackfillStatus {
            source: text(&mut row, 0, "checkpoints.source")?,
            started: int(&row, 1, "backfill shards")?,
            ended: int(&row, 2, "backfill shards ended")?,
        });
    }
    let sql = format!("SELECT COUNT(*), CAST(MAX(committed_at) AS VARCHAR) FROM {}", control(q, "runs"));
    if let Some(mut row) = q.rows(&sql, &[])?.pop() {
        status.batches = int(&row, 0, "batch count")?;
        status.last_batch_at = opt_text(&mut row, 1);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_format_as_utc() {
        assert_eq!(format_version(1_764_000_000_123_456), "2025-11-24T16:00:00.123456Z");
    }

    #[test]
    fn committed_positions_compare_as_numbers() {
        let committed: HashMap<String, String> = [("s".to_string(), "100".to_string())].into();
        assert!(positions_committed(&committed, &[Position::new("s", "99")]));
        assert!(!positions_committed(&committed, &[Position::new("s", "1000")]));
        assert!(!positions_committed(&committed, &[Position::new("t", "1")]));
        assert!(!positions_committed(&committed, &[]));
    }
}
