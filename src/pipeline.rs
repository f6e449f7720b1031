//! The engine: a planner feeding a warehouse, one transaction per batch.

use std::collections::{BTreeMap, HashMap};

use dynashift_core::schema::Catalog;

use crate::config::Config;
use crate::planner::{Planner, Prepared};
use crate::source::RawRecord;
use crate::warehouse::{Outcome, Warehouse, WarehouseError};

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

impl Summary {
    /// Adds a committed batch's figures.
    pub fn add(&mut self, prepared: &Prepared, outcome: &Outcome) {
        let batch = &prepared.batch;
        self.batches += 1;
        self.records += batch.records;
        self.rejects += batch.rejects.len() as u64;
        self.skipped += prepared.skipped;
        for (table, n) in &prepared.seen {
            self.tables.entry(table.clone()).or_default().changes += n;
        }
        for (table, n) in &outcome.applied {
            self.tables.entry(table.clone()).or_default().applied += n;
        }
        for r in &batch.rejects {
            if let Some(t) = &r.table {
                self.tables.entry(t.clone()).or_default().rejects += 1;
            }
        }
    }
}

pub struct Pipeline<W: Warehouse> {
    pub planner: Planner,
    warehouse: W,
    pub summary: Summary,
}

impl<W: Warehouse> Pipeline<W> {
    /// Sets up the warehouse's control tables and reads its registry.
    pub fn new(config: Config, mut warehouse: W) -> Result<Pipeline<W>, WarehouseError> {
        warehouse.setup()?;
        Pipeline::set_up(config, warehouse)
    }

    /// A pipeline over a warehouse never set up (nothing replicated yet), for planning
    /// without writing anything: the catalog is empty.
    pub fn unset(config: Config, warehouse: W) -> Pipeline<W> {
        let planner = Planner::new(config, Catalog::default(), warehouse.dialect().limits());
        Pipeline { planner, warehouse, summary: Summary::default() }
    }

    /// `new` for a warehouse whose control tables are already set up.
    pub fn set_up(config: Config, mut warehouse: W) -> Result<Pipeline<W>, WarehouseError> {
        let catalog = warehouse.load_catalog()?;
        let planner = Planner::new(config, catalog, warehouse.dialect().limits());
        Ok(Pipeline { planner, warehouse, summary: Summary::default() })
    }

    pub fn warehouse(&mut self) -> &mut W {
        &mut self.warehouse
    }

    pub fn into_parts(self) -> (Planner, W, Summary) {
        (self.planner, self.warehouse, self.summary)
    }

    pub fn checkpoints(&mut self) -> Result<HashMap<String, String>, WarehouseError> {
        let source = self.planner.source_name().to_string();
        self.warehouse.load_checkpoints(&source)
    }

    /// Prepares and commits one batch of records.
    pub fn process(&mut self, records: Vec<RawRecord>) -> Result<Outcome, WarehouseError> {
        let prepared = self.planner.prepare(records);
        let outcome = self.warehouse.apply(&prepared.batch)?;
        self.summary.add(&prepared, &outcome);
        Ok(outcome)
    }

    /// The statements the batch of `records` would run.
    pub fn describe(&mut self, records: Vec<RawRecord>) -> Vec<String> {
        let prepared = self.planner.prepare(records);
        self.warehouse.describe(&prepared.batch)
    }
}
