//! The `run` loop: read the source in batches and apply each, until the input is consumed
//! (or, with `--follow`, until stopped).

use crossbeam_channel::{Receiver, RecvError, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use dynashift_core::alarm::AlarmLimits;

use crate::backfill::progress::BackfillProgress;
use crate::config::{Config, RedshiftTargetConfig, SourceConfig, TargetConfig};
use crate::flow::{Flow, Scheduler, Selection, Step};
use crate::metrics::metrics;
use crate::pipeline::{Pipeline, Summary};
use crate::planner::{decode_threads, Decoded, Decoder, Prepared};
use crate::progress::Progress;
use crate::source::file::FileSource;
use crate::source::{RawRecord, Source};
use crate::warehouse::data_api::DataApiWarehouse;
use crate::warehouse::postgres::PostgresWarehouse;
use crate::warehouse::redshift_wire::RedshiftWireWarehouse;
use crate::warehouse::retry::{apply_with_retry, until_available};
use crate::warehouse::{Status, Warehouse};
use crate::watch::{watch, watch_held, AlarmLog};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep tailing the input after it is consumed.
    pub follow: bool,
    /// Print the next batch's SQL instead of running it.
    pub dry_run: bool,
    /// Stop after this many batches (for tools and tests).
    pub max_batches: Option<u64>,
    /// Apply every table in every batch, whatever its schedule (`sync --once --all`).
    pub all: bool,
    /// A backfill: what it expects to load, for its progress.
    pub backfill: Option<crate::backfill::progress::Expected>,
}

/// Microseconds since the Unix epoch, by the system clock.
pub fn unix_now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// When each table of `source` was last applied (seconds since the epoch), as batches with
/// schedules record it.
pub fn last_applies<W: Warehouse + ?Sized>(
    warehouse: &mut W,
    source: &str,
) -> Result<HashMap<String, i64>, crate::warehouse::WarehouseError> {
    let kept = warehouse.load_checkpoints(&crate::warehouse::applies_source(source))?;
    Ok(kept.into_iter().filter_map(|(table, at)| at.parse().ok().map(|at| (table, at))).collect())
}

/// Per table of `source`: the changes it held and when the oldest was made (seconds since the
/// epoch), as the last batch with schedules recorded them.
pub fn held_changes<W: Warehouse + ?Sized>(
    warehouse: &mut W,
    source: &str,
) -> Result<HashMap<String, (u64, i64)>, crate::warehouse::WarehouseError> {
    let kept = warehouse.load_checkpoints(&crate::warehouse::held_source(source))?;
    let parse = |text: &str| -> Option<(u64, i64)> {
        let (changes, oldest) = text.split_once(' ')?;
        Some((changes.parse().ok()?, oldest.parse().ok()?))
    };
    Ok(kept.into_iter().filter_map(|(table, text)| parse(&text).map(|held| (table, held))).collect())
}

/// Per table of `source`, how far past the committed positions its changes are already in
/// (shard → sequence), as batches with schedules mark them.
pub fn table_marks<W: Warehouse + ?Sized>(
    warehouse: &mut W,
    source: &str,
) -> Result<HashMap<String, HashMap<String, String>>, crate::warehouse::WarehouseError> {
    let mut marks: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (key, sequence) in warehouse.load_checkpoints(&crate::warehouse::marks_source(source))? {
        match crate::warehouse::parse_mark_key(&key) {
            Some((table, shard)) => {
                marks.entry(table).or_default().insert(shard, sequence);
            }
            None => tracing::warn!(key, "ignoring a table mark this version did not write"),
        }
    }
    Ok(marks)
}

