//! What a warehouse allows a target table to be: identifier length, decimal scale, column
//! count and the names a user column cannot take. The planner keeps every table inside them,
//! so no batch is refused by the warehouse for its shape.

/// Column names PostgreSQL reserves for its system columns; Redshift, which descends from
/// it, refuses them as user column names too.
/// <https://docs.aws.amazon.com/redshift/latest/dg/c_unsupported-postgresql-features.html>
pub const POSTGRES_SYSTEM_COLUMNS: &[&str] = &["oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// A warehouse's limits on the tables the planner creates and grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest identifier, in bytes.
    pub max_identifier: usize,
    /// Largest DECIMAL scale (precision is always 38).
    pub max_decimal_scale: u32,
    /// Most columns one table may have, system columns included.
    pub max_columns: usize,
    /// Names no user column may take (compared without case).
    pub reserved_names: &'static [&'static str],
}

impl Limits {
    /// Identifiers of `max_identifier` bytes, and nothing else limited.
    pub const fn identifiers(max_identifier: usize) -> Limits {
        Limits { max_identifier, max_decimal_scale: 38, max_columns: usize::MAX, reserved_names: &[] }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::identifiers(127)
    }
}
