//! The engine: a planner feeding a warehouse, one transaction per batch.

use std::collections::{BTreeMap, HashMap};

use dynashift_core::schema::Catalog;

use crate::config::Config;
use crate::flow::{Flow, Scheduler, Step};
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

/// The engine in one thread: the planner folds reads into the batch being gathered, the
/// warehouse applies batches, and the run loop's state machine (`Flow`) decides between them
/// exactly as in `run`, where reading and applying have threads of their own. Here the
/// warehouse finishes a batch when the caller says so (`settle`) or when the flow waits for
/// it, so tests choose which reads arrive while a batch is being applied.
pub struct Pipeline<W: Warehouse> {
    pub planner: Planner,
    warehouse: W,
    pub summary: Summary,
    flow: Flow,
    /// The batch handed to the warehouse and not yet applied.
    in_flight: Option<Prepared>,
    /// A batch planned while `in_flight` was applied, waiting for the warehouse.
    planned: Option<Prepared>,
    /// The time the flow decides by (seconds since the epoch): the clock's, unless set.
    now: Option<i64>,
}

impl<W: Warehouse> Pipeline<W> {
    /// Sets up the warehouse's control tables and reads its registry.
    pub fn new(config: Config, mut warehouse: W) -> Result<Pipeline<W>, WarehouseError> {
        warehouse.setup()?;
        Pipeline::set_up(config, warehouse)
    }

    fn with_planner(config: Config, mut planner: Planner, warehouse: W) -> Pipeline<W> {
        if config.spill_bytes() > 0 {
            planner.spill_to(&config.spill_dir(), config.spill_bytes(), config.max_batch_memory_bytes());
        }
        let flow = Flow::new(config.flow_limits(None));
        Pipeline {
            planner,
            warehouse,
            summary: Summary::default(),
            flow,
            in_flight: None,
            planned: None,
            now: None,
        }
    }

    /// Applies tables by their schedules (from the configuration, and the last applies the
    /// warehouse keeps), holding positions back to what every table has applied.
    pub fn with_schedules(mut self, config: &Config) -> Result<Pipeline<W>, WarehouseError> {
        if !config.schedules.is_active() {
            return Ok(self);
        }
        let resume = self.checkpoints()?;
        let source = self.planner.source_name().to_string();
        let last_applied = crate::run::last_applies(&mut self.warehouse, &source)?;
        let marks = crate::run::table_marks(&mut self.warehouse, &source)?;
        let held = crate::run::held_changes(&mut self.warehouse, &source)?;
        self.planner.held_listed(held);
        self.planner.hold_tables(&resume, marks);
        self.planner.record_applies();
        let scheduler = Scheduler::new(config.schedules.clone(), last_applied, None);
        self.flow = Flow::with_scheduler(config.flow_limits(None), scheduler);
        Ok(self)
    }

    /// Decides by `now` (seconds since the epoch) instead of the clock: a virtual clock.
    pub fn set_time(&mut self, now: i64) {
        self.now = Some(now);
    }

    fn time(&self) -> i64 {
        self.now.unwrap_or_else(crate::run::unix_now)
    }

    /// A pipeline over a warehouse never set up (nothing replicated yet), for planning
    /// without writing anything: the catalog is empty.
    pub fn unset(config: Config, warehouse: W) -> Pipeline<W> {
        let planner = Planner::new(config.clone(), Catalog::default(), warehouse.dialect().limits());
        Pipeline::with_planner(config, planner, warehouse)
    }

    /// `new` for a warehouse whose control tables are already set up.
    pub fn set_up(config: Config, mut warehouse: W) -> Result<Pipeline<W>, WarehouseError> {
        let catalog = warehouse.load_catalog()?;
        let planner = Planner::new(config.clone(), catalog, warehouse.dialect().limits());
        Ok(Pipeline::with_planner(config, planner, warehouse))
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

    /// Batches planned so far: the records of a read join batch number
    /// `batches_planned()` as it was when they were read.
    pub fn batches_planned(&self) -> u64 {
        self.flow.batches_planned()
    }

    /// One read, as the run loop receives it; `caught_up`: the read was short (the source
    /// has no backlog). Returns what batches the flow had applied meanwhile.
    pub fn read(&mut self, records: Vec<RawRecord>, caught_up: bool) -> Result<Outcome, WarehouseError> {
        let now = self.time();
        self.planner.ingest(records, 2, now);
        self.flow.read(self.planner.gathered(), caught_up);
        self.steps()
    }

    /// The warehouse finishes the batch it is applying; the flow goes on.
    pub fn settle(&mut self) -> Result<Outcome, WarehouseError> {
        let mut outcome = self.apply_in_flight()?;
        outcome.add(self.steps()?);
        Ok(outcome)
    }

    /// The input is consumed: everything gathered is applied.
    pub fn finish(&mut self) -> Result<Outcome, WarehouseError> {
        self.flow.input_over();
        let mut outcome = self.steps()?;
        outcome.add(self.apply_in_flight()?);
        Ok(outcome)
    }

    /// Reads `records` as one short read and applies them (with whatever was gathered).
    pub fn process(&mut self, records: Vec<RawRecord>) -> Result<Outcome, WarehouseError> {
        let mut outcome = self.settle()?;
        outcome.add(self.read(records, true)?);
        outcome.add(self.settle()?);
        Ok(outcome)
    }

    /// Takes the flow's steps until it wants the next read.
    fn steps(&mut self) -> Result<Outcome, WarehouseError> {
        let mut outcome = Outcome::default();
        loop {
            let now = self.time();
            match self.flow.next_step(now) {
                // Waiting for a paused table is the caller's to end (by a stop or more time).
                Step::Read | Step::Wait(_) => return Ok(outcome),
                Step::Spill => {
                    self.planner.spill().map_err(spill_error)?;
                    self.flow.spilled(self.planner.gathered());
                }
                Step::Plan(selection) => {
                    self.planner.load_spilled().map_err(spill_error)?;
                    let prepared = self.planner.hand_over(&selection, now);
                    let planned = prepared.batch.planned_weight();
                    self.planned = Some(prepared);
                    self.flow.planned(planned, &selection, now, self.planner.gathered());
                }
                Step::HandOver => {
                    debug_assert!(self.planned.is_some(), "the flow handed over a batch it never planned");
                    self.in_flight = self.planned.take();
                    self.flow.handed_over();
                }
                Step::AwaitWarehouse => outcome.add(self.apply_in_flight()?),
                Step::Finish => {
                    outcome.add(self.apply_in_flight()?);
                    return Ok(outcome);
                }
            }
        }
    }

    fn apply_in_flight(&mut self) -> Result<Outcome, WarehouseError> {
        let Some(prepared) = self.in_flight.take() else { return Ok(Outcome::default()) };
        match self.warehouse.apply(&prepared.batch) {
            Ok(outcome) => {
                self.summary.add(&prepared, &outcome);
                self.flow.applied();
                Ok(outcome)
            }
            Err(e) => {
                self.flow.failed();
                Err(e)
            }
        }
    }
}

/// Spilled changes that cannot be written or read back stop the run like a warehouse error.
fn spill_error(error: std::io::Error) -> WarehouseError {
    WarehouseError::Query {
        context: "spilling held changes to disk".into(),
        cause: crate::cause::Cause::of(error),
    }
}