/// Opens the configured source at the committed positions `resume`.
fn open_source(
    config: &Config,
    options: &RunOptions,
    resume: HashMap<String, String>,
) -> anyhow::Result<Source> {
    let once = !options.follow;
    Ok(match &config.source {
        SourceConfig::File(file) => {
            let source = FileSource::open(&file.path, options.follow, resume)?;
            Source::File(source.with_read_bytes(config.read_bytes()))
        }
        SourceConfig::Kinesis(k) => {
            let reader = k.reading.reader_options(once, config.round_bytes());
            Source::Kinesis(crate::source::kinesis::open(&k.stream, &k.aws, reader, resume)?)
        }
        SourceConfig::Export(e) => {
            let location = crate::source::export::object::ExportLocation::parse(&e.location, &e.aws)
                .map_err(|why| anyhow::anyhow!("{}: {why}", e.location))?;
            let source = crate::source::export::ExportSource::open(location, resume)?;
            Source::Export(
                source
                    .with_read_bytes(config.read_bytes())
                    .with_local_copies(config.spill_dir(), e.copy_bytes),
            )
        }
        SourceConfig::Scan(scan) => {
            let shape = (scan.segments, scan.page_items, scan.rate);
            let source = crate::source::scan::ScanSource::open(&scan.table, shape, &scan.aws, resume)?;
            tracing::info!(
                table = scan.table,
                items = source.item_count.unwrap_or(-1),
                segments = scan.segments,
                "scanning (items: DescribeTable's approximate count)"
            );
            Source::Scan(source.with_read_bytes(config.read_bytes()))
        }
        SourceConfig::RedshiftMv(m) => {
            let source = crate::source::redshift_mv::MvSource::open(m, resume)?;
            Source::RedshiftMv(Box::new(source.with_read_bytes(config.read_bytes())))
        }
        SourceConfig::DynamodbStreams(d) => {
            let reader = d.reading.reader_options(once, config.round_bytes());
            Source::DynamodbStreams(crate::source::dynamodb_streams::open(
                &d.tables,
                &d.stream_arns,
                &d.aws,
                reader,
                resume,
            )?)
        }
    })
}

/// Opens the configured warehouse.
pub fn open_warehouse(config: &Config) -> anyhow::Result<Box<dyn Warehouse>> {
    match &config.target {
        #[cfg(feature = "duckdb")]
        TargetConfig::Duckdb(t) => {
            let w = crate::warehouse::duckdb::DuckDbWarehouse::open_with_limit(
                &t.path,
                &t.schema,
                Some(&config.duckdb_memory_limit()),
            )?
            .with_checkpoint_ceiling(config.memory_budget_bytes());
            Ok(Box::new(w))
        }
        #[cfg(not(feature = "duckdb"))]
        TargetConfig::Duckdb(_) => {
            anyhow::bail!("this build of dynashift has no DuckDB support (feature `duckdb`)")
        }
        TargetConfig::Postgres(settings) => Ok(Box::new(PostgresWarehouse::open((**settings).clone())?)),
        TargetConfig::Redshift(t) => match t.as_ref() {
            RedshiftTargetConfig::Wire { settings, options } => {
                Ok(Box::new(RedshiftWireWarehouse::open(settings.clone(), options.clone())?))
            }
            RedshiftTargetConfig::DataApi(options) => Ok(Box::new(DataApiWarehouse::open(options.clone())?)),
        },
    }
}

