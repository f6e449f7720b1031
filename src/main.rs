//! The `dynashift` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dynashift::cause::error_chain;
use dynashift::config::Config;
use dynashift::report::{format_schedules, format_shards, format_status, format_summary, status_json, Kept};
use dynashift::run::{held_changes, last_applies, open_warehouse, run, unix_now, RunOptions, RunResult};

#[cfg(feature = "bench")]
mod bench;

// Decoding allocates many small strings and maps; mimalloc handles that pattern well. It is
// built without transparent huge pages: zeroing 2 MB pages on every fault after a purge took
// a fifth of a W1 run's CPU time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dynashift",
    version,
    about = "Replicate DynamoDB change streams into DuckDB, PostgreSQL and Redshift"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replicate the source into the target until the input is consumed.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Keep tailing the input file (Ctrl-C stops after the current batch); streams are
        /// always followed.
        #[arg(long)]
        follow: bool,
        /// Print the SQL the next batch would run, without running it.
        #[arg(long)]
        dry_run: bool,
        /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464);
        /// overrides `[monitoring] metrics`.
        #[arg(long, value_name = "ADDRESS", value_parser = parse_address)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// One incremental pass over the source, then exit.
    Sync {
        #[arg(long, short)]
        config: PathBuf,
        /// Required: one pass (the only mode of `sync`).
        #[arg(long)]
        once: bool,
        /// Apply every table now, whatever its schedule (paused tables too).
        #[arg(long)]
        all: bool,
        /// Serve /metrics, /healthz and /readyz on this address while the pass runs.
        #[arg(long, value_name = "ADDRESS", value_parser = parse_address)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Print the SQL the next batch would run, without running it.
    Plan {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Per table: rows, columns, newest applied change and its lag, changes applied, rejects.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON with stable field names (see docs/operations.md).
        #[arg(long)]
        json: bool,
        /// Print again every SECONDS (default 2) until stopped; in place on a terminal.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// Load a table's current items from a DynamoDB export or a parallel Scan (the stream then
    /// carries on from them).
    Backfill {
        #[arg(long, short)]
        config: PathBuf,
        /// The export's folder: `s3://bucket/prefix/AWSDynamoDB/<export id>/`, or a local copy
        /// of it (manifest-summary.json, manifest-files.json, data/*.json.gz).
        #[arg(long, value_name = "FOLDER", required_unless_present_any = ["scan", "export"], conflicts_with_all = ["scan", "export"])]
        from_export: Option<String>,
        /// Export the table first (ExportTableToPointInTime into `s3://bucket/prefix/`; its
        /// point-in-time recovery must be on), wait for it, then load it.
        #[arg(long, value_name = "S3_PREFIX", requires = "table", conflicts_with = "scan")]
        export: Option<String>,
        /// Read the table with a parallel Scan (strongly consistent) instead of an export.
        #[arg(long, requires = "table")]
        scan: bool,
        /// Scan segments read in parallel.
        #[arg(long, default_value_t = 4, requires = "scan")]
        segments: u32,
        /// Read capacity units a second the scan may use, all segments together.
        #[arg(long, value_name = "UNITS", requires = "scan")]
        rate: Option<f64>,
        /// Items per Scan request (default: DynamoDB's pages of 1 MB); smaller pages spread
        /// the reads more evenly under --rate.
        #[arg(long, value_name = "ITEMS", requires = "scan")]
        page_items: Option<u32>,
        /// The table to load (with an export, the table it must be of).
        #[arg(long)]
        table: Option<String>,
        /// The table's key attributes (partition key, then sort key), when the configuration
        /// does not give them and DescribeTable cannot be asked.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
    },
    /// Create what replication needs once, idempotently: for a `redshift-mv` source the
    /// streaming view (or adopt an existing one), then the control tables in the target.
    Setup {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the SQL instead of running it (connects to nothing).
        #[arg(long)]
        print: bool,
    },
    /// Check the configuration, that the target can be opened, and the source's settings.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the W1 benchmark: decode throughput, end-to-end changes/s, peak memory.
    #[cfg(feature = "bench")]
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 200_000)]
        keys: usize,
        #[arg(long, default_value_t = 25_000)]
        batch_size: usize,
        /// Where the workload file and database go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Measure decoding only (no warehouse).
        #[arg(long)]
        decode_only: bool,
        /// Replicate into this PostgreSQL database instead of DuckDB (its `dynamodb` and
        /// `_dynashift` schemas are dropped first); also measures raw COPY of the final rows.
        #[arg(long)]
        postgres_url: Option<String>,
        /// Put the workload into a four-shard stream at this Kinesis endpoint (a local
        /// kinesalite) and read it from there.
        #[arg(long)]
        kinesis_endpoint: Option<String>,
        /// Also replicate 4x the records over 4x the keys (W1 at 4,000,000 / 800,000) and
        /// report the rate and peak memory as the tables grow.
        #[arg(long)]
        growth: bool,
        /// Also backfill as many generated items from an export-format folder (DuckDB, or
        /// PostgreSQL with --postgres-url) and compare with the stream path.
        #[arg(long)]
        backfill: bool,
        /// Also land the workload in a table with the columns of Redshift's streaming-ingestion
        /// view (in the --postgres-url database) and time the `redshift-mv` source on it.
        #[arg(long, requires = "postgres_url")]
        mv: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYNASHIFT_LOG")
        // The AWS SDK's own warnings while it searches for credentials are left out: a missing
        // credential is reported once, as one line saying what was tried (`aws::require_credentials`).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,aws_config=error,dynashift::progress=info")
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn execute(command: Command) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the signal handler")?;
    }
    match command {
        Command::Run { config, follow, dry_run, metrics } => {
            let config = load(&config)?;
            if !dry_run {
                serve_metrics(metrics.or(config.monitoring.metrics))?;
            }
            // A stream has no end: `run` follows it (use `sync --once` for one pass).
            let follow = follow || !config.source.is_file();
            if !dry_run {
                auto_backfill(&config, &stop)?;
            }
            replicate(&config, RunOptions { follow, dry_run, ..RunOptions::default() }, stop).map(drop)
        }
        Command::Sync { config, once, all, metrics } => {
            anyhow::ensure!(once, "`sync` runs one pass: pass --once (or use `run --follow` to keep going)");
            let config = load(&config)?;
            serve_metrics(metrics.or(config.monitoring.metrics))?;
            auto_backfill(&config, &stop)?;
            replicate(&config, RunOptions { all, ..RunOptions::default() }, stop).map(drop)
        }
        Command::Plan { config } => {
            replicate(&load(&config)?, RunOptions { dry_run: true, ..Default::default() }, stop).map(drop)
        }
        // `status` and `check` only read: a warehouse never set up stays untouched.
        Command::Status { config, json, watch } => {
            let config = load(&config)?;
            let in_place = watch.is_some() && std::io::stdout().is_terminal();
            loop {
                // Opened for each refresh and closed at once: DuckDB admits one process at a
                // time, and `run` must be able to take the file between refreshes.
                let text = status_text(&config, &mut open_warehouse(&config)?, json)?;
                if in_place {
                    // Clear the screen and home the cursor, then print.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{text}");
                let Some(seconds) = watch else { return Ok(()) };
                let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds.max(1));
                while std::time::Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        Command::Setup { config, print } => {
            let config = load(&config)?;
            if print {
                print!("{}", dynashift::setup::script(&config)?);
            } else {
                for line in dynashift::setup::run(&config)? {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Check { config } => {
            let config = load(&config)?;
            let mut w = open_warehouse(&config)?;
            if w.is_set_up()? {
                w.load_catalog()?;
            }
            println!("configuration is valid; the target ({}) is reachable", w.dialect().name());
            for line in dynashift::check::source_lines(&config) {
                println!("{line}");
            }
            match dynashift::check::view_line(&config) {
                Some(Ok(line)) => println!("{line}"),
                Some(Err(problem)) => anyhow::bail!("{problem}"),
                None => {}
            }
            let probes = dynashift::check::permissions::probes(&config);
            for probe in &probes {
                println!("{}", probe.line());
            }
            let refused: Vec<&str> =
                probes.iter().filter(|p| p.is_problem()).map(|p| p.action.as_str()).collect();
            if config.schedules.is_active() {
                let retention = match dynashift::check::source_retention(&config) {
                    Ok(retention) => retention,
                    Err(problem) => {
                        println!("source: {problem}");
                        None
                    }
                };
                let (refusals, notes) = dynashift::check::schedule_lines(&config, retention);
                for note in notes {
                    println!("{note}");
                }
                anyhow::ensure!(refusals.is_empty(), "{}", refusals.join("; "));
            }
            anyhow::ensure!(
                refused.is_empty(),
                "{} of the {} AWS calls a run needs failed: {} (see the lines above)",
                refused.len(),
                probes.len(),
                refused.join(", ")
            );
            Ok(())
        }
        Command::Backfill {
            config,
            from_export,
            export,
            scan: _,
            segments,
            rate,
            page_items,
            table,
            keys,
        } => {
            use dynashift::backfill::{BackfillFrom, BackfillRequest, Loading};
            let config = load(&config)?;
            let from = match (from_export, export, &table) {
                (Some(folder), _, _) => BackfillFrom::Export(folder),
                (None, Some(to), Some(table)) => {
                    let aws = dynashift::backfill::source_aws(&config);
                    let folder = dynashift::backfill::export_job::export_table(table, &to, &aws)?;
                    println!("export of `{table}` completed: {folder}");
                    BackfillFrom::Export(folder)
                }
                _ => BackfillFrom::Scan { segments, page_items, rate },
            };
            let request = BackfillRequest { from, table, keys };
            let dynashift::backfill::Backfill { config: backfill, loading, expected } =
                dynashift::backfill::backfill_config(&config, &request)?;
            let what = match &loading {
                Loading::Export(summary) => {
                    println!(
                        "loading export {} of `{}` ({} items, consistent as of {}) into {}",
                        summary.export_id(),
                        summary.table,
                        summary.item_count.map_or_else(|| "?".to_string(), |c| c.to_string()),
                        dynashift::warehouse::registry::format_version(summary.export_time_micros),
                        backfill.target.schema()
                    );
                    format!("export {}", summary.export_id())
                }
                Loading::Scan { table } => {
                    println!("scanning `{table}` in {segments} segments into {}", backfill.target.schema());
                    format!("the scan of `{table}`")
                }
            };
            let started = std::time::Instant::now();
            let options = RunOptions { all: true, backfill: Some(expected), ..RunOptions::default() };
            let items = replicate(&backfill, options, stop)?;
            let secs = started.elapsed().as_secs_f64();
            let mut warehouse = open_warehouse(&backfill)?;
            if let Loading::Export(summary) = &loading {
                let removed = warehouse.settle_snapshot(&summary.table)?;
                if removed > 0 {
                    tracing::warn!(
                        rows = removed,
                        "the export listed some items more than once; each key keeps the row loaded first"
                    );
                }
            }
            let unfinished = dynashift::backfill::unfinished(&mut *warehouse, &backfill)?;
            drop(warehouse);
            anyhow::ensure!(
                unfinished.is_empty(),
                "{what}: {} not loaded whole (see the rejects in `status`): {}; once they are replaced, \
                 run the backfill again: it resumes where it stopped",
                unfinished.len(),
                unfinished.join(", ")
            );
            println!(
                "{what} loaded whole; this run: {items} items in {secs:.1} s ({:.0} items/s)",
                items as f64 / secs
            );
            Ok(())
        }
        #[cfg(feature = "bench")]
        Command::Bench {
            records,
            keys,
            batch_size,
            dir,
            decode_only,
            postgres_url,
            kinesis_endpoint,
            growth,
            backfill,
            mv,
        } => {
            let exe = std::env::current_exe().context("locating the dynashift binary")?;
            let options = bench::BenchOptions {
                records,
                keys,
                dir,
                batch_size,
                decode_only,
                postgres_url,
                kinesis_endpoint,
                growth,
                backfill,
                mv,
            };
            let report = bench::bench(&exe, &options)?;
            print!("{report}");
            Ok(())
        }
    }
}

/// What `status` prints once: the tables (as text or JSON) and, with schedules, each table's.
fn status_text(
    config: &Config,
    w: &mut Box<dyn dynashift::warehouse::Warehouse>,
    json: bool,
) -> anyhow::Result<String> {
    let now = unix_now();
    if !w.is_set_up()? {
        return Ok(if json {
            let mut value =
                status_json(config, &dynashift::warehouse::Status::default(), &Kept::default(), now);
            value["set_up"] = serde_json::Value::Bool(false);
            format!("{value}\n")
        } else {
            "nothing replicated yet: the target has no `_dynashift` control tables\n".to_string()
        });
    }
    let status = w.status()?;
    let source = config.source.checkpoint_name();
    let shards = Kept::shards_from(w.load_checkpoints(&dynashift::warehouse::behind_source(&source))?);
    let kept = Kept { last_applied: last_applies(w, &source)?, held: held_changes(w, &source)?, shards };
    if json {
        let mut value = status_json(config, &status, &kept, now);
        value["set_up"] = serde_json::Value::Bool(true);
        return Ok(format!("{value}\n"));
    }
    let mut out = format_status(&status, now);
    out.push_str(&format_shards(&kept, now));
    if config.schedules.is_active() {
        out.push_str(&format!("\n{}", format_schedules(config, &status, &kept, now)));
    }
    Ok(out)
}

fn parse_address(text: &str) -> Result<std::net::SocketAddr, String> {
    dynashift::config::parse_listen_address(text)
        .map_err(|e| format!("{e}: give an IP address and port, such as 127.0.0.1:9464"))
}

/// Starts the metrics listener when an address is configured; the bound address is printed
/// so a port of 0 (any free port) can be found.
fn serve_metrics(address: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    // Replication matters more than its figures: a port in use (another pass still running)
    // is a warning, not a stop.
    if let Some(address) = address {
        match dynashift::metrics_server::start(address) {
            Ok(bound) => eprintln!("metrics: http://{bound}/metrics"),
            Err(e) => tracing::warn!("{}; replicating without it", error_chain(&e)),
        }
    }
    Ok(())
}

/// With `backfill = "auto"`: scans the source's tables not loaded yet, before the stream is
/// first read (each resumes where a stop left it; none once the stream has started).
fn auto_backfill(config: &Config, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use dynashift::backfill::{backfill_config, unfinished, BackfillFrom, BackfillRequest, AUTO_SEGMENTS};
    let pending = dynashift::backfill::tables_to_backfill(&mut *open_warehouse(config)?, config)?;
    for table in pending {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let from = BackfillFrom::Scan { segments: AUTO_SEGMENTS, page_items: None, rate: None };
        let request = BackfillRequest { from, table: Some(table.clone()), keys: Vec::new() };
        let dynashift::backfill::Backfill { config: backfill, expected, .. } =
            backfill_config(config, &request)?;
        println!("backfill = \"auto\": scanning `{table}` before the stream is first read");
        let options = RunOptions { all: true, backfill: Some(expected), ..RunOptions::default() };
        replicate(&backfill, options, stop.clone())?;
        let left = unfinished(&mut *open_warehouse(&backfill)?, &backfill)?;
        anyhow::ensure!(
            left.is_empty(),
            "the scan of `{table}` stopped before its end ({}): run again to resume it",
            left.join(", ")
        );
    }
    Ok(())
}

/// Runs the pipeline and prints its summary; returns the records it read.
/// Runs (or plans) replication and prints its summary; the changes it read, rejected records
/// left out.
fn replicate(config: &Config, options: RunOptions, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    match run(config, &options, stop)? {
        RunResult::Done(summary) => {
            print!("{}", format_summary(&summary));
            // Read after the warehouse is closed, so its final checkpoint counts too.
            if let Some(kb) = dynashift::memory::peak_memory_kb() {
                println!("peak memory {} MB", kb / 1024);
            }
            return Ok(summary.tables.values().map(|t| t.changes).sum());
        }
        RunResult::Plan(statements) if statements.is_empty() => {
            println!("-- nothing to apply: the input is consumed")
        }
        RunResult::Plan(statements) => {
            for s in statements {
                println!("{s}");
            }
        }
    }
    Ok(0)
}
