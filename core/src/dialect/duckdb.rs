//! DuckDB: the embedded default. Identifiers are case-insensitive even when quoted; the JSON
//! type comes from the bundled json extension.

use super::Dialect;
use crate::types::ColumnType;

#[derive(Debug, Clone, Copy, Default)]
pub struct DuckDb;

impl Dialect for DuckDb {
    fn name(&self) -> &'static str {
        "duckdb"
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