impl Warehouse for Box<dyn Warehouse> {
    fn dialect(&self) -> &dyn dynashift_core::dialect::Dialect {
        (**self).dialect()
    }
    fn setup(&mut self) -> Result<(), crate::warehouse::WarehouseError> {
        (**self).setup()
    }
    fn is_set_up(&mut self) -> Result<bool, crate::warehouse::WarehouseError> {
        (**self).is_set_up()
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
    fn reconnect(&mut self) -> Result<(), crate::warehouse::WarehouseError> {
        (**self).reconnect()
    }
}

/// Runs the pipeline over the configured source. Returns the run's figures; with
/// `dry_run`, the statements of the next batch instead.
///
/// Three threads besides this one: one reads records, one decodes them (on a pool while the
/// warehouse waits), one applies batches. This thread folds reads into the batch being
/// gathered and does what the run loop's state machine (`flow::Flow`) decides: read on,
/// hand the batch over, wait for the warehouse, or finish.
pub fn run(config: &Config, options: &RunOptions, stop: Arc<AtomicBool>) -> anyhow::Result<RunResult> {
    let mut warehouse = open_warehouse(config)?;
    // A warehouse that is down at start is waited for, not given up on.
    let set_up = if options.dry_run {
        // A plan writes nothing: a warehouse never set up is planned from an empty catalog.
        until_available("reading the warehouse", &stop, || warehouse.is_set_up())?
    } else {
        until_available("preparing the warehouse", &stop, || warehouse.setup())?;
        true
    };
    // Set up once: the control tables and the layout upgrade ran just above.
    let (pipeline, resume) = if set_up {
        let mut pipeline = Pipeline::set_up(config.clone(), warehouse).context("preparing the warehouse")?;
        let resume = pipeline.checkpoints()?;
        (pipeline, resume)
    } else {
        (Pipeline::unset(config.clone(), warehouse), HashMap::new())
    };
    tracing::debug!(positions = resume.len(), "resuming from the committed positions");
    let mut source = open_source(config, options, resume.clone())?;
    let (mut planner, mut warehouse, _) = pipeline.into_parts();
    let limits = config.flow_limits(options.max_batches);
    if config.schedules.is_active() {
        // Even when every table is applied (`--all`), the next pass must know when.
        planner.record_applies();
    }
    if set_up && !options.dry_run && (options.all || !config.schedules.is_active()) {
        // Every table is applied without marks, and positions may pass them: drop them (and
        // what an earlier run with schedules said the tables held).
        let marks = table_marks(&mut warehouse, planner.source_name())?;
        planner.drop_marks(marks);
        let held = held_changes(&mut warehouse, planner.source_name())?;
        planner.held_listed(held);
    }
    if set_up && !config.source.is_file() {
        let behind = warehouse.load_checkpoints(&crate::warehouse::behind_source(planner.source_name()))?;
        planner.behind_listed(behind.into_keys());
    }
    let scheduler = if config.schedules.is_active() && !options.all {
        let (last_applied, marks) = if set_up {
            let source = planner.source_name().to_string();
            planner.held_listed(held_changes(&mut warehouse, &source)?);
            (last_applies(&mut warehouse, &source)?, table_marks(&mut warehouse, &source)?)
        } else {
            (HashMap::new(), HashMap::new())
        };
        planner.hold_tables(&resume, marks);
        // A held change is applied, whatever its schedule, once it is three quarters of the
        // stream's retention old.
        Some(Scheduler::new(config.schedules.clone(), last_applied, source.retention_secs()))
    } else {
        None
    };
    if options.dry_run {
        let records = source.next_batch(config.defaults.batch_size)?;
        if records.is_empty() {
            return Ok(RunResult::Plan(Vec::new()));
        }
        let now = unix_now();
        planner.ingest(records, decode_threads(true), now);
        let mut lines = Vec::new();
        let selection = match &scheduler {
            Some(scheduler) => {
                let held = planner.gathered();
                let choice = scheduler.choose(&held.tables, now, held.bytes >= limits.batch_bytes);
                lines.push(scheduler.explain(&choice, &held.tables, now));
                Selection::Chosen(choice)
            }
            None => Selection::All,
        };
        let prepared = planner.hand_over(&selection, now);
        lines.extend(warehouse.describe(&prepared.batch));
        return Ok(RunResult::Plan(lines));
    }
    let scheduled = scheduler.is_some();
    let mut flow = match scheduler {
        Some(scheduler) => Flow::with_scheduler(limits, scheduler),
        None => Flow::new(limits),
    };
    // A file's changes may be of any age (a replayed export): its lag is no alarm.
    let alert_lag = if config.source.is_file() { None } else { config.monitoring.alert_lag };
    let alarm_limits = AlarmLimits { alert_lag, retention: source.retention_secs() };
    metrics().health.started.store(true, Ordering::Relaxed);
    // A backlog whose first batch never commits is a stall too.
    metrics().health.progressed(unix_now());
    let backfill = options.backfill.clone().map(|expected| BackfillProgress::new(expected, &resume));
    let mut progress = Progress::start(backfill);
    // Set while the warehouse waits for work: decoding then takes every core.
    let applier_idle = Arc::new(AtomicBool::new(true));
    let reading_over = AtomicBool::new(false);
    let summary = std::thread::scope(|scope| -> anyhow::Result<Summary> {
        let read_rx = spawn_reading(
            scope,
            source,
            config.defaults.batch_size,
            options.follow,
            stop.clone(),
            &reading_over,
        );
        let decoded_rx = spawn_decoding(scope, read_rx, planner.decoder(), applier_idle.clone());
        let (batch_tx, done_rx, applier) =
            spawn_applying(scope, warehouse, applier_idle.clone(), stop.clone(), &mut progress);
        let driven = drive(
            &mut flow,
            &mut planner,
            &decoded_rx,
            (&batch_tx, &done_rx),
            options,
            &mut AlarmLog::new(alarm_limits, scheduled),
            &stop,
        );
        reading_over.store(true, Ordering::Relaxed);
        drop(batch_tx);
        drop(decoded_rx);
        let summary = applier.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        driven?;
        Ok(summary)
    })?;
    if flow.early_applies() > 0 {
        tracing::info!(
            tables = flow.early_applies(),
            "tables applied before their schedule to stay within memory"
        );
    }
    if flow.memory_waits() > 0 {
        tracing::debug!(
            waits = flow.memory_waits(),
            "reading waited for the warehouse to stay within memory"
        );
    }
    progress.finish();
    Ok(RunResult::Done(summary))
}

/// This thread's part of `run`: takes the flow's steps until it finishes.
fn drive(
    flow: &mut Flow,
    planner: &mut crate::planner::Planner,
    decoded: &Receiver<anyhow::Result<Read>>,
    (batches, done): (&Sender<Prepared>, &Receiver<bool>),
    options: &RunOptions,
    alarms: &mut AlarmLog,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // The warehouse's word on its batch: committed, or failed (its error comes when it is joined).
    let heard = |flow: &mut Flow, word: Result<bool, RecvError>| match word {
        Ok(true) => flow.applied(),
        Ok(false) | Err(RecvError) => flow.failed(),
    };
    let mut stop_noted = false;
    let mut waiting_for: Option<String> = None;
    let mut loss_warned: Option<std::time::Instant> = None;
    // A batch planned while the warehouse applied the one before, until it is free.
    let mut next_batch: Option<Prepared> = None;
    loop {
        if !stop_noted && stop.load(Ordering::Relaxed) {
            stop_noted = true;
            tracing::info!("stop requested; finishing the batch in flight");
            flow.stop();
        }
        let now = unix_now();
        let step = flow.next_step(now);
        if !flow.expiring_paused().is_empty() && loss_warned.is_none_or(|at| at.elapsed().as_secs() >= 60) {
            loss_warned = Some(std::time::Instant::now());
            tracing::error!(
                tables = %flow.expiring_paused().join(", "),
                "paused tables hold changes three quarters of the stream's retention old: unless they are \
                 applied soon (`sync --once --all`, or unpause them), the stream drops changes they have not applied"
            );
        }
        match step {
            Step::Read => crossbeam_channel::select! {
                recv(decoded) -> read => match read {
                    Ok(read) => {
                        let Read { decoded, caught_up } = read?;
                        let consumed = decoded.is_empty() && !options.follow;
                        planner.fold(decoded, now);
                        let gathered = planner.gathered();
                        watch(planner, &gathered, caught_up, now, alarms, flow.scheduler());
                        flow.read(gathered, caught_up);
                        if consumed {
                            flow.input_over();
                        }
                    }
                    // The reading thread ends on a stop; otherwise it died, and its panic is
                    // raised when the threads are joined.
                    Err(RecvError) if stop.load(Ordering::Relaxed) => flow.stop(),
                    Err(RecvError) => anyhow::bail!("reading stopped unexpectedly"),
                },
                recv(done) -> word => heard(flow, word),
            },
            Step::Spill => {
                let before = planner.gathered().bytes;
                planner.spill().context(
                    "spilling held changes to disk: give defaults.spill_dir a disk with room, or set defaults.spill = \"0\"",
                )?;
                let left = planner.gathered();
                anyhow::ensure!(left.bytes < before, "held changes could not be spilled");
                flow.spilled(left);
            }
            Step::Plan(selection) => {
                waiting_for = None;
                planner.load_spilled().context("reading spilled changes back from defaults.spill_dir")?;
                let started = std::time::Instant::now();
                let held_mb = planner.gathered().bytes >> 20;
                if let Selection::Chosen(choice) = &selection {
                    for table in &choice.early {
                        tracing::info!(
                            table,
                            "applied before its schedule: held changes reached max_batch_memory"
                        );
                    }
                    for table in &choice.retention {
                        tracing::warn!(table, "applied before its schedule: its oldest held change nears the stream's retention");
                    }
                }
                if let Selection::Chosen(choice) = &selection {
                    for table in choice.early.iter().chain(&choice.retention) {
                        metrics().early_applies.with_label_values(&[table]).inc();
                    }
                }
                let prepared: Prepared = planner.hand_over(&selection, now);
                let planned = prepared.batch.planned_weight();
                tracing::debug!(
                    records = prepared.batch.records,
                    held_mb,
                    planned_mb = planned >> 20,
                    prepare_ms = started.elapsed().as_millis() as u64,
                    resident_mb = crate::memory::resident_mb(),
                    "batch planned"
                );
                flow.planned(planned, &selection, now, planner.gathered());
                next_batch = Some(prepared);
            }
            Step::HandOver => {
                let prepared = next_batch.take().context("the flow handed over a batch it never planned")?;
                if batches.send(prepared).is_err() {
                    // The warehouse has stopped on an error (reported when it is joined).
                    flow.failed();
                } else {
                    flow.handed_over();
                }
            }
            Step::AwaitWarehouse => loop {
                match done.recv_timeout(std::time::Duration::from_secs(1)) {
                    Ok(word) => break heard(flow, Ok(word)),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        break heard(flow, Err(RecvError))
                    }
                    // Still applying (or retrying a lost connection): the alarms keep time.
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        watch_held(planner, &planner.gathered(), unix_now(), alarms, flow.scheduler())
                    }
                }
            },
            Step::Wait(table) if !options.follow => {
                // One pass cannot wait for an unpause: it ends, applying what is due.
                tracing::warn!(
                    table,
                    "this paused table's held changes fill max_batch_memory: the pass ends here; unpause \
                     it, raise max_batch_memory, or apply it with `sync --once --all`"
                );
                flow.stop();
            }
            Step::Wait(table) => {
                if waiting_for.as_deref() != Some(table.as_str()) {
                    tracing::warn!(
                        table,
                        "reading waits: this paused table's held changes fill max_batch_memory; unpause it, \
                         raise max_batch_memory, or apply it once with `sync --once --all`"
                    );
                    waiting_for = Some(table);
                }
                crossbeam_channel::select! {
                    recv(done) -> word => heard(flow, word),
                    // Held changes age while reading waits: the alarms keep time.
                    default(std::time::Duration::from_secs(1)) => {
                        watch_held(planner, &planner.gathered(), unix_now(), alarms, flow.scheduler())
                    }
                }
            }
            Step::Finish => return Ok(()),
        }
    }
}

