//! PostgreSQL: identifiers up to 63 bytes (longer ones would be cut silently by the server,
//! so the planner cuts them first, with a hash); exact NUMERIC; JSONB for documents.

use super::Dialect;
use crate::limits::{Limits, POSTGRES_SYSTEM_COLUMNS};
use crate::naming::short_hash;
use crate::schema::SystemType;
use crate::types::ColumnType;

/// The PostgreSQL dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// Compiling a batch's statements (JIT, about 20 ms each) pays nothing back for them.
    /// (Turning hash joins off made the guards probe the target's key index, flat as the
    /// table grows, but let a join against a table without statistics yet go quadratic.)
    fn batch_settings(&self) -> &'static [&'static str] {
        &["SET LOCAL jit = off"]
    }

    /// 63-byte names; at most 1,600 columns; system column names (`xmin`, `ctid`, …) are
    /// refused as user column names.
    /// <https://www.postgresql.org/docs/current/limits.html>,
    /// <https://www.postgresql.org/docs/current/ddl-system-columns.html>
    fn limits(&self) -> Limits {
        Limits { max_columns: 1600, reserved_names: POSTGRES_SYSTEM_COLUMNS, ..Limits::identifiers(63) }
    }

    fn column_type(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Text | ColumnType::NumberText => "TEXT".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Decimal(s) => format!("NUMERIC(38, {s})"),
            ColumnType::Bool => "BOOLEAN".into(),
            ColumnType::Blob => "BYTEA".into(),
            ColumnType::Json => "JSONB".into(),
        }
    }

    fn system_type(&self, ty: SystemType) -> &'static str {
        match ty {
            SystemType::Text => "TEXT",
            SystemType::BigInt => "BIGINT",
            SystemType::Bool => "BOOLEAN",
            SystemType::Timestamp => "TIMESTAMPTZ",
        }
    }

    fn text_cast(&self) -> &'static str {
        "TEXT"
    }

    fn stage_type(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Blob => "BYTEA",
            _ => "TEXT",
        }
    }

    /// A unique index on `_ddb_key`: every apply statement joins on it. Index names share
    /// the schema's namespace with tables, so the name is a hash no DynamoDB table maps to.
    /// `ROW EXCLUSIVE`, which writers hold anyway and which does not block other writers, but
    /// conflicts with the `SHARE ROW EXCLUSIVE` a snapshot load appends under: a guarded batch
    /// and an unguarded append of the same table run one after the other, each seeing the
    /// other's rows (the guards' own reads take no lock that would).
    fn lock_before_guards(&self, table: &str) -> Option<String> {
        Some(format!("LOCK TABLE {table} IN ROW EXCLUSIVE MODE"))
    }

    fn key_index(&self, schema: &str, table: &str) -> Option<String> {
        let name = format!("_dynashift_key_{}", short_hash(&format!("{schema}.{table}")));
        Some(format!(
            "CREATE UNIQUE INDEX {} ON {} ({})",
            self.quote(&name),
            self.qualified(schema, table),
            self.quote("_ddb_key")
        ))
    }

    fn control_indexes(&self, control_schema: &str) -> Vec<String> {
        let c = |t: &str| self.qualified(control_schema, t);
        vec![
            format!(
                "CREATE INDEX IF NOT EXISTS \"tombstones_key\" ON {} (source_table, item_key)",
                c("tombstones")
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS \"checkpoints_shard\" ON {} (source, shard)",
                c("checkpoints")
            ),
            format!("CREATE INDEX IF NOT EXISTS \"rejects_table\" ON {} (table_name)", c("rejects")),
        ]
    }

    /// Temporary tables get no statistics until analysed; without them the joins against
    /// the target pick nested loops.
    /// Only the join key: sampling every (wide) column costs more than the apply itself.
    fn analyze_stage(&self, stage: &str) -> Option<String> {
        Some(format!("ANALYZE {} ({})", self.quote(stage), self.quote("_ddb_key")))
    }

    fn separate_guards(&self) -> bool {
        true
    }
}
