//! `[defaults]` and `[tables."…"]`: how tables are shaped, which are replicated, and the
//! sizes batches and memory keep to.

use dynashift_core::naming::NamingStyle;
use dynashift_core::plan::{DeleteMode, TtlMode};
use dynashift_core::types::ColumnMode;

use super::raw::RawDefaults;
use super::InvalidSetting;
use crate::size::parse_size;

/// The memory budget when `defaults.memory` is unset.
pub const DEFAULT_MEMORY: u64 = 512_000_000;
/// Disk a backlog's held changes may take when `defaults.spill` is unset.
pub const DEFAULT_SPILL: u64 = 4_000_000_000;
/// Less leaves the parts too small: DuckDB's quarter of 64MB could not commit a batch of
/// 350 KB items ("failed to pin block").
const MIN_MEMORY: u64 = 256_000_000;

#[derive(Debug, Clone)]
pub struct Defaults {
    pub columns: ColumnMode,
    pub naming: NamingStyle,
    pub deletes: DeleteMode,
    pub ttl_deletes: TtlMode,
    /// Records read per step; a batch (one warehouse transaction) holds at least one step.
    pub batch_size: usize,
    /// While the warehouse is busy, further steps fold into the next batch up to this many
    /// records (never fewer than `batch_size`). Unset, it depends on the target.
    pub max_batch_records: Option<usize>,
    /// ... and up to about this many bytes of held changes. Unset, a share of `memory`.
    pub max_batch_memory: Option<u64>,
    /// The process's memory budget in bytes, from which the parts left unset are sized.
    pub memory: u64,
    /// Bytes of held changes a backlog may put on disk (0: none; see `crate::spill`). Unset,
    /// `Config::spill_bytes` decides.
    pub spill: Option<u64>,
    /// Where they go (unset: beside a DuckDB file, else the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Which DynamoDB tables are replicated.
    pub tables: TableFilter,
}

/// `include` / `exclude` glob patterns of DynamoDB table names, compiled once.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl TableFilter {
    /// Whether changes of `table` are replicated: it matches an `include` pattern (or there
    /// are none) and no `exclude` pattern.
    pub fn includes(&self, table: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(table)))
            && !self.exclude.iter().any(|p| p.matches(table))
    }
}

fn patterns(key: &'static str, patterns: &[String]) -> Result<Vec<glob::Pattern>, InvalidSetting> {
    patterns
        .iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|e| InvalidSetting::value(key, format!("bad pattern `{p}`: {e}")))
        })
        .collect()
}

impl TryFrom<RawDefaults> for Defaults {
    type Error = InvalidSetting;

    fn try_from(raw: RawDefaults) -> Result<Defaults, InvalidSetting> {
        if raw.batch_size == 0 {
            return Err(InvalidSetting::value("defaults.batch_size", "must be at least 1"));
        }
        let max_batch_memory = match raw.max_batch_memory.as_deref() {
            None => None,
            Some(size) => Some(parse_size(size).ok_or_else(|| {
                InvalidSetting::value(
                    "defaults.max_batch_memory",
                    format!("`{size}` is not a size such as \"64MB\""),
                )
            })?),
        };
        let memory = match raw.memory.as_deref() {
            None => DEFAULT_MEMORY,
            Some(size) => parse_size(size).filter(|b| *b >= MIN_MEMORY).ok_or_else(|| {
                InvalidSetting::value(
                    "defaults.memory",
                    format!("`{size}` is not a size of at least 256MB, such as \"512MB\""),
                )
            })?,
        };
        let spill = match raw.spill.as_deref().map(str::trim) {
            None => None,
            Some("0") => Some(0),
            Some(size) => Some(parse_size(size).ok_or_else(|| {
                InvalidSetting::value(
                    "defaults.spill",
                    format!("`{size}` is not a size such as \"4GB\" (or \"0\" for none)"),
                )
            })?),
        };
        Ok(Defaults {
            columns: raw.columns,
            naming: raw.naming,
            deletes: raw.deletes,
            ttl_deletes: raw.ttl_deletes,
            batch_size: raw.batch_size,
            max_batch_records: raw.max_batch_records,
            max_batch_memory,
            memory,
            spill,
            spill_dir: raw.spill_dir,
            tables: TableFilter {
                include: patterns("defaults.include", &raw.include)?,
                exclude: patterns("defaults.exclude", &raw.exclude)?,
            },
        })
    }
}