/// Applies each batch handed over on a thread of its own, telling the run loop after each
/// whether it committed. Returns the run's figures when the batches stop coming, or the
/// error a batch failed with.
fn spawn_applying<'scope, W: Warehouse + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut warehouse: W,
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    progress: &'scope mut Progress,
) -> (Sender<Prepared>, Receiver<bool>, std::thread::ScopedJoinHandle<'scope, anyhow::Result<Summary>>) {
    // The flow hands over only to a free warehouse, so one place is enough.
    let (batch_tx, batch_rx) = crossbeam_channel::bounded::<Prepared>(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<bool>(1);
    let applier = scope.spawn(move || -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        for prepared in batch_rx {
            idle.store(false, Ordering::Release);
            let started = std::time::Instant::now();
            let outcome =
                apply_with_retry(&mut warehouse, &prepared.batch, &stop).context("applying a batch");
            idle.store(true, Ordering::Release);
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    let _ = done_tx.send(false);
                    return Err(e);
                }
            };
            summary.add(&prepared, &outcome);
            metrics().batch_committed(&prepared, &outcome, started.elapsed(), unix_now());
            tracing::debug!(
                records = prepared.batch.records,
                apply_ms = started.elapsed().as_millis() as u64,
                resident_mb = crate::memory::resident_mb(),
                "batch committed"
            );
            let lag = prepared.newest_change.values().max().map(|made| (unix_now() - made).max(0));
            let _ = progress.committed(&summary, &prepared.batch.checkpoints, lag);
            // The run loop may have finished already and gone: the batch is committed anyway.
            let _ = done_tx.send(true);
        }
        // Closing may take a while: DuckDB writes what its log holds into the file.
        let closing = std::time::Instant::now();
        drop(warehouse);
        tracing::debug!(close_ms = closing.elapsed().as_millis() as u64, "warehouse closed");
        Ok(summary)
    });
    (batch_tx, done_rx, applier)
}

