//! Amazon Redshift: identifiers up to 127 bytes; `VARCHAR(65535)` for text (bare `VARCHAR` is
//! only 256 bytes); `SUPER` filled with `JSON_PARSE`; `VARBYTE` for binary.
//! <https://docs.aws.amazon.com/redshift/latest/dg/c_Supported_data_types.html>

use super::Dialect;
use crate::literal::{string_literal, LiteralError};
use crate::schema::SystemType;
use crate::types::ColumnType;

#[derive(Debug, Clone, Copy, Default)]
pub struct Redshift;

/// Longest VARCHAR, in bytes; longer strings are cut at a character boundary and recorded.
pub const MAX_VARCHAR_BYTES: usize = 65_535;

impl Dialect for Redshift {
    fn name(&self) -> &'static str {
        "redshift"
    }

    fn column_type(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Text | ColumnType::NumberText => "VARCHAR(65535)".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Decimal(s) => format!("DECIMAL(38, {s})"),
            ColumnType::Bool => "BOOLEAN".into(),
            ColumnType::Blob => "VARBYTE(1024000)".into(),
            ColumnType::Json => "SUPER".into(),
        }
    }

    fn system_type(&self, ty: SystemType) -> &'static str {
        match ty {
            SystemType::Text => "VARCHAR(65535)",
            SystemType::BigInt => "BIGINT",
            SystemType::Bool => "BOOLEAN",
            SystemType::Timestamp => "TIMESTAMP",
        }
    }

    /// Stages are loaded by `COPY … FORMAT JSON`, which cannot fill VARBYTE: binary values
    /// travel as hex text and become VARBYTE with `FROM_HEX` on insert.
    fn stage_type(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::BigInt => "BIGINT",
            _ => "VARCHAR(65535)",
        }
    }

    fn cast_from_stage(&self, expr: &str, ty: ColumnType) -> String {
        match ty {
            ColumnType::BigInt | ColumnType::Text | ColumnType::NumberText => expr.to_string(),
            ColumnType::Blob => format!("FROM_HEX({expr})"),
            ColumnType::Json => self.json_from_text(expr),
            other => format!("CAST({expr} AS {})", self.column_type(other)),
        }
    }

    /// SUPER values are built from staged JSON text with `JSON_PARSE`.
    fn json_from_text(&self, expr: &str) -> String {
        format!("JSON_PARSE({expr})")
    }

    /// Rows live on the slice of their serialized DynamoDB key, sorted by it: every apply
    /// statement joins target and stage on `_ddb_key`, so the join never redistributes.
    fn table_suffix(&self) -> &'static str {
        " DISTKEY(\"_ddb_key\") SORTKEY(\"_ddb_key\")"
    }

    /// The stage is distributed like the targets, for the same co-located joins.
    fn create_stage(&self, stage: &str, columns: &[(String, &'static str)]) -> String {
        let cols: Vec<String> = columns.iter().map(|(n, t)| format!("{} {t}", self.quote(n))).collect();
        format!("CREATE TEMP TABLE {} ({}){}", self.quote(stage), cols.join(", "), self.table_suffix())
    }
}

/// Loads a stage from gzip JSON-lines parts named by a manifest in S3. `FORMAT JSON 'auto'`
/// maps each line's keys to the stage's (lower-case, ASCII) column names.
pub fn copy_from_manifest(
    stage: &str,
    columns: &[(String, &'static str)],
    manifest_url: &str,
    iam_role: &str,
    region: Option<&str>,
) -> Result<String, LiteralError> {
    let d = Redshift;
    let names: Vec<String> = columns.iter().map(|(n, _)| d.quote(n)).collect();
    let mut sql = format!(
        "COPY {} ({}) FROM {} IAM_ROLE {} FORMAT AS JSON 'auto' GZIP MANIFEST",
        d.quote(stage),
        names.join(", "),
        string_literal("the S3 manifest URL", manifest_url)?,
        string_literal("the IAM role", iam_role)?
    );
    if let Some(region) = region {
        sql.push_str(&format!(" REGION {}", string_literal("the S3 region", region)?));
    }
    Ok(sql)
}
