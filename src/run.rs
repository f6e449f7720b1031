//! The `run` loop: read the source in batches and apply each, until the input is consumed
//! (or, with `--follow`, until stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, SourceConfig, TargetConfig};
use crate::pipeline::{Pipeline, Summary};
use crate::source::file::FileSource;
use crate::warehouse::{Status, Warehouse};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep tailing the input after it is consumed.
    pub follow: bool,
    /// Print the next batch's SQL instead of running it.
    pub dry_run: bool,
    /// Stop after this many batches (for tools and tests).
    pub max_batches: Option<u64>,
}

/// Opens the configured warehouse.
pub fn open_warehouse(config: &Config) -> anyhow::Result<Box<dyn Warehouse>> {
    match &config.target {
        #[cfg(feature = "duckdb")]
        TargetConfig::Duckdb(t) => {
            let w = crate::warehouse::duckdb::DuckDbWarehouse::open(&t.path, &t.schema)?;
            Ok(Box::new(w))
        }
        #[cfg(not(feature = "duckdb"))]
        TargetConfig::Duckdb(_) => {
            anyhow::bail!("this build of dynashift has no DuckDB support (feature `duckdb`)")
        }
    }
}

impl Warehouse for Box<dyn Warehouse> {
    fn dialect(&self) -> &dyn dynashift_core::dialect::Dialect {
        (**self).dialect()
    }
    fn setup(&mut self) -> Result<(), crate::warehouse::WarehouseError> {
        (**self).setup()
    }
    fn load_catalog(&mut self) -> Result<dynashift_core::schema::Catalog, crate::warehouse::WarehouseError> {
        (**self).load_catalog()
    }
    fn load_checkpoints(
        &mut self,
        source: &str,
    ) -> Result<std::collections::HashMap<String, String>, crate::warehouse::WarehouseError> {
        (**self).load_checkpoints(source)
    }
    fn apply(
        &mut self,
        batch: &crate::warehouse::Batch,
    ) -> Result<crate::warehouse::Outcome, crate::warehouse::WarehouseError> {
        (**self).apply(batch)
    }
    fn describe(&self, batch: &crate::warehouse::Batch) -> Vec<String> {
        (**self).describe(batch)
    }
    fn status(&mut self) -> Result<Status, crate::warehouse::WarehouseError> {
        (**self).status()
    }
}

/// Runs the pipeline over the configured source. Returns the run's figures; with
/// `dry_run`, the statements of the next batch instead.
pub fn run(config: &Config, options: &RunOptions, stop: Arc<AtomicBool>) -> anyhow::Result<RunResult> {
    let warehouse = open_warehouse(config)?;
    let mut pipeline = Pipeline::new(config.clone(), warehouse).context("preparing the warehouse")?;
    let resume = pipeline.checkpoints()?;
    let SourceConfig::File(file) = &config.source;
    let mut source = FileSource::open(&file.path, options.follow, resume)?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("stop requested; the last batch was committed");
            break;
        }
        if options.max_batches.is_some_and(|m| pipeline.summary.batches >= m) {
            break;
        }
        let records = source.next_batch(config.defaults.batch_size)?;
        if records.is_empty() {
            if options.follow && !stop.load(Ordering::Relaxed) {
                continue;
            }
            break;
        }
        if options.dry_run {
            bar.finish_and_clear();
            return Ok(RunResult::Plan(pipeline.describe(records)));
        }
        let n = records.len();
        pipeline.process(records).context("applying a batch")?;
        tracing::debug!(records = n, "batch committed");
        let s = &pipeline.summary;
        bar.set_message(format!("{} records, {} batches, {} rejects", s.records, s.batches, s.rejects));
        bar.tick();
    }
    bar.finish_and_clear();
    if options.dry_run {
        return Ok(RunResult::Plan(Vec::new()));
    }
    Ok(RunResult::Done(pipeline.summary.clone()))
}

pub enum RunResult {
    Done(Summary),
    Plan(Vec<String>),
}

/// The per-table summary printed after a run.
pub fn format_summary(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<32} {:>10} {:>10} {:>8}\n", "table", "changes", "applied", "rejects"));
    for (t, f) in &s.tables {
        out.push_str(&format!("{:<32} {:>10} {:>10} {:>8}\n", t, f.changes, f.applied, f.rejects));
    }
    out.push_str(&format!(
        "{} records in {} batches; {} rejected{}\n",
        s.records,
        s.batches,
        s.rejects,
        if s.skipped > 0 { format!("; {} skipped by include/exclude", s.skipped) } else { String::new() }
    ));
    out
}

pub fn format_status(s: &Status) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}  {}\n",
        "table", "target", "rows", "columns", "applied", "deletes", "expired", "rejects", "newest change"
    );
    for t in &s.tables {
        out.push_str(&format!(
            "{:<24} {:<28} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}  {}\n",
            t.source_table,
            t.target,
            t.rows,
            t.columns,
            t.changes_applied,
            t.deletes_applied,
            t.expired,
            t.rejects,
            t.newest_change.as_deref().unwrap_or("-")
        ));
    }
    if s.unattributed_rejects > 0 {
        out.push_str(&format!("rejects not tied to a table: {}\n", s.unattributed_rejects));
    }
    out.push_str(&format!(
        "{} batches committed; last at {}\n",
        s.batches,
        s.last_batch_at.as_deref().unwrap_or("-")
    ));
    out
}
