//! Planning: raw records → decoded, reduced, planned batch. No warehouse I/O.

use std::collections::{BTreeMap, HashMap};

use dynashift_core::change::compare_decimal;
use dynashift_core::decode::{decode, table_from_arn, DecodeContext};
use dynashift_core::plan::plan_table;
use dynashift_core::reduce::reduce;
use dynashift_core::schema::Catalog;
use dynashift_core::{Change, Position};

use crate::config::Config;
use crate::source::RawRecord;
use crate::warehouse::{Batch, Reject};

/// A planned batch and the figures the run reports for it.
pub struct Prepared {
    pub batch: Batch,
    /// Decoded changes per table, before reduction.
    pub seen: BTreeMap<String, u64>,
    /// Changes of tables left out by include/exclude.
    pub skipped: u64,
}

/// Turns records into batches against the catalog as it will be once earlier batches commit.
/// If a batch fails to commit, the planner is ahead of the warehouse: rebuild it from the
/// warehouse's registry before planning again.
pub struct Planner {
    config: Config,
    catalog: Catalog,
    context: DecodeContext,
    source_name: String,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    max_identifier: usize,
}

impl Planner {
    pub fn new(config: Config, catalog: Catalog, max_identifier: usize) -> Planner {
        let context = DecodeContext {
            default_table: config.source.default_table(),
            key_attributes: config
                .tables
                .iter()
                .filter_map(|(t, o)| o.keys.clone().map(|k| (t.clone(), k)))
                .collect(),
        };
        // Patterns were validated when the config was loaded.
        let compile = |ps: &[String]| ps.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
        let include = compile(&config.defaults.include);
        let exclude = compile(&config.defaults.exclude);
        let source_name = config.source.checkpoint_name();
        Planner { config, catalog, context, source_name, include, exclude, max_identifier }
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Decodes, reduces and plans `records`; the planner's catalog moves to the batch's.
    pub fn prepare(&mut self, records: Vec<RawRecord>) -> Prepared {
        let mut checkpoints: HashMap<std::sync::Arc<str>, Position> = HashMap::new();
        let mut changes = Vec::with_capacity(records.len());
        let mut rejects = Vec::new();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut skipped = 0;
        let record_count = records.len() as u64;
        for record in &records {
            match checkpoints.get(&record.position.shard) {
                Some(p) if compare_decimal(&p.sequence, &record.position.sequence).is_ge() => {}
                _ => {
                    checkpoints.insert(record.position.shard.clone(), record.position.clone());
                }
            }
        }
        for decoded in self.decode_all(&records) {
            match decoded {
                Ok(change) => {
                    if !self.includes(&change.table) {
                        skipped += 1;
                        continue;
                    }
                    *seen.entry(change.table.clone()).or_default() += 1;
                    changes.push(change);
                }
                Err(reject) => rejects.push(reject),
            }
        }
        drop(records);
        let change_count = changes.len() as u64;
        let mut catalog = self.catalog.clone();
        let mut tables = Vec::new();
        for (table, reduced) in reduce(changes) {
            let options = self.config.table_options(&table);
            tables.push(plan_table(&mut catalog, &table, reduced, options, self.max_identifier));
        }
        let mut checkpoints: Vec<Position> = checkpoints.into_values().collect();
        checkpoints.sort();
        self.catalog = catalog.clone();
        let batch = Batch {
            catalog,
            tables,
            rejects,
            source: self.source_name.clone(),
            checkpoints,
            records: record_count,
            changes: change_count,
        };
        Prepared { batch, seen, skipped }
    }

    /// Decodes records on all cores; results keep the records' order.
    fn decode_all(&self, records: &[RawRecord]) -> Vec<Result<Change, Reject>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let context = &self.context;
        let decode_one = |record: &RawRecord| -> Result<Change, Reject> {
            if let Some(problem) = &record.problem {
                return Err(Reject {
                    position: record.position.clone(),
                    table: None,
                    reason: problem.clone(),
                    raw: record.data.clone(),
                });
            }
            decode(&record.data, record.position.clone(), context).map_err(|e| Reject {
                table: guess_table(&record.data),
                position: record.position.clone(),
                reason: e.to_string(),
                raw: record.data.clone(),
            })
        };
        if threads < 2 || records.len() < 2_000 {
            return records.iter().map(decode_one).collect();
        }
        let chunk = records.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = records
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(decode_one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    fn includes(&self, table: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(table)))
            && !self.exclude.iter().any(|p| p.matches(table))
    }
}

/// Best effort: which table an undecodable record meant, for `status`. Falls back to a plain
/// text search so even a truncated record is counted against its table.
fn guess_table(raw: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) {
        if let Some(t) = v.get("tableName").and_then(|t| t.as_str()) {
            return Some(t.to_string());
        }
        return v.get("eventSourceARN").and_then(|a| a.as_str()).and_then(table_from_arn);
    }
    let text = std::str::from_utf8(raw).ok()?;
    let rest = text.split_once("\"tableName\":\"")?.1;
    let name = rest.split('"').next()?;
    let valid = (3..=255).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    valid.then(|| name.to_string())
}
