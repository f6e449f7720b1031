//! SQL dialects: how each warehouse spells types, casts and identifiers. The statements
//! themselves are built once, in `sql`, from these capabilities.

mod duckdb;
mod postgres;
mod redshift;

pub use self::duckdb::DuckDb;
pub use self::postgres::Postgres;
pub use self::redshift::{copy_from_manifest, Redshift, MAX_VARCHAR_BYTES};

use crate::limits::Limits;
use crate::schema::SystemType;
use crate::types::ColumnType;

/// A warehouse's SQL dialect: its limits, type names and quoting, and the few statements
/// whose text differs between warehouses. The defaults suit most warehouses; each overrides
/// what it spells differently.
pub trait Dialect: Send + Sync {
    /// The warehouse kind, as `by_name` takes it.
    fn name(&self) -> &'static str;

    /// Settings each batch's transaction starts with, for its statements' plans.
    fn batch_settings(&self) -> &'static [&'static str] {
        &[]
    }

    /// Longest identifier, in bytes.
    fn max_identifier(&self) -> usize {
        self.limits().max_identifier
    }

    /// What the warehouse allows a table to be; the planner stays inside it.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// The one place identifiers are quoted: wrapped in `"`, embedded `"` doubled.
    fn quote(&self, ident: &str) -> String {
        let mut out = String::with_capacity(ident.len() + 2);
        out.push('"');
        for c in ident.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    /// `schema.table`, both quoted.
    fn qualified(&self, schema: &str, table: &str) -> String {
        format!("{}.{}", self.quote(schema), self.quote(table))
    }

    /// SQL type of a target column of logical type `ty`.
    fn column_type(&self, ty: ColumnType) -> String;

    /// Type of a system or control column, as declared in `CREATE TABLE`.
    fn system_type(&self, ty: SystemType) -> &'static str {
        match ty {
            SystemType::Text => "VARCHAR",
            SystemType::BigInt => "BIGINT",
            SystemType::Bool => "BOOLEAN",
            SystemType::Timestamp => "TIMESTAMP",
        }
    }

    /// Longest text a text column holds, in bytes, where the warehouse has such a limit.
    fn max_text_bytes(&self) -> Option<usize> {
        None
    }

    /// The text type a bound parameter is cast to where nothing else gives it a type.
    fn text_cast(&self) -> &'static str {
        "VARCHAR"
    }

    /// Type a value of `ty` has in the staging table (text, then cast on insert).
    fn stage_type(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Blob => "BLOB",
            _ => "VARCHAR",
        }
    }

    /// Converts a staged expression to the target column type.
    fn cast_from_stage(&self, expr: &str, ty: ColumnType) -> String {
        match ty {
            ColumnType::BigInt | ColumnType::Blob | ColumnType::Text | ColumnType::NumberText => {
                expr.to_string()
            }
            ColumnType::Json => self.json_from_text(expr),
            other => format!("CAST({expr} AS {})", self.column_type(other)),
        }
    }

    /// Builds a JSON value from staged JSON text.
    fn json_from_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS {})", self.column_type(ColumnType::Json))
    }

    /// How a bound binary value enters a statement: `None` binds the bytes as they are; an
    /// expression over `placeholder` binds them as hex text converted in SQL, for warehouses
    /// whose binary type a driver cannot bind.
    fn bytes_from_hex_param(&self, _placeholder: &str) -> Option<String> {
        None
    }

    /// Placeholder of the `n`-th (1-based) bound parameter.
    fn param(&self, n: usize) -> String {
        format!("${n}")
    }

    /// Placeholders `first..first+count`, comma-separated: `$1, $2, $3`.
    fn params(&self, first: usize, count: usize) -> String {
        (first..first + count).map(|n| self.param(n)).collect::<Vec<_>>().join(", ")
    }

    /// The current time, as the statements that write rows may call it.
    fn now(&self) -> &'static str {
        "CURRENT_TIMESTAMP"
    }

    /// Statement creating a session-local staging table.
    fn create_stage(&self, stage: &str, columns: &[(String, &'static str)]) -> String {
        let cols: Vec<String> = columns.iter().map(|(n, t)| format!("{} {t}", self.quote(n))).collect();
        format!("CREATE TEMPORARY TABLE {} ({})", self.quote(stage), cols.join(", "))
    }

    /// Statement dropping the staging table, if it exists.
    fn drop_stage(&self, stage: &str) -> String {
        format!("DROP TABLE IF EXISTS {}", self.quote(stage))
    }

    /// Text after a target table's column list: Redshift's distribution and sort keys.
    fn table_suffix(&self) -> &'static str {
        ""
    }

    /// Index making `_ddb_key` lookups of a new target table cheap, where the warehouse has
    /// indexes worth having.
    fn key_index(&self, _schema: &str, _table: &str) -> Option<String> {
        None
    }

    /// Indexes of the control tables, created with them.
    fn control_indexes(&self, _control_schema: &str) -> Vec<String> {
        Vec::new()
    }

    /// Whether the two version guards (against the row, against its tombstone) run as two
    /// statements: PostgreSQL plans a single EXISTS as a hash semi-join, but an OR of two as a
    /// per-row filter.
    fn separate_guards(&self) -> bool {
        false
    }

    /// Statement refreshing the planner's statistics of a freshly loaded stage.
    fn analyze_stage(&self, _stage: &str) -> Option<String> {
        None
    }

    /// Statement taken before a table's guards read it, where a snapshot load may append to
    /// the table from another session under a lock that must wait for this batch (or make it
    /// wait) before either reads the table.
    fn lock_before_guards(&self, _table: &str) -> Option<String> {
        None
    }
}

/// The dialect of a warehouse kind (`duckdb`, `postgres`, `redshift`).
pub fn by_name(name: &str) -> Option<&'static dyn Dialect> {
    match name {
        "duckdb" => Some(&DuckDb),
        "postgres" | "postgresql" => Some(&Postgres),
        "redshift" => Some(&Redshift),
        _ => None,
    }
}
