//! The engine: raw records → decoded, reduced, planned batch → one warehouse transaction.

use std::collections::{BTreeMap, HashMap};

use dynashift_core::change::compare_decimal;
use dynashift_core::decode::{decode, table_from_arn, DecodeContext};
use dynashift_core::plan::plan_table;
use dynashift_core::reduce::reduce;
use dynashift_core::schema::Catalog;
use dynashift_core::Position;

use crate::config::{Config, SourceConfig};
use crate::source::RawRecord;
use crate::warehouse::{Batch, Outcome, Reject, Warehouse, WarehouseError};

/// Per-table figures of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSummary {
    /// Decoded changes read for the table (before reduction).
    pub changes: u64,
    /// Changes that won over the warehouse's state and were written.
    pub applied: u64,
    pub rejects: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub records: u64,
    pub batches: u64,
    pub rejects: u64,
    /// Changes of tables left out by include/exclude.
    pub skipped: u64,
    pub tables: BTreeMap<String, TableSummary>,
}

pub struct Pipeline<W: Warehouse> {
    config: Config,
    warehouse: W,
    catalog: Catalog,
    context: DecodeContext,
    source_name: String,
    pub summary: Summary,
}

impl<W: Warehouse> Pipeline<W> {
    /// Sets up the warehouse's control tables and reads its registry.
    pub fn new(config: Config, mut warehouse: W) -> Result<Pipeline<W>, WarehouseError> {
        warehouse.setup()?;
        let catalog = warehouse.load_catalog()?;
        let SourceConfig::File(file) = &config.source;
        let context = DecodeContext {
            default_table: file.table.clone(),
            key_attributes: config
                .tables
                .iter()
                .filter_map(|(t, o)| o.keys.clone().map(|k| (t.clone(), k)))
                .collect(),
        };
        Ok(Pipeline {
            config,
            warehouse,
            catalog,
            context,
            source_name: "file".into(),
            summary: Summary::default(),
        })
    }

    pub fn warehouse(&mut self) -> &mut W {
        &mut self.warehouse
    }

    pub fn checkpoints(&mut self) -> Result<HashMap<String, String>, WarehouseError> {
        let source = self.source_name.clone();
        self.warehouse.load_checkpoints(&source)
    }

    /// Decodes, reduces and plans `records` against the current catalog. Pure with respect
    /// to the warehouse: nothing is written.
    pub fn prepare(&self, records: Vec<RawRecord>) -> (Batch, BTreeMap<String, u64>, u64) {
        let mut checkpoints: HashMap<std::sync::Arc<str>, Position> = HashMap::new();
        let mut changes = Vec::with_capacity(records.len());
        let mut rejects = Vec::new();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut skipped = 0;
        let record_count = records.len() as u64;
        for record in records {
            match checkpoints.get(&record.position.shard) {
                Some(p) if compare_decimal(&p.sequence, &record.position.sequence).is_ge() => {}
                _ => {
                    checkpoints.insert(record.position.shard.clone(), record.position.clone());
                }
            }
            if let Some(problem) = record.problem {
                rejects.push(Reject {
                    position: record.position,
                    table: None,
                    reason: problem,
                    raw: record.data,
                });
                continue;
            }
            match decode(&record.data, record.position.clone(), &self.context) {
                Ok(change) => {
                    if !self.config.includes(&change.table) {
                        skipped += 1;
                        continue;
                    }
                    *seen.entry(change.table.clone()).or_default() += 1;
                    changes.push(change);
                }
                Err(e) => rejects.push(Reject {
                    table: guess_table(&record.data),
                    position: record.position,
                    reason: e.to_string(),
                    raw: record.data,
                }),
            }
        }
        let change_count = changes.len() as u64;
        let mut catalog = self.catalog.clone();
        let mut tables = Vec::new();
        for (table, reduced) in reduce(changes) {
            let options = self.config.table_options(&table);
            tables.push(plan_table(
                &mut catalog,
                &table,
                reduced,
                options,
                self.warehouse.dialect().max_identifier(),
            ));
        }
        let mut checkpoints: Vec<Position> = checkpoints.into_values().collect();
        checkpoints.sort();
        let batch = Batch {
            catalog,
            tables,
            rejects,
            source: self.source_name.clone(),
            checkpoints,
            records: record_count,
            changes: change_count,
        };
        (batch, seen, skipped)
    }

    /// Applies a prepared batch and, once it committed, adopts its evolved catalog.
    pub fn commit(
        &mut self,
        batch: Batch,
        seen: BTreeMap<String, u64>,
        skipped: u64,
    ) -> Result<Outcome, WarehouseError> {
        let outcome = self.warehouse.apply(&batch)?;
        self.catalog = batch.catalog;
        let s = &mut self.summary;
        s.batches += 1;
        s.records += batch.records;
        s.rejects += batch.rejects.len() as u64;
        s.skipped += skipped;
        for (table, n) in seen {
            s.tables.entry(table).or_default().changes += n;
        }
        for (table, n) in &outcome.applied {
            s.tables.entry(table.clone()).or_default().applied += n;
        }
        for r in &batch.rejects {
            if let Some(t) = &r.table {
                s.tables.entry(t.clone()).or_default().rejects += 1;
            }
        }
        Ok(outcome)
    }

    /// Prepares and commits one batch of records.
    pub fn process(&mut self, records: Vec<RawRecord>) -> Result<Outcome, WarehouseError> {
        let (batch, seen, skipped) = self.prepare(records);
        self.commit(batch, seen, skipped)
    }

    /// The statements the batch of `records` would run.
    pub fn describe(&self, records: Vec<RawRecord>) -> Vec<String> {
        let (batch, _, _) = self.prepare(records);
        self.warehouse.describe(&batch)
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
