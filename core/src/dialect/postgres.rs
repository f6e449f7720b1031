//! PostgreSQL: identifiers up to 63 bytes (longer ones would be cut silently by the server,
//! so the planner cuts them first, with a hash); exact NUMERIC; JSONB for documents.

use super::Dialect;
use crate::schema::SystemType;
use crate::types::ColumnType;

#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn max_identifier(&self) -> usize {
        63
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

    fn stage_type(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Blob => "BYTEA",
            _ => "TEXT",
        }
    }
}