/// Reads `batch_size` records at a time on a thread of its own, until the input is consumed
/// (unless following), a stop is requested, or the receiver is gone. Reading and decoding run
/// ahead of reducing and planning so that they overlap: on W1, splitting lines and reducing
/// took 1.0 s and 0.7 s of the 6.9 s of the thread that did it all in turn.
fn spawn_reading<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut source: Source,
    batch_size: usize,
    follow: bool,
    stop: Arc<AtomicBool>,
    over: &'scope AtomicBool,
) -> Receiver<anyhow::Result<SourceRead>> {
    let (tx, rx) = crossbeam_channel::bounded(0);
    scope.spawn(move || loop {
        // `over`: the run loop has ended (an error, `max_batches`), so nothing more is wanted.
        // A read already under way (stdin waiting for input, say) still finishes first.
        if stop.load(Ordering::Relaxed) || over.load(Ordering::Relaxed) {
            break;
        }
        let read = source.next_batch(batch_size).map(|records| {
            metrics().records_read.inc_by(records.len() as u64);
            // A full read (of `batch_size` records, or cut at its size in bytes) means the
            // source has a backlog (see `run`).
            let full = records.len() >= batch_size || source.read_was_cut();
            (records, source.take_marks(), full)
        });
        let done = match &read {
            Ok((records, _, _)) => records.is_empty() && !follow,
            Err(_) => true,
        };
        // A closed channel means the run is over: stop reading.
        if tx.send(read).is_err() || done {
            break;
        }
    });
    rx
}

/// Decodes each read on a thread of its own, on all cores while the applier waits and on one
/// while it applies (`decode_threads`).
fn spawn_decoding<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    reads: Receiver<anyhow::Result<SourceRead>>,
    decoder: Decoder,
    applier_idle: Arc<AtomicBool>,
) -> Receiver<anyhow::Result<Read>> {
    let (tx, rx) = crossbeam_channel::bounded(0);
    scope.spawn(move || {
        for read in reads {
            let read = read.map(|(records, marks, full)| {
                let caught_up = !full;
                let idle = applier_idle.load(Ordering::Acquire);
                Read { decoded: decoder.decode(records, marks, decode_threads(idle)), caught_up }
            });
            if tx.send(read).is_err() {
                break;
            }
        }
    });
    rx
}

/// One read as the reading thread hands it on: records, and shard markers to commit with them.
/// Records read, shard marks, and whether the read was full (the source has a backlog).
type SourceRead = (Vec<RawRecord>, Vec<dynashift_core::Position>, bool);

/// One read, decoded on the decoding thread.
struct Read {
    decoded: Decoded,
    /// The read was short: the source has no backlog.
    caught_up: bool,
}

pub enum RunResult {
    Done(Summary),
    Plan(Vec<String>),
}
