//! Amazon Redshift: identifiers up to 127 bytes; `VARCHAR(65535)` for text (bare `VARCHAR` is
//! only 256 bytes); `SUPER` filled with `JSON_PARSE`; `VARBYTE` for binary.
//! <https://docs.aws.amazon.com/redshift/latest/dg/c_Supported_data_types.html>
//!
//! Every rule followed here is checked, statement by statement, by the tests' Redshift rule
//! checker (`tests/support/redshift_rules.rs`), which cites the documentation page of each.

use super::Dialect;
use crate::limits::{Limits, POSTGRES_SYSTEM_COLUMNS};
use crate::literal::{string_literal, LiteralError};
use crate::schema::SystemType;
use crate::types::ColumnType;

/// The Amazon Redshift dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redshift;

/// Longest VARCHAR, in bytes; longer strings are cut at a character boundary and recorded.
pub const MAX_VARCHAR_BYTES: usize = 65_535;

/// System and control text columns (keys, table names, positions) compare with case even in
/// a database created `COLLATE CASE_INSENSITIVE`, where two DynamoDB keys differing only in
/// case would otherwise be one row.
/// <https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_TABLE_NEW.html> (COLLATE),
/// <https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_DATABASE.html>
const CASE_SENSITIVE_TEXT: &str = "VARCHAR(65535) COLLATE CASE_SENSITIVE";

impl Dialect for Redshift {
    fn name(&self) -> &'static str {
        "redshift"
    }

    /// 127-byte names; DECIMAL scale at most 37 ("Numeric types"); 1,600 columns per table
    /// ("CREATE TABLE"); PostgreSQL's system column names refused ("Unsupported PostgreSQL
    /// features").
    fn limits(&self) -> Limits {
        Limits {
            max_identifier: 127,
            max_decimal_scale: 37,
            max_columns: 1600,
            reserved_names: POSTGRES_SYSTEM_COLUMNS,
        }
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
            SystemType::Text => CASE_SENSITIVE_TEXT,
            SystemType::BigInt => "BIGINT",
            SystemType::Bool => "BOOLEAN",
            SystemType::Timestamp => "TIMESTAMP",
        }
    }

    fn text_cast(&self) -> &'static str {
        "VARCHAR(65535)"
    }

    /// A longer string is an error, not a truncation ("Character types").
    fn max_text_bytes(&self) -> Option<usize> {
        Some(MAX_VARCHAR_BYTES)
    }

    /// Stages are loaded by `COPY … FORMAT JSON`, which cannot fill VARBYTE: binary values
    /// travel as hex text and become VARBYTE with `TO_VARBYTE(…, 'hex')` on insert.
    fn stage_type(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::BigInt => "BIGINT",
            _ => "VARCHAR(65535)",
        }
    }

    /// Character types do not cast to BOOLEAN ("Type compatibility and conversion"): staged
    /// `true`/`false` become booleans by comparison. `FROM_HEX` is documented for literals;
    /// a column converts with `TO_VARBYTE(…, 'hex')` ("VARBYTE functions").
    fn cast_from_stage(&self, expr: &str, ty: ColumnType) -> String {
        match ty {
            ColumnType::BigInt | ColumnType::Text | ColumnType::NumberText => expr.to_string(),
            ColumnType::Bool => format!("CASE {expr} WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"),
            ColumnType::Blob => format!("TO_VARBYTE({expr}, 'hex')"),
            ColumnType::Json => self.json_from_text(expr),
            other => format!("CAST({expr} AS {})", self.column_type(other)),
        }
    }

    /// `CURRENT_TIMESTAMP` and `NOW()` run on the leader node only, and a statement that
    /// writes user tables fails with them; `GETDATE()` runs on the compute nodes.
    /// <https://docs.aws.amazon.com/redshift/latest/dg/c_SQL_functions_leader_node_only.html>
    fn now(&self) -> &'static str {
        "GETDATE()"
    }

    /// One correlated EXISTS per DELETE: an OR of two correlated subqueries risks Redshift's
    /// "correlated subquery pattern is not supported".
    /// <https://docs.aws.amazon.com/redshift/latest/dg/r_correlated_subqueries.html>
    fn separate_guards(&self) -> bool {
        true
    }

    /// VARBYTE cannot be bound: Redshift refuses a bytea parameter for it, and a driver that
    /// looks up the unknown type queries catalog tables Redshift lacks. Bytes travel as hex.
    fn bytes_from_hex_param(&self, placeholder: &str) -> Option<String> {
        Some(format!("TO_VARBYTE(CAST({placeholder} AS VARCHAR(65535)), 'hex')"))
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
