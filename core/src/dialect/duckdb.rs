//! DuckDB: the embedded default. Identifiers are case-insensitive even when quoted; the JSON
//! type comes from the bundled json extension.

use super::Dialect;
use crate::limits::Limits;
use crate::types::ColumnType;

/// The DuckDB dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct DuckDb;

impl Dialect for DuckDb {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    /// DuckDB sets no column limit of its own, but every column of a table (and of the stage
    /// an Appender fills) takes buffers of its own: an item of 20,000 attributes made a
    /// one-row batch exhaust a 128 MB memory limit. Tables stop at 1,600 columns, as on
    /// PostgreSQL and Redshift; the rest of a wide item goes to the overflow column.
    fn limits(&self) -> Limits {
        Limits { max_columns: 1600, ..Limits::default() }
    }

    fn column_type(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Text | ColumnType::NumberText => "VARCHAR".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Decimal(s) => format!("DECIMAL(38, {s})"),
            ColumnType::Bool => "BOOLEAN".into(),
            ColumnType::Blob => "BLOB".into(),
            ColumnType::Json => "JSON".into(),
        }
    }
}
